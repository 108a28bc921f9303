//! Every store-agnostic suite against the in-memory store, and against a
//! local tier over another in-memory store.

#[macro_use]
mod suites;
mod support;

store_suite!(|| async { tagcache::Cache::default() });

mod tiered_over_memory {
    use super::*;
    use tagcache::{Cache, MemoryStore, TieredStore};

    store_suite!(|| async {
        Cache::new(TieredStore::new(
            MemoryStore::default(),
            MemoryStore::default(),
        ))
    });
}
