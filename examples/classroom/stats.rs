//! Operator endpoints, outside the cache: `/stats` (origin calls and the
//! cache's own counters, as JSON) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::errors::ApiError;
use super::AppState;

/// `GET /stats`
pub async fn stats(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "origin_calls": app.origin.calls.snapshot(),
        "cache": app.cache.stats(),
    }))
}

/// `GET /metrics`: 404 when the app was built without a Prometheus handle.
pub async fn metrics(State(app): State<AppState>) -> Response {
    match &app.metrics {
        Some(handle) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::not_found("metrics are not enabled").into_response(),
    }
}
