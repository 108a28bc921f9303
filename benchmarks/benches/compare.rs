//! Side-by-side cost of a cached response, in process.
//!
//! Every case drives one axum `Router` with `tower::ServiceExt::oneshot` (no
//! sockets) for `GET /items/1`, collects the response body and checks its
//! length. The handler returns a prebuilt `Bytes` body (1 KiB or 64 KiB of
//! JSON) with a `content-type` and `Cache-Control: max-age=3600` (the
//! route's TTL), and counts its calls.
//!
//! Cases, per body size and task count (1 task, or 8 concurrent tasks on a
//! 2-worker multi-thread runtime, timed as wall time / total requests):
//!
//! - `baseline`: the handler, no cache;
//! - `tagcache-memory-hit`: `cache.layer("bench").ttl(..)` on the route,
//!   after one request filled it;
//! - `tagcache-origin-hit`: the same with `.freshness(Freshness::Origin)`,
//!   so the entry's lifetime is the response's `max-age` (its note gives
//!   the paired ratio to `tagcache-memory-hit`);
//! - `tower-http-cache-hit`, `hitbox-moka-hit`, `axum-response-cache-hit`:
//!   the peers, wired as their docs show, after one request filled them;
//! - `tagcache-miss-store` (after all hit groups, against its own
//!   baseline): a new key per request (`?i=<n>`), so every request is a
//!   miss that calls the origin and stores the response.
//!
//! Then the revalidation groups, in `Freshness::Origin`, with a handler
//! that answers `Cache-Control: max-age=0` and an `ETag`, and a 304 with
//! no body when `If-None-Match` matches it (it takes the same steps either
//! way; the 304 only leaves the body out). Each task requests its own
//! `?i=<n>`, formatted and parsed per request, the baseline too:
//!
//! - `tagcache-origin-miss-store`: a new key per request, so every request
//!   is a full miss: the origin sends the body, and it is stored (with no
//!   lifetime, to be revalidated);
//! - `tagcache-revalidate-304`: one key per task, so every request finds
//!   its stale entry and revalidates it: the origin answers the
//!   conditional request with 304, the entry is stored again with its body
//!   and answers (its note gives the paired ratio to the full miss).
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
//! either; `-- memory-hit origin-hit revalidate origin-miss` runs the
//! `Freshness::Origin` comparisons). Results: a Markdown table on stdout
//! and the repository's `target/bench/compare.json`. See also
//! `COMPARE_PROFILE` below, for profilers.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, Request, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::{BoxError, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::runtime::Runtime;
use tower::{ServiceBuilder, ServiceExt};

use common::{print_table, selected, Row};
use tagcache::{Cache, Freshness, MemoryStore};

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

/// The `Cache-Control` of [`handler`]: fresh for the route's TTL, so
/// `Freshness::Route` and `Freshness::Origin` store it for as long.
const MAX_AGE: &str = "max-age=3600";
/// The `ETag` of [`validating_handler`]'s body.
const ETAG_VALUE: &str = "\"v1\"";

/// The origin: a prebuilt body and call counters.
#[derive(Clone)]
struct Origin {
    body: Bytes,
    calls: Arc<AtomicU64>,
    /// Calls answered 304 ([`validating_handler`]).
    not_modified: Arc<AtomicU64>,
}

impl Origin {
    fn new(size: usize) -> Origin {
        Origin {
            body: json_body(size),
            calls: Arc::default(),
            not_modified: Arc::default(),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn not_modified(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }
}

async fn handler(State(origin): State<Origin>) -> impl IntoResponse {
    origin.calls.fetch_add(1, Ordering::Relaxed);
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static(MAX_AGE)),
        ],
        origin.body.clone(),
    )
}

/// The origin of the revalidation groups: `Cache-Control: max-age=0` (stale
/// at once) and an `ETag`; a 304 without the body when the request's
/// `If-None-Match` is that `ETag`. Both answers take the same steps (the
/// request is taken whole, not cloned, and the body is cloned either way);
/// the 304 leaves the body and the `content-type` out.
async fn validating_handler(
    State(origin): State<Origin>,
    request: Request<Body>,
) -> axum::response::Response {
    origin.calls.fetch_add(1, Ordering::Relaxed);
    let body = origin.body.clone();
    let validators = [
        (CACHE_CONTROL, HeaderValue::from_static("max-age=0")),
        (ETAG, HeaderValue::from_static(ETAG_VALUE)),
    ];
    let matches = request
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == ETAG_VALUE.as_bytes());
    if matches {
        origin.not_modified.fetch_add(1, Ordering::Relaxed);
        drop(body);
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        validators,
        body,
    )
        .into_response()
}

/// Which handler a group's route calls.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handler {
    /// [`handler`].
    Plain,
    /// [`validating_handler`].
    Validating,
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
    TagcacheOrigin,
    TagcacheMiss,
    TagcacheOriginMiss,
    TagcacheRevalidate,
    TowerHttpCache,
    Hitbox,
    AxumResponseCache,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Tagcache => "tagcache-memory-hit",
            Variant::TagcacheOrigin => "tagcache-origin-hit",
            Variant::TagcacheMiss => "tagcache-miss-store",
            Variant::TagcacheOriginMiss => "tagcache-origin-miss-store",
            Variant::TagcacheRevalidate => "tagcache-revalidate-304",
            Variant::TowerHttpCache => "tower-http-cache-hit",
            Variant::Hitbox => "hitbox-moka-hit",
            Variant::AxumResponseCache => "axum-response-cache-hit",
        }
    }

    /// Whether the origin is called once (the fill) and never again.
    fn caches(self) -> bool {
        !matches!(
            self,
            Variant::Baseline
                | Variant::TagcacheMiss
                | Variant::TagcacheOriginMiss
                | Variant::TagcacheRevalidate
        )
    }

    /// The case of the same group this one is compared with, by a paired
    /// ratio in its note.
    fn reference(self) -> Option<Variant> {
        match self {
            Variant::TagcacheOrigin => Some(Variant::Tagcache),
            Variant::TagcacheRevalidate => Some(Variant::TagcacheOriginMiss),
            _ => None,
        }
    }

    /// The handler it is measured with when run alone (`COMPARE_PROFILE`).
    fn handler(self) -> Handler {
        match self {
            Variant::TagcacheOriginMiss | Variant::TagcacheRevalidate => Handler::Validating,
            _ => Handler::Plain,
        }
    }

    /// Where its requests' URIs come from, in a group of `handler`'s.
    fn uris(self, handler: Handler) -> Uris {
        match (self, handler) {
            (Variant::TagcacheMiss | Variant::TagcacheOriginMiss, _) => {
                Uris::Unique(Arc::default())
            }
            (Variant::TagcacheRevalidate, _) | (Variant::Baseline, Handler::Validating) => {
                Uris::PerTask
            }
            _ => Uris::Fixed(Uri::from_static(PATH)),
        }
    }
}

const VARIANTS: [Variant; 9] = [
    Variant::Baseline,
    Variant::Tagcache,
    Variant::TagcacheOrigin,
    Variant::TowerHttpCache,
    Variant::Hitbox,
    Variant::AxumResponseCache,
    Variant::TagcacheMiss,
    Variant::TagcacheOriginMiss,
    Variant::TagcacheRevalidate,
];

/// The hit cases, measured together.
const HITS: [Variant; 6] = [
    Variant::Baseline,
    Variant::Tagcache,
    Variant::TagcacheOrigin,
    Variant::TowerHttpCache,
    Variant::Hitbox,
    Variant::AxumResponseCache,
];

/// The miss case, measured after all hit groups against its own baseline:
/// it grows the heap by tens of MiB, which was seen to slow a peer's hits
/// when interleaved with them.
const MISSES: [Variant; 2] = [Variant::Baseline, Variant::TagcacheMiss];

/// A 304 revalidation against a full miss, both in `Freshness::Origin`
/// with [`validating_handler`], after the miss groups for the same reason.
const REVALIDATIONS: [Variant; 3] = [
    Variant::Baseline,
    Variant::TagcacheOriginMiss,
    Variant::TagcacheRevalidate,
];

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

fn router(variant: Variant, handler_kind: Handler, origin: &Origin) -> Router {
    let route = match handler_kind {
        Handler::Plain => get(handler),
        Handler::Validating => get(validating_handler),
    };
    let route = match variant {
        Variant::Baseline => route,
        Variant::Tagcache | Variant::TagcacheMiss => {
            route.route_layer(Cache::default().layer("bench").ttl(TTL))
        }
        Variant::TagcacheOrigin | Variant::TagcacheOriginMiss | Variant::TagcacheRevalidate => {
            route.route_layer(
                Cache::default()
                    .layer("bench")
                    .ttl(TTL)
                    .freshness(Freshness::Origin),
            )
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
    /// The task's own query string (`?i=<task>`), formatted and parsed per
    /// request as `Unique`'s are: one key per task, so concurrent tasks
    /// never share an origin call.
    PerTask,
}

impl Uris {
    fn next(&self, task: u64) -> Uri {
        let n = match self {
            Uris::Fixed(uri) => return uri.clone(),
            Uris::Unique(counter) => counter.fetch_add(1, Ordering::Relaxed),
            Uris::PerTask => task,
        };
        format!("{PATH}?i={n}").parse().expect("valid uri")
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

async fn batch(router: Router, uris: Uris, task: u64, n: u64, len: usize) {
    for _ in 0..n {
        request(&router, uris.next(task), len).await;
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
        let handles: Vec<_> = (0..tasks as u64)
            .map(|task| {
                let (router, uris) = (case.router.clone(), case.uris.clone());
                tokio::spawn(batch(router, uris, task, n, len))
            })
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
    handler: Handler,
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
            let router = router(variant, handler, &origin);
            let uris = variant.uris(handler);
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
            let not_modified = case.origin.not_modified();
            let allocs = case.allocations;
            row.note = if case.variant.caches() {
                if calls == 1 {
                    "origin called once".to_owned()
                } else {
                    format!("WARNING: origin called {calls} times")
                }
            } else if case.variant == Variant::TagcacheRevalidate {
                // One full answer per key (the fill of each task's key),
                // every other call a 304.
                let filled = calls - not_modified;
                let warning = if (1..=tasks as u64).contains(&filled) {
                    ""
                } else {
                    "WARNING: "
                };
                format!("{warning}origin called {calls} times, {not_modified} answered 304")
            } else if not_modified > 0 {
                format!("WARNING: origin called {calls} times, {not_modified} answered 304")
            } else {
                format!("origin called {calls} times")
            };
            row.note = format!("{allocs:.1} allocs/req; {}", row.note);
            if let Some(reference) = case.variant.reference() {
                if let Some(other) = cases.iter().find(|c| c.variant == reference) {
                    let ratio = common::paired_ratio(&case.samples, &other.samples);
                    row.note = format!("{}; {ratio:.3}× {}", row.note, reference.name());
                }
            }
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
    rt.block_on(rt.spawn(batch(router.clone(), fill, 0, n, len)))
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
    let handler = variant.handler();
    let case = Case {
        variant,
        router: router(variant, handler, &origin),
        uris: variant.uris(handler),
        origin,
        batch: count,
        samples: Vec::new(),
        allocations: 0.0,
    };
    run(rt, &case, 1, 1);
    let response = rt.block_on(
        case.router.clone().oneshot(
            Request::get(case.uris.next(0))
                .body(Body::empty())
                .expect("request"),
        ),
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
    let kinds = [
        ("hits", &HITS[..], Handler::Plain),
        ("misses", &MISSES[..], Handler::Plain),
        ("revalidation", &REVALIDATIONS[..], Handler::Validating),
    ];
    for (kind, variants, handler) in kinds {
        for size in [1024, 64 * 1024] {
            for tasks in [1, 8] {
                let rows = group(&rt, variants, handler, size, tasks, &filters);
                if rows.is_empty() {
                    continue;
                }
                print_table(
                    &format!("{kind}, {}, {} task(s)", size_label(size), tasks),
                    &rows,
                );
                // One `baseline/<group>` per group in the JSON: the hit
                // groups' (the miss and revalidation groups' own are only
                // their ratios' base).
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
