//! Reading the JSON body of an admin mutation: `Content-Type:
//! application/json` required (415 otherwise), a small size bound (413),
//! and a body that matches the endpoint's shape exactly (400, naming what
//! is wrong).

use axum::body::{to_bytes, Body};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::errors::ApiError;

/// The largest body an admin mutation reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads and parses the body as `T`.
pub(crate) async fn json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    // The only read error of a body that reached the handler is its length
    // (a client that went away never sees an answer).
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    })?;
    let not_taken = |e: serde_json::Error| {
        ApiError::bad_request(format!("the body is not what this endpoint takes: {e}"))
    };
    // Parsed as a value first: serde would read a struct from a JSON array
    // too (`["classroom"]` as `{"confirm": "classroom"}`), and a purge of
    // everything must come from exactly the object it documents.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(not_taken)?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(not_taken)
}
