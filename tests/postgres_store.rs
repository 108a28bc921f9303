//! `PostgresStore` against a real PostgreSQL server (one per test, started
//! on a free port; skipped with a `SKIP:` line when PostgreSQL is not
//! installed).
#![cfg(feature = "postgres")]

#[macro_use]
#[allow(unused_macros)]
mod suites;
mod support;

use std::sync::Arc;
use std::time::Duration;

use tagcache::postgres::PostgresStore;
use tagcache::Cache;

use support::deadline::eventually;
use support::postgres_server::PostgresServer;

/// A store over `server` in `schema`, in sync.
async fn store(server: &PostgresServer, schema: &str) -> PostgresStore {
    let store = PostgresStore::builder(server.url())
        .schema(schema)
        .response_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("store builds");
    let store_ref = &store;
    eventually("the store's view is in sync", || async move {
        store_ref.is_in_sync()
    })
    .await;
    store
}

/// Every store-agnostic suite case as its own test, each with a server of
/// its own and a fresh schema per cache (some cases make several). Without PostgreSQL (after the `SKIP:` line) the factory hands
/// out in-memory caches, so the cases still run but prove nothing about
/// PostgreSQL.
mod suite {
    use super::*;

    fn postgres_caches() -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Cache>>>
    {
        let server = std::sync::Arc::new(PostgresServer::start());
        let next = std::sync::atomic::AtomicUsize::new(0);
        move || {
            let server = server.clone();
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                match server.as_ref() {
                    Some(server) => Cache::new(store(server, &format!("suite{n}")).await),
                    None => Cache::default(),
                }
            })
        }
    }

    store_suite!(postgres_caches());
}

use http::StatusCode;
use support::apps::{counted, plain};
use support::deadline::{backstop, within};
use support::harness::{get_reply, Counter};
use tokio_postgres::{Client, NoTls};

async fn connect(server: &PostgresServer) -> Client {
    let (client, connection) = within(
        "connecting to the test server",
        tokio_postgres::connect(&server.conninfo(), NoTls),
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

async fn exec(client: &Client, sql: &str) {
    within(format!("SQL {sql:?}"), client.batch_execute(sql))
        .await
        .unwrap_or_else(|e| panic!("SQL {sql:?} failed: {e:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_on_one_instance_reaches_the_other() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let (a, b) = (
            Cache::new(store(&server, "shared").await),
            Cache::new(store(&server, "shared").await),
        );
        let (calls_a, calls_b) = (Counter::default(), Counter::default());
        let app_a = counted(&a, |l| l, calls_a.clone(), |n, _| plain(n));
        let app_b = counted(&b, |l| l, calls_b.clone(), |n, _| plain(n));

        assert_eq!(get_reply(&app_a, "/r").await.text(), "body 1");
        // A stores in the background; once the row is there, B shares it.
        let admin = connect(&server).await;
        let first = stored_value(&admin).await;
        let shared = get_reply(&app_b, "/r").await;
        assert!(
            shared.is_hit(),
            "B reads A's entry: {:?}",
            shared.cache_status()
        );
        assert_eq!(shared.text(), "body 1");
        assert_eq!(calls_b.get(), 0);

        a.purge("/r").await.expect("purge");
        // B learns of it from the notification. Its first miss refills the
        // entry (with its own origin's first answer), which A then shares.
        let app = &app_b;
        eventually("B stops serving the purged entry", || async move {
            !get_reply(app, "/r").await.is_hit()
        })
        .await;
        assert_eq!(calls_b.get(), 1);
        assert_eq!(calls_a.get(), 1);
        // Once B's new entry is written (in the background), A shares it.
        let admin = &admin;
        let first = &first;
        eventually("B's new entry is written", || async move {
            stored_value(admin).await != *first
        })
        .await;
        let reply = get_reply(&app_a, "/r").await;
        assert!(reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), "body 1");
        assert_eq!(calls_a.get(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_lost_its_session_misses_then_catches_up_from_the_table() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let admin = connect(&server).await;
        exec(
            &admin,
            "CREATE ROLE app LOGIN; GRANT CREATE ON DATABASE postgres TO app;",
        )
        .await;
        let a_store = Arc::new(
            PostgresStore::builder(format!("{} user=app", server.conninfo()))
                .schema("app")
                .build()
                .await
                .expect("store as app"),
        );
        let view = &a_store;
        eventually("A in sync", || async move { view.is_in_sync() }).await;
        let a = Cache::builder().shared_store(a_store.clone()).build();
        let b = Cache::new(store(&server, "app").await);
        let calls = Counter::default();
        let app = counted(&a, |l| l, calls.clone(), |n, _| plain(n));
        get_reply(&app, "/r").await;
        assert!(get_reply(&app, "/r").await.is_hit());

        // A's view loses its session and cannot log in again for now
        // (its other connection stays up).
        exec(&admin, "ALTER ROLE app NOLOGIN").await;
        let killed = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE usename = 'app' AND application_name = 'tagcache-store-view'",
                &[],
            )
            .await
            .expect("terminate");
        assert_eq!(killed.get::<_, i64>(0), 1);
        eventually(
            "A's view is out of sync",
            || async move { !view.is_in_sync() },
        )
        .await;
        // Out of sync: misses, and nothing stored.
        for round in 2..=3 {
            let reply = get_reply(&app, "/r").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert!(!reply.is_hit(), "{:?}", reply.cache_status());
            assert_eq!(reply.text(), format!("body {round}"));
            assert_eq!(calls.get(), round);
        }

        // Meanwhile B purges; A's view never gets that notification, and
        // finds the stamp in the table when it is back.
        b.purge("/r").await.expect("purge");
        exec(&admin, "ALTER ROLE app LOGIN").await;
        eventually("A's view is back", || async move { view.is_in_sync() }).await;
        let reply = get_reply(&app, "/r").await;
        assert!(!reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), "body 4");
        let reply = get_reply(&app, "/r").await;
        assert!(reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), "body 4");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_fails_open() {
    let Some(mut server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let pg = Arc::new(store(&server, "open").await);
        let cache = Cache::builder().shared_store(pg.clone()).build();
        let calls = Counter::default();
        let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
        get_reply(&app, "/r").await;
        assert!(get_reply(&app, "/r").await.is_hit());

        server.stop();
        // Every request is answered by the origin; none fails.
        for round in 2..=6 {
            let reply = get_reply(&app, "/r").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.text(), format!("body {round}"));
        }
        // After a few failures the store stops asking.
        assert!(!pg.is_connected());
        assert!(!pg.is_in_sync());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_trimmed_and_unreadable_ones_are_misses() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let admin = connect(&server).await;
        let pg = PostgresStore::builder(server.url())
            .schema("trim")
            .trim_interval(Duration::from_millis(20))
            .build()
            .await
            .expect("store");
        let view = &pg;
        eventually("in sync", || async move { view.is_in_sync() }).await;
        let cache = Cache::new(pg);

        // An unreadable value is a miss, and the next fill replaces it.
        let calls = Counter::default();
        let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
        get_reply(&app, "/r").await;
        stored(&admin, 1).await;
        exec(
            &admin,
            "UPDATE trim.tagcache_store_entries SET entry = '\\x01ff'",
        )
        .await;
        let reply = get_reply(&app, "/r").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(calls.get(), 2);
        assert!(get_reply(&app, "/r").await.is_hit());

        // Entries past their retention go, in the background.
        stored(&admin, 1).await;
        exec(
            &admin,
            "UPDATE trim.tagcache_store_entries SET expires_at = 0",
        )
        .await;
        stored(&admin, 0).await;
    })
    .await;
}

/// Waits until `trim.tagcache_store_entries` holds `n` rows (the layer
/// stores in the background).
async fn stored(admin: &Client, n: i64) {
    let what = format!("{n} rows in trim.tagcache_store_entries");
    eventually(what, || async move {
        let row = admin
            .query_one("SELECT count(*) FROM trim.tagcache_store_entries", &[])
            .await
            .expect("count");
        row.get::<_, i64>(0) == n
    })
    .await;
}

/// The one entry's stored value in `shared.tagcache_store_entries`, once
/// there is one.
async fn stored_value(admin: &Client) -> Vec<u8> {
    let read = || async move {
        admin
            .query_opt("SELECT entry FROM shared.tagcache_store_entries", &[])
            .await
            .expect("read the entry")
            .map(|row| row.get::<_, Vec<u8>>(0))
    };
    eventually("an entry in shared.tagcache_store_entries", || async move {
        read().await.is_some()
    })
    .await;
    read().await.expect("the entry stays")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_that_may_be_lost_purges_everything_before_the_store_is_used_again() {
    let Some(server) = PostgresServer::start() else {
        return;
    };
    backstop(async {
        let pg = Arc::new(
            PostgresStore::builder(server.url())
                .schema("lost")
                .response_timeout(Duration::from_millis(300))
                .build()
                .await
                .expect("store"),
        );
        let view = &pg;
        eventually("in sync", || async move { view.is_in_sync() }).await;
        let cache = Cache::builder().shared_store(pg.clone()).build();
        let calls = Counter::default();
        let app = counted(&cache, |l| l, calls.clone(), |n, _| plain(n));
        get_reply(&app, "/r").await;
        assert!(get_reply(&app, "/r").await.is_hit());

        // Another session holds the clock, so the purge waits, times out,
        // and its statement is then killed: it is never recorded.
        let admin = connect(&server).await;
        exec(
            &admin,
            "BEGIN; SELECT * FROM lost.tagcache_store_clock FOR UPDATE",
        )
        .await;
        assert!(cache.purge("/r").await.is_err());
        exec(
            &admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'tagcache-store' AND pid <> pg_backend_pid()",
        )
        .await;
        exec(&admin, "ROLLBACK").await;

        // The store comes back only after purging everything: the entry
        // filled before the lost invalidation is never served again.
        eventually("the store is connected again", || async move {
            view.is_connected()
        })
        .await;
        let reply = get_reply(&app, "/r").await;
        assert!(!reply.is_hit(), "{:?}", reply.cache_status());
        assert_eq!(reply.text(), format!("body {}", calls.get()));
        let served = calls.get();
        let app = &app;
        eventually("the refill is a hit", || async move {
            get_reply(app, "/r").await.is_hit()
        })
        .await;
        assert!(calls.get() <= served + 1);
    })
    .await;
}
