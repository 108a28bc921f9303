//! Memory-only edge cases that need a special store, a real HTTP server or
//! tokio's paused clock (virtual time: deterministic, never wall time).

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use support::apps::counting_app;
use support::deadline::{backstop, eventually, spawn, within};
use support::harness::{self, get_reply, Counter, Gate, Reply};
use support::http::Server;
use support::stores::TestStore;
use tagcache::Cache;
use tower::ServiceExt;

#[tokio::test]
async fn soft_invalidation_is_never_a_fresh_hit_even_with_a_clock_ahead() {
    backstop(async {
        let cache = Cache::new(TestStore::new(Duration::from_secs(5), None));
        let calls = Counter::default();
        let app = counting_app(&cache, calls.clone(), |l| l.ttl(Duration::from_secs(300)));
        get_reply(&app, "/r").await;
        cache.invalidate_soft(["t"]).await.unwrap();
        let after = get_reply(&app, "/r").await;
        assert_eq!(after.text(), "call2", "{}", after.cache_status());
    })
    .await;
}

/// `GET path` over real HTTP on a connection of its own.
async fn get_over_http(server: &Server, path: &str) -> Reply {
    let request = hyper::Request::get(format!("http://{}{path}", server.addr))
        .header(header::CONNECTION, "close")
        .body(Default::default())
        .unwrap();
    server.send_request(request).await
}

/// hyper stops polling a body once its Content-Length is written, without
/// waiting for the end of the stream: the recorder must finish on the count.
#[tokio::test]
async fn streamed_body_with_length_is_stored_over_real_http() {
    backstop(async {
        let cache = Cache::default();
        let calls = Counter::default();
        let counter = calls.clone();
        let app = Router::new().route(
            "/r",
            get(move || {
                let n = counter.bump();
                async move {
                    let body = format!("hello{n}");
                    let length = body.len().to_string();
                    let stream =
                        futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(body))]);
                    (
                        [(header::CONTENT_LENGTH, length)],
                        Body::from_stream(stream),
                    )
                }
            })
            .route_layer(cache.layer("r")),
        );
        let server = Server::serve(app).await;
        let first = get_over_http(&server, "/r").await;
        assert!(first.text().contains("hello1"), "{first:?}");
        let cache2 = cache.clone();
        eventually("the streamed response is stored", || {
            let cache = cache2.clone();
            async move { cache.stats().route("r").not_stored == 0 && calls_stored(&cache) }
        })
        .await;
        let second = get_over_http(&server, "/r").await;
        assert!(
            second.text().contains("hello1") && second.cache_status().contains("; hit"),
            "{second:?}"
        );
        assert_eq!(calls.get(), 1);
    })
    .await;
}

fn calls_stored(cache: &Cache) -> bool {
    cache.stats().route("r").misses == 1
}

/// A leader whose client never reads the body holds its flight; a waiter
/// that gives up takes that flight out of the way, so the next miss does not
/// wait at all. Measured on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn stalled_leader_client_delays_at_most_one_wait() {
    backstop(async {
        let cache = Cache::default();
        let calls = Counter::default();
        let wait = Duration::from_millis(400);
        let app = counting_app(&cache, calls.clone(), |l| l.coalesce_timeout(wait));
        let stalled = within(
            "the stalled leader's GET /r never answered",
            app.clone().oneshot(harness::get("/r")),
        )
        .await
        .unwrap();

        let started = tokio::time::Instant::now();
        let first = get_reply(&app, "/r").await;
        assert_eq!(first.text(), "call2");
        assert_eq!(
            started.elapsed(),
            wait,
            "the first waiter waited out its bound"
        );

        cache.invalidate(["t"]).await.unwrap();
        let started = tokio::time::Instant::now();
        let second = get_reply(&app, "/r").await;
        assert_eq!(second.text(), "call3");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no one queues behind the stalled flight"
        );
        drop(stalled);
    })
    .await;
}

/// A stale-while-revalidate refresh whose origin hangs is dropped at its
/// deadline, so it cannot hold the key's flight for ever.
#[tokio::test(start_paused = true)]
async fn hung_background_refresh_is_dropped_at_its_deadline() {
    backstop(async {
        let cache = Cache::default();
        let calls = Counter::default();
        let counter = calls.clone();
        let app = Router::new().route(
            "/r",
            get(move || {
                let n = counter.bump();
                async move {
                    if n == 2 {
                        std::future::pending::<()>().await;
                    }
                    format!("call{n}")
                }
            })
            .route_layer(
                cache
                    .layer("r")
                    .tags(|_, _| ["t"])
                    .ttl(Duration::from_secs(300))
                    .stale_while_revalidate(Duration::from_secs(60))
                    .coalesce_timeout(Duration::from_secs(5))
                    .refresh_timeout(Duration::from_secs(2)),
            ),
        );
        get_reply(&app, "/r").await;
        cache.invalidate_soft(["t"]).await.unwrap();
        let stale = get_reply(&app, "/r").await;
        assert!(
            stale.cache_status().contains("fwd=stale"),
            "{}",
            stale.cache_status()
        );
        // Let the refresh start (and hang), then pass its deadline.
        eventually("refresh started", || async { calls.get() == 2 }).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        cache.invalidate(["t"]).await.unwrap();
        let started = tokio::time::Instant::now();
        let fresh = get_reply(&app, "/r").await;
        assert_eq!(fresh.text(), "call3");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "the hung refresh no longer holds the key"
        );
    })
    .await;
}

/// The mutation happened: its invalidation must complete even when the
/// client disconnects while the store is still working on it.
#[tokio::test]
async fn invalidation_survives_client_disconnect() {
    backstop(async {
        let gate = Gate::default();
        let cache = Cache::new(TestStore::new(Duration::ZERO, Some(gate.clone())));
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (read, write) = (version.clone(), version.clone());
        let app = Router::new()
            .route(
                "/list",
                get(move || {
                    let version = read.load(std::sync::atomic::Ordering::SeqCst);
                    async move { format!("v{version}") }
                })
                .route_layer(cache.layer("list").tags(|_, _| ["list"])),
            )
            .route(
                "/add",
                post(move || {
                    write.store(1, std::sync::atomic::Ordering::SeqCst);
                    async { StatusCode::CREATED }
                })
                .route_layer(cache.invalidate_layer("add").tags(|_, _| ["list"])),
            );
        assert_eq!(get_reply(&app, "/list").await.text(), "v0");
        let mutation = spawn("POST /add never answered", {
            let app = app.clone();
            async move {
                app.oneshot(Request::post("/add").body(Body::empty()).unwrap())
                    .await
            }
        });
        gate.arrived(1).await;
        mutation.abort();
        let _ = mutation.await;
        gate.open();
        let app2 = app.clone();
        eventually("invalidation applied after the client left", || {
            let app = app2.clone();
            async move { get_reply(&app, "/list").await.text() == "v1" }
        })
        .await;
    })
    .await;
}
