//! `PostgresStore` against the floor it sits on (a raw prepared `SELECT` by
//! primary key), and how long a commit takes to reach another instance.
//!
//! **Hits.** 64 concurrent tasks on a 2-worker multi-thread runtime, a
//! 2 KiB body, one key (as `benches/redis.rs`, so the two tables read
//! alike); each case is timed as wall time / total operations:
//!
//! - `raw-pg-select`: `SELECT value FROM bench_raw WHERE id = $1`, prepared
//!   once, on one tokio-postgres connection shared by the tasks (the
//!   client pipelines their queries, as `PostgresStore`'s own connection
//!   does), the 2 KiB `bytea` read as bytes;
//! - `pgstore-get`: `PostgresStore::get` of an entry put directly, without
//!   tags (its prepared `SELECT` by key, plus decoding the entry and its
//!   validity check);
//! - `tagcache-pg-hit`: `GET /items/1` through an axum `Router` with
//!   `cache.layer("bench")` over the `PostgresStore`, body collected.
//!
//! Cases are sampled in turn; the ratio is the median of sample-by-sample
//! ratios to `raw-pg-select`.
//!
//! **Invalidation lag.** Two instances, each a `Cache` with its own
//! `PgInvalidations` listener, and a writer on a connection of its own
//! that commits `UPDATE bench_items SET version = version + 1 WHERE id =
//! 1`, whose trigger calls `tagcache_invalidate(ARRAY['item:1'])`. The lag
//! runs from `COMMIT` returning to the moment the other instance no longer
//! serves the entry, in two set-ups:
//!
//! - `memory`: each instance on its own `MemoryStore`; the end is when the
//!   instance's listener counts the notification as applied
//!   (`notifications_applied`, polled every few tens of microseconds by a
//!   thread that sleeps in between, so as not to take a core from the
//!   server), then a request checks that the entry is a miss;
//! - `pgstore`: each instance on its own `PostgresStore` of one schema
//!   (shared entries); the end is the first request on the second instance
//!   that is not a hit (each poll is a round trip to the server).
//!
//! Each round refills the entry on the second instance (and waits for a
//! hit) before the next commit. Needs PostgreSQL's `initdb` and `postgres`
//! (found like the tests find them: `$TAGCACHE_POSTGRES_BIN`, the newest
//! `/usr/lib/postgresql/<version>/bin`, `PATH`); a server of its own is
//! started on a free loopback port and stopped at the end.
//!
//! Run in `benchmarks/`: `cargo bench --features postgres --bench
//! postgres`; `-- hit` or `-- lag` after it runs one part, and
//! `PG_LAG_COMMITS` (default 200) sets the commits per set-up. Results on
//! stdout and in the repository's `target/bench/postgres.json`.

mod common;

mod support;

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
use tokio_postgres::{Client, NoTls};
use tower::ServiceExt;

use common::{print_table, Row};
use support::postgres_server::PostgresServer;
use tagcache::postgres::{self as pg, PgInvalidations, PgListenerConfig, PostgresStore};
use tagcache::{Cache, Entry, KeyHash, MemoryStore, Store};

const TASKS: usize = 64;
const BODY: usize = 2048;
const TTL: Duration = Duration::from_secs(3600);
const WARMUP: Duration = Duration::from_millis(300);

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

async fn client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the benchmark's server");
    tokio::spawn(connection);
    client
}

/// A `PostgresStore` in `schema`, once its view of the stamps is loaded.
async fn store(url: &str, schema: &str) -> PostgresStore {
    let store = PostgresStore::builder(url)
        .schema(schema)
        .build()
        .await
        .expect("postgres store");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store.is_in_sync() {
        assert!(Instant::now() < deadline, "store never got in sync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
}

/// `GET /items/{id}` answering `body`, cached by `cache` with the tag
/// `item:<id>`.
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
        .route_layer(cache.layer("bench").ttl(TTL).tags(|req, _| {
            let id = req.uri.path().rsplit('/').next().unwrap_or_default();
            [format!("item:{id}")]
        })),
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

/// Whether one request through `router` was a hit.
async fn is_hit(router: Router) -> bool {
    get_item(router)
        .await
        .get(tagcache::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.contains("hit"))
}

/// Requests until one is a hit (the first fills the entry).
async fn until_hit(router: &Router) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is_hit(router.clone()).await {
        assert!(Instant::now() < deadline, "the entry never became a hit");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
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

/// The hit cases, sampled in turn.
fn hits(rt: &Runtime, url: &str, body: &Bytes) -> Vec<Row> {
    // The raw floor: the same 2 KiB, by primary key, prepared once.
    let raw: Op = rt.block_on(async {
        let client = client(url).await;
        client
            .batch_execute("CREATE TABLE bench_raw (id integer PRIMARY KEY, value bytea NOT NULL)")
            .await
            .expect("create bench_raw");
        client
            .execute(
                "INSERT INTO bench_raw (id, value) VALUES (1, $1)",
                &[&body.as_ref()],
            )
            .await
            .expect("insert");
        let select = client
            .prepare("SELECT value FROM bench_raw WHERE id = $1")
            .await
            .expect("prepare");
        let client = Arc::new(client);
        let op: Op = Arc::new(move || {
            let (client, select) = (client.clone(), select.clone());
            Box::pin(async move {
                let row = client.query_one(&select, &[&1i32]).await.expect("select");
                let value: &[u8] = row.get(0);
                assert_eq!(value.len(), BODY);
            })
        });
        op
    });

    // The store: one entry put directly, and a cached route over it.
    let store: Arc<dyn Store> = Arc::new(rt.block_on(store(url, "tagcache_bench")));
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
        // Writes are queued: wait until the row is there for every reader.
        let deadline = Instant::now() + Duration::from_secs(30);
        let check = client(url).await;
        while check
            .query_one(
                "SELECT count(*) FROM tagcache_bench.tagcache_store_entries",
                &[],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
            == 0
        {
            assert!(Instant::now() < deadline, "the entry was never written");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
    rt.block_on(until_hit(&router));
    let layered = route_op(router);

    let cases: Vec<(&str, Op)> = vec![
        ("raw-pg-select", raw),
        ("pgstore-get", direct),
        ("tagcache-pg-hit", layered),
    ];
    let batches: Vec<u64> = cases
        .iter()
        .map(|(_, op)| {
            let started = Instant::now();
            let mut done = 0;
            while started.elapsed() < WARMUP {
                run(rt, op, 8);
                done += 8 * TASKS as u64;
            }
            (common::batch_size(done, started.elapsed(), common::batch_target() * 4) / TASKS as u64)
                .max(4)
        })
        .collect();
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..common::samples() {
        for (i, (_, op)) in cases.iter().enumerate() {
            samples[i].push(run(rt, op, batches[i]));
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
    print_table(
        "PostgreSQL, 64 tasks, 2 KiB (ratio to raw-pg-select)",
        &rows,
    );
    let stats = cache.stats().route("bench");
    println!(
        "\nroute stats: {} hits, {} misses, {} store errors",
        stats.hits, stats.misses, stats.store_errors
    );
    rows
}

/// The table the writer updates, with the trigger that invalidates.
const ITEMS: &str = "
CREATE TABLE bench_items (id integer PRIMARY KEY, version bigint NOT NULL);
INSERT INTO bench_items VALUES (1, 0);
CREATE FUNCTION bench_items_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tagcache_invalidate(ARRAY['item:' || NEW.id]);
    RETURN NULL;
END $$;
CREATE TRIGGER bench_items_changed AFTER UPDATE ON bench_items
    FOR EACH ROW EXECUTE FUNCTION bench_items_changed();
";

/// Waits until `listener` is in sync.
async fn in_sync(listener: &PgInvalidations) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listener.is_in_sync() {
        assert!(Instant::now() < deadline, "listener never got in sync");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Percentile `q` (0..=1) of sorted `values`, nearest rank.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Prints the percentiles of `lags` (nanoseconds) in milliseconds, and
/// returns them as rows
/// (`median_ns` holds the percentile, in nanoseconds).
fn lag_rows(setup: &str, mut lags: Vec<f64>) -> Vec<Row> {
    lags.sort_by(|a, b| a.total_cmp(b));
    let (p50, p90, p99, max) = (
        percentile(&lags, 0.5),
        percentile(&lags, 0.9),
        percentile(&lags, 0.99),
        lags[lags.len() - 1],
    );
    println!(
        "| {setup} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        lags.len(),
        percentile(&lags, 0.0) / 1e6,
        p50 / 1e6,
        p90 / 1e6,
        p99 / 1e6,
        max / 1e6
    );
    [("p50", p50), ("p90", p90), ("p99", p99), ("max", max)]
        .into_iter()
        .map(|(q, ns)| {
            let mut row = Row::from_samples(format!("invalidation-lag-{setup}/{q}"), vec![ns]);
            row.note = format!("{} commits", lags.len());
            row
        })
        .collect()
}

/// Commit-to-invalidation lag, in nanoseconds per commit, for each set-up.
fn lag(rt: &Runtime, url: &str, body: &Bytes) -> Vec<Row> {
    let commits: usize = std::env::var("PG_LAG_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(200);
    let (writer, update) = rt.block_on(async {
        let writer = client(url).await;
        pg::install(&writer, "public").await.expect("install");
        writer.batch_execute(ITEMS).await.expect("items table");
        let update = writer
            .prepare("UPDATE bench_items SET version = version + 1 WHERE id = 1")
            .await
            .expect("prepare");
        (writer, update)
    });
    println!("\n### Invalidation lag: COMMIT returned → the other instance stops serving (ms)\n");
    println!("| set-up | commits | min | p50 | p90 | p99 | max |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let config = || PgListenerConfig::from_url(url).expect("listener config");
    let mut rows = Vec::new();

    // Two instances on memory stores, each with its listener.
    let lags = rt.block_on(async {
        let (a, b) = (
            Cache::new(MemoryStore::default()),
            Cache::new(MemoryStore::default()),
        );
        let listen_a = PgInvalidations::listen(&a, config());
        let listen_b = Arc::new(PgInvalidations::listen(&b, config()));
        in_sync(&listen_a).await;
        in_sync(&listen_b).await;
        let (router_a, router_b) = (
            items_router(&a, body.clone()),
            items_router(&b, body.clone()),
        );
        let mut lags = Vec::with_capacity(commits);
        for _ in 0..commits {
            until_hit(&router_a).await;
            until_hit(&router_b).await;
            let before = listen_b.notifications_applied();
            writer.execute(&update, &[]).await.expect("update");
            let committed = Instant::now();
            // Poll the counter from a thread that sleeps between looks,
            // leaving the cores to the server and the listener.
            let listener = listen_b.clone();
            let seen = tokio::task::spawn_blocking(move || {
                let deadline = committed + Duration::from_secs(30);
                while listener.notifications_applied() == before {
                    assert!(Instant::now() < deadline, "notification never applied");
                    std::thread::sleep(Duration::from_micros(20));
                }
                Instant::now()
            })
            .await
            .expect("poller");
            lags.push((seen - committed).as_nanos() as f64);
            assert!(
                !is_hit(router_b.clone()).await,
                "applied, yet the entry was served"
            );
        }
        lags
    });
    rows.extend(lag_rows("memory", lags));

    // Two instances sharing entries in PostgreSQL, each with its listener.
    let lags = rt.block_on(async {
        let a = Cache::new(store(url, "tagcache_lag").await);
        let b = Cache::new(store(url, "tagcache_lag").await);
        let listen_a = PgInvalidations::listen(&a, config());
        let listen_b = PgInvalidations::listen(&b, config());
        in_sync(&listen_a).await;
        in_sync(&listen_b).await;
        let router_b = items_router(&b, body.clone());
        let mut lags = Vec::with_capacity(commits);
        for _ in 0..commits {
            until_hit(&router_b).await;
            writer.execute(&update, &[]).await.expect("update");
            let committed = Instant::now();
            let deadline = committed + Duration::from_secs(30);
            while is_hit(router_b.clone()).await {
                assert!(Instant::now() < deadline, "the entry was never invalidated");
            }
            lags.push(committed.elapsed().as_nanos() as f64);
        }
        lags
    });
    rows.extend(lag_rows("pgstore", lags));
    rows
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("# postgres\n\n{}", common::machine_facts());
    let server = PostgresServer::start().expect("PostgreSQL's initdb and postgres");
    let url = server.url();
    println!("postgres: {url}; {TASKS} tasks; {BODY}-byte body");
    let total = Instant::now();
    let body = body();
    let filters = common::filters();
    let mut rows = Vec::new();
    if common::selected(&filters, "hit") {
        rows.extend(hits(&rt, &url, &body));
    }
    if common::selected(&filters, "lag") {
        rows.extend(lag(&rt, &url, &body));
    }
    match common::write_json("postgres.json", &rows) {
        Ok(path) => println!("\nwrote {}", path.display()),
        Err(error) => eprintln!("could not write postgres.json: {error}"),
    }
    println!("total time: {:.1} s", total.elapsed().as_secs_f64());
    drop(rt);
    drop(server);
}
