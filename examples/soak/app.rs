//! The soak's app: items whose every change bumps a version, a cached read
//! route and an invalidating write route, plus what a read must at least
//! see. Shared with the Redis fault tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use tagcache::{Cache, Tags};

/// The "database": one version per item, bumped by every write. Reads see
/// the version at the moment they read, as a real query would.
pub struct Db {
    versions: Vec<AtomicU64>,
    reads: AtomicU64,
}

impl Db {
    pub fn new(items: usize) -> Arc<Db> {
        Arc::new(Db {
            versions: (0..items).map(|_| AtomicU64::new(0)).collect(),
            reads: AtomicU64::new(0),
        })
    }

    pub fn items(&self) -> usize {
        self.versions.len()
    }

    /// How many times a handler read the data (origin calls).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    fn read(&self, id: usize) -> u64 {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.versions[id].load(Ordering::SeqCst)
    }

    /// A write made outside the app (another service, a batch job).
    pub fn bump(&self, id: usize) -> u64 {
        self.versions[id].fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// `GET /items/{id}` (cached, tagged `item:{id}`) answers
/// `item <id> v<version>`; `PUT /items/{id}` bumps the version and answers
/// the same shape, invalidating `item:{id}` before it does.
pub fn router(cache: &Cache, db: Arc<Db>) -> Router {
    let tags = |id: &str| Tags::new([format!("item:{id}")]);
    Router::new()
        .route(
            "/items/{id}",
            get(
                move |State(db): State<Arc<Db>>, Path(id): Path<usize>| async move {
                    let version = db.read(id);
                    (tags(&id.to_string()), format!("item {id} v{version}"))
                },
            )
            .route_layer(cache.layer("items").ttl(Duration::from_secs(600))),
        )
        .route(
            "/items/{id}",
            axum::routing::put(
                move |State(db): State<Arc<Db>>, Path(id): Path<usize>| async move {
                    let version = db.bump(id);
                    (tags(&id.to_string()), format!("item {id} v{version}"))
                },
            )
            .route_layer(cache.invalidate_layer("items-write")),
        )
        .with_state(db)
}

/// The version a response body carries.
pub fn version_of(body: &str) -> Option<u64> {
    body.rsplit_once(" v")?.1.parse().ok()
}

/// What readers must at least see, per item: the version of the last write
/// whose response has come back (its invalidation has then run).
pub struct Floor(Vec<AtomicU64>);

impl Floor {
    pub fn new(items: usize) -> Arc<Floor> {
        Arc::new(Floor((0..items).map(|_| AtomicU64::new(0)).collect()))
    }

    /// A write of `version` came back.
    pub fn written(&self, id: usize, version: u64) {
        self.0[id].fetch_max(version, Ordering::SeqCst);
    }

    /// What a read starting now must at least see.
    pub fn at_least(&self, id: usize) -> u64 {
        self.0[id].load(Ordering::SeqCst)
    }
}
