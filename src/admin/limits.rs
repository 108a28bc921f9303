//! Bounds on what one admin request may ask for, so that no request can
//! make the admin (or the store behind it) do unbounded work.

use super::errors::ApiError;
use crate::layer::DEFAULT_MAX_KEY_BYTES;

/// Most tags one `/invalidate` call takes.
pub const MAX_TAGS_PER_CALL: usize = 100;
/// Longest tag accepted, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Longest key (or key prefix) accepted, in bytes: the layers' default
/// bound on the keys they cache.
pub const MAX_KEY_BYTES: usize = DEFAULT_MAX_KEY_BYTES;
/// Longest route name accepted, in bytes.
pub const MAX_ROUTE_BYTES: usize = 128;
/// Longest cursor accepted, in bytes.
pub const MAX_CURSOR_BYTES: usize = 128;

/// Refuses an empty or over-long `value` of `field`.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if value.len() > max {
        return Err(ApiError::bad_request(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    Ok(())
}

/// Refuses an empty or over-long list of tags, or any empty or over-long
/// tag in it.
pub(crate) fn check_tags(tags: &[String]) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Err(ApiError::bad_request("tags must name at least one tag"));
    }
    if tags.len() > MAX_TAGS_PER_CALL {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_TAGS_PER_CALL} tags per call"
        )));
    }
    for tag in tags {
        check_len("each tag", tag, MAX_TAG_BYTES)?;
    }
    Ok(())
}
