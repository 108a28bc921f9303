//! End-to-end tests of the `proxy` example over real HTTP on loopback: a
//! scripted origin (an axum router that counts its calls per method and
//! path and records the request heads it received), the proxy's router
//! from `examples/proxy/app.rs` served in-process with `app::serve`, and
//! once the example binary itself. Assertions are on statuses, headers,
//! bodies and origin counts, never on timing.

#[path = "../examples/proxy/app.rs"]
mod app;
#[path = "../examples/proxy/args.rs"]
mod args;
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tagcache::Cache;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use app::ProxyConfig;
use support::deadline::{backstop, spawn, within};
use support::examples::{example_binary, start_example};
use support::harness::{Gate, Reply};
use support::http::Server;

/// The admin token of every proxy here.
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// Long enough never to fire in a test that does not wait for it.
const GENEROUS: Duration = Duration::from_secs(60);
/// What `/lastmod` says it was last modified.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
/// The size of `/big`: over the cache's 1 MiB body limit.
const BIG: usize = 5 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The scripted origin

/// What one request to the origin looked like.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
}

/// The origin's state: counts, request heads, and the gates its slow
/// answers wait at.
struct OriginState {
    calls: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    /// 304s sent.
    not_modified: Mutex<usize>,
    /// `/stream` holds the rest of its body here.
    gate: Gate,
    /// `/echo` reports here how many bytes its first body frame had.
    first_frame: mpsc::UnboundedSender<usize>,
}

struct Origin {
    server: Server,
    state: Arc<OriginState>,
    first_frame: tokio::sync::Mutex<mpsc::UnboundedReceiver<usize>>,
}

impl Origin {
    async fn start() -> Origin {
        let (first_frame, first_frame_rx) = mpsc::unbounded_channel();
        let state = Arc::new(OriginState {
            calls: Mutex::default(),
            seen: Mutex::default(),
            not_modified: Mutex::default(),
            gate: Gate::default(),
            first_frame,
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        Origin {
            server: Server::serve(router).await,
            state,
            first_frame: tokio::sync::Mutex::new(first_frame_rx),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// How often `method path` reached the origin.
    fn calls(&self, method: Method, path: &str) -> usize {
        let calls = self.state.calls.lock().unwrap();
        calls.get(&format!("{method} {path}")).copied().unwrap_or(0)
    }

    /// The request heads `method path` arrived with, in order.
    fn seen(&self, method: Method, path: &str) -> Vec<HeaderMap> {
        let seen = self.state.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.method == method && s.path == path)
            .map(|s| s.headers.clone())
            .collect()
    }

    fn not_modified(&self) -> usize {
        *self.state.not_modified.lock().unwrap()
    }
}

/// A body of `len` bytes that is not one short pattern repeated, so a
/// chunk lost, repeated or reordered shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i % 251) ^ (i / 4093)) as u8).collect()
}

fn response(status: StatusCode, headers: &[(&str, &str)], body: Body) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

/// The origin: what each path answers.
async fn handle(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();
    let call = {
        let mut calls = state.calls.lock().unwrap();
        let count = calls.entry(format!("{method} {path}")).or_default();
        *count += 1;
        *count
    };
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
    });
    let text = |s: String| Body::from(s);
    let ok = StatusCode::OK;
    match (method, path.as_str()) {
        (Method::GET, "/fresh") => response(
            ok,
            &[("cache-control", "max-age=60")],
            text(format!("fresh {call}")),
        ),
        (Method::GET, "/plain") => response(ok, &[], text(format!("plain {call}"))),
        (Method::GET, "/tagged") => response(
            ok,
            &[
                ("cache-control", "max-age=60"),
                ("surrogate-key", "product:7 catalog"),
            ],
            text(format!("tagged {call}")),
        ),
        (Method::GET, "/items/1") => response(
            ok,
            &[("cache-control", "max-age=60")],
            text(format!("item {call}")),
        ),
        (_, "/items/1") => response(StatusCode::NO_CONTENT, &[], Body::empty()),
        (Method::POST, "/items") => response(
            StatusCode::CREATED,
            &[("location", "/items/1")],
            Body::empty(),
        ),
        (Method::GET, "/etag") => {
            let validators = [("cache-control", "max-age=0"), ("etag", "\"v1\"")];
            if parts.headers.get(header::IF_NONE_MATCH) == Some(&HeaderValue::from_static("\"v1\""))
            {
                *state.not_modified.lock().unwrap() += 1;
                return response(StatusCode::NOT_MODIFIED, &validators, Body::empty());
            }
            response(ok, &validators, text("the validated body".to_owned()))
        }
        (Method::GET, "/lastmod") => {
            let validators = [
                ("cache-control", "no-cache"),
                ("last-modified", LAST_MODIFIED),
            ];
            let since = parts.headers.get(header::IF_MODIFIED_SINCE);
            if since == Some(&HeaderValue::from_static(LAST_MODIFIED)) {
                *state.not_modified.lock().unwrap() += 1;
                return response(StatusCode::NOT_MODIFIED, &validators, Body::empty());
            }
            response(ok, &validators, text("last modified long ago".to_owned()))
        }
        (Method::GET, "/big") => {
            // Streamed in 64 KiB chunks, no Content-Length.
            let chunks: Vec<Result<Bytes, Infallible>> = pattern(BIG)
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = Body::from_stream(stream::iter(chunks));
            response(ok, &[("cache-control", "max-age=60")], body)
        }
        (Method::GET, "/big-known") => response(
            ok,
            &[("cache-control", "max-age=60")],
            Body::from(pattern(BIG)),
        ),
        (Method::GET, "/stream") => {
            // The first part at once, the rest once the test opens the gate.
            let gate = state.gate.clone();
            let body = stream::unfold(0, move |step| {
                let gate = gate.clone();
                async move {
                    let chunk = match step {
                        0 => "first;",
                        1 => {
                            gate.pass().await;
                            "second."
                        }
                        _ => return None,
                    };
                    Some((
                        Ok::<_, Infallible>(Bytes::from_static(chunk.as_bytes())),
                        step + 1,
                    ))
                }
            });
            response(
                ok,
                &[("cache-control", "max-age=60")],
                Body::from_stream(body),
            )
        }
        (Method::POST, "/echo") => {
            // Reports its first frame as soon as it has it, then echoes
            // the whole body.
            let mut body = body;
            let mut received = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.expect("request body").into_data() else {
                    continue;
                };
                if received.is_empty() && !data.is_empty() {
                    let _ = state.first_frame.send(data.len());
                }
                received.extend_from_slice(&data);
            }
            response(ok, &[("cache-control", "no-store")], Body::from(received))
        }
        (Method::GET, "/headers") => response(
            ok,
            &[
                ("cache-control", "no-store"),
                ("connection", "x-bar"),
                ("x-bar", "for the next hop only"),
                ("keep-alive", "timeout=5"),
                ("proxy-authenticate", "Basic realm=\"proxy\""),
                ("x-end-to-end", "kept"),
            ],
            text("headers".to_owned()),
        ),
        (Method::GET, "/slow") => std::future::pending().await,
        _ => response(StatusCode::NOT_FOUND, &[], Body::empty()),
    }
}

// ---------------------------------------------------------------------------
// The proxy

/// The proxy's router served in-process on 127.0.0.1:0, and a client.
struct Proxy {
    client: Server,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Deref for Proxy {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.client
    }
}

impl Proxy {
    async fn start(origin: SocketAddr, origin_timeout: Duration) -> Proxy {
        let app = app::router(ProxyConfig {
            origin: origin.to_string().parse().expect("an authority"),
            origin_timeout,
            cache: Cache::builder().cache_name("proxy").build(),
            admin_token: TOKEN.to_owned(),
        })
        .expect("build the proxy");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            app::serve(listener, app, std::future::pending())
                .await
                .expect("serve");
        });
        Proxy {
            client: Server::connect(addr),
            task,
        }
    }

    /// `GET path` with extra request headers.
    #[track_caller]
    fn get_with<'a>(
        &'a self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> impl std::future::Future<Output = Reply> + 'a {
        let mut request = hyper::Request::get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send_request(request.body(Full::default()).unwrap())
    }

    /// Invalidates `tags` through the admin API.
    async fn invalidate(&self, tags: &[&str]) {
        let body = serde_json::json!({ "tags": tags }).to_string();
        let reply = self
            .send(
                Method::POST,
                "/_tagcache/invalidate",
                Some(TOKEN),
                Some(&body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "invalidate: {}", reply.text());
    }
}

/// Starts an origin and a proxy in front of it.
async fn start() -> (Origin, Proxy) {
    let origin = Origin::start().await;
    let proxy = Proxy::start(origin.addr(), GENEROUS).await;
    (origin, proxy)
}

#[track_caller]
fn assert_hit(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: status");
    assert!(
        reply.is_hit(),
        "{what}: expected a hit, cache-status {:?}",
        reply.cache_status()
    );
    assert!(reply.headers.contains_key("age"), "{what}: hits carry Age");
}

#[track_caller]
fn assert_forwarded(reply: &Reply, what: &str) {
    assert!(
        reply.cache_status().starts_with("proxy; fwd="),
        "{what}: expected the origin to answer, cache-status {:?}",
        reply.cache_status()
    );
}

/// A JSON error body `{"error": ..., "origin": ...}` with `status`.
#[track_caller]
fn assert_json_error(reply: &Reply, status: StatusCode, origin: &str) -> String {
    assert_eq!(reply.status, status, "body {:?}", reply.text());
    assert_eq!(
        reply.headers.get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/json"))
    );
    let json = reply.json();
    assert_eq!(json["origin"], origin, "{json}");
    let message = json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {json}"));
    assert!(!message.is_empty());
    message.to_owned()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a text header"))
}

// ---------------------------------------------------------------------------
// Caching

#[tokio::test]
async fn a_response_with_max_age_is_served_from_the_cache() {
    backstop(async {
        let (origin, proxy) = start().await;
        let first = proxy.get("/fresh").await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.text(), "fresh 1");
        assert_forwarded(&first, "first GET");
        assert!(
            first.cache_status().contains("stored"),
            "{:?}",
            first.cache_status()
        );

        let second = proxy.get("/fresh").await;
        assert_hit(&second, "second GET");
        assert_eq!(second.text(), "fresh 1");
        assert_eq!(header(&second.headers, "cache-control"), Some("max-age=60"));
        assert_eq!(origin.calls(Method::GET, "/fresh"), 1);
    })
    .await;
}

#[tokio::test]
async fn a_response_without_freshness_is_not_stored() {
    backstop(async {
        let (origin, proxy) = start().await;
        let first = proxy.get("/plain").await;
        let second = proxy.get("/plain").await;
        assert_eq!(
            (first.text(), second.text()),
            ("plain 1".into(), "plain 2".into())
        );
        assert_forwarded(&second, "second GET");
        assert_eq!(origin.calls(Method::GET, "/plain"), 2);
    })
    .await;
}

#[tokio::test]
async fn surrogate_keys_tag_entries_and_never_reach_the_client() {
    backstop(async {
        let (origin, proxy) = start().await;
        let first = proxy.get("/tagged").await;
        assert_eq!(first.text(), "tagged 1");
        assert!(
            !first.headers.contains_key("surrogate-key"),
            "Surrogate-Key is for the cache: {:?}",
            first.headers
        );
        let second = proxy.get("/tagged").await;
        assert_hit(&second, "second GET");
        assert!(!second.headers.contains_key("surrogate-key"));

        // Another tag leaves it alone; one of its own purges it.
        proxy.invalidate(&["product:8"]).await;
        assert_hit(&proxy.get("/tagged").await, "after purging another tag");
        assert_eq!(origin.calls(Method::GET, "/tagged"), 1);

        proxy.invalidate(&["catalog"]).await;
        let purged = proxy.get("/tagged").await;
        assert_forwarded(&purged, "after purging its tag");
        assert_eq!(purged.text(), "tagged 2");
        assert_eq!(origin.calls(Method::GET, "/tagged"), 2);
        assert_hit(&proxy.get("/tagged").await, "refilled");

        // A request with a cookie goes to the origin, and still never sees
        // the tags.
        let with_cookie = proxy.get_with("/tagged", &[("cookie", "session=1")]).await;
        assert!(
            with_cookie.cache_status().contains("fwd=bypass"),
            "{:?}",
            with_cookie.cache_status()
        );
        assert!(!with_cookie.headers.contains_key("surrogate-key"));
        assert_eq!(origin.calls(Method::GET, "/tagged"), 3);
    })
    .await;
}

#[tokio::test]
async fn unsafe_methods_invalidate_their_uri_and_location() {
    backstop(async {
        let (origin, proxy) = start().await;
        assert_eq!(proxy.get("/items/1").await.text(), "item 1");
        assert_hit(&proxy.get("/items/1").await, "second GET");

        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let before = origin.calls(Method::GET, "/items/1");
            let changed = proxy
                .send(method.clone(), "/items/1", None, Some("{}"))
                .await;
            assert_eq!(changed.status, StatusCode::NO_CONTENT, "{method}");
            assert_eq!(
                origin.calls(method.clone(), "/items/1"),
                1,
                "{method} went through"
            );
            let after = proxy.get("/items/1").await;
            assert_forwarded(&after, &format!("GET after {method}"));
            assert_eq!(
                origin.calls(Method::GET, "/items/1"),
                before + 1,
                "{method}"
            );
            assert_hit(&proxy.get("/items/1").await, "refilled");
        }

        // A POST elsewhere whose answer names the item in `Location`.
        let created = proxy.send(Method::POST, "/items", None, Some("{}")).await;
        assert_eq!(created.status, StatusCode::CREATED);
        assert_forwarded(&proxy.get("/items/1").await, "GET after POST /items");
        assert_eq!(origin.calls(Method::GET, "/items/1"), 6);
    })
    .await;
}

#[tokio::test]
async fn stale_entries_are_revalidated_with_conditional_requests() {
    backstop(async {
        let (origin, proxy) = start().await;

        // max-age=0 with an ETag: stored, and revalidated on every use.
        let first = proxy.get("/etag").await;
        assert_eq!(first.text(), "the validated body");
        let seen = origin.seen(Method::GET, "/etag");
        assert!(!seen[0].contains_key(header::IF_NONE_MATCH));
        let second = proxy.get("/etag").await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(
            second.text(),
            "the validated body",
            "the full body after a 304"
        );
        assert_eq!(header(&second.headers, "etag"), Some("\"v1\""));
        let seen = origin.seen(Method::GET, "/etag");
        assert_eq!(seen.len(), 2);
        assert_eq!(header(&seen[1], "if-none-match"), Some("\"v1\""));
        assert_eq!(origin.not_modified(), 1);

        // no-cache with Last-Modified: If-Modified-Since.
        assert_eq!(proxy.get("/lastmod").await.text(), "last modified long ago");
        let again = proxy.get("/lastmod").await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.text(), "last modified long ago");
        let seen = origin.seen(Method::GET, "/lastmod");
        assert_eq!(seen.len(), 2);
        assert_eq!(header(&seen[1], "if-modified-since"), Some(LAST_MODIFIED));
        assert_eq!(origin.not_modified(), 2);

        // A client's own condition is answered from the revalidated entry.
        let conditional = proxy
            .get_with("/etag", &[("if-none-match", "\"v1\"")])
            .await;
        assert_eq!(conditional.status, StatusCode::NOT_MODIFIED);
        assert!(conditional.body.is_empty());
    })
    .await;
}

// ---------------------------------------------------------------------------
// Forwarding

#[tokio::test]
async fn large_bodies_stream_through_intact() {
    backstop(async {
        let (origin, proxy) = start().await;
        let expected = pattern(BIG);
        for path in ["/big", "/big-known"] {
            for round in 1..=2 {
                let reply = proxy.get(path).await;
                assert_eq!(reply.status, StatusCode::OK, "{path}");
                assert_eq!(reply.body.len(), BIG, "{path}");
                assert!(reply.body == expected, "{path}: the body arrived changed");
                // Over max_body_bytes: never stored, so every GET is the origin's.
                assert_forwarded(&reply, path);
                assert_eq!(origin.calls(Method::GET, path), round, "{path}");
            }
        }

        let posted = pattern(3 * 1024 * 1024 + 17);
        let request = hyper::Request::post(format!("http://{}/echo", proxy.addr))
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::from(posted.clone())))
            .unwrap();
        let echoed = proxy.send_request(request).await;
        assert_eq!(echoed.status, StatusCode::OK);
        assert_eq!(echoed.body.len(), posted.len());
        assert!(echoed.body == posted, "the POST body arrived changed");
        let seen = origin.seen(Method::POST, "/echo");
        assert_eq!(
            header(&seen[0], "content-length"),
            Some(posted.len().to_string().as_str())
        );
    })
    .await;
}

/// Neither body is buffered: the client reads the start of a response the
/// origin has not finished, and the origin reads the start of a request
/// body the client has not finished.
#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() {
    backstop(async {
        let (origin, proxy) = start().await;
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();

        let request = hyper::Request::get(format!("http://{}/stream", proxy.addr))
            .body(Body::empty())
            .unwrap();
        let response = within("GET /stream never answered", client.request(request))
            .await
            .expect("GET /stream");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let mut received = Vec::new();
        within("the first part never arrived", async {
            while received.len() < "first;".len() {
                let frame = body.frame().await.expect("more body").expect("a frame");
                received.extend_from_slice(&frame.into_data().unwrap_or_default());
            }
        })
        .await;
        assert_eq!(received, b"first;", "the origin holds the rest");
        origin.state.gate.open();
        let rest = within("the rest never arrived", body.collect())
            .await
            .expect("the rest")
            .to_bytes();
        received.extend_from_slice(&rest);
        assert_eq!(received, b"first;second.");
        // Stored once it had streamed whole.
        let again = proxy.get("/stream").await;
        assert_hit(&again, "GET /stream again");
        assert_eq!(again.text(), "first;second.");

        // The request body: the origin sees the first part before the
        // client sends the second.
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let chunks = stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
        });
        let request = hyper::Request::post(format!("http://{}/echo", proxy.addr))
            .body(Body::from_stream(chunks))
            .unwrap();
        let posting = spawn("POST /echo never answered", client.request(request));
        let first = pattern(64 * 1024);
        tx.send(Bytes::from(first.clone())).unwrap();
        let mut first_frame = origin.first_frame.lock().await;
        let got = within("the origin never got the first part", first_frame.recv())
            .await
            .expect("a first frame");
        assert!(got > 0);
        let second = pattern(100_000);
        tx.send(Bytes::from(second.clone())).unwrap();
        drop(tx);
        let response = posting.await.expect("task").expect("POST /echo");
        assert_eq!(response.status(), StatusCode::OK);
        let echoed = within("the echo never arrived", response.into_body().collect())
            .await
            .expect("the echo")
            .to_bytes();
        assert!(
            echoed == [first, second].concat(),
            "the streamed body arrived changed"
        );
    })
    .await;
}

#[tokio::test]
async fn hop_by_hop_fields_stay_behind_and_forwarded_fields_are_added() {
    backstop(async {
        let (origin, proxy) = start().await;
        let reply = proxy
            .get_with(
                "/headers",
                &[
                    ("connection", "x-foo, keep-alive"),
                    ("x-foo", "for the next hop only"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-connection", "keep-alive"),
                    ("te", "trailers"),
                    ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-host", "made.up.example"),
                    ("x-end-to-end", "kept"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);

        let seen = origin.seen(Method::GET, "/headers");
        let seen = &seen[0];
        for name in [
            "connection",
            "x-foo",
            "keep-alive",
            "proxy-connection",
            "te",
            "proxy-authorization",
        ] {
            assert!(
                !seen.contains_key(name),
                "{name} reached the origin: {seen:?}"
            );
        }
        let proxy_host = proxy.addr.to_string();
        assert_eq!(header(seen, "x-end-to-end"), Some("kept"));
        assert_eq!(
            header(seen, "host"),
            Some(origin.addr().to_string().as_str())
        );
        assert_eq!(
            header(seen, "x-forwarded-for"),
            Some("203.0.113.9, 127.0.0.1")
        );
        assert_eq!(header(seen, "x-forwarded-host"), Some(proxy_host.as_str()));
        assert_eq!(header(seen, "x-forwarded-proto"), Some("http"));
        assert_eq!(
            header(seen, "forwarded"),
            Some(format!("for=127.0.0.1;host=\"{proxy_host}\";proto=http").as_str())
        );
        assert_eq!(header(seen, "via"), Some("1.1 tagcache"));

        for name in ["x-bar", "keep-alive", "proxy-authenticate"] {
            assert!(
                !reply.headers.contains_key(name),
                "{name} reached the client: {:?}",
                reply.headers
            );
        }
        assert_eq!(header(&reply.headers, "x-end-to-end"), Some("kept"));
        assert_eq!(header(&reply.headers, "via"), Some("1.1 tagcache"));

        // Without an earlier proxy, the client's address alone.
        proxy.get("/headers").await;
        let seen = origin.seen(Method::GET, "/headers");
        assert_eq!(header(&seen[1], "x-forwarded-for"), Some("127.0.0.1"));
    })
    .await;
}

#[tokio::test]
async fn an_origin_that_refuses_connections_is_a_502() {
    backstop(async {
        // A port nothing listens on any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let closed = listener.local_addr().expect("local address");
        drop(listener);
        let proxy = Proxy::start(closed, GENEROUS).await;
        let reply = proxy.get("/fresh").await;
        let message =
            assert_json_error(&reply, StatusCode::BAD_GATEWAY, &format!("http://{closed}"));
        assert!(message.contains("connect"), "{message}");
    })
    .await;
}

#[tokio::test]
async fn an_origin_slower_than_the_timeout_is_a_504() {
    backstop(async {
        let origin = Origin::start().await;
        let proxy = Proxy::start(origin.addr(), Duration::from_secs(1)).await;
        let reply = proxy.get("/slow").await;
        assert_json_error(
            &reply,
            StatusCode::GATEWAY_TIMEOUT,
            &format!("http://{}", origin.addr()),
        );
        assert_eq!(origin.calls(Method::GET, "/slow"), 1);
        // The proxy still forwards.
        assert_eq!(proxy.get("/fresh").await.text(), "fresh 1");
    })
    .await;
}

// ---------------------------------------------------------------------------
// The binary and its flags

#[tokio::test]
async fn the_example_binary_proxies_with_its_flags() {
    let binary = example_binary("proxy").await;
    backstop(async {
        let origin = Origin::start().await;
        let origin_url = format!("http://{}", origin.addr());
        let (_child, addr) = start_example(
            &binary,
            "proxy",
            &[
                "--origin",
                &origin_url,
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                TOKEN,
                "--origin-timeout=1",
            ],
        )
        .await;
        let proxy = Server::connect(addr);

        assert_forwarded(&proxy.get("/tagged").await, "first GET");
        assert_hit(&proxy.get("/tagged").await, "second GET");
        let seen = origin.seen(Method::GET, "/tagged");
        assert_eq!(header(&seen[0], "x-forwarded-for"), Some("127.0.0.1"));

        let unauthorized = proxy
            .send(
                Method::POST,
                "/_tagcache/invalidate",
                None,
                Some(r#"{"tags": ["catalog"]}"#),
            )
            .await;
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
        let purge = proxy
            .send(
                Method::POST,
                "/_tagcache/invalidate",
                Some(TOKEN),
                Some(r#"{"tags": ["catalog"]}"#),
            )
            .await;
        assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
        assert_forwarded(&proxy.get("/tagged").await, "GET after the purge");
        assert_eq!(origin.calls(Method::GET, "/tagged"), 2);

        let slow = proxy.get("/slow").await;
        assert_json_error(&slow, StatusCode::GATEWAY_TIMEOUT, &origin_url);
    })
    .await;
}

/// A GET with the `Host` a load balancer would send every instance (the
/// default key includes it).
#[cfg(feature = "redis")]
async fn get_as_host(server: &Server, path: &str) -> Reply {
    let request = hyper::Request::get(format!("http://{}{path}", server.addr))
        .header(header::HOST, "shop.example")
        .body(Full::default())
        .unwrap();
    server.send_request(request).await
}

/// With `--redis`, two proxy processes (one with `--local-tier`) share
/// their entries, and a write through one reaches the other's readers.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_example_binary_shares_entries_over_redis() {
    let binary = example_binary("proxy").await;
    backstop(async {
        let Some(redis) = support::redis_server::RedisServer::start() else {
            return;
        };
        let origin = Origin::start().await;
        let origin_url = format!("http://{}", origin.addr());
        let url = redis.url();
        let args = [
            "--origin",
            &origin_url,
            "--listen",
            "127.0.0.1:0",
            "--redis",
            &url,
        ];
        let (_a, addr_a) = start_example(&binary, "proxy", &args).await;
        let tiered = [&args[..], &["--local-tier"]].concat();
        let (_b, addr_b) = start_example(&binary, "proxy", &tiered).await;
        let (a, b) = (Server::connect(addr_a), Server::connect(addr_b));

        assert_forwarded(&get_as_host(&a, "/items/1").await, "first GET, on A");
        let shared = get_as_host(&b, "/items/1").await;
        assert_hit(&shared, "the same GET on B");
        assert_eq!(shared.text(), "item 1");
        assert_eq!(origin.calls(Method::GET, "/items/1"), 1);

        let request = hyper::Request::put(format!("http://{addr_b}/items/1"))
            .header(header::HOST, "shop.example")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        assert_eq!(b.send_request(request).await.status, StatusCode::NO_CONTENT);
        // B's own readers see the write at once; A's once the invalidation
        // has reached it.
        assert_eq!(get_as_host(&b, "/items/1").await.text(), "item 2");
        let a = &a;
        support::deadline::eventually(
            "A no longer serves the entry from before the PUT",
            || async move { get_as_host(a, "/items/1").await.text() != "item 1" },
        )
        .await;
    })
    .await;
}

/// With `--database`, the origin's database invalidates: a trigger (here a
/// direct call) of `tagcache_invalidate` purges the tagged entries.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_example_binary_applies_invalidations_from_postgres() {
    let Some(pg) = support::postgres_server::PostgresServer::start() else {
        return;
    };
    let binary = example_binary("proxy").await;
    backstop(async {
        let (client, connection) = within(
            "connecting to the test server",
            tokio_postgres::connect(&pg.conninfo(), tokio_postgres::NoTls),
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        within(
            "installing the SQL",
            tagcache::postgres::install(&client, "public"),
        )
        .await
        .expect("install");

        let origin = Origin::start().await;
        let origin_url = format!("http://{}", origin.addr());
        let url = pg.url();
        let args = [
            "--origin",
            &origin_url,
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--database",
            &url,
        ];
        let (_child, addr) = start_example(&binary, "proxy", &args).await;
        let proxy = &Server::connect(addr);
        // Until its listener is in sync every lookup misses.
        support::deadline::eventually("the proxy serves hits", || async move {
            proxy.get("/tagged").await.is_hit()
        })
        .await;
        let before = origin.calls(Method::GET, "/tagged");

        within(
            "SELECT tagcache_invalidate",
            client.batch_execute("SELECT tagcache_invalidate(ARRAY['catalog'])"),
        )
        .await
        .expect("invalidate");
        support::deadline::eventually("the proxy logged the invalidation", || async move {
            let log = proxy.get_as("/_tagcache/invalidations", TOKEN).await.json();
            log["invalidations"]
                .as_array()
                .is_some_and(|all| all.iter().any(|i| i["tags"][0] == "catalog"))
        })
        .await;
        assert_forwarded(
            &proxy.get("/tagged").await,
            "GET after the database invalidated it",
        );
        assert_eq!(origin.calls(Method::GET, "/tagged"), before + 1);
    })
    .await;
}

fn parse(args: &[&str]) -> Result<args::Command, String> {
    args::parse(args.iter().map(|a| a.to_string()), args::Env::default())
}

#[test]
fn flags_parse_with_defaults() {
    let args::Command::Run(run) = parse(&["--origin", "http://127.0.0.1:8080"]).unwrap() else {
        panic!("a run");
    };
    assert_eq!(run.origin.authority.as_str(), "127.0.0.1:8080");
    assert_eq!(run.listen, "127.0.0.1:3001".parse().unwrap());
    assert_eq!(run.origin_timeout, Duration::from_secs(30));
    assert_eq!(
        (run.redis, run.local_tier, run.database, run.admin_token),
        (None, false, None, None)
    );

    let args::Command::Run(run) = parse(&[
        "--origin=http://app.internal/",
        "--listen=0.0.0.0:80",
        "--origin-timeout",
        "5",
        "--redis",
        "redis://r/",
        "--local-tier",
        "--admin-token",
        TOKEN,
    ])
    .unwrap() else {
        panic!("a run");
    };
    assert_eq!(run.origin.display(), "http://app.internal");
    assert_eq!(run.listen, "0.0.0.0:80".parse().unwrap());
    assert_eq!(run.origin_timeout, Duration::from_secs(5));
    assert_eq!(run.redis.as_deref(), Some("redis://r/"));
    assert!(run.local_tier);
    assert_eq!(run.admin_token.as_deref(), Some(TOKEN));
    assert_eq!(parse(&["--help"]).unwrap(), args::Command::Help);
    for flag in [
        "--origin ",
        "--listen ",
        "--origin-timeout ",
        "--redis ",
        "--local-tier",
        "--database ",
        "--admin-token ",
        "--help",
    ] {
        assert!(args::USAGE.contains(flag), "the usage names {flag}");
    }
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let cases: [(&[&str], &str); 10] = [
        (&[], "--origin URL is required"),
        (&["--origin", "https://example.com"], "only http://"),
        (&["--origin", "example.com:80"], "must start with http://"),
        (&["--origin", "http://example.com/api"], "without a path"),
        (&["--origin", "http://example.com/?a=1"], "without a path"),
        (&["--origin", "http://u:p@example.com"], "credentials"),
        (
            &["--origin", "http://h", "--origin-timeout", "0"],
            "--origin-timeout",
        ),
        (&["--origin", "http://h", "--listen", "nowhere"], "--listen"),
        (&["--origin", "http://h", "--bogus"], "unknown argument"),
        (&["--origin"], "--origin needs a value"),
    ];
    for (args, reason) in cases {
        let error = parse(args).expect_err(&format!("{args:?} is refused"));
        assert!(error.contains(reason), "{args:?}: {error}");
    }
}
