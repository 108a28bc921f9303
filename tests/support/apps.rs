//! The routes the cases drive: handlers that count their calls, answer
//! with chosen headers, or block on a [`Gate`] the test controls.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tagcache::{Cache, CacheLayer};

use super::deadline::{eventually, spawn, Spawned};
use super::harness::*;

/// A route whose handler counts calls and answers `body` with `headers`.
pub fn counted(
    cache: &Cache,
    layer: impl FnOnce(tagcache::CacheLayer) -> tagcache::CacheLayer,
    counter: Counter,
    respond: impl Fn(usize, &http::request::Parts) -> Response + Clone + Send + Sync + 'static,
) -> Router {
    let handler = move |request: Request<Body>| {
        let counter = counter.clone();
        let respond = respond.clone();
        async move {
            let n = counter.bump();
            let (parts, _) = request.into_parts();
            respond(n, &parts)
        }
    };
    Router::new().route(
        "/r",
        get(handler.clone())
            .head(handler.clone())
            .post(handler)
            .route_layer(layer(cache.layer("r"))),
    )
}

pub fn plain(n: usize) -> Response {
    format!("body {n}").into_response()
}

/// Identity taken from a bearer token, as an app would after verifying it.
pub fn bearer(parts: &http::request::Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// A handler that answers according to the credentials it sees.
pub fn by_identity(n: usize, parts: &http::request::Parts) -> Response {
    match bearer(parts).as_deref() {
        None => (StatusCode::UNAUTHORIZED, format!("anonymous {n}")).into_response(),
        Some("alice") => format!("alice's data {n}").into_response(),
        Some(_) => (StatusCode::FORBIDDEN, format!("forbidden {n}")).into_response(),
    }
}

/// The list route and the mutation route of a tiny app.
pub fn list_and_mutate(cache: &Cache, calls: Counter, status: StatusCode) -> Router {
    let counter = calls.clone();
    Router::new()
        .route(
            "/list",
            get(move || {
                let counter = counter.clone();
                async move { format!("list {}", counter.bump()) }
            })
            .route_layer(cache.layer("list").tags(|_, _| ["list"])),
        )
        .route(
            "/list/add",
            post(move || async move { (status, "done") })
                .route_layer(cache.invalidate_layer("add").tags(|_, _| ["list"])),
        )
}

/// A body of unknown length, in `chunks` chunks of `size` bytes.
pub fn chunked_body(chunks: usize, size: usize) -> Body {
    let stream =
        futures_util::stream::iter((0..chunks).map(move |i| {
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'a' + i as u8; size]))
        }));
    Body::from_stream(stream)
}

/// Data the origin reads at the start of each call, like a database row.
#[derive(Clone, Default)]
pub struct Db(Arc<AtomicU64>);

impl Db {
    pub fn read(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn write(&self, version: u64) {
        self.0.store(version, Ordering::SeqCst)
    }
}

/// How the gated origin treats each call, by its number.
#[derive(Clone, Copy)]
pub enum GateCalls {
    All,
    FirstOnly,
    None,
}

/// `/r`: reads the db, waits at the gate, answers `v<version> call<n>`,
/// tagged `t`.
pub fn gated(
    cache: &Cache,
    layer: impl FnOnce(CacheLayer) -> CacheLayer,
    db: Db,
    gate: Gate,
    calls: Counter,
    which: GateCalls,
) -> Router {
    gated_with(cache, layer, db, gate, calls, which, |_, body| {
        body.into_response()
    })
}

pub fn gated_with(
    cache: &Cache,
    layer: impl FnOnce(CacheLayer) -> CacheLayer,
    db: Db,
    gate: Gate,
    calls: Counter,
    which: GateCalls,
    respond: fn(usize, String) -> Response,
) -> Router {
    let handler = move || {
        let (db, gate, calls) = (db.clone(), gate.clone(), calls.clone());
        async move {
            let n = calls.bump();
            let version = db.read();
            let wait = match which {
                GateCalls::All => true,
                GateCalls::FirstOnly => n == 1,
                GateCalls::None => false,
            };
            if wait {
                gate.pass().await;
            }
            respond(n, format!("v{version} call{n}"))
        }
    };
    Router::new().route(
        "/r",
        get(handler).route_layer(layer(cache.layer("r").tags(|_, _| ["t"]))),
    )
}

/// Fills `/r` with a short TTL and waits until it has expired.
pub async fn fill_and_expire(app: &Router, gate: &Gate) -> Reply {
    gate.open();
    let filled = get_reply(app, "/r").await;
    gate.arrived(1).await;
    gate.close();
    tokio::time::sleep(Duration::from_millis(250)).await;
    filled
}

/// `/items/{id}`: tagged `item:{id}` and `items` (by the handler, as `Tags`),
/// body `item {id}`; `origin` counts the handler's calls.
pub fn items_app(cache: &tagcache::Cache, origin: Counter) -> Router {
    use axum::extract::Path;
    let handler = move |Path(id): Path<String>| {
        let origin = origin.clone();
        async move {
            origin.bump();
            (
                tagcache::Tags::new([format!("item:{id}"), "items".to_owned()]),
                format!("item {id}"),
            )
        }
    };
    Router::new().route(
        "/items/{id}",
        axum::routing::get(handler).route_layer(
            cache
                .layer("items")
                .ttl(std::time::Duration::from_secs(300)),
        ),
    )
}

/// `/r` answering `call<n>`, tagged `t`.
pub fn counting_app(
    cache: &Cache,
    calls: Counter,
    layer: impl FnOnce(CacheLayer) -> CacheLayer,
) -> Router {
    Router::new().route(
        "/r",
        get(move || {
            let calls = calls.clone();
            async move { format!("call{}", calls.bump()) }
        })
        .route_layer(layer(cache.layer("r").tags(|_, _| ["t"]))),
    )
}

/// Sends requests to [`items_app`]'s `/items/0` to `/items/3` in a loop
/// and checks every answer is the origin's.
pub struct Stream {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    /// (phase when the request started, cache-status)
    pub log: Arc<Mutex<Vec<(u8, String)>>>,
    pub phase: Arc<AtomicU8>,
    task: Spawned<()>,
}

/// The phases a [`Stream`] logs its requests under, set by the test.
pub const UP: u8 = 0;
pub const DOWN: u8 = 1;
pub const BACK: u8 = 2;

impl Stream {
    pub fn start(app: Router) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let phase = Arc::new(AtomicU8::new(UP));
        let task = spawn("the request stream never stopped", {
            let (stop, done, log, phase) = (stop.clone(), done.clone(), log.clone(), phase.clone());
            async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let id = i % 4;
                    i += 1;
                    let started = phase.load(Ordering::SeqCst);
                    let reply = get_reply(&app, &format!("/items/{id}")).await;
                    assert_eq!(reply.status, StatusCode::OK);
                    assert_eq!(reply.text(), format!("item {id}"));
                    log.lock()
                        .unwrap()
                        .push((started, reply.cache_status().to_owned()));
                    done.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            }
        });
        Stream {
            stop,
            done,
            log,
            phase,
            task,
        }
    }

    pub async fn wait_for(&self, more: usize) {
        let target = self.done.load(Ordering::SeqCst) + more;
        let done = self.done.clone();
        eventually("requests keep being answered", move || {
            let done = done.clone();
            async move { done.load(Ordering::SeqCst) >= target }
        })
        .await;
    }

    pub fn hits_in(&self, phase: u8) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, status)| *p == phase && status.contains("; hit"))
            .count()
    }

    pub async fn finish(self) -> Vec<(u8, String)> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("no request failed");
        Arc::try_unwrap(self.log).unwrap().into_inner().unwrap()
    }
}
