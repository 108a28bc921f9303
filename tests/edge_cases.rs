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

/// A memory store that misbehaves on demand: it returns every entry as if
/// it had been stored `age` earlier (so `Age` can be checked on old entries
/// without waiting); unless it `vouches`, it counts every entry as invalid
/// (as a Redis store does while its feed resyncs); unless `readable`, every
/// lookup fails as a store that is down would; unless it `stamps`, it
/// cannot give fill stamps. With a `generation`, it counts the
/// invalidations it takes there and reports them as its invalidation
/// generation.
struct FakeStore {
    inner: Arc<tagcache::MemoryStore>,
    age: Duration,
    vouches: bool,
    readable: bool,
    stamps: bool,
    generation: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl FakeStore {
    fn working() -> FakeStore {
        FakeStore {
            inner: Arc::default(),
            age: Duration::ZERO,
            vouches: true,
            readable: true,
            stamps: true,
            generation: None,
        }
    }

    fn down() -> tagcache::StoreError {
        tagcache::StoreError::new(tagcache::StoreErrorKind::Unavailable, "down")
    }
}

impl tagcache::Store for FakeStore {
    fn get(&self, key: tagcache::KeyHash) -> tagcache::StoreFuture<Option<Arc<tagcache::Entry>>> {
        if !self.readable {
            return tagcache::StoreFuture::ready(Err(FakeStore::down()));
        }
        let age = self.age.as_micros() as u64;
        let aged = |found: Option<Arc<tagcache::Entry>>| {
            found.map(|entry| {
                let mut entry = (*entry).clone();
                entry.stored_at_micros -= age;
                Arc::new(entry)
            })
        };
        match self.inner.get(key).now_or_later() {
            Ok(result) => tagcache::StoreFuture::ready(result.map(aged)),
            Err(_) => unreachable!("the memory store answers at once"),
        }
    }
    fn put(
        &self,
        key: tagcache::KeyHash,
        entry: Arc<tagcache::Entry>,
    ) -> tagcache::StoreFuture<()> {
        self.inner.put(key, entry)
    }
    fn remove(&self, key: tagcache::KeyHash) -> tagcache::StoreFuture<()> {
        self.inner.remove(key)
    }
    fn fill_stamp(&self) -> tagcache::StoreFuture<tagcache::Stamp> {
        match self.stamps {
            true => self.inner.fill_stamp(),
            false => tagcache::StoreFuture::ready(Err(FakeStore::down())),
        }
    }
    fn invalidate(
        &self,
        tags: &[tagcache::Tag],
        mode: tagcache::InvalidationMode,
    ) -> tagcache::StoreFuture<tagcache::Stamp> {
        let taken = self.inner.invalidate(tags, mode);
        if let Some(generation) = &self.generation {
            generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        taken
    }
    fn invalidation_generation(&self) -> Option<u64> {
        let generation = self.generation.as_ref()?;
        Some(generation.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn invalidate_all(&self) -> tagcache::StoreFuture<tagcache::Stamp> {
        self.inner.invalidate_all()
    }
    fn validity(&self, entry: &tagcache::Entry) -> tagcache::Validity {
        match self.vouches {
            true => self.inner.validity(entry),
            false => tagcache::Validity::Invalid,
        }
    }
    fn max_entry_life(&self) -> Duration {
        self.inner.max_entry_life()
    }
    fn kind(&self) -> &'static str {
        "fake"
    }
}

/// A hit's `Age` is how long ago the entry was stored, in whole seconds,
/// and its `Cache-Status` TTL is what is left of it (for GET and HEAD).
#[tokio::test]
async fn hits_say_how_old_their_entry_is() {
    backstop(async {
        let age = Duration::from_secs(100);
        let store = FakeStore {
            age,
            ..FakeStore::working()
        };
        let cache = Cache::new(store);
        let calls = Counter::default();
        let app = counting_app(&cache, calls.clone(), |l| l.ttl(Duration::from_secs(300)));
        let started = std::time::Instant::now();
        get_reply(&app, "/r").await;
        let requests = [
            Request::get("/r").body(Body::empty()).unwrap(),
            Request::head("/r").body(Body::empty()).unwrap(),
        ];
        for request in requests {
            let method = request.method().clone();
            let reply = harness::send(&app, request).await;
            // Whole seconds since the fill, measured around it by the test.
            let waited = started.elapsed().as_secs();
            assert!(reply.is_hit(), "{method}: {}", reply.cache_status());
            let age: u64 = reply.headers[header::AGE]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (100..=100 + waited + 1).contains(&age),
                "{method}: Age {age} for an entry stored 100 s (+{waited} s) ago"
            );
            let ttl = reply.ttl();
            assert!(
                (200 - waited as i64 - 1..=200).contains(&ttl),
                "{method}: ttl {ttl} for 300 s of freshness, 100 s (+{waited} s) used"
            );
        }
        assert_eq!(calls.get(), 1);
    })
    .await;
}

/// `Cache-Status` says `stored` only of a response the store takes: while
/// the store counts every entry as invalid, misses say nothing about
/// storing, and nothing is stored.
#[tokio::test]
async fn stored_is_not_claimed_when_the_store_would_refuse_the_entry() {
    backstop(async {
        let inner = Arc::new(tagcache::MemoryStore::default());
        let store = FakeStore {
            inner: inner.clone(),
            vouches: false,
            ..FakeStore::working()
        };
        let cache = Cache::new(store);
        let calls = Counter::default();
        let app = counting_app(&cache, calls.clone(), |l| l.ttl(Duration::from_secs(300)));
        for n in 1..=2 {
            let reply = get_reply(&app, "/r").await;
            assert_eq!(reply.text(), format!("call{n}"));
            let status = reply.cache_status();
            assert!(status.contains("miss"), "{status}");
            assert!(!status.contains("stored"), "{status}");
        }
        assert_eq!(calls.get(), 2);
        assert_eq!(inner.entry_count(), 0);
    })
    .await;
}

/// A failing store is counted on the route, once per failure, and every
/// request is answered from the origin.
#[tokio::test]
async fn store_failures_are_counted_and_answered_from_the_origin() {
    backstop(async {
        let cache = Cache::new(FakeStore {
            readable: false,
            ..FakeStore::working()
        });
        let calls = Counter::default();
        let app = counting_app(&cache, calls.clone(), |l| l.ttl(Duration::from_secs(300)));
        for _ in 0..3 {
            let reply = get_reply(&app, "/r").await;
            assert!(
                reply.cache_status().contains("store-error"),
                "{}",
                reply.cache_status()
            );
        }
        assert_eq!(calls.get(), 3);
        assert_eq!(cache.stats().routes["r"].store_errors, 3);
    })
    .await;
}

/// Counts the warnings logged on this thread.
struct CountWarnings(Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// When the store is down every request fails: the route logs about once a
/// second, not once a request (twice if the requests straddle a second).
#[tokio::test]
async fn store_failures_are_logged_about_once_a_second() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountWarnings(warnings.clone()));
    let _logging = tracing::subscriber::set_default(subscriber);
    backstop(async {
        let cache = Cache::new(FakeStore {
            readable: false,
            ..FakeStore::working()
        });
        let app = counting_app(&cache, Counter::default(), |l| {
            l.ttl(Duration::from_secs(300))
        });
        for _ in 0..10 {
            get_reply(&app, "/r").await;
        }
        assert_eq!(cache.stats().routes["r"].store_errors, 10);
    })
    .await;
    let logged = warnings.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=2).contains(&logged),
        "{logged} warnings for 10 failures"
    );
}

/// A herd on a store that cannot give fill stamps (down): `n` requests, the
/// first held in the origin until the others wait on its flight; with
/// `invalidate`, tag `t` is invalidated meanwhile. Returns the replies,
/// the leader's first, and the origin calls.
async fn herd_without_stamps(store: FakeStore, n: usize, invalidate: bool) -> (Vec<Reply>, usize) {
    use support::apps::{gated, Db, GateCalls};
    let cache = Cache::new(store);
    let (gate, calls, db) = (Gate::default(), Counter::default(), Db::default());
    let app = gated(
        &cache,
        |l| l.coalesce_timeout(Duration::from_secs(600)),
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    let leader = harness::spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiters: Vec<_> = (1..n).map(|_| harness::spawn_get(&app, "/r")).collect();
    harness::until_waiting(&cache, n - 1).await;
    if invalidate {
        db.write(1);
        // The store cannot take it either, but counts it.
        let _ = cache.invalidate(["t"]).await;
    }
    gate.open();
    let mut replies = vec![leader.await.unwrap()];
    for waiter in waiters {
        replies.push(waiter.await.unwrap());
    }
    (replies, calls.get())
}

fn without_stamps(generation: bool) -> FakeStore {
    FakeStore {
        stamps: false,
        generation: generation.then(Arc::default),
        ..FakeStore::working()
    }
}

/// The store is down: the leader's response cannot be stored, but its
/// waiters take it (one origin call for the herd), and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_shares_a_response_the_store_could_not_stamp() {
    backstop(async {
        let (replies, calls) = herd_without_stamps(without_stamps(true), 10, false).await;
        assert_eq!(calls, 1);
        assert!(
            replies[0].cache_status().contains("detail=store-error"),
            "{}",
            replies[0].cache_status()
        );
        for reply in &replies[1..] {
            assert_eq!(reply.text(), "v0 call1");
            assert!(
                reply.cache_status().contains("collapsed"),
                "{}",
                reply.cache_status()
            );
        }
    })
    .await;
}

/// An invalidation while the leader's origin call runs: its unstored
/// response reaches none of the waiters, who each ask the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_keeps_an_unstamped_response_from_the_waiters() {
    backstop(async {
        let (replies, calls) = herd_without_stamps(without_stamps(true), 5, true).await;
        assert_eq!(calls, 5);
        assert_eq!(replies[0].text(), "v0 call1");
        for reply in &replies[1..] {
            assert!(reply.text().starts_with("v1 call"), "{}", reply.text());
        }
    })
    .await;
}

/// A store that cannot tell whether anything was invalidated: an unstored
/// response is never shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_generation_never_shares_unstamped_responses() {
    backstop(async {
        let (replies, calls) = herd_without_stamps(without_stamps(false), 5, false).await;
        assert_eq!(calls, 5);
        assert_eq!(replies[0].text(), "v0 call1");
    })
    .await;
}

/// A cache over `memory` that sees every entry as stored `age` earlier
/// than it was (time passing, without waiting), and cannot stamp fills
/// unless `stamps`.
fn aged_by(memory: &Arc<tagcache::MemoryStore>, age: Duration, stamps: bool) -> Cache {
    Cache::new(FakeStore {
        inner: memory.clone(),
        age,
        stamps,
        ..FakeStore::working()
    })
}

/// In origin mode an entry ages from when it was generated: the `Age` it
/// arrived with plus the time since. Past its lifetime it is revalidated,
/// and the 304 gives it a new lifetime.
#[tokio::test]
async fn origin_mode_entries_age_and_are_then_revalidated() {
    backstop(async {
        use support::scripted::{h, header_in, ok, origin_app};
        let memory = Arc::new(tagcache::MemoryStore::default());
        let (app, origin) = origin_app(&aged_by(&memory, Duration::ZERO, true), |l| l);
        origin.answers([ok(
            vec![
                h("cache-control", "max-age=150"),
                h("age", "10"),
                h("etag", "\"e\""),
            ],
            "aging",
        )]);
        harness::send(&app, harness::get("/a")).await;

        // 100 s later: 110 s old, 40 s left.
        let later = aged_by(&memory, Duration::from_secs(100), true);
        let (app, _) = origin_app(&later, |l| l);
        let hit = harness::send(&app, harness::get("/a")).await;
        assert!(hit.is_hit(), "{}", hit.cache_status());
        let age: u64 = hit.headers[header::AGE].to_str().unwrap().parse().unwrap();
        assert!((110..=112).contains(&age), "Age {age}");
        assert!((38..=40).contains(&hit.ttl()), "{}", hit.cache_status());

        // 200 s later the 150 s are over: one conditional request.
        let much_later = aged_by(&memory, Duration::from_secs(200), true);
        let (app, origin) = origin_app(&much_later, |l| l);
        origin.answers([(304, vec![h("cache-control", "max-age=600")], "")]);
        let reply = harness::send(&app, harness::get("/a")).await;
        assert_eq!(reply.text(), "aging");
        assert!(reply.cache_status().contains("fwd-status=304"));
        assert_eq!(header_in(&origin.last(), "if-none-match"), "\"e\"");
        assert_eq!(origin.calls(), 1);
        // Stored again now: a hit with the 304's lifetime (this cache sees
        // it 200 s older than it is, so 400 s of it are left).
        let hit = harness::send(&app, harness::get("/a")).await;
        assert!(hit.is_hit(), "{}", hit.cache_status());
        assert!((398..=400).contains(&hit.ttl()), "{}", hit.cache_status());
    })
    .await;
}

/// A revalidation while the store cannot stamp fills still answers from
/// the stored body, updated, and says the store failed; nothing is stored.
#[tokio::test]
async fn a_revalidation_without_the_store_answers_from_the_entry() {
    backstop(async {
        use support::scripted::{h, ok, origin_app};
        let memory = Arc::new(tagcache::MemoryStore::default());
        let (app, origin) = origin_app(&aged_by(&memory, Duration::ZERO, true), |l| l);
        origin.answers([ok(
            vec![
                h("cache-control", "max-age=0"),
                h("etag", "\"d\""),
                h("x-v", "1"),
            ],
            "kept",
        )]);
        harness::send(&app, harness::get("/d")).await;
        let down = aged_by(&memory, Duration::ZERO, false);
        let (app, origin) = origin_app(&down, |l| l);
        origin.answers([(304, vec![h("x-v", "2")], "")]);
        for _ in 0..2 {
            let reply = harness::send(&app, harness::get("/d")).await;
            assert_eq!(
                (reply.status, reply.text().as_str()),
                (StatusCode::OK, "kept")
            );
            assert_eq!(reply.headers["x-v"], "2");
            assert!(
                reply.cache_status().contains("detail=store-error"),
                "{}",
                reply.cache_status()
            );
        }
        assert_eq!(origin.calls(), 2);
    })
    .await;
}

/// A route-mode route follows no request directive but `no-cache` (when
/// it honours it): a client's `max-stale` does not take a stale entry.
#[tokio::test]
async fn route_mode_ignores_max_stale() {
    backstop(async {
        let memory = Arc::new(tagcache::MemoryStore::default());
        let route = |l: tagcache::CacheLayer| {
            l.ttl(Duration::from_secs(60))
                .stale_if_error(Duration::from_secs(600))
        };
        let calls = Counter::default();
        let app = counting_app(
            &aged_by(&memory, Duration::ZERO, true),
            calls.clone(),
            route,
        );
        get_reply(&app, "/r").await;
        // 100 s later: stale, inside the stale-if-error window.
        let app = counting_app(
            &aged_by(&memory, Duration::from_secs(100), true),
            calls.clone(),
            route,
        );
        let request = Request::get("/r")
            .header("cache-control", "max-stale")
            .body(Body::empty())
            .unwrap();
        let reply = harness::send(&app, request).await;
        assert_eq!(calls.get(), 2, "{}", reply.cache_status());
    })
    .await;
}

/// Soft invalidation ends freshness when it happens: a client's
/// `max-stale` counts from then, not from the entry's own expiry.
#[tokio::test]
async fn max_stale_counts_from_a_soft_invalidation() {
    backstop(async {
        use support::scripted::{h, ok, origin_app};
        let cache = Cache::default();
        let (app, origin) = origin_app(&cache, |l| l.tags(|_, _| ["t"]));
        origin.answers([ok(
            vec![h("cache-control", "max-age=600, stale-if-error=600")],
            "soft",
        )]);
        harness::send(&app, harness::get("/s")).await;
        cache.invalidate_soft(["t"]).await.unwrap();
        let with = |max_stale: &str| {
            Request::get("/s")
                .header("cache-control", format!("max-stale={max_stale}"))
                .body(Body::empty())
                .unwrap()
        };
        let taken = harness::send(&app, with("3600")).await;
        assert_eq!((origin.calls(), taken.text().as_str()), (1, "soft"));
        harness::send(&app, with("0")).await;
        assert_eq!(origin.calls(), 2);
    })
    .await;
}
