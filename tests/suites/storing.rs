//! What is stored and how a hit answers: byte-identical hits, methods and
//! statuses, responses that must never be shared, body size limits.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;

use super::MakeCache;
use crate::support::apps::*;
use crate::support::harness::*;

pub async fn miss_then_hit_is_byte_identical(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.ttl(Duration::from_secs(300)),
        calls.clone(),
        |n, _| {
            let mut response = plain(n);
            let headers = response.headers_mut();
            headers.append("x-multi", HeaderValue::from_static("one"));
            headers.append("x-multi", HeaderValue::from_static("two"));
            headers.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
            response
        },
    );
    let first = get_reply(&app, "/r").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.cache_status(), "tagcache; fwd=uri-miss; stored");
    assert!(first.headers.get(header::AGE).is_none());
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1, "second request must be a hit");
    assert!(
        second.cache_status().starts_with("tagcache; hit; ttl="),
        "{}",
        second.cache_status()
    );
    let ttl = second.ttl();
    assert!((290..=300).contains(&ttl), "ttl {ttl}");
    assert_eq!(second.headers.get(header::AGE).unwrap(), "0");
    assert_eq!(second.body, first.body);
    assert_eq!(second.status, first.status);
    // Every origin header comes back, repeats and order included. The hit
    // also states its Content-Length, which the server adds to the miss on
    // the wire anyway.
    assert_eq!(
        second.headers.get(header::CONTENT_LENGTH).unwrap(),
        second.body.len().to_string().as_str()
    );
    let strip = |reply: &Reply| {
        reply
            .headers
            .iter()
            .filter(|(n, _)| {
                *n != "cache-status" && *n != header::AGE && *n != header::CONTENT_LENGTH
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&first), strip(&second));
    let multi: Vec<_> = second.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"]);
}

pub async fn only_get_and_head_are_cached(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    for _ in 0..2 {
        let reply = send(&app, Request::post("/r").body(Body::empty()).unwrap()).await;
        assert_eq!(reply.cache_status(), "tagcache; fwd=method");
    }
    assert_eq!(calls.get(), 2, "POST is never answered from the cache");
    // A POST must not have filled the GET entry either.
    let reply = get_reply(&app, "/r").await;
    assert_eq!(reply.text(), "body 3");
    assert_eq!(calls.get(), 3);
}

pub async fn head_is_answered_from_stored_get(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    // No explicit Content-Length: the HEAD hit must still announce the
    // stored body's length, not the empty body's.
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    // A HEAD miss goes to the origin and stores nothing.
    let head_miss = send(&app, Request::head("/r").body(Body::empty()).unwrap()).await;
    assert!(
        head_miss.cache_status().contains("detail=head"),
        "{}",
        head_miss.cache_status()
    );
    let filled = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 2);
    let head = send(&app, Request::head("/r").body(Body::empty()).unwrap()).await;
    assert_eq!(calls.get(), 2, "HEAD is a hit on the stored GET");
    assert!(head.is_hit());
    assert!(head.body.is_empty());
    assert_eq!(head.headers.get(header::CONTENT_LENGTH).unwrap(), "6");
    assert_eq!(filled.text(), "body 2");
}

pub async fn statuses_are_configurable(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let not_found = |_: usize, _: &http::request::Parts| StatusCode::NOT_FOUND.into_response();
    let app = counted(&cache, |l| l, calls.clone(), not_found);
    get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 2, "404 is not stored by default");
    assert_eq!(
        second.cache_status(),
        "tagcache; fwd=uri-miss; detail=status"
    );

    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.statuses([StatusCode::OK, StatusCode::NOT_FOUND]),
        calls.clone(),
        not_found,
    );
    get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert_eq!(calls.get(), 1, "404 stored when the route asks for it");
    assert_eq!(second.status, StatusCode::NOT_FOUND);
}

pub async fn unshareable_responses_are_never_stored(make: &dyn MakeCache) {
    let cases: [(&str, &str, &str); 5] = [
        ("cache-control", "no-store", "no-store"),
        ("set-cookie", "session=abc", "set-cookie"),
        ("vary", "*", "vary-any"),
        ("cache-control", "private, max-age=60", "private"),
        ("cache-control", "no-cache", "no-cache"),
    ];
    for (name, value, reason) in cases {
        let cache = make.make().await;
        let calls = Counter::default();
        let app = counted(
            &cache,
            |l| l,
            calls.clone(),
            move |n, _| {
                let mut response = plain(n);
                response.headers_mut().insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
                response
            },
        );
        let first = get_reply(&app, "/r").await;
        let second = get_reply(&app, "/r").await;
        assert_eq!(calls.get(), 2, "{name}: {value} must not be stored");
        assert_eq!(first.text(), "body 1");
        assert_eq!(
            second.text(),
            "body 2",
            "{name}: {value} served to another request"
        );
        assert_eq!(
            second.cache_status(),
            format!("tagcache; fwd=uri-miss; detail={reason}")
        );
    }
}

pub async fn large_bodies_pass_through_unstored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let big = Bytes::from(vec![b'x'; 10_000]);
    let body = big.clone();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(1024),
        calls.clone(),
        move |_, _| body.clone().into_response(),
    );
    for _ in 0..2 {
        let reply = get_reply(&app, "/r").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, big);
        assert!(
            reply.cache_status().contains("detail=too-large"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(calls.get(), 2);
}

pub async fn streaming_bodies_are_stored_only_within_the_limit(make: &dyn MakeCache) {
    // Grows past the limit while streaming: passed through whole, not stored.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(2500),
        calls.clone(),
        |_, _| chunked_body(3, 1000).into_response(),
    );
    let expected: Vec<u8> = (0..3u8).flat_map(|i| vec![b'a' + i; 1000]).collect();
    for _ in 0..2 {
        let reply = get_reply(&app, "/r").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.body, expected,
            "the client gets every byte, unchanged"
        );
        assert!(
            !reply.cache_status().contains("stored"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(
        calls.get(),
        2,
        "a body that outgrew the limit is not stored"
    );
    assert_eq!(cache.stats().route("r").not_stored, 2);

    // Within the limit: stored, and the hit is the same bytes.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(
        &cache,
        |l| l.max_body_bytes(2500),
        calls.clone(),
        |_, _| chunked_body(2, 1000).into_response(),
    );
    let first = get_reply(&app, "/r").await;
    let second = get_reply(&app, "/r").await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(second.body, first.body);
    assert_eq!(second.body.len(), 2000);
    assert_eq!(calls.get(), 1);
}

pub async fn request_no_store_is_answered_but_not_stored(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
    let first = send(&app, get_with("/r", &[("cache-control", "no-store")])).await;
    assert_eq!(first.text(), "body 1");
    assert!(
        first.cache_status().contains("detail=request-no-store"),
        "{}",
        first.cache_status()
    );
    assert_eq!(
        get_reply(&app, "/r").await.text(),
        "body 2",
        "nothing was stored"
    );
    // A stored entry may still answer it.
    let hit = send(&app, get_with("/r", &[("cache-control", "no-store")])).await;
    assert!(hit.is_hit());
    assert_eq!(calls.get(), 2);
}
