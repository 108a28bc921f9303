//! Real PostgreSQL servers for tests: each test starts its own `postgres`
//! in a fresh temporary directory, on a free loopback port, and it is shut
//! down on drop. The server on the default port 5432 is never used.
//!
//! `initdb` runs once per test binary into a template directory; every
//! server starts from a copy of it, which takes a fraction of `initdb`'s
//! time. Durability is turned off (`fsync=off` and friends): the data lives
//! as long as the test.
//!
//! `initdb` and `postgres` refuse to run as root; when the tests run as
//! root, both run as the `postgres` system user (set as the child's user
//! before it starts, so the child is the server itself and killing it
//! needs no helper), in directories owned by that user.
//!
//! When the binaries are missing the helpers print a `SKIP:` line and
//! return `None`, unless `TAGCACHE_REQUIRE_POSTGRES=1`, in which case they
//! panic. The binaries are looked for in `$TAGCACHE_POSTGRES_BIN`, then in
//! the newest `/usr/lib/postgresql/<version>/bin`, then on `PATH`.
//!
//! Like the Redis helper, this module needs only the standard library: its
//! waits block (each with a deadline), and the tests talk to the server
//! with their own client.

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::deadline::DEADLINE;

const REQUIRE_VAR: &str = "TAGCACHE_REQUIRE_POSTGRES";

/// Settings that make a throwaway server start and write fast. None of them
/// changes what LISTEN/NOTIFY or transactions do.
const FAST: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=40",
    "max_wal_senders=0",
    "wal_level=minimal",
    "autovacuum=off",
    "log_min_messages=warning",
];

/// Where the server binaries are, or `None` after printing the skip line
/// (panics instead under `TAGCACHE_REQUIRE_POSTGRES=1`).
pub fn postgres_available() -> Option<&'static Binaries> {
    static FOUND: OnceLock<Option<Binaries>> = OnceLock::new();
    let found = FOUND.get_or_init(Binaries::find).as_ref();
    if found.is_none() {
        if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
            panic!("PostgreSQL's initdb and postgres were not found and {REQUIRE_VAR}=1");
        }
        println!(
            "SKIP: PostgreSQL's initdb/postgres not found (looked in $TAGCACHE_POSTGRES_BIN, \
             /usr/lib/postgresql/*/bin and PATH); set {REQUIRE_VAR}=1 to fail instead"
        );
    }
    found
}

/// The two server binaries.
pub struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl Binaries {
    fn find() -> Option<Binaries> {
        let in_dir = |dir: PathBuf| {
            let binaries = Binaries {
                initdb: dir.join("initdb"),
                postgres: dir.join("postgres"),
            };
            (binaries.initdb.is_file() && binaries.postgres.is_file()).then_some(binaries)
        };
        if let Some(dir) = std::env::var_os("TAGCACHE_POSTGRES_BIN") {
            return in_dir(PathBuf::from(dir));
        }
        // Debian installs one directory per major version: take the newest.
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versions.sort();
        if let Some(found) = versions.into_iter().rev().find_map(|(_, dir)| in_dir(dir)) {
            return Some(found);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).find_map(in_dir)
    }
}

/// The user the server runs as: ourselves, or `postgres` when we are root.
#[derive(Clone, Copy)]
struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    fn get() -> RunAs {
        // `/proc/self` is owned by the process's effective user.
        let root = fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        if !root {
            return RunAs { ids: None };
        }
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let ids = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .expect("running as root needs a `postgres` system user to run the server as");
        RunAs { ids: Some(ids) }
    }

    /// A command that runs as this user.
    fn command(self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            // Set in the child before exec: the child *is* the program, so
            // killing it needs no helper (`runuser` would fork and wait).
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Hands `path` to this user.
    fn own(self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            chown(path, Some(uid), Some(gid)).expect("chown a test directory to postgres");
        }
    }
}

fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A new directory owned by the server's user, readable by it only (the
/// server insists on that for its data directory).
fn fresh_dir(run_as: RunAs, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tagcache-{tag}-{}-{:x}",
        std::process::id(),
        unique()
    ));
    fs::create_dir_all(&dir).expect("create a temp dir for PostgreSQL");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 700");
    run_as.own(&dir);
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Runs `command` to its end within the [`DEADLINE`], with its output in
/// `log`; an error names the log.
fn run_within(mut command: Command, what: &str, log: &Path) -> io::Result<()> {
    let out = fs::File::create(log)?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()?;
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(io::Error::other(format!(
                "{what} failed ({status}):\n{text}"
            )));
        }
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
}

/// The data directory every server of this test binary starts from.
fn template(binaries: &Binaries, run_as: RunAs) -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        remove_stale_templates();
        let root = fresh_dir(run_as, "pg-template");
        let data = root.join("data");
        let mut initdb = run_as.command(&binaries.initdb);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]);
        run_within(initdb, "initdb", &root.join("initdb.log")).unwrap_or_else(|e| panic!("{e}"));
        data
    })
}

/// Removes the templates of test binaries that have exited: a template
/// lives as long as its binary, which has no hook to remove it at exit.
fn remove_stale_templates() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("tagcache-pg-template-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// One `postgres` server, listening on 127.0.0.1 and on a socket in its own
/// directory.
pub struct PostgresServer {
    root: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PostgresServer {
    /// Starts a server with an empty `postgres` database (user `postgres`,
    /// no password), or `None` after printing why it cannot.
    pub fn start() -> Option<PostgresServer> {
        let binaries = postgres_available()?;
        let run_as = RunAs::get();
        let template = template(binaries, run_as);
        let mut last_error = None;
        // A port found free can be taken before the server binds it: try a
        // few.
        for _ in 0..5 {
            let root = fresh_dir(run_as, "pg");
            let data = root.join("data");
            let mut copy = Command::new("cp");
            copy.arg("-a").arg(template).arg(&data);
            if let Err(e) = run_within(
                copy,
                "copying the template data directory",
                &root.join("cp.log"),
            ) {
                panic!("{e}");
            }
            let mut server = PostgresServer {
                root,
                port: free_port(),
                child: None,
            };
            match server.try_start(binaries, run_as) {
                Ok(()) => return Some(server),
                Err(error) => last_error = Some(error),
            }
        }
        panic!(
            "could not start postgres: {}",
            last_error.expect("an error")
        );
    }

    fn try_start(&mut self, binaries: &Binaries, run_as: RunAs) -> io::Result<()> {
        let log = self.root.join("postgres.log");
        let out = fs::File::create(&log)?;
        run_as.own(&log);
        let mut command = run_as.command(&binaries.postgres);
        command
            .arg("-D")
            .arg(self.root.join("data"))
            .arg("-k")
            .arg(&self.root)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for setting in FAST {
            command.args(["-c", setting]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()?;
        // The server writes `ready` as the 8th line of postmaster.pid once
        // it accepts connections (before that it answers "starting up").
        let pid_file = self.root.join("data").join("postmaster.pid");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait()? {
                let text = fs::read_to_string(&log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "postgres on port {} exited with {status}:\n{text}",
                    self.port
                )));
            }
            let ready = fs::read_to_string(&pid_file)
                .map(|text| text.lines().nth(7).map(str::trim) == Some("ready"))
                .unwrap_or(false);
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "postgres on port {} was not ready within {} s; see {}",
                    self.port,
                    DEADLINE.as_secs(),
                    log.display()
                )));
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for `tokio_postgres::Config::from_str` or psql.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The same as a URL (for the example's `--database`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server: an immediate shutdown (SIGQUIT makes the postmaster
    /// end its backends and exit), then SIGKILL if it is still there after
    /// the deadline.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + DEADLINE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}
