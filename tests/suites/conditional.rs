//! Conditional requests answered from the cache (304).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

pub async fn if_none_match_gets_304_from_cache(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l,
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_static("\"abc\""));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60"),
            );
            response
        },
    );
    get_reply(&app, "/r").await;
    let not_modified = send(&app, get_with("/r", &[("if-none-match", "W/\"abc\"")])).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.headers.get(header::ETAG).unwrap(), "\"abc\"");
    assert_eq!(
        not_modified.headers.get(header::CACHE_CONTROL).unwrap(),
        "max-age=60"
    );
    assert!(not_modified.is_hit());
    let other = send(&app, get_with("/r", &[("if-none-match", "\"zzz\"")])).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "body 1");
    assert_eq!(
        calls.get(),
        1,
        "conditional requests answered without the handler"
    );
}

pub async fn no_304_for_stored_non_2xx(make: &dyn MakeCache) {
    let cache = make.make().await;
    let app = counted(
        &cache,
        |l| l.statuses([StatusCode::OK, StatusCode::NOT_FOUND]),
        Counter::default(),
        |_, _| {
            let mut response = (StatusCode::NOT_FOUND, "gone").into_response();
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_static("\"x\""));
            response
        },
    );
    get_reply(&app, "/r").await;
    let reply = send(&app, get_with("/r", &[("if-none-match", "\"x\"")])).await;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "preconditions apply only to 2xx"
    );
    assert_eq!(reply.text(), "gone");
}
