//! One origin call per key across instances: several `Cache`s, each with
//! its own `RedisStore` on one Redis (or one Redis Cluster), stand for the
//! instances of an application. A herd spread over them costs one origin
//! call; a holder that goes away hands over to exactly one other; a
//! response that cannot be shared never keeps anyone waiting, and never
//! reaches anyone else; an invalidation during the flight reaches no
//! waiter. Each test starts its own servers.
#![cfg(feature = "redis")]

mod support;

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::SET_COOKIE;
use tagcache::{Cache, MemoryStore, RedisStore, TieredStore};

use support::apps::{gated_with, Db, GateCalls};
use support::deadline::{backstop, eventually, Lazy};
use support::harness::{spawn_get, Counter, Gate, Reply};
use support::redis_server::{RedisCluster, RedisServer};
use support::stores::{cluster_store, redis_store};

/// Long enough that a request waiting out a lease (instead of hearing its
/// end) or giving up on its flight would run into the test's deadline.
const PATIENT: Duration = Duration::from_secs(600);

/// The instances of one application: a cache and a router each, over
/// one origin (`db`, `gate`, `calls` are shared, as a database would be).
struct Fleet {
    caches: Vec<Cache>,
    apps: Vec<Router>,
    gate: Gate,
    calls: Counter,
    db: Db,
}

impl Fleet {
    fn new(stores: Vec<RedisStore>, respond: fn(usize, String) -> Response) -> Fleet {
        Fleet::of(stores.into_iter().map(Cache::new).collect(), respond)
    }

    /// Each instance with a local tier in front of its Redis store.
    fn tiered(stores: Vec<RedisStore>, respond: fn(usize, String) -> Response) -> Fleet {
        let caches = stores
            .into_iter()
            .map(|store| Cache::new(TieredStore::new(MemoryStore::default(), store)))
            .collect();
        Fleet::of(caches, respond)
    }

    fn of(caches: Vec<Cache>, respond: fn(usize, String) -> Response) -> Fleet {
        let (gate, calls, db) = (Gate::default(), Counter::default(), Db::default());
        let apps = caches
            .iter()
            .map(|cache| {
                gated_with(
                    cache,
                    |l| l.coalesce_timeout(PATIENT),
                    db.clone(),
                    gate.clone(),
                    calls.clone(),
                    GateCalls::All,
                    respond,
                )
            })
            .collect();
        Fleet {
            caches,
            apps,
            gate,
            calls,
            db,
        }
    }

    /// Requests waiting for another's origin call, over all instances.
    fn waiting(&self) -> usize {
        self.caches.iter().map(Cache::waiting_requests).sum()
    }

    fn stat(&self, pick: fn(&tagcache::RouteStats) -> u64) -> u64 {
        self.caches
            .iter()
            .map(|cache| pick(&cache.stats().route("r")))
            .sum()
    }

    /// Waits until `n` requests wait, over all instances.
    async fn until_waiting(&self, n: usize) {
        let what = Lazy(|| format!("{n} requests waiting ({} at the deadline)", self.waiting()));
        eventually(what, || async { self.waiting() == n }).await;
    }
}

fn body(_: usize, body: String) -> Response {
    body.into_response()
}

fn with_cookie(_: usize, body: String) -> Response {
    ([(SET_COOKIE, "session=abc")], body).into_response()
}

async fn redis_stores(server: &RedisServer, ns: &str, n: usize) -> Vec<RedisStore> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(redis_store(&server.url(), ns).await);
    }
    stores
}

async fn cluster_stores(cluster: &RedisCluster, ns: &str, n: usize) -> Vec<RedisStore> {
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(cluster_store(cluster.urls(), ns).await);
    }
    stores
}

/// 300 cold requests, 100 on each of three instances: one origin call,
/// and every request answered with its response.
/// `server`, when given, is the one Redis: while the herd waits it must
/// receive no command at all (waiters are woken, they do not poll).
async fn a_herd_makes_one_origin_call(fleet: Fleet, server: Option<&RedisServer>) {
    let first = spawn_get(&fleet.apps[0], "/r");
    fleet.gate.arrived(1).await;
    let mut herd = Vec::new();
    for app in &fleet.apps {
        for _ in 0..100 {
            herd.push(spawn_get(app, "/r"));
        }
    }
    // The 100 on the holder's instance wait on its flight; on each other
    // instance one request waits on the lease and 99 on its flight.
    fleet.until_waiting(300).await;
    assert_eq!(fleet.stat(|s| s.lease_waits), 2);
    if let Some(server) = server {
        let scripts = || server.command_calls().get("evalsha").copied();
        let before = scripts();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(scripts(), before, "the waiters asked Redis while waiting");
    }
    fleet.gate.open();
    assert_eq!(first.await.unwrap().text(), "v0 call1");
    for reply in herd {
        let reply = reply.await.unwrap();
        assert_eq!(reply.text(), "v0 call1");
        assert!(
            reply.cache_status().contains("collapsed"),
            "{}",
            reply.cache_status()
        );
    }
    assert_eq!(fleet.calls.get(), 1, "one origin call for the whole fleet");
    assert_eq!(fleet.stat(|s| s.takeovers), 0);
    assert_eq!(fleet.waiting(), 0, "nobody is left counted as waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_over_three_instances_makes_one_origin_call() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::new(redis_stores(&server, "herd", 3).await, body);
        a_herd_makes_one_origin_call(fleet, Some(&server)).await;
    })
    .await;
}

/// The same with a local tier in front of Redis on every instance: the
/// leases are Redis's, the tier only keeps copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_over_three_tiered_instances_makes_one_origin_call() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::tiered(redis_stores(&server, "tieredherd", 3).await, body);
        a_herd_makes_one_origin_call(fleet, Some(&server)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_over_three_instances_on_a_cluster_makes_one_origin_call() {
    backstop(async {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let fleet = Fleet::new(cluster_stores(&cluster, "herd", 3).await, body);
        a_herd_makes_one_origin_call(fleet, None).await;
    })
    .await;
}

/// Without leases each instance coalesces only its own requests: the
/// comparison the figures in BENCHMARKS.md are made against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_leases_each_instance_makes_its_own_call() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let mut stores = Vec::new();
        for _ in 0..3 {
            let store = RedisStore::builder(server.url())
                .namespace("nolease")
                .response_timeout(Duration::from_secs(2))
                .leases(false)
                .build()
                .await
                .unwrap();
            stores.push(store);
        }
        let fleet = Fleet::new(stores, body);
        let herd: Vec<_> = (0..30)
            .map(|i| spawn_get(&fleet.apps[i % 3], "/r"))
            .collect();
        fleet.gate.arrived(3).await;
        fleet.until_waiting(27).await;
        fleet.gate.open();
        for reply in herd {
            assert!(reply.await.unwrap().text().starts_with("v0 call"));
        }
        assert_eq!(fleet.calls.get(), 3);
    })
    .await;
}

/// The holder's request is cancelled mid-fill: it releases the lease as
/// abandoned, and exactly one other instance takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_dropped_mid_fill_hands_over_to_exactly_one_instance() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::new(redis_stores(&server, "handover", 3).await, body);
        let holder = spawn_get(&fleet.apps[0], "/r");
        fleet.gate.arrived(1).await;
        let mut herd = Vec::new();
        for app in &fleet.apps[1..] {
            for _ in 0..50 {
                herd.push(spawn_get(app, "/r"));
            }
        }
        fleet.until_waiting(100).await;
        holder.abort();
        assert!(holder.await.is_err(), "the holder was cancelled");
        // The one instance that took over reaches the origin.
        fleet.gate.arrived(1).await;
        fleet.gate.open();
        for reply in herd {
            assert_eq!(reply.await.unwrap().text(), "v0 call2");
        }
        assert_eq!(fleet.calls.get(), 2);
        assert_eq!(fleet.stat(|s| s.takeovers), 1);
    })
    .await;
}

/// A holder that vanished without releasing (its process died): the lease
/// expires, and exactly one waiter takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_by_a_vanished_holder_expires_and_one_takes_over() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        // A short coalesce timeout makes short leases (half of it).
        let mut stores = redis_stores(&server, "vanished", 2).await;
        let cache_a = Cache::new(stores.remove(0));
        let cache_b = Cache::new(stores.remove(0));
        let (gate, calls) = (Gate::default(), Counter::default());
        let layer = |l: tagcache::CacheLayer| l.coalesce_timeout(Duration::from_secs(20));
        let app_a = gated_with(
            &cache_a,
            layer,
            Db::default(),
            gate.clone(),
            calls.clone(),
            GateCalls::FirstOnly,
            body,
        );
        let app_b = gated_with(
            &cache_b,
            layer,
            Db::default(),
            gate.clone(),
            calls.clone(),
            GateCalls::FirstOnly,
            body,
        );
        // A takes the lease and is stuck in the origin; its lease is then
        // made to look abandoned by a dead process: the token changed (A
        // can neither renew nor release it) and a short expiry.
        let stuck = spawn_get(&app_a, "/r");
        gate.arrived(1).await;
        let lease_key = {
            let keys = server.keys("{vanished:e:*}:lease");
            assert_eq!(keys.len(), 1, "one lease held");
            String::from_utf8(keys[0].clone()).unwrap()
        };
        server.cmd_str(&["SET", &lease_key, "dead-process", "PX", "300"]);
        let herd: Vec<_> = (0..20).map(|_| spawn_get(&app_b, "/r")).collect();
        for reply in herd {
            assert_eq!(reply.await.unwrap().text(), "v0 call2");
        }
        assert_eq!(calls.get(), 2, "one takeover, however many waited");
        assert_eq!(cache_b.stats().route("r").takeovers, 1);
        gate.open();
        assert_eq!(stuck.await.unwrap().text(), "v0 call1");
    })
    .await;
}

/// The holder's response sets a cookie: it reaches nobody else, the
/// waiters on other instances go to the origin as soon as it is known
/// (they would otherwise wait out a lease of minutes), and the next herd
/// does not queue at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unshareable_response_sends_waiters_to_the_origin_at_once() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::new(redis_stores(&server, "unshared", 4).await, with_cookie);
        let holder = spawn_get(&fleet.apps[0], "/r");
        fleet.gate.arrived(1).await;
        let waiters: Vec<_> = fleet.apps[1..3]
            .iter()
            .map(|app| spawn_get(app, "/r"))
            .collect();
        fleet.until_waiting(2).await;
        fleet.gate.open();
        let mut bodies = vec![holder.await.unwrap().text()];
        for waiter in waiters {
            let reply: Reply = waiter.await.unwrap();
            assert!(reply.headers.contains_key(SET_COOKIE));
            bodies.push(reply.text());
        }
        bodies.sort();
        assert_eq!(
            bodies,
            ["v0 call1", "v0 call2", "v0 call3"],
            "each got its own response"
        );
        assert_eq!(fleet.stat(|s| s.passes), 2);
        // (The two waiters' calls passed the open gate.)
        fleet.gate.arrived(2).await;
        // The key passes across the fleet: an instance that never saw it
        // sends two requests to the origin side by side, neither waiting.
        fleet.gate.close();
        let next = spawn_get(&fleet.apps[3], "/r");
        fleet.gate.arrived(1).await;
        let also = spawn_get(&fleet.apps[3], "/r");
        fleet.gate.arrived(1).await;
        fleet.gate.open();
        for reply in [next, also] {
            assert!(reply.await.unwrap().headers.contains_key(SET_COOKIE));
        }
        assert_eq!(fleet.calls.get(), 5);
        assert_eq!(fleet.stat(|s| s.passes), 4);
        assert_eq!(fleet.stat(|s| s.lease_waits), 2, "no new lease waits");
    })
    .await;
}

/// An invalidation made while the holder is in the origin: the holder's
/// response (read before it) reaches no waiter on any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_the_flight_reaches_no_waiter() {
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let stores = redis_stores(&server, "overtaken", 3).await;
        let fleet = Fleet::new(stores.clone(), body);
        let holder = spawn_get(&fleet.apps[0], "/r");
        fleet.gate.arrived(1).await;
        let mut herd = Vec::new();
        for app in &fleet.apps[1..] {
            for _ in 0..10 {
                herd.push(spawn_get(app, "/r"));
            }
        }
        fleet.until_waiting(20).await;
        fleet.db.write(1);
        fleet.caches[1].invalidate(["t"]).await.unwrap();
        // Every instance has heard of it (its one tag stamp).
        for store in &stores {
            let what = Lazy(|| format!("{} heard the invalidation", store.namespace()));
            eventually(what, || async { store.tag_stamp_count() == 1 }).await;
        }
        fleet.gate.open();
        assert_eq!(holder.await.unwrap().text(), "v0 call1");
        for reply in herd {
            assert_eq!(reply.await.unwrap().text(), "v1 call2");
        }
        assert_eq!(fleet.calls.get(), 2);
    })
    .await;
}

/// The lease contract, straight on the stores of two instances: one holder
/// at a time; only the holder's token renews or releases it; a waiter is
/// woken by the release; a pass makes the key pass for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_renews_or_releases_a_lease() {
    use tagcache::store::{Acquired, LeaseEnd, LeaseToken, Leases};
    use tagcache::KeyHash;
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let stores = redis_stores(&server, "contract", 2).await;
        let (a, b): (&dyn Leases, &dyn Leases) = (&stores[0], &stores[1]);
        let (key, ttl) = (KeyHash(42), Duration::from_secs(60));
        let (mine, theirs) = (LeaseToken::fresh(), LeaseToken::fresh());
        assert!(matches!(
            a.acquire(key, mine, ttl, true).await.unwrap(),
            Acquired::Taken
        ));
        assert!(matches!(
            b.acquire(key, theirs, ttl, true).await.unwrap(),
            Acquired::Held { .. }
        ));
        // The other token can neither renew nor release it.
        assert!(!b.renew(key, theirs, ttl).await.unwrap());
        b.release(key, theirs, LeaseEnd::Filled, None)
            .await
            .unwrap();
        assert!(matches!(
            b.acquire(key, theirs, ttl, true).await.unwrap(),
            Acquired::Held { .. }
        ));
        assert!(a.renew(key, mine, ttl).await.unwrap());
        // B waits; A's release wakes it with how the lease ended.
        let woken = b.ended(key).expect("Redis notifies");
        assert!(matches!(
            b.acquire(key, theirs, ttl, true).await.unwrap(),
            Acquired::Held { .. }
        ));
        a.release(key, mine, LeaseEnd::Pass(ttl), None)
            .await
            .unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(30), woken)
            .await
            .expect("the waiter heard the release");
        assert_eq!(heard, LeaseEnd::Pass(Duration::ZERO));
        // A pass is nobody's lease: it cannot be renewed, and everyone
        // goes to the origin until it ends.
        assert!(!a.renew(key, mine, ttl).await.unwrap());
        assert!(matches!(
            b.acquire(key, theirs, ttl, false).await.unwrap(),
            Acquired::Passing { .. }
        ));
    })
    .await;
}

fn varying(_: usize, body: String) -> Response {
    ([(http::header::VARY, "accept-language")], body).into_response()
}

/// The key turns out to vary while the herd waits: the holder stores the
/// variant and the key's index, and the waiters on the other instance
/// follow the index to the variant instead of calling the origin again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_key_that_turns_out_to_vary_follow_its_index() {
    use support::harness::{get_with, send};
    backstop(async {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let fleet = Fleet::new(redis_stores(&server, "varying", 2).await, varying);
        let ask = |app: &Router| {
            let app = app.clone();
            support::deadline::spawn("GET /r in French never answered", async move {
                send(&app, get_with("/r", &[("accept-language", "fr")])).await
            })
        };
        let holder = ask(&fleet.apps[0]);
        fleet.gate.arrived(1).await;
        let herd: Vec<_> = (0..10).map(|_| ask(&fleet.apps[1])).collect();
        fleet.until_waiting(10).await;
        fleet.gate.open();
        assert_eq!(holder.await.unwrap().text(), "v0 call1");
        for reply in herd {
            assert_eq!(reply.await.unwrap().text(), "v0 call1");
        }
        assert_eq!(fleet.calls.get(), 1);
    })
    .await;
}
