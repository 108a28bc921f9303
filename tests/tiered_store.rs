//! `TieredStore` (a local memory tier) over a real `RedisStore`.
#![cfg(feature = "redis")]

#[macro_use]
#[allow(unused_macros)]
mod suites;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use tagcache::Cache;

use support::apps::counting_app;
use support::deadline::{backstop, eventually};
use support::harness::{get_reply, Counter};
use support::redis_server::RedisServer;
use support::stores::{tiered_over_redis, writes_answered};

/// `/r` answering `call<n>`, tagged `t`, stored for 300 s.
fn app(cache: &Cache, calls: Counter) -> Router {
    counting_app(cache, calls, |l| l.ttl(Duration::from_secs(300)))
}

/// Local hits send nothing to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_hits_cost_no_round_trip() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let (cache, remote) = tiered_over_redis(&server.url(), "local").await;
        let app = app(&cache, Counter::default());
        get_reply(&app, "/r").await;
        // The fill's SET must be in before the first reading, or it is
        // counted between the two.
        writes_answered(&remote).await;
        let before = server.command_calls();
        for _ in 0..50 {
            assert!(get_reply(&app, "/r").await.is_hit());
        }
        let after = server.command_calls();
        let sent: u64 = after
            .iter()
            .map(|(name, n)| n - before.get(name).copied().unwrap_or(0))
            .sum();
        // `info` itself is the only command between the two readings.
        assert!(
            sent <= 1,
            "local hits reached Redis: {before:?} -> {after:?}"
        );
    })
    .await;
}

/// An invalidation on one instance reaches the other instance's local copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_reaches_other_instances_local_tier() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let (a, _) = tiered_over_redis(&server.url(), "two").await;
        let (b, _) = tiered_over_redis(&server.url(), "two").await;
        let (calls_a, calls_b) = (Counter::default(), Counter::default());
        let (app_a, app_b) = (app(&a, calls_a.clone()), app(&b, calls_b.clone()));
        get_reply(&app_a, "/r").await;
        // A stores after answering: wait until its entry is in Redis.
        let server_ref = &server;
        eventually("A's entry is in Redis", || async move {
            server_ref.keys("two:e:*").len() == 1
        })
        .await;
        // B reads A's entry from Redis, then from its own tier.
        assert!(get_reply(&app_b, "/r").await.is_hit());
        assert!(get_reply(&app_b, "/r").await.is_hit());
        assert_eq!(calls_b.get(), 0);
        a.invalidate(["t"]).await.unwrap();
        let app_b2 = app_b.clone();
        eventually("B's local copy is invalidated", || {
            let app = app_b2.clone();
            async move { !get_reply(&app, "/r").await.is_hit() }
        })
        .await;
        assert!(calls_b.get() >= 1);
    })
    .await;
}

/// Every shared suite case, each over a tiered store on one server.
mod suite {
    use super::*;

    fn tiered_caches() -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Cache>>> {
        let server = RedisServer::start();
        let next = AtomicUsize::new(0);
        move || {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let url = server.as_ref().map(RedisServer::url);
            Box::pin(async move {
                match url {
                    Some(url) => tiered_over_redis(&url, &format!("tiered{n}")).await.0,
                    None => Cache::default(),
                }
            })
        }
    }

    store_suite!(tiered_caches());
}

/// For operators, a tiered store reports its local tier's memory with the
/// shared store's feed, and lists the shared store's entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_the_local_tier_and_the_listing_the_shared_store() {
    use tagcache::inspect::{ScanOutcome, ScanRequest};
    use tagcache::store::{MemoryStore, TieredStore};
    use tagcache::Store;
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let remote = support::stores::redis_store(&server.url(), "tierlist").await;
        let local = MemoryStore::builder().max_bytes(1 << 20).build();
        let store = std::sync::Arc::new(TieredStore::new(local, remote.clone()));
        let cache = Cache::builder().shared_store(store.clone()).build();
        let calls = Counter::default();
        let app = app(&cache, calls.clone());
        get_reply(&app, "/r").await;
        writes_answered(&remote).await;
        let usage = store.usage();
        assert_eq!(usage.kind, "tiered");
        assert_eq!(usage.entries, Some(1), "the local copy");
        assert_eq!(usage.budget, Some(1 << 20));
        assert!(usage.feed.is_some(), "the shared store's feed");
        let ScanOutcome::Page(page) = store.scan(ScanRequest::first(10)).await.unwrap() else {
            panic!("the shared store lists");
        };
        assert_eq!(page.entries.len(), 1);
        assert_eq!(&*page.entries[0].1.route, "r");
    })
    .await;
}
