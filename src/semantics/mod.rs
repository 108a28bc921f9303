//! HTTP caching rules as pure functions over `http` types: what a request
//! allows, what may be stored and for how long, what a stored entry can do
//! for a request, how `Vary`, conditional and range requests work, and how
//! `Cache-Status` is written. Nothing here knows about stores or tower.

pub mod cache_control;
pub mod cache_status;
pub mod conditional;
pub mod freshness;
pub mod query;
pub mod range;
pub mod request;
pub mod storable;
pub mod vary;
pub(crate) mod verdict;

pub use cache_status::{BypassReason, NotStoredReason};
