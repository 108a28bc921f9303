//! The Redis store: entries shared by every instance of an application, on
//! one Redis node or a Redis Cluster (feature `redis`).
//!
//! # Layout
//!
//! With the namespace `ns` (see [`RedisStoreBuilder::namespace`]):
//!
//! | key | type | what |
//! |-----|------|------|
//! | `ns:e:<32 hex>` | string, `PX` | one entry, under the 128-bit [`KeyHash`] of its key (fixed length whatever the URL; the readable key is inside and checked on every hit) |
//! | `{ns}:clock` | string | the last stamp handed out |
//! | `{ns}:tags` | hash | `h:<tag>` / `s:<tag>` → stamp of the tag's last hard / soft invalidation; `floor` → stamp of the last [`invalidate_all`](crate::Cache::purge_all) |
//! | `{ns}:tagtimes` | sorted set | `h:<tag>` / `s:<tag>` scored by stamp, to prune old stamps in order |
//! | `{ns}:settings` | hash | settings every instance must share (`max_entry_life_us`), recorded by the first |
//! | `ns:invalidations` | pub/sub channel | every invalidation, for the other instances |
//! | `ns:heartbeat:<id>` | pub/sub channel | one instance's feed heartbeat, published through the `{ns}` master |
//! | `{ns:e:<32 hex>}:lease` | string, `PX` | the key's fleet-wide lease while an instance fills it (see [`lease`](crate::store::lease)) |
//! | `ns:leases` | pub/sub channel | the end of a lease another instance waits on |
//!
//! Needs Redis 7.0 or later (the scripts declare `allow-oom`). The `{ns}` keys share a hash tag, so they live in one cluster slot
//! and one Lua script can update them atomically; entries spread over all
//! slots. An entry's value is a versioned binary encoding (see
//! [`codec`]); a value that does not decode is counted, logged and treated
//! as a miss, and the next fill overwrites it.
//!
//! # Operations
//!
//! * **Hit**: one `GET`; the entry's tags are checked against the local
//!   view of the stamps, with no further round trip. A `GET` that was
//!   already on its way when this instance wrote the same key returns the
//!   written entry, so an instance never reads older than its own writes.
//! * **Miss**: `GET`; then, for the request leading the key's flight on
//!   this instance, one script that reads the entry again or takes the
//!   key's lease (a herd over many instances makes one origin call: see
//!   [`lease`](crate::store::lease)); the fill stamp from the clock script
//!   (`EVALSHA`); the origin call; and one script that stores the entry
//!   (`SET key value PX <retention>`, where retention is the entry's TTL
//!   plus its longer stale window, capped by
//!   [`max_entry_life`](RedisStoreBuilder::max_entry_life)) and releases
//!   the lease. Four round trips, as before leases.
//! * **Invalidate**: one `EVALSHA` that takes a stamp
//!   (`max(last + 1, server time in µs)`, so it never goes backwards even if
//!   the clock key is lost), records it for each tag, prunes up to
//!   `100 + 2 × tags` stamps older than `max_entry_life` plus a margin for
//!   clock differences (ten minutes, or the life itself if shorter), and publishes the
//!   invalidation. The returned stamp is applied to the local view before
//!   the call resolves, so this instance never serves an invalidated entry
//!   after `invalidate` returned; other instances apply it when the message
//!   reaches them (typically well under a millisecond on a LAN).
//!
//! # The local view
//!
//! At startup (and after any loss of the subscription) the store subscribes
//! to the channel and then reads the whole stamp hash (`HSCAN` in pages).
//! While the subscription is down, invalidations from other instances could
//! be missed, so the store counts every entry as invalid (a miss) until it
//! has resubscribed and reloaded.
//!
//! # Failures
//!
//! Every call is bounded by [`response_timeout`](RedisStoreBuilder::response_timeout)
//! (default 100 ms), connection attempts by
//! [`connect_timeout`](RedisStoreBuilder::connect_timeout) (default 250 ms).
//! When Redis is down, slow or answering errors, calls fail with a
//! [`StoreError`] and the layers serve from the origin (fail-open); the
//! connection and the feed reconnect by themselves, and hits resume without
//! rebuilding anything. A store built while Redis is down starts in that
//! state.
//!
//! * **Circuit breaker.** After 3 consecutive failed calls Redis is not
//!   asked at all ([`StoreErrorKind::CircuitOpen`], counted in
//!   `tagcache_redis_skipped_total{op}` and `tagcache_store_errors_total`,
//!   gauge `tagcache_redis_breaker_open`, not logged per request): requests cost
//!   the origin's latency, not a timeout. A background probe on a fresh
//!   connection, with backoff, closes the breaker; the feed then resyncs
//!   before any entry is trusted. Opening and closing are logged once, with
//!   a periodic summary while it stays open.
//! * **No invalidation is forgotten.** An invalidation Redis did not take
//!   (down, out of memory, a killed connection, or fewer replicas than
//!   [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas) confirmed)
//!   fails with an error saying it was queued; this instance counts it at
//!   once (its own reads are never stale) and sends it again until Redis
//!   has it, which publishes it to the others; the call runs as a task of
//!   its own, so a caller that stops waiting does not drop it. The queue
//!   is bounded at 10 000 tags; past that it becomes one purge of
//!   everything (gauge `tagcache_redis_queued_invalidations`).
//!   *Limits:* until Redis has it, other instances cannot know of it: one
//!   whose own link to Redis is fine keeps serving what it covers until it
//!   arrives (when all instances lose Redis together, as in an outage, they
//!   are all out of sync and serve misses). And the queue lives in the
//!   process: if this instance exits before Redis takes it, it is lost.
//! * **Stamps from the network are checked.** The clock never runs more
//!   than an hour past the server's `TIME` and stays below 2^53 (where
//!   Lua's numbers stop being exact); a clock found outside that is
//!   repaired. A stamp read from Redis or received on the channel outside
//!   that range is never adopted: a table field counts as an invalidation
//!   now (and is repaired), a message makes the feed reload the table.
//! * **The feed is checked end to end.** A heartbeat published through the
//!   namespace's master every [`feed_ping_interval`](RedisStoreBuilder::feed_ping_interval)
//!   must come back on the subscription before the next is sent, or the
//!   view drops out of sync: a subscription that silently stopped
//!   receiving is noticed within two intervals.
//!
//! # Recommended server settings
//!
//! Entries expire by `PX`, but a cache should also be bounded by memory:
//!
//! ```text
//! maxmemory 2gb
//! maxmemory-policy volatile-lru   # or allkeys-lru if the instance holds only cache data
//! ```
//!
//! With `volatile-lru` only keys with a TTL (the entries) are evicted; the
//! clock and the stamp table have none and stay. With `allkeys-lru` the
//! stamp table can be evicted too: entries then look valid to an instance
//! that reloads its view, so prefer `volatile-lru` unless the memory of the
//! instance is dedicated and generous. Persistence is not needed for
//! correctness of the clock (it follows server time), but without it a
//! restart drops the entries (misses, not errors).
//!
//! Connections are multiplexed: one [`ConnectionManager`](redis::aio::ConnectionManager)
//! connection for a single node, the async cluster client for a cluster,
//! plus one dedicated pub/sub connection; no pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use crate::entry::{Entry, KeyHash, Tag};
use crate::stamp::{micros, InvalidationMode, Stamp, Validity};
use crate::store::{Store, StoreError, StoreErrorKind, StoreFuture, StoreResult};

mod breaker;
pub use crate::store::codec;
mod config;
mod conn;
mod feed;
mod lease;
mod pending;
mod recent;
mod scan;
mod scripts;
mod view;

pub use config::{
    RedisStoreBuilder, RedisUrls, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FEED_PING_INTERVAL,
    DEFAULT_MAX_ENTRY_LIFE, DEFAULT_MAX_TAGS, DEFAULT_NAMESPACE, DEFAULT_RESPONSE_TIMEOUT,
};

use breaker::Breaker;
use config::Options;
use conn::{map_error, unavailable, ClusterSlot, Conn};
use feed::FirstAttempt;
use lease::LeaseWaits;
use pending::Queued;
use recent::Recent;
use view::View;

/// How long stamps are kept in Redis: the longest entry life plus a margin
/// for clock differences between the Redis server and the instances (ten
/// minutes, or the entry life itself when that is shorter).
fn prune_horizon(max_entry_life: Duration) -> Duration {
    max_entry_life + max_entry_life.min(Duration::from_secs(10 * 60))
}

/// The key names of one namespace.
pub(crate) struct Keys {
    /// `ns:e:`, followed by the 32-hex key hash.
    entry_prefix: String,
    clock: String,
    tags: String,
    times: String,
    settings: String,
    channel: String,
    lease_channel: String,
}

impl Keys {
    fn new(ns: &str) -> Keys {
        Keys {
            entry_prefix: format!("{ns}:e:"),
            clock: format!("{{{ns}}}:clock"),
            tags: format!("{{{ns}}}:tags"),
            times: format!("{{{ns}}}:tagtimes"),
            settings: format!("{{{ns}}}:settings"),
            channel: format!("{ns}:invalidations"),
            lease_channel: format!("{ns}:leases"),
        }
    }

    fn entry(&self, key: KeyHash) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.entry_prefix.len() + 32);
        out.push_str(&self.entry_prefix);
        let _ = write!(out, "{:032x}", key.0);
        out
    }

    /// `{<entry key>}:lease`: the hash tag is the entry's whole key, so the
    /// lease shares the entry's cluster slot (namespaces hold no braces).
    fn lease(&self, key: KeyHash) -> String {
        format!("{{{}}}:lease", self.entry(key))
    }
}

/// What the store and its background tasks share.
pub(crate) struct StoreState {
    conn: Conn,
    view: View,
    keys: Keys,
    options: Options,
    namespace: String,
    /// One client per node the feed may subscribe on, tried in turn.
    pubsub_clients: Vec<redis::Client>,
    cluster: Option<(redis::cluster::ClusterClient, Arc<ClusterSlot>)>,
    recent: Recent,
    corrupt: AtomicU64,
    breaker: Breaker,
    /// This instance's own heartbeat channel (see [`feed`]).
    heartbeat_channel: String,
    /// Requests waiting for another instance's lease to end (see [`lease`]).
    lease_waits: Arc<LeaseWaits>,
}

/// The store's state and its background tasks, which end with it.
struct Handle {
    shared: Arc<StoreState>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A [`Store`] in Redis or Redis Cluster, shared by every instance that uses
/// the same namespace. See the [module documentation](self) for the layout,
/// the operations and the recommended server settings.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tagcache::{Cache, RedisStore};
///
/// # async fn handler() -> &'static str { "[]" }
/// # async fn run() -> Result<(), tagcache::StoreError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("classroom")
///     .connect_timeout(Duration::from_millis(250))
///     .response_timeout(Duration::from_millis(100))
///     .max_entry_life(Duration::from_secs(6 * 3600))
///     .build()
///     .await?;
/// let cache = Cache::new(store);
/// let app: Router = Router::new().route(
///     "/sessions",
///     get(handler).route_layer(cache.layer("sessions").ttl(Duration::from_secs(60))),
/// );
///
/// // A Redis Cluster: any subset of the nodes as seeds.
/// let clustered = RedisStore::builder(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .cluster(true)
///     .namespace("classroom")
///     .build()
///     .await?;
/// # let _ = (app, clustered);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("RedisStore")
            .field("namespace", &shared.namespace)
            .field("cluster", &shared.cluster.is_some())
            .field("in_sync", &shared.view.is_synced())
            .field("breaker_open", &shared.breaker.is_open())
            .field("queued_invalidations", &shared.view.pending.len())
            .field("tag_stamps", &shared.view.tag_stamp_count())
            .finish()
    }
}

impl RedisStore {
    /// Options for a store at `urls`: one URL such as
    /// `"redis://127.0.0.1:6379"` (or `rediss://`, `redis+unix://`), or the
    /// seed nodes of a cluster together with [`RedisStoreBuilder::cluster`].
    pub fn builder(urls: impl RedisUrls) -> RedisStoreBuilder {
        RedisStoreBuilder::new(urls.into_urls())
    }

    async fn connect(builder: RedisStoreBuilder) -> Result<RedisStore, StoreError> {
        let RedisStoreBuilder {
            urls,
            namespace,
            cluster,
            options,
        } = builder;
        let pubsub_clients = urls
            .iter()
            .map(|url| {
                redis::Client::open(url.as_str()).map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Other,
                        format!("invalid Redis URL {url:?}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (conn, cluster) = if cluster {
            let client =
                Conn::cluster_client(&urls, options.connect_timeout, options.response_timeout)?;
            let slot = ClusterSlot::empty();
            (Conn::Cluster(slot.clone()), Some((client, slot)))
        } else {
            let conn = Conn::single(&urls[0], options.connect_timeout, options.response_timeout)?;
            (conn, None)
        };
        let heartbeat_channel = format!("{namespace}:heartbeat:{:016x}", rand_id());
        let shared = Arc::new(StoreState {
            conn,
            view: View::new(options.max_entry_life, options.max_tags),
            recent: Recent::new(options.response_timeout),
            keys: Keys::new(&namespace),
            options,
            namespace,
            pubsub_clients,
            cluster,
            corrupt: AtomicU64::new(0),
            breaker: Breaker::new(),
            heartbeat_channel,
            lease_waits: Arc::default(),
        });
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let tasks = vec![
            tokio::spawn(feed::run(shared.clone(), first_tx)).abort_handle(),
            tokio::spawn(probe(shared.clone())).abort_handle(),
            tokio::spawn(send_queued(shared.clone())).abort_handle(),
        ];
        let store = RedisStore {
            handle: Arc::new(Handle { shared, tasks }),
        };
        // Wait for the first attempt to subscribe and load: it either
        // succeeds (the store starts in sync) or fails (the store starts
        // failing open and the task keeps trying), unless this instance
        // disagrees with the namespace's settings.
        match first_rx.await {
            Ok(FirstAttempt::Synced) => {}
            Ok(FirstAttempt::Misconfigured(error)) => return Err(error),
            _ => tracing::warn!(
                namespace = %store.handle.shared.namespace,
                "tagcache could not reach Redis; serving from the origin until it can"
            ),
        }
        Ok(store)
    }

    /// The key prefix in use.
    pub fn namespace(&self) -> &str {
        &self.handle.shared.namespace
    }

    /// Whether the local view of the tag stamps is subscribed and loaded.
    /// While it is not, every entry counts as a miss.
    pub fn is_in_sync(&self) -> bool {
        self.handle.shared.view.is_synced()
    }

    /// Whether the circuit breaker is open: Redis was found unreachable and
    /// is not asked until a probe gets an answer.
    pub fn is_breaker_open(&self) -> bool {
        self.handle.shared.breaker.is_open()
    }

    /// How many invalidations Redis has not taken yet (they are retried,
    /// and this instance already counts their entries as invalidated).
    pub fn queued_invalidations(&self) -> usize {
        self.handle.shared.view.pending.len()
    }

    /// How many of this instance's writes are sent but not yet answered
    /// (for diagnostics; reads of those keys return the written entry).
    pub fn writes_in_flight(&self) -> usize {
        self.handle.shared.recent.in_flight()
    }

    /// How many stored values failed to decode (and were treated as misses)
    /// since the store was built.
    pub fn corrupt_entries(&self) -> u64 {
        self.handle.shared.corrupt.load(Ordering::Relaxed)
    }

    /// Number of tag stamps in this instance's view.
    pub fn tag_stamp_count(&self) -> usize {
        self.handle.shared.view.tag_stamp_count()
    }

    /// The Redis key an entry is stored under.
    pub fn entry_key(&self, key: KeyHash) -> String {
        self.handle.shared.keys.entry(key)
    }

    fn shared(&self) -> Arc<StoreState> {
        self.handle.shared.clone()
    }
}

/// Starts a store call at once: the future is polled a first time before it
/// is handed back, which puts the command on the (ordered, multiplexed)
/// connection. Commands therefore reach Redis in the order the store's
/// methods were called: a `get` right after a `put` of the same key sees the
/// new entry even though the put's answer has not come back yet. (Only when
/// the connection's send queue is full does a command wait, and then a
/// later one may overtake it: a miss instead of a hit, never a wrong
/// answer.)
fn eager<T: Send + 'static>(
    future: impl Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreFuture<T> {
    let mut future = Box::pin(future);
    if tokio::runtime::Handle::try_current().is_err() {
        // Timers need a runtime: leave the first poll to the caller's.
        return StoreFuture::Pending(future);
    }
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    // The first poll is unconstrained: with the task's cooperative budget
    // spent, tokio would answer it with `Pending` before queueing the
    // command. Later polls spend the budget as usual, so a task looping over
    // store calls still yields to the others.
    match Pin::new(&mut tokio::task::unconstrained(future.as_mut())).poll(&mut cx) {
        Poll::Ready(result) => StoreFuture::ready(result),
        Poll::Pending => StoreFuture::Pending(future),
    }
}

/// Runs an invalidation as a task of its own, so that it is recorded (or
/// queued) even if the caller stops waiting for it: a dropped
/// `invalidate` future must not drop the invalidation. Without a runtime
/// it runs in the caller's future, as [`eager`] does.
fn detached(
    future: impl Future<Output = StoreResult<Stamp>> + Send + 'static,
) -> StoreFuture<Stamp> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return eager(future);
    };
    let task = runtime.spawn(future);
    StoreFuture::Pending(Box::pin(async move {
        task.await.unwrap_or_else(|error| {
            Err(StoreError::new(
                StoreErrorKind::Other,
                format!("the invalidation task failed: {error}"),
            ))
        })
    }))
}

/// Runs `future` within the store's response timeout.
async fn bounded<T>(
    shared: &StoreState,
    what: &'static str,
    future: impl Future<Output = Result<T, redis::RedisError>>,
) -> StoreResult<T> {
    match tokio::time::timeout(shared.options.response_timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(map_error(&error)),
        Err(_) => Err(unavailable(format!(
            "redis {what}: no answer within {:?}",
            shared.options.response_timeout
        ))),
    }
}

/// A stamp a clock script returned (`{stamp, repaired}`).
fn script_stamp((raw, repaired): (String, i64)) -> StoreResult<Stamp> {
    if repaired != 0 {
        metrics::counter!("tagcache_redis_clock_repairs_total").increment(1);
        tracing::warn!("tagcache: the Redis clock key held a value out of range (not written by tagcache); it was started again from the server's time");
    }
    scripts::parse_stamp(raw.as_bytes()).ok_or_else(|| {
        metrics::counter!("tagcache_redis_rejected_stamps_total", "source" => "reply").increment(1);
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("redis clock returned {raw:?}, out of range"),
        )
    })
}

/// A random id for this store's heartbeat channel.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(crate::stamp::now_micros() as u128);
    hasher.finish()
}

/// Probes Redis while the circuit breaker is open, each time with a fresh
/// connection that replaces the old one when it answers.
async fn probe(shared: Arc<StoreState>) {
    let renew = || async {
        let client = shared.cluster.as_ref().map(|(client, _)| client);
        let deadline = shared.options.connect_timeout + shared.options.response_timeout;
        shared.conn.renew(client, deadline).await
    };
    shared.breaker.probe(renew).await;
}

/// Sends queued invalidations to Redis, oldest first, as soon as it can.
async fn send_queued(shared: Arc<StoreState>) {
    const FIRST_PAUSE: Duration = Duration::from_millis(50);
    const MAX_PAUSE: Duration = Duration::from_secs(2);
    let mut pause = FIRST_PAUSE;
    loop {
        let added = shared.view.pending.added.notified();
        let Some((id, queued)) = shared.view.pending.front() else {
            added.await;
            continue;
        };
        shared.breaker.closed().await;
        match shared.invalidate(&queued).await {
            Ok(stamp) => {
                // The stamp is in the view (`invalidate` applied it): the
                // marks can go.
                shared.view.pending.done(id);
                pause = FIRST_PAUSE;
                tracing::info!(
                    stamp = stamp.0,
                    queued = shared.view.pending.len(),
                    "tagcache: a queued invalidation reached Redis"
                );
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

fn retention_millis(entry: &Entry, max_entry_life: Duration) -> u64 {
    let retention = entry.retention().min(max_entry_life);
    u64::try_from(retention.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl StoreState {
    /// Runs one Redis call through the circuit breaker and within the
    /// response timeout. While the breaker is open the call is not made.
    async fn call<T>(
        &self,
        op: &'static str,
        future: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> StoreResult<T> {
        if self.breaker.is_open() {
            return Err(self.breaker.skip(op));
        }
        let result = bounded(self, op, future).await;
        if self.breaker.record(result.as_ref().map(drop)) {
            // Invalidations made elsewhere cannot reach this instance now.
            self.view.set_synced(false);
        }
        result
    }

    fn decode(&self, key: KeyHash, raw: Vec<u8>) -> Option<Arc<Entry>> {
        match codec::decode(Bytes::from(raw)) {
            Ok(entry) => Some(Arc::new(entry)),
            Err(error) => {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tagcache_redis_corrupt_entries_total").increment(1);
                tracing::warn!(key = %self.keys.entry(key), %error, "tagcache found an undecodable entry in Redis; treating it as a miss");
                None
            }
        }
    }

    /// Records an invalidation in Redis (which publishes it) and applies
    /// its stamp to the view.
    async fn invalidate(&self, queued: &Queued) -> StoreResult<Stamp> {
        let (mode, tags): (&str, &[Tag]) = match queued {
            Queued::All => ("a", &[]),
            Queued::Tags(tags, InvalidationMode::Hard) => ("h", tags),
            Queued::Tags(tags, InvalidationMode::Soft) => ("s", tags),
        };
        let mut invocation = scripts::INVALIDATE.key(&self.keys.clock);
        invocation
            .key(&self.keys.tags)
            .key(&self.keys.times)
            .arg(scripts::max_ahead_arg())
            .arg(mode)
            // Prune only well past the longest entry life: Redis prunes by
            // the server's clock, instances judge ages by their own, and a
            // stamp pruned early could revive an entry on a reload.
            .arg(micros(prune_horizon(self.options.max_entry_life)))
            .arg(&self.keys.channel);
        for tag in tags {
            invocation.arg(tag.as_bytes());
        }
        let reply = self
            .call("invalidate", self.conn.script(&invocation))
            .await?;
        let stamp = script_stamp(reply)?;
        match queued {
            Queued::All => self.view.apply_all(stamp),
            Queued::Tags(tags, mode) => self.view.apply(tags, stamp, *mode),
        }
        self.wait_for_replicas().await?;
        Ok(stamp)
    }

    /// With [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas):
    /// fails unless enough replicas confirm the writes made so far on this
    /// connection (the invalidation just recorded).
    async fn wait_for_replicas(&self) -> StoreResult<()> {
        let wanted = self.options.replicas_to_wait;
        if wanted == 0 {
            return Ok(());
        }
        let mut cmd = redis::cmd("WAIT");
        // `WAIT n 0` would wait for ever: never less than 1 ms.
        cmd.arg(wanted)
            .arg((self.options.response_timeout.as_millis() as u64 / 2).max(1));
        let confirmed: usize = self.call("WAIT", self.conn.query(&cmd)).await?;
        if confirmed < wanted {
            metrics::counter!("tagcache_redis_unreplicated_invalidations_total").increment(1);
            return Err(unavailable(format!(
                "the invalidation reached {confirmed} of {wanted} replicas in time"
            )));
        }
        Ok(())
    }

    /// Invalidates, or, when Redis does not take it, queues the
    /// invalidation (this instance counts it at once) and says so.
    async fn invalidate_or_queue(&self, queued: Queued) -> StoreResult<Stamp> {
        match self.invalidate(&queued).await {
            Ok(stamp) => Ok(stamp),
            Err(error) => {
                self.view.pending.push(queued);
                self.view.changed();
                Err(StoreError::new(
                    error.kind(),
                    format!("{error}; queued: this instance counts the invalidation at once, and it is sent to Redis as soon as Redis takes it"),
                ))
            }
        }
    }
}

impl Store for RedisStore {
    fn get(&self, key: KeyHash) -> StoreFuture<Option<Arc<Entry>>> {
        let shared = self.shared();
        let started = shared.recent.read_started();
        eager(async move {
            let redis_key = shared.keys.entry(key);
            let mut cmd = redis::cmd("GET");
            cmd.arg(&redis_key);
            let value: Value = shared.call("GET", shared.conn.query(&cmd)).await?;
            if let Some(newer) = shared.recent.newer_than(key, started) {
                return Ok(Some(newer));
            }
            match value {
                Value::Nil => Ok(None),
                Value::BulkString(raw) => Ok(shared.decode(key, raw)),
                other => Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("redis GET {redis_key} answered {other:?}"),
                )),
            }
        })
    }

    fn put(&self, key: KeyHash, entry: Arc<Entry>) -> StoreFuture<()> {
        let shared = self.shared();
        let seq = shared.recent.write_started(key, entry.clone());
        eager(async move {
            let value = codec::encode(&entry);
            let mut cmd = redis::cmd("SET");
            cmd.arg(shared.keys.entry(key))
                .arg(&value[..])
                .arg("PX")
                .arg(retention_millis(&entry, shared.options.max_entry_life));
            let result = shared.call("SET", shared.conn.query::<Value>(&cmd)).await;
            shared.recent.write_answered(key, seq);
            result.map(drop)
        })
    }

    fn remove(&self, key: KeyHash) -> StoreFuture<()> {
        let shared = self.shared();
        shared.recent.removed(key);
        eager(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(shared.keys.entry(key));
            shared.call("DEL", shared.conn.query::<Value>(&cmd)).await?;
            Ok(())
        })
    }

    fn fill_stamp(&self) -> StoreFuture<Stamp> {
        let shared = self.shared();
        eager(async move {
            let mut invocation = scripts::FILL_STAMP.key(&shared.keys.clock);
            invocation.arg(scripts::max_ahead_arg());
            let reply = shared
                .call("clock", shared.conn.script(&invocation))
                .await?;
            script_stamp(reply)
        })
    }

    fn invalidate(&self, tags: &[Tag], mode: InvalidationMode) -> StoreFuture<Stamp> {
        let shared = self.shared();
        let queued = Queued::Tags(tags.to_vec(), mode);
        detached(async move { shared.invalidate_or_queue(queued).await })
    }

    fn invalidate_all(&self) -> StoreFuture<Stamp> {
        let shared = self.shared();
        detached(async move { shared.invalidate_or_queue(Queued::All).await })
    }

    fn validity(&self, entry: &Entry) -> Validity {
        self.handle.shared.view.validity(entry)
    }

    fn max_entry_life(&self) -> Duration {
        self.handle.shared.options.max_entry_life
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn invalidation_generation(&self) -> Option<u64> {
        Some(self.handle.shared.view.generation())
    }

    fn leases(&self) -> Option<&dyn crate::store::Leases> {
        self.handle
            .shared
            .options
            .leases
            .then_some(self as &dyn crate::store::Leases)
    }

    fn usage(&self) -> crate::inspect::StoreUsage {
        scan::usage(&self.handle.shared)
    }

    fn scan(
        &self,
        request: crate::inspect::ScanRequest,
    ) -> StoreFuture<crate::inspect::ScanOutcome> {
        StoreFuture::pending(scan::scan(self.shared(), request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        let keys = Keys::new("app");
        assert_eq!(keys.entry(KeyHash(0xabc)), format!("app:e:{:032x}", 0xabc));
        assert_eq!(keys.entry(KeyHash(u128::MAX)).len(), "app:e:".len() + 32);
        assert_eq!(keys.clock, "{app}:clock");
        assert_eq!(keys.tags, "{app}:tags");
        assert_eq!(keys.times, "{app}:tagtimes");
        assert_eq!(keys.channel, "app:invalidations");
        assert_eq!(keys.lease_channel, "app:leases");
        assert_eq!(
            keys.lease(KeyHash(0xabc)),
            format!("{{app:e:{:032x}}}:lease", 0xabc)
        );
    }
}
