//! # tagcache
//!
//! A server-side HTTP response cache for [axum] and [tower] services:
//! declare per route what makes two requests the same, what data a
//! response depends on (tags) and how long it stays fresh; invalidate tags
//! from mutating routes or from anywhere in your code.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::get, Router};
//! use tagcache::{Cache, Tags};
//!
//! async fn sessions() -> (Tags, &'static str) {
//!     (Tags::new(["teacher:7"]), "[]")
//! }
//!
//! # async fn run() {
//! let cache = Cache::default();
//! let app: Router = Router::new().route(
//!     "/api/teachers/7/sessions",
//!     get(sessions).route_layer(
//!         cache.layer("session-list").ttl(Duration::from_secs(300)),
//!     ),
//! );
//! // ... serve `app`; when teacher 7's data changes:
//! cache.invalidate(["teacher:7"]).await.unwrap();
//! # let _ = app;
//! # }
//! ```
//!
//! ## Guarantees
//!
//! * **Only shareable responses are shared.** Only GET/HEAD responses with a
//!   stored status are stored; never `no-store`, `no-cache`, `Set-Cookie`,
//!   `Vary: *`, or `private` (unless the route is [per-user]). Requests with
//!   `Authorization` or `Cookie` bypass the cache unless the route names
//!   the identity in its key. `Vary` is honoured on every hit.
//! * **Invalidation wins every race** on an instance: once
//!   [`Cache::invalidate`] returned (or an [`InvalidateLayer`] sent its
//!   response), no request is answered with a response whose origin call
//!   started before it: not from the store, not from a slow fill landing
//!   late, not from a coalesced flight, not from a background refresh. See
//!   [`stamp`] for the tag-stamp rule that makes this O(1) per tag.
//! * **One origin call per key** under a herd: concurrent misses wait for
//!   the first one's response (bounded by a timeout), unless it turns out
//!   not shareable, in which case each calls the origin itself. A cancelled
//!   or panicking leader hands over to one of its waiters. With a store
//!   shared by several instances (Redis), this holds for the whole fleet:
//!   the first instance to miss takes a lease on the key, the others wait
//!   for it and read its entry (see [`store::lease`]).
//! * **Fail-open**: a store error never fails a request; it is served from
//!   the origin, and counted.
//! * **In front of another service** ([`Freshness::Origin`]), the layer is
//!   a shared cache as RFC 9111 defines it: it stores only what the
//!   origin's headers allow, revalidates with conditional requests,
//!   follows request directives, and invalidates a URI after a successful
//!   unsafe request to it. `examples/proxy` is a caching reverse proxy
//!   built from it.
//!
//! ## Limits
//!
//! * The invalidation guarantee is exact on the instance that invalidates.
//!   With several instances over one Redis ([`store::redis`]), the
//!   invalidation is recorded in Redis before `invalidate` returns and
//!   published at once; another instance stops serving affected entries
//!   when the message reaches it (normally well under a millisecond), and
//!   while its subscription is down it treats every entry as a miss rather
//!   than risk a stale hit. A [`TieredStore`]'s local copies follow the same
//!   rule.
//! * Invalidations made in the database (feature `postgres`, module
//!   `tagcache::postgres`) reach a cache when their notification arrives,
//!   after the transaction committed; while the listener's session is down
//!   every lookup misses, and everything filled before it came back is
//!   invalidated.
//! * Coalescing across instances needs Redis to answer: while it is down
//!   (or its circuit breaker is open) each instance coalesces only its own
//!   requests, sharing the leader's response (which cannot be stored) with
//!   its waiters unless something was invalidated meanwhile. A lease lost without a
//!   release (its holder's process died) keeps the other instances waiting
//!   until it expires: half the route's `coalesce_timeout`.
//! * Waiters wait at most the route's `coalesce_timeout`; past it they call
//!   the origin themselves.
//! * Entries live at most the store's `max_entry_life` after their fill
//!   started (default one day), whatever their TTL; that is what keeps the
//!   tag stamp table bounded.
//! * In [`Freshness::Route`] (the default) the route's TTL is the most a
//!   response is kept; the response's `Cache-Control`, `Expires` and `Age`
//!   can only shorten it. [`Freshness::Origin`] follows the origin's
//!   headers as a shared cache (RFC 9111) instead: see
//!   [`layer`](layer#origin-mode) for what it does and does not do.
//!
//! ## Answers
//!
//! Every response that passes a [`CacheLayer`] carries `Cache-Status`
//! (RFC 9211), e.g. `tagcache; hit; ttl=287`, `tagcache; fwd=uri-miss;
//! stored`, `tagcache; fwd=uri-miss; collapsed`, `tagcache; fwd=bypass;
//! detail=authorization`, `tagcache; hit; fwd=stale; ttl=-3`; hits carry
//! `Age`. Metrics go through the [`metrics`](https://docs.rs/metrics) facade
//! (see [`metrics`] for names) and [`Cache::stats`].
//!
//! Hits answer conditional and range requests themselves: a matching
//! `If-None-Match` gets a 304; a single byte `Range` of a stored 200 gets a
//! 206 cut from the stored body (a 416 if it lies past the end), under its
//! `If-Range`; other range requests get the whole 200 (see
//! [`semantics::range`]).
//!
//! [axum]: https://docs.rs/axum
//! [tower]: https://docs.rs/tower
//! [per-user]: CacheLayer::per_user

#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
pub mod admin;
mod cache;
mod coalesce;
pub mod entry;
mod extract;
pub mod inspect;
pub mod invalidate;
pub mod invalidation_log;
pub mod layer;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod semantics;
pub mod stamp;
pub mod store;
mod tags;
pub mod warm;
mod window;

pub use cache::{Cache, CacheBuilder, OutOfSyncHold, ADMIN_ROUTE, DIRECT_ROUTE};
pub use entry::{Entry, KeyHash, Tag};
pub use extract::MissingCache;
pub use invalidate::InvalidateLayer;
pub use invalidation_log::{InvalidationKind, InvalidationRecord, InvalidationSource};
pub use layer::{CacheBody, CacheLayer, CACHE_STATUS};
pub use metrics::{CacheStats, RouteStats};
pub use semantics::storable::Freshness;
pub use stamp::{InvalidationMode, Stamp, Validity};
pub use store::{
    MemoryStore, Store, StoreError, StoreErrorKind, StoreFuture, StoreResult, TieredStore,
};
#[cfg(feature = "redis")]
pub use store::{RedisStore, RedisStoreBuilder};
pub use tags::Tags;
pub use warm::{WarmOutcome, WarmReport, Warmer};

/// Compiles the README's examples as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
