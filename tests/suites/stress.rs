//! A randomized, seeded stress test of the invalidation guarantee: many tasks
//! read and write concurrently, and every read is checked against a model of
//! the data. Reproduce a failure with `TAGCACHE_STRESS_SEED=<seed>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::MakeCache;
use crate::support::deadline::spawn;
use crate::support::harness::*;

const TAGS: usize = 6;
const KEYS: usize = 12;
const TASKS: u64 = 8;
const OPS_PER_TASK: usize = 250;

/// The two tags key `k` depends on.
fn tags_of(k: usize) -> [usize; 2] {
    [k % TAGS, (k / 2 + 1) % TAGS]
}

struct Model {
    /// The data: one version per tag, bumped by writers.
    versions: Vec<AtomicU64>,
    /// For each tag, the newest version whose invalidation has returned:
    /// any read that starts later must see at least this version.
    committed: Vec<AtomicU64>,
}

pub async fn randomized_reads_never_stale(make: &dyn MakeCache) {
    let seed = std::env::var("TAGCACHE_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("stress seed = {seed} (set TAGCACHE_STRESS_SEED={seed} to replay)");

    let cache = make.make().await;
    let model = Arc::new(Model {
        versions: (0..TAGS).map(|_| AtomicU64::new(0)).collect(),
        committed: (0..TAGS).map(|_| AtomicU64::new(0)).collect(),
    });
    let origin_model = model.clone();
    let app = Router::new().route(
        "/k/{k}",
        get(move |Path(k): Path<usize>| {
            let model = origin_model.clone();
            async move {
                // Read first, answer later: a slow origin call carries the
                // data as of its start, the case invalidation must cover.
                let [a, b] = tags_of(k);
                let va = model.versions[a].load(Ordering::SeqCst);
                let vb = model.versions[b].load(Ordering::SeqCst);
                let pause = (va + vb + k as u64) % 3;
                tokio::time::sleep(Duration::from_micros(200 * pause)).await;
                format!("{va},{vb}")
            }
        })
        .route_layer(cache.layer("k").tags(|req, _| {
            let k: usize = req.uri.path().rsplit('/').next().unwrap().parse().unwrap();
            tags_of(k).map(|t| format!("tag{t}"))
        })),
    );

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (app, cache, model) = (app.clone(), cache.clone(), model.clone());
        let what = format!("stress task {task} never finished");
        tasks.push(spawn(what, async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(task));
            let mut reads = 0usize;
            for _ in 0..OPS_PER_TASK {
                if rng.random_bool(0.2) {
                    let tag = rng.random_range(0..TAGS);
                    let version = model.versions[tag].fetch_add(1, Ordering::SeqCst) + 1;
                    cache.invalidate([format!("tag{tag}")]).await.expect("invalidation recorded");
                    model.committed[tag].fetch_max(version, Ordering::SeqCst);
                } else {
                    let k = rng.random_range(0..KEYS);
                    let [a, b] = tags_of(k);
                    let floor_a = model.committed[a].load(Ordering::SeqCst);
                    let floor_b = model.committed[b].load(Ordering::SeqCst);
                    let reply = get_reply(&app, &format!("/k/{k}")).await;
                    assert_eq!(reply.status, http::StatusCode::OK);
                    let text = reply.text();
                    let (va, vb) = text.split_once(',').expect("body is `a,b`");
                    let (va, vb): (u64, u64) = (va.parse().unwrap(), vb.parse().unwrap());
                    assert!(
                        va >= floor_a && vb >= floor_b,
                        "stale read of /k/{k} (seed {seed}): got ({va},{vb}), invalidations had returned for ({floor_a},{floor_b}); cache-status: {}",
                        reply.cache_status()
                    );
                    reads += 1;
                }
            }
            reads
        }));
    }
    let mut reads = 0;
    for task in tasks {
        reads += task.await.expect("stress task");
    }
    let stats = cache.stats().route("k");
    println!("stress: {reads} reads checked, {stats:?}");
    assert!(
        stats.hits + stats.collapsed > 0,
        "the cache answered some reads itself"
    );
}
