//! The listening task: one `LISTEN` session, its notifications applied to
//! the cache, and the cache held out of sync whenever the session is not
//! known to be receiving everything.

use std::convert::Infallible;
use std::fmt::{self, Display};
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Notification, SimpleQueryMessage};

use super::config::{PgListenerConfig, MIN_BACKOFF};
use super::connect::MessageSource;
use super::payload::{self, Message};
use super::sql::quote_ident;
use super::task::AbortOnDrop;
use crate::cache::{Cache, OutOfSyncHold, Target};
use crate::metrics::RouteMetrics;
use crate::stamp::{now_micros, InvalidationMode};

/// The route name under which invalidations from the database are counted
/// (`tagcache_invalidations_total{route="postgres"}`, [`Cache::stats`])
/// and logged.
pub const SOURCE: &str = "postgres";

/// Notifications read from the connection but not yet applied. When the
/// applier falls behind, reading stops and the server buffers the rest.
const QUEUE: usize = 1024;

/// Longest part of a rejected payload quoted in the log.
const QUOTE_BYTES: usize = 120;

/// A running listener: cache invalidations driven by PostgreSQL
/// notifications (see the [module docs](super)). Dropping it stops the
/// listener and its tasks.
pub struct PgInvalidations {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the task reports to the handle.
#[derive(Default)]
struct Shared {
    in_sync: AtomicBool,
    applied: AtomicU64,
    rejected: AtomicU64,
    resyncs: AtomicU64,
    backend_pid: AtomicI64,
}

impl PgInvalidations {
    /// Starts listening with `config` and applying what arrives to
    /// `cache`, whatever its store. Must be called within a tokio
    /// runtime.
    ///
    /// Returns at once: until the listener has connected, run `LISTEN` and
    /// invalidated everything it may have missed, the cache is held out of
    /// sync (every lookup misses; see [`is_in_sync`](Self::is_in_sync)). A
    /// database that cannot be reached is retried with backoff, for as long
    /// as the handle lives.
    pub fn listen(cache: &Cache, config: PgListenerConfig) -> PgInvalidations {
        let shared = Arc::new(Shared::default());
        let listener = Listener {
            hold: Some(cache.hold_out_of_sync()),
            route: cache.route_metrics(SOURCE),
            metrics: Metrics {
                channel: config.channel.clone(),
            },
            cache: cache.clone(),
            config,
            shared: shared.clone(),
            failures: 0,
            last_reject_log: 0,
        };
        PgInvalidations {
            shared,
            task: tokio::spawn(listener.run()),
        }
    }

    /// Whether the listener is receiving every notification and has
    /// invalidated whatever it may have missed before. While it is not,
    /// the cache answers every lookup with a miss.
    pub fn is_in_sync(&self) -> bool {
        self.shared.in_sync.load(Ordering::Acquire)
    }

    /// How many notifications were applied to the cache so far.
    pub fn notifications_applied(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// How many notifications were rejected as unreadable so far.
    pub fn notifications_rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Acquire)
    }

    /// How many times the listener got in sync: 1 after the first
    /// connection, one more after each reconnection.
    pub fn resyncs(&self) -> u64 {
        self.shared.resyncs.load(Ordering::Acquire)
    }

    /// The process id of the listener's current session on the server
    /// (`pg_backend_pid()`), if it has one.
    pub fn backend_pid(&self) -> Option<i32> {
        match self.shared.backend_pid.load(Ordering::Acquire) {
            0 => None,
            pid => i32::try_from(pid).ok(),
        }
    }
}

impl fmt::Debug for PgInvalidations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgInvalidations")
            .field("in_sync", &self.is_in_sync())
            .field("applied", &self.notifications_applied())
            .field("rejected", &self.notifications_rejected())
            .field("resyncs", &self.resyncs())
            .finish()
    }
}

impl Drop for PgInvalidations {
    fn drop(&mut self) {
        // Dropping the task drops its connection, its driver and its hold.
        self.task.abort();
    }
}

/// The listener's metrics, looked up on each (rare) event rather than
/// registered once, so that a recorder installed after the listener
/// started still receives them.
struct Metrics {
    channel: String,
}

impl Metrics {
    fn applied(&self) {
        metrics::counter!("tagcache_pg_notifications_total", "channel" => self.channel.clone())
            .increment(1);
    }

    fn rejected(&self) {
        metrics::counter!("tagcache_pg_rejected_notifications_total", "channel" => self.channel.clone())
            .increment(1);
    }

    fn resynced(&self) {
        metrics::counter!("tagcache_pg_listener_resyncs_total", "channel" => self.channel.clone())
            .increment(1);
    }

    fn in_sync(&self, in_sync: bool) {
        metrics::gauge!("tagcache_pg_listener_in_sync", "channel" => self.channel.clone())
            .set(if in_sync { 1.0 } else { 0.0 });
    }
}

/// What the connection's driver hands to the listener.
enum Event {
    Notification(Notification),
    Lost(String),
}

struct Listener {
    cache: Cache,
    config: PgListenerConfig,
    shared: Arc<Shared>,
    metrics: Metrics,
    route: Arc<RouteMetrics>,
    /// Held whenever the session is not known to receive everything.
    hold: Option<OutOfSyncHold>,
    /// Failed attempts since the last time in sync.
    failures: u64,
    /// Second of the last rejected payload logged.
    last_reject_log: u64,
}

impl Listener {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut synced = false;
            let Err(error) = self.session(&mut synced).await;
            self.out_of_sync();
            let channel = &self.config.channel;
            if synced {
                // Logged once per outage; the attempts that follow are not.
                tracing::warn!(source = SOURCE, %channel, %error, "tagcache lost the PostgreSQL invalidation feed; every lookup misses until it is back");
                backoff = MIN_BACKOFF;
                self.failures = 0;
            } else if self.failures == 0 {
                tracing::warn!(source = SOURCE, %channel, %error, "tagcache cannot listen to PostgreSQL for invalidations; every lookup misses until it can");
            } else {
                tracing::debug!(source = SOURCE, %channel, %error, attempt = self.failures + 1, "tagcache PostgreSQL listener attempt failed");
            }
            self.failures += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.max_backoff);
        }
    }

    /// One session: connect, `LISTEN`, resync, then apply notifications
    /// until the connection fails. Only ever returns an error; `synced`
    /// says whether it got in sync first.
    async fn session(&mut self, synced: &mut bool) -> Result<Infallible, String> {
        let limit = self.config.response_timeout;
        let connecting = self.config.connector.connect(&self.config.pg);
        let (client, connection) = bounded(limit, "connecting", connecting).await?;
        let (events, mut received) = mpsc::channel(QUEUE);
        let _driver = AbortOnDrop(tokio::spawn(drive(connection, events)));

        // Once `LISTEN` has returned, every transaction that commits from
        // then on is delivered to this session.
        let listen = format!(
            "LISTEN {}; SELECT pg_backend_pid()",
            quote_ident(&self.config.channel)
        );
        let answers = bounded(limit, "LISTEN", client.simple_query(&listen)).await?;
        let pid = answers.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse::<i64>().ok(),
            _ => None,
        });
        self.shared
            .backend_pid
            .store(pid.unwrap_or(0), Ordering::Release);

        // Whatever committed before that and was not delivered is lost
        // (PostgreSQL never replays notifications): invalidate everything.
        // The stamp of this invalidation is taken after `LISTEN`, so every
        // entry whose origin read could predate a lost commit is older
        // than it, and every later commit arrives here.
        if let Err(error) = self.cache.run_invalidation(Target::All, &self.route).await {
            return Err(format!(
                "could not invalidate everything after connecting: {error}"
            ));
        }
        self.in_sync();
        *synced = true;

        // The checks run beside the applying: a check awaited here would
        // stop the draining of `received`, and a driver blocked on a full
        // queue would then never read the check's answer.
        let (failed, mut check_failed) = mpsc::channel(1);
        let every = self.config.ping_interval;
        let _checks = AbortOnDrop(tokio::spawn(check(client, every, limit, failed)));
        loop {
            tokio::select! {
                event = received.recv() => match event {
                    Some(Event::Notification(note)) => self.apply(&note).await?,
                    Some(Event::Lost(error)) => return Err(error),
                    None => return Err("the connection's task ended".to_owned()),
                },
                Some(error) = check_failed.recv() => return Err(error),
            }
        }
    }

    /// Applies one notification to the cache. An error means the store
    /// did not take it: the invalidation may be lost, so the session ends
    /// and the listener resyncs (purging everything) once the store
    /// answers again.
    async fn apply(&mut self, note: &Notification) -> Result<(), String> {
        if note.channel() != self.config.channel {
            return Ok(());
        }
        let target = match payload::parse(note.payload()) {
            Ok(Message::All) => Target::All,
            Ok(Message::Tags { tags, soft }) => {
                let mode = match soft {
                    true => InvalidationMode::Soft,
                    false => InvalidationMode::Hard,
                };
                Target::Tags(tags.into_iter().map(String::into_boxed_str).collect(), mode)
            }
            Err(why) => {
                self.reject(note, &why);
                return Ok(());
            }
        };
        // Duplicates are harmless: a tag invalidated twice is invalidated
        // at the later stamp. A store failure is also counted and logged by
        // `run_invalidation`, under the route `postgres`.
        self.cache
            .run_invalidation(target, &self.route)
            .await
            .map_err(|error| format!("the store did not take an invalidation: {error}"))?;
        self.shared.applied.fetch_add(1, Ordering::AcqRel);
        self.metrics.applied();
        Ok(())
    }

    /// Counts an unreadable payload, and logs it at most once a second: a
    /// misbehaving producer must not flood the log.
    fn reject(&mut self, note: &Notification, why: &str) {
        self.shared.rejected.fetch_add(1, Ordering::AcqRel);
        self.metrics.rejected();
        let second = now_micros() / 1_000_000;
        if std::mem::replace(&mut self.last_reject_log, second) != second {
            let payload = quote(note.payload());
            let sender = note.process_id();
            tracing::warn!(source = SOURCE, channel = %self.config.channel, sender, %payload, %why, "tagcache ignored a notification it cannot read");
        }
    }

    /// Lets lookups trust the cache again: only after everything that may
    /// have been missed was invalidated.
    fn in_sync(&mut self) {
        self.hold = None;
        self.shared.in_sync.store(true, Ordering::Release);
        self.shared.resyncs.fetch_add(1, Ordering::AcqRel);
        self.metrics.resynced();
        self.metrics.in_sync(true);
        if self.failures > 0 {
            tracing::info!(source = SOURCE, channel = %self.config.channel, failed_attempts = self.failures, "tagcache PostgreSQL invalidation feed is back; every entry filled before was invalidated");
        }
        self.failures = 0;
    }

    /// Holds the cache out of sync: from here on a notification may be lost.
    fn out_of_sync(&mut self) {
        if self.hold.is_none() {
            self.hold = Some(self.cache.hold_out_of_sync());
        }
        self.shared.in_sync.store(false, Ordering::Release);
        self.shared.backend_pid.store(0, Ordering::Release);
        self.metrics.in_sync(false);
    }
}

/// Polls the connection (which also carries the client's requests) and
/// hands notifications over, until it ends or the listener is gone.
async fn drive(mut connection: Box<dyn MessageSource>, events: mpsc::Sender<Event>) {
    loop {
        let event = match poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(note))) => Event::Notification(note),
            // Notices (and any future kind of message) carry no invalidation.
            Some(Ok(_)) => continue,
            Some(Err(error)) => Event::Lost(error.to_string()),
            None => Event::Lost("the server closed the connection".to_owned()),
        };
        let last = matches!(event, Event::Lost(_));
        if events.send(event).await.is_err() || last {
            return;
        }
    }
}

/// Checks every `every` that the session still answers, and reports the
/// first check that fails or takes longer than `limit`.
async fn check(client: Client, every: Duration, limit: Duration, failed: mpsc::Sender<String>) {
    loop {
        tokio::time::sleep(every).await;
        let answer = client.simple_query("SELECT 1");
        if let Err(error) = bounded(limit, "a check of the session", answer).await {
            let _ = failed.send(error).await;
            return;
        }
    }
}

/// `fut`, failing with a message once `limit` has passed.
async fn bounded<T, E: Display>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("{what}: {error}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// The start of `text`, cut on a character boundary.
fn quote(text: &str) -> &str {
    if text.len() <= QUOTE_BYTES {
        return text;
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_are_cut_on_character_boundaries() {
        assert_eq!(quote("short"), "short");
        let long = "é".repeat(100);
        let cut = quote(&long);
        assert!(cut.len() <= 120 && cut.len() >= 118);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
