//! Test helpers for the classroom example: the process-wide metrics
//! recorder its router reports to, and `/stats` read over HTTP.

use std::sync::OnceLock;

use hyper::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

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
