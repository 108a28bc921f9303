//! Who is calling: a deliberately simple bearer-token scheme
//! (`Bearer teacher-<id>` or `Bearer admin`) standing in for real tokens.
//!
//! The same parser serves the handlers (as an extractor) and the per-user
//! cache layers (as the identity in the key). That is the rule that keeps
//! per-user caching safe: the cache may only group callers the handler would
//! treat as the same principal.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::data::Db;
use super::errors::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A teacher, by id.
    Teacher(u32),
    /// The administrator.
    Admin,
}

impl Principal {
    /// Reads the caller from the `Authorization` header.
    pub fn from_headers(headers: &HeaderMap) -> Result<Principal, ApiError> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::unauthorized(
                "send exactly one `Authorization: Bearer <token>` header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected a bearer token"))?;
        Principal::from_token(token).ok_or_else(|| ApiError::unauthorized("unknown token"))
    }

    fn from_token(token: &str) -> Option<Principal> {
        if token == "admin" {
            return Some(Principal::Admin);
        }
        let id = token.strip_prefix("teacher-")?;
        // `parse` accepts a leading `+`; insisting on plain digits keeps one
        // spelling per teacher, so two tokens never share a cache identity
        // by accident of formatting.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
            return None;
        }
        let id: u32 = id.parse().ok()?;
        Db::teacher_exists(id).then_some(Principal::Teacher(id))
    }

    /// The caller's name in cache keys.
    pub fn identity(self) -> String {
        match self {
            Principal::Teacher(id) => format!("teacher-{id}"),
            Principal::Admin => "admin".to_owned(),
        }
    }
}

/// The identity function of per-user cache layers: requests without a valid
/// token get `None`, so they bypass the cache and reach the handler, which
/// answers 401.
pub fn cache_identity(parts: &Parts) -> Option<String> {
    Principal::from_headers(&parts.headers)
        .ok()
        .map(Principal::identity)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Principal::from_headers(&parts.headers)
    }
}
