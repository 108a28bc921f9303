//! Who may use the admin router: a bearer token, compared in constant
//! time, or the application's own check over the request head. There is
//! no third way: an admin router without either is not built.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

/// The shortest bearer token accepted: anything shorter could be guessed.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A check over the request head, given by the application.
pub(crate) type CheckFn = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// How requests are authenticated.
#[derive(Clone)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Arc<[u8]>),
    /// The application decides.
    Check(CheckFn),
}

impl Auth {
    pub(crate) fn allows(&self, parts: &Parts) -> bool {
        match self {
            Auth::Bearer(expected) => parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|value| bearer(value.as_bytes()))
                .is_some_and(|given| constant_time_eq(given, expected)),
            Auth::Check(check) => check(parts),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme matched
/// without regard to case, as RFC 9110 says).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// Whether `given` equals `expected`, taking the same time whatever the
/// position of the first difference, so that timing does not reveal the
/// token a byte at a time. Every byte of `expected` is compared (against
/// `given` cycled, when it is shorter or longer), and the differences are
/// folded with OR rather than returning early; `black_box` keeps the
/// compiler from turning the fold back into an early exit. Only the length
/// of `given`, which the caller chose, affects the time.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut difference = u8::from(given.len() != expected.len());
    for (i, want) in expected.iter().enumerate() {
        let got = match given.len() {
            0 => 0,
            n => given[i % n],
        };
        difference |= std::hint::black_box(got ^ want);
    }
    std::hint::black_box(difference) == 0
}

/// The middleware in front of every authenticated admin endpoint: a
/// request that does not pass goes no further and learns nothing (401,
/// the same body whatever was wrong).
pub(crate) async fn require(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if !auth.allows(&parts) {
        return ApiError::unauthorized().into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        let token = b"0123456789abcdef";
        assert!(constant_time_eq(token, token));
        assert!(!constant_time_eq(b"0123456789abcdeF", token));
        assert!(!constant_time_eq(b"X123456789abcdef", token));
        assert!(!constant_time_eq(b"0123456789abcde", token));
        assert!(!constant_time_eq(b"0123456789abcdef0", token));
        // A repetition of the token is not the token.
        assert!(!constant_time_eq(
            b"0123456789abcdef0123456789abcdef",
            token
        ));
        assert!(!constant_time_eq(b"", token));
        assert!(!constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
