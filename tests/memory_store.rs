//! Every store-agnostic suite against the in-memory store.

#[macro_use]
mod suites;

store_suite!(|| async { tagcache::Cache::default() });
