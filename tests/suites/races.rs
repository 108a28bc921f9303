//! Coalescing, invalidation races and stale serving. Handlers block on a
//! [`Gate`] the test controls, and the test waits until the requests it
//! wants in a flight are counted as waiting, so each interleaving is forced,
//! not hoped for. The only sleeps let short TTLs run out.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tagcache::{Cache, CacheLayer};
use tower::{Layer, ServiceExt};

use super::MakeCache;
use crate::support::harness::*;

/// Data the origin reads at the start of each call, like a database row.
#[derive(Clone, Default)]
struct Db(Arc<AtomicU64>);

impl Db {
    fn read(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    fn write(&self, version: u64) {
        self.0.store(version, Ordering::SeqCst)
    }
}

/// How the gated origin treats each call, by its number.
#[derive(Clone, Copy)]
enum GateCalls {
    All,
    FirstOnly,
    None,
}

/// `/r`: reads the db, waits at the gate, answers `v<version> call<n>`,
/// tagged `t`.
fn gated(
    cache: &Cache,
    layer: impl FnOnce(CacheLayer) -> CacheLayer,
    db: Db,
    gate: Gate,
    calls: Counter,
    which: GateCalls,
) -> Router {
    gated_with(cache, layer, db, gate, calls, which, |_, body| {
        body.into_response()
    })
}

fn gated_with(
    cache: &Cache,
    layer: impl FnOnce(CacheLayer) -> CacheLayer,
    db: Db,
    gate: Gate,
    calls: Counter,
    which: GateCalls,
    respond: fn(usize, String) -> Response,
) -> Router {
    let handler = move || {
        let (db, gate, calls) = (db.clone(), gate.clone(), calls.clone());
        async move {
            let n = calls.bump();
            let version = db.read();
            let wait = match which {
                GateCalls::All => true,
                GateCalls::FirstOnly => n == 1,
                GateCalls::None => false,
            };
            if wait {
                gate.pass().await;
            }
            respond(n, format!("v{version} call{n}"))
        }
    };
    Router::new().route(
        "/r",
        get(handler).route_layer(layer(cache.layer("r").tags(|_, _| ["t"]))),
    )
}

/// Waits until exactly `n` requests are waiting on a flight: the test then
/// knows they joined before it lets the leader go on.
async fn until_waiting(cache: &Cache, n: usize) {
    let cache = cache.clone();
    eventually(&format!("{n} requests waiting"), 1000, || {
        let cache = cache.clone();
        async move { cache.waiting_requests() == n }
    })
    .await;
}

pub async fn herd_of_misses_makes_one_origin_call(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l,
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let herd: Vec<_> = (0..999).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 999).await;
    gate.open();
    let first = leader.await.unwrap();
    for reply in herd {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, first.body);
    }
    assert_eq!(calls.get(), 1, "1000 concurrent misses, one origin call");
    let stats = cache.stats().route("r");
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.collapsed + stats.hits, 999);
}

pub async fn collapsed_waiters_are_marked(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l,
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiter = spawn_get(&app, "/r");
    let waiting = cache.clone();
    eventually("the waiter waits on the leader's flight", 500, || {
        let cache = waiting.clone();
        async move { cache.waiting_requests() == 1 }
    })
    .await;
    gate.open();
    let leader = leader.await.unwrap();
    let waiter = waiter.await.unwrap();
    assert_eq!(leader.body, waiter.body);
    assert_eq!(waiter.cache_status(), "tagcache; fwd=uri-miss; collapsed");
    assert_eq!(calls.get(), 1);
}

pub async fn fill_in_flight_during_invalidation_is_not_served(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    db.write(1);
    let app = gated(
        &cache,
        |l| l,
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let slow = spawn_get(&app, "/r");
    gate.arrived(1).await;
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    gate.open();
    assert_eq!(
        slow.await.unwrap().text(),
        "v1 call1",
        "the slow request gets its own answer"
    );
    let after = get_reply(&app, "/r").await;
    assert_eq!(
        after.text(),
        "v2 call2",
        "nothing that started before the invalidation is served after it"
    );
    assert!(
        get_reply(&app, "/r").await.is_hit(),
        "the fresh fill is stored"
    );
}

pub async fn body_streaming_during_invalidation_is_not_served(make: &dyn MakeCache) {
    let cache = make.make().await;
    let db = Db::default();
    db.write(1);
    let gate = Gate::default();
    let calls = Counter::default();
    let (db2, gate2, calls2) = (db.clone(), gate.clone(), calls.clone());
    let app = Router::new().route(
        "/r",
        get(move || {
            let (db, gate, calls) = (db2.clone(), gate2.clone(), calls2.clone());
            async move {
                let n = calls.bump();
                let version = db.read();
                let head = Bytes::from(format!("v{version} "));
                let tail = Bytes::from(format!("call{n}"));
                let stream = futures_util::stream::unfold(0, move |step| {
                    let (gate, head, tail) = (gate.clone(), head.clone(), tail.clone());
                    async move {
                        match step {
                            0 => Some((Ok::<_, Infallible>(head), 1)),
                            1 => {
                                if n == 1 {
                                    gate.pass().await;
                                }
                                Some((Ok(tail), 2))
                            }
                            _ => None,
                        }
                    }
                });
                Body::from_stream(stream)
            }
        })
        .route_layer(cache.layer("r").tags(|_, _| ["t"])),
    );
    let response = app
        .clone()
        .oneshot(crate::support::harness::get("/r"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "v1 ",
        "the first bytes reach the client before the body ends"
    );
    let reading = tokio::spawn(async move { body.collect().await.unwrap().to_bytes() });
    gate.arrived(1).await;
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    gate.open();
    assert_eq!(reading.await.unwrap(), "call1");
    assert_eq!(get_reply(&app, "/r").await.text(), "v2 call2");
}

pub async fn invalidation_before_fill_does_not_poison_later_fills(make: &dyn MakeCache) {
    let cache = make.make().await;
    let calls = Counter::default();
    let app = gated(
        &cache,
        |l| l,
        Db::default(),
        Gate::default(),
        calls.clone(),
        GateCalls::None,
    );
    cache.invalidate(["t"]).await.unwrap();
    get_reply(&app, "/r").await;
    assert!(get_reply(&app, "/r").await.is_hit());
    assert_eq!(calls.get(), 1);
}

pub async fn waiter_arriving_after_invalidation_skips_old_flight(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    db.write(1);
    let app = gated(
        &cache,
        |l| l,
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let old = spawn_get(&app, "/r");
    gate.arrived(1).await;
    db.write(2);
    cache.invalidate(["t"]).await.unwrap();
    let late = spawn_get(&app, "/r");
    until_waiting(&cache, 1).await;
    gate.open();
    assert_eq!(old.await.unwrap().text(), "v1 call1");
    let late = late.await.unwrap();
    assert_eq!(
        late.text(),
        "v2 call2",
        "a request after the invalidation never takes the older flight"
    );
    assert_eq!(calls.get(), 2);
}

pub async fn cancelled_leader_hands_over(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l,
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiters: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 5).await;
    // The client disconnects: its future is dropped mid-origin-call.
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for waiter in waiters {
        let reply = waiter.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.text(),
            "v0 call2",
            "one waiter took over and shared its answer"
        );
    }
    assert_eq!(calls.get(), 2);
}

pub async fn panicking_leader_hands_over(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let (gate2, calls2) = (gate.clone(), calls.clone());
    let app = Router::new().route(
        "/r",
        get(move || {
            let (gate, calls) = (gate2.clone(), calls2.clone());
            async move {
                let n = calls.bump();
                if n == 1 {
                    gate.pass().await;
                    panic!("origin failure in call 1 (expected by the test)");
                }
                format!("call{n}")
            }
        })
        .route_layer(cache.layer("r")),
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiters: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 5).await;
    gate.open();
    assert!(leader.await.unwrap_err().is_panic());
    for waiter in waiters {
        let reply = waiter.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "call2");
    }
    assert_eq!(calls.get(), 2);
}

pub async fn unshareable_response_is_not_handed_to_waiters(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated_with(
        &cache,
        |l| l,
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
        |_, body| {
            let mut response = body.into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_static("sid=secret"));
            response
        },
    );
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiters: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 5).await;
    gate.open();
    let mut bodies = vec![leader.await.unwrap().text()];
    for waiter in waiters {
        let reply = waiter.await.unwrap();
        assert!(
            !reply.cache_status().contains("collapsed"),
            "{}",
            reply.cache_status()
        );
        bodies.push(reply.text());
    }
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        6,
        "each request got its own origin response: {bodies:?}"
    );
    assert_eq!(calls.get(), 6);
}

pub async fn waiters_stop_waiting_after_timeout(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l.coalesce_timeout(Duration::from_millis(100)),
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let stuck = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiter = get_reply(&app, "/r").await;
    assert_eq!(
        waiter.text(),
        "v0 call2",
        "the waiter went to the origin itself"
    );
    gate.open();
    assert_eq!(stuck.await.unwrap().text(), "v0 call1");
}

pub async fn coalescing_can_be_turned_off(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated(
        &cache,
        |l| l.coalesce(false),
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
    );
    let requests: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    gate.arrived(5).await;
    gate.open();
    for request in requests {
        assert_eq!(request.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(calls.get(), 5);
}

/// Fills `/r` with a short TTL and waits until it has expired.
async fn fill_and_expire(app: &Router, gate: &Gate) -> Reply {
    gate.open();
    let filled = get_reply(app, "/r").await;
    gate.arrived(1).await;
    gate.close();
    tokio::time::sleep(Duration::from_millis(250)).await;
    filled
}

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
    eventually("refresh stored", 500, || {
        let cache = cache2.clone();
        async move { cache.stats().route("r").misses == 2 }
    })
    .await;
    assert_eq!(calls.get(), 2, "50 stale requests, one refresh");
    // The refreshed entry answers from now on (fresh, or stale itself by now
    // given its 100 ms TTL, but never the first fill again).
    let app2 = app.clone();
    eventually("refreshed entry served", 500, || {
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
    let first = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "good"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rescued = service
        .clone()
        .oneshot(request())
        .await
        .expect("stale answer instead of the error");
    assert!(rescued.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("stale-if-error"));
    assert_eq!(
        rescued.into_body().collect().await.unwrap().to_bytes(),
        "good"
    );

    // Without a stale entry the error passes through unchanged.
    let cache = make.make().await;
    let failing = tower::service_fn(|_request: http::Request<Body>| async {
        Err::<http::Response<Full<Bytes>>, _>(std::io::Error::other("origin unreachable"))
    });
    let service = cache.layer("svc").layer(failing);
    let error = service.oneshot(request()).await.unwrap_err();
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
    eventually("refreshed after soft invalidation", 500, || {
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
