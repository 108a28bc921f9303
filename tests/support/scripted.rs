//! A scripted origin for the origin-mode cases (`tests/suites/origin.rs`):
//! it answers from a script, records every request it receives (to check
//! the conditional headers a cache sends), and can hold requests at a gate.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::deadline::{eventually, Lazy};
use super::harness::{get, send, Gate, Reply};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use http::{HeaderMap, Method};
use tagcache::{Cache, CacheLayer, Freshness};

/// What the origin received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
}

/// A response the origin will give: status, headers, body.
pub type Scripted = (u16, Vec<(&'static str, String)>, &'static str);

/// An origin that answers from a script (the next scripted response, or
/// the last one again), records every request, and can hold requests at a
/// gate.
#[derive(Clone, Default)]
pub struct Origin {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    gate: Arc<Mutex<Option<Gate>>>,
}

impl Origin {
    pub fn answers(&self, responses: impl IntoIterator<Item = Scripted>) {
        *self.script.lock().unwrap() = responses.into_iter().collect();
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn calls_to(&self, method: Method) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.method == method).count()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("a call")
    }

    pub fn hold_at(&self, gate: Gate) {
        *self.gate.lock().unwrap() = Some(gate);
    }

    async fn handle(self, request: Request) -> Response {
        let seen = Seen {
            method: request.method().clone(),
            uri: request.uri().to_string(),
            headers: request.headers().clone(),
        };
        self.seen.lock().unwrap().push(seen);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.pass().await;
        }
        let (status, headers, body) = {
            let mut script = self.script.lock().unwrap();
            match script.len() {
                0 => (200, Vec::new(), "unscripted"),
                1 => script.front().cloned().unwrap(),
                _ => script.pop_front().unwrap(),
            }
        };
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(name, value);
        }
        response.body(Body::from(body)).unwrap()
    }
}

/// A whole router behind one origin-mode layer, so unsafe methods reach it.
pub fn origin_app(
    cache: &Cache,
    configure: impl FnOnce(CacheLayer) -> CacheLayer,
) -> (Router, Origin) {
    let origin = Origin::default();
    let handler = origin.clone();
    let layer = configure(cache.layer("origin").freshness(Freshness::Origin));
    let router = Router::new()
        .fallback(move |request: Request| handler.clone().handle(request))
        .layer(layer);
    (router, origin)
}

pub fn h(name: &'static str, value: impl Into<String>) -> (&'static str, String) {
    (name, value.into())
}

pub fn ok(headers: Vec<(&'static str, String)>, body: &'static str) -> Scripted {
    (200, headers, body)
}

/// An HTTP date `offset` seconds from now (negative: in the past).
pub fn date(offset: i64) -> String {
    let now = SystemTime::now();
    let at = match offset {
        o if o >= 0 => now + Duration::from_secs(o as u64),
        o => now - Duration::from_secs(o.unsigned_abs()),
    };
    httpdate::fmt_http_date(at)
}

pub fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

pub fn age(reply: &Reply) -> u64 {
    header(reply, "age").parse().expect("an Age")
}

/// Sends `request` and waits until what it fills is in the store (with a
/// store that writes asynchronously, the next request would otherwise join
/// the fill's flight instead of finding the entry).
pub async fn ask(app: &Router, cache: &Cache, request: Request<Body>) -> Reply {
    let reply = send(app, request).await;
    settled(cache).await;
    reply
}

/// Waits until no fill is in progress on `cache`.
#[track_caller]
pub fn settled(cache: &Cache) -> impl std::future::Future<Output = ()> + '_ {
    let what = Lazy(move || {
        let fills = cache.fills_in_progress();
        format!("every fill stored ({fills} in progress at the deadline)")
    });
    eventually(what, move || async move { cache.fills_in_progress() == 0 })
}

pub async fn get_twice(app: &Router, cache: &Cache, uri: &str) -> (Reply, Reply) {
    let first = ask(app, cache, get(uri)).await;
    let second = ask(app, cache, get(uri)).await;
    (first, second)
}

pub fn header_of<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

pub fn header_in(seen: &Seen, name: &str) -> String {
    header_of(seen, name).to_owned()
}

pub fn request(method: Method, uri: &str) -> http::Request<Body> {
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "shop.example")
        .body(Body::from("payload"))
        .unwrap()
}

pub async fn fill(app: &Router, cache: &Cache, uri: &str) {
    ask(app, cache, request(Method::GET, uri)).await;
    let again = ask(app, cache, request(Method::GET, uri)).await;
    assert!(again.is_hit(), "{uri} is stored");
}
