//! The proxy as an axum [`Router`]: the cache's admin router at
//! [`ADMIN_PATH`], and every other request through one cache layer in
//! [`Freshness::Origin`] around the [`Forwarder`].
//!
//! Built by `main.rs` for the binary and included as is by the end-to-end
//! tests (`#[path = "../examples/proxy/app.rs"] mod app;`), which is why
//! this file declares its own submodule by path.

#[path = "forward.rs"]
mod forward;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::uri::Authority;
use axum::http::HeaderName;
use axum::Router;
use tagcache::admin::WarmTarget;
use tagcache::{Cache, Freshness};
use tokio::net::TcpListener;
use tower::Layer;

pub use forward::Forwarder;

/// Where the cache's admin router (and its dashboard page) is mounted: a
/// path the origin is unlikely to use, since every other path is the
/// origin's.
pub const ADMIN_PATH: &str = "/_tagcache";

/// The response header the origin names its tags in, space-separated
/// (Fastly's convention). The cache removes it before the response leaves.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// The name of the proxy's one cache layer, under which statistics and
/// metrics count every request.
pub const ROUTE: &str = "proxy";

/// What the proxy is built from.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The origin's `host:port`, reached over plain HTTP.
    pub origin: Authority,
    /// Longest wait for the origin's response head before answering 504.
    pub origin_timeout: Duration,
    /// The response cache.
    pub cache: Cache,
    /// Bearer token of the admin router.
    pub admin_token: String,
}

/// Builds the proxy. The cache layer wraps the whole forwarding service,
/// so it sees every method: GET and HEAD are answered from the cache when
/// they can be, and a POST, PUT, DELETE or PATCH the origin accepts
/// invalidates what is cached for its URI before its answer goes out.
/// Fails only if the admin router cannot be built (a token too short).
pub fn router(config: ProxyConfig) -> Result<Router, String> {
    let ProxyConfig {
        origin,
        origin_timeout,
        cache,
        admin_token,
    } = config;
    let proxy = cache
        .layer(ROUTE)
        .freshness(Freshness::Origin)
        .tags_from_header(SURROGATE_KEY)
        .layer(Forwarder::new(origin, origin_timeout));
    let target = WarmTarget::new();
    let admin = cache
        .admin()
        .bearer_token(&admin_token)
        .warm_target(target.clone())
        .build()
        .map_err(|e| format!("--admin-token: {e}"))?;
    let app = Router::new()
        .nest(ADMIN_PATH, admin)
        .fallback_service(proxy);
    // `POST /_tagcache/warm` fills paths through the proxy itself.
    target.set(app.clone());
    Ok(app)
}

/// Serves `app` on `listener` until `shutdown` completes, telling the
/// forwarder each client's address (for `X-Forwarded-For`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
