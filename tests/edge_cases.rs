//! Memory-only edge cases that need a special store, a real HTTP server or
//! tokio's paused clock (virtual time: deterministic, never wall time).

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use support::harness::{self, get_reply, Counter, Gate, Reply};
use support::http::Server;
use tagcache::stamp::{now_micros, Clock, TagBoard};
use tagcache::{Cache, Entry, InvalidationMode, KeyHash, Stamp, Store, StoreFuture, Tag, Validity};
use tower::ServiceExt;

/// A store whose invalidation clock runs `ahead` of this machine (like a
/// shared clock on another host), and whose invalidations can be held at a
/// gate (like a slow network store).
struct TestStore {
    entries: Mutex<HashMap<KeyHash, Arc<Entry>>>,
    clock: Arc<Clock>,
    board: Arc<TagBoard>,
    ahead: Duration,
    invalidate_gate: Option<Gate>,
}

impl TestStore {
    fn new(ahead: Duration, invalidate_gate: Option<Gate>) -> Self {
        TestStore {
            entries: Mutex::default(),
            clock: Arc::new(Clock::new()),
            board: Arc::new(TagBoard::new(Duration::from_secs(3600), 10_000)),
            ahead,
            invalidate_gate,
        }
    }

    fn stamp(clock: &Clock, ahead: Duration) -> Stamp {
        clock.observe(Stamp(now_micros() + ahead.as_micros() as u64));
        clock.next()
    }
}

impl Store for TestStore {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        StoreFuture::ready(Ok(self.entries.lock().unwrap().get(&key).cloned()))
    }
    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        self.entries.lock().unwrap().insert(key, entry);
        StoreFuture::ready(Ok(()))
    }
    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        self.entries.lock().unwrap().remove(&key);
        StoreFuture::ready(Ok(()))
    }
    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        StoreFuture::ready(Ok(Self::stamp(&self.clock, self.ahead)))
    }
    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        let (clock, board, ahead) = (self.clock.clone(), self.board.clone(), self.ahead);
        let tags = tags.to_vec();
        match self.invalidate_gate.clone() {
            None => {
                let stamp = Self::stamp(&clock, ahead);
                board.apply(&tags, stamp, mode);
                StoreFuture::ready(Ok(stamp))
            }
            Some(gate) => StoreFuture::pending(async move {
                gate.pass().await;
                let stamp = Self::stamp(&clock, ahead);
                board.apply(&tags, stamp, mode);
                Ok(stamp)
            }),
        }
    }
    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        let stamp = Self::stamp(&self.clock, self.ahead);
        self.board.invalidate_all(stamp);
        StoreFuture::ready(Ok(stamp))
    }
    fn validity(&self, entry: &Entry) -> Validity {
        self.board.validity(&entry.tags, entry.fill_stamp)
    }
    fn outlived(&self, fill: Stamp, now: u64) -> bool {
        now.saturating_sub(fill.0) > 3_600_000_000
    }
    fn kind(&self) -> &'static str {
        "test"
    }
}

/// `/r` answering `call<n>`, tagged `t`.
fn counting_app(
    cache: &Cache,
    calls: Counter,
    layer: impl FnOnce(tagcache::CacheLayer) -> tagcache::CacheLayer,
) -> Router {
    Router::new().route(
        "/r",
        get(move || {
            let calls = calls.clone();
            async move { format!("call{}", calls.bump()) }
        })
        .route_layer(layer(cache.layer("r").tags(|_, _| ["t"]))),
    )
}

#[tokio::test]
async fn soft_invalidation_is_never_a_fresh_hit_even_with_a_clock_ahead() {
    let cache = Cache::new(TestStore::new(Duration::from_secs(5), None));
    let calls = Counter::default();
    let app = counting_app(&cache, calls.clone(), |l| l.ttl(Duration::from_secs(300)));
    get_reply(&app, "/r").await;
    cache.invalidate_soft(["t"]).await.unwrap();
    let after = get_reply(&app, "/r").await;
    assert_eq!(after.text(), "call2", "{}", after.cache_status());
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
                let stream = futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(body))]);
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
    harness::eventually("the streamed response is stored", 200, || {
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
}

fn calls_stored(cache: &Cache) -> bool {
    cache.stats().route("r").misses == 1
}

/// A leader whose client never reads the body holds its flight; a waiter
/// that gives up takes that flight out of the way, so the next miss does not
/// wait at all. Measured on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn stalled_leader_client_delays_at_most_one_wait() {
    let cache = Cache::default();
    let calls = Counter::default();
    let wait = Duration::from_millis(400);
    let app = counting_app(&cache, calls.clone(), |l| l.coalesce_timeout(wait));
    let stalled = app.clone().oneshot(harness::get("/r")).await.unwrap();

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
}

/// A stale-while-revalidate refresh whose origin hangs is dropped at its
/// deadline, so it cannot hold the key's flight for ever.
#[tokio::test(start_paused = true)]
async fn hung_background_refresh_is_dropped_at_its_deadline() {
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
    harness::eventually("refresh started", 100, || async { calls.get() == 2 }).await;
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
}

/// The mutation happened: its invalidation must complete even when the
/// client disconnects while the store is still working on it.
#[tokio::test]
async fn invalidation_survives_client_disconnect() {
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
    let mutation = tokio::spawn({
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
    harness::eventually("invalidation applied after the client left", 200, || {
        let app = app2.clone();
        async move { get_reply(&app, "/list").await.text() == "v1" }
    })
    .await;
}
