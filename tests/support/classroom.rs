//! Test helpers for the classroom example: the process-wide metrics
//! recorder its router reports to, `/stats` read over HTTP, assertions on
//! its answers, and the example binary run as a process of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hyper::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

use super::examples;
pub use super::examples::KillOnDrop;
use super::harness::Reply;
use super::http::Server;

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

/// The classroom example's `/stats` route, on a [`Server`] running it.
impl Server {
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

pub fn titles(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array in {list}"))
        .iter()
        .map(|s| s["title"].as_str().expect("title").to_owned())
        .collect()
}

pub fn assert_hit(reply: &Reply, what: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{what}: status");
    assert!(
        reply.is_hit(),
        "{what}: expected a hit, cache-status {:?}",
        reply.cache_status()
    );
    assert!(reply.headers.contains_key("age"), "{what}: hits carry Age");
}

pub fn assert_not_hit(reply: &Reply, what: &str) {
    assert!(
        reply.cache_status().contains("fwd="),
        "{what}: expected the origin to answer, cache-status {:?}",
        reply.cache_status()
    );
}

/// The classroom example's binary, up to date (see
/// [`examples::example_binary`]). Call it before the test's
/// [`backstop`](super::deadline::backstop): it has a bound of its own.
pub async fn example_binary() -> PathBuf {
    examples::example_binary("classroom").await
}

/// Starts the classroom example `binary` with `args` and reads the address
/// it prints.
pub async fn start_example(binary: &Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    examples::start_example(binary, "classroom", args).await
}
