//! Warming: filling the cache before clients ask, by sending `GET`
//! requests through the application's own service (its axum `Router`), so
//! entries are filled through the normal path: the same keys, tags, rules
//! and coalescing as a client's request.
//!
//! Each path's outcome is read from the response's `Cache-Status`: a hit
//! was already fresh (and cost no origin call), `stored` means filled,
//! anything else forwarded was not storable (the reason is its `detail`),
//! and an error, a 5xx answer or a timeout failed. At most
//! [`concurrency`](Warmer::concurrency) requests run at once (default 4),
//! each within [`timeout`](Warmer::timeout) (default 10 s). Progress is
//! logged at `info`.
//!
//! Under the default key the `Host` header is part of an entry's
//! identity: warm with the host clients use ([`Warmer::host`]), or the
//! entries will answer nobody.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tagcache::Cache;
//!
//! # async fn run() {
//! let cache = Cache::default();
//! let app: Router = Router::new().route(
//!     "/sessions",
//!     get(|| async { "[]" }).route_layer(cache.layer("sessions")),
//! );
//! let report = cache
//!     .warmer(app.clone())
//!     .host("127.0.0.1:3000")
//!     .timeout(Duration::from_secs(5))
//!     .warm(["/sessions", "/sessions"])
//!     .await;
//! assert_eq!(report.filled, ["/sessions"]);
//! assert_eq!(report.already_fresh, ["/sessions"]);
//! # }
//! ```

use std::fmt::Display;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use axum_core::body::Body as RequestBody;
use futures_util::stream::{self, StreamExt};
use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, Uri};
use http_body::Body;
use serde::Serialize;
use tower_service::Service;

use crate::cache::Cache;
use crate::semantics::NotStoredReason;

/// Default number of requests in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default bound on one request (answer and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends warming requests through a service (an axum `Router`, or any
/// service taking requests with an axum body). Made with [`Cache::warmer`].
#[derive(Debug, Clone)]
pub struct Warmer<S> {
    cache_name: String,
    service: S,
    concurrency: usize,
    timeout: Duration,
    host: Option<HeaderValue>,
}

/// What happened to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarmOutcome {
    /// The origin answered and the response was stored (or shared from a
    /// fill already running).
    Filled,
    /// A fresh entry answered: nothing to do.
    AlreadyFresh,
    /// The response could not be stored; why (`set-cookie`, `status`,
    /// `no-cache-layer` for a path no cache layer covers...).
    NotStorable(String),
    /// No usable answer: why.
    Failed(String),
}

/// What a warm did, path by path, in the order the answers came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    /// Paths whose response was stored.
    pub filled: Vec<String>,
    /// Paths already fresh in the cache.
    pub already_fresh: Vec<String>,
    /// Paths whose response could not be stored, with the reason.
    pub not_storable: Vec<(String, String)>,
    /// Paths that failed, with the reason.
    pub failed: Vec<(String, String)>,
}

impl WarmReport {
    fn add(&mut self, path: String, outcome: WarmOutcome) {
        match outcome {
            WarmOutcome::Filled => self.filled.push(path),
            WarmOutcome::AlreadyFresh => self.already_fresh.push(path),
            WarmOutcome::NotStorable(why) => self.not_storable.push((path, why)),
            WarmOutcome::Failed(why) => self.failed.push((path, why)),
        }
    }

    /// How many paths were tried.
    pub fn total(&self) -> usize {
        self.filled.len() + self.already_fresh.len() + self.not_storable.len() + self.failed.len()
    }
}

impl Cache {
    /// Starts a [`Warmer`] sending requests through `service` (the
    /// application's router, whose cache layers use this cache).
    pub fn warmer<S>(&self, service: S) -> Warmer<S> {
        Warmer {
            cache_name: self.name().to_owned(),
            service,
            concurrency: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            host: None,
        }
    }
}

impl<S> Warmer<S> {
    /// Most requests in flight at once (at least 1; default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Bound on each request, answer and body (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `Host` header the requests carry (default: none). Under the
    /// default key it is part of the entry's identity, so give the host
    /// clients use.
    ///
    /// # Panics
    /// If `host` is not a valid header value.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(HeaderValue::from_str(host).expect("a valid Host header value"));
        self
    }

    /// The `Host` header, already checked.
    pub fn host_value(mut self, host: Option<HeaderValue>) -> Self {
        self.host = host;
        self
    }
}

impl<S> Warmer<S> {
    /// Sends `GET path` for each path (a path and query, such as
    /// `/api/sessions?status=active`) and reports what each did.
    pub async fn warm<I, P, RB>(&self, paths: I) -> WarmReport
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send,
        S::Future: Send,
        S::Error: Display,
        RB: Body + Send,
        RB::Error: Display,
    {
        let paths: Vec<String> = paths.into_iter().map(Into::into).collect();
        let total = paths.len();
        tracing::info!(cache = %self.cache_name, paths = total, concurrency = self.concurrency, "tagcache warming started");
        let mut report = WarmReport::default();
        let mut answers = stream::iter(paths)
            .map(|path| async move {
                let outcome = self.one(&path).await;
                (path, outcome)
            })
            .buffer_unordered(self.concurrency);
        while let Some((path, outcome)) = answers.next().await {
            tracing::info!(cache = %self.cache_name, %path, ?outcome, done = report.total() + 1, total, "tagcache warmed");
            report.add(path, outcome);
        }
        tracing::info!(
            cache = %self.cache_name,
            filled = report.filled.len(),
            already_fresh = report.already_fresh.len(),
            not_storable = report.not_storable.len(),
            failed = report.failed.len(),
            "tagcache warming finished"
        );
        report
    }

    async fn one<RB>(&self, path: &str) -> WarmOutcome
    where
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send,
        S::Future: Send,
        S::Error: Display,
        RB: Body + Send,
        RB::Error: Display,
    {
        let uri: Uri = match path.parse() {
            Ok(uri) if path.starts_with('/') => uri,
            _ => return WarmOutcome::Failed("not a path and query".to_owned()),
        };
        let mut request = Request::new(RequestBody::empty());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        if let Some(host) = &self.host {
            request.headers_mut().insert(HOST, host.clone());
        }
        let mut service = self.service.clone();
        let exchange = async {
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| e.to_string())?;
            let response = service.call(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            // The entry is stored once its body has been read to the end.
            drain(body).await?;
            Ok::<_, String>(parts)
        };
        let parts = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return WarmOutcome::Failed(format!("no answer within {:?}", self.timeout)),
            Ok(Err(error)) => return WarmOutcome::Failed(error),
            Ok(Ok(parts)) => parts,
        };
        if parts.status.is_server_error() {
            return WarmOutcome::Failed(format!("the origin answered {}", parts.status));
        }
        let status = parts
            .headers
            .get_all(crate::CACHE_STATUS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|member| member.split(';').next().map(str::trim) == Some(&self.cache_name));
        match status {
            None => WarmOutcome::NotStorable("no-cache-layer".to_owned()),
            Some(member) => judge(member),
        }
    }
}

/// The outcome a `Cache-Status` member of this cache says. One case is
/// ambiguous in the header itself: a streamed response (no
/// `Content-Length`, so whether it fits is known only at its end) that
/// missed because of an invalidation reads like a response not stored
/// because of one (`detail=invalidated`); it is reported as not storable.
fn judge(member: &str) -> WarmOutcome {
    let params: Vec<&str> = member.split(';').skip(1).map(str::trim).collect();
    let has = |name: &str| params.contains(&name);
    let value = |name: &str| {
        params
            .iter()
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    };
    let fwd = value("fwd");
    if has("stored") || has("collapsed") {
        WarmOutcome::Filled
    } else if has("hit") && fwd.is_none() {
        WarmOutcome::AlreadyFresh
    } else if has("hit") {
        // A stale answer: a refresh runs in the background.
        WarmOutcome::Filled
    } else if let Some(why) = value("detail").filter(|d| is_not_stored_reason(d)) {
        WarmOutcome::NotStorable(why.to_owned())
    } else if matches!(fwd, Some("bypass" | "method")) {
        WarmOutcome::NotStorable(value("detail").or(fwd).unwrap_or("bypass").to_owned())
    } else {
        // Recorded, but whether it fits was known only at the body's end
        // (no Content-Length), after the header went out.
        WarmOutcome::Filled
    }
}

/// Whether a `detail` names why a response was not stored.
fn is_not_stored_reason(detail: &str) -> bool {
    detail == "store-error" || NotStoredReason::ALL.iter().any(|r| r.as_str() == detail)
}

/// Reads a body to its end.
async fn drain<RB>(body: RB) -> Result<(), String>
where
    RB: Body,
    RB::Error: Display,
{
    let mut body = std::pin::pin!(body);
    while let Some(frame) = poll_fn(|cx| Pin::as_mut(&mut body).poll_frame(cx)).await {
        frame.map_err(|e| format!("the body failed: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_from_cache_status() {
        assert_eq!(judge("c; fwd=uri-miss; stored"), WarmOutcome::Filled);
        assert_eq!(
            judge("c; fwd=miss; stored; detail=invalidated"),
            WarmOutcome::Filled
        );
        assert_eq!(judge("c; fwd=uri-miss; collapsed"), WarmOutcome::Filled);
        assert_eq!(judge("c; hit; ttl=20"), WarmOutcome::AlreadyFresh);
        assert_eq!(judge("c; hit; fwd=stale; ttl=-3"), WarmOutcome::Filled);
        assert_eq!(
            judge("c; fwd=uri-miss; detail=set-cookie"),
            WarmOutcome::NotStorable("set-cookie".into())
        );
        assert_eq!(
            judge("c; fwd=bypass; detail=authorization"),
            WarmOutcome::NotStorable("authorization".into())
        );
        assert_eq!(
            judge("c; fwd=method"),
            WarmOutcome::NotStorable("method".into())
        );
        assert_eq!(
            judge("c; fwd=uri-miss; detail=store-error"),
            WarmOutcome::NotStorable("store-error".into())
        );
        // Recorded, with the fit known only at the end.
        assert_eq!(judge("c; fwd=uri-miss"), WarmOutcome::Filled);
        // Not stored because an invalidation landed during the fill.
        assert_eq!(
            judge("c; fwd=miss; detail=invalidated"),
            WarmOutcome::NotStorable("invalidated".into())
        );
    }
}
