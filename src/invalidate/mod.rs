//! [`InvalidateLayer`]: invalidates tags once a mutating route succeeded.
//!
//! The layer calls the handler; if it answered with a success status (2xx
//! by default) it computes the tags from the request and the response head,
//! adds the tags the handler put in a [`Tags`](crate::Tags) extension,
//! invalidates them, and only then returns the response. So the client that
//! made a change reads its own write, and so does everyone else on this
//! instance from that moment on. A failed mutation invalidates nothing.
//!
//! If the store cannot record the invalidation (Redis unreachable), the
//! response still goes out unchanged, since the mutation itself happened and
//! a retry could apply it twice; the failure is logged at error level and
//! counted in `tagcache_store_errors_total{op="invalidate"}`, and entries
//! with those tags may be served until their TTL ends. Call
//! [`Cache::invalidate`](crate::Cache::invalidate) yourself where you need to
//! act on the error.
//!
//! ```
//! use axum::{routing::post, Router};
//! use tagcache::{Cache, Tags};
//!
//! async fn create_session() -> (Tags, &'static str) {
//!     (Tags::new(["teacher:7"]), "created")
//! }
//!
//! let cache = Cache::default();
//! let app: Router = Router::new().route(
//!     "/api/teachers/{tid}/sessions",
//!     post(create_session).route_layer(
//!         cache.invalidate_layer("create-session").tags(|_req, _res| ["sessions", "dashboard"]),
//!     ),
//! );
//! # let _ = app;
//! ```

mod future;
mod service;

use std::sync::{Arc, OnceLock};

use http::request::Parts;
use http::{response, StatusCode};
use tower_layer::Layer;

pub use future::ResponseFuture;
pub use service::InvalidateService;

use crate::cache::Cache;
use crate::metrics::RouteMetrics;
use crate::stamp::InvalidationMode;
use crate::tags::{tags_fn, TagsFn};

type WhenFn = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// Invalidates tags after a mutating route succeeded. Made with
/// [`Cache::invalidate_layer`].
#[derive(Clone)]
pub struct InvalidateLayer {
    cache: Cache,
    route: Arc<str>,
    tags: Option<TagsFn>,
    when: WhenFn,
    mode: InvalidationMode,
    /// Made on the first `layer` call and shared, as for `CacheLayer`.
    built: Arc<OnceLock<Arc<InvalidateRoute>>>,
}

impl std::fmt::Debug for InvalidateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvalidateLayer")
            .field("route", &self.route)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Cache {
    /// Starts an [`InvalidateLayer`] for one mutating route; `route` names it
    /// in metrics and stats.
    pub fn invalidate_layer(&self, route: &str) -> InvalidateLayer {
        InvalidateLayer {
            cache: self.clone(),
            route: route.into(),
            tags: None,
            when: Arc::new(|status: StatusCode| status.is_success()),
            mode: InvalidationMode::Hard,
            built: Arc::default(),
        }
    }
}

impl InvalidateLayer {
    /// Applies an option change; the route's state is rebuilt on the next
    /// `layer` call.
    fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self.built = Arc::default();
        self
    }

    /// The tags to invalidate, from the request and the response head.
    pub fn tags<F, I, T>(self, tags: F) -> Self
    where
        F: Fn(&Parts, &response::Parts) -> I + Send + Sync + 'static,
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.with(|l| l.tags = Some(tags_fn(tags)))
    }

    /// Which response statuses count as success (default: 2xx).
    pub fn when<F>(self, success: F) -> Self
    where
        F: Fn(StatusCode) -> bool + Send + Sync + 'static,
    {
        self.with(|l| l.when = Arc::new(success))
    }

    /// Invalidate softly: entries become stale but may still be served under
    /// stale-while-revalidate (see [`Cache::invalidate_soft`]).
    pub fn soft(self) -> Self {
        self.with(|l| l.mode = InvalidationMode::Soft)
    }
}

/// One mutating route's state, shared by every clone of its service.
pub(crate) struct InvalidateRoute {
    pub(crate) cache: Cache,
    pub(crate) metrics: Arc<RouteMetrics>,
    pub(crate) tags: Option<TagsFn>,
    pub(crate) when: WhenFn,
    pub(crate) mode: InvalidationMode,
}

impl<S> Layer<S> for InvalidateLayer {
    type Service = InvalidateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = self.built.get_or_init(|| {
            Arc::new(InvalidateRoute {
                metrics: self.cache.route_metrics(&self.route),
                cache: self.cache.clone(),
                tags: self.tags.clone(),
                when: self.when.clone(),
                mode: self.mode,
            })
        });
        InvalidateService {
            inner,
            route: shared.clone(),
        }
    }
}
