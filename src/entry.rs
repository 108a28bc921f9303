//! The stored response and the key it is stored under.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

use crate::stamp::{micros, Stamp};

/// A tag: a name for a piece of data a response depends on (`teacher:7`).
pub type Tag = Box<str>;

/// The fixed-length identity of a stored response: a 128-bit hash of the
/// route, the user key, the identity (for per-user routes) and the values of
/// the request headers the route varies on.
///
/// Stores index by this hash so a hostile URL cannot create a huge store key;
/// the readable key, the identity and the request header values the response
/// varies on are kept inside the [`Entry`] and compared on every hit, so even
/// a hash collision cannot serve one request's response for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub u128);

impl KeyHash {
    /// Hex rendering, 32 characters (used by stores that need a string key).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// Builds a [`KeyHash`] without allocating: every part is length-prefixed so
/// that `("ab", "c")` and `("a", "bc")` never hash alike.
///
/// Parts are gathered on the stack and hashed in one call (much cheaper than
/// setting up a streaming state for a short key); a key that outgrows the
/// buffer moves to the streaming hasher, which gives the same digest for
/// the same bytes.
pub(crate) struct KeyHasher {
    inline: [u8; 384],
    len: usize,
    streaming: Option<Box<Xxh3Default>>,
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher {
            inline: [0; 384],
            len: 0,
            streaming: None,
        }
    }
}

impl KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(streaming) = &mut self.streaming {
            streaming.update(bytes);
        } else if self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut streaming = Box::new(Xxh3Default::new());
            streaming.update(&self.inline[..self.len]);
            streaming.update(bytes);
            self.streaming = Some(streaming);
        }
    }

    pub(crate) fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
        self
    }

    pub(crate) fn absent(&mut self) -> &mut Self {
        self.write(&u64::MAX.to_le_bytes());
        self
    }

    pub(crate) fn finish(&self) -> KeyHash {
        KeyHash(match &self.streaming {
            Some(streaming) => streaming.digest128(),
            None => xxh3_128(&self.inline[..self.len]),
        })
    }
}

/// One stored response and everything needed to decide whether it may answer
/// a request.
///
/// Entries are immutable and shared as `Arc<Entry>`: a hit clones the `Bytes`
/// body (a reference count, not a copy) and the prebuilt header map.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The route (metrics name) that stored it.
    pub route: Arc<str>,
    /// The readable key returned by the route's key function.
    pub key: Box<str>,
    /// The identity named by a per-user route's key, if any.
    pub identity: Option<Box<str>>,
    /// Response status.
    pub status: StatusCode,
    /// Response headers as the origin sent them (order and repeats kept).
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
    /// Tags the response depends on, including the implicit key tag.
    pub tags: Box<[Tag]>,
    /// For each request header that selects this response (the route's own
    /// and those named by the response's `Vary`), the request value the
    /// response was produced for.
    pub vary: Box<[(HeaderName, Option<HeaderValue>)]>,
    /// `Some(names)` makes this entry a *variant index* rather than a
    /// response: the key's responses vary on these request headers (named
    /// by their `Vary`, beyond the ones the route selects on anyway), and
    /// each variant is stored under the key hash that adds the request's
    /// values of them. An index is never served; see
    /// [`Entry::variant_index`].
    pub variants: Option<Box<[HeaderName]>>,
    /// Stamp taken before the origin call started.
    pub fill_stamp: Stamp,
    /// When the response was stored, microseconds since the Unix epoch.
    pub stored_at_micros: u64,
    /// How long the entry is fresh after `stored_at_micros`.
    pub ttl: Duration,
    /// How long after expiry it may be served while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// How long after expiry it may be served when the origin fails.
    pub stale_if_error: Duration,
}

impl Entry {
    /// The variant index for the key `variant` was stored under: it names
    /// the request headers the key's responses vary on, and lives as long
    /// as the variant. Stored under the key's own hash, it is what lets a
    /// request find its variant without the route having to know the names
    /// beforehand.
    pub fn variant_index(variant: &Entry, names: Box<[HeaderName]>) -> Entry {
        Entry {
            route: variant.route.clone(),
            key: variant.key.clone(),
            identity: variant.identity.clone(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            tags: Box::new([]),
            vary: Box::new([]),
            variants: Some(names),
            fill_stamp: variant.fill_stamp,
            stored_at_micros: variant.stored_at_micros,
            ttl: variant.ttl,
            stale_while_revalidate: variant.stale_while_revalidate,
            stale_if_error: variant.stale_if_error,
        }
    }

    /// Wall time (µs) at which the entry stops being fresh.
    pub fn fresh_until_micros(&self) -> u64 {
        self.stored_at_micros.saturating_add(micros(self.ttl))
    }

    /// How long the store must keep the entry after storing it: its TTL
    /// plus the longer of its stale windows.
    pub fn retention(&self) -> Duration {
        self.ttl
            .saturating_add(self.stale_while_revalidate.max(self.stale_if_error))
    }

    /// Approximate memory cost in bytes, for byte-bounded stores.
    pub fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + 16).sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len()) + 32)
            .sum();
        let variants: usize = self
            .variants
            .iter()
            .flat_map(|names| names.iter())
            .map(|n| n.as_str().len() + 32)
            .sum();
        (std::mem::size_of::<Self>()
            + self.route.len()
            + self.key.len()
            + self.identity.as_ref().map_or(0, |i| i.len())
            + headers
            + self.body.len()
            + tags
            + vary
            + variants
            + 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_hash_like_short_ones_would() {
        let long = "k".repeat(2000);
        let mut spilled = KeyHasher::default();
        spilled.part(b"route").part(long.as_bytes()).absent();
        let mut expected = Vec::new();
        for part in [&b"route"[..], long.as_bytes()] {
            expected.extend_from_slice(&(part.len() as u64).to_le_bytes());
            expected.extend_from_slice(part);
        }
        expected.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(spilled.finish(), KeyHash(xxh3_128(&expected)));
    }

    #[test]
    fn parts_are_delimited() {
        let hash = |a: &str, b: &str| {
            let mut h = KeyHasher::default();
            h.part(a.as_bytes()).part(b.as_bytes());
            h.finish()
        };
        assert_ne!(hash("ab", "c"), hash("a", "bc"));
        assert_eq!(hash("ab", "c"), hash("ab", "c"));
    }
}
