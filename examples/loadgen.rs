//! `loadgen`: an end-to-end HTTP load test of the `classroom` example, with
//! and without the cache.
//!
//! ```text
//! cargo build --release --example classroom --example loadgen
//! target/release/examples/loadgen                      # starts classroom itself
//! target/release/examples/loadgen --target http://127.0.0.1:3000   # or use a running one
//! ```
//!
//! It opens `--connections` HTTP/1.1 keep-alive connections (default 64) and
//! sends `GET /api/teachers/{tid}/sessions?status=active` in a closed loop,
//! cycling `tid` over the seeded teachers, in two phases:
//!
//! - `uncached`: every request carries `Cookie: loadgen=1`, so the layer
//!   bypasses the cache (`Cache-Status: ...; fwd=bypass; detail=cookie`) and
//!   the handler, with its `--origin-delay-ms` delay, answers every time;
//! - `cached`: the same requests without the cookie.
//!
//! Each phase stops after `--requests` requests or `--duration-s` seconds,
//! whichever comes first, and reports requests/s, p50, p99 and max latency,
//! and the origin calls read from `GET /stats` before and after it. Only
//! loopback targets are accepted. The report also goes to
//! `target/bench/loadgen.json`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::header::{COOKIE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const USAGE: &str = "\
usage: loadgen [--target URL | --classroom PATH] [--connections N] [--requests N]
               [--duration-s S] [--origin-delay-ms MS]

  --target URL          a running classroom server on loopback (default: start one)
  --classroom PATH      the classroom binary to start (default: next to this one)
  --connections N       concurrent keep-alive connections (default 64)
  --requests N          requests per phase at most (default 20000)
  --duration-s S        seconds per phase at most (default 15)
  --origin-delay-ms MS  handler delay of the started server (default 20)";

/// Teachers seeded by the classroom example (ids 1..=10).
const TEACHERS: u64 = 10;
const ROUTE: &str = "session-list";

struct Options {
    target: Option<SocketAddr>,
    classroom: Option<std::path::PathBuf>,
    connections: usize,
    requests: u64,
    duration: Duration,
    origin_delay_ms: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        target: None,
        classroom: None,
        connections: 64,
        requests: 20_000,
        duration: Duration::from_secs(15),
        origin_delay_ms: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {value:?} is not a whole number"))
        };
        match flag.as_str() {
            "--target" => {
                let addr = value
                    .strip_prefix("http://")
                    .unwrap_or(&value)
                    .trim_end_matches('/');
                let addr: SocketAddr = addr
                    .parse()
                    .map_err(|_| format!("--target: {value:?} is not http://IP:PORT"))?;
                if !addr.ip().is_loopback() {
                    return Err("--target must be a loopback address".to_owned());
                }
                options.target = Some(addr);
            }
            "--classroom" => options.classroom = Some(value.into()),
            "--connections" => options.connections = number()?.clamp(1, 1024) as usize,
            "--requests" => options.requests = number()?.max(1),
            "--duration-s" => options.duration = Duration::from_secs(number()?.max(1)),
            "--origin-delay-ms" => options.origin_delay_ms = number()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// The classroom server started here, stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_classroom(options: &Options) -> Result<(Server, SocketAddr), String> {
    let binary = match &options.classroom {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("classroom"),
    };
    if !binary.is_file() {
        return Err(format!(
            "{} not found: build it with `cargo build --release --example classroom`, or pass --classroom PATH / --target URL",
            binary.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let child = Command::new(&binary)
        .args(["--listen", &addr.to_string()])
        .args(["--origin-delay-ms", &options.origin_delay_ms.to_string()])
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err("classroom did not start listening within 10 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, addr))
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One GET; the status, the `cache-status` header and the body length.
async fn get(
    sender: &mut Sender,
    addr: SocketAddr,
    path: &str,
    cookie: bool,
) -> Result<(u16, String, usize), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let mut request = Request::get(path).header(HOST, addr.to_string());
    if cookie {
        request = request.header(COOKIE, "loadgen=1");
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, cache_status, body.len()))
}

async fn stats(addr: SocketAddr) -> Result<Value, String> {
    let mut sender = connect(addr).await?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = Request::get("/stats")
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("/stats is not JSON: {e}"))
}

fn counter(stats: &Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

struct Phase {
    name: &'static str,
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    origin_calls: u64,
    hits: u64,
    collapsed: u64,
    first_cache_status: String,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let at = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[at] as f64 / 1000.0
    }
}

async fn phase(
    name: &'static str,
    addr: SocketAddr,
    options: &Options,
    cookie: bool,
) -> Result<Phase, String> {
    let before = stats(addr).await?;
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + options.duration;
    let limit = options.requests;

    // Connect everything first so the clock measures requests only.
    let mut senders = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        senders.push(connect(addr).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let issued = issued.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut first = None;
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= limit || Instant::now() >= deadline {
                        issued.fetch_sub(1, Ordering::Relaxed);
                        break;
                    }
                    let path = format!("/api/teachers/{}/sessions?status=active", n % TEACHERS + 1);
                    let sent = Instant::now();
                    match get(&mut sender, addr, &path, cookie).await {
                        Ok((200, cache_status, len)) if len > 0 => {
                            latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            first.get_or_insert(cache_status);
                        }
                        Ok(_) | Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            // A broken connection is not retried.
                            if sender.is_closed() {
                                break;
                            }
                        }
                    }
                }
                (latencies, first)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut first_cache_status = String::new();
    for task in tasks {
        let (latencies, first) = task.await.map_err(|e| e.to_string())?;
        latencies_us.extend(latencies);
        if first_cache_status.is_empty() {
            first_cache_status = first.unwrap_or_default();
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    let after = stats(addr).await?;
    let delta = |pointer: &str| counter(&after, pointer).saturating_sub(counter(&before, pointer));
    Ok(Phase {
        name,
        requests: latencies_us.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
        origin_calls: delta(&format!("/origin_calls/{ROUTE}")),
        hits: delta(&format!("/cache/{ROUTE}/hits")),
        collapsed: delta(&format!("/cache/{ROUTE}/collapsed")),
        first_cache_status,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("loadgen: {message}");
            }
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let (_server, addr) = match options.target {
        Some(addr) => (None, addr),
        None => {
            let (server, addr) = start_classroom(&options)?;
            (Some(server), addr)
        }
    };
    println!(
        "# loadgen\n\ntarget http://{addr}; {} connections; at most {} requests or {:?} per phase{}",
        options.connections,
        options.requests,
        options.duration,
        if options.target.is_none() {
            format!("; classroom started with --origin-delay-ms {}", options.origin_delay_ms)
        } else {
            String::new()
        }
    );

    let mut phases = Vec::new();
    for (name, cookie) in [("uncached", true), ("cached", false)] {
        phases.push(phase(name, addr, &options, cookie).await?);
    }

    println!();
    println!("| phase | requests | errors | req/s | p50 ms | p99 ms | max ms | origin calls | saved | hits | collapsed | first Cache-Status |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for p in &phases {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | `{}` |",
            p.name,
            p.requests,
            p.errors,
            p.rate(),
            p.percentile(0.50),
            p.percentile(0.99),
            p.percentile(1.0),
            p.origin_calls,
            p.requests.saturating_sub(p.origin_calls),
            p.hits,
            p.collapsed,
            p.first_cache_status
        );
    }
    if let [uncached, cached] = &phases[..] {
        println!(
            "\ncached / uncached: {:.1}× the requests per second, p99 {:.2} ms vs {:.2} ms",
            cached.rate() / uncached.rate(),
            cached.percentile(0.99),
            uncached.percentile(0.99)
        );
    }

    let report: Vec<Value> = phases
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "requests": p.requests,
                "errors": p.errors,
                "requests_per_second": (p.rate() * 10.0).round() / 10.0,
                "p50_ms": p.percentile(0.50),
                "p99_ms": p.percentile(0.99),
                "max_ms": p.percentile(1.0),
                "origin_calls": p.origin_calls,
                "origin_calls_saved": p.requests.saturating_sub(p.origin_calls),
            })
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join("loadgen.json");
        let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
        if std::fs::write(&path, text).is_ok() {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
