//! `PostgresStore` against a real PostgreSQL server (one per test, started
//! on a free port; skipped with a `SKIP:` line when PostgreSQL is not
//! installed).
#![cfg(feature = "postgres")]

#[macro_use]
#[allow(unused_macros)]
mod suites;
mod support;

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
