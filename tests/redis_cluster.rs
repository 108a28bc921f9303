//! `RedisStore` against a real 3-master Redis Cluster (started per test on
//! free ports below 22768; skipped with a `SKIP:` line when Redis is not
//! installed).
#![cfg(feature = "redis")]

#[macro_use]
#[allow(unused_macros)]
mod suites;
mod support;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tagcache::{Cache, RedisStore};

use support::apps::items_app;
use support::deadline::{backstop, eventually, within_for, Lazy, BACKSTOP};
use support::harness::{get_reply, wait_for_hit, Counter};
use support::redis_server::{RedisCluster, Resp};
use support::stores::{cluster_store, writes_answered};

const ITEMS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_hit_and_invalidation_on_every_master() {
    backstop(async {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let ns = "cl";
        let store_a = cluster_store(cluster.urls(), ns).await;
        let cache_a = Cache::new(store_a.clone());
        let origin_a = Counter::default();
        let app_a = items_app(&cache_a, origin_a.clone());

        for id in 0..ITEMS {
            let reply = get_reply(&app_a, &format!("/items/{id}")).await;
            assert_eq!(reply.text(), format!("item {id}"));
            assert!(!reply.is_hit());
        }
        for id in 0..ITEMS {
            wait_for_hit(&app_a, &format!("/items/{id}")).await;
        }
        assert_eq!(origin_a.get(), ITEMS);
        // A's hits may be its own writes still on their way to the masters.
        writes_answered(&store_a).await;

        // The entries spread over all three masters; the stamp keys all sit
        // on the one that owns the namespace's hash tag.
        let mut total = 0;
        for node in &cluster.nodes {
            let here = node.keys(&format!("{ns}:e:*")).len();
            assert!(here > 0, "master {} holds no entry", node.port());
            total += here;
        }
        assert_eq!(total, ITEMS);
        let owner = cluster.owner_of("{cl}:tags");
        assert_eq!(cluster.owner_of("{cl}:clock").port(), owner.port());
        assert_eq!(cluster.owner_of("{cl}:tagtimes").port(), owner.port());

        // A second instance whose feed subscribes on a master that does not
        // own the namespace slot: the scripts' PUBLISH still reaches it.
        let mut urls_b: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.port() != owner.port())
            .map(|n| n.url())
            .collect();
        urls_b.push(owner.url());
        let cache_b = Cache::new(cluster_store(urls_b, ns).await);
        let origin_b = Counter::default();
        let app_b = items_app(&cache_b, origin_b.clone());
        for id in 0..ITEMS {
            let reply = get_reply(&app_b, &format!("/items/{id}")).await;
            assert!(reply.is_hit(), "shared entry: {}", reply.cache_status());
        }
        assert_eq!(origin_b.get(), 0);

        // One tag: only its entry goes, at once on A.
        cache_a.invalidate(["item:5"]).await.unwrap();
        assert_eq!(
            owner.int(&["HEXISTS", "{cl}:tags", "h:item:5"]),
            1,
            "stamp recorded on the owner"
        );
        let app = app_b.clone();
        eventually("B sees item:5 invalidated", move || {
            let app = app.clone();
            async move { !get_reply(&app, "/items/5").await.is_hit() }
        })
        .await;
        for id in (0..ITEMS).filter(|id| *id != 5) {
            assert!(get_reply(&app_a, &format!("/items/{id}")).await.is_hit());
        }

        // The shared tag: every entry on every master goes.
        cache_a.invalidate(["items"]).await.unwrap();
        for id in 0..ITEMS {
            let reply = get_reply(&app_a, &format!("/items/{id}")).await;
            assert_eq!(reply.text(), format!("item {id}"));
            assert!(!reply.is_hit(), "item {id}: {}", reply.cache_status());
        }
        // Refilled by A after the invalidation: valid everywhere.
        for id in 0..ITEMS {
            wait_for_hit(&app_b, &format!("/items/{id}")).await;
        }
        assert_eq!(origin_a.get(), 2 * ITEMS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_stamps_come_from_one_clock() {
    backstop(async {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let store = cluster_store(cluster.urls(), "clk").await;
        use tagcache::Store;
        let mut last = store.fill_stamp().await.unwrap();
        for i in 0..50 {
            let next = if i % 2 == 0 {
                store.fill_stamp().await.unwrap()
            } else {
                store
                    .invalidate(&[format!("t{i}").into()], tagcache::InvalidationMode::Hard)
                    .await
                    .unwrap()
            };
            assert!(next > last, "stamps strictly increase");
            last = next;
        }
        // Losing the clock key does not send stamps backwards.
        let owner = cluster.owner_of("{clk}:clock");
        assert_eq!(owner.cmd_str(&["DEL", "{clk}:clock"]), Resp::Int(1));
        assert!(store.fill_stamp().await.unwrap() > last);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_while_the_cluster_is_down_serves_from_origin() {
    backstop(async {
        // Two loopback ports with nothing listening.
        let urls: Vec<String> = (0..2)
            .map(|_| {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                format!("redis://127.0.0.1:{port}")
            })
            .collect();
        let store = RedisStore::builder(urls)
            .cluster(true)
            .namespace("down")
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(200))
            .build()
            .await
            .expect("fail-open: a store even without the cluster");
        assert!(!store.is_in_sync());
        let cache = Cache::new(store);
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());
        for _ in 0..3 {
            let reply = get_reply(&app, "/items/1").await;
            assert_eq!(reply.text(), "item 1");
            assert!(
                reply.cache_status().contains("store-error"),
                "{}",
                reply.cache_status()
            );
        }
        assert_eq!(origin.get(), 3);
        assert!(cache.invalidate(["item:1"]).await.is_err());
    })
    .await;
}

/// Runs each case under the backstop, catching its panic, so every failing
/// case is named; `$current` names the case running.
macro_rules! run_each {
    (($make:expr, $failures:expr, $current:expr) $($module:ident :: $case:ident),* $(,)?) => {
        $(
            let name = concat!(stringify!($module), "::", stringify!($case));
            println!("[redis-cluster] {name}");
            *$current.lock().unwrap() = name;
            // Boxed: the cases run in one future, which would otherwise hold
            // the state of every case (debug builds do not overlap them)
            // and outgrow the test thread's stack.
            let case = within_for(
                BACKSTOP,
                format!("case {name} never finished"),
                Box::pin(suites::$module::$case($make)),
            );
            let outcome = AssertUnwindSafe(case).catch_unwind().await;
            if outcome.is_err() {
                $failures.push(name);
            }
        )*
    };
}

/// The cases run one after another, each under the backstop: the whole run
/// has a longer one, so that a few hung cases are each named as failing.
const ALL_CASES_BACKSTOP: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_agnostic_suites_on_the_cluster() {
    let current = Mutex::new("none yet");
    let what = Lazy(|| {
        let running = current.lock().unwrap();
        format!("the suites on the cluster never finished (running case {running})")
    });
    within_for(ALL_CASES_BACKSTOP, what, async {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let urls = cluster.urls();
        let next = Arc::new(AtomicUsize::new(0));
        let make = move || {
            let urls = urls.clone();
            let n = next.fetch_add(1, Ordering::SeqCst);
            async move { Cache::new(cluster_store(urls, &format!("suite{n}")).await) }
        };
        let make: &dyn suites::MakeCache = &make;
        let mut failures: Vec<&str> = Vec::new();
        with_cases!(run_each!(make, failures, current));
        assert!(failures.is_empty(), "failing cases: {failures:?}");
    })
    .await;
}
