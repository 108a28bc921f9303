//! Real HTTP on loopback: serve a router with `axum::serve`, or connect to
//! a server already listening (another process), and send requests with
//! hyper's client.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::deadline::within;
use super::harness::Reply;

/// A server on loopback (in this process or another one) and a client.
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
    #[track_caller]
    pub fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json: Option<&str>,
    ) -> impl Future<Output = Reply> + '_ {
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
    }

    /// Sends a request built by the caller and reads the whole reply,
    /// within the [`DEADLINE`](super::deadline::DEADLINE).
    #[track_caller]
    pub fn send_request(&self, request: Request<Full<Bytes>>) -> impl Future<Output = Reply> + '_ {
        let what = format!(
            "request {} {} never answered",
            request.method(),
            request.uri()
        );
        within(what, async {
            let response = self.client.request(request).await.expect("HTTP request");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("read body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    }

    /// `GET path` without credentials.
    #[track_caller]
    pub fn get(&self, path: &str) -> impl Future<Output = Reply> + '_ {
        self.send(Method::GET, path, None, None)
    }

    /// `GET path` with `Authorization: Bearer token`.
    #[track_caller]
    pub fn get_as(&self, path: &str, token: &str) -> impl Future<Output = Reply> + '_ {
        self.send(Method::GET, path, Some(token), None)
    }
}
