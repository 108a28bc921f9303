//! Redis misbehaving: out of memory, cut off, connections killed under
//! load, values out of range written by someone else. Whatever happens, no
//! instance serves an entry an invalidation it made (or heard of) has
//! covered: misses, never stale hits. Each test starts its own
//! `redis-server`, and a loopback proxy where it needs to cut the link.
#![cfg(feature = "redis")]

mod support;

#[path = "../examples/soak/proxy.rs"]
#[allow(dead_code)]
mod proxy;
#[path = "../examples/soak/app.rs"]
#[allow(dead_code)]
mod soak_app;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::Request;
use tagcache::{Cache, RedisStore};

use proxy::Proxy;
use soak_app::{router, version_of, Db, Floor};
use support::deadline::{backstop, eventually, within};
use support::harness::{get_reply, send, Reply};
use support::redis_server::{RedisCluster, RedisServer, Resp};
use support::stores::redis_store;

fn put(uri: &str) -> Request<Body> {
    Request::put(uri).body(Body::empty()).unwrap()
}

fn version(reply: &Reply) -> u64 {
    version_of(&reply.text()).unwrap_or_else(|| panic!("no version in {:?}", reply.text()))
}

/// An instance of the app: its cache, its store and its router.
struct Instance {
    store: RedisStore,
    app: Router,
}

impl Instance {
    fn new(store: RedisStore, db: &Arc<Db>) -> Instance {
        let cache = Cache::new(store.clone());
        Instance {
            app: router(&cache, db.clone()),
            store,
        }
    }

    async fn get(&self, id: usize) -> Reply {
        get_reply(&self.app, &format!("/items/{id}")).await
    }

    async fn put(&self, id: usize) -> Reply {
        send(&self.app, put(&format!("/items/{id}"))).await
    }
}

/// Waits until item `id` is a hit on both instances (once one of them
/// filled it).
async fn hit_on_both(a: &Instance, b: &Instance, id: usize) {
    eventually("the entry is a hit on both instances", || async {
        a.get(id).await.is_hit() && b.get(id).await.is_hit()
    })
    .await;
}

/// Waits until item `id` reads as `version` on `instance`; `what` says
/// what never happened otherwise.
async fn reads_version(instance: &Instance, id: usize, version_wanted: u64, what: &str) {
    eventually(what, || async {
        version(&instance.get(id).await) == version_wanted
    })
    .await;
}

/// Waits until every item is a hit on both instances, with the latest
/// version on the writer `a`.
async fn hits_resume(a: &Instance, b: &Instance, floor: &Floor, items: usize, after: &str) {
    eventually(format!("hits resume on both instances {after}"), || async {
        let mut all = true;
        for id in 0..items {
            let (ra, rb) = (a.get(id).await, b.get(id).await);
            all &= ra.is_hit() && rb.is_hit() && version(&ra) >= floor.at_least(id);
        }
        all
    })
    .await;
}

/// Sets its flag when dropped.
struct Stop(Arc<AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A store with short timeouts, so faults show quickly.
async fn quick_store(url: &str, ns: &str) -> RedisStore {
    RedisStore::builder(url)
        .namespace(ns)
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .feed_ping_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("store builds")
}

/// Redis refuses writes for want of memory (`maxmemory` with `noeviction`)
/// while an item changes: the invalidation is still recorded (it is a few
/// bytes, allowed to run out of memory) and reaches the other instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_while_redis_is_out_of_memory_is_recorded() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let db = Db::new(4);
        let a = Instance::new(redis_store(&server.url(), "oom").await, &db);
        let b = Instance::new(redis_store(&server.url(), "oom").await, &db);
        a.get(1).await;
        hit_on_both(&a, &b, 1).await;

        server.cmd_str(&["CONFIG", "SET", "maxmemory", "1"]);
        let written = a.put(1).await;
        assert_eq!(version(&written), 1);
        // Entries cannot be stored meanwhile, but reads are answered.
        assert_eq!(version(&a.get(1).await), 1);
        server.cmd_str(&["CONFIG", "SET", "maxmemory", "0"]);

        assert_eq!(a.store.queued_invalidations(), 0, "Redis took it at once");
        assert_eq!(version(&a.get(1).await), 1);
        reads_version(&b, 1, 1, "the other instance reads the new version").await;
    })
    .await;
}

/// The link to Redis is cut (packets dropped, then connections refused)
/// while an item changes: the writing instance counts the invalidation at
/// once and sends it when the link is back; the other instance then hears
/// of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_partition_is_queued_and_sent_after() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        for (round, cut) in [proxy::Mode::Stall, proxy::Mode::Drop]
            .into_iter()
            .enumerate()
        {
            let ns = format!("partition{round}");
            let link = Proxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
                .await
                .unwrap();
            let db = Db::new(4);
            let a = Instance::new(quick_store(&link.redis_url(), &ns).await, &db);
            let b = Instance::new(redis_store(&server.url(), &ns).await, &db);
            a.get(1).await;
            hit_on_both(&a, &b, 1).await;

            match cut {
                proxy::Mode::Stall => link.stall(),
                _ => link.drop_all(),
            }
            let written = a.put(1).await;
            assert_eq!(version(&written), 1);
            assert_eq!(a.store.queued_invalidations(), 1, "{cut:?}");
            // Never the old version on the writing instance.
            for _ in 0..3 {
                assert_eq!(version(&a.get(1).await), 1, "{cut:?}");
            }

            link.heal();
            eventually("the queued invalidation reaches Redis", || async {
                a.store.queued_invalidations() == 0
            })
            .await;
            reads_version(&b, 1, 1, "the other instance reads the new version").await;
            eventually("the writing instance caches again", || async {
                let reply = a.get(1).await;
                reply.is_hit() && version(&reply) == 1
            })
            .await;
        }
    })
    .await;
}

/// Redis kills the app's connections again and again while items change
/// and are read: no read that starts after a write came back sees an older
/// version on the writing instance, and once the faults stop, the other
/// instance reads every item fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_under_load_never_serve_stale_reads() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        const ITEMS: usize = 4;
        const WRITES: usize = 300;
        const MIN_HITS: u64 = 50;
        let db = Db::new(ITEMS);
        let floor = Floor::new(ITEMS);
        let a = Arc::new(Instance::new(
            quick_store(&server.url(), "kills").await,
            &db,
        ));
        let b = Instance::new(redis_store(&server.url(), "kills").await, &db);
        let done = Arc::new(AtomicBool::new(false));
        // The readers and the killer stop when the test ends, however it
        // ends (a failed assertion must not leave them running).
        let _stop = Stop(done.clone());
        let (reads, hits, stale) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );

        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (a, floor, done) = (a.clone(), floor.clone(), done.clone());
                let (reads, hits, stale) = (reads.clone(), hits.clone(), stale.clone());
                tokio::spawn(async move {
                    let mut n = r;
                    while !done.load(Ordering::SeqCst) {
                        let id = n % ITEMS;
                        n += 1;
                        let at_least = floor.at_least(id);
                        let reply = a.get(id).await;
                        reads.fetch_add(1, Ordering::Relaxed);
                        if reply.is_hit() {
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        if version(&reply) < at_least {
                            stale.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "stale: item {id} {} < {at_least} ({})",
                                reply.text(),
                                reply.cache_status()
                            );
                        }
                        // Pace the readers: with the breaker open a read
                        // never waits on anything, and a task that never
                        // yields would keep its worker (and the timers it
                        // drives) from everything else.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        let killer = {
            let (done, port) = (done.clone(), server.port());
            tokio::task::spawn_blocking(move || {
                let mut n = 0u64;
                while !done.load(Ordering::SeqCst) {
                    n += 1;
                    let kind: &[u8] = if n.is_multiple_of(20) {
                        b"pubsub"
                    } else {
                        b"normal"
                    };
                    let _ = support::redis_server::command_on(
                        port,
                        &[b"CLIENT", b"KILL", b"TYPE", kind],
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        // Write until both enough writes and enough hits happened: a run
        // without hits could not have served a stale one. The killer makes
        // hits rare, so their number is waited for, not assumed.
        within("enough writes and hits under killed connections", async {
            let mut w = 0;
            while w < WRITES || hits.load(Ordering::SeqCst) < MIN_HITS {
                let id = w % ITEMS;
                w += 1;
                let written = a.put(id).await;
                floor.written(id, version(&written));
                // Let reads happen between writes.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        done.store(true, Ordering::SeqCst);
        for reader in readers {
            reader.await.unwrap();
        }
        killer.await.unwrap();

        eventually("every queued invalidation reaches Redis", || async {
            a.store.queued_invalidations() == 0
        })
        .await;
        eventually("both feeds in sync", || async {
            a.store.is_in_sync() && b.store.is_in_sync()
        })
        .await;
        for id in 0..ITEMS {
            let latest = floor.at_least(id);
            assert_eq!(
                version(&b.get(id).await),
                latest,
                "item {id} on the other instance"
            );
            assert_eq!(version(&a.get(id).await), latest, "item {id} on the writer");
        }
        let (reads, hits, stale) = (
            reads.load(Ordering::SeqCst),
            hits.load(Ordering::SeqCst),
            stale.load(Ordering::SeqCst),
        );
        println!("{reads} reads, {hits} hits, {stale} stale under killed connections");
        assert_eq!(stale, 0, "stale reads on the writing instance");
        assert!(
            reads > 100 && hits >= MIN_HITS,
            "the test read too little: {reads} reads, {hits} hits"
        );
    })
    .await;
}

/// 2^53: past it Lua's numbers (doubles) and Rust's integers disagree.
const EXACT_LIMIT: u64 = 1 << 53;

/// Values out of range written into the namespace's keys by someone else
/// (the four that used to stop caching for good: a clock at `u64::MAX`, a
/// clock past Lua's exact integers, a published stamp at `u64::MAX`, a
/// floor at `u64::MAX`). Each is repaired or rejected, never adopted: an
/// invalidation right after it still works on both instances, and caching
/// resumes by itself, without a restart.
async fn survives_poison(ns: &str, poison: impl FnOnce(&RedisServer)) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new(4);
    let a = Instance::new(quick_store(&server.url(), ns).await, &db);
    let b = Instance::new(quick_store(&server.url(), ns).await, &db);
    a.get(1).await;
    hit_on_both(&a, &b, 1).await;

    poison(&server);

    let written = a.put(1).await;
    assert_eq!(version(&written), 1);
    assert_eq!(version(&a.get(1).await), 1, "the writer reads its write");
    reads_version(&b, 1, 1, "the other instance reads the new version").await;
    eventually("both instances cache again", || async {
        let (ra, rb) = (a.get(1).await, b.get(1).await);
        ra.is_hit() && rb.is_hit() && version(&ra) == 1 && version(&rb) == 1
    })
    .await;
    // And a second change is seen too: stamps still advance.
    let written = a.put(1).await;
    assert_eq!(version(&written), 2);
    assert_eq!(version(&a.get(1).await), 2);
    reads_version(&b, 1, 2, "the other instance reads the second change").await;
    let clock = server.cmd_str(&["GET", &format!("{{{ns}}}:clock")]).text();
    let clock: u64 = clock.parse().unwrap_or_else(|_| panic!("clock {clock:?}"));
    assert!(clock < EXACT_LIMIT, "the clock was left at {clock}");
    let Resp::Array(table) = server.cmd_str(&["HGETALL", &format!("{{{ns}}}:tags")]) else {
        panic!("the stamp table is not a hash");
    };
    for pair in table.chunks(2) {
        let (field, value) = (pair[0].text(), pair[1].text());
        let value: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{field} = {value:?}"));
        assert!(value < EXACT_LIMIT, "{field} was left at {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_at_u64_max_is_repaired() {
    backstop(survives_poison("poison-max-clock", |server| {
        server.cmd_str(&["SET", "{poison-max-clock}:clock", "18446744073709551615"]);
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_past_exact_integers_is_repaired() {
    backstop(survives_poison("poison-inexact-clock", |server| {
        server.cmd_str(&["SET", "{poison-inexact-clock}:clock", "9007199254740993"]);
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_stamp_out_of_range_is_rejected() {
    backstop(survives_poison("poison-message", |server| {
        let subscribers = server.int(&[
            "PUBLISH",
            "poison-message:invalidations",
            "1|a|18446744073709551615|",
        ]);
        assert_eq!(subscribers, 2, "both feeds heard the message");
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floor_out_of_range_is_repaired_on_resync() {
    backstop(survives_poison("poison-floor", |server| {
        server.cmd_str(&[
            "HSET",
            "{poison-floor}:tags",
            "floor",
            "18446744073709551615",
        ]);
        // Make both feeds reload the table.
        server.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }))
    .await;
}

/// The stamp rule depends on `max_entry_life` (stamps older than it are
/// pruned): instances sharing a namespace must agree on it. The first one
/// records it; one configured differently refuses to build, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_another_max_entry_life_is_refused() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let build = |life: u64| {
            RedisStore::builder(server.url())
                .namespace("life")
                .max_entry_life(Duration::from_secs(life))
                .build()
        };
        let first = build(3600).await.expect("the first instance builds");
        build(3600).await.expect("an instance that agrees builds");
        let error = build(60)
            .await
            .expect_err("an instance that disagrees is refused");
        let message = error.to_string();
        assert!(
            message.contains("max_entry_life") && message.contains("same"),
            "{message}"
        );
        drop(first);
        // Another namespace is free to choose.
        RedisStore::builder(server.url())
            .namespace("life-short")
            .max_entry_life(Duration::from_secs(60))
            .build()
            .await
            .expect("another namespace builds");
    })
    .await;
}

/// Makes `replica` a replica of `master` and waits until it has the
/// master's whole dataset.
async fn replicate(replica: &RedisServer, master: &RedisServer) {
    let port = master.port().to_string();
    replica.cmd_str(&["REPLICAOF", "127.0.0.1", &port]);
    eventually("the replica is in sync with its master", || async {
        let info = replica.cmd_str(&["INFO", "replication"]).text();
        info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0")
    })
    .await;
}

/// A master fails after recording an invalidation its replica never got
/// (the replica had lost its link), and the replica is promoted: with `wait_for_replicas(1)` the
/// writing instance saw that the replica did not confirm it, kept it, and
/// sends it again to the new master, so an instance that starts afterwards
/// (and loads the stamp table from the new master) does not serve the entry
/// it covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_a_promoted_replica_missed_is_sent_again() {
    backstop(async {
        let (Some(mut master), Some(replica)) = (RedisServer::start(), RedisServer::start()) else {
            return;
        };
        replicate(&replica, &master).await;
        let db = Db::new(4);
        let store = RedisStore::builder(master.url())
            .namespace("failover")
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300))
            .wait_for_replicas(1)
            .build()
            .await
            .expect("store builds");
        let a = Instance::new(store, &db);
        a.get(1).await;
        eventually("the entry is a hit", || async { a.get(1).await.is_hit() }).await;
        // The entry is on the replica too.
        assert_eq!(master.int(&["WAIT", "1", "5000"]), 1);

        // The replica loses its link (and with it, everything written from
        // now on) just before the item changes.
        replica.cmd_str(&["REPLICAOF", "NO", "ONE"]);
        let written = a.put(1).await;
        assert_eq!(version(&written), 1);
        assert_eq!(
            a.store.queued_invalidations(),
            1,
            "an invalidation no replica confirmed is kept"
        );
        assert_eq!(version(&a.get(1).await), 1);

        // Failover: the master dies, the replica (with the old entry but
        // without the invalidation) is promoted and takes over the
        // master's address.
        master.stop();
        master.restart();
        replicate(&master, &replica).await;
        master.cmd_str(&["REPLICAOF", "NO", "ONE"]);
        replicate(&replica, &master).await;

        eventually("the kept invalidation reaches the new master", || async {
            a.store.queued_invalidations() == 0
        })
        .await;
        // A new instance, which only knows what the new master holds. (The
        // writer is not asked first: its read would overwrite the entry.)
        let c = Instance::new(quick_store(&master.url(), "failover").await, &db);
        eventually("the new instance is in sync", || async {
            c.store.is_in_sync()
        })
        .await;
        let reply = c.get(1).await;
        assert_eq!(version(&reply), 1, "{}", reply.cache_status());
        assert_eq!(version(&a.get(1).await), 1);
    })
    .await;
}

/// Reads and writes under load on two instances over a Redis Cluster with
/// a replica per master, and what happened to them.
#[derive(Default)]
struct Load {
    reads: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
    failed: AtomicU64,
    /// Read latencies in µs.
    latencies: std::sync::Mutex<Vec<u64>>,
}

impl Load {
    /// Prints the figures and asserts: no failed request, no stale read on
    /// the writer, and enough traffic to mean something.
    fn check(&self, fault: &str, resumed: Duration) {
        let (reads, hits, stale, failed) = (
            self.reads.load(Ordering::SeqCst),
            self.hits.load(Ordering::SeqCst),
            self.stale.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        );
        println!(
            "{fault}: {reads} reads, {hits} hits, {stale} stale, {failed} failed; hits back {:.2} s after the fault; read p99 {:.1} ms",
            resumed.as_secs_f64(),
            self.p99_ms()
        );
        assert_eq!(failed, 0, "{fault}: failed requests");
        assert_eq!(stale, 0, "{fault}: stale reads on the writing instance");
        assert!(
            hits > 0 && reads > 100,
            "{fault}: {reads} reads, {hits} hits"
        );
    }

    fn p99_ms(&self) -> f64 {
        let mut all = self.latencies.lock().unwrap().clone();
        all.sort_unstable();
        let at = (all.len() * 99 / 100).min(all.len().saturating_sub(1));
        all.get(at).copied().unwrap_or(0) as f64 / 1000.0
    }
}

/// Readers on both instances (two each) and a writer on the first, until
/// stopped; reads on the writer are checked against what it wrote.
struct Traffic {
    load: Arc<Load>,
    done: Arc<AtomicBool>,
    _stop: Stop,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(a: &Arc<Instance>, b: &Arc<Instance>, floor: &Arc<Floor>, items: usize) -> Traffic {
        let load = Arc::new(Load::default());
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks: Vec<_> = [a.clone(), a.clone(), b.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(r, instance)| {
                let (load, floor, done) = (load.clone(), floor.clone(), done.clone());
                let writer = r < 2;
                tokio::spawn(async move {
                    let mut n = r;
                    while !done.load(Ordering::SeqCst) {
                        let id = n % items;
                        n += 1;
                        let at_least = floor.at_least(id);
                        let started = std::time::Instant::now();
                        let reply = instance.get(id).await;
                        let took = started.elapsed().as_micros() as u64;
                        load.latencies.lock().unwrap().push(took);
                        load.reads.fetch_add(1, Ordering::Relaxed);
                        if !reply.status.is_success() {
                            load.failed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            load.hits
                                .fetch_add(reply.is_hit() as u64, Ordering::Relaxed);
                            if writer && version(&reply) < at_least {
                                load.stale.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        let (a, writes_load, floor, writes_done) =
            (a.clone(), load.clone(), floor.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = 0;
            while !writes_done.load(Ordering::SeqCst) {
                let id = w % items;
                w += 1;
                let written = a.put(id).await;
                if written.status.is_success() {
                    floor.written(id, version(&written));
                } else {
                    writes_load.failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        Traffic {
            load,
            _stop: Stop(done.clone()),
            done,
            tasks,
        }
    }

    async fn stop(self) -> Arc<Load> {
        self.done.store(true, Ordering::SeqCst);
        for task in self.tasks {
            within("a reader or the writer stops", task).await.unwrap();
        }
        self.load
    }
}

/// The master that owns the namespace's clock (and stamp table) is killed
/// while two instances serve reads and one writes: a replica takes over,
/// no request fails, the writer never reads an old version, and hits come
/// back on both instances by themselves. Prints the time until they do and
/// the p99 read latency over the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_failover_under_load() {
    backstop(async {
        let Some(mut cluster) = RedisCluster::start_with(1, 1000) else {
            return;
        };
        const ITEMS: usize = 4;
        let db = Db::new(ITEMS);
        let floor = Floor::new(ITEMS);
        let store = |_: ()| {
            RedisStore::builder(cluster.urls())
                .cluster(true)
                .namespace("fo")
                .connect_timeout(Duration::from_millis(300))
                .response_timeout(Duration::from_millis(300))
                .feed_ping_interval(Duration::from_millis(200))
                .build()
        };
        let a = Arc::new(Instance::new(store(()).await.unwrap(), &db));
        let b = Arc::new(Instance::new(store(()).await.unwrap(), &db));
        for id in 0..ITEMS {
            a.get(id).await;
        }
        eventually("every item is a hit on both instances", || async {
            let mut all = true;
            for id in 0..ITEMS {
                all &= a.get(id).await.is_hit() && b.get(id).await.is_hit();
            }
            all
        })
        .await;

        let traffic = Traffic::start(&a, &b, &floor, ITEMS);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let owner = cluster.owner_of("{fo}:clock").port();
        let owner_id = cluster
            .owner_of("{fo}:clock")
            .cmd_str(&["CLUSTER", "MYID"])
            .text();
        let killed = std::time::Instant::now();
        cluster
            .nodes
            .iter_mut()
            .find(|node| node.port() == owner)
            .unwrap()
            .stop();
        // Its replica takes over at once (`TAKEOVER`: no election). The
        // cluster's own failure detection and election take a few node
        // timeouts more, and are Redis's business; what is measured here
        // is how the instances get through the change of master.
        let replica = cluster
            .nodes
            .iter()
            .filter(|node| node.is_running())
            .find(|node| {
                node.cmd_str(&["CLUSTER", "NODES"])
                    .text()
                    .lines()
                    .any(|line| line.contains("myself,slave") && line.contains(&owner_id))
            })
            .expect("the killed master had a replica");
        replica.cmd_str(&["CLUSTER", "FAILOVER", "TAKEOVER"]);
        // Hits are back once both instances answer every item from the
        // cache again, with the latest version on the writer.
        hits_resume(&a, &b, &floor, ITEMS, "after the failover").await;
        let resumed = killed.elapsed();
        let load = traffic.stop().await;
        let new_owner = cluster.owner_of("{fo}:clock").port();
        assert_ne!(new_owner, owner, "a replica took over the slot");

        load.check("cluster failover", resumed);
    })
    .await;
}

/// A single Redis frozen (`SIGSTOP`) for 3 s under load: no request fails
/// (the breaker serves them from the origin), the writer never reads an old
/// version, and hits come back by themselves after `SIGCONT`. Prints the
/// time until they do and the p99 read latency over the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_redis_under_load() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        const ITEMS: usize = 4;
        let db = Db::new(ITEMS);
        let floor = Floor::new(ITEMS);
        let a = Arc::new(Instance::new(
            quick_store(&server.url(), "frozen").await,
            &db,
        ));
        let b = Arc::new(Instance::new(
            quick_store(&server.url(), "frozen").await,
            &db,
        ));
        for id in 0..ITEMS {
            a.get(id).await;
        }
        let traffic = Traffic::start(&a, &b, &floor, ITEMS);
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.pause();
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.resume();
        let resumed_at = std::time::Instant::now();
        hits_resume(&a, &b, &floor, ITEMS, "after SIGCONT").await;
        let resumed = resumed_at.elapsed();
        traffic.stop().await.check("redis frozen 3 s", resumed);
    })
    .await;
}

/// An invalidation made from code whose caller stops waiting (a timeout
/// around it, a cancelled task) while Redis is cut off is still queued,
/// counted at once and sent when the link is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_whose_caller_gave_up_is_still_sent() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let link = Proxy::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
            .await
            .unwrap();
        let db = Db::new(4);
        let store = quick_store(&link.redis_url(), "gave-up").await;
        let cache = Cache::new(store.clone());
        let a = Instance {
            app: router(&cache, db.clone()),
            store,
        };
        let b = Instance::new(redis_store(&server.url(), "gave-up").await, &db);
        a.get(1).await;
        hit_on_both(&a, &b, 1).await;

        link.stall();
        db.bump(1);
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), cache.invalidate(["item:1"])).await;
        assert!(gave_up.is_err(), "the call was still waiting on Redis");
        eventually("the abandoned invalidation is queued", || async {
            a.store.queued_invalidations() == 1
        })
        .await;
        assert_eq!(version(&a.get(1).await), 1);

        link.heal();
        reads_version(&b, 1, 1, "the other instance reads the new version").await;
    })
    .await;
}

/// A herd of 10 on one instance while its Redis is down (the breaker
/// open), optionally with a local tier and with an invalidation while the
/// leader's origin call runs. Returns the replies' bodies (the leader's
/// first) and the origin calls.
async fn herd_with_redis_down(tiered: bool, invalidate: bool) -> Option<(Vec<String>, usize)> {
    use support::apps::{gated, Db, GateCalls};
    use support::harness::{spawn_get, until_waiting, Counter, Gate};
    use tagcache::{MemoryStore, TieredStore};
    let mut server = RedisServer::start()?;
    let store = redis_store(&server.url(), "downherd").await;
    let cache = match tiered {
        true => Cache::new(TieredStore::new(MemoryStore::default(), store.clone())),
        false => Cache::new(store.clone()),
    };
    let (gate, calls, db) = (Gate::default(), Counter::default(), Db::default());
    let app = gated(
        &cache,
        |l| l.coalesce_timeout(Duration::from_secs(600)),
        db.clone(),
        gate.clone(),
        calls.clone(),
        GateCalls::FirstOnly,
    );
    server.stop();
    // The feed's failing calls trip the breaker.
    let store_ref = &store;
    eventually("the breaker opened", || async move {
        store_ref.is_breaker_open()
    })
    .await;
    let leader = spawn_get(&app, "/r");
    gate.arrived(1).await;
    let waiters: Vec<_> = (0..9).map(|_| spawn_get(&app, "/r")).collect();
    until_waiting(&cache, 9).await;
    if invalidate {
        db.write(1);
        // Queued (Redis is down), and counted here at once.
        assert!(cache.invalidate(["t"]).await.is_err());
    }
    gate.open();
    let mut bodies = vec![leader.await.unwrap().text()];
    for waiter in waiters {
        bodies.push(waiter.await.unwrap().text());
    }
    Some((bodies, calls.get()))
}

/// Redis down (the breaker open): each instance falls back to coalescing
/// its own requests, and the leader's response, which cannot be stored,
/// still answers its waiters: one origin call for the herd, with or
/// without a local tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_herd_on_one_instance_makes_one_origin_call() {
    backstop(async {
        for tiered in [false, true] {
            let Some((bodies, calls)) = herd_with_redis_down(tiered, false).await else {
                return;
            };
            assert!(bodies.iter().all(|b| b == "v0 call1"), "{bodies:?}");
            assert_eq!(calls, 1, "tiered: {tiered}");
        }
    })
    .await;
}

/// ... unless something is invalidated meanwhile: then the waiters ask the
/// origin themselves, and none gets the leader's older response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_an_invalidation_keeps_the_leaders_response_from_waiters() {
    backstop(async {
        for tiered in [false, true] {
            let Some((bodies, calls)) = herd_with_redis_down(tiered, true).await else {
                return;
            };
            assert_eq!(bodies[0], "v0 call1");
            assert!(
                bodies[1..].iter().all(|b| b.starts_with("v1 ")),
                "{bodies:?}"
            );
            assert_eq!(calls, 10, "tiered: {tiered}");
        }
    })
    .await;
}
