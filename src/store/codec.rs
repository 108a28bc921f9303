//! The versioned binary encoding of an [`Entry`] in a shared store (Redis,
//! PostgreSQL).
//!
//! Layout (integers little-endian, `varint` = unsigned LEB128, `str` =
//! varint length then UTF-8 bytes, `bytes` = varint length then bytes):
//!
//! ```text
//! u8      format version (FORMAT_VERSION)
//! u16     status
//! u64     fill stamp (µs)
//! u64     stored at (µs since the epoch)
//! u64     ttl (µs)
//! u64     stale-while-revalidate (µs)
//! u64     stale-if-error (µs)
//! u64     kept to be revalidated for (µs) (absent before version 3)
//! u8      flags: bit 0 must-revalidate, bit 1 withholds (absent before
//!         version 3)
//! str     route
//! str     key
//! u8      identity present (0/1), then str if 1
//! u8      variant index (0/1), then varint name count and each name as str
//!         if 1 (absent in version 1)
//! varint  tag count, then each tag as str
//! varint  vary count, then each: str name, u8 present (0/1), bytes value if 1
//! varint  header count, then each: str name, bytes value (in order, repeats kept)
//! varint  body length, then the body: it must end the value exactly
//! ```
//!
//! The body comes last so that decoding from a [`Bytes`] takes it (and every
//! header value) as a slice of the buffer the store's reply filled: the body is copied
//! once, off the socket, and never again. Every read is bounds-checked: a
//! value of another version, a truncated value or garbage decodes to an
//! error, never to a panic.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::entry::{Entry, Tag};
use crate::stamp::{micros, Stamp};

/// The current format version, the first byte of every stored value.
/// Versions 1 (without the variant index) and 2 (without the revalidation
/// fields) are still read, so instances of two releases can share a
/// namespace during a rolling deploy (the older release misses on what the
/// newer one wrote).
pub const FORMAT_VERSION: u8 = 3;
/// Most items (tags, `Vary` pairs, headers) a decoded entry may list.
const MAX_ITEMS: usize = 4096;
/// Most items reserved before they are read.
const PREALLOCATE: usize = 64;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The value is empty.
    Empty,
    /// The value was written in a format version this build does not read.
    Version(u8),
    /// The value ends before its declared contents.
    Truncated,
    /// A field holds something impossible (bad status, header, UTF-8...).
    Invalid(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty value"),
            DecodeError::Version(v) => write!(
                f,
                "unknown format version {v} (this build reads {FORMAT_VERSION})"
            ),
            DecodeError::Truncated => f.write_str("truncated value"),
            DecodeError::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encodes `entry` into one buffer, sized up front.
pub fn encode(entry: &Entry) -> Bytes {
    let headers: usize = entry
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 20)
        .sum();
    let tags: usize = entry.tags.iter().map(|t| t.len() + 10).sum();
    let vary: usize = entry
        .vary
        .iter()
        .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len()) + 21)
        .sum();
    let variants: usize = entry
        .variants
        .iter()
        .flat_map(|names| names.iter())
        .map(|n| n.as_str().len() + 10)
        .sum();
    let capacity = 1
        + 2
        + 8 * 6
        + 1
        + entry.route.len()
        + entry.key.len()
        + entry.identity.as_ref().map_or(0, |i| i.len())
        + 31
        + 40
        + headers
        + tags
        + vary
        + variants
        + 1
        + 10
        + entry.body.len();
    let mut out = BytesMut::with_capacity(capacity);
    out.put_u8(FORMAT_VERSION);
    out.put_u16_le(entry.status.as_u16());
    out.put_u64_le(entry.fill_stamp.0);
    out.put_u64_le(entry.stored_at_micros);
    out.put_u64_le(micros(entry.ttl));
    out.put_u64_le(micros(entry.stale_while_revalidate));
    out.put_u64_le(micros(entry.stale_if_error));
    out.put_u64_le(micros(entry.validate_for));
    out.put_u8(u8::from(entry.must_revalidate) | u8::from(entry.withholds) << 1);
    put_bytes(&mut out, entry.route.as_bytes());
    put_bytes(&mut out, entry.key.as_bytes());
    match &entry.identity {
        Some(identity) => {
            out.put_u8(1);
            put_bytes(&mut out, identity.as_bytes());
        }
        None => out.put_u8(0),
    }
    match &entry.variants {
        Some(names) => {
            out.put_u8(1);
            put_varint(&mut out, names.len() as u64);
            for name in names.iter() {
                put_bytes(&mut out, name.as_str().as_bytes());
            }
        }
        None => out.put_u8(0),
    }
    put_varint(&mut out, entry.tags.len() as u64);
    for tag in entry.tags.iter() {
        put_bytes(&mut out, tag.as_bytes());
    }
    put_varint(&mut out, entry.vary.len() as u64);
    for (name, value) in entry.vary.iter() {
        put_bytes(&mut out, name.as_str().as_bytes());
        match value {
            Some(value) => {
                out.put_u8(1);
                put_bytes(&mut out, value.as_bytes());
            }
            None => out.put_u8(0),
        }
    }
    put_varint(&mut out, entry.headers.len() as u64);
    for (name, value) in entry.headers.iter() {
        put_bytes(&mut out, name.as_str().as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    put_bytes(&mut out, &entry.body);
    out.freeze()
}

/// Decodes a stored value. The body and header values are slices of `buf`.
pub fn decode(buf: Bytes) -> Result<Entry, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u8().map_err(|_| DecodeError::Empty)?;
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::Version(version));
    }
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError::Invalid("status"))?;
    let fill_stamp = Stamp(r.u64()?);
    let stored_at_micros = r.u64()?;
    let ttl = Duration::from_micros(r.u64()?);
    let stale_while_revalidate = Duration::from_micros(r.u64()?);
    let stale_if_error = Duration::from_micros(r.u64()?);
    let (validate_for, must_revalidate, withholds) = match version {
        1 | 2 => (Duration::ZERO, false, false),
        _ => {
            let validate_for = Duration::from_micros(r.u64()?);
            match r.u8()? {
                flags @ 0..=3 => (validate_for, flags & 1 == 1, flags & 2 == 2),
                _ => return Err(DecodeError::Invalid("flags")),
            }
        }
    };
    let route = r.string("route")?;
    let key = r.string("key")?;
    let identity = match r.u8()? {
        0 => None,
        1 => Some(r.string("identity")?),
        _ => return Err(DecodeError::Invalid("identity flag")),
    };
    let variants = match (version, r.u8_if(version > 1)?) {
        (1, _) | (_, 0) => None,
        (_, 1) => {
            let count = r.items("variants")?;
            let mut names = Vec::with_capacity(count.min(PREALLOCATE));
            for _ in 0..count {
                names.push(r.header_name()?);
            }
            Some(names.into_boxed_slice())
        }
        _ => return Err(DecodeError::Invalid("variants flag")),
    };
    let count = r.items("tags")?;
    let mut tags: Vec<Tag> = Vec::with_capacity(count.min(PREALLOCATE));
    for _ in 0..count {
        tags.push(r.string("tag")?);
    }
    let count = r.items("vary")?;
    let mut vary = Vec::with_capacity(count.min(PREALLOCATE));
    for _ in 0..count {
        let name = r.header_name()?;
        let value = match r.u8()? {
            0 => None,
            1 => Some(r.header_value()?),
            _ => return Err(DecodeError::Invalid("vary flag")),
        };
        vary.push((name, value));
    }
    let count = r.items("headers")?;
    let mut headers = HeaderMap::with_capacity(count.min(PREALLOCATE));
    for _ in 0..count {
        let name = r.header_name()?;
        let value = r.header_value()?;
        headers
            .try_append(name, value)
            .map_err(|_| DecodeError::Invalid("too many headers"))?;
    }
    let body = r.bytes()?;
    if r.pos != r.buf.len() {
        return Err(DecodeError::Invalid("trailing bytes"));
    }
    Ok(Entry {
        route: route.into(),
        key,
        identity,
        status,
        headers,
        body,
        tags: tags.into_boxed_slice(),
        vary: vary.into_boxed_slice(),
        variants,
        fill_stamp,
        stored_at_micros,
        ttl,
        stale_while_revalidate,
        stale_if_error,
        validate_for,
        must_revalidate,
        withholds,
    })
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A byte, if `present`; 0 otherwise (a field older versions lack).
    fn u8_if(&mut self, present: bool) -> Result<u8, DecodeError> {
        if present {
            self.u8()
        } else {
            Ok(0)
        }
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Invalid("length"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid("length"))
    }

    /// A length that must fit in what is left of the value.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        if len > self.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(len as usize)
    }

    /// An item count: every item takes at least one byte, so a count larger
    /// than what is left is garbage (and must not size an allocation).
    fn count(&mut self) -> Result<usize, DecodeError> {
        self.len()
    }

    /// A count of list items: bounded, since the bytes come from outside
    /// (anything able to write to Redis), and a huge count must neither
    /// panic the header map nor reserve gigabytes up front.
    fn items(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let count = self.count()?;
        if count > MAX_ITEMS {
            return Err(DecodeError::Invalid(what));
        }
        Ok(count)
    }

    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.len()?;
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    fn string(&mut self, what: &'static str) -> Result<Box<str>, DecodeError> {
        let len = self.len()?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(Box::from)
            .map_err(|_| DecodeError::Invalid(what))
    }

    fn header_name(&mut self) -> Result<HeaderName, DecodeError> {
        let len = self.len()?;
        let raw = self.take(len)?;
        HeaderName::from_bytes(raw).map_err(|_| DecodeError::Invalid("header name"))
    }

    fn header_value(&mut self) -> Result<HeaderValue, DecodeError> {
        let raw = self.bytes()?;
        HeaderValue::from_maybe_shared(raw).map_err(|_| DecodeError::Invalid("header value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sample() -> Entry {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-multi", HeaderValue::from_static("one"));
        headers.append("etag", HeaderValue::from_static("\"abc\""));
        headers.append("x-multi", HeaderValue::from_static("two"));
        headers.append("x-multi", HeaderValue::from_static("three"));
        headers.append("x-empty", HeaderValue::from_static(""));
        Entry {
            route: "session-list".into(),
            key: "/api/teachers/7/sessions?page=2".into(),
            identity: Some("user:42".into()),
            status: StatusCode::NON_AUTHORITATIVE_INFORMATION,
            headers,
            body: Bytes::from_static(b"[{\"id\":1},{\"id\":2}] \x00\xff binary ok"),
            tags: vec![
                Tag::from("teacher:7"),
                Tag::from("#key:/x"),
                Tag::from("ünï"),
            ]
            .into_boxed_slice(),
            vary: vec![
                (
                    HeaderName::from_static("accept-language"),
                    Some(HeaderValue::from_static("fr")),
                ),
                (HeaderName::from_static("accept-encoding"), None),
            ]
            .into_boxed_slice(),
            variants: None,
            fill_stamp: Stamp(1_734_567_890_123_456),
            stored_at_micros: 1_734_567_890_223_456,
            ttl: Duration::from_secs(300),
            stale_while_revalidate: Duration::from_millis(1500),
            stale_if_error: Duration::from_micros(7),
            validate_for: Duration::from_secs(3600),
            must_revalidate: true,
            withholds: true,
        }
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        h.iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn assert_same(a: &Entry, b: &Entry) {
        assert_eq!(a.route, b.route);
        assert_eq!(a.key, b.key);
        assert_eq!(a.identity, b.identity);
        assert_eq!(a.status, b.status);
        assert_eq!(pairs(&a.headers), pairs(&b.headers));
        assert_eq!(a.body, b.body);
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.vary, b.vary);
        assert_eq!(a.variants, b.variants);
        assert_eq!(a.fill_stamp, b.fill_stamp);
        assert_eq!(a.stored_at_micros, b.stored_at_micros);
        assert_eq!(a.ttl, b.ttl);
        assert_eq!(a.stale_while_revalidate, b.stale_while_revalidate);
        assert_eq!(a.stale_if_error, b.stale_if_error);
        assert_eq!(a.validate_for, b.validate_for);
        assert_eq!(a.must_revalidate, b.must_revalidate);
        assert_eq!(a.withholds, b.withholds);
    }

    /// Today's encoding of `entry` as version 2 wrote it: without the
    /// revalidation window and flags (9 bytes after the stale windows).
    fn as_version_2(entry: &Entry) -> Vec<u8> {
        let mut raw = encode(entry).to_vec();
        raw.drain(1 + 2 + 40..1 + 2 + 40 + 9);
        raw[0] = 2;
        raw
    }

    /// What a version 2 value decodes to: no revalidation window.
    fn without_revalidation(entry: &Entry) -> Entry {
        Entry {
            validate_for: Duration::ZERO,
            must_revalidate: false,
            withholds: false,
            ..entry.clone()
        }
    }

    #[test]
    fn version_2_values_are_still_read() {
        let entry = sample();
        let decoded = decode(Bytes::from(as_version_2(&entry))).unwrap();
        assert_same(&without_revalidation(&entry), &decoded);
    }

    #[test]
    fn unknown_flags_are_an_error() {
        let mut raw = encode(&sample()).to_vec();
        raw[1 + 2 + 40 + 8] = 4;
        assert_eq!(
            decode(Bytes::from(raw)).unwrap_err(),
            DecodeError::Invalid("flags")
        );
    }

    #[test]
    fn round_trip_keeps_everything_including_repeated_headers() {
        let entry = sample();
        let encoded = encode(&entry);
        assert_eq!(encoded[0], FORMAT_VERSION);
        let decoded = decode(encoded.clone()).unwrap();
        assert_same(&entry, &decoded);
        let multi: Vec<_> = decoded.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["one", "two", "three"]);
        // Re-encoding the decoded entry gives the same bytes.
        assert_eq!(encode(&decoded), encoded);
    }

    #[test]
    fn round_trip_minimal_entry() {
        let entry = Entry {
            route: "".into(),
            key: "".into(),
            identity: None,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            tags: Box::new([]),
            vary: Box::new([]),
            variants: None,
            fill_stamp: Stamp(0),
            stored_at_micros: 0,
            ttl: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            validate_for: Duration::ZERO,
            must_revalidate: false,
            withholds: false,
        };
        assert_same(&entry, &decode(encode(&entry)).unwrap());
    }

    #[test]
    fn body_is_a_slice_of_the_buffer() {
        let mut entry = sample();
        entry.body = Bytes::from(vec![7u8; 100_000]);
        let encoded = encode(&entry);
        let range = encoded.as_ptr() as usize..encoded.as_ptr() as usize + encoded.len();
        let decoded = decode(encoded.clone()).unwrap();
        assert!(range.contains(&(decoded.body.as_ptr() as usize)));
        assert_eq!(decoded.body.len(), 100_000);
    }

    #[test]
    fn truncation_at_every_length_is_an_error() {
        let encoded = encode(&sample());
        for len in 0..encoded.len() {
            let result = decode(encoded.slice(..len));
            assert!(result.is_err(), "decoded a value truncated to {len} bytes");
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut raw = encode(&sample()).to_vec();
        raw.push(0);
        assert!(decode(Bytes::from(raw)).is_err());
    }

    #[test]
    fn variant_indexes_round_trip() {
        let variant = sample();
        let names = [
            HeaderName::from_static("accept-language"),
            HeaderName::from_static("x-tenant"),
        ];
        let index = Entry::variant_index(&variant, Box::new(names.clone()));
        let decoded = decode(encode(&index)).unwrap();
        assert_same(&index, &decoded);
        assert_eq!(decoded.variants.as_deref(), Some(&names[..]));
        assert_eq!(decode(encode(&variant)).unwrap().variants, None);
    }

    #[test]
    fn version_1_values_are_still_read() {
        // A version 1 value is version 2's without the variant-index byte.
        let entry = sample();
        let mut raw = as_version_2(&entry);
        let flag_at = 1
            + 2
            + 40
            + 1
            + entry.route.len()
            + 1
            + entry.key.len()
            + 1
            + 1
            + entry.identity.as_ref().unwrap().len();
        assert_eq!(raw.remove(flag_at), 0, "the variant-index flag");
        raw[0] = 1;
        assert_same(
            &without_revalidation(&entry),
            &decode(Bytes::from(raw)).unwrap(),
        );
    }

    #[test]
    fn wrong_version_is_an_error() {
        let mut raw = encode(&sample()).to_vec();
        for version in [0u8, FORMAT_VERSION + 1, 0x7b, 0xff] {
            raw[0] = version;
            assert_eq!(
                decode(Bytes::from(raw.clone())).unwrap_err(),
                DecodeError::Version(version)
            );
        }
        assert_eq!(decode(Bytes::new()).unwrap_err(), DecodeError::Empty);
    }

    /// A varint may use all 64 bits, and no more: the tenth byte holds the
    /// top bit alone.
    #[test]
    fn varints_hold_64_bits_exactly() {
        let varint = |tenth: u8| {
            let mut raw = vec![0xff; 9];
            raw.push(tenth);
            Reader {
                buf: Bytes::from(raw),
                pos: 0,
            }
            .varint()
        };
        assert_eq!(varint(0x01), Ok(u64::MAX));
        assert_eq!(varint(0x00), Ok(u64::MAX >> 1));
        assert_eq!(varint(0x02), Err(DecodeError::Invalid("length")));
    }

    /// An entry may list up to `MAX_ITEMS` tags (or headers, or `Vary`
    /// pairs), and no more.
    #[test]
    fn item_counts_are_bounded_inclusively() {
        let tagged = |n: usize| Entry {
            tags: (0..n).map(|_| Tag::from("t")).collect(),
            ..sample()
        };
        let most = tagged(MAX_ITEMS);
        assert_same(&most, &decode(encode(&most)).unwrap());
        assert_eq!(
            decode(encode(&tagged(MAX_ITEMS + 1))).unwrap_err(),
            DecodeError::Invalid("tags")
        );
    }

    /// The messages the store logs when a value cannot be read.
    #[test]
    fn decode_errors_say_what_is_wrong() {
        assert_eq!(DecodeError::Empty.to_string(), "empty value");
        assert_eq!(
            DecodeError::Version(9).to_string(),
            format!("unknown format version 9 (this build reads {FORMAT_VERSION})")
        );
        assert_eq!(DecodeError::Truncated.to_string(), "truncated value");
        assert_eq!(DecodeError::Invalid("status").to_string(), "invalid status");
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a9c_a0c4e);
        for _ in 0..20_000 {
            let len = rng.random_range(0..256);
            let mut raw: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) && !raw.is_empty() {
                raw[0] = FORMAT_VERSION;
            }
            let _ = decode(Bytes::from(raw));
        }
        // Bit flips of a valid value: decode or fail, never panic.
        let valid = encode(&sample()).to_vec();
        for i in 0..valid.len() {
            for bit in 0..8 {
                let mut raw = valid.clone();
                raw[i] ^= 1 << bit;
                let _ = decode(Bytes::from(raw));
            }
        }
    }

    #[test]
    fn huge_declared_lengths_are_rejected_without_allocating() {
        let mut raw = encode(&sample()).to_vec();
        // Header count position is unknown here; fake one at the tag count
        // instead by building a value whose tag count is u64::MAX.
        raw.truncate(1 + 2 + 40 + 9);
        put_bytes_vec(&mut raw, b"r");
        put_bytes_vec(&mut raw, b"k");
        raw.push(0);
        raw.push(0);
        raw.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(
            decode(Bytes::from(raw)).unwrap_err(),
            DecodeError::Truncated
        );
    }

    fn put_bytes_vec(out: &mut Vec<u8>, bytes: &[u8]) {
        let mut b = BytesMut::new();
        put_bytes(&mut b, bytes);
        out.extend_from_slice(&b);
    }

    #[test]
    fn hostile_item_counts_are_refused_without_panicking() {
        for what in ["variants", "tags", "vary", "headers"] {
            let mut out = BytesMut::new();
            out.put_u8(FORMAT_VERSION);
            out.put_u16_le(200);
            for _ in 0..6 {
                out.put_u64_le(1);
            }
            out.put_u8(0);
            put_bytes(&mut out, b"r");
            put_bytes(&mut out, b"k");
            out.put_u8(0);
            out.put_u8(u8::from(what == "variants"));
            for list in ["variants", "tags", "vary", "headers"] {
                if list == "variants" && what != "variants" {
                    continue;
                }
                put_varint(&mut out, if list == what { 30_000 } else { 0 });
                if list == what {
                    break;
                }
            }
            out.put_slice(&vec![0u8; 40_000]);
            let decoded = std::panic::catch_unwind(|| decode(out.freeze()));
            assert!(matches!(decoded, Ok(Err(_))), "{what}: {decoded:?}");
        }
    }
}
