//! `RedisStore` against a real single `redis-server` (started per test on a
//! free port; skipped with a `SKIP:` line when Redis is not installed).
#![cfg(feature = "redis")]

#[macro_use]
#[allow(unused_macros)]
mod suites;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use tagcache::store::redis::codec;
use tagcache::{Cache, RedisStore, Store};

use support::apps::{items_app, Stream, BACK, DOWN, UP};
use support::deadline::{backstop, eventually};
use support::harness::{get_reply, wait_for_hit, Counter};
use support::redis_server::{RedisServer, Resp};
use support::stores::{redis_store, writes_answered};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_values_are_misses_and_get_overwritten() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = redis_store(&server.url(), "garbage").await;
        let cache = Cache::new(store.clone());
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());

        let first = get_reply(&app, "/items/1").await;
        assert_eq!(first.text(), "item 1");
        wait_for_hit(&app, "/items/1").await;
        assert_eq!(origin.get(), 1);
        writes_answered(&store).await;
        let key = server.only_entry_key("garbage");
        assert_eq!(key.len(), "garbage:e:".len() + 32, "fixed-length key");
        let valid = server.raw_value(&key);
        assert_eq!(valid[0], codec::FORMAT_VERSION);
        assert!(codec::decode(valid.clone().into()).is_ok());

        let mut wrong_version = valid.clone();
        wrong_version[0] = 99;
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"definitely not an entry \x00\xff\xfe".to_vec()),
            ("wrong version", wrong_version),
            ("truncated", valid[..valid.len() / 2].to_vec()),
            ("one byte short", valid[..valid.len() - 1].to_vec()),
            ("empty", Vec::new()),
        ];
        for (i, (what, raw)) in variants.into_iter().enumerate() {
            // The fill's SET must be fully answered first: while it is in
            // flight, this instance reads its own write, not what another
            // client puts in Redis meanwhile.
            writes_answered(&store).await;
            let corrupt_before = store.corrupt_entries();
            assert_eq!(server.cmd(&[b"SET", &key, &raw]), Resp::Simple("OK".into()));
            let reply = get_reply(&app, "/items/1").await;
            assert_eq!(reply.status, StatusCode::OK, "{what}");
            assert_eq!(reply.text(), "item 1", "{what}");
            assert!(!reply.is_hit(), "{what}: {}", reply.cache_status());
            assert_eq!(origin.get(), 2 + i, "{what}: the origin answered");
            // Counted (once per read that met it: the lookup, and the recheck
            // the leader of a fill makes).
            assert!(store.corrupt_entries() > corrupt_before, "{what}: counted");
            // The fill overwrote the bad value with a good one: hits resume.
            wait_for_hit(&app, "/items/1").await;
            assert_eq!(origin.get(), 2 + i, "{what}: no origin call after the fill");
            let now = server.raw_value(&key);
            assert!(codec::decode(now.into()).is_ok(), "{what}: overwritten");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_at_entry_key_is_a_store_error_then_overwritten() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = redis_store(&server.url(), "wrongtype").await;
        let cache = Cache::new(store.clone());
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());
        get_reply(&app, "/items/1").await;
        wait_for_hit(&app, "/items/1").await;
        // The fill's SET is in: it can neither be missed by KEYS nor land
        // on top of the hash.
        writes_answered(&store).await;
        let key = server.only_entry_key("wrongtype");
        server.cmd(&[b"DEL", &key]);
        assert_eq!(server.cmd(&[b"HSET", &key, b"f", b"v"]), Resp::Int(1));
        let reply = get_reply(&app, "/items/1").await;
        assert_eq!(reply.text(), "item 1");
        assert!(
            reply.cache_status().contains("store-error"),
            "{}",
            reply.cache_status()
        );
        wait_for_hit(&app, "/items/1").await;
        assert_eq!(origin.get(), 2);
        let stats = cache.stats();
        assert!(stats.routes["items"].store_errors >= 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_costs_exactly_one_get() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = redis_store(&server.url(), "onecmd").await;
        let cache = Cache::new(store.clone());
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());
        get_reply(&app, "/items/7").await;
        wait_for_hit(&app, "/items/7").await;
        // The fill's SET must be in before the first reading, or it is
        // counted between the two.
        writes_answered(&store).await;

        const HITS: u64 = 50;
        let before = server.command_calls();
        for _ in 0..HITS {
            let reply = get_reply(&app, "/items/7").await;
            assert!(reply.is_hit(), "{}", reply.cache_status());
            assert_eq!(reply.text(), "item 7");
        }
        let after = server.command_calls();
        assert_eq!(origin.get(), 1);
        let mut deltas: HashMap<String, u64> = HashMap::new();
        for (name, calls) in &after {
            let delta = calls - before.get(name).copied().unwrap_or(0);
            // `info` is the measurement itself; `ping` the feed's keep-alive.
            if delta > 0 && name != "info" && name != "ping" {
                deltas.insert(name.clone(), delta);
            }
        }
        assert_eq!(
            deltas,
            HashMap::from([("get".to_owned(), HITS)]),
            "commands sent for {HITS} hits"
        );
    })
    .await;
}

/// A miss costs four round trips, as it did before leases: the lookup
/// (`GET`), the leader's second look that also takes the key's lease, the
/// fill stamp, and the script that stores the entry and releases the
/// lease. Nobody waited, so nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_costs_four_round_trips_and_publishes_nothing() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = redis_store(&server.url(), "misscmd").await;
        let cache = Cache::new(store.clone());
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());
        let published = || server.command_calls().get("publish").copied();
        let published_before = published();
        server.log_client_commands();
        let reply = get_reply(&app, "/items/7").await;
        assert!(
            reply.cache_status().contains("fwd=uri-miss"),
            "{}",
            reply.cache_status()
        );
        writes_answered(&store).await;
        assert_eq!(origin.get(), 1);
        // What this instance sent about the key (entries and leases are
        // `misscmd:e:…`) and for the fill stamp (the `{misscmd}:clock`).
        let sent: Vec<String> = server
            .client_commands()
            .into_iter()
            .filter(|args| {
                args.iter()
                    .any(|arg| arg.contains("misscmd:e:") || arg == "{misscmd}:clock")
            })
            .map(|args| {
                let key_at = if args[0].eq_ignore_ascii_case("evalsha") {
                    3
                } else {
                    1
                };
                format!(
                    "{} {}",
                    args[0].to_lowercase(),
                    args[key_at].split(':').nth(1).unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            sent,
            ["get e", "evalsha e", "evalsha clock", "evalsha e"],
            "lookup, lease, stamp, store-and-release"
        );
        assert_eq!(published(), published_before, "nobody waited: no message");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_expire_by_px_within_retention_and_max_entry_life() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::builder(server.url())
            .namespace("px")
            .response_timeout(Duration::from_secs(2))
            .max_entry_life(Duration::from_secs(60))
            .build()
            .await
            .unwrap();
        let cache = Cache::new(store.clone());
        let app = items_app(&cache, Counter::default());
        get_reply(&app, "/items/1").await;
        wait_for_hit(&app, "/items/1").await;
        writes_answered(&store).await;
        let key = String::from_utf8(server.only_entry_key("px")).unwrap();
        let pttl = server.int(&["PTTL", &key]);
        // TTL 300 s capped by max_entry_life 60 s.
        assert!(pttl > 0 && pttl <= 60_000, "PTTL {pttl}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_reach_other_instances() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store_a = redis_store(&server.url(), "shared").await;
        let cache_a = Cache::new(store_a.clone());
        let cache_b = Cache::new(redis_store(&server.url(), "shared").await);
        let (origin_a, origin_b) = (Counter::default(), Counter::default());
        let app_a = items_app(&cache_a, origin_a.clone());
        let app_b = items_app(&cache_b, origin_b.clone());

        // A fills; B is answered from the shared entry.
        for id in 1..=3 {
            get_reply(&app_a, &format!("/items/{id}")).await;
            wait_for_hit(&app_a, &format!("/items/{id}")).await;
            // A hit on A may be its own write still on its way to Redis.
            writes_answered(&store_a).await;
            let reply = get_reply(&app_b, &format!("/items/{id}")).await;
            assert!(reply.is_hit(), "{}", reply.cache_status());
        }
        assert_eq!((origin_a.get(), origin_b.get()), (3, 0));

        // Invalidated through A: A never serves it again, at once ...
        cache_a.invalidate(["item:1"]).await.unwrap();
        // ... and B learns it from the feed (A does not refill meanwhile, so
        // only B's view can turn the old entry into a miss).
        let app = app_b.clone();
        eventually("B sees item:1 invalidated", move || {
            let app = app.clone();
            async move {
                let reply = get_reply(&app, "/items/1").await;
                assert_eq!(reply.text(), "item 1");
                if reply.is_hit() {
                    return false;
                }
                assert!(
                    reply.cache_status().contains("invalidated"),
                    "{}",
                    reply.cache_status()
                );
                true
            }
        })
        .await;
        assert_eq!(origin_b.get(), 1);
        // The other items are untouched on both.
        assert!(get_reply(&app_b, "/items/2").await.is_hit());
        assert!(get_reply(&app_a, "/items/3").await.is_hit());

        // Soft invalidation through B reaches A (no stale window: a miss).
        cache_b.invalidate_soft(["item:2"]).await.unwrap();
        let app = app_a.clone();
        eventually("A sees item:2 soft-invalidated", move || {
            let app = app.clone();
            async move { !get_reply(&app, "/items/2").await.is_hit() }
        })
        .await;

        // purge_all through B reaches A.
        wait_for_hit(&app_a, "/items/3").await;
        cache_b.purge_all().await.unwrap();
        let app = app_a.clone();
        eventually("A sees the purge", move || {
            let app = app.clone();
            async move { !get_reply(&app, "/items/3").await.is_hit() }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_loads_entries_and_stamps() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        {
            let store = redis_store(&server.url(), "restart").await;
            let cache = Cache::new(store.clone());
            let app = items_app(&cache, Counter::default());
            for id in ["kept", "gone"] {
                get_reply(&app, &format!("/items/{id}")).await;
                wait_for_hit(&app, &format!("/items/{id}")).await;
            }
            writes_answered(&store).await;
            cache.invalidate(["item:gone"]).await.unwrap();
            // Dropped here: the next instance starts from Redis alone.
        }
        assert_eq!(
            server.entry_keys("restart").len(),
            2,
            "both entries still stored"
        );

        let store = redis_store(&server.url(), "restart").await;
        assert!(store.is_in_sync());
        let cache = Cache::new(store);
        let origin = Counter::default();
        let app = items_app(&cache, origin.clone());
        let kept = get_reply(&app, "/items/kept").await;
        assert!(kept.is_hit(), "{}", kept.cache_status());
        let gone = get_reply(&app, "/items/gone").await;
        assert!(
            !gone.is_hit(),
            "invalidated before the restart: {}",
            gone.cache_status()
        );
        assert!(
            gone.cache_status().contains("invalidated"),
            "{}",
            gone.cache_status()
        );
        assert_eq!(origin.get(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_origin_while_redis_is_down_and_resumes_after() {
    backstop(async {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::builder(server.url())
            .namespace("fault")
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(300))
            .build()
            .await
            .unwrap();
        let cache = Cache::new(store.clone());
        let app = items_app(&cache, Counter::default());
        for id in 0..4 {
            get_reply(&app, &format!("/items/{id}")).await;
            wait_for_hit(&app, &format!("/items/{id}")).await;
        }
        // No fill may still be on its way when Redis goes: this instance
        // would answer its own write meanwhile.
        writes_answered(&store).await;
        let stream = Stream::start(app.clone());
        stream.wait_for(20).await;
        assert!(stream.hits_in(UP) > 0);

        server.stop();
        stream.phase.store(DOWN, Ordering::SeqCst);
        stream.wait_for(20).await;

        server.restart();
        stream.phase.store(BACK, Ordering::SeqCst);
        // Same app, same store: hits come back once it has reconnected.
        let log = stream.log.clone();
        eventually("hits resume after the restart", move || {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .iter()
                    .any(|(p, s)| *p == BACK && s.contains("; hit"))
            }
        })
        .await;
        assert!(store.is_in_sync());
        let log = stream.finish().await;

        let down: Vec<&String> = log
            .iter()
            .filter(|(p, _)| *p == DOWN)
            .map(|(_, s)| s)
            .collect();
        assert!(down.len() >= 20);
        for status in down {
            assert!(
                !status.contains("; hit"),
                "served from a dead Redis: {status}"
            );
            assert!(
                status.contains("store-error") || status.contains("miss"),
                "{status}"
            );
        }
        let stats = cache.stats();
        assert!(stats.routes["items"].store_errors > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_times_out_and_recovers() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::builder(server.url())
            .namespace("frozen")
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(200))
            .feed_ping_interval(Duration::from_millis(200))
            .build()
            .await
            .unwrap();
        let cache = Cache::new(store.clone());
        let app = items_app(&cache, Counter::default());
        get_reply(&app, "/items/1").await;
        wait_for_hit(&app, "/items/1").await;
        // A write still in flight would be answered from this instance's
        // own record instead of failing on the frozen server.
        writes_answered(&store).await;

        server.pause();
        for _ in 0..3 {
            let reply = get_reply(&app, "/items/1").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.text(), "item 1");
            assert!(
                reply.cache_status().contains("store-error"),
                "{}",
                reply.cache_status()
            );
        }
        // By now the circuit breaker is open: calls fail at once, without
        // asking the frozen server.
        eventually("the breaker opens", || async { store.is_breaker_open() }).await;
        assert!(matches!(
            store.get(tagcache::KeyHash(1)).now_or_later(),
            Ok(Err(e)) if e.kind() == tagcache::StoreErrorKind::CircuitOpen
        ));
        // Invalidations fail too, and say so; they are queued, and this
        // instance counts them at once.
        let error = cache.invalidate(["item:1"]).await.unwrap_err();
        assert_eq!(error.kind(), tagcache::StoreErrorKind::CircuitOpen);
        assert_eq!(store.queued_invalidations(), 1);
        server.resume();
        eventually("the queued invalidation reaches Redis", || async {
            store.queued_invalidations() == 0
        })
        .await;
        wait_for_hit(&app, "/items/1").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_while_redis_is_down_then_starts_working() {
    backstop(async {
        let Some(mut server) = RedisServer::stopped() else {
            return;
        };
        let store = RedisStore::builder(server.url())
            .namespace("late")
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(300))
            .build()
            .await
            .expect("fail-open: a store even without Redis");
        assert!(!store.is_in_sync());
        let cache = Cache::new(store.clone());
        let app = items_app(&cache, Counter::default());
        let reply = get_reply(&app, "/items/1").await;
        assert_eq!(reply.text(), "item 1");
        assert!(!reply.is_hit());
        assert!(
            reply.cache_status().contains("store-error"),
            "{}",
            reply.cache_status()
        );

        server.restart();
        let app2 = app.clone();
        eventually("hits once Redis is up", move || {
            let app = app2.clone();
            async move { get_reply(&app, "/items/1").await.is_hit() }
        })
        .await;
        assert!(store.is_in_sync());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_heartbeats_keep_the_subscription() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = RedisStore::builder(server.url())
            .namespace("keepalive")
            .response_timeout(Duration::from_secs(2))
            .feed_ping_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        let calls = |name: &str| server.command_calls().get(name).copied().unwrap_or(0);
        let subscribes = calls("subscribe");
        assert_eq!(subscribes, 1);
        let beats = calls("publish");
        let server_ref = &server;
        eventually("the quiet feed sends heartbeats", || async move {
            server_ref
                .command_calls()
                .get("publish")
                .copied()
                .unwrap_or(0)
                >= beats + 3
        })
        .await;
        // Heartbeats that come back keep the subscription: no resubscribe,
        // still in sync.
        assert_eq!(calls("subscribe"), subscribes);
        assert!(store.is_in_sync());
    })
    .await;
}

/// An invalidation message this instance cannot read might be one it
/// needed: the feed resubscribes and reloads the stamp table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_invalidation_message_reloads_the_view() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let store = redis_store(&server.url(), "garbled").await;
        assert!(store.is_in_sync());
        let subscribes = || {
            server
                .command_calls()
                .get("subscribe")
                .copied()
                .unwrap_or(0)
        };
        let before = subscribes();
        server.cmd_str(&["PUBLISH", "garbled:invalidations", "9|?|not a stamp|"]);
        let (server_ref, store_ref) = (&server, &store);
        eventually("the feed resubscribed and reloaded", || async move {
            server_ref
                .command_calls()
                .get("subscribe")
                .copied()
                .unwrap_or(0)
                > before
                && store_ref.is_in_sync()
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamp_table_is_pruned() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let life = Duration::from_millis(200);
        let store = RedisStore::builder(server.url())
            .namespace("prune")
            .response_timeout(Duration::from_secs(2))
            .max_entry_life(life)
            .build()
            .await
            .unwrap();
        let cache = Cache::new(store);
        let tags: Vec<String> = (0..500).map(|i| format!("tag:{i}")).collect();
        cache.invalidate(&tags).await.unwrap();
        cache.invalidate_soft(["soft:0"]).await.unwrap();
        assert_eq!(server.int(&["HLEN", "{prune}:tags"]), 501);
        assert_eq!(server.int(&["ZCARD", "{prune}:tagtimes"]), 501);

        // Let every stamp so far age past the longest entry life and the
        // pruning margin (here as long as the life itself): a precondition, not
        // a measurement.
        tokio::time::sleep(life * 3).await;
        // Each invalidation prunes a bounded batch of old stamps.
        let mut calls = 0;
        while server.int(&["HLEN", "{prune}:tags"]) > 10 {
            calls += 1;
            assert!(calls <= 20, "the table does not shrink");
            cache.invalidate([format!("fresh:{calls}")]).await.unwrap();
        }
        assert!(calls >= 5, "pruning is bounded per call ({calls} calls)");
        assert_eq!(
            server.int(&["HLEN", "{prune}:tags"]),
            server.int(&["ZCARD", "{prune}:tagtimes"])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_options_are_rejected() {
    backstop(async {
        for builder in [
            RedisStore::builder("redis://127.0.0.1:1").namespace("a{b}"),
            RedisStore::builder("redis://127.0.0.1:1").namespace(""),
            RedisStore::builder("not a url"),
            RedisStore::builder(["redis://127.0.0.1:1", "redis://127.0.0.1:2"]),
            RedisStore::builder(Vec::<String>::new()),
        ] {
            assert!(builder.build().await.is_err());
        }
    })
    .await;
}

/// Every store-agnostic suite case as its own test (so one failing case
/// neither hides nor disturbs the others), each with a fresh namespace on
/// the module's server.
mod suite {
    use super::*;

    /// A factory of caches over one server, a fresh namespace per cache.
    /// Without `redis-server` (after the `SKIP:` line) it hands out
    /// in-memory caches, so the cases still run but prove nothing about
    /// Redis.
    fn redis_caches() -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Cache>>> {
        let server = RedisServer::start();
        let next = AtomicUsize::new(0);
        move || {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let url = server.as_ref().map(RedisServer::url);
            Box::pin(async move {
                match url {
                    Some(url) => Cache::new(redis_store(&url, &format!("suite{n}")).await),
                    None => Cache::default(),
                }
            })
        }
    }

    store_suite!(redis_caches());
}
