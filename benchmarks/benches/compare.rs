//! Side-by-side cost of a cached response, in process.
//!
//! Every case drives one axum `Router` with `tower::ServiceExt::oneshot` (no
//! sockets) for `GET /items/1`, collects the response body and checks its
//! length. The handler returns a prebuilt `Bytes` body (1 KiB or 64 KiB of
//! JSON) with a `content-type`, and counts its calls.
//!
//! Cases, per body size and task count (1 task, or 8 concurrent tasks on a
//! 2-worker multi-thread runtime, timed as wall time / total requests):
//!
//! - `baseline`: the handler, no cache;
//! - `tagcache-memory-hit`: `cache.layer("bench").ttl(..)` on the route,
//!   after one request filled it;
//! - `tower-http-cache-hit`, `hitbox-moka-hit`, `axum-response-cache-hit`:
//!   the peers, wired as their docs show, after one request filled them;
//! - `tagcache-miss-store` (after all hit groups, against its own
//!   baseline): a new key per request (`?i=<n>`), so every request is a
//!   miss that calls the origin and stores the response.
//!
//! Then `tagcache-invalidate-<n>`: `n` entries carry one tag, and one
//! `cache.invalidate(["hot"])` is timed (repeatedly).
//!
//! The cases of one group are sampled in turn (sample 1 of every case, then
//! sample 2, ...), and each ratio is the median of the sample-by-sample
//! ratios, so background load on the machine spreads over all of them
//! instead of skewing one. Allocations per request are counted outside the
//! timed batches.
//!
//! Run in `benchmarks/`: `cargo bench --bench compare` (filters: `--
//! memory-hit/1KiB tower-http-cache` runs the cases whose name contains
//! either). Results: a Markdown table on stdout and the repository's
//! `target/bench/compare.json`. See also `COMPARE_PROFILE` below, for
//! profilers.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Request, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::{BoxError, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::{ServiceBuilder, ServiceExt};

use common::{print_table, selected, Row};
use tagcache::{Cache, MemoryStore};

/// Counts allocations while `COUNTING` is set (only outside timed loops);
/// when it is not set, the cost is one relaxed load per allocation.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations (and reallocations) per request, over `n` requests on one task.
fn allocations_per_request(rt: &Runtime, case: &Case, n: u64) -> f64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    run(rt, case, 1, n);
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) as f64 / n as f64
}

const TTL: Duration = Duration::from_secs(3600);
const ROUTE: &str = "/items/{id}";
const PATH: &str = "/items/1";
const WARMUP: Duration = Duration::from_millis(150);
/// Requests per task during calibration.
const CALIBRATION_BATCH: u64 = 32;

/// The origin: a prebuilt body and a call counter.
#[derive(Clone)]
struct Origin {
    body: Bytes,
    calls: Arc<AtomicU64>,
}

impl Origin {
    fn new(size: usize) -> Origin {
        Origin {
            body: json_body(size),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

async fn handler(State(origin): State<Origin>) -> impl IntoResponse {
    origin.calls.fetch_add(1, Ordering::Relaxed);
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        origin.body.clone(),
    )
}

/// `size` bytes of JSON-looking text.
fn json_body(size: usize) -> Bytes {
    let mut out = String::with_capacity(size + 64);
    out.push('[');
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            r#"{{"id":{i},"teacher":7,"status":"active","title":"Session {i}"}},"#
        ));
        i += 1;
    }
    out.truncate(size - 1);
    out.push(']');
    Bytes::from(out)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Baseline,
    Tagcache,
    TagcacheMiss,
    TowerHttpCache,
    Hitbox,
    AxumResponseCache,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Tagcache => "tagcache-memory-hit",
            Variant::TagcacheMiss => "tagcache-miss-store",
            Variant::TowerHttpCache => "tower-http-cache-hit",
            Variant::Hitbox => "hitbox-moka-hit",
            Variant::AxumResponseCache => "axum-response-cache-hit",
        }
    }

    fn caches(self) -> bool {
        !matches!(self, Variant::Baseline | Variant::TagcacheMiss)
    }
}

const VARIANTS: [Variant; 6] = [
    Variant::Baseline,
    Variant::Tagcache,
    Variant::TowerHttpCache,
    Variant::Hitbox,
    Variant::AxumResponseCache,
    Variant::TagcacheMiss,
];

/// The hit cases, measured together.
const HITS: [Variant; 5] = [
    Variant::Baseline,
    Variant::Tagcache,
    Variant::TowerHttpCache,
    Variant::Hitbox,
    Variant::AxumResponseCache,
];

/// The miss case, measured after all hit groups against its own baseline:
/// it grows the heap by tens of MiB, which was seen to slow a peer's hits
/// when interleaved with them.
const MISSES: [Variant; 2] = [Variant::Baseline, Variant::TagcacheMiss];

/// tower-http-cache, in-memory backend, as its README's quick start.
///
/// Two adapters are needed to put it on an axum 0.8 route, both outside its
/// hit path: its layer fails with `BoxError`, which axum asks to be handled
/// with `HandleErrorLayer`; and its service requires a `Sync` response body
/// from the inner service, which axum's `Body` is not, so the handler's body
/// is wrapped in [`SyncBody`] (only origin responses go through it).
fn with_tower_http_cache(route: MethodRouter<Origin>) -> MethodRouter<Origin> {
    use tower_http_cache::prelude::{CacheLayer, InMemoryBackend};
    let layer = CacheLayer::builder(InMemoryBackend::new(10_000))
        .ttl(TTL)
        .build();
    route.route_layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                StatusCode::INTERNAL_SERVER_ERROR
            }))
            .layer(layer)
            .map_response(|response: axum::response::Response| response.map(SyncBody::new)),
    )
}

/// An axum `Body` that is `Sync` (a `Mutex` is `Sync` for any `Send`
/// content; polling goes through `get_mut`, which takes no lock).
struct SyncBody(std::sync::Mutex<Body>);

impl SyncBody {
    fn new(body: Body) -> Self {
        SyncBody(std::sync::Mutex::new(body))
    }
}

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let body = self.get_mut().0.get_mut().expect("not poisoned");
        std::pin::Pin::new(body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().expect("not poisoned").is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.lock().expect("not poisoned").size_hint()
    }
}

/// hitbox-tower over hitbox-moka with the binary (bincode) value format, as
/// the hitbox-moka docs recommend; the key is the method and the path.
fn with_hitbox(route: MethodRouter<Origin>) -> MethodRouter<Origin> {
    use hitbox::policy::PolicyConfig;
    use hitbox::Config;
    use hitbox_backend::format::BincodeFormat;
    use hitbox_http::extractors::path::PathExtractor;
    use hitbox_http::extractors::Method;
    use hitbox_http::predicates::{NeutralRequestPredicate, NeutralResponsePredicate};
    use hitbox_moka::MokaBackend;

    let backend = MokaBackend::builder()
        .max_entries(10_000)
        .value_format(BincodeFormat)
        .build();
    let config = Config::builder()
        .request_predicate(NeutralRequestPredicate::<Body>::new())
        .response_predicate(NeutralResponsePredicate::<Body>::new())
        .extractor(Method::new().path(ROUTE))
        .policy(PolicyConfig::builder().ttl(TTL).build())
        .build();
    let layer = hitbox_tower::Cache::builder()
        .backend(backend)
        .config(config)
        .build();
    route.route_layer(layer)
}

/// axum-response-cache, as its README shows.
fn with_axum_response_cache(route: MethodRouter<Origin>) -> MethodRouter<Origin> {
    route.route_layer(axum_response_cache::CacheLayer::with_lifespan(TTL))
}

fn router(variant: Variant, origin: &Origin) -> Router {
    let route = get(handler);
    let route = match variant {
        Variant::Baseline => route,
        Variant::Tagcache | Variant::TagcacheMiss => {
            route.route_layer(Cache::default().layer("bench").ttl(TTL))
        }
        Variant::TowerHttpCache => with_tower_http_cache(route),
        Variant::Hitbox => with_hitbox(route),
        Variant::AxumResponseCache => with_axum_response_cache(route),
    };
    Router::new().route(ROUTE, route).with_state(origin.clone())
}

/// Where the URIs of a batch come from.
#[derive(Clone)]
enum Uris {
    /// Always the same URI.
    Fixed(Uri),
    /// A new query string per request, from a shared counter.
    Unique(Arc<AtomicU64>),
}

impl Uris {
    fn next(&self) -> Uri {
        match self {
            Uris::Fixed(uri) => uri.clone(),
            Uris::Unique(counter) => {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                format!("{PATH}?i={n}").parse().expect("valid uri")
            }
        }
    }
}

/// One request, its body collected; panics on a wrong status or length.
async fn request(router: &Router, uri: Uri, expect_len: usize) {
    let request = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("valid request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body.len(), expect_len);
}

async fn batch(router: Router, uris: Uris, n: u64, len: usize) {
    for _ in 0..n {
        request(&router, uris.next(), len).await;
    }
}

/// One case of a group: its router, and the batch size found by calibration.
struct Case {
    variant: Variant,
    origin: Origin,
    router: Router,
    uris: Uris,
    batch: u64,
    samples: Vec<f64>,
    allocations: f64,
}

/// Runs `n` requests on each of `tasks` spawned tasks; ns per request.
fn run(rt: &Runtime, case: &Case, tasks: usize, n: u64) -> f64 {
    let len = case.origin.body.len();
    rt.block_on(async {
        let started = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| tokio::spawn(batch(case.router.clone(), case.uris.clone(), n, len)))
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        started.elapsed().as_nanos() as f64 / (n * tasks as u64) as f64
    })
}

fn size_label(size: usize) -> String {
    format!("{}KiB", size / 1024)
}

fn group(
    rt: &Runtime,
    variants: &[Variant],
    size: usize,
    tasks: usize,
    filters: &[String],
) -> Vec<Row> {
    let group = format!(
        "{}/{}task{}",
        size_label(size),
        tasks,
        if tasks > 1 { "s" } else { "" }
    );
    let mut cases: Vec<Case> = variants
        .iter()
        .filter(|v| **v == Variant::Baseline || selected(filters, &format!("{}/{group}", v.name())))
        .map(|&variant| {
            let origin = Origin::new(size);
            let router = router(variant, &origin);
            let uris = match variant {
                Variant::TagcacheMiss => Uris::Unique(Arc::default()),
                _ => Uris::Fixed(Uri::from_static(PATH)),
            };
            Case {
                variant,
                origin,
                router,
                uris,
                batch: 0,
                samples: Vec::new(),
                allocations: 0.0,
            }
        })
        .collect();
    if cases.len() == 1 && !selected(filters, &format!("baseline/{group}")) {
        return Vec::new();
    }

    // Fill (one request), then warm up and calibrate each case.
    for case in &mut cases {
        run(rt, case, 1, 1);
        let started = Instant::now();
        let mut done = 0;
        while started.elapsed() < WARMUP {
            run(rt, case, tasks, CALIBRATION_BATCH);
            done += CALIBRATION_BATCH * tasks as u64;
        }
        // `batch` is per task: the whole sample lasts about the target.
        case.batch = (common::batch_size(done, started.elapsed(), common::batch_target())
            / tasks as u64)
            .max(4);
    }
    for _ in 0..common::samples() {
        for case in &mut cases {
            let ns = run(rt, case, tasks, case.batch);
            case.samples.push(ns);
        }
    }
    for case in &mut cases {
        case.allocations = allocations_per_request(rt, case, 1_000);
        if std::env::var_os("BENCH_RAW").is_some() {
            let raw: Vec<String> = case.samples.iter().map(|s| format!("{s:.0}")).collect();
            eprintln!("{} {group}: {}", case.variant.name(), raw.join(" "));
        }
    }

    let mut rows: Vec<Row> = cases
        .iter()
        .map(|case| {
            let mut row = Row::from_samples(
                format!("{}/{group}", case.variant.name()),
                case.samples.clone(),
            );
            let calls = case.origin.calls();
            let allocs = case.allocations;
            row.note = if case.variant.caches() {
                if calls == 1 {
                    "origin called once".to_owned()
                } else {
                    format!("WARNING: origin called {calls} times")
                }
            } else {
                format!("origin called {calls} times")
            };
            row.note = format!("{allocs:.1} allocs/req; {}", row.note);
            row
        })
        .collect();
    for (row, case) in rows.iter_mut().zip(&cases) {
        row.ratio = Some(common::paired_ratio(&case.samples, &cases[0].samples));
    }
    rows
}

/// Fills `n` entries tagged `hot`, then times `cache.invalidate(["hot"])`.
fn invalidation(rt: &Runtime, n: u64) -> Row {
    let store = Arc::new(MemoryStore::builder().max_bytes(1 << 30).build());
    let cache = Cache::builder().shared_store(store.clone()).build();
    let origin = Origin::new(128);
    let layer = cache
        .layer("invalidate")
        .ttl(TTL)
        .tags(|_: &http::request::Parts, _: &http::response::Parts| ["hot"]);
    let router = Router::new()
        .route(ROUTE, get(handler).route_layer(layer))
        .with_state(origin.clone());
    let len = origin.body.len();
    let fill = Uris::Unique(Arc::default());
    rt.block_on(rt.spawn(batch(router.clone(), fill, n, len)))
        .expect("fill");
    assert_eq!(store.entry_count() as u64, n, "every entry stored");
    assert_eq!(origin.calls(), n);

    let samples = rt
        .block_on(rt.spawn({
            let cache = cache.clone();
            async move {
                let op = || async {
                    cache.invalidate(["hot"]).await.expect("memory store");
                };
                let started = Instant::now();
                let mut done = 0u64;
                while started.elapsed() < WARMUP {
                    op().await;
                    done += 1;
                }
                let per_batch = common::batch_size(done, started.elapsed(), common::batch_target());
                let mut samples = Vec::new();
                for _ in 0..common::samples() {
                    let t = Instant::now();
                    for _ in 0..per_batch {
                        op().await;
                    }
                    samples.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
                }
                samples
            }
        }))
        .expect("invalidate");

    // The invalidation took: the first entry is gone for readers.
    let before = origin.calls();
    rt.block_on(rt.spawn({
        let router = router.clone();
        async move {
            request(&router, format!("{PATH}?i=0").parse().unwrap(), len).await;
        }
    }))
    .expect("check");
    assert_eq!(origin.calls(), before + 1, "invalidated entry not served");

    let mut row = Row::from_samples(format!("tagcache-invalidate-{n}"), samples);
    row.note = format!("{n} entries tagged `hot`");
    row
}

/// `COMPARE_PROFILE=<case>[:<bytes>[:<requests>]]` runs only that case's
/// request loop on one task, unsampled, for a profiler (callgrind, perf):
/// e.g. `COMPARE_PROFILE=tagcache-memory-hit:1024:20000`.
fn profile(rt: &Runtime, spec: &str) {
    let mut parts = spec.split(':');
    let name = parts.next().unwrap_or_default();
    let size = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let count = parts.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let variant = VARIANTS
        .into_iter()
        .find(|v| v.name() == name)
        .unwrap_or_else(|| panic!("unknown case {name:?}"));
    let origin = Origin::new(size);
    let case = Case {
        variant,
        router: router(variant, &origin),
        uris: match variant {
            Variant::TagcacheMiss => Uris::Unique(Arc::default()),
            _ => Uris::Fixed(Uri::from_static(PATH)),
        },
        origin,
        batch: count,
        samples: Vec::new(),
        allocations: 0.0,
    };
    run(rt, &case, 1, 1);
    let response = rt.block_on(
        case.router
            .clone()
            .oneshot(Request::get(PATH).body(Body::empty()).expect("request")),
    );
    let response = response.expect("infallible");
    println!(
        "response headers ({} of capacity {}): {:?}",
        response.headers().len(),
        response.headers().capacity(),
        response.headers()
    );
    let allocs = allocations_per_request(rt, &case, 1_000);
    let ns = run(rt, &case, 1, count);
    println!("{name}: {count} requests of {size} bytes, {ns:.0} ns/request, {allocs:.1} allocations/request");
}

fn main() {
    let filters = common::filters();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(spec) = std::env::var("COMPARE_PROFILE") {
        profile(&rt, &spec);
        return;
    }
    println!("# compare\n\n{}", common::machine_facts());
    let total = Instant::now();

    let mut all = Vec::new();
    for (kind, variants) in [("hits", &HITS[..]), ("misses", &MISSES[..])] {
        for size in [1024, 64 * 1024] {
            for tasks in [1, 8] {
                let rows = group(&rt, variants, size, tasks, &filters);
                if rows.is_empty() {
                    continue;
                }
                print_table(
                    &format!("{kind}, {}, {} task(s)", size_label(size), tasks),
                    &rows,
                );
                // One `baseline/<group>` per group in the JSON: the hit
                // groups' (the miss group's own is only its ratios' base).
                all.extend(
                    rows.into_iter()
                        .filter(|row| kind == "hits" || !row.name.starts_with("baseline/")),
                );
            }
        }
    }

    let mut invalidations = Vec::new();
    for n in [1, 1_000, 100_000] {
        if !selected(&filters, &format!("tagcache-invalidate-{n}")) {
            continue;
        }
        invalidations.push(invalidation(&rt, n));
    }
    if !invalidations.is_empty() {
        let first = invalidations[0].median_ns;
        for row in &mut invalidations {
            row.note = format!("{}; {:.2}× the smallest", row.note, row.median_ns / first);
        }
        print_table(
            "invalidate one tag (ns per call; no baseline)",
            &invalidations,
        );
        all.extend(invalidations);
    }

    match common::write_json("compare.json", &all) {
        Ok(path) => println!("\nwrote {}", path.display()),
        Err(error) => eprintln!("could not write compare.json: {error}"),
    }
    println!("total time: {:.1} s", total.elapsed().as_secs_f64());
}
