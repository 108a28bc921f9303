//! The local view of the shared tag stamps, and the task that keeps it
//! current.
//!
//! `validity` must answer without a round trip, so every instance holds the
//! stamps in a [`TagBoard`]. The view is filled by a scan of the stamp hash,
//! then kept current by this instance's own invalidations (applied before
//! their future resolves) and by the messages other instances publish.
//!
//! The view is only trusted while the subscription is up: messages sent
//! while it is down are lost, so from the moment the subscription drops
//! until the hash has been read again every entry counts as invalid (a miss,
//! never a stale hit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;

use super::conn::{map_error, unavailable};
use super::scripts::parse_stamp;
use super::StoreState;
use crate::entry::Entry;
use crate::stamp::{micros, now_micros, InvalidationMode, Stamp, TagBoard, Validity};
use crate::store::{StoreError, StoreErrorKind};

/// One `HSCAN` page: field/value pairs.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Fields read per `HSCAN` call when loading the stamp table.
const SCAN_COUNT: usize = 1000;
/// Longest pause between two attempts to resubscribe.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The stamps known here, and whether they can be trusted.
pub(crate) struct View {
    board: TagBoard,
    synced: AtomicBool,
}

impl View {
    pub(crate) fn new(max_entry_life: Duration, max_tags: usize) -> View {
        View {
            board: TagBoard::new(max_entry_life, max_tags),
            synced: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn tag_stamp_count(&self) -> usize {
        self.board.len()
    }

    pub(crate) fn validity(&self, entry: &Entry) -> Validity {
        if !self.synced.load(Ordering::Acquire) {
            return Validity::Invalid;
        }
        self.board.validity(&entry.tags, entry.fill_stamp)
    }

    pub(crate) fn apply(&self, tags: &[impl AsRef<str>], stamp: Stamp, mode: InvalidationMode) {
        self.board.apply(tags, stamp, mode);
    }

    pub(crate) fn apply_all(&self, stamp: Stamp) {
        self.board.invalidate_all(stamp);
    }

    /// Applies one field of the stamp hash (`h:<tag>`, `s:<tag>`, `floor`).
    fn apply_field(&self, field: &[u8], value: &[u8]) {
        let Some(stamp) = parse_stamp(value) else {
            return;
        };
        let horizon = now_micros().saturating_sub(micros(self.board.max_entry_life()));
        if field == b"floor" {
            self.apply_all(stamp);
            return;
        }
        if stamp.0 < horizon {
            // Too old to invalidate a live entry: not worth holding.
            return;
        }
        let (mode, tag) = match field.split_first() {
            Some((b'h', rest)) => (InvalidationMode::Hard, rest),
            Some((b's', rest)) => (InvalidationMode::Soft, rest),
            _ => return,
        };
        let Some((b':', tag)) = tag.split_first() else {
            return;
        };
        if let Ok(tag) = std::str::from_utf8(tag) {
            self.apply(&[tag], stamp, mode);
        }
    }

    /// Applies a published invalidation; false if it could not be parsed.
    pub(crate) fn apply_message(&self, payload: &[u8]) -> bool {
        match parse_message(payload) {
            Some(Message::All(stamp)) => {
                self.apply_all(stamp);
                true
            }
            Some(Message::Tags { mode, stamp, tags }) => {
                self.apply(&tags, stamp, mode);
                true
            }
            None => false,
        }
    }
}

/// A decoded invalidation message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message<'a> {
    All(Stamp),
    Tags {
        mode: InvalidationMode,
        stamp: Stamp,
        tags: Vec<&'a str>,
    },
}

/// Parses `1|<mode>|<stamp>|<len>:<tag><len>:<tag>...` (see the script).
pub(crate) fn parse_message(payload: &[u8]) -> Option<Message<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix("1|")?;
    let (mode, rest) = rest.split_once('|')?;
    let (stamp, mut rest) = rest.split_once('|')?;
    let stamp = parse_stamp(stamp.as_bytes())?;
    let mode = match mode {
        "a" => return Some(Message::All(stamp)),
        "h" => InvalidationMode::Hard,
        "s" => InvalidationMode::Soft,
        _ => return None,
    };
    let mut tags = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let tag = after.get(..len)?;
        tags.push(tag);
        rest = &after[len..];
    }
    Some(Message::Tags { mode, stamp, tags })
}

/// Keeps the view current for as long as the store lives: subscribes, loads
/// the hash, applies messages, and starts over whenever the subscription
/// drops. `first` is told the outcome of the first attempt.
pub(crate) async fn run(shared: Arc<StoreState>, first: oneshot::Sender<bool>) {
    let mut first = Some(first);
    let mut backoff = MIN_BACKOFF;
    let mut node = 0usize;
    loop {
        let result = session(&shared, node, &mut first, &mut backoff).await;
        shared.view.synced.store(false, Ordering::Release);
        if let Err(error) = result {
            tracing::warn!(%error, "tagcache redis invalidation feed lost; entries count as misses until it is back");
        }
        if let Some(first) = first.take() {
            let _ = first.send(false);
        }
        node = node.wrapping_add(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(
    shared: &StoreState,
    node: usize,
    first: &mut Option<oneshot::Sender<bool>>,
    backoff: &mut Duration,
) -> Result<(), StoreError> {
    let options = &shared.options;
    if let Some((client, slot)) = &shared.cluster {
        if !slot.is_connected() {
            slot.connect(client, options.connect_timeout + options.response_timeout)
                .await?;
        }
    }
    let client = &shared.pubsub_clients[node % shared.pubsub_clients.len()];
    let pubsub = tokio::time::timeout(options.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| unavailable("timed out connecting the invalidation feed"))?
        .map_err(|e| map_error(&e))?;
    let (mut sink, mut stream) = pubsub.split();
    tokio::time::timeout(
        options.connect_timeout + options.response_timeout,
        sink.subscribe(&shared.keys.channel),
    )
    .await
    .map_err(|_| unavailable("timed out subscribing to the invalidation feed"))?
    .map_err(|e| map_error(&e))?;
    // Subscribed first, loaded second: an invalidation made meanwhile is
    // either in the scan or in the feed (and applying it twice is harmless).
    load(shared).await?;
    // Messages that arrived during the scan are applied before the view
    // claims to be in sync (the scan may have missed what they carry).
    while let Some(Some(message)) = stream.next().now_or_never() {
        apply(shared, &message)?;
    }
    shared.view.synced.store(true, Ordering::Release);
    *backoff = MIN_BACKOFF;
    if let Some(first) = first.take() {
        let _ = first.send(true);
    }
    tracing::debug!(channel = %shared.keys.channel, "tagcache redis invalidation feed in sync");
    loop {
        match tokio::time::timeout(options.ping_interval, stream.next()).await {
            Ok(Some(message)) => apply(shared, &message)?,
            Ok(None) => return Err(unavailable("invalidation feed disconnected")),
            Err(_) => {
                // Quiet for a while: make sure the connection is still there.
                tokio::time::timeout(options.response_timeout, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| unavailable("invalidation feed stopped answering"))?
                    .map_err(|e| map_error(&e))?;
            }
        }
    }
}

/// Applies one feed message. An invalidation we cannot read (another format
/// during a rolling deploy, say) may be one we needed: the error makes the
/// feed reload the whole table rather than carry on without it.
fn apply(shared: &StoreState, message: &redis::Msg) -> Result<(), StoreError> {
    if shared.view.apply_message(message.get_payload_bytes()) {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Corrupt,
            "unreadable invalidation message; reloading the stamp table",
        ))
    }
}

/// Reads the whole stamp table in pages, each bounded by the response
/// timeout (one `HGETALL` of a large table would block the server and could
/// not finish within it).
async fn load(shared: &StoreState) -> Result<(), StoreError> {
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(&shared.keys.tags)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        let (next, fields): (u64, Fields) =
            tokio::time::timeout(shared.options.response_timeout, shared.conn.query(&cmd))
                .await
                .map_err(|_| unavailable("timed out loading tag stamps"))?
                .map_err(|e| map_error(&e))?;
        for (field, value) in &fields {
            shared.view.apply_field(field, value);
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages() {
        assert_eq!(
            parse_message(b"1|h|1700000000000001|9:teacher:72:ab0:"),
            Some(Message::Tags {
                mode: InvalidationMode::Hard,
                stamp: Stamp(1_700_000_000_000_001),
                tags: vec!["teacher:7", "ab", ""],
            })
        );
        assert_eq!(
            parse_message(b"1|s|5|3:a|b"),
            Some(Message::Tags {
                mode: InvalidationMode::Soft,
                stamp: Stamp(5),
                tags: vec!["a|b"],
            })
        );
        assert_eq!(parse_message(b"1|a|42|"), Some(Message::All(Stamp(42))));
        assert_eq!(
            parse_message(b"1|h|42|"),
            Some(Message::Tags {
                mode: InvalidationMode::Hard,
                stamp: Stamp(42),
                tags: vec![],
            })
        );
        for bad in [
            &b""[..],
            b"2|h|1|",
            b"1|x|1|",
            b"1|h|x|",
            b"1|h|1|5:ab",
            b"1|h|1|z:ab",
            b"1|h|1|2ab",
            b"1|h",
        ] {
            assert_eq!(
                parse_message(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unsynced_view_treats_entries_as_invalid() {
        let view = View::new(Duration::from_secs(60), 1000);
        let entry = Entry {
            tags: vec!["t".into()].into_boxed_slice(),
            fill_stamp: Stamp(now_micros()),
            stored_at_micros: now_micros(),
            ttl: Duration::from_secs(1),
            ..Entry::for_test()
        };
        assert_eq!(view.validity(&entry), Validity::Invalid);
        view.synced.store(true, Ordering::Release);
        assert_eq!(view.validity(&entry), Validity::Valid);
        let later = format!("{}", entry.fill_stamp.0 + 1);
        view.apply_field(b"h:t", later.as_bytes());
        assert_eq!(view.validity(&entry), Validity::Invalid);
    }

    #[test]
    fn fields_and_floor_load() {
        let view = View::new(Duration::from_secs(60), 1000);
        view.synced.store(true, Ordering::Release);
        let now = now_micros();
        view.apply_field(b"s:x", (now + 5).to_string().as_bytes());
        assert_eq!(
            view.board.validity(&["x"], Stamp(now)),
            Validity::SoftInvalidated { at_micros: now + 5 }
        );
        // Ancient stamps are skipped; garbage is ignored.
        view.apply_field(b"h:old", b"5");
        view.apply_field(b"q:x", b"5");
        view.apply_field(b"h:y", b"not a number");
        assert_eq!(view.tag_stamp_count(), 1);
        view.apply_field(b"floor", (now + 10).to_string().as_bytes());
        assert_eq!(
            view.board.validity(&["z"], Stamp(now + 10)),
            Validity::Invalid
        );
        assert_eq!(
            view.board.validity(&["z"], Stamp(now + 11)),
            Validity::Valid
        );
    }
}
