//! The asynchronous part of a request that was not answered in `call`:
//! finishing the lookup, serving stale while revalidating, and choosing how
//! to go to the origin (alone, as HEAD, or through the key's flight).

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CacheBody;
use super::fill::Forward;
use super::flight::{coalesced, revalidate_in_background};
use super::lookup::Step;
use super::outcome::{Outcome, StaleCause, Storing};
use super::respond;
use crate::entry::KeyHash;
use crate::metrics::StoreOp;
use crate::semantics::request::{self, forbids_storing, has_directives};
use crate::semantics::verdict::{within_stale_window, MissKind, Verdict};
use crate::semantics::NotStoredReason;
use crate::stamp::now_micros;

/// The lookup, when `call` could not answer at once.
pub(crate) enum Lookup {
    /// The store is still answering.
    Pending(Step),
    /// The verdict on what the request's hash holds.
    Done { hash: KeyHash, verdict: Verdict },
}

/// Finishes the lookup (if the store was asynchronous) and answers.
pub(crate) async fn resolve<S, ReqB, ResB>(
    mut forward: Forward<S, ReqB>,
    lookup: Lookup,
    head_only: bool,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body<Data = Bytes> + Send + 'static,
{
    let route = forward.route.clone();
    let verdict = match lookup {
        // `call` weighed the request's directives already.
        Lookup::Done { hash, verdict } => {
            forward.hash = hash;
            verdict
        }
        Lookup::Pending(step) => {
            let (hash, found) = forward.finish_lookup(step).await;
            forward.hash = hash;
            let now = now_micros();
            let verdict = match found {
                Ok(found) => forward.judge(found, now),
                Err(error) => {
                    route.store_failed(StoreOp::Get, &error);
                    Verdict::Miss(MissKind::StoreError)
                }
            };
            route.as_requested(verdict, &forward.parts.headers, now)
        }
    };
    let only_if_cached = route.origin
        && has_directives(&forward.parts.headers)
        && request::directives(&forward.parts.headers).only_if_cached;
    match verdict {
        Verdict::Fresh(entry) => {
            let now = now_micros();
            let status = Outcome::Hit { entry: &entry, now }.report(&route);
            return Ok(forward.answer(&entry, head_only, now, status));
        }
        Verdict::Stale(entry) => {
            let now = now_micros();
            let validity = route.validity(&entry);
            if let Some(stale_for) =
                within_stale_window(&entry, validity, now, entry.stale_while_revalidate)
            {
                let cause = StaleCause::Revalidating;
                let status = Outcome::Stale { stale_for, cause }.report(&route);
                let response = forward.answer(&entry, head_only, now, status);
                forward.kind = MissKind::Stale;
                forward.stale = Some(entry);
                revalidate_in_background(forward);
                return Ok(response);
            }
            forward.kind = MissKind::Stale;
            forward.stale = Some(entry);
        }
        Verdict::Validate(entry, kind) => {
            forward.kind = kind;
            forward.stale = Some(entry);
        }
        Verdict::Miss(kind) => forward.kind = kind,
    }
    if only_if_cached {
        let status = Outcome::OnlyIfCached(forward.kind).report(&route);
        return Ok(respond::only_if_cached(status));
    }
    if head_only {
        return forward_head(forward).await;
    }
    if forbids_storing(&forward.parts.headers) {
        // The client asked that nothing of this exchange be stored: go to the
        // origin alone, outside any flight, so such requests cannot make
        // responses unshareable for anyone else.
        forward.no_store = true;
        return forward.fill(None).await;
    }
    // A client that asked for the origin's answer (on a route that honours
    // it) must not take another request's flight, which may predate it.
    if !route.options.coalesce || forward.kind == MissKind::Request {
        return forward.fill(None).await;
    }
    // The key's last answer could not be shared: don't queue behind this
    // one's either.
    if route.cache.coalescer().passes(forward.hash) {
        route.metrics.pass();
        return forward.fill(None).await;
    }
    coalesced(forward).await
}

/// A HEAD miss goes to the origin as it is: its bodiless response cannot
/// fill a GET entry (a HEAD *hit* is answered from the stored GET).
async fn forward_head<S, ReqB, ResB>(
    forward: Forward<S, ReqB>,
) -> Result<Response<CacheBody<ResB>>, S::Error>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    let Forward {
        route,
        mut inner,
        mut parts,
        body,
        kind,
        ..
    } = forward;
    let storing = Storing::No(NotStoredReason::Head);
    let status = Outcome::Forwarded { kind, storing }.report(&route);
    parts.extensions.insert(route.cache.clone());
    let mut response = inner.call(Request::from_parts(parts, body)).await?;
    route.strip(response.headers_mut());
    Ok(respond::with_status(
        response.map(CacheBody::passthrough),
        status,
    ))
}
