//! Coalescing: concurrent misses share one origin call. Handlers block on
//! a [`Gate`] the test controls, and the test waits until the requests it
//! wants in a flight are counted as waiting, so each interleaving is forced,
//! not hoped for.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::MakeCache;

/// A coalesce timeout longer than any test's deadline. Waiters give up on a
/// flight after the coalesce timeout (3 s by default) and call the origin
/// themselves; on a loaded machine a flight can outlast that, which would
/// add origin calls these tests count. (The timeout itself has a test of
/// its own.)
const PATIENT: Duration = Duration::from_secs(600);

/// `/r` (see [`gated_with`]) with patient waiters: the app, its gate and
/// its origin call counter.
fn patient(
    cache: &tagcache::Cache,
    which: GateCalls,
    respond: fn(usize, String) -> axum::response::Response,
) -> (Router, Gate, Counter) {
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated_with(
        cache,
        |l| l.coalesce_timeout(PATIENT),
        Db::default(),
        gate.clone(),
        calls.clone(),
        which,
        respond,
    );
    (app, gate, calls)
}

/// A plain response.
fn plain(_: usize, body: String) -> axum::response::Response {
    body.into_response()
}
use crate::support::apps::*;
use crate::support::deadline::eventually;
use crate::support::harness::*;

/// A response that sets a cookie: never shared.
fn with_cookie(_: usize, body: String) -> axum::response::Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("sid=secret"));
    response
}

/// Sets a cookie on the first response only.
fn cookie_on_first_call(n: usize, body: String) -> axum::response::Response {
    match n {
        1 => with_cookie(n, body),
        _ => body.into_response(),
    }
}

pub async fn herd_of_misses_makes_one_origin_call(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, gate, calls) = patient(&cache, GateCalls::All, plain);
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
    let (app, gate, calls) = patient(&cache, GateCalls::All, plain);
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiter = spawn_get(&app, "/r");
    let waiting = cache.clone();
    eventually("the waiter waits on the leader's flight", || {
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

pub async fn waiter_arriving_after_invalidation_skips_old_flight(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (db, gate, calls) = (Db::default(), Gate::default(), Counter::default());
    db.write(1);
    let app = gated(
        &cache,
        |l| l.coalesce_timeout(PATIENT),
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
    let (app, gate, calls) = patient(&cache, GateCalls::FirstOnly, plain);
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
        .route_layer(cache.layer("r").coalesce_timeout(PATIENT)),
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
    let (app, gate, calls) = patient(&cache, GateCalls::FirstOnly, with_cookie);
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

/// Once a key's response could not be shared (here: `Set-Cookie`), the
/// next herd for it goes to the origin at once, in parallel, rather than
/// queueing behind a leader whose answer it could not take.
pub async fn a_herd_after_an_unshareable_response_does_not_queue(make: &dyn MakeCache) {
    let cache = make.make().await;
    // Only a pass can bring all five to the origin (waiters are PATIENT).
    let (app, gate, calls) = patient(&cache, GateCalls::All, with_cookie);
    gate.open();
    get_reply(&app, "/r").await;
    gate.arrived(1).await;
    gate.close();
    let herd: Vec<_> = (0..5).map(|_| spawn_get(&app, "/r")).collect();
    // All five reach the origin while the gate is closed: none is waiting
    // on another.
    gate.arrived(5).await;
    gate.open();
    for reply in herd {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            !reply.cache_status().contains("collapsed"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(calls.get(), 6);
    assert_eq!(cache.stats().route("r").passes, 5);
}

/// Passing never stops storing: when the key's response becomes storable
/// again it is stored, and the pass ends.
pub async fn a_passing_key_is_cached_once_its_response_is_storable(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (app, _gate, calls) = patient(&cache, GateCalls::None, cookie_on_first_call);
    assert_eq!(get_reply(&app, "/r").await.text(), "v0 call1");
    let second = get_reply(&app, "/r").await;
    assert_eq!(second.text(), "v0 call2");
    wait_for_hit(&app, "/r").await;
    assert_eq!(get_reply(&app, "/r").await.text(), "v0 call2");
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.stats().route("r").passes, 1);
}

/// A failing status is not a lasting reason: after a 503 the key's next
/// herd still shares one origin call (coalescing shields a struggling
/// origin).
pub async fn a_herd_after_an_error_status_still_coalesces(make: &dyn MakeCache) {
    let cache = make.make().await;
    let (gate, calls) = (Gate::default(), Counter::default());
    let app = gated_with(
        &cache,
        |l| l.coalesce_timeout(PATIENT),
        Db::default(),
        gate.clone(),
        calls.clone(),
        GateCalls::All,
        |n, body| match n {
            1 => (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
            _ => body.into_response(),
        },
    );
    gate.open();
    assert_eq!(
        get_reply(&app, "/r").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gate.arrived(1).await;
    gate.close();
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let herd: Vec<_> = (0..4).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 4).await;
    gate.open();
    assert_eq!(leader.await.unwrap().text(), "v0 call2");
    for reply in herd {
        assert_eq!(reply.await.unwrap().text(), "v0 call2");
    }
    assert_eq!(calls.get(), 2);
    assert_eq!(cache.stats().route("r").passes, 0);
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
