//! Test helpers for the classroom example: serve its router on a loopback
//! port, talk to it over real HTTP, and read `/stats`.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The global metrics recorder, installed once for the whole test binary
/// (every app in it shares the process-wide recorder).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("install the Prometheus recorder")
        })
        .clone()
}

/// A running classroom app (in this process or another one) and a client.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One HTTP answer, body read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `Cache-Status` header, or "" when absent.
    pub fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .map(|v| v.to_str().expect("cache-status is text"))
            .unwrap_or("")
    }

    /// Whether the cache answered (a fresh hit).
    pub fn is_hit(&self) -> bool {
        let status = self.cache_status();
        status.contains("; hit") && !status.contains("fwd=")
    }

    /// Asserts a 4xx JSON error answer and returns its message.
    pub fn error_message(&self) -> String {
        assert!(
            self.status.is_client_error(),
            "expected a 4xx, got {} with body {:?}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        match json.get("error") {
            Some(Value::String(message)) => message.clone(),
            _ => panic!("expected {{\"error\": \"...\"}}, got {json}"),
        }
    }
}

impl Server {
    /// Serves `app` on 127.0.0.1:0 until dropped.
    pub async fn serve(app: axum::Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        let mut server = Server::connect(addr);
        server.task = Some(task);
        server
    }

    /// A client for a server already listening on `addr`.
    pub fn connect(addr: SocketAddr) -> Server {
        Server {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            task: None,
        }
    }

    /// Sends a request; `json` is sent as an `application/json` body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if json.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let body = Full::new(Bytes::from(json.unwrap_or_default().to_owned()));
        self.send_request(request.body(body).expect("valid request"))
            .await
    }

    /// Sends a request built by the caller.
    pub async fn send_request(&self, request: Request<Full<Bytes>>) -> Reply {
        let response = self.client.request(request).await.expect("HTTP request");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path` without credentials.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn get_as(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// `/stats` as JSON.
    pub async fn stats(&self) -> Value {
        let reply = self.get("/stats").await;
        assert_eq!(reply.status, StatusCode::OK, "GET /stats");
        reply.json()
    }

    /// How often the origin of `route` ran so far.
    pub async fn origin_calls(&self, route: &str) -> u64 {
        let stats = self.stats().await;
        stats["origin_calls"][route]
            .as_u64()
            .unwrap_or_else(|| panic!("no origin_calls for {route} in {stats}"))
    }
}
