//! Real `redis-server` processes for tests: a single node that can be
//! stopped and restarted on the same port, and a 3-master cluster.
//!
//! Each server runs in a fresh temporary directory with persistence off and
//! is killed on drop. When `redis-server` is not on `PATH` the helpers print
//! a `SKIP:` line and return `None`, unless `TAGCACHE_REQUIRE_REDIS=1`, in
//! which case they panic.
//!
//! Talking to the servers uses a tiny blocking RESP client over std, so this
//! module needs nothing but the standard library. Its waits block (it is
//! called from synchronous code too), and each has a deadline.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::deadline::DEADLINE;

const SKIP_MESSAGE: &str =
    "SKIP: redis-server not found on PATH; set TAGCACHE_REQUIRE_REDIS=1 to fail instead";

/// Whether the binaries needed are on `PATH`; prints the skip line (or
/// panics under `TAGCACHE_REQUIRE_REDIS=1`) when they are not.
pub fn redis_available(need_cli: bool) -> bool {
    let mut missing = Vec::new();
    if find_on_path("redis-server").is_none() {
        missing.push("redis-server");
    }
    if need_cli && find_on_path("redis-cli").is_none() {
        missing.push("redis-cli");
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("TAGCACHE_REQUIRE_REDIS").as_deref() == Ok("1") {
        panic!(
            "{} not found on PATH and TAGCACHE_REQUIRE_REDIS=1",
            missing.join(" and ")
        );
    }
    if missing.contains(&"redis-server") {
        println!("{SKIP_MESSAGE}");
    } else {
        println!("SKIP: redis-cli not found on PATH; set TAGCACHE_REQUIRE_REDIS=1 to fail instead");
    }
    false
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tagcache-{tag}-{}-{:x}",
        std::process::id(),
        unique()
    ));
    fs::create_dir_all(&dir).expect("create temp dir for redis-server");
    dir
}

/// A free loopback port from the OS (ephemeral range).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A free port below 22768 whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    let mut seed = unique();
    for _ in 0..10_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 12000 + ((seed >> 33) % 10000) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10000) {
            return port;
        }
    }
    panic!("no free port pair (p, p + 10000) below 22768");
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port, or `None` (after printing why) when
    /// `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        if !redis_available(false) {
            return None;
        }
        for _ in 0..5 {
            let mut server = RedisServer::stopped_on(free_port(), Vec::new(), "redis");
            if server.try_start().is_ok() {
                return Some(server);
            }
        }
        panic!("could not start redis-server");
    }

    /// Chooses a port and a directory without starting the server (for
    /// tests that need Redis to be down first). `None` when not installed.
    pub fn stopped() -> Option<RedisServer> {
        if !redis_available(false) {
            return None;
        }
        Some(RedisServer::stopped_on(free_port(), Vec::new(), "redis"))
    }

    fn stopped_on(port: u16, extra: Vec<String>, tag: &str) -> RedisServer {
        RedisServer {
            port,
            dir: fresh_dir(tag),
            extra,
            child: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn try_start(&mut self) -> io::Result<()> {
        assert!(self.child.is_none(), "server already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let mut child = command.spawn()?;
        let limit = Duration::from_secs(10);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited with {status}; see {}",
                    self.port,
                    self.dir.join("redis.log").display()
                )));
            }
            if let Ok(Resp::Simple(pong)) = command_on(self.port, &[b"PING"]) {
                if pong == "PONG" {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "redis-server on port {} never answered PING within {} s",
                    self.port,
                    limit.as_secs()
                )));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (an empty dataset: there is
    /// no persistence). Retries while the port is being released.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + DEADLINE;
        loop {
            let error = match self.try_start() {
                Ok(()) => return,
                Err(error) => error,
            };
            if Instant::now() > deadline {
                panic!(
                    "redis-server never restarted on port {} within {} s: {error}",
                    self.port,
                    DEADLINE.as_secs()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("server running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Runs one command on a fresh connection.
    pub fn cmd(&self, args: &[&[u8]]) -> Resp {
        command_on(self.port, args)
            .unwrap_or_else(|e| panic!("redis command {:?} failed: {e}", printable(args)))
    }

    /// Runs one command given as strings.
    pub fn cmd_str(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&args)
    }

    /// `calls` per command from `INFO commandstats` (`get`, `evalsha`, ...).
    pub fn command_calls(&self) -> HashMap<String, u64> {
        let info = self.cmd_str(&["INFO", "commandstats"]).text();
        let mut calls = HashMap::new();
        for line in info.lines() {
            let Some(rest) = line.strip_prefix("cmdstat_") else {
                continue;
            };
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let count = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            calls.insert(name.to_owned(), count);
        }
        calls
    }

    /// From now on, every command a client sends is logged (the slow log
    /// with a threshold of 0 µs: unlike `INFO commandstats`, it lists what
    /// clients sent, not the commands scripts ran).
    pub fn log_client_commands(&self) {
        self.cmd_str(&["CONFIG", "SET", "slowlog-max-len", "100000"]);
        self.cmd_str(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        self.cmd_str(&["SLOWLOG", "RESET"]);
    }

    /// The commands clients sent since [`log_client_commands`](Self::log_client_commands),
    /// oldest first, each as its arguments (long ones cut by Redis). The
    /// slow log also lists what scripts ran, under the client `?:0`: those
    /// are left out.
    pub fn client_commands(&self) -> Vec<Vec<String>> {
        let Resp::Array(entries) = self.cmd_str(&["SLOWLOG", "GET", "-1"]) else {
            panic!("SLOWLOG GET answered something else");
        };
        let mut commands: Vec<Vec<String>> = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Resp::Array(fields) => match (fields.get(3), fields.get(4)) {
                    (Some(Resp::Array(args)), Some(client)) if client.text() != "?:0" => {
                        Some(args.iter().map(Resp::text).collect())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        commands.reverse();
        commands
    }

    /// Keys matching `pattern` (KEYS: test servers only).
    pub fn keys(&self, pattern: &str) -> Vec<Vec<u8>> {
        match self.cmd_str(&["KEYS", pattern]) {
            Resp::Array(items) => items
                .into_iter()
                .filter_map(|r| match r {
                    Resp::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    /// The keys of tagcache entries in namespace `ns`.
    pub fn entry_keys(&self, ns: &str) -> Vec<Vec<u8>> {
        self.keys(&format!("{ns}:e:*"))
    }

    /// The one entry key in namespace `ns`; panics unless there is exactly
    /// one.
    pub fn only_entry_key(&self, ns: &str) -> Vec<u8> {
        let keys = self.entry_keys(ns);
        assert_eq!(keys.len(), 1, "expected one entry key, got {keys:?}");
        keys.into_iter().next().unwrap()
    }

    /// The value stored at `key`, as bytes.
    pub fn raw_value(&self, key: &[u8]) -> Vec<u8> {
        match self.cmd(&[b"GET", key]) {
            Resp::Bulk(raw) => raw,
            other => panic!("GET answered {other:?}"),
        }
    }

    pub fn int(&self, args: &[&str]) -> i64 {
        match self.cmd_str(args) {
            Resp::Int(n) => n,
            other => panic!("{args:?} answered {other:?}"),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Three masters in a Redis Cluster, each with `replicas` replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three masters, creates the cluster and waits until every node
    /// reports `cluster_state:ok`. `None` when Redis is not installed.
    pub fn start() -> Option<RedisCluster> {
        RedisCluster::start_with(0, 5000)
    }

    /// [`start`](Self::start) with `replicas` replicas per master, and a
    /// node timeout (after which a replica of a failed master takes over).
    pub fn start_with(replicas: usize, node_timeout_ms: u64) -> Option<RedisCluster> {
        if !redis_available(true) {
            return None;
        }
        for attempt in 0..3 {
            match RedisCluster::try_start(replicas, node_timeout_ms) {
                Ok(cluster) => return Some(cluster),
                Err(e) if attempt < 2 => eprintln!("retrying cluster start: {e}"),
                Err(e) => panic!("could not start a redis cluster: {e}"),
            }
        }
        unreachable!()
    }

    fn try_start(replicas: usize, node_timeout_ms: u64) -> io::Result<RedisCluster> {
        let mut nodes = Vec::new();
        let count = 3 * (1 + replicas);
        for _ in 0..count {
            let port = free_cluster_port();
            let dir = fresh_dir("redis-cluster");
            let extra = vec![
                "--cluster-enabled".to_owned(),
                "yes".to_owned(),
                "--cluster-config-file".to_owned(),
                dir.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout".to_owned(),
                node_timeout_ms.to_string(),
            ];
            let mut node = RedisServer {
                port,
                dir,
                extra,
                child: None,
            };
            node.try_start()?;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let output = output_within(create, "redis-cli --cluster create")?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + DEADLINE;
        loop {
            let ready = cluster.nodes.iter().all(|node| {
                let info = node.cmd_str(&["CLUSTER", "INFO"]).text();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&format!("cluster_known_nodes:{count}"))
            });
            if ready {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the cluster never reached cluster_state:ok within {} s",
                    DEADLINE.as_secs()
                )));
            }
            sleep(Duration::from_millis(50));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node that owns `key`'s slot.
    pub fn owner_of(&self, key: &str) -> &RedisServer {
        let slot = self.nodes[0].int(&["CLUSTER", "KEYSLOT", key]);
        let Resp::Array(ranges) = self.nodes[0].cmd_str(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS answered something else");
        };
        for range in ranges {
            let Resp::Array(fields) = range else {
                continue;
            };
            let (Some(Resp::Int(start)), Some(Resp::Int(end)), Some(Resp::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                continue;
            };
            if (*start..=*end).contains(&slot) {
                let Some(Resp::Int(port)) = master.get(1) else {
                    continue;
                };
                return self
                    .nodes
                    .iter()
                    .find(|n| i64::from(n.port) == *port)
                    .expect("owner is one of ours");
            }
        }
        panic!("no owner for slot {slot}");
    }
}

/// Runs `command` to its end and returns its output, or an error once the
/// [`DEADLINE`] has passed (the process is killed then). Its output is
/// small: it is read after it exits.
fn output_within(mut command: Command, what: &str) -> io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{what} never finished within {} s",
                DEADLINE.as_secs()
            )));
        }
        sleep(Duration::from_millis(20));
    }
    child.wait_with_output()
}

/// A RESP value, as Redis answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Nil,
    Int(i64),
    Simple(String),
    Error(String),
    Bulk(Vec<u8>),
    Array(Vec<Resp>),
}

impl Resp {
    /// The reply as text (bulk or simple string); panics otherwise.
    pub fn text(&self) -> String {
        match self {
            Resp::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            Resp::Simple(s) => s.clone(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }
}

fn printable(args: &[&[u8]]) -> Vec<String> {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Sends one command to `127.0.0.1:port` on a new connection.
pub fn command_on(port: u16, args: &[&[u8]]) -> io::Result<Resp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::new();
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1);
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| io::Error::other(format!("bad RESP line {line:?}")))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(number()?),
        "$" => {
            let len = number()?;
            if len < 0 {
                Resp::Nil
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                Resp::Bulk(buf)
            }
        }
        "*" => {
            let len = number()?;
            if len < 0 {
                Resp::Nil
            } else {
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(read_reply(reader)?);
                }
                Resp::Array(items)
            }
        }
        _ => return Err(io::Error::other(format!("bad RESP line {line:?}"))),
    })
}
