//! Stale serving: stale-while-revalidate, stale-if-error, and when a stale
//! answer is never allowed. Refreshes block on a [`Gate`] the test
//! controls; the only sleeps let short TTLs run out.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};

use super::MakeCache;
use crate::support::apps::*;
use crate::support::deadline::{eventually, within};
use crate::support::harness::*;

pub async fn stale_while_revalidate_refreshes_once(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| {
            l.ttl(Duration::from_millis(100))
                .stale_while_revalidate(Duration::from_secs(60))
        },
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
    );
    let filled = fill_and_expire(&app, &gate).await;
    db.write(1);
    // The refresh is held at the closed gate, yet every request is answered.
    let stale: Vec<_> = (0..50).map(|_| spawn_get(&app, "/r")).collect();
    for reply in stale {
        let reply = reply.await.unwrap();
        assert_eq!(reply.body, filled.body);
        assert!(
            reply
                .cache_status()
                .starts_with("tagcache; hit; fwd=stale; ttl=-"),
            "{}",
            reply.cache_status()
        );
    }
    gate.arrived(1).await;
    gate.open();
    let cache2 = cache.clone();
    eventually("refresh stored", || {
        let cache = cache2.clone();
        async move { cache.stats().route("r").misses == 2 }
    })
    .await;
    assert_eq!(calls.get(), 2, "50 stale requests, one refresh");
    // The refreshed entry answers from now on (fresh, or stale itself by now
    // given its 100 ms TTL, but never the first fill again).
    let app2 = app.clone();
    eventually("refreshed entry served", || {
        let app = app2.clone();
        async move { get_reply(&app, "/r").await.text() == "v1 call2" }
    })
    .await;
}

pub async fn refresh_racing_invalidation_is_not_served(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| {
            l.ttl(Duration::from_millis(100))
                .stale_while_revalidate(Duration::from_secs(60))
        },
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
    );
    fill_and_expire(&app, &gate).await;
    db.write(1);
    let stale = get_reply(&app, "/r").await;
    assert!(stale.cache_status().contains("fwd=stale"));
    gate.arrived(1).await; // the refresh read v1 and is held
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    let after = spawn_get(&app, "/r");
    until_waiting(&cache, 1).await;
    gate.open();
    let after = after.await.unwrap();
    assert_eq!(
        after.text(),
        "v2 call3",
        "neither the stale entry nor the older refresh is served"
    );
    assert!(get_reply(&app, "/r").await.text().starts_with("v2"));
}

pub async fn stale_if_error_covers_5xx_and_errors(make: &dyn MakeCache) {
    // 5xx from the origin.
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated_with(
        &cache,
        |l| {
            l.ttl(Duration::from_millis(100))
                .stale_if_error(Duration::from_secs(60))
        },
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::None,
        |n, body| {
            if n == 1 {
                body.into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
            }
        },
    );
    let filled = get_reply(&app, "/r").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rescued = get_reply(&app, "/r").await;
    assert_eq!(rescued.status, StatusCode::OK);
    assert_eq!(rescued.body, filled.body);
    assert!(
        rescued.cache_status().contains("fwd-status=503"),
        "{}",
        rescued.cache_status()
    );
    assert!(rescued.cache_status().contains("detail=stale-if-error"));
    assert_eq!(calls.get(), 2);

    // An error from the inner service (not an HTTP response).
    let cache = make.make().await;
    let calls = Counter::default();
    let counter = calls.clone();
    let origin = tower::service_fn(move |_request: http::Request<Body>| {
        let n = counter.bump();
        async move {
            if n == 1 {
                Ok(http::Response::new(Full::new(Bytes::from("good"))))
            } else {
                Err(std::io::Error::other("origin unreachable"))
            }
        }
    });
    let layer = cache
        .layer("svc")
        .ttl(Duration::from_millis(100))
        .stale_if_error(Duration::from_secs(60));
    let service = layer.layer(origin);
    let request = || http::Request::get("/svc").body(Body::empty()).unwrap();
    const NEVER_ANSWERED: &str = "request GET /svc never answered";
    const NEVER_ENDED: &str = "the body of GET /svc never ended";
    let first = within(NEVER_ANSWERED, service.clone().oneshot(request()))
        .await
        .unwrap();
    assert_eq!(
        within(NEVER_ENDED, first.into_body().collect())
            .await
            .unwrap()
            .to_bytes(),
        "good"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rescued = within(NEVER_ANSWERED, service.clone().oneshot(request()))
        .await
        .expect("stale answer instead of the error");
    assert!(rescued.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("stale-if-error"));
    assert_eq!(
        within(NEVER_ENDED, rescued.into_body().collect())
            .await
            .unwrap()
            .to_bytes(),
        "good"
    );

    // Without a stale entry the error passes through unchanged.
    let cache = make.make().await;
    let failing = tower::service_fn(|_request: http::Request<Body>| async {
        Err::<http::Response<Full<Bytes>>, _>(std::io::Error::other("origin unreachable"))
    });
    let service = cache.layer("svc").layer(failing);
    let error = within(NEVER_ANSWERED, service.oneshot(request()))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "origin unreachable");
}

pub async fn invalidated_entry_is_never_served_stale(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    let app = gated_with(
        &cache,
        |l| {
            l.ttl(Duration::from_millis(100))
                .stale_while_revalidate(Duration::from_secs(60))
                .stale_if_error(Duration::from_secs(60))
        },
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::None,
        |n, body| {
            if n == 1 {
                body.into_response()
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
            }
        },
    );
    get_reply(&app, "/r").await;
    cache.invalidate(["t"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reply = get_reply(&app, "/r").await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the origin's error, not the invalidated entry"
    );
    assert_eq!(reply.text(), "v0 call2");
}

pub async fn soft_invalidation_serves_stale_under_swr(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| {
            l.ttl(Duration::from_secs(300))
                .stale_while_revalidate(Duration::from_secs(60))
        },
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::None,
    );
    get_reply(&app, "/r").await;
    db.write(1);
    cache.invalidate_soft(["t"]).await.unwrap();
    let stale = get_reply(&app, "/r").await;
    assert!(
        stale.cache_status().contains("fwd=stale"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.text(), "v0 call1");
    let app2 = app.clone();
    eventually("refreshed after soft invalidation", || {
        let app = app2.clone();
        async move { get_reply(&app, "/r").await.text() == "v1 call2" }
    })
    .await;

    // Without stale-while-revalidate a soft invalidation is a miss.
    let cache = make.make().await;
    let calls = Counter::default();
    let app = gated(
        &cache,
        |l| l.ttl(Duration::from_secs(300)),
        Db::default(),
        Gate::default(),
        calls.clone(),
        GateCalls::None,
    );
    get_reply(&app, "/r").await;
    cache.invalidate_soft(["t"]).await.unwrap();
    assert_eq!(get_reply(&app, "/r").await.text(), "v0 call2");
}

pub async fn must_revalidate_is_never_served_stale(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = gated_with(
        &cache,
        |l| {
            l.ttl(Duration::from_millis(100))
                .stale_while_revalidate(Duration::from_secs(60))
                .stale_if_error(Duration::from_secs(60))
        },
        Db::default(),
        Gate::default(),
        calls.clone(),
        GateCalls::None,
        |n, body| {
            let mut response = if n == 1 {
                body.into_response()
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
            };
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60, must-revalidate"),
            );
            response
        },
    );
    get_reply(&app, "/r").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let reply = get_reply(&app, "/r").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.cache_status()
    );
    assert_eq!(reply.text(), "v0 call2");
}
