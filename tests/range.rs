//! Range requests answered from a stored 200 (RFC 9110 §14): a single byte
//! range gets a 206 with the asked bytes, one past the body a 416, anything
//! else the whole 200; `If-Range` and `If-None-Match` are honoured. Every
//! case counts origin calls: a range is cut from the stored body, never
//! asked of the origin.

mod support;

use std::time::Duration;

use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tagcache::Cache;

use support::apps::*;
use support::deadline::spawn;
use support::harness::*;

/// The stored body: 20 bytes, each telling its offset.
const BODY: &str = "0123456789abcdefghij";
/// The stored response's strong entity tag.
const ETAG: &str = "\"v1\"";

/// `BODY` with a strong `ETag`, fresh for a minute.
fn tagged(_: usize, _: &http::request::Parts) -> Response {
    let mut response = BODY.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(ETAG));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}

/// `/r` answering [`tagged`], already filled by a plain GET: the app and its
/// origin call counter (at 1).
async fn filled() -> (Router, Counter) {
    let calls = Counter::default();
    let app = counted(&Cache::default(), |l| l, calls.clone(), tagged);
    let fill = get_reply(&app, "/r").await;
    assert_eq!(fill.status, StatusCode::OK);
    assert_eq!(fill.text(), BODY);
    assert_eq!(calls.get(), 1);
    (app, calls)
}

/// Sends `GET /r` with `headers`.
async fn ranged(app: &Router, headers: &[(&str, &str)]) -> Reply {
    send(app, get_with("/r", headers)).await
}

/// Asserts a 206 hit carrying `bytes` as `Content-Range: bytes <span>/20`.
#[track_caller]
fn assert_partial(reply: &Reply, bytes: &str, span: &str) {
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{reply:?}");
    assert_eq!(reply.text(), bytes);
    let content_range = format!("bytes {span}/20");
    assert_eq!(reply.headers[header::CONTENT_RANGE], content_range.as_str());
    let length = bytes.len().to_string();
    assert_eq!(reply.headers[header::CONTENT_LENGTH], length.as_str());
    assert_eq!(
        reply.headers.get_all(header::CONTENT_LENGTH).iter().count(),
        1
    );
    assert!(reply.is_hit(), "{}", reply.cache_status());
    assert!(reply.headers.contains_key(header::AGE));
}

/// Asserts the whole stored 200, from the cache.
#[track_caller]
fn assert_full(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.text(), BODY);
    assert_eq!(reply.headers[header::CONTENT_LENGTH], "20");
    assert!(!reply.headers.contains_key(header::CONTENT_RANGE));
    assert!(reply.is_hit(), "{}", reply.cache_status());
}

#[tokio::test]
async fn a_single_range_gets_its_bytes_from_the_stored_body() {
    let (app, calls) = filled().await;
    let reply = ranged(&app, &[("range", "bytes=0-4")]).await;
    assert_partial(&reply, "01234", "0-4");
    // A 206 keeps the 200's validators and caching headers.
    assert_eq!(reply.headers[header::ETAG], ETAG);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "max-age=60");
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_partial(
        &ranged(&app, &[("range", "bytes=15-")]).await,
        "fghij",
        "15-19",
    );
    assert_partial(
        &ranged(&app, &[("range", "bytes=18-99")]).await,
        "ij",
        "18-19",
    );
    assert_eq!(calls.get(), 1, "ranges are cut from the stored body");
}

#[tokio::test]
async fn a_suffix_range_gets_the_last_bytes() {
    let (app, calls) = filled().await;
    assert_partial(
        &ranged(&app, &[("range", "bytes=-3")]).await,
        "hij",
        "17-19",
    );
    assert_partial(&ranged(&app, &[("range", "bytes=-50")]).await, BODY, "0-19");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn a_range_past_the_body_is_unsatisfiable() {
    let (app, calls) = filled().await;
    for range in ["bytes=20-", "bytes=25-30", "bytes=-0"] {
        let reply = ranged(&app, &[("range", range)]).await;
        assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.headers[header::CONTENT_RANGE], "bytes */20");
        assert_eq!(reply.headers[header::CONTENT_LENGTH], "0");
        assert!(reply.is_hit(), "{}", reply.cache_status());
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn other_ranges_get_the_whole_body() {
    let (app, calls) = filled().await;
    for range in [
        "bytes=0-1,5-6",
        "bytes=5-2",
        "items=0-4",
        "bytes=0-99999999999999999999999x",
    ] {
        assert_full(&ranged(&app, &[("range", range)]).await);
    }
    let huge = ranged(&app, &[("range", "bytes=0-99999999999999999999999")]).await;
    assert_partial(&huge, BODY, "0-19");
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn if_range_applies_the_range_only_for_the_current_strong_etag() {
    let (app, calls) = filled().await;
    let current = ranged(&app, &[("range", "bytes=0-4"), ("if-range", ETAG)]).await;
    assert_partial(&current, "01234", "0-4");
    let old = ranged(&app, &[("range", "bytes=0-4"), ("if-range", "\"v0\"")]).await;
    assert_full(&old);
    let weak = ranged(&app, &[("range", "bytes=0-4"), ("if-range", "W/\"v1\"")]).await;
    assert_full(&weak);
    // An outdated copy gets the whole body even where its range would be
    // unsatisfiable.
    let past = ranged(&app, &[("range", "bytes=50-"), ("if-range", "\"v0\"")]).await;
    assert_full(&past);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn head_with_a_range_gets_the_whole_head() {
    let (app, calls) = filled().await;
    let request = Request::head("/r")
        .header("range", "bytes=0-4")
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
    assert_eq!(reply.headers[header::CONTENT_LENGTH], "20");
    assert!(!reply.headers.contains_key(header::CONTENT_RANGE));
    assert!(reply.is_hit(), "{}", reply.cache_status());
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn if_none_match_is_evaluated_before_range() {
    let (app, calls) = filled().await;
    let reply = ranged(&app, &[("range", "bytes=0-4"), ("if-none-match", ETAG)]).await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    assert!(!reply.headers.contains_key(header::CONTENT_RANGE));
    let other = ranged(&app, &[("range", "bytes=0-4"), ("if-none-match", "\"v0\"")]).await;
    assert_partial(&other, "01234", "0-4");
    assert_eq!(calls.get(), 1);
}

/// A range request that misses goes to the origin like any other; what the
/// origin answers (here the whole 200) is stored and ranged afterwards.
#[tokio::test]
async fn a_range_request_that_misses_fills_the_cache() {
    let calls = Counter::default();
    let app = counted(&Cache::default(), |l| l, calls.clone(), tagged);
    let miss = ranged(&app, &[("range", "bytes=0-4")]).await;
    assert_eq!(miss.status, StatusCode::OK);
    assert_eq!(miss.text(), BODY);
    assert!(!miss.is_hit(), "{}", miss.cache_status());
    assert_partial(
        &ranged(&app, &[("range", "bytes=0-4")]).await,
        "01234",
        "0-4",
    );
    assert_eq!(calls.get(), 1);
}

/// A request waiting on another's flight gets its range of the shared
/// response.
#[tokio::test]
async fn a_waiter_gets_its_range_of_the_flight() {
    let cache = Cache::default();
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        // Longer than any test's deadline: the waiter never gives up on
        // the flight and calls the origin itself.
        |l| l.coalesce_timeout(Duration::from_secs(600)),
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiter = spawn(
        "the ranged waiter never answered",
        send(&app, get_with("/r", &[("range", "bytes=3-7")])),
    );
    until_waiting(&cache, 1).await;
    gate.open();
    let leader = leader.await.unwrap();
    assert_eq!(leader.text(), "v0 call1");
    let waiter = waiter.await.unwrap();
    assert_eq!(waiter.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(waiter.text(), "call1");
    assert_eq!(waiter.headers[header::CONTENT_RANGE], "bytes 3-7/8");
    assert_eq!(calls.get(), 1);
}

/// A range request that misses goes to the origin on its own: a herd of
/// plain requests behind it still shares one origin call of its own,
/// rather than waiting for a partial answer it could not use.
#[tokio::test]
async fn a_range_request_never_leads_a_flight() {
    let cache = Cache::default();
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l.coalesce_timeout(Duration::from_secs(600)),
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let ranged = spawn(
        "the range request never answered",
        send(&app, get_with("/r", &[("range", "bytes=0-1")])),
    );
    gate.arrived(1).await;
    let herd: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    for reply in herd {
        assert_eq!(reply.await.unwrap().text(), "v0 call2");
    }
    assert_eq!(calls.get(), 2);
    gate.open();
    ranged.await.unwrap();
}
