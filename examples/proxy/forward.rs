//! The forwarding service: every request the cache does not answer goes
//! to the origin through hyper's pooled client, both bodies streaming.
//!
//! On the way in it removes the hop-by-hop fields (RFC 9110 §7.6.1), sets
//! `Host` to the origin's authority, and says who asked: `X-Forwarded-For`
//! (the client's address appended to any list already there),
//! `X-Forwarded-Host` and `X-Forwarded-Proto`, their standard form
//! `Forwarded` (RFC 7239), and `Via`. On the way out it removes the
//! hop-by-hop fields again. An origin that cannot be reached answers 502,
//! one that sends no response head within the timeout 504, both with a
//! small JSON body.
//!
//! Why `Host` is the origin's: an origin behind a name-based virtual host
//! (or a platform router) answers only for its own name, and links it
//! builds from `X-Forwarded-Host` still name the proxy. The cache keys on
//! the client's `Host` (it sees the request before this service does), so
//! responses built from `X-Forwarded-Host` are never served to another
//! host.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::Service;

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1),
/// besides those `Connection` lists. `Proxy-Connection` is a pre-standard
/// one some clients still send; the `Proxy-Authorization` and
/// `Proxy-Authenticate` pair is meant for this proxy, not the origin.
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// `X-Forwarded-For`: the addresses a request came through, client first.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Host`: the `Host` the client asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Proto`: the scheme the client used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `Forwarded` (RFC 7239).
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What this proxy adds to `Via`.
const VIA: HeaderValue = HeaderValue::from_static("1.1 tagcache");

/// Calls the origin. Cheap to clone: every clone shares the client's
/// connection pool.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    origin: Arc<Origin>,
    timeout: Duration,
}

struct Origin {
    authority: Authority,
    /// `Host` for the origin.
    host: HeaderValue,
    /// `http://authority`, named in error bodies.
    url: String,
}

impl Forwarder {
    /// Forwards to `http://{authority}`; `timeout` bounds the wait for the
    /// response head (connecting included), not the body, which streams
    /// for as long as it takes.
    pub fn new(authority: Authority, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let host = HeaderValue::from_str(authority.as_str())
            .expect("an authority is a valid header value");
        Forwarder {
            client,
            origin: Arc::new(Origin {
                url: format!("http://{authority}"),
                authority,
                host,
            }),
            timeout,
        }
    }

    async fn forward(self, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if parts.method == Method::CONNECT {
            return self.error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not forwarded");
        }
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.origin.authority.clone())
            .path_and_query(target)
            .build()
            .expect("scheme, authority and path make a URI");
        // The client may speak HTTP/2 or 1.0 to us; the origin gets HTTP/1.1.
        parts.version = Version::HTTP_11;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let client_host = parts.headers.get(header::HOST).cloned();
        strip_hop_by_hop(&mut parts.headers);
        add_forwarded(&mut parts.headers, peer, client_host);
        parts.headers.insert(header::HOST, self.origin.host.clone());
        parts.headers.append(header::VIA, VIA);

        let call = self.client.request(Request::from_parts(parts, body));
        let response = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let cause = root_cause(&error);
                tracing::warn!(origin = %self.origin.url, %cause, "proxy: origin failed");
                let message = match error.is_connect() {
                    true => format!("cannot connect to the origin: {cause}"),
                    false => format!("the origin failed to answer: {cause}"),
                };
                return self.error(StatusCode::BAD_GATEWAY, &message);
            }
            Err(_) => {
                tracing::warn!(origin = %self.origin.url, timeout = ?self.timeout, "proxy: origin timed out");
                let message = format!(
                    "the origin sent no response within {} s",
                    self.timeout.as_secs()
                );
                return self.error(StatusCode::GATEWAY_TIMEOUT, &message);
            }
        };
        let (mut parts, body) = response.into_parts();
        parts.version = Version::default();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.append(header::VIA, VIA);
        Response::from_parts(parts, Body::new(body))
    }

    /// `{"error": message, "origin": url}` with `status`.
    fn error(&self, status: StatusCode, message: &str) -> Response<Body> {
        let body = serde_json::json!({ "error": message, "origin": self.origin.url });
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid error response")
    }
}

impl Service<Request<Body>> for Forwarder {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool opens connections on demand; there is no back pressure
        // to report.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

/// Removes the hop-by-hop fields: those `Connection` lists (read before it
/// goes), then [`HOP_BY_HOP`].
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Says who asked: the client's address appended to `X-Forwarded-For` and
/// as a new `Forwarded` element; the `Host` it asked for in
/// `X-Forwarded-Host` (replacing any value the client made up) and
/// `Forwarded`; and the scheme, always `http` here.
fn add_forwarded(headers: &mut HeaderMap, peer: Option<IpAddr>, host: Option<HeaderValue>) {
    let mut element = Vec::new();
    if let Some(ip) = peer {
        let earlier: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        let mut list = earlier.join(", ");
        if !list.is_empty() {
            list.push_str(", ");
        }
        list.push_str(&ip.to_string());
        if let Ok(value) = HeaderValue::from_str(&list) {
            headers.insert(X_FORWARDED_FOR, value);
        }
        element.push(match ip {
            IpAddr::V4(ip) => format!("for={ip}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
        });
    }
    headers.remove(&X_FORWARDED_HOST);
    if let Some(host) = host {
        // A quoted string may not hold `"` or `\` unescaped; a Host that
        // does is not a host name anyway.
        let quotable = host.to_str().ok().filter(|h| !h.contains(['"', '\\']));
        if let Some(name) = quotable {
            element.push(format!("host=\"{name}\""));
        }
        headers.insert(X_FORWARDED_HOST, host);
    }
    element.push("proto=http".to_owned());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Ok(value) = HeaderValue::from_str(&element.join(";")) {
        headers.append(FORWARDED, value);
    }
}

/// The innermost error of a chain: "Connection refused (os error 111)"
/// rather than "client error (Connect)".
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
