//! The soak's own `redis-server`: started on a free loopback port (never
//! the standard 6379) in a fresh temporary directory with persistence off,
//! and faulted on command: connections killed (`CLIENT KILL`), the process
//! frozen and thawed (`SIGSTOP`/`SIGCONT`), killed and started again on the
//! same port (an empty dataset). Killed when dropped, frozen or not.
//!
//! Everything here is async (tokio processes and sockets): the faults are
//! injected from a task of the runtime the instances run on, and a blocking
//! call there would stall the very timers that bound the store's calls.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The port Redis uses by default: some other Redis may live there.
const STANDARD_PORT: u16 = 6379;
/// How long a start may take before it counts as failed.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Bound on one command sent by the soak itself.
const COMMAND_LIMIT: Duration = Duration::from_secs(2);

/// Whether `redis-server` is on `PATH`.
pub fn available() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    })
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // SIGKILL ends a frozen process too.
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> io::Result<RedisServer> {
        let mut last = None;
        for _ in 0..5 {
            let mut server = RedisServer {
                port: free_port()?,
                dir: fresh_dir()?,
                child: None,
            };
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server never started")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `CLIENT KILL TYPE <kind>` (`normal` or `pubsub`): how many were cut.
    pub async fn kill_clients(&self, kind: &str) -> io::Result<u64> {
        let reply = command(self.port, &["CLIENT", "KILL", "TYPE", kind]).await?;
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::other(format!("CLIENT KILL answered {reply:?}")))
    }

    /// Freezes the process: connections stay open, nothing answers.
    pub async fn pause(&self) -> io::Result<()> {
        self.signal("-STOP").await
    }

    /// Thaws a frozen process.
    pub async fn resume(&self) -> io::Result<()> {
        self.signal("-CONT").await
    }

    /// Kills the process (SIGKILL: no goodbye to the clients).
    pub async fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts it again on the same port, retrying while the port is being
    /// released.
    pub async fn start_again(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn signal(&self, signal: &str) -> io::Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .await?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill {signal} {pid}: {status}")))
        }
    }

    /// Runs the process and waits until it answers `PING`.
    async fn spawn(&mut self) -> io::Result<()> {
        assert!(self.child.is_none(), "redis-server already running");
        if self.port == STANDARD_PORT {
            return Err(io::Error::other("refusing the standard Redis port"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "redis-server on port {} exited with {status}; see {}",
                    self.port,
                    self.dir.join("redis.log").display()
                )));
            }
            if command(self.port, &["PING"])
                .await
                .is_ok_and(|r| r == "+PONG")
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(io::Error::other(format!(
                    "redis-server on port {} never answered PING",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends one command on a new connection and returns the first line of the
/// reply (enough for the integer and status replies used here).
async fn command(port: u16, args: &[&str]) -> io::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(out.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok(line.trim_end().to_owned())
    };
    tokio::time::timeout(COMMAND_LIMIT, exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("no answer")))
}

/// A free loopback port from the OS (the ephemeral range).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn fresh_dir() -> io::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("tagcache-soak-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
