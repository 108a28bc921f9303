//! Invalidation by unsafe requests (RFC 9111 §4.4), in
//! [`Freshness::Origin`](crate::Freshness::Origin): once the origin
//! answered a POST, PUT, DELETE (any method not known to be safe) with a
//! non-error status, the entries of the request's target URI are
//! invalidated, every variant of them, and those of the `Location` and
//! `Content-Location` it answered with when they are on the same host;
//! only then does the response go out.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LOCATION, HOST, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Response};
use http_body::Body;

use super::body::CacheBody;
use super::respond;
use super::route::CacheRoute;
use crate::cache::Target;
use crate::entry::Tag;
use crate::stamp::InvalidationMode;
use crate::tags::{collect, host_of, key_tag, same_host_uri, uri_tag};

/// Whether a method may change what the origin holds (RFC 9110 §9.2.1):
/// every method but the safe ones.
pub(crate) fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// What an unsafe request changes, as far as is known before it goes to
/// the origin: its target, by URI and by the route's key for it (which
/// reaches entries that requests for other URIs filled, when the key
/// ignores part of the URI), on its host.
pub(crate) struct UnsafeTarget {
    host: String,
    tags: Vec<Tag>,
}

impl UnsafeTarget {
    pub(crate) fn of(route: &CacheRoute, parts: &Parts) -> Self {
        let host = host_of(parts).to_owned();
        let mut target = UnsafeTarget {
            tags: Vec::new(),
            host,
        };
        target.add(route, parts);
        target
    }

    /// Adds the tags of the URI `parts` asks for.
    fn add(&mut self, route: &CacheRoute, parts: &Parts) {
        self.tags.push(uri_tag(&self.host, &parts.uri));
        if let Some(key) = route.key_of(parts) {
            self.tags.push(key_tag(&key));
        }
    }

    /// Adds the URI a `Location` or `Content-Location` names, if it is on
    /// the same host, as a request for it would ask.
    fn add_location(&mut self, route: &CacheRoute, location: &HeaderValue) {
        let Some(uri) = same_host_uri(&self.host, location) else {
            return;
        };
        let Ok(host) = HeaderValue::from_str(&self.host) else {
            return;
        };
        let mut request = http::Request::new(());
        *request.uri_mut() = uri;
        request.headers_mut().insert(HOST, host);
        self.add(route, &request.into_parts().0);
    }
}

/// Waits for the origin's answer to an unsafe request, invalidates what it
/// changed if it succeeded, then answers with `cache_status`.
pub(crate) async fn invalidating<F, B, E>(
    route: Arc<CacheRoute>,
    answer: F,
    mut target: UnsafeTarget,
    cache_status: HeaderValue,
) -> Result<Response<CacheBody<B>>, E>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    let mut response = answer.await?;
    // "Non-error": 2xx and 3xx. A failed mutation changed nothing.
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        for name in [LOCATION, CONTENT_LOCATION] {
            for value in response.headers().get_all(name) {
                target.add_location(&route, value);
            }
        }
        invalidate(&route, collect(&target.tags)).await;
    }
    route.strip(response.headers_mut());
    Ok(respond::with_status(
        response.map(CacheBody::passthrough),
        cache_status,
    ))
}

/// Invalidates `tags`. The request's change has happened, so the
/// invalidation runs as a task of its own that completes even if the
/// client goes away; a store that fails is counted and logged where the
/// invalidation runs, and the response still goes out.
async fn invalidate(route: &CacheRoute, tags: Vec<Tag>) {
    let target = Target::Tags(tags, InvalidationMode::Hard);
    let pending = match route
        .cache
        .run_invalidation(target, &route.metrics)
        .now_or_later()
    {
        Ok(_) => return,
        Err(pending) => pending,
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(pending).await),
        Err(_) => drop(pending.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_are_safe() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!is_unsafe(&method), "{method}");
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            purge,
        ] {
            assert!(is_unsafe(&method), "{method}");
        }
    }
}
