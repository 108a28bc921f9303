//! `POST /warm {"paths": [...]}`: warms the given paths through the
//! application's router (see [`crate::warm`]), one warm at a time (409
//! while one runs), at most [`MAX_WARM_PATHS`] paths per call, and answers
//! with the report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::StatusCode;
use axum::{Json, Router};
use serde::Deserialize;

use super::body::json;
use super::errors::ApiError;
use super::limits::{check_len, MAX_KEY_BYTES};
use super::AdminState;
use crate::warm::WarmReport;

/// Most paths one `POST /warm` takes.
pub const MAX_WARM_PATHS: usize = 100;

/// The application's router, for `POST /warm`. The admin router is nested
/// inside the application's, so the application hands its router over once
/// built:
///
/// ```
/// use axum::Router;
/// use tagcache::admin::WarmTarget;
/// use tagcache::Cache;
///
/// # fn run() -> Result<(), tagcache::admin::AdminError> {
/// let cache = Cache::default();
/// let target = WarmTarget::new();
/// let admin = cache.admin().bearer_token("a long random secret token").warm_target(target.clone());
/// let app: Router = Router::new().nest("/admin/cache", admin.build()?);
/// target.set(app.clone());
/// # Ok(())
/// # }
/// ```
///
/// (The target then holds a clone of the router that holds it, which
/// lives as long as the application anyway.)
#[derive(Clone, Default)]
pub struct WarmTarget {
    router: Arc<OnceLock<Router>>,
    running: Arc<AtomicBool>,
}

impl std::fmt::Debug for WarmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmTarget")
            .field("set", &self.router.get().is_some())
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish()
    }
}

impl WarmTarget {
    /// A target to [`set`](Self::set) later.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands over the application's router; `false` if one was set before
    /// (the first stays).
    pub fn set(&self, router: Router) -> bool {
        self.router.set(router).is_ok()
    }
}

/// Clears the running flag however the warm ends (finished, or the client
/// went away and the handler was dropped).
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmBody {
    paths: Vec<String>,
}

/// `POST /warm`
pub(crate) async fn warm(
    State(state): State<AdminState>,
    request: Request,
) -> Result<Json<WarmReport>, ApiError> {
    let (parts, body) = request.into_parts();
    let body: WarmBody = json(&parts.headers, body).await?;
    if body.paths.is_empty() || body.paths.len() > MAX_WARM_PATHS {
        return Err(ApiError::bad_request(format!(
            "paths must name 1 to {MAX_WARM_PATHS} paths"
        )));
    }
    for path in &body.paths {
        check_len("each path", path, MAX_KEY_BYTES)?;
        if !path.starts_with('/') || path.parse::<axum::http::Uri>().is_err() {
            return Err(ApiError::bad_request(format!(
                "{path:?} is not a path and query starting with /"
            )));
        }
    }
    let Some(router) = state.warm.router.get().cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported",
            "warming is not set up: give the admin a WarmTarget and set it to the application's router",
        ));
    };
    if state.warm.running.swap(true, Ordering::AcqRel) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "warm_running",
            "a warm is running; try again when it has finished",
        ));
    }
    let _running = Running(&state.warm.running);
    // The entries must answer the clients that use this host.
    let host = parts.headers.get(HOST).cloned();
    let report = state
        .cache
        .warmer(router)
        .host_value(host)
        .warm(body.paths)
        .await;
    Ok(Json(report))
}
