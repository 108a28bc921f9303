//! The classroom API as an axum [`Router`]: the routes, their cache and
//! invalidation layers, and the state they share.
//!
//! Built by `main.rs` for the binary and included as is by the end-to-end
//! tests (`#[path = "../examples/classroom/app.rs"] mod app;`), which is why
//! this file declares its own submodules by path.

#[path = "auth.rs"]
mod auth;
#[path = "data.rs"]
mod data;
#[path = "database.rs"]
mod database;
#[path = "errors.rs"]
mod errors;
#[path = "extract.rs"]
mod extract;
#[path = "origin.rs"]
mod origin;
// Test binaries that include this file may serve only the in-memory app.
#[cfg(feature = "postgres")]
#[cfg_attr(test, allow(dead_code))]
#[path = "pg.rs"]
mod pg;
#[path = "routes.rs"]
mod routes;
#[path = "stats.rs"]
mod stats;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{request, response, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tagcache::admin::WarmTarget;
use tagcache::Cache;

pub use database::Database;
use errors::ApiError;
use origin::{route, Origin};
#[cfg(feature = "postgres")]
#[cfg_attr(test, allow(unused_imports))]
pub use pg::PgDb;

/// Longest path and query accepted; longer requests get a JSON 414 before
/// any routing, extraction or caching happens.
pub const MAX_URI_BYTES: usize = 2048;
/// Largest request body accepted (titles are short).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

// The admin items below serve the binary and tests/classroom_admin.rs,
// not every test that includes this file.

/// Where the cache's admin router (and its dashboard page) is mounted.
#[allow(dead_code)]
pub const ADMIN_PATH: &str = "/admin/cache";

/// The app with the cache's admin router at [`ADMIN_PATH`], behind
/// `token`, and able to warm through itself (`POST .../warm`).
#[allow(dead_code)]
pub fn with_admin(app: Router, cache: &Cache, token: &str) -> Result<Router, String> {
    let target = WarmTarget::new();
    let admin = cache
        .admin()
        .bearer_token(token)
        .warm_target(target.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let app = app.nest(ADMIN_PATH, admin);
    target.set(app.clone());
    Ok(app)
}

/// What `--warm` fills at start: every teacher's session list and
/// dashboard.
#[allow(dead_code)]
pub fn warm_paths() -> Vec<String> {
    (1..=data::TEACHERS)
        .flat_map(|tid| {
            [
                format!("/api/teachers/{tid}/sessions"),
                format!("/api/dashboard/teacher/{tid}"),
            ]
        })
        .collect()
}

/// What the app is built from.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// How long every cached GET handler takes to answer, after reading.
    pub origin_delay: Duration,
    /// The response cache.
    pub cache: Cache,
    /// Where `/metrics` renders from; without it `/metrics` answers 404.
    pub metrics: Option<PrometheusHandle>,
}

/// The state every handler gets.
#[derive(Clone)]
pub struct AppState {
    db: Database,
    origin: Arc<Origin>,
    cache: Cache,
    metrics: Option<PrometheusHandle>,
}

/// Builds the app over a freshly seeded in-memory database (what the
/// tests serve; the binary chooses its database and calls [`router_over`]).
#[allow(dead_code)]
pub fn router(config: AppConfig) -> Router {
    router_over(config, Database::memory())
}

/// Builds the app over `db`.
pub fn router_over(config: AppConfig, db: Database) -> Router {
    let AppConfig {
        origin_delay,
        cache,
        metrics,
    } = config;
    let state = AppState {
        db,
        origin: Arc::new(Origin {
            calls: Default::default(),
            delay: origin_delay,
        }),
        cache: cache.clone(),
        metrics,
    };
    let secs = Duration::from_secs;

    // Tags that follow from the route alone are declared on the layer; the
    // ones that depend on data (whose session is this?) come from the
    // handlers as `Tags`.
    Router::new()
        .route(
            "/api/teachers/{tid}/sessions",
            get(routes::session_list)
                .route_layer(
                    cache
                        .layer(route::SESSION_LIST)
                        .tags(|_, _| ["sessions"])
                        .ttl(secs(300)),
                )
                .merge(
                    post(routes::create_session).route_layer(
                        cache
                            .invalidate_layer("create-session")
                            .tags(session_change_tags),
                    ),
                ),
        )
        .route(
            "/api/sessions/{sid}",
            get(routes::session_detail)
                .route_layer(cache.layer(route::SESSION_DETAIL).ttl(secs(900)))
                .merge(
                    put(routes::update_session).route_layer(
                        cache
                            .invalidate_layer("update-session")
                            .tags(session_change_tags),
                    ),
                )
                .merge(
                    delete(routes::delete_session).route_layer(
                        cache
                            .invalidate_layer("delete-session")
                            .tags(session_change_tags),
                    ),
                ),
        )
        .route(
            "/api/me/sessions",
            get(routes::my_sessions).route_layer(
                cache
                    .layer(route::MY_SESSIONS)
                    .per_user(auth::cache_identity)
                    .ttl(secs(300)),
            ),
        )
        .route(
            "/api/dashboard/teacher/{tid}",
            get(routes::teacher_dashboard).route_layer(
                cache
                    .layer(route::TEACHER_DASHBOARD)
                    .tags(|_, _| ["dashboard"])
                    .ttl(secs(300)),
            ),
        )
        .route(
            "/api/dashboard/admin",
            get(routes::admin_dashboard).route_layer(
                cache
                    .layer(route::ADMIN_DASHBOARD)
                    .per_user(auth::cache_identity)
                    .tags(|_, _| ["dashboard", "sessions"])
                    .ttl(secs(60)),
            ),
        )
        .route("/stats", get(stats::stats))
        .route("/metrics", get(stats::metrics))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(limit_uri))
        .with_state(state)
}

/// What every mutation of a session invalidates besides the session's own
/// tags (which its handler returns): every list and every dashboard may
/// count it.
fn session_change_tags(_: &request::Parts, _: &response::Parts) -> [&'static str; 2] {
    ["sessions", "dashboard"]
}

/// Refuses over-long URIs up front: they could only be junk here, and
/// extractors would echo them back in error messages.
async fn limit_uri(request: Request, next: Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the URI is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}
