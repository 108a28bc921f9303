//! `GET /entries` (a page of what is cached) and `GET /entry` (one key and
//! all its variants), over [`Store::scan`](crate::Store::scan).
//!
//! An entry is shown with its route, key, whether it is per-user (never
//! whose), the request header values it was selected by (credentials
//! redacted), its size, age, time to live and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use super::limits::{self, check_len};
use super::AdminState;
use crate::entry::{Entry, KeyHash};
use crate::inspect::{ScanOutcome, ScanPage, ScanRequest};
use crate::stamp::{now_micros, Validity};
use crate::tags::KEY_TAG_PREFIX;

/// Default page size of `/entries`.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of `/entries`.
pub const MAX_LIMIT: usize = 500;
/// How many store pages one admin request reads at most, to fill a page
/// when filters leave store pages sparse (or to find a key's variants).
const MAX_STORE_PAGES: usize = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    route: Option<String>,
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryQuery {
    route: Option<String>,
    key: Option<String>,
}

/// One entry as shown.
#[derive(Serialize)]
pub(crate) struct Shown {
    route: String,
    key: String,
    /// The 128-bit hash it is stored under, in hex.
    hash: String,
    per_user: bool,
    /// Request header values that selected this response (credentials
    /// redacted).
    vary: BTreeMap<String, Option<String>>,
    status: u16,
    /// What the entry weighs in the store.
    size_bytes: u64,
    body_bytes: usize,
    age_secs: u64,
    /// Seconds of freshness left; negative once expired (it may still be
    /// served stale within its windows).
    ttl_left_secs: i64,
    /// `valid`, `soft_invalidated` or `invalidated` (by its tags' stamps).
    state: &'static str,
    tags: Vec<String>,
}

/// Request headers whose values are credentials: shown as `(redacted)`.
fn is_secret(name: &str) -> bool {
    [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION]
        .iter()
        .any(|secret| secret.as_str() == name)
}

pub(crate) fn show(state: &AdminState, hash: KeyHash, entry: &Entry, now: u64) -> Shown {
    let vary = entry
        .vary
        .iter()
        .map(|(name, value)| {
            let shown = value.as_ref().map(|value| {
                if is_secret(name.as_str()) || value.is_sensitive() {
                    "(redacted)".to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                }
            });
            (name.as_str().to_owned(), shown)
        })
        .collect();
    let fresh_until = entry.fresh_until_micros() as i128;
    let validity = state.cache.store().validity(entry);
    Shown {
        route: entry.route.to_string(),
        key: entry.key.to_string(),
        hash: hash.to_hex(),
        per_user: entry.identity.is_some(),
        vary,
        status: entry.status.as_u16(),
        size_bytes: entry.weight(),
        body_bytes: entry.body.len(),
        age_secs: now.saturating_sub(entry.stored_at_micros) / 1_000_000,
        ttl_left_secs: ((fresh_until - now as i128) / 1_000_000) as i64,
        state: match validity {
            Validity::Valid => "valid",
            Validity::SoftInvalidated { .. } => "soft_invalidated",
            Validity::Invalid => "invalidated",
        },
        tags: entry
            .tags
            .iter()
            .filter(|tag| !tag.starts_with(KEY_TAG_PREFIX))
            .map(|tag| tag.to_string())
            .collect(),
    }
}

/// Reads store pages from `request` until `wanted` entries were found, the
/// listing ended, or the page bound was reached.
async fn gather(
    state: &AdminState,
    mut request: ScanRequest,
    wanted: usize,
) -> Result<ScanPage, ApiError> {
    let mut gathered = ScanPage::default();
    for _ in 0..MAX_STORE_PAGES {
        let outcome = state
            .cache
            .store()
            .scan(request.clone())
            .await
            .map_err(|e| ApiError::store(&e))?;
        let page = match outcome {
            ScanOutcome::Page(page) => page,
            ScanOutcome::Unsupported => {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "not_supported",
                    format!(
                        "the {} store cannot list its entries",
                        state.cache.store().kind()
                    ),
                ))
            }
            ScanOutcome::BadCursor(reason) => {
                return Err(ApiError::bad_request(format!("cursor: {reason}")))
            }
        };
        gathered.entries.extend(page.entries);
        gathered.next = page.next;
        match &gathered.next {
            Some(next) if gathered.entries.len() < wanted => request.cursor = Some(next.clone()),
            _ => break,
        }
    }
    Ok(gathered)
}

fn known_route(state: &AdminState, route: &str) -> Result<(), ApiError> {
    check_len("route", route, limits::MAX_ROUTE_BYTES)?;
    let known = state
        .cache
        .all_route_metrics()
        .iter()
        .any(|m| &**m.name() == route);
    match known {
        true => Ok(()),
        false => Err(ApiError::not_found(format!("no route named {route:?}"))),
    }
}

#[derive(Serialize)]
pub(crate) struct Listing {
    entries: Vec<Shown>,
    /// Pass it as `cursor` for the next page; `null` at the end.
    next_cursor: Option<String>,
}

/// `GET /entries?route=&prefix=&cursor=&limit=`
pub(crate) async fn list(
    State(state): State<AdminState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    if let Some(route) = &query.route {
        known_route(&state, route)?;
    }
    if let Some(prefix) = &query.prefix {
        check_len("prefix", prefix, limits::MAX_KEY_BYTES)?;
    }
    if let Some(cursor) = &query.cursor {
        check_len("cursor", cursor, limits::MAX_CURSOR_BYTES)?;
    }
    let request = ScanRequest {
        cursor: query.cursor,
        limit,
        route: query.route,
        key_prefix: query.prefix.filter(|p| !p.is_empty()),
    };
    let page = gather(&state, request, limit).await?;
    let now = now_micros();
    Ok(Json(Listing {
        entries: page
            .entries
            .iter()
            .map(|(hash, entry)| show(&state, *hash, entry, now))
            .collect(),
        next_cursor: page.next,
    }))
}

#[derive(Serialize)]
pub(crate) struct Variants {
    route: String,
    key: String,
    variants: Vec<Shown>,
    /// `false` when the walk stopped at its bound before the end of the
    /// store: more variants may exist.
    complete: bool,
}

/// `GET /entry?route=&key=`: every variant stored under the key (one per
/// set of selecting header values, one per identity on a per-user route).
/// The store is walked for them, at most [`MAX_STORE_PAGES`] pages: the
/// whole of a memory store, about 5 000 keys of a Redis one.
pub(crate) async fn one(
    State(state): State<AdminState>,
    query: Result<Query<EntryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Variants>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (Some(route), Some(key)) = (query.route, query.key) else {
        return Err(ApiError::bad_request("route and key are both required"));
    };
    known_route(&state, &route)?;
    check_len("key", &key, limits::MAX_KEY_BYTES)?;
    let request = ScanRequest {
        cursor: None,
        limit: MAX_LIMIT,
        route: Some(route.clone()),
        key_prefix: Some(key.clone()),
    };
    // Every page, to the bound: the variants may be anywhere in the store.
    let page = gather(&state, request, usize::MAX).await?;
    let now = now_micros();
    let variants: Vec<Shown> = page
        .entries
        .iter()
        .filter(|(_, entry)| *entry.key == *key)
        .map(|(hash, entry): &(KeyHash, Arc<Entry>)| show(&state, *hash, entry, now))
        .collect();
    let complete = page.next.is_none();
    if variants.is_empty() {
        let searched = match complete {
            true => "",
            false => " (among the entries one request may walk; list /entries to go further)",
        };
        return Err(ApiError::not_found(format!(
            "nothing is cached under {key:?} for route {route:?}{searched}"
        )));
    }
    Ok(Json(Variants {
        route,
        key,
        variants,
        complete,
    }))
}
