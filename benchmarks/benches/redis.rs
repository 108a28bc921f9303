//! The Redis store's hit against the floor it sits on: a raw Redis `GET`.
//!
//! 64 concurrent tasks on a 2-worker multi-thread runtime, a 2 KiB body,
//! one key; each case is timed as wall time / total operations:
//!
//! - `raw-redis-get`: `GET` of a 2 KiB value through a `redis`
//!   `ConnectionManager` (the connection type `RedisStore` uses for a single
//!   node), the value read as bytes;
//! - `redisstore-get`: `RedisStore::get` of a stored entry (the `GET`, plus
//!   decoding the entry);
//! - `tagcache-redis-hit`: `GET /items/1` through an axum `Router` with
//!   `cache.layer("bench")` over a `RedisStore`, body collected (the `GET`,
//!   decoding, validation against the tag stamps, the HTTP response);
//! - `tagcache-tiered-hit`: the same route over a `TieredStore` (a local
//!   memory tier over another `RedisStore` of the same namespace): hits are
//!   answered locally, still judged by the shared tag stamps;
//! - `tagcache-redis-invalidate`: `cache.invalidate(["tag:<n>"])` over a
//!   `RedisStore` (one script call: stamp, record, prune, publish).
//!
//! After the timed cases it reads `INFO commandstats` around 1 000 hits
//! through the layer and prints the commands the server counted per hit.
//!
//! Cases are sampled in turn; the ratio is the median of sample-by-sample
//! ratios to `raw-redis-get`.
//!
//! Needs `redis-server` on `PATH` (started here on a free loopback port,
//! persistence off, stopped at the end) or `REDIS_URL` pointing at a server
//! to use instead. Run in `benchmarks/`: `cargo bench --features redis
//! --bench redis`; results on stdout and in the repository's
//! `target/bench/redis.json`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::ServiceExt;

use common::{print_table, Row};
use tagcache::{Cache, Entry, KeyHash, MemoryStore, RedisStore, Store, TieredStore};

const TASKS: usize = 64;
const BODY: usize = 2048;
const TTL: Duration = Duration::from_secs(3600);
const WARMUP: Duration = Duration::from_millis(300);

/// A `redis-server` of our own, stopped on drop.
struct Server {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("tagcache-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (or set REDIS_URL)");
    let server = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, format!("redis://127.0.0.1:{port}/"))
}

fn body() -> Bytes {
    let mut out = String::with_capacity(BODY);
    let mut i = 0;
    while out.len() < BODY {
        out.push_str(&format!(r#"{{"id":{i},"status":"active"}},"#));
        i += 1;
    }
    out.truncate(BODY);
    Bytes::from(out)
}

/// One case: an async operation run `n` times by each of `TASKS` tasks.
type Op =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

fn run(rt: &Runtime, op: &Op, n: u64) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let op = op.clone();
                tokio::spawn(async move {
                    for _ in 0..n {
                        op().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        started.elapsed().as_nanos() as f64 / (n * TASKS as u64) as f64
    })
}

/// A `RedisStore` in namespace `ns`, once its view of the stamps is loaded.
async fn connect(url: &str, ns: &str) -> RedisStore {
    let store = RedisStore::builder(url)
        .namespace(ns)
        .build()
        .await
        .expect("redis store");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.is_in_sync() {
        assert!(Instant::now() < deadline, "store never got in sync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
}

/// `GET /items/{id}` answering `body`, cached by `cache`.
fn items_router(cache: &Cache, body: Bytes) -> Router {
    Router::new().route(
        "/items/{id}",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body,
                )
                    .into_response()
            }
        })
        .route_layer(cache.layer("bench").ttl(TTL)),
    )
}

/// One request through `router`: checks the body, returns the headers.
async fn get_item(router: Router) -> http::HeaderMap {
    let (parts, body) = router
        .oneshot(Request::get("/items/1").body(Body::empty()).unwrap())
        .await
        .expect("infallible")
        .into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    assert_eq!(bytes.len(), BODY);
    parts.headers
}

/// One request through `router`, returning its `Cache-Status`.
async fn status_of(router: Router) -> String {
    get_item(router)
        .await
        .get(tagcache::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The timed operation: one request through `router`, body collected.
fn route_op(router: Router) -> Op {
    Arc::new(move || {
        let router = router.clone();
        Box::pin(async move {
            get_item(router).await;
        })
    })
}

/// Runs `op` `n` times in sequence and reports what the server counted per
/// run, by command (`info` itself, and the feed's keep-alive `ping`, left
/// out).
async fn commands_per_request(url: &str, op: &Op, n: u64) -> String {
    let client = redis::Client::open(url).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut read = async || -> std::collections::BTreeMap<String, u64> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        info.lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                Some((name.to_owned(), calls))
            })
            .collect()
    };
    let before = read().await;
    for _ in 0..n {
        op().await;
    }
    let after = read().await;
    let mut parts = Vec::new();
    for (name, calls) in &after {
        let delta = calls - before.get(name).copied().unwrap_or(0);
        if delta > 0 && name != "info" && name != "ping" {
            parts.push(format!("{name} {:.3}", delta as f64 / n as f64));
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("# redis\n\n{}", common::machine_facts());
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let (server, url) = start_server();
            (Some(server), url)
        }
    };
    println!("redis: {url}; {TASKS} tasks; {BODY}-byte body");
    let total = Instant::now();
    let body = body();

    // Raw GET of the same bytes.
    let raw_key = "tagcache-bench:raw";
    let conn = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_connection_manager()
            .await
            .expect("connect to redis");
        redis::cmd("SET")
            .arg(raw_key)
            .arg(body.as_ref())
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
        conn
    });
    let raw: Op = Arc::new(move || {
        let mut conn = conn.clone();
        Box::pin(async move {
            let value: Vec<u8> = redis::cmd("GET")
                .arg(raw_key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            assert_eq!(value.len(), BODY);
        })
    });

    // The store: one entry put directly, and a cached route over it.
    let store = rt.block_on(async { connect(&url, "tagcache-bench").await });
    let store: Arc<dyn Store> = Arc::new(store);
    let key = KeyHash(0x7a6c_0000_0000_0000_0000_0000_0000_0001);
    rt.block_on(async {
        let mut headers = http::HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let entry = Entry {
            route: "direct".into(),
            key: "/items/direct".into(),
            identity: None,
            status: StatusCode::OK,
            headers,
            body: body.clone(),
            tags: Box::new([]),
            vary: Box::new([]),
            variants: None,
            fill_stamp: store.fill_stamp().await.expect("stamp"),
            stored_at_micros: tagcache::stamp::now_micros(),
            ttl: TTL,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            validate_for: Duration::ZERO,
            must_revalidate: false,
            withholds: false,
        };
        store.put(key, Arc::new(entry)).await.expect("put");
    });
    let direct: Op = {
        let store = store.clone();
        Arc::new(move || {
            let store = store.clone();
            Box::pin(async move {
                let entry = store.get(key).await.expect("get").expect("held");
                assert_eq!(entry.body.len(), BODY);
            })
        })
    };

    let cache = Cache::builder().shared_store(store.clone()).build();
    let router = items_router(&cache, body.clone());
    let first = rt.block_on(status_of(router.clone()));
    let second = rt.block_on(status_of(router.clone()));
    assert!(
        second.contains("hit"),
        "second request is a hit: {first} / {second}"
    );
    let layered = route_op(router);

    // The local tier over a second Redis store of the same namespace: the
    // route's first request reads the entry from Redis, later ones locally.
    let tiered_cache = rt.block_on(async {
        let remote = connect(&url, "tagcache-bench").await;
        Cache::new(TieredStore::new(MemoryStore::default(), remote))
    });
    let tiered_router = items_router(&tiered_cache, body.clone());
    let warm = rt.block_on(status_of(tiered_router.clone()));
    assert!(
        warm.contains("hit"),
        "the tier reads the shared entry: {warm}"
    );
    let tiered = route_op(tiered_router);

    // Invalidations, on a store of their own namespace so that the stamps
    // they write do not slow the hit cases' validity checks.
    let invalidating =
        rt.block_on(async { Cache::new(connect(&url, "tagcache-bench-invalidate").await) });
    let next_tag = Arc::new(AtomicU64::new(0));
    let invalidate: Op = Arc::new(move || {
        let (cache, next_tag) = (invalidating.clone(), next_tag.clone());
        Box::pin(async move {
            let n = next_tag.fetch_add(1, Ordering::Relaxed) % 1024;
            cache
                .invalidate([format!("tag:{n}")])
                .await
                .expect("invalidate");
        })
    });

    let cases: Vec<(&str, Op)> = vec![
        ("raw-redis-get", raw),
        ("redisstore-get", direct),
        ("tagcache-redis-hit", layered.clone()),
        ("tagcache-tiered-hit", tiered),
        ("tagcache-redis-invalidate", invalidate),
    ];
    let batches: Vec<u64> = cases
        .iter()
        .map(|(_, op)| {
            let started = Instant::now();
            let mut done = 0;
            while started.elapsed() < WARMUP {
                run(&rt, op, 8);
                done += 8 * TASKS as u64;
            }
            (common::batch_size(done, started.elapsed(), common::batch_target() * 4) / TASKS as u64)
                .max(4)
        })
        .collect();
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..common::samples() {
        for (i, (_, op)) in cases.iter().enumerate() {
            samples[i].push(run(&rt, op, batches[i]));
        }
    }
    let rows: Vec<Row> = cases
        .iter()
        .zip(&samples)
        .map(|((name, _), case)| {
            let mut row = Row::from_samples(format!("{name}/2KiB/{TASKS}tasks"), case.clone());
            row.ratio = Some(common::paired_ratio(case, &samples[0]));
            row
        })
        .collect();
    print_table("Redis, 64 tasks, 2 KiB (ratio to raw-redis-get)", &rows);
    let stats = cache.stats().route("bench");
    println!(
        "\nroute stats: {} hits, {} misses, {} store errors",
        stats.hits, stats.misses, stats.store_errors
    );
    let per_hit = rt.block_on(commands_per_request(&url, &layered, 1000));
    println!("\ncommands per hit through the layer, read from INFO commandstats over 1000 hits: {per_hit}");
    match common::write_json("redis.json", &rows) {
        Ok(path) => println!("\nwrote {}", path.display()),
        Err(error) => eprintln!("could not write redis.json: {error}"),
    }
    println!("total time: {:.1} s", total.elapsed().as_secs_f64());
}
