//! [`Cache`] as an axum extractor.

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::cache::Cache;

/// Handlers can take the [`Cache`] as an extractor: routes behind a
/// [`CacheLayer`](crate::CacheLayer) or
/// [`InvalidateLayer`](crate::InvalidateLayer) receive it automatically,
/// other routes need `.layer(axum::Extension(cache.clone()))`.
impl<S: Send + Sync> FromRequestParts<S> for Cache {
    type Rejection = MissingCache;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Cache>().cloned().ok_or(MissingCache)
    }
}

/// Rejection when a handler asks for the [`Cache`] but no layer provided it.
#[derive(Debug, Clone, Copy)]
pub struct MissingCache;

impl IntoResponse for MissingCache {
    fn into_response(self) -> Response {
        tracing::error!("tagcache::Cache extractor used on a route without the cache: add `.layer(axum::Extension(cache.clone()))` to the router");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "tagcache::Cache is not available to this handler: add `.layer(axum::Extension(cache.clone()))` to the router, or put the route behind a CacheLayer or InvalidateLayer",
        )
            .into_response()
    }
}
