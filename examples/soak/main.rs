//! `soak`: the consistency soak of tagcache over Redis (see `soak.rs`).
//!
//! ```text
//! cargo run --release --features redis --example soak -- --seconds 60
//! cargo run --features redis --example soak -- --short
//! ```
//!
//! Needs `redis-server` on `PATH`; starts its own on a free loopback port.
//! Prints each fault as it is injected, then the table. Exits 0 when the
//! run passed, 1 when it saw a stale read on a writing instance, a failed
//! request or a write that never reached an instance, 2 when it could not
//! run. `RUST_LOG=tagcache=info` shows the store's own account of the
//! faults.

#[path = "soak.rs"]
mod soak;

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: soak [--seconds N | --short] [--instances 2|3] [--items N]

  --seconds N      how long the load runs, faults included (default 60)
  --short          a 6 s run with every kind of fault once (what the test runs)
  --instances N    instances over the one Redis: 2 or 3 (default 3)
  --items N        items read and written (default 16)";

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match parse(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !soak::server::available() {
        eprintln!("redis-server not found on PATH");
        return ExitCode::from(2);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            result = soak::run(&config) => result,
            // Dropping the run kills its redis-server, even a frozen one.
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
        }
    });
    match result {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("soak: {message}");
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<soak::Config, String> {
    let mut config = soak::Config::new(Duration::from_secs(60));
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a whole number"))
        };
        match arg.as_str() {
            "--seconds" => config.duration = Duration::from_secs(value("--seconds")?.max(1)),
            "--short" => config.duration = soak::Config::short().duration,
            "--instances" => config.instances = value("--instances")? as usize,
            "--items" => config.items = value("--items")? as usize,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}
