//! Looking into a store from the outside: how full it is
//! ([`StoreUsage`], from [`Store::usage`]) and what it holds, a page at a
//! time ([`Store::scan`]).
//!
//! Both are for operators (the `admin` router, a dashboard, a debugging
//! session), never for the request path: a scan walks the store, and its
//! cost grows with what the store holds, so it is paginated and bounded.
//!
//! ```
//! use tagcache::inspect::{ScanOutcome, ScanRequest};
//! use tagcache::{MemoryStore, Store};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::default();
//! let usage = store.usage();
//! assert_eq!(usage.entries, Some(0));
//! match store.scan(ScanRequest::first(50)).await.unwrap() {
//!     ScanOutcome::Page(page) => assert!(page.entries.is_empty() && page.next.is_none()),
//!     other => panic!("the memory store lists its entries: {other:?}"),
//! }
//! # });
//! ```
//!
//! [`Store::usage`]: crate::Store::usage
//! [`Store::scan`]: crate::Store::scan

use std::sync::Arc;

use serde::Serialize;

use crate::entry::{Entry, KeyHash};

/// How full a store is and, for a shared store, how its link is doing.
/// Fields a store cannot tell cheaply are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoreUsage {
    /// The store's kind (`memory`, `redis`).
    pub kind: &'static str,
    /// Entries held (responses and variant indexes, expired ones not yet
    /// dropped included).
    pub entries: Option<u64>,
    /// Bytes held, by the store's weighing.
    pub bytes: Option<u64>,
    /// The byte budget.
    pub budget: Option<u64>,
    /// Entries dropped to stay within the budget since the store was
    /// built (responses too large to be admitted included).
    pub evictions: Option<u64>,
    /// Tag stamps held (this instance's view of them, for a shared store).
    pub tag_stamps: Option<u64>,
    /// For a store shared through a feed of invalidations: its state.
    pub feed: Option<FeedState>,
    /// For a store behind a circuit breaker: whether it is open (the store
    /// is not asked).
    pub breaker_open: Option<bool>,
    /// Invalidations the shared store has not taken yet (retried; this
    /// instance already counts them).
    pub queued_invalidations: Option<u64>,
}

impl StoreUsage {
    /// Usage of a store of `kind` that tells nothing else.
    pub fn unknown(kind: &'static str) -> StoreUsage {
        StoreUsage {
            kind,
            ..StoreUsage::default()
        }
    }
}

/// Where a shared store's view of the invalidations stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Subscribed and loaded: entries are judged against current stamps.
    InSync,
    /// The store answers but the view is being reloaded: every entry
    /// counts as a miss meanwhile.
    Resyncing,
    /// The store is unreachable (its breaker is open): requests go to the
    /// origin.
    Down,
}

impl FeedState {
    /// The state's name in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedState::InSync => "in_sync",
            FeedState::Resyncing => "resyncing",
            FeedState::Down => "down",
        }
    }
}

/// One page of a listing, asked with [`Store::scan`](crate::Store::scan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanRequest {
    /// Where to go on from: the `next` of the previous page, or `None` to
    /// start.
    pub cursor: Option<String>,
    /// How many entries the page may hold (a store may return fewer, even
    /// when more follow).
    pub limit: usize,
    /// Only entries stored by this route.
    pub route: Option<String>,
    /// Only entries whose key starts with this.
    pub key_prefix: Option<String>,
}

impl ScanRequest {
    /// The first page of everything, at most `limit` entries.
    pub fn first(limit: usize) -> ScanRequest {
        ScanRequest {
            limit,
            ..ScanRequest::default()
        }
    }

    /// Whether `entry` passes the request's filters. Variant indexes
    /// (see [`Entry::variant_index`]) are never listed: they are not
    /// responses, and each of their variants is listed on its own.
    pub fn selects(&self, entry: &Entry) -> bool {
        entry.variants.is_none()
            && self.route.as_deref().is_none_or(|r| *entry.route == *r)
            && self
                .key_prefix
                .as_deref()
                .is_none_or(|p| entry.key.starts_with(p))
    }
}

/// What a store answered to a [`ScanRequest`].
#[derive(Debug, Clone)]
pub enum ScanOutcome {
    /// A page.
    Page(ScanPage),
    /// The store cannot list its entries.
    Unsupported,
    /// The cursor was not made by this store, or no longer means anything
    /// (everything was purged since): start again without one.
    BadCursor(String),
}

/// A page of entries.
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// The entries, each with the hash it is stored under.
    pub entries: Vec<(KeyHash, Arc<Entry>)>,
    /// The cursor of the next page; `None` when the listing is complete.
    pub next: Option<String>,
}
