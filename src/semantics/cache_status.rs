//! The `Cache-Status` response header (RFC 9211) and the bounded reasons
//! that appear in it and in metrics labels.

use http::HeaderValue;

/// Why a request went to the origin without consulting the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BypassReason {
    /// Not a GET or HEAD request.
    Method,
    /// The request carries `Authorization` and the route has no per-user key.
    Authorization,
    /// The request carries `Cookie` and the route has no per-user key.
    Cookie,
    /// The route's key function returned `None`.
    NoKey,
    /// The route's identity function returned `None`.
    NoIdentity,
    /// The key is longer than the route allows.
    KeyTooLong,
}

impl BypassReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [BypassReason; 6] = [
        BypassReason::Method,
        BypassReason::Authorization,
        BypassReason::Cookie,
        BypassReason::NoKey,
        BypassReason::NoIdentity,
        BypassReason::KeyTooLong,
    ];

    /// The label used in `Cache-Status` `detail` and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::Method => "method",
            BypassReason::Authorization => "authorization",
            BypassReason::Cookie => "cookie",
            BypassReason::NoKey => "no-key",
            BypassReason::NoIdentity => "no-identity",
            BypassReason::KeyTooLong => "key-too-long",
        }
    }
}

/// Why a response from the origin was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotStoredReason {
    /// The status is not one the route stores.
    Status,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: no-cache` (we do not revalidate, so we cannot reuse it).
    NoCache,
    /// `Cache-Control: private` on a route without a per-user key.
    Private,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *` or an unparsable `Vary`.
    VaryAny,
    /// `Vary` names more headers than [`super::vary::MAX_VARY_HEADERS`].
    VaryTooWide,
    /// The body is larger than the route's `max_body_bytes`.
    TooLarge,
    /// The freshness lifetime works out to zero.
    ZeroTtl,
    /// The body ended with trailers, which are not stored.
    Trailers,
    /// A HEAD request missed; its bodiless response cannot fill a GET entry.
    Head,
    /// The body failed while streaming.
    BodyError,
    /// A tag of the response was invalidated while it was being produced.
    Invalidated,
    /// The request said `Cache-Control: no-store`.
    RequestNoStore,
    /// The response names no lifetime and has none by heuristic
    /// ([`Freshness::Origin`](crate::Freshness::Origin)).
    NoFreshness,
    /// The request carried `Authorization` and the response did not say it
    /// may be shared (RFC 9111 §3.5).
    Authorization,
    /// The response has more tags than an entry may carry (a long tags
    /// header, say): stored without some of them, invalidating those would
    /// not reach it.
    TooManyTags,
}

impl NotStoredReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [NotStoredReason; 17] = [
        NotStoredReason::Status,
        NotStoredReason::NoStore,
        NotStoredReason::NoCache,
        NotStoredReason::Private,
        NotStoredReason::SetCookie,
        NotStoredReason::VaryAny,
        NotStoredReason::VaryTooWide,
        NotStoredReason::TooLarge,
        NotStoredReason::ZeroTtl,
        NotStoredReason::Trailers,
        NotStoredReason::Head,
        NotStoredReason::BodyError,
        NotStoredReason::Invalidated,
        NotStoredReason::RequestNoStore,
        NotStoredReason::NoFreshness,
        NotStoredReason::Authorization,
        NotStoredReason::TooManyTags,
    ];

    /// Whether the reason belongs to what the origin answers for the key
    /// (its headers, its size), so the next response will most likely be
    /// the same: a herd is then better sent to the origin at once than
    /// queued behind one request whose answer it cannot share. Not a
    /// status (a 5xx is often brief, and coalescing shields a failing
    /// origin), nor anything about this one request or exchange.
    pub fn lasts(self) -> bool {
        match self {
            NotStoredReason::NoStore
            | NotStoredReason::NoCache
            | NotStoredReason::Private
            | NotStoredReason::SetCookie
            | NotStoredReason::VaryAny
            | NotStoredReason::VaryTooWide
            | NotStoredReason::TooLarge
            | NotStoredReason::ZeroTtl
            | NotStoredReason::Trailers
            | NotStoredReason::NoFreshness
            | NotStoredReason::TooManyTags => true,
            NotStoredReason::Status
            | NotStoredReason::Head
            | NotStoredReason::BodyError
            | NotStoredReason::Invalidated
            | NotStoredReason::RequestNoStore
            | NotStoredReason::Authorization => false,
        }
    }

    /// The label used in `Cache-Status` `detail` and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NotStoredReason::Status => "status",
            NotStoredReason::NoStore => "no-store",
            NotStoredReason::NoCache => "no-cache",
            NotStoredReason::Private => "private",
            NotStoredReason::SetCookie => "set-cookie",
            NotStoredReason::VaryAny => "vary-any",
            NotStoredReason::VaryTooWide => "vary-too-wide",
            NotStoredReason::TooLarge => "too-large",
            NotStoredReason::ZeroTtl => "zero-ttl",
            NotStoredReason::Trailers => "trailers",
            NotStoredReason::Head => "head",
            NotStoredReason::BodyError => "body-error",
            NotStoredReason::Invalidated => "invalidated",
            NotStoredReason::RequestNoStore => "request-no-store",
            NotStoredReason::NoFreshness => "no-freshness",
            NotStoredReason::Authorization => "authorization",
            NotStoredReason::TooManyTags => "too-many-tags",
        }
    }
}

/// Writes one `Cache-Status` member: `name; param; param=value ...`.
///
/// ```
/// use tagcache::semantics::cache_status::CacheStatus;
///
/// let value = CacheStatus::new("tagcache").hit().ttl(120).finish();
/// assert_eq!(value, "tagcache; hit; ttl=120");
/// ```
#[derive(Debug)]
pub struct CacheStatus {
    buf: Buf,
}

/// The text being written: on the stack while it fits (it always does for
/// reasonable cache names), so a hit pays one allocation for the header.
#[derive(Debug)]
struct Buf {
    inline: [u8; 96],
    len: usize,
    spilled: Option<Vec<u8>>,
}

impl Buf {
    fn push(&mut self, text: &str) {
        let bytes = text.as_bytes();
        if let Some(spilled) = &mut self.spilled {
            spilled.extend_from_slice(bytes);
        } else if self.len + bytes.len() <= self.inline.len() {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            let mut spilled = self.inline[..self.len].to_vec();
            spilled.extend_from_slice(bytes);
            self.spilled = Some(spilled);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.spilled {
            Some(spilled) => spilled,
            None => &self.inline[..self.len],
        }
    }
}

impl CacheStatus {
    /// Starts a member for the cache called `name`.
    pub fn new(name: &str) -> Self {
        let mut buf = Buf {
            inline: [0; 96],
            len: 0,
            spilled: None,
        };
        buf.push(name);
        Self { buf }
    }

    fn param(mut self, param: &str) -> Self {
        self.buf.push("; ");
        self.buf.push(param);
        self
    }

    /// `hit`: answered from the cache.
    pub fn hit(self) -> Self {
        self.param("hit")
    }

    /// `fwd=<reason>`: forwarded to the origin (`bypass`, `method`,
    /// `uri-miss`, `vary-miss`, `miss`, `request`, `stale`).
    pub fn fwd(self, reason: &str) -> Self {
        self.param("fwd=").raw(reason)
    }

    /// `fwd-status=<status>`: what the origin answered.
    pub fn fwd_status(self, status: u16) -> Self {
        self.param("fwd-status=")
            .raw(itoa::Buffer::new().format(status))
    }

    /// `ttl=<seconds>`: remaining freshness (negative when stale).
    pub fn ttl(self, seconds: i64) -> Self {
        self.param("ttl=").raw(itoa::Buffer::new().format(seconds))
    }

    /// `stored`: the response was (or is being) stored.
    pub fn stored(self) -> Self {
        self.param("stored")
    }

    /// `collapsed`: the request waited for another request's origin call.
    pub fn collapsed(self) -> Self {
        self.param("collapsed")
    }

    /// `detail=<token>`.
    pub fn detail(self, detail: &str) -> Self {
        self.param("detail=").raw(detail)
    }

    fn raw(mut self, text: &str) -> Self {
        self.buf.push(text);
        self
    }

    /// The header value.
    pub fn finish(self) -> HeaderValue {
        HeaderValue::from_bytes(self.buf.as_bytes())
            .expect("cache name and tokens are valid header text")
    }
}

/// Whether `name` can stand as a Cache-Status cache name (an RFC 8941 token).
pub fn is_valid_cache_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '*')
        && chars.all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_members() {
        assert_eq!(
            CacheStatus::new("tagcache")
                .fwd("uri-miss")
                .stored()
                .finish(),
            "tagcache; fwd=uri-miss; stored"
        );
        assert_eq!(
            CacheStatus::new("edge")
                .fwd("bypass")
                .detail("authorization")
                .finish(),
            "edge; fwd=bypass; detail=authorization"
        );
        assert_eq!(
            CacheStatus::new("c").hit().fwd("stale").ttl(-3).finish(),
            "c; hit; fwd=stale; ttl=-3"
        );
        assert_eq!(
            CacheStatus::new("c").fwd("miss").fwd_status(500).finish(),
            "c; fwd=miss; fwd-status=500"
        );
    }

    #[test]
    fn long_names_spill_to_the_heap() {
        let name = format!("c{}", "x".repeat(200));
        let value = CacheStatus::new(&name).hit().ttl(5).finish();
        assert_eq!(value, format!("{name}; hit; ttl=5").as_str());
    }

    /// A member is written on the stack up to its 96 bytes exactly; only
    /// a longer one moves to the heap.
    #[test]
    fn members_that_fit_stay_on_the_stack() {
        let fits = CacheStatus::new(&"c".repeat(91)).hit();
        assert!(fits.buf.spilled.is_none());
        assert_eq!(fits.finish(), format!("{}; hit", "c".repeat(91)).as_str());
        let over = CacheStatus::new(&"c".repeat(92)).hit();
        assert!(over.buf.spilled.is_some());
        assert_eq!(over.finish(), format!("{}; hit", "c".repeat(92)).as_str());
    }

    #[test]
    fn cache_names() {
        assert!(is_valid_cache_name("tagcache"));
        assert!(is_valid_cache_name("my-app.cache"));
        assert!(!is_valid_cache_name(""));
        assert!(!is_valid_cache_name("has space"));
        assert!(!is_valid_cache_name("1abc"));
    }
}
