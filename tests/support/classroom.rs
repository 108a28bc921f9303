//! Test helpers for the classroom example: the process-wide metrics
//! recorder its router reports to, `/stats` read over HTTP, assertions on
//! its answers, and the example binary run as a process of its own.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use hyper::StatusCode;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

use super::deadline::{within, within_for};
use super::harness::Reply;
use super::http::Server;

/// How long building the example may take.
const BUILD_DEADLINE: Duration = Duration::from_secs(300);

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

/// The example binary next to this test binary: cargo puts tests in
/// `target/<profile>/deps/` and examples in `target/<profile>/examples/`.
///
/// `cargo test` builds examples, but `cargo test --test classroom_http`
/// does not, and would then run whatever binary an earlier build left. So
/// when running under cargo, bring the example up to date first (cargo
/// releases its build lock before it runs tests, so this cannot deadlock).
/// Compiling may take a while on a loaded machine: call this before the
/// test's [`backstop`](super::deadline::backstop), it has a bound of its
/// own.
pub async fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    if let (Ok(cargo), Some(target_dir)) = (std::env::var("CARGO"), profile_dir.parent()) {
        let mut build = tokio::process::Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "--example",
                "classroom",
                "--manifest-path",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .env("CARGO_TARGET_DIR", target_dir)
            .kill_on_drop(true);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        if cfg!(feature = "redis") {
            build.args(["--features", "redis"]);
        }
        if cfg!(feature = "postgres") {
            build.args(["--features", "postgres"]);
        }
        let status = within_for(
            BUILD_DEADLINE,
            "cargo build --example classroom never finished",
            build.status(),
        )
        .await
        .expect("run cargo build --example classroom");
        assert!(status.success(), "cargo build --example classroom failed");
    }
    let binary = profile_dir
        .join("examples")
        .join(format!("classroom{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the classroom example binary is not at {}: build it with `cargo build --example classroom`",
        binary.display()
    );
    binary
}

/// Kills the child when the test ends, passing or failing.
pub struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example `binary` with `args` and reads the address it
/// prints.
pub async fn start_example(binary: &Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the classroom example"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    // Read on a thread of its own; if the deadline passes, the child is
    // killed as the panic unwinds, which ends the read.
    let reading = tokio::task::spawn_blocking(move || {
        let prefix = "classroom listening on http://";
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the example's stdout");
            if let Some(addr) = line.trim().strip_prefix(prefix) {
                return addr.parse::<SocketAddr>().expect("a socket address");
            }
        }
        panic!("the example exited without printing {prefix:?}");
    });
    let addr = within("the classroom example never printed its address", reading)
        .await
        .expect("read the listening address");
    assert_ne!(addr.port(), 0, "the real port is printed");
    (child, addr)
}
