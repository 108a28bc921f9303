//! The admin router (feature `admin`): statistics, what is cached,
//! invalidations and purges, health, for operators and their dashboards.
//!
//! [`Cache::admin`] starts an [`Admin`] builder; [`Admin::build`] makes an
//! axum [`Router`] to nest wherever the application likes. Every endpoint
//! needs authentication: a bearer token (compared in constant time) or the
//! application's own check over the request head; building with neither
//! is an error, never an open endpoint. Changes are `POST` with a JSON
//! body (`Content-Type: application/json`) and bounded; answers are JSON,
//! errors `{"error": "...", "message": "..."}` with 400 (bad input), 401
//! (credentials), 404 (unknown route, key or endpoint), 405, 413, 415, 501
//! (the store cannot list) or 503 (the store failed, with its reason).
//!
//! ```
//! use axum::Router;
//! use tagcache::Cache;
//!
//! # fn run() -> Result<(), tagcache::admin::AdminError> {
//! let cache = Cache::default();
//! let admin = cache.admin().bearer_token("a long random secret token").build()?;
//! let app: Router = Router::new()
//!     // ... the application's routes ...
//!     .nest("/admin/cache", admin)
//!     // a load balancer's probe, without credentials: the status alone
//!     .nest("/healthz", cache.admin().health_router());
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Dashboard
//!
//! `GET /` of the router (no credentials needed: it holds no data) is a
//! dashboard page: health, per-route statistics, a live chart, memory,
//! recent invalidations, forms to invalidate, purge a key or everything,
//! and an entries browser. It asks for the token once and keeps it in the
//! tab's `sessionStorage`. Open it at the router's path
//! (`http://127.0.0.1:3000/admin/cache`).
//!
//! # Endpoints
//!
//! With `T` the token and the router nested at `/admin/cache`:
//!
//! ```sh
//! # per route: hits, misses, stale, collapsed, bypasses and not-stored by
//! # reason, hit ratio overall and over the last 1 and 5 minutes; the
//! # store's entries, bytes, budget, evictions, tag stamps, feed, breaker
//! curl -s -H "authorization: Bearer $T" http://127.0.0.1:3000/admin/cache/stats
//! # what is cached, a page at a time (limit 1..=500, default 50)
//! curl -s -H "authorization: Bearer $T" 'http://127.0.0.1:3000/admin/cache/entries?route=session-list&prefix=/api/teachers/&limit=20'
//! curl -s -H "authorization: Bearer $T" 'http://127.0.0.1:3000/admin/cache/entries?cursor=<next_cursor>'
//! # one key, every variant
//! curl -s -H "authorization: Bearer $T" 'http://127.0.0.1:3000/admin/cache/entry?route=session-list&key=/api/teachers/7/sessions'
//! # invalidate tags (soft: stale-while-revalidate may still answer)
//! curl -s -H "authorization: Bearer $T" -H 'content-type: application/json' \
//!      -d '{"tags": ["teacher:7"], "soft": false}' http://127.0.0.1:3000/admin/cache/invalidate
//! # purge one key (every variant)
//! curl -s -H "authorization: Bearer $T" -H 'content-type: application/json' \
//!      -d '{"key": "/api/teachers/7/sessions"}' http://127.0.0.1:3000/admin/cache/purge
//! # purge everything: confirm with the cache's name
//! curl -s -H "authorization: Bearer $T" -H 'content-type: application/json' \
//!      -d '{"confirm": "classroom"}' http://127.0.0.1:3000/admin/cache/purge-all
//! # the last invalidations: when, tags, kind, source
//! curl -s -H "authorization: Bearer $T" 'http://127.0.0.1:3000/admin/cache/invalidations?limit=20'
//! # warm paths through the application's router (needs a WarmTarget;
//! # at most 100 paths, one warm at a time: 409 while one runs)
//! curl -s -H "authorization: Bearer $T" -H 'content-type: application/json' \
//!      -d '{"paths": ["/api/teachers/7/sessions"]}' http://127.0.0.1:3000/admin/cache/warm
//! # health: 200 healthy or degraded, 503 unhealthy, with every check (see
//! # HealthOptions for the checks and their thresholds)
//! curl -s -H "authorization: Bearer $T" http://127.0.0.1:3000/admin/cache/health
//! ```
//!
//! Statistics windows and store gauges come from a sampler the builder
//! starts ([`Cache::track_history`]); they fill within a second or two and
//! cover up to five minutes.

mod auth;
mod body;
mod entries;
mod errors;
mod health;
mod limits;
mod page;
mod purge;
mod stats;
mod warm;

use std::fmt;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;

use crate::cache::Cache;
use auth::Auth;

pub use auth::MIN_TOKEN_BYTES;
pub use body::MAX_BODY_BYTES;
pub use entries::{DEFAULT_LIMIT, MAX_LIMIT};
pub use health::HealthOptions;
pub use limits::{
    MAX_CURSOR_BYTES, MAX_KEY_BYTES, MAX_ROUTE_BYTES, MAX_TAGS_PER_CALL, MAX_TAG_BYTES,
};
pub use warm::{WarmTarget, MAX_WARM_PATHS};

/// Builds the admin router of one [`Cache`]. Made with [`Cache::admin`].
#[must_use = "an Admin does nothing until built into a Router"]
pub struct Admin {
    cache: Cache,
    auth: Option<Auth>,
    problem: Option<String>,
    health: HealthOptions,
    warm: WarmTarget,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("cache", &self.cache.name())
            .field(
                "auth",
                &match &self.auth {
                    Some(Auth::Bearer(_)) => "bearer token",
                    Some(Auth::Check(_)) => "custom check",
                    None => "none",
                },
            )
            .finish()
    }
}

/// Why an admin router could not be built; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    message: String,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdminError {}

/// What every admin handler shares.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) cache: Cache,
    pub(crate) health: Arc<HealthOptions>,
    pub(crate) warm: WarmTarget,
}

impl Cache {
    /// Starts the admin router of this cache; see the [`admin`](crate::admin)
    /// module.
    pub fn admin(&self) -> Admin {
        Admin {
            cache: self.clone(),
            auth: None,
            problem: None,
            health: HealthOptions::default(),
            warm: WarmTarget::default(),
        }
    }
}

impl Admin {
    /// Requests must carry `Authorization: Bearer <token>`. The token must
    /// be at least [`MIN_TOKEN_BYTES`] long (a random one: 32 hex digits or
    /// more). It is compared in constant time.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        if token.trim().len() < MIN_TOKEN_BYTES {
            self.problem = Some(format!(
                "tagcache admin: the bearer token is shorter than {MIN_TOKEN_BYTES} bytes; \
                 use a long random one (say 32 hex digits)"
            ));
        } else {
            self.problem = None;
        }
        self.auth = Some(Auth::Bearer(token.trim().as_bytes().into()));
        self
    }

    /// Requests pass when `check` says so, from the request head (a session
    /// cookie the application verifies, a client certificate's identity put
    /// in the extensions by the TLS layer, ...). Replaces a bearer token.
    pub fn authorize<F>(mut self, check: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.auth = Some(Auth::Check(Arc::new(check)));
        self.problem = None;
        self
    }

    /// Thresholds of `/health` (see [`HealthOptions`] for the defaults).
    pub fn health(mut self, options: HealthOptions) -> Self {
        self.health = options;
        self
    }

    /// Where `POST /warm` sends its requests: the application's router,
    /// set once built (see [`WarmTarget`]). Without it `/warm` answers 501.
    pub fn warm_target(mut self, target: WarmTarget) -> Self {
        self.warm = target;
        self
    }

    fn state(&self) -> AdminState {
        // The windows and gauges need the sampler; starting it twice is a
        // no-op.
        self.cache.track_history();
        AdminState {
            cache: self.cache.clone(),
            health: Arc::new(self.health.clone()),
            warm: self.warm.clone(),
        }
    }

    /// The authenticated admin router. Fails, saying what to do, when no
    /// authentication was configured or the token is too short.
    pub fn build<S>(self) -> Result<Router<S>, AdminError>
    where
        S: Clone + Send + Sync + 'static,
    {
        if let Some(message) = &self.problem {
            return Err(AdminError {
                message: message.clone(),
            });
        }
        let Some(auth) = self.auth.clone() else {
            return Err(AdminError {
                message: "tagcache admin: no authentication configured; call \
                          .bearer_token(token) or .authorize(check) before .build() \
                          (the admin router is never served open)"
                    .to_owned(),
            });
        };
        let state = self.state();
        let api = Router::new()
            .route("/stats", get(stats::stats))
            .route("/entries", get(entries::list))
            .route("/entry", get(entries::one))
            .route("/invalidate", post(purge::invalidate))
            .route("/purge", post(purge::purge))
            .route("/purge-all", post(purge::purge_all))
            .route("/invalidations", get(purge::log))
            .route("/health", get(health::detailed))
            .route("/warm", post(warm::warm))
            .fallback(errors::not_found)
            .method_not_allowed_fallback(errors::method_not_allowed)
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(auth, auth::require));
        // The page holds no data and must load before the token is known.
        let page = Router::new().route("/", get(page::page));
        Ok(page
            .merge(api)
            .layer(axum::middleware::map_response(errors::no_store))
            .with_state(()))
    }

    /// A router answering `GET /` with the health status alone
    /// (`{"status": "healthy"}`; 200, or 503 when unhealthy), without
    /// authentication, for load balancers. The checks' details are only
    /// on the authenticated `/health`.
    pub fn health_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new()
            .route("/", get(health::status_only))
            .fallback(errors::not_found)
            .method_not_allowed_fallback(errors::method_not_allowed)
            .layer(axum::middleware::map_response(errors::no_store))
            .with_state(self.state())
    }
}
