//! Sharing one origin call per key: joining the key's flight as leader or
//! waiter, and the stale-while-revalidate refresh that only a leader runs.

use std::future::poll_fn;
use std::pin::pin;

use bytes::Bytes;
use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::fill::Forward;
use super::fleet::Settled;
use super::outcome::Outcome;
use crate::coalesce::{FlightEnd, Role};
use crate::semantics::verdict::{MissKind, Verdict};
use crate::stamp::now_micros;

/// A waiter that keeps finding its flight abandoned or overtaken by an
/// invalidation goes to the origin on its own after this many tries.
const MAX_JOINS: usize = 3;

/// Joins the key's flight: leads it, or waits and shares its response.
pub(crate) async fn coalesced<S, ReqB, ResB>(
    mut forward: Forward<S, ReqB>,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes>,
{
    let route = forward.route.clone();
    let coalescer = route.cache.coalescer();
    for _ in 0..MAX_JOINS {
        let flight = match coalescer.join(forward.hash) {
            // A range request takes its part of a flight's response, but
            // never leads one: the origin's partial answer could serve no
            // one else.
            Role::Leader(guard) if forward.parts.headers.contains_key(RANGE) => {
                drop(guard);
                return forward.fill(None).await;
            }
            Role::Leader(mut guard) => {
                // The store just failed: asking it again is no use.
                if forward.kind == MissKind::StoreError {
                    return forward.fill(Some(guard)).await;
                }
                return match forward.leader().settle(&mut guard, true).await {
                    Settled::Found { entry, waited } => {
                        guard.share(entry.clone());
                        let now = now_micros();
                        let outcome = if waited {
                            Outcome::Collapsed(forward.kind)
                        } else {
                            Outcome::Hit { entry: &entry, now }
                        };
                        let status = outcome.report(&route);
                        Ok(forward.answer(&entry, false, now, status))
                    }
                    Settled::Lead | Settled::Elsewhere => forward.fill(Some(guard)).await,
                    Settled::Alone { lasting } => {
                        guard.not_shareable(lasting);
                        if lasting {
                            route.metrics.pass();
                        }
                        forward.fill(None).await
                    }
                };
            }
            Role::Waiter(flight) => flight,
        };
        let outcome = tokio::time::timeout(route.options.coalesce_timeout, flight.outcome()).await;
        match outcome {
            Ok(FlightEnd::Shared(shared)) => {
                let now = now_micros();
                match forward.judge(Some(shared.clone()), now) {
                    Verdict::Fresh(entry) => {
                        let status = Outcome::Collapsed(forward.kind).report(&route);
                        return Ok(forward.answer(&entry, false, now, status));
                    }
                    // Stored to be revalidated before every use (`no-cache`):
                    // the flight's response is that validation.
                    Verdict::Validate(entry, _) if entry.ttl.is_zero() => {
                        let status = Outcome::Collapsed(forward.kind).report(&route);
                        return Ok(forward.answer(&entry, false, now, status));
                    }
                    // Overtaken by an invalidation (or already stale): this
                    // request must not take it. Start a fresh flight.
                    Verdict::Stale(_)
                    | Verdict::Validate(..)
                    | Verdict::Miss(MissKind::Invalidated | MissKind::Stale) => {
                        coalescer.retire(forward.hash, &flight);
                    }
                    // Another variant of a key that turned out to vary: join
                    // (or lead) the flight of this request's own variant.
                    Verdict::Miss(MissKind::Vary) => match forward.variant_of(&shared) {
                        Some(variant) if variant != forward.hash => forward.hash = variant,
                        _ => return forward.fill(None).await,
                    },
                    // Not ours to share.
                    Verdict::Miss(_) => return forward.fill(None).await,
                }
            }
            // Not stored (the store is down), but the leader's response
            // is this request's if nothing was invalidated since its origin
            // call began.
            Ok(FlightEnd::Unstored { entry, generation }) => {
                if route.takes_unstored(&entry, generation, &forward.selector()) {
                    let now = now_micros();
                    let status = Outcome::Collapsed(forward.kind).report(&route);
                    return Ok(forward.answer(&entry, false, now, status));
                }
                return forward.fill(None).await;
            }
            // Not shareable: each waiter asks the origin itself.
            Ok(FlightEnd::NotShareable) => return forward.fill(None).await,
            // The wait ran out: stop others queueing behind the stuck flight,
            // then ask the origin (and store the answer) without waiting more.
            Err(_) => {
                coalescer.retire(forward.hash, &flight);
                return forward.fill(None).await;
            }
            Ok(FlightEnd::Abandoned) => {}
        }
    }
    forward.fill(None).await
}

/// Serves stale now, refreshes once in the background: only the request that
/// leads the key's flight refreshes, however many see the entry stale.
pub(crate) fn revalidate_in_background<S, ReqB, ResB>(mut forward: Forward<S, ReqB>)
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let guard = match forward.route.cache.coalescer().join(forward.hash) {
        Role::Leader(guard) => guard,
        Role::Waiter(_) => return,
    };
    // The client already has its answer: refresh with a plain GET (even for
    // HEAD, and without the client's validators, since a 304 cannot refresh
    // a stored body).
    forward.parts.method = Method::GET;
    // Nor the client's range: a partial answer cannot refresh it either.
    for name in [IF_NONE_MATCH, IF_MODIFIED_SINCE, RANGE, IF_RANGE] {
        forward.parts.headers.remove(name);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let deadline = forward.route.options.refresh_timeout;
    runtime.spawn(async move {
        let refresh = async move {
            let mut guard = guard;
            // Another refresh may have landed since this request's lookup,
            // or another instance may be refreshing the key now.
            let guard = match forward.leader().settle(&mut guard, false).await {
                Settled::Found { entry, .. } => return guard.share(entry),
                Settled::Elsewhere => return,
                Settled::Lead => Some(guard),
                Settled::Alone { lasting } => {
                    guard.not_shareable(lasting);
                    None
                }
            };
            if let Ok(response) = forward.fill(guard).await {
                drain(response.into_body()).await;
            }
        };
        // A hung origin must not hold the key's flight for ever: when the
        // deadline drops the refresh, its guard reports it abandoned.
        let _ = tokio::time::timeout(deadline, refresh).await;
    });
}

/// Polls a body to its end so its recorder stores it.
async fn drain<B: Body>(body: B) {
    let mut body = pin!(body);
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if frame.is_err() {
            break;
        }
    }
}
