//! [`PostgresStore`]: entries shared by every instance, in PostgreSQL
//! (feature `postgres`).
//!
//! ```no_run
//! use tagcache::postgres::PostgresStore;
//! use tagcache::Cache;
//!
//! # async fn run() -> Result<(), tagcache::StoreError> {
//! let store = PostgresStore::builder("postgres://app@127.0.0.1/app")
//!     .schema("tagcache")
//!     .build()
//!     .await?;
//! let cache = Cache::new(store);
//! # let _ = cache; Ok(()) }
//! ```
//!
//! # Layout
//!
//! In its schema (default `tagcache`), all `UNLOGGED`:
//! `tagcache_store_entries` (one row per entry, keyed by the 128-bit
//! [`KeyHash`], with its expiry and its encoded value),
//! `tagcache_store_stamps` (the last hard and soft stamp of each tag, and
//! the floor of the last purge of everything) and `tagcache_store_clock`
//! (the last stamp handed out).
//!
//! # Operations
//!
//! * **Hit**: one round trip, a prepared `SELECT` by key; the entry's tags
//!   are checked against this instance's view of the stamps.
//! * **Miss**: the lookup, the fill stamp (a prepared call to
//!   `tagcache_store_stamp()`, the one clock every instance shares), the
//!   origin call, then an upsert. Writes go through one queue per instance
//!   and are made one at a time, in the order they were asked for (a later
//!   removal must not be overtaken by an earlier upsert of the same key);
//!   until a write is answered, this instance's reads of its key see it.
//! * **Invalidate**: one statement (`tagcache_store_invalidate`) that takes
//!   a stamp, records it for each tag and notifies every instance; this
//!   instance applies it to its view before the call returns.
//! * **Trimming**: a background task deletes expired entries and stamps
//!   older than the longest entry life (plus ten minutes for clock
//!   differences), at most 1000 rows per statement and 10 statements per
//!   round, every [`trim_interval`](PostgresStoreBuilder::trim_interval).
//!
//! # The view of the stamps
//!
//! A dedicated session `LISTEN`s on the store's channel, then loads the
//! stamps table; each notification makes it read the stamps newer than the
//! newest it has (the clock's row lock makes stamps commit in order, so
//! none is skipped). While that session is down, or not yet loaded, every
//! entry counts as invalid: misses, never a stale hit.
//!
//! # Failures
//!
//! Every call is bounded by the
//! [`response_timeout`](PostgresStoreBuilder::response_timeout) (default
//! 250 ms). After three failures in a row the connection is dropped, and
//! until a background task has reconnected, calls fail at once with
//! [`StoreErrorKind::CircuitOpen`]: requests are served from the origin
//! (fail-open) at the origin's cost, not a timeout's. Connection losses are
//! logged once per outage.
//!
//! * **No invalidation is forgotten.** An invalidation that fails (an
//!   error, a timeout, a lost connection) may or may not have been
//!   recorded. The store drops its connection at once, and its next
//!   connection first invalidates every entry, for every instance, before
//!   any call uses it; until then calls fail and requests go to the
//!   origin.
//!
//! *Limits*: other instances learn of an invalidation when its
//! notification reaches them (normally a millisecond or so); the `invalidate`
//! call itself fails while the database is unreachable.

mod feed;
mod recent;
mod schema;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use bytes::Bytes;

use crate::entry::{Entry, KeyHash, Tag};
use crate::postgres::sql::quote_ident;
use crate::stamp::{micros, now_micros, InvalidationMode, Stamp, TagBoard, Validity};
use crate::store::{codec, Store, StoreError, StoreErrorKind, StoreFuture, StoreResult};
use recent::Recent;

/// Default bound on each call.
pub const DEFAULT_STORE_RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Default time between two trimming rounds.
pub const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// The store's own session in `pg_stat_activity`, unless the URL names one
/// (its view's session is `tagcache-store-view`).
const APPLICATION_NAME: &str = "tagcache-store";

/// Consecutive failed calls after which the connection is dropped.
const BREAK_AFTER: u32 = 3;

/// Longest schema name accepted: the notification channel is named after
/// it, and channel names stop at 63 bytes.
const MAX_SCHEMA_BYTES: usize = 40;

/// Options of a [`PostgresStore`].
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    response_timeout: Duration,
    connect_timeout: Duration,
    max_entry_life: Duration,
    max_tags: usize,
    trim_interval: Duration,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_entry_life", &self.max_entry_life)
            .field("max_tags", &self.max_tags)
            .field("trim_interval", &self.trim_interval)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// The schema the store's tables live in (default `tagcache`; created
    /// if missing; at most 40 bytes).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Bound on each call (default 250 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Bound on each connection attempt (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Longest life of an entry after its fill started (default one day).
    pub fn max_entry_life(mut self, life: Duration) -> Self {
        self.max_entry_life = life;
        self
    }

    /// Most tag stamps held in this instance's view (default 1 000 000).
    pub fn max_tags(mut self, max: usize) -> Self {
        self.max_tags = max;
        self
    }

    /// Time between two trimming rounds (default 10 s).
    pub fn trim_interval(mut self, every: Duration) -> Self {
        self.trim_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Connects, installs the schema if needed, starts the view's session
    /// and the background tasks. Fails if the database cannot be reached
    /// now: the schema must exist before the store can be used.
    pub async fn build(self) -> StoreResult<PostgresStore> {
        if self.schema.is_empty() || self.schema.len() > MAX_SCHEMA_BYTES {
            let message = format!("the schema name must have 1 to {MAX_SCHEMA_BYTES} bytes");
            return Err(StoreError::new(StoreErrorKind::Other, message));
        }
        let config = Config::from_str(&self.url)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("bad URL: {e}")))?;
        let conn = Conn::open(&config, &self.schema, self.connect_timeout, true).await?;
        let channel = format!("{}.tagcache_store", self.schema);
        let (writes, jobs) = mpsc::channel(WRITE_QUEUE);
        let shared = Arc::new(Shared {
            conn: Mutex::new(Some(Arc::new(conn))),
            wake: Notify::new(),
            board: TagBoard::new(self.max_entry_life, self.max_tags),
            synced: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            recent: Recent::new(self.response_timeout * 2),
            writes,
            lost: AtomicBool::new(false),
            channel,
            config,
            options: self,
        });
        let tasks = vec![
            tokio::spawn(maintain(shared.clone())),
            tokio::spawn(feed::run(shared.clone())),
            tokio::spawn(trim(shared.clone())),
            tokio::spawn(write(shared.clone(), jobs)),
        ];
        Ok(PostgresStore { shared, tasks })
    }
}

/// A [`Store`] in PostgreSQL. See the [module docs](self).
pub struct PostgresStore {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.shared.options.schema)
            .field("in_sync", &self.is_in_sync())
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PostgresStore {
    /// Options, for the database at `url` (`postgres://...` or
    /// `key=value` pairs).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            schema: "tagcache".to_owned(),
            response_timeout: DEFAULT_STORE_RESPONSE_TIMEOUT,
            connect_timeout: Duration::from_secs(2),
            max_entry_life: crate::stamp::DEFAULT_MAX_ENTRY_LIFE,
            max_tags: crate::stamp::DEFAULT_MAX_TAGS,
            trim_interval: DEFAULT_TRIM_INTERVAL,
        }
    }

    /// Whether this instance's view of the stamps is complete; while it is
    /// not, every entry counts as invalid.
    pub fn is_in_sync(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Whether the store has a working connection for its calls.
    pub fn is_connected(&self) -> bool {
        self.shared.current().is_some()
    }
}

/// What the store and its tasks share.
pub(crate) struct Shared {
    conn: Mutex<Option<Arc<Conn>>>,
    /// Asks the maintainer to reconnect.
    wake: Notify,
    pub(crate) board: TagBoard,
    pub(crate) synced: AtomicBool,
    failures: AtomicU32,
    /// This instance's writes on their way, for its own reads.
    recent: Recent,
    /// Writes for the writer task, in call order.
    writes: mpsc::Sender<Job>,
    /// An invalidation failed: it may never have been recorded, so no
    /// connection is used again before everything was invalidated.
    lost: AtomicBool,
    pub(crate) channel: String,
    pub(crate) config: Config,
    pub(crate) options: PostgresStoreBuilder,
}

impl Shared {
    fn current(&self) -> Option<Arc<Conn>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        conn.filter(|c| !c.client.is_closed())
    }

    /// The connection, or a `CircuitOpen` error (and a reconnect asked
    /// for) when there is none.
    fn conn(&self) -> StoreResult<Arc<Conn>> {
        self.current().ok_or_else(|| {
            self.wake.notify_one();
            StoreError::new(StoreErrorKind::CircuitOpen, "no connection to PostgreSQL")
        })
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Counts a failed call; the third in a row drops the connection, so
    /// that calls fail at once until it is back.
    fn failed(&self) {
        if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= BREAK_AFTER {
            let dropped = self.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
            if dropped.is_some() {
                tracing::warn!(schema = %self.options.schema, "tagcache PostgreSQL store is failing; serving from the origin until it reconnects");
            }
            self.wake.notify_one();
        }
    }

    pub(crate) fn schema(&self) -> String {
        quote_ident(&self.options.schema)
    }
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    put: Statement,
    remove: Statement,
    stamp: Statement,
    invalidate: Statement,
}

impl Conn {
    async fn open(
        config: &Config,
        schema: &str,
        limit: Duration,
        install: bool,
    ) -> StoreResult<Conn> {
        let mut config = config.clone();
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let opening = async {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            if install {
                schema::install(&client, schema).await?;
            }
            let s = quote_ident(schema);
            let prepare = |sql: String| {
                let client = &client;
                async move { client.prepare(&sql).await }
            };
            let get = prepare(format!(
                "SELECT entry FROM {s}.tagcache_store_entries WHERE key = $1"
            ))
            .await?;
            let put = prepare(format!(
                "INSERT INTO {s}.tagcache_store_entries (key, expires_at, entry) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, entry = excluded.entry"
            ))
            .await?;
            let remove = prepare(format!(
                "DELETE FROM {s}.tagcache_store_entries WHERE key = $1"
            ))
            .await?;
            let stamp = prepare(format!("SELECT {s}.tagcache_store_stamp()")).await?;
            let invalidate =
                prepare(format!("SELECT {s}.tagcache_store_invalidate($1, $2, $3)")).await?;
            Ok::<_, tokio_postgres::Error>(Conn {
                client,
                get,
                put,
                remove,
                stamp,
                invalidate,
            })
        };
        match tokio::time::timeout(limit, opening).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(unavailable(format!("connecting: {error}"))),
            Err(_) => Err(unavailable(format!(
                "connecting: no answer within {limit:?}"
            ))),
        }
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

fn key_bytes(key: KeyHash) -> Vec<u8> {
    key.0.to_be_bytes().to_vec()
}

/// Runs one call on the connection, bounded, and counts its outcome.
fn call<T, F, Fut>(shared: &Arc<Shared>, what: &'static str, f: F) -> StoreFuture<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send,
{
    let conn = match shared.conn() {
        Ok(conn) => conn,
        Err(error) => return StoreFuture::ready(Err(error)),
    };
    let shared = shared.clone();
    StoreFuture::pending(async move {
        let limit = shared.options.response_timeout;
        let result = match tokio::time::timeout(limit, f(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(unavailable(format!("{what}: {error}"))),
            Err(_) => Err(unavailable(format!("{what}: no answer within {limit:?}"))),
        };
        match &result {
            Ok(_) => shared.succeeded(),
            Err(_) => shared.failed(),
        }
        result
    })
}

impl Store for PostgresStore {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        let started = self.shared.recent.read_started();
        let found = call(&self.shared, "get", move |conn| async move {
            let key = key_bytes(key);
            let row = conn.client.query_opt(&conn.get, &[&key]).await?;
            Ok(row.map(|row| row.get::<_, Vec<u8>>(0)))
        });
        let shared = self.shared.clone();
        StoreFuture::pending(async move {
            let found = match found.await? {
                None => None,
                Some(raw) => match codec::decode(Bytes::from(raw)) {
                    Ok(entry) => Some(Arc::new(entry)),
                    Err(why) => {
                        // A miss; the next fill overwrites it.
                        metrics::counter!("tagcache_pg_store_corrupt_entries_total").increment(1);
                        let schema = &shared.options.schema;
                        tracing::warn!(%schema, %why, "tagcache PostgreSQL store found an entry it cannot read; treating it as a miss");
                        None
                    }
                },
            };
            Ok(shared.recent.resolve(key, started, found))
        })
    }

    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        let life = micros(self.shared.options.max_entry_life);
        let expires_at = entry
            .stored_at_micros
            .saturating_add(micros(entry.retention()))
            .min(entry.fill_stamp.0.saturating_add(life));
        let expires_at = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let value = Vec::from(codec::encode(&entry));
        self.queue(key, Some(entry), Write::Put { expires_at, value })
    }

    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        self.queue(key, None, Write::Remove)
    }

    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        call(&self.shared, "stamp", |conn| async move {
            let row = conn.client.query_one(&conn.stamp, &[]).await?;
            Ok(Stamp(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let code = match mode {
            InvalidationMode::Hard => "h",
            InvalidationMode::Soft => "s",
        };
        let shared = self.shared.clone();
        let sent = tags.clone();
        let stamp = invalidate(&self.shared, sent, code);
        StoreFuture::pending(async move {
            let stamp = stamp.await?;
            // Seen here before the call returns: this instance never
            // serves what it invalidated, whatever the feed is doing.
            shared.board.apply(&tags, stamp, mode);
            Ok(stamp)
        })
    }

    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        let shared = self.shared.clone();
        let stamp = invalidate(&self.shared, Vec::new(), "f");
        StoreFuture::pending(async move {
            let stamp = stamp.await?;
            shared.board.invalidate_all(stamp);
            Ok(stamp)
        })
    }

    fn validity(&self, entry: &Entry) -> Validity {
        if !self.shared.synced.load(Ordering::Acquire) {
            return Validity::Invalid;
        }
        self.shared.board.validity(&entry.tags, entry.fill_stamp)
    }

    fn max_entry_life(&self) -> Duration {
        self.shared.options.max_entry_life
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

impl PostgresStore {
    /// Hands a write to the writer, in call order: writes of one key must
    /// reach the database in the order they were made, and a future sends
    /// its statement only when first polled (a spawned put could overtake a
    /// later remove). `entry` is what reads see meanwhile.
    fn queue(&self, key: KeyHash, entry: Option<Arc<Entry>>, write: Write) -> StoreFuture<()> {
        let seq = self.shared.recent.write(key, entry);
        let (done, answer) = oneshot::channel();
        let job = Job {
            key,
            seq,
            write,
            done,
        };
        if self.shared.writes.try_send(job).is_err() {
            self.shared.recent.answered(key, seq, false);
            let error = StoreError::new(StoreErrorKind::Unavailable, "the write queue is full");
            return StoreFuture::ready(Err(error));
        }
        StoreFuture::pending(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(unavailable("the store was dropped".to_owned())))
        })
    }
}

/// A write to make.
enum Write {
    Put { expires_at: i64, value: Vec<u8> },
    Remove,
}

/// A write in the queue, with where to send its outcome.
struct Job {
    key: KeyHash,
    seq: u64,
    write: Write,
    done: oneshot::Sender<StoreResult<()>>,
}

/// Most writes waiting for the writer; past it writes fail (and the layer
/// serves without storing).
const WRITE_QUEUE: usize = 4096;

/// Makes the queued writes one at a time, in order.
async fn write(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.recv().await {
        let key = key_bytes(job.key);
        let result = match job.write {
            Write::Put { expires_at, value } => {
                call(&shared, "put", move |conn| async move {
                    let params: [&(dyn ToSql + Sync); 3] = [&key, &expires_at, &value];
                    conn.client.execute(&conn.put, &params).await.map(drop)
                })
                .await
            }
            Write::Remove => {
                call(&shared, "remove", move |conn| async move {
                    conn.client.execute(&conn.remove, &[&key]).await.map(drop)
                })
                .await
            }
        };
        shared.recent.answered(job.key, job.seq, result.is_ok());
        let _ = job.done.send(result);
    }
}

/// Runs one invalidation. If it fails it may be lost (never recorded, so
/// never seen by any instance): the connection is dropped at once and the
/// next one is used only after invalidating everything (see [`recover`]).
/// Until then calls fail, and requests go to the origin.
fn invalidate(shared: &Arc<Shared>, tags: Vec<String>, mode: &'static str) -> StoreFuture<Stamp> {
    let channel = shared.channel.clone();
    let sent = call(shared, "invalidate", move |conn| async move {
        run_invalidate(&conn, &tags, mode, &channel).await
    });
    let shared = shared.clone();
    StoreFuture::pending(async move {
        let result = sent.await;
        if result.is_err() {
            shared.lost.store(true, Ordering::Release);
            let dropped = shared.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(dropped);
            shared.wake.notify_one();
        }
        result
    })
}

async fn run_invalidate(
    conn: &Conn,
    tags: &Vec<String>,
    mode: &str,
    channel: &String,
) -> Result<Stamp, tokio_postgres::Error> {
    let params: [&(dyn ToSql + Sync); 3] = [tags, &mode, channel];
    let row = conn.client.query_one(&conn.invalidate, &params).await?;
    Ok(Stamp(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
}

/// Makes a new connection safe to use: if an invalidation may have been
/// lost, invalidates everything through it first.
async fn recover(shared: &Shared, conn: Conn) -> StoreResult<Conn> {
    if !shared.lost.swap(false, Ordering::AcqRel) {
        return Ok(conn);
    }
    let limit = shared.options.response_timeout;
    let no_tags = Vec::new();
    let purge = run_invalidate(&conn, &no_tags, "f", &shared.channel);
    match tokio::time::timeout(limit, purge).await {
        Ok(Ok(stamp)) => {
            shared.board.invalidate_all(stamp);
            tracing::warn!(schema = %shared.options.schema, "tagcache PostgreSQL store invalidated every entry: an earlier invalidation may have been lost");
            Ok(conn)
        }
        failed => {
            shared.lost.store(true, Ordering::Release);
            let why = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no answer within {limit:?}"),
            };
            Err(unavailable(format!(
                "invalidating everything after a lost invalidation: {why}"
            )))
        }
    }
}

/// Keeps a connection open: reconnects when asked (a call found none) or
/// when the current one closed, with backoff; logs an outage once.
async fn maintain(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    let mut down_since_logged = false;
    loop {
        if shared.current().is_some() {
            backoff = Duration::from_millis(50);
            // Woken by a failing call, or checked once a second.
            let _ = tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await;
            continue;
        }
        let options = &shared.options;
        let opened = Conn::open(
            &shared.config,
            &options.schema,
            options.connect_timeout,
            false,
        )
        .await;
        let usable = match opened {
            Ok(conn) => recover(&shared, conn).await,
            Err(error) => Err(error),
        };
        match usable {
            Ok(conn) => {
                *shared.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(conn));
                shared.succeeded();
                if down_since_logged {
                    tracing::info!(schema = %options.schema, "tagcache PostgreSQL store reconnected");
                }
                down_since_logged = false;
            }
            Err(error) => {
                if !down_since_logged {
                    tracing::warn!(schema = %options.schema, %error, "tagcache PostgreSQL store cannot connect; serving from the origin until it can");
                    down_since_logged = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Deletes expired entries and stamps too old to matter, in bounded
/// statements.
async fn trim(shared: Arc<Shared>) {
    let s = shared.schema();
    let entries = format!(
        "DELETE FROM {s}.tagcache_store_entries WHERE key IN (
             SELECT key FROM {s}.tagcache_store_entries WHERE expires_at < $1 LIMIT 1000)"
    );
    let stamps = format!(
        "DELETE FROM {s}.tagcache_store_stamps WHERE ctid IN (
             SELECT ctid FROM {s}.tagcache_store_stamps WHERE stamp < $1 LIMIT 1000)"
    );
    let life = shared.options.max_entry_life;
    let horizon = micros(life + life.min(Duration::from_secs(600)));
    loop {
        tokio::time::sleep(shared.options.trim_interval).await;
        let Some(conn) = shared.current() else {
            continue;
        };
        let now = now_micros();
        for (sql, before) in [(&entries, now), (&stamps, now.saturating_sub(horizon))] {
            let before = i64::try_from(before).unwrap_or(i64::MAX);
            for _ in 0..10 {
                let deleted = tokio::time::timeout(
                    shared.options.response_timeout * 4,
                    conn.client.execute(sql.as_str(), &[&before]),
                )
                .await;
                match deleted {
                    Ok(Ok(1000)) => continue,
                    Ok(Ok(_)) => break,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "tagcache PostgreSQL store trimming failed");
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
