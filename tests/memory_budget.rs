//! The memory store's byte budget holds for the process, not only in its
//! weigher: a flood of distinct keys over real HTTP (hyper on loopback,
//! pipelined requests, so each connection's read buffer holds many of
//! them) leaves no more live heap than the budget allows.
//!
//! A counting global allocator (this binary's alone) measures the bytes
//! live before and after the flood. Nothing here measures time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tagcache::{Cache, MemoryStore, Tags};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Counts the bytes of every live allocation of the process.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this binary measure one process-wide counter, so they run
/// one at a time, each in a runtime of its own that is shut down (freeing
/// whatever its tasks held) before the next test measures anything.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone(runtime: tokio::runtime::Builder, test: impl std::future::Future<Output = ()>) {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut runtime = runtime;
    let runtime = runtime.enable_all().build().unwrap();
    runtime.block_on(test);
    drop(runtime);
}

const BUDGET: u64 = 4 << 20;
const KEYS: usize = 300_000;
const CONNECTIONS: usize = 4;
/// Requests written back to back before reading their answers.
const PIPELINE: usize = 1;
/// A bound for failures, never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(600);

/// Serves `app` on a loopback port, counting open connections.
async fn serve(app: Router) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let service = app
                .clone()
                .map_request(|r: http::Request<Incoming>| r.map(axum::body::Body::new));
            let open = counted.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

/// Sends `GET /items/{n}` with `Host: h{n}.example` for each `n` in `keys`,
/// `PIPELINE` at a time, reading every answer.
async fn flood(addr: std::net::SocketAddr, keys: impl Iterator<Item = usize>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let keys: Vec<usize> = keys.collect();
    for batch in keys.chunks(PIPELINE) {
        let mut requests = String::new();
        for n in batch {
            requests.push_str(&format!(
                "GET /items/{n} HTTP/1.1\r\nhost: h{n}.example\r\nuser-agent: flood\r\naccept: */*\r\n\r\n"
            ));
        }
        write.write_all(requests.as_bytes()).await.unwrap();
        for _ in batch {
            read_response(&mut read).await;
        }
    }
}

/// Reads one response (head and `Content-Length` body), checking it is a 200.
async fn read_response(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) {
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "status line {line:?}");
    let mut length = 0usize;
    loop {
        line.clear();
        read.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.unwrap();
}

/// What an entry weighs is what it keeps alive: never less than the bytes
/// the allocator handed out for it (the store would then hold more than its
/// budget), and not much more (it would hold less than it could). Entries
/// are made by the layer, in process, and each is hit once, so the values
/// shared between hits exist too.
#[test]
fn entries_weigh_what_they_keep() {
    alone(
        tokio::runtime::Builder::new_current_thread(),
        entries_weigh(),
    );
}

async fn entries_weigh() {
    const ENTRIES: usize = 2_000;
    for (body_len, tags) in [(10, 1), (300, 3), (4_000, 2), (64_000, 1)] {
        let store = Arc::new(MemoryStore::builder().max_bytes(1 << 34).build());
        let cache = Cache::builder().shared_store(store.clone()).build();
        let body = "x".repeat(body_len);
        let app = Router::new().route(
            "/items/{id}",
            get(move |Path(id): Path<String>| {
                let body = body.clone();
                async move { (Tags::new((0..tags).map(|t| format!("tag:{t}:{id}"))), body) }
            })
            .route_layer(cache.layer("items").ttl(Duration::from_secs(300))),
        );
        let request = |n: usize| {
            http::Request::get(format!("/items/{n}?page=2"))
                .header("host", "example.com")
                .header("accept-language", "de")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let send = |n: usize| {
            let app = app.clone();
            async move {
                let response = app.oneshot(request(n)).await.unwrap();
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap();
            }
        };
        send(ENTRIES).await;
        let before = LIVE.load(Ordering::SeqCst);
        let weight_before = store.weight();
        for n in 0..ENTRIES {
            send(n).await;
            send(n).await;
        }
        let kept = (LIVE.load(Ordering::SeqCst) - before) as f64 / ENTRIES as f64;
        let weight = (store.weight() - weight_before) as f64 / ENTRIES as f64;
        assert_eq!(store.entry_count(), ENTRIES + 1);
        assert!(
            weight >= kept && weight <= kept * 1.4,
            "{body_len} B bodies with {tags} tags: an entry keeps {kept:.0} B and weighs {weight:.0} B"
        );
    }
}

#[test]
fn flood_of_distinct_keys_over_http_stays_within_the_budget() {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(2);
    alone(runtime, async {
        tokio::time::timeout(DEADLINE, flood_within_budget())
            .await
            .expect("the flood did not finish within the deadline");
    });
}

async fn flood_within_budget() {
    let store = Arc::new(MemoryStore::builder().max_bytes(BUDGET).build());
    let cache = Cache::builder().shared_store(store.clone()).build();
    // A small JSON-like body and a tag per item, as an API would answer.
    let body = format!("{{\"items\":[{}]}}", "1,".repeat(100));
    let app = Router::new().route(
        "/items/{id}",
        get(move |Path(id): Path<String>| {
            let body = body.clone();
            async move { (Tags::new([format!("item:{id}")]), body) }
        })
        .route_layer(cache.layer("items").ttl(Duration::from_secs(300))),
    );
    let (addr, open) = serve(app).await;
    // Warm up what lives for the whole run (runtime, tables, metrics),
    // then empty the store: the baseline holds no entry.
    flood(addr, KEYS..KEYS + 2_000).await;
    wait_until_closed(&open).await;
    cache.purge_all().await.unwrap();
    assert_eq!(store.entry_count(), 0);
    let before = LIVE.load(Ordering::SeqCst);

    let per_connection = KEYS / CONNECTIONS;
    let floods: Vec<_> = (0..CONNECTIONS)
        .map(|c| tokio::spawn(flood(addr, c * per_connection..(c + 1) * per_connection)))
        .collect();
    for flood in floods {
        flood.await.unwrap();
    }
    wait_until_closed(&open).await;
    let retained = LIVE.load(Ordering::SeqCst) - before;

    let weight = store.weight();
    assert!(
        weight <= BUDGET,
        "the store weighs {weight} B, over {BUDGET}"
    );
    assert!(
        weight > BUDGET * 3 / 4,
        "the flood did not fill the store ({weight} of {BUDGET} B): the test proves nothing"
    );
    let limit = BUDGET as i64 * 5 / 4;
    assert!(
        retained <= limit,
        "{KEYS} keys over HTTP left {retained} B live for a {BUDGET} B budget \
         (limit {limit} B); {} entries weigh {weight} B",
        store.entry_count()
    );
    println!(
        "{KEYS} keys: {retained} B live for a {BUDGET} B budget ({:.2}x), {} entries weighing {weight} B",
        retained as f64 / BUDGET as f64,
        store.entry_count()
    );
}

/// Waits until the server has finished every connection the clients closed.
async fn wait_until_closed(open: &AtomicUsize) {
    let closed = async {
        while open.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .is_err()
    {
        panic!(
            "{} connections were still open on the server 30 s after their clients closed them",
            open.load(Ordering::SeqCst)
        );
    }
}
