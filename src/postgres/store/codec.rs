//! The bytes of one entry in the `entry` column: a version byte, then each
//! field in a fixed order, lengths as 4-byte big-endian prefixes. A value
//! that does not decode (another version, a truncated or doctored row) is
//! an error the store counts and treats as a miss.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::entry::Entry;
use crate::stamp::{micros, Stamp};

const VERSION: u8 = 1;

/// Encodes `entry`.
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + entry.body.len());
    out.push(VERSION);
    put_str(&mut out, &entry.route);
    put_str(&mut out, &entry.key);
    put_opt(&mut out, entry.identity.as_deref().map(str::as_bytes));
    out.extend_from_slice(&entry.status.as_u16().to_be_bytes());
    put_len(&mut out, entry.headers.len());
    for (name, value) in &entry.headers {
        put_str(&mut out, name.as_str());
        put_bytes(&mut out, value.as_bytes());
    }
    put_bytes(&mut out, &entry.body);
    put_len(&mut out, entry.tags.len());
    for tag in entry.tags.iter() {
        put_str(&mut out, tag);
    }
    put_len(&mut out, entry.vary.len());
    for (name, value) in entry.vary.iter() {
        put_str(&mut out, name.as_str());
        put_opt(&mut out, value.as_ref().map(HeaderValue::as_bytes));
    }
    match &entry.variants {
        None => out.push(0),
        Some(names) => {
            out.push(1);
            put_len(&mut out, names.len());
            for name in names.iter() {
                put_str(&mut out, name.as_str());
            }
        }
    }
    for n in [
        entry.fill_stamp.0,
        entry.stored_at_micros,
        micros(entry.ttl),
        micros(entry.stale_while_revalidate),
        micros(entry.stale_if_error),
    ] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

/// Decodes what [`encode`] wrote; the error says what is wrong.
pub(crate) fn decode(raw: &[u8]) -> Result<Entry, String> {
    let mut r = Reader { raw, at: 0 };
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(format!("unknown entry version {version}"));
    }
    let route = r.string()?;
    let key = r.string()?;
    let identity = match r.option()? {
        Some(raw) => Some(utf8(raw)?.into()),
        None => None,
    };
    let status = u16::from_be_bytes(r.array()?);
    let status = StatusCode::from_u16(status).map_err(|_| format!("bad status {status}"))?;
    let mut headers = HeaderMap::new();
    for _ in 0..r.count()? {
        let name = header_name(r.bytes()?)?;
        let value = HeaderValue::from_bytes(r.bytes()?).map_err(|_| "bad header value")?;
        headers.append(name, value);
    }
    let body = Bytes::copy_from_slice(r.bytes()?);
    let tags = (0..r.count()?)
        .map(|_| r.string().map(String::into_boxed_str))
        .collect::<Result<_, _>>()?;
    let mut vary = Vec::new();
    for _ in 0..r.count()? {
        let name = header_name(r.bytes()?)?;
        let value = match r.option()? {
            Some(raw) => Some(HeaderValue::from_bytes(raw).map_err(|_| "bad vary value")?),
            None => None,
        };
        vary.push((name, value));
    }
    let variants = match r.take(1)?[0] {
        0 => None,
        1 => Some(
            (0..r.count()?)
                .map(|_| r.bytes().and_then(header_name))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("bad variants marker {other}")),
    };
    let mut number = || r.array().map(u64::from_be_bytes);
    let entry = Entry {
        route: route.into(),
        key: key.into(),
        identity,
        status,
        headers,
        body,
        tags,
        vary: vary.into(),
        variants,
        fill_stamp: Stamp(number()?),
        stored_at_micros: number()?,
        ttl: Duration::from_micros(number()?),
        stale_while_revalidate: Duration::from_micros(number()?),
        stale_if_error: Duration::from_micros(number()?),
    };
    if r.at != raw.len() {
        return Err("trailing bytes".to_owned());
    }
    Ok(entry)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Entries are bounded far below 4 GiB by the route's body limit.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
    }
}

fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| "text is not UTF-8".to_owned())
}

fn header_name(raw: &[u8]) -> Result<HeaderName, String> {
    HeaderName::from_bytes(raw).map_err(|_| "bad header name".to_owned())
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.raw.len());
        let end = end.ok_or_else(|| "truncated entry".to_owned())?;
        let out = &self.raw[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        // Every counted item takes at least 4 bytes: a larger count is a
        // lie, and must not size an allocation.
        if n > (self.raw.len() - self.at) / 4 {
            return Err("count larger than the entry".to_owned());
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.bytes().and_then(|raw| utf8(raw).map(str::to_owned))
    }

    fn option(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => self.bytes().map(Some),
            other => Err(format!("bad option marker {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn sample() -> Entry {
        let mut entry = Entry::for_test();
        entry.identity = Some("user 7".into());
        entry.status = StatusCode::CREATED;
        entry
            .headers
            .append(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        entry
            .headers
            .append(header::SET_COOKIE, "a=1".parse().unwrap());
        entry
            .headers
            .append(header::SET_COOKIE, "b=2".parse().unwrap());
        entry.body = Bytes::from_static(b"body \xff");
        entry.tags = vec!["teacher:7".into(), "k:/x".into()].into();
        entry.vary = vec![
            (header::ACCEPT, Some("text/html".parse().unwrap())),
            (header::ACCEPT_LANGUAGE, None),
        ]
        .into();
        entry.variants = Some(vec![header::ACCEPT].into());
        entry.fill_stamp = Stamp(1_700_000_000_000_001);
        entry.stored_at_micros = 1_700_000_000_000_002;
        entry.ttl = Duration::from_secs(300);
        entry.stale_while_revalidate = Duration::from_millis(1500);
        entry.stale_if_error = Duration::from_micros(7);
        entry
    }

    #[test]
    fn round_trips_every_field() {
        let entry = sample();
        let back = decode(&encode(&entry)).unwrap();
        assert_eq!(back.route, entry.route);
        assert_eq!(back.key, entry.key);
        assert_eq!(back.identity, entry.identity);
        assert_eq!(back.status, entry.status);
        assert_eq!(back.headers, entry.headers);
        assert_eq!(back.body, entry.body);
        assert_eq!(back.tags, entry.tags);
        assert_eq!(back.vary, entry.vary);
        assert_eq!(back.variants, entry.variants);
        assert_eq!(back.fill_stamp, entry.fill_stamp);
        assert_eq!(back.stored_at_micros, entry.stored_at_micros);
        assert_eq!(back.ttl, entry.ttl);
        assert_eq!(back.stale_while_revalidate, entry.stale_while_revalidate);
        assert_eq!(back.stale_if_error, entry.stale_if_error);
        let plain = Entry::for_test();
        assert!(decode(&encode(&plain)).unwrap().variants.is_none());
    }

    #[test]
    fn rejects_damaged_values_without_panicking() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut version = good.clone();
        version[0] = 2;
        assert!(decode(&version).is_err());
        // A count claiming more items than bytes.
        let mut huge = vec![VERSION];
        put_str(&mut huge, "r");
        put_str(&mut huge, "k");
        huge.push(0);
        huge.extend_from_slice(&200u16.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        // Every single byte flipped: an error or some entry, never a panic.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
    }
}
