//! HTTP caching rules as pure functions over `http` types: what may be
//! stored and for how long, how `Vary` and conditional requests work, and how
//! `Cache-Status` is written. Nothing here knows about stores or tower.

pub mod cache_control;
pub mod cache_status;
pub mod conditional;
pub mod storable;
pub mod vary;

pub use cache_status::{BypassReason, NotStoredReason};
