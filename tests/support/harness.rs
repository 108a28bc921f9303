//! Small tools for driving routers in tests: send a request, read the reply,
//! hold a handler at a gate, count origin calls.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use super::deadline::{eventually, spawn, within, Lazy, Spawned};

/// A response, fully read: from a router in-process or over real HTTP.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The `Cache-Status` header, or "" when absent.
    pub fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a 4xx JSON error answer and returns its message.
    pub fn error_message(&self) -> String {
        assert!(
            self.status.is_client_error(),
            "expected a 4xx, got {} with body {:?}",
            self.status,
            self.text()
        );
        let json = self.json();
        match json.get("error") {
            Some(Value::String(message)) => message.clone(),
            _ => panic!("expected {{\"error\": \"...\"}}, got {json}"),
        }
    }

    /// The `ttl=` of the Cache-Status.
    pub fn ttl(&self) -> i64 {
        let status = self.cache_status();
        let ttl = status
            .split("; ")
            .find_map(|param| param.strip_prefix("ttl="))
            .unwrap_or_else(|| panic!("no ttl in {status:?}"));
        ttl.parse()
            .unwrap_or_else(|_| panic!("bad ttl in {status:?}"))
    }

    /// A fresh hit: answered from the cache with nothing forwarded (a stale
    /// answer carries `fwd=stale`).
    pub fn is_hit(&self) -> bool {
        let status = self.cache_status();
        status.contains("; hit") && !status.contains("fwd=")
    }
}

/// Sends `request` through `app` and reads the whole reply, within the
/// [`DEADLINE`](super::deadline::DEADLINE).
#[track_caller]
pub fn send(app: &Router, request: Request<Body>) -> impl Future<Output = Reply> {
    let what = format!(
        "request {} {} never answered",
        request.method(),
        request.uri()
    );
    let app = app.clone();
    within(what, async move {
        let response = app.oneshot(request).await.expect("router is infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body reads").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn get_with(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[track_caller]
pub fn get_reply(app: &Router, uri: &str) -> impl Future<Output = Reply> {
    send(app, get(uri))
}

/// Sends `GET uri` from a task of its own; awaiting it is bounded (see
/// [`Spawned`]).
pub fn spawn_get(app: &Router, uri: &'static str) -> Spawned<Reply> {
    let app = app.clone();
    spawn(format!("request GET {uri} never answered"), async move {
        get_reply(&app, uri).await
    })
}

/// Counts calls to a handler.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// Counts one call and returns its 1-based number.
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Holds handlers until the test opens it, and lets the test wait until a
/// given number of handlers have arrived. No sleeps: the test decides every
/// interleaving.
#[derive(Clone)]
pub struct Gate {
    entered: Arc<Semaphore>,
    open: Arc<watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            entered: Arc::new(Semaphore::new(0)),
            open: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl Gate {
    /// Called by a handler: announces arrival, then waits until open.
    pub async fn pass(&self) {
        self.entered.add_permits(1);
        let mut rx = self.open.subscribe();
        rx.wait_for(|open| *open).await.expect("gate lives");
    }

    /// Waits until `n` more handlers have arrived at the gate.
    #[track_caller]
    pub fn arrived(&self, n: u32) -> impl Future<Output = ()> + '_ {
        let entered = &self.entered;
        let what = Lazy(move || {
            let arrived = entered.available_permits();
            format!("only {arrived} of {n} handlers reached the gate")
        });
        let arrival = within(what, entered.acquire_many(n));
        async move { arrival.await.expect("gate lives").forget() }
    }

    pub fn open(&self) {
        self.open.send_replace(true);
    }

    pub fn close(&self) {
        self.open.send_replace(false);
    }
}

/// Waits (bounded) until `uri` is answered as a fresh hit.
#[track_caller]
pub fn wait_for_hit(app: &Router, uri: &str) -> impl Future<Output = ()> {
    let (app, uri) = (app.clone(), uri.to_owned());
    eventually(format!("{uri} is a hit"), move || {
        let (app, uri) = (app.clone(), uri.clone());
        async move { get_reply(&app, &uri).await.is_hit() }
    })
}

/// Waits until exactly `n` requests are waiting on a flight: the test then
/// knows they joined before it lets the leader go on.
#[track_caller]
pub fn until_waiting(cache: &tagcache::Cache, n: usize) -> impl Future<Output = ()> + '_ {
    let what = Lazy(move || {
        let waiting = cache.waiting_requests();
        format!("{n} requests waiting on a flight ({waiting} waiting at the deadline)")
    });
    eventually(what, move || async move { cache.waiting_requests() == n })
}
