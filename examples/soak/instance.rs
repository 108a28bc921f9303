//! One instance of the app: its own store (a plain `RedisStore`, or a
//! `TieredStore` over one), its own cache and router, all instances sharing
//! one database. Requests go through the router in-process, as a server
//! would pass them on, and come back as an [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Method, Request};
use http_body_util::BodyExt;
use tagcache::{Cache, MemoryStore, RedisStore, StoreError, TieredStore};
use tower::ServiceExt;

use super::app::{router, version_of, Db};

/// The namespace every instance shares.
const NAMESPACE: &str = "soak";
/// A request that takes longer than this has failed: fail-open must answer
/// from the origin well before.
const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// Which store an instance uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Tiered,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Tiered => "tiered",
        }
    }
}

/// How a request went.
#[derive(Debug)]
pub enum Outcome {
    /// A 2xx carrying a version; `hit` when answered from a fresh entry.
    Ok { version: u64, hit: bool },
    /// A non-2xx, an unreadable body, no version in it, or no answer in
    /// time.
    Failed(String),
}

pub struct Instance {
    pub kind: Kind,
    /// Its Redis store (under the memory tier, for a tiered instance).
    pub store: RedisStore,
    cache: Cache,
    app: Router,
}

impl Instance {
    /// Connects to Redis at `url` (its own link through a proxy).
    pub async fn build(kind: Kind, url: &str, db: &Arc<Db>) -> Result<Instance, StoreError> {
        // Short timeouts, so that faults show (and pass) quickly.
        let store = RedisStore::builder(url)
            .namespace(NAMESPACE)
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(300))
            .feed_ping_interval(Duration::from_millis(200))
            .build()
            .await?;
        let cache = match kind {
            Kind::Redis => Cache::new(store.clone()),
            Kind::Tiered => Cache::new(TieredStore::new(MemoryStore::default(), store.clone())),
        };
        Ok(Instance {
            kind,
            app: router(&cache, db.clone()),
            cache,
            store,
        })
    }

    /// `GET /items/{id}`.
    pub async fn get(&self, id: usize) -> Outcome {
        self.send(Method::GET, id).await
    }

    /// `PUT /items/{id}`: a new version.
    pub async fn put(&self, id: usize) -> Outcome {
        self.send(Method::PUT, id).await
    }

    /// Store calls that failed (the requests went to the origin instead).
    pub fn store_errors(&self) -> u64 {
        let stats = self.cache.stats();
        stats.route("items").store_errors + stats.route("items-write").store_errors
    }

    /// Whether Redis has everything this instance knows and the other way
    /// round: feed in sync, nothing queued.
    pub fn settled(&self) -> bool {
        self.store.is_in_sync() && self.store.queued_invalidations() == 0
    }

    async fn send(&self, method: Method, id: usize) -> Outcome {
        let request = Request::builder()
            .method(method)
            .uri(format!("/items/{id}"))
            .body(Body::empty())
            .expect("a valid request");
        let exchange = async {
            let response = match self.app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, axum::Error>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(REQUEST_LIMIT, exchange).await {
            Err(_) => return Outcome::Failed(format!("no answer within {REQUEST_LIMIT:?}")),
            Ok(Err(error)) => return Outcome::Failed(error.to_string()),
            Ok(Ok(reply)) => reply,
        };
        let text = String::from_utf8_lossy(&body);
        let status = parts
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match version_of(&text) {
            Some(version) if parts.status.is_success() => Outcome::Ok {
                version,
                // A fresh hit: from the cache, nothing forwarded.
                hit: status.contains("; hit") && !status.contains("fwd="),
            },
            _ => Outcome::Failed(format!("{} {text:?} ({status})", parts.status)),
        }
    }
}
