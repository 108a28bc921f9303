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

/// A copy of `value` in an allocation of its own, exactly its size.
///
/// A `HeaderValue` (or `Bytes`) taken from a request or a response can be a
/// slice of a much larger buffer (the connection's read buffer, a body grown
/// by doubling). Kept in an entry as it is, it would keep that whole buffer
/// alive while the store weighs only its length, so whatever an entry keeps
/// is copied when the entry is made.
pub fn own_value(value: &HeaderValue) -> HeaderValue {
    let mut owned = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
        .expect("the bytes of a header value are a valid header value");
    owned.set_sensitive(value.is_sensitive());
    owned
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
    /// How long after expiry it is kept to be revalidated with a
    /// conditional request (responses with a validator, in
    /// [`Freshness::Origin`](crate::Freshness::Origin)).
    pub validate_for: Duration,
    /// The origin forbade serving it stale without revalidation
    /// (`must-revalidate`, `proxy-revalidate`, `s-maxage`, `no-cache`),
    /// whatever staleness a client accepts.
    pub must_revalidate: bool,
    /// Its headers hold fields that are removed from every answer (fields
    /// meant for this cache alone, such as `Tagcache-Cache-Control`, kept
    /// to judge a later 304 by): answers from entries without any skip
    /// looking for them.
    pub withholds: bool,
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
            validate_for: variant.validate_for,
            must_revalidate: variant.must_revalidate,
            withholds: false,
        }
    }

    /// A copy whose body and header values have allocations of their own,
    /// exactly their size: for an entry decoded from a larger buffer (a
    /// value read from Redis, whose body and headers are slices of it) that
    /// is about to be kept for long, so it keeps no more than it weighs.
    pub fn compacted(&self) -> Entry {
        let mut headers = HeaderMap::with_capacity(self.headers.keys_len());
        for (name, value) in &self.headers {
            headers.append(name.clone(), own_value(value));
        }
        Entry {
            headers,
            body: Bytes::copy_from_slice(&self.body),
            vary: self
                .vary
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(own_value)))
                .collect(),
            ..self.clone()
        }
    }

    /// Wall time (µs) at which the entry stops being fresh.
    pub fn fresh_until_micros(&self) -> u64 {
        self.stored_at_micros.saturating_add(micros(self.ttl))
    }

    /// How long the store must keep the entry after storing it: its TTL
    /// plus the longest of its stale windows and its revalidation window.
    pub fn retention(&self) -> Duration {
        let after = self
            .stale_while_revalidate
            .max(self.stale_if_error)
            .max(self.validate_for);
        self.ttl.saturating_add(after)
    }

    /// The memory this entry keeps alive, in bytes, for byte-bounded
    /// stores: every allocation it owns at its allocated size, plus the
    /// allocator's bookkeeping and the store's own per-entry cost, so that
    /// a store bounded at N bytes holds about N bytes of process memory.
    ///
    /// Exact for entries made by the layers, which copy whatever they keep
    /// into allocations of its own size (see [`own_value`]); the route name
    /// is shared by every entry of a route and not counted. Header names
    /// are counted as if each had an allocation of its own, which standard
    /// names do not: the error is on the safe side.
    pub fn weight(&self) -> u64 {
        use std::mem::size_of;
        let headers: usize = header_map_bytes(&self.headers)
            + self
                .headers
                .iter()
                .map(|(name, value)| heap(name.as_str().len()) + shared_bytes(value.len()))
                .sum::<usize>();
        let tags: usize = heap(self.tags.len() * size_of::<Tag>())
            + self.tags.iter().map(|t| heap(t.len())).sum::<usize>();
        let vary: usize = heap(self.vary.len() * size_of::<(HeaderName, Option<HeaderValue>)>())
            + self
                .vary
                .iter()
                .map(|(n, v)| heap(n.as_str().len()) + v.as_ref().map_or(0, |v| heap(v.len())))
                .sum::<usize>();
        let variants: usize = self.variants.as_ref().map_or(0, |names| {
            heap(names.len() * size_of::<HeaderName>())
                + names.iter().map(|n| heap(n.as_str().len())).sum::<usize>()
        });
        // The route name is shared by a route's entries, unless this entry
        // was decoded on its own.
        let route = match Arc::strong_count(&self.route) {
            1 => heap(2 * size_of::<usize>() + self.route.len()),
            _ => 0,
        };
        let own = heap(2 * size_of::<usize>() + size_of::<Self>())
            + route
            + heap(self.key.len())
            + self.identity.as_ref().map_or(0, |i| heap(i.len()));
        (own + headers + shared_bytes(self.body.len()) + tags + vary + variants + STORE_SLOT) as u64
    }
}

#[cfg(test)]
impl Entry {
    /// An empty 200 response for route `r`, key `k`, filled at stamp 1 and
    /// fresh for a minute: unit tests change what they look at.
    pub(crate) fn for_test() -> Entry {
        Entry {
            route: "r".into(),
            key: "k".into(),
            identity: None,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            tags: Box::new([]),
            vary: Box::new([]),
            variants: None,
            fill_stamp: Stamp(1),
            stored_at_micros: 0,
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            validate_for: Duration::ZERO,
            must_revalidate: false,
            withholds: false,
        }
    }
}

/// What the allocator keeps per allocation besides the bytes asked for
/// (glibc: an 8-byte header, 16-byte granules; other allocators are alike).
const ALLOCATION_OVERHEAD: usize = 16;
/// What a store keeps per entry besides the entry (the cache crate's slot,
/// its table and ghost list; about 90 bytes measured for the memory store).
const STORE_SLOT: usize = 96;

/// An allocation of `len` bytes, as the process pays for it.
fn heap(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        len + ALLOCATION_OVERHEAD
    }
}

/// A `Bytes` of `len` bytes in an allocation of its own that has been
/// cloned (as every hit clones the body and the header values): the buffer
/// plus the shared header its first clone allocates.
fn shared_bytes(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        heap(len) + heap(3 * std::mem::size_of::<usize>())
    }
}

/// The tables of a `HeaderMap` (its values counted apart): an index of
/// 4-byte slots, a power of two with room for a quarter more than its
/// capacity, and one bucket per capacity slot (a name, a value, a hash and
/// the links to repeated values); repeated values take a node each.
fn header_map_bytes(headers: &HeaderMap) -> usize {
    use std::mem::size_of;
    if headers.capacity() == 0 {
        return 0;
    }
    let bucket = size_of::<HeaderName>() + size_of::<HeaderValue>() + 4 * size_of::<usize>();
    let extra = size_of::<HeaderValue>() + 4 * size_of::<usize>();
    let slots = (headers.capacity() + headers.capacity() / 3).next_power_of_two();
    let repeated = headers.len() - headers.keys_len();
    heap(slots * 4) + heap(headers.capacity() * bucket) + heap(repeated * extra)
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
    fn compacted_entries_keep_nothing_of_the_buffer_they_came_from() {
        let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_maybe_shared(buffer.slice(10..20)).unwrap();
        headers.insert("x-slice", value.clone());
        let entry = Entry {
            headers,
            body: buffer.slice(100..200),
            vary: vec![(HeaderName::from_static("x-slice"), Some(value))].into_boxed_slice(),
            ..Entry::for_test()
        };
        let compact = entry.compacted();
        let within = |ptr: *const u8| buffer.as_ptr_range().contains(&ptr);
        assert!(!within(compact.body.as_ptr()));
        assert_eq!(compact.body, entry.body);
        let header = compact.headers.get("x-slice").unwrap();
        assert!(!within(header.as_bytes().as_ptr()));
        let vary = compact.vary[0].1.as_ref().unwrap();
        assert!(!within(vary.as_bytes().as_ptr()));
        assert_eq!(header, "xxxxxxxxxx");
        assert!(compact.weight() < 2048, "weighs {}", compact.weight());
    }

    #[test]
    fn key_hashes_render_as_32_hex_digits() {
        assert_eq!(KeyHash(0xab).to_hex(), format!("{}ab", "0".repeat(30)));
        assert_eq!(KeyHash(u128::MAX).to_hex(), "f".repeat(32));
    }

    /// "Without allocating": a key that fits the buffer is hashed from the
    /// stack, and only one that does not moves to the streaming hasher.
    #[test]
    fn keys_that_fit_the_buffer_do_not_spill() {
        let mut fits = KeyHasher::default();
        // Two 8-byte length prefixes and parts that fill the 384 bytes exactly.
        fits.part(&[b'a'; 100]).part(&[b'b'; 384 - 16 - 100]);
        assert!(fits.streaming.is_none());
        let mut spills = KeyHasher::default();
        spills.part(&[b'a'; 100]).part(&[b'b'; 384 - 16 - 100 + 1]);
        assert!(spills.streaming.is_some());
    }

    /// The store keeps an entry for its TTL and the longer stale window,
    /// whichever of the two that is.
    #[test]
    fn retention_is_the_ttl_and_the_longer_stale_window() {
        let entry = |swr: u64, sie: u64| Entry {
            ttl: Duration::from_secs(60),
            stale_while_revalidate: Duration::from_secs(swr),
            stale_if_error: Duration::from_secs(sie),
            ..Entry::for_test()
        };
        assert_eq!(entry(10, 30).retention(), Duration::from_secs(90));
        assert_eq!(entry(40, 5).retention(), Duration::from_secs(100));
        assert_eq!(entry(0, 0).retention(), Duration::from_secs(60));
        let forever = Entry {
            ttl: Duration::MAX,
            stale_if_error: Duration::from_secs(1),
            ..Entry::for_test()
        };
        assert_eq!(forever.retention(), Duration::MAX);
    }

    /// An allocation costs its bytes and the allocator's 16; a cloned
    /// `Bytes` also its shared header of three words.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn allocations_cost_their_bytes_and_the_allocators_overhead() {
        assert_eq!(heap(0), 0);
        assert_eq!(heap(10), 26);
        assert_eq!(shared_bytes(0), 0);
        assert_eq!(shared_bytes(10), 26 + 24 + 16);
    }

    /// The bare entry: its `Arc` allocation (two counters and the entry), a
    /// route name of its own (an `Arc<str>`: two counters and the bytes),
    /// the key and the store's slot.
    #[test]
    fn a_bare_entry_weighs_its_own_allocations_and_the_store_slot() {
        use std::mem::size_of;
        let entry = Entry::for_test();
        let expected = heap(2 * size_of::<usize>() + size_of::<Entry>())
            + heap(2 * size_of::<usize>() + "r".len())
            + heap("k".len())
            + STORE_SLOT;
        assert_eq!(entry.weight(), expected as u64);
        // A route name shared with the route's other entries is not counted.
        let _route = entry.route.clone();
        assert_eq!(
            entry.weight(),
            (expected - heap(2 * size_of::<usize>() + 1)) as u64
        );
    }

    /// Each thing an entry keeps adds what its allocations cost, and only
    /// that.
    #[test]
    fn each_part_of_an_entry_adds_its_allocations() {
        use std::mem::size_of;
        let bare = Entry::for_test().weight();
        let added = |entry: Entry| entry.weight() as i64 - bare as i64;
        let name = HeaderName::from_static("accept-language");

        let key = Entry {
            key: "k123".into(),
            ..Entry::for_test()
        };
        assert_eq!(added(key), 3);
        let identity = Entry {
            identity: Some("user:1".into()),
            ..Entry::for_test()
        };
        assert_eq!(added(identity), heap(6) as i64);
        let body = Entry {
            body: Bytes::from(vec![b'x'; 100]),
            ..Entry::for_test()
        };
        assert_eq!(added(body), shared_bytes(100) as i64);
        let tags = Entry {
            tags: vec!["a".into(), "bb".into()].into_boxed_slice(),
            ..Entry::for_test()
        };
        assert_eq!(
            added(tags),
            (heap(2 * size_of::<Tag>()) + heap(1) + heap(2)) as i64
        );
        let vary = Entry {
            vary: vec![
                (name.clone(), Some(HeaderValue::from_static("de"))),
                (HeaderName::from_static("x-a"), None),
            ]
            .into_boxed_slice(),
            ..Entry::for_test()
        };
        let pairs = heap(2 * size_of::<(HeaderName, Option<HeaderValue>)>());
        assert_eq!(
            added(vary),
            (pairs + heap(name.as_str().len()) + heap(2) + heap(3)) as i64
        );
        let variants = Entry {
            variants: Some(vec![name.clone(), HeaderName::from_static("x-a")].into()),
            ..Entry::for_test()
        };
        assert_eq!(
            added(variants),
            (heap(2 * size_of::<HeaderName>()) + heap(name.as_str().len()) + heap(3)) as i64
        );
        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_static("1234"));
        let tables = header_map_bytes(&map);
        let headers = Entry {
            headers: map,
            ..Entry::for_test()
        };
        assert_eq!(added(headers), (tables + heap(3) + shared_bytes(4)) as i64);
    }

    /// A header map's tables: for capacity `c`, an index of 4-byte slots
    /// (a power of two, `c` being three quarters of it, or all of it for
    /// the maps of one or two headers that compacting makes) and `c`
    /// buckets; a repeated value adds a node.
    #[test]
    fn header_maps_weigh_their_tables() {
        use std::mem::size_of;
        let bucket = size_of::<HeaderName>() + size_of::<HeaderValue>() + 4 * size_of::<usize>();
        let node = size_of::<HeaderValue>() + 4 * size_of::<usize>();
        assert_eq!(header_map_bytes(&HeaderMap::new()), 0);

        let mut map = HeaderMap::new();
        map.insert("x-a", HeaderValue::from_static("1"));
        assert_eq!(map.capacity(), 6);
        assert_eq!(header_map_bytes(&map), heap(8 * 4) + heap(6 * bucket));
        map.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(
            header_map_bytes(&map),
            heap(8 * 4) + heap(6 * bucket) + heap(node)
        );

        for (capacity, slots) in [(1, 1), (2, 2)] {
            let small = HeaderMap::<HeaderValue>::with_capacity(capacity);
            assert_eq!(small.capacity(), capacity);
            assert_eq!(
                header_map_bytes(&small),
                heap(slots * 4) + heap(capacity * bucket)
            );
        }
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
