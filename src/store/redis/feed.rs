//! The invalidation feed: the task that keeps the [`View`](super::view::View)
//! current, for as long as the store lives.
//!
//! A session checks that this instance agrees with the namespace's shared
//! settings, subscribes to the invalidation channel and to a heartbeat
//! channel of its own, publishes a first heartbeat, reads the whole stamp
//! table (`HSCAN` in pages), applies what arrived meanwhile and waits for its
//! heartbeat: only then is the view in sync. Subscribed first, loaded
//! second: an invalidation made meanwhile is either in the scan or on the
//! channel (and applying it twice is harmless).
//!
//! **Liveness is checked end to end.** Every `feed_ping_interval` the
//! instance publishes a heartbeat through the namespace's master (the node
//! that publishes invalidations) and must receive the previous one back on
//! its subscription before sending the next. A subscription on a node that
//! answers but no longer hears the rest of the cluster stops receiving
//! heartbeats exactly when it stops receiving invalidations: the view drops
//! out of sync (every entry a miss) and the feed resubscribes, on the next
//! node for a cluster.
//!
//! The feed also drops out of sync when the circuit breaker opens (Redis
//! unreachable), and does not try again until it closes. It logs when it
//! loses sync and when it is back, not every failed attempt in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use super::conn::{map_error, unavailable};
use super::lease;
use super::scripts;
use super::view::Field;
use super::StoreState;
use crate::stamp::micros;
use crate::store::{StoreError, StoreErrorKind};

/// One `HSCAN` page: field/value pairs.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Fields read per `HSCAN` call when loading the stamp table.
const SCAN_COUNT: usize = 1000;
/// Longest pause between two attempts to resubscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// How the first attempt to get in sync went, for `build`.
pub(crate) enum FirstAttempt {
    Synced,
    /// Redis could not be reached (the store starts failing open).
    Unreachable,
    /// This instance's settings disagree with the namespace's: it must not
    /// share entries with the others.
    Misconfigured(StoreError),
}

/// Keeps the view current: sessions, one after the other, for ever.
pub(crate) async fn run(shared: Arc<StoreState>, first: oneshot::Sender<FirstAttempt>) {
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    let mut node = 0usize;
    let mut was_synced = false;
    loop {
        shared.breaker.closed().await;
        let result = session(&shared, node, &mut first, &mut backoff, &mut was_synced).await;
        shared.view.set_synced(false);
        let error = result.err();
        if let Some(first) = first.take() {
            let _ = first.send(match &error {
                Some(error) if is_misconfigured(error) => {
                    FirstAttempt::Misconfigured(error.clone())
                }
                _ => FirstAttempt::Unreachable,
            });
        }
        match &error {
            Some(error) if is_misconfigured(error) => {
                tracing::error!(%error, "tagcache: this instance does not match its Redis namespace; it serves from the origin and caches nothing")
            }
            Some(error) if was_synced => {
                tracing::warn!(%error, "tagcache: Redis invalidation feed lost; entries count as misses until it is back in sync")
            }
            Some(error) => {
                tracing::debug!(%error, "tagcache: Redis invalidation feed not in sync yet")
            }
            None => {}
        }
        was_synced = false;
        node = node.wrapping_add(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

const MISCONFIGURED: &str = "namespace settings differ";

fn is_misconfigured(error: &StoreError) -> bool {
    error.kind() == StoreErrorKind::Other && error.to_string().contains(MISCONFIGURED)
}

/// One subscription, from subscribing to losing it (always an error).
async fn session(
    shared: &StoreState,
    node: usize,
    first: &mut Option<oneshot::Sender<FirstAttempt>>,
    backoff: &mut Duration,
    was_synced: &mut bool,
) -> Result<(), StoreError> {
    let options = &shared.options;
    // The breaker opening at any point from here on (even if it closes
    // again before the feed looks) means calls failed while this session
    // could not tell what it missed: it ends, and the next one reloads.
    let openings = shared.breaker.openings();
    let breaker_tripped = || shared.breaker.is_open() || shared.breaker.openings() != openings;
    if let Some((client, slot)) = &shared.cluster {
        if !slot.is_connected() {
            slot.connect(client, options.connect_timeout + options.response_timeout)
                .await?;
        }
    }
    check_settings(shared).await?;
    scripts::preload(
        shared,
        &[
            &scripts::FILL_STAMP,
            &scripts::INVALIDATE,
            &lease::ACQUIRE,
            &lease::RENEW,
            &lease::RELEASE,
        ],
    )
    .await?;
    let client = &shared.pubsub_clients[node % shared.pubsub_clients.len()];
    let pubsub = tokio::time::timeout(options.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| unavailable("timed out connecting the invalidation feed"))?
        .map_err(|e| map_error(&e))?;
    let (mut sink, mut stream) = pubsub.split();
    let channels = [
        shared.keys.channel.as_str(),
        shared.heartbeat_channel.as_str(),
        shared.keys.lease_channel.as_str(),
    ];
    tokio::time::timeout(
        options.connect_timeout + options.response_timeout,
        sink.subscribe(&channels[..]),
    )
    .await
    .map_err(|_| unavailable("timed out subscribing to the invalidation feed"))?
    .map_err(|e| map_error(&e))?;

    let mut heartbeat = Heartbeat::default();
    heartbeat.send(shared).await?;
    load(shared).await?;
    // Messages that arrived during the scan are applied, and this instance's
    // heartbeat received, before the view claims to be in sync.
    let deadline = Instant::now() + options.connect_timeout + 2 * options.response_timeout;
    while !heartbeat.received() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(message)) => receive(shared, &message, &mut heartbeat)?,
            Ok(None) => return Err(unavailable("invalidation feed disconnected")),
            Err(_) => return Err(unavailable("the feed's first heartbeat never came back")),
        }
    }
    while let Some(Some(message)) = stream.next().now_or_never() {
        receive(shared, &message, &mut heartbeat)?;
    }
    if breaker_tripped() {
        return Err(unavailable("Redis failed while the feed was loading"));
    }
    shared.view.set_synced(true);
    *backoff = MIN_BACKOFF;
    if let Some(first) = first.take() {
        let _ = first.send(FirstAttempt::Synced);
    }
    if !*was_synced {
        tracing::info!(channel = %shared.keys.channel, "tagcache: Redis invalidation feed in sync");
    }
    *was_synced = true;

    let mut beat = tokio::time::interval(options.ping_interval);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        let breaker_changed = shared.breaker.changed.notified();
        if breaker_tripped() {
            return Err(unavailable("Redis unreachable (circuit breaker opened)"));
        }
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => receive(shared, &message, &mut heartbeat)?,
                None => return Err(unavailable("invalidation feed disconnected")),
            },
            _ = beat.tick() => {
                if !heartbeat.received() {
                    return Err(unavailable(
                        "the feed's heartbeat did not come back: the subscription no longer hears the namespace's master",
                    ));
                }
                heartbeat.send(shared).await?;
            }
            _ = breaker_changed => {}
        }
    }
}

/// The heartbeats this session sent, and whether the last came back.
#[derive(Default)]
struct Heartbeat {
    sent: u64,
    received: u64,
}

impl Heartbeat {
    async fn send(&mut self, shared: &StoreState) -> Result<(), StoreError> {
        self.sent += 1;
        let payload = self.sent.to_string();
        let mut invocation = scripts::HEARTBEAT_SCRIPT.key(&shared.keys.clock);
        invocation.arg(&shared.heartbeat_channel).arg(&payload);
        let _: i64 = shared
            .call("heartbeat", shared.conn.script(&invocation))
            .await?;
        Ok(())
    }

    fn received(&self) -> bool {
        self.received == self.sent
    }
}

/// Takes in one message: a heartbeat of this session's, a lease's end, or
/// an invalidation.
/// An invalidation that cannot be read (another format during a rolling
/// deploy, a stamp out of range) may be one this instance needed: the error
/// makes the feed reload the whole table rather than carry on without it.
fn receive(
    shared: &StoreState,
    message: &redis::Msg,
    heartbeat: &mut Heartbeat,
) -> Result<(), StoreError> {
    let payload = message.get_payload_bytes();
    if message.get_channel_name() == shared.heartbeat_channel {
        if let Some(n) = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            heartbeat.received = heartbeat.received.max(n);
        }
        return Ok(());
    }
    if message.get_channel_name() == shared.keys.lease_channel {
        shared.lease_waits.heard(payload);
        return Ok(());
    }
    if shared.view.apply_message(payload) {
        return Ok(());
    }
    metrics::counter!("tagcache_redis_rejected_messages_total").increment(1);
    Err(StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "unreadable invalidation message {:?}; reloading the stamp table",
            String::from_utf8_lossy(&payload[..payload.len().min(80)])
        ),
    ))
}

/// Reads the whole stamp table in pages, each bounded by the response
/// timeout (one `HGETALL` of a large table would block the server and could
/// not finish within it). Fields out of range are applied as invalidations
/// now, and repaired in Redis.
async fn load(shared: &StoreState) -> Result<(), StoreError> {
    let mut cursor: u64 = 0;
    let mut out_of_range: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(&shared.keys.tags)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, fields): (u64, Fields) = shared.call("HSCAN", shared.conn.query(&cmd)).await?;
        for (field, value) in fields {
            if shared.view.apply_field(&field, &value) == Field::OutOfRange {
                out_of_range.push(field);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if !out_of_range.is_empty() {
        repair(shared, &out_of_range).await;
    }
    Ok(())
}

/// Sets stamp fields found out of range to the server's time (best effort:
/// every instance fails closed on them anyway).
async fn repair(shared: &StoreState, fields: &[Vec<u8>]) {
    metrics::counter!("tagcache_redis_rejected_stamps_total", "source" => "table")
        .increment(fields.len() as u64);
    let mut invocation = scripts::REPAIR.key(&shared.keys.tags);
    invocation.arg(scripts::max_ahead_arg());
    for field in fields {
        invocation.arg(&field[..]);
    }
    let repaired: Result<i64, _> = shared.call("repair", shared.conn.script(&invocation)).await;
    let names: Vec<_> = fields
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    tracing::warn!(
        fields = ?names,
        repaired = ?repaired.ok(),
        "tagcache: stamps out of range in the Redis stamp table (not written by tagcache); counted as invalidated now and reset to the server's time"
    );
}

/// Every instance of a namespace must agree on the settings the stamp rule
/// depends on; the first one to connect records them.
async fn check_settings(shared: &StoreState) -> Result<(), StoreError> {
    let ours = micros(shared.options.max_entry_life).to_string();
    let mut invocation = scripts::SETTINGS_SCRIPT.key(&shared.keys.settings);
    invocation.arg("max_entry_life_us").arg(&ours);
    let stored: Vec<String> = shared
        .call("settings", shared.conn.script(&invocation))
        .await?;
    match stored.first() {
        Some(theirs) if *theirs != ours => Err(StoreError::new(
            StoreErrorKind::Other,
            format!(
                "{MISCONFIGURED}: this instance's max_entry_life is {ours} µs, the namespace {:?} was set up with {theirs} µs; every instance sharing a namespace must use the same (or use another namespace)",
                shared.namespace
            ),
        )),
        _ => Ok(()),
    }
}
