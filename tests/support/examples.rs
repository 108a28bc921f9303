//! Example binaries run as processes of their own: brought up to date,
//! started with arguments, and found at the address they print.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::deadline::{within, within_for};

/// How long building an example may take.
const BUILD_DEADLINE: Duration = Duration::from_secs(300);

/// The binary of the example `name`, next to this test binary: cargo puts
/// tests in `target/<profile>/deps/` and examples in
/// `target/<profile>/examples/`.
///
/// `cargo test` builds examples, but `cargo test --test classroom_http`
/// does not, and would then run whatever binary an earlier build left. So
/// when running under cargo, bring the example up to date first (cargo
/// releases its build lock before it runs tests, so this cannot deadlock).
/// Compiling may take a while on a loaded machine: call this before the
/// test's [`backstop`](super::deadline::backstop), it has a bound of its
/// own.
pub async fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    if let (Ok(cargo), Some(target_dir)) = (std::env::var("CARGO"), profile_dir.parent()) {
        let mut build = tokio::process::Command::new(cargo);
        build
            .args(["build", "--quiet", "--example", name, "--manifest-path"])
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
            format!("cargo build --example {name} never finished"),
            build.status(),
        )
        .await
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
        assert!(status.success(), "cargo build --example {name} failed");
    }
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the {name} example binary is not at {}: build it with `cargo build --example {name}`",
        binary.display()
    );
    binary
}

/// Kills the child when the test ends, passing or failing.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example `binary` with `args` and reads the address it
/// prints on stdout as `{name} listening on http://ADDR`.
pub async fn start_example(binary: &Path, name: &str, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {name} example: {e}")),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let prefix = format!("{name} listening on http://");
    let what = format!("the {name} example never printed its address");
    // Read on a thread of its own; if the deadline passes, the child is
    // killed as the panic unwinds, which ends the read.
    let reading = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read the example's stdout");
            if let Some(addr) = line.trim().strip_prefix(prefix.as_str()) {
                return addr.parse::<SocketAddr>().expect("a socket address");
            }
        }
        panic!("the example exited without printing {prefix:?}");
    });
    let addr = within(what, reading)
        .await
        .expect("read the listening address");
    assert_ne!(addr.port(), 0, "the real port is printed");
    (child, addr)
}
