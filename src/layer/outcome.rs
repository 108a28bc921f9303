//! How a request was answered. Each answer is one [`Outcome`], whose
//! [`report`](Outcome::report) both counts it in the route's metrics and
//! writes its `Cache-Status`, so the two never disagree.

use http::HeaderValue;

use super::header_values::hit_status;
use super::respond::stale_ttl;
use super::route::CacheRoute;
use crate::entry::Entry;
use crate::semantics::cache_status::CacheStatus;
use crate::semantics::verdict::MissKind;
use crate::semantics::{BypassReason, NotStoredReason};

pub(crate) enum Outcome<'a> {
    /// Answered from a fresh entry at `now` (µs).
    Hit { entry: &'a Entry, now: u64 },
    /// Answered from an entry that had been stale for `stale_for` µs.
    Stale { stale_for: u64, cause: StaleCause },
    /// Waited for another request's origin call and took its response.
    Collapsed(MissKind),
    /// Went to the origin because of `kind`; `storing` says what became of
    /// the response.
    Forwarded { kind: MissKind, storing: Storing },
    /// Revalidated a stale entry: the origin answered the conditional
    /// request with 304, and the entry (updated) answered.
    Revalidated { kind: MissKind, storing: Storing },
    /// Went to the origin without the cache being consulted.
    Bypass(BypassReason),
    /// Nothing stored could answer, and the client asked for a stored
    /// answer only (`only-if-cached`): 504, the origin is not called.
    OnlyIfCached(MissKind),
}

/// Why a stale entry answered.
pub(crate) enum StaleCause {
    /// Stale-while-revalidate: a refresh runs in the background.
    Revalidating,
    /// Stale-if-error: the origin failed, with this status if it answered.
    OriginFailed { status: Option<u16> },
}

/// What became of a forwarded response, as far as is known when its head
/// goes out.
pub(crate) enum Storing {
    /// It is being stored (its body is known to fit).
    Yes,
    /// It is being recorded, but whether it fits is known only at its end.
    Unknown,
    /// It is not stored, for this reason.
    No(NotStoredReason),
    /// It is not stored because the store could not be used.
    StoreDown,
}

impl Outcome<'_> {
    /// Counts the outcome and returns its `Cache-Status` value.
    #[inline]
    pub(crate) fn report(self, route: &CacheRoute) -> HeaderValue {
        let metrics = &route.metrics;
        let name = route.cache.name();
        match self {
            Outcome::Hit { entry, now } => {
                metrics.hit();
                hit_status(name, entry, now)
            }
            Outcome::Stale { stale_for, cause } => {
                metrics.stale();
                let status = CacheStatus::new(name).hit().fwd("stale");
                match cause {
                    StaleCause::Revalidating => status.ttl(stale_ttl(stale_for)),
                    StaleCause::OriginFailed { status: origin } => {
                        let status = match origin {
                            Some(origin) => status.fwd_status(origin),
                            None => status,
                        };
                        status.ttl(stale_ttl(stale_for)).detail("stale-if-error")
                    }
                }
                .finish()
            }
            Outcome::Collapsed(kind) => {
                metrics.collapsed();
                CacheStatus::new(name).fwd(kind.fwd()).collapsed().finish()
            }
            Outcome::Forwarded { kind, storing } => {
                let status = CacheStatus::new(name).fwd(kind.fwd());
                let status = match storing {
                    Storing::Yes => with_detail(status.stored(), kind.detail()),
                    Storing::Unknown => with_detail(status, kind.detail()),
                    Storing::No(reason) => {
                        metrics.not_stored(reason);
                        status.detail(reason.as_str())
                    }
                    Storing::StoreDown => status.detail("store-error"),
                };
                status.finish()
            }
            Outcome::Revalidated { kind, storing } => {
                metrics.revalidated();
                let status = CacheStatus::new(name).fwd(kind.fwd()).fwd_status(304);
                match storing {
                    Storing::Yes => status.stored(),
                    Storing::Unknown => status,
                    Storing::No(reason) => {
                        metrics.not_stored(reason);
                        status.detail(reason.as_str())
                    }
                    Storing::StoreDown => status.detail("store-error"),
                }
                .finish()
            }
            Outcome::OnlyIfCached(kind) => CacheStatus::new(name)
                .fwd(kind.fwd())
                .detail("only-if-cached")
                .finish(),
            Outcome::Bypass(reason) => {
                metrics.bypass(reason);
                tracing::debug!(route = %route.name, reason = reason.as_str(), "tagcache bypass");
                let status = CacheStatus::new(name);
                // RFC 9211 names the method case itself; other bypasses say why.
                match reason {
                    BypassReason::Method => status.fwd("method"),
                    _ => status.fwd("bypass").detail(reason.as_str()),
                }
                .finish()
            }
        }
    }
}

fn with_detail(status: CacheStatus, detail: Option<&str>) -> CacheStatus {
    match detail {
        Some(detail) => status.detail(detail),
        None => status,
    }
}
