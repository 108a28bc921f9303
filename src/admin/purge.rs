//! The mutations (`POST /invalidate`, `/purge`, `/purge-all`) and the log
//! of recent invalidations (`GET /invalidations`). Every mutation goes
//! through the cache's one invalidation path, so it is counted, logged
//! (source: the admin API) and keeps the cache's guarantee: once the answer
//! is sent, nothing filled before it is served on this instance.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::body::json;
use super::errors::ApiError;
use super::limits::{self, check_len, check_tags};
use super::AdminState;
use crate::cache::Target;
use crate::invalidation_log::{InvalidationRecord, KEPT_INVALIDATIONS};
use crate::stamp::InvalidationMode;
use crate::tags::collect;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    tags: Vec<String>,
    #[serde(default)]
    soft: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    key: String,
    route: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeAllBody {
    confirm: String,
}

/// What a mutation did.
#[derive(Serialize)]
pub(crate) struct Done {
    /// `hard`, `soft` or `all`.
    kind: &'static str,
    tags: Vec<String>,
    /// The invalidation's stamp.
    stamp: u64,
}

async fn run(state: &AdminState, target: Target) -> Result<u64, ApiError> {
    state
        .cache
        .run_admin_invalidation(target)
        .await
        .map(|stamp| stamp.0)
        .map_err(|e| ApiError::store(&e))
}

fn split(request: Request) -> (axum::http::HeaderMap, Body) {
    let (parts, body) = request.into_parts();
    (parts.headers, body)
}

/// `POST /invalidate {"tags": [...], "soft": false}`
pub(crate) async fn invalidate(
    State(state): State<AdminState>,
    request: Request,
) -> Result<Json<Done>, ApiError> {
    let (headers, body) = split(request);
    let body: InvalidateBody = json(&headers, body).await?;
    check_tags(&body.tags)?;
    let mode = match body.soft {
        true => InvalidationMode::Soft,
        false => InvalidationMode::Hard,
    };
    let stamp = run(&state, Target::Tags(collect(&body.tags), mode)).await?;
    Ok(Json(Done {
        kind: if body.soft { "soft" } else { "hard" },
        tags: body.tags,
        stamp,
    }))
}

/// `POST /purge {"key": "/path?query", "route": "optional"}`: every entry
/// stored under the key, in every `Vary` variant (and, since a key's
/// implicit tag is the key alone, in every route that caches that key).
pub(crate) async fn purge(
    State(state): State<AdminState>,
    request: Request,
) -> Result<Json<Done>, ApiError> {
    let (headers, body) = split(request);
    let body: PurgeBody = json(&headers, body).await?;
    check_len("key", &body.key, limits::MAX_KEY_BYTES)?;
    if let Some(route) = &body.route {
        check_len("route", route, limits::MAX_ROUTE_BYTES)?;
        if !state
            .cache
            .all_route_metrics()
            .iter()
            .any(|m| &**m.name() == route)
        {
            return Err(ApiError::not_found(format!("no route named {route:?}")));
        }
    }
    let tags = crate::cache::purge_tags(&body.key);
    let shown = tags.iter().map(|t| t.to_string()).collect();
    let stamp = run(&state, Target::Tags(tags, InvalidationMode::Hard)).await?;
    Ok(Json(Done {
        kind: "hard",
        tags: shown,
        stamp,
    }))
}

/// `POST /purge-all {"confirm": "<cache name>"}`
pub(crate) async fn purge_all(
    State(state): State<AdminState>,
    request: Request,
) -> Result<Json<Done>, ApiError> {
    let (headers, body) = split(request);
    let body: PurgeAllBody = json(&headers, body).await?;
    if body.confirm != state.cache.name() {
        return Err(ApiError::bad_request(
            "confirm must be the cache's name (its name in Cache-Status), typed out",
        ));
    }
    let stamp = run(&state, Target::All).await?;
    Ok(Json(Done {
        kind: "all",
        tags: Vec::new(),
        stamp,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
pub(crate) struct Log {
    invalidations: Vec<InvalidationRecord>,
}

/// `GET /invalidations?limit=`: the most recent first.
pub(crate) async fn log(
    State(state): State<AdminState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Log>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=KEPT_INVALIDATIONS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {KEPT_INVALIDATIONS}"
        )));
    }
    Ok(Json(Log {
        invalidations: state.cache.recent_invalidations(limit),
    }))
}
