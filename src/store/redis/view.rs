//! This instance's view of the shared tag stamps.
//!
//! `validity` must answer without a round trip, so every instance holds the
//! stamps in a [`TagBoard`]. The view is filled by a scan of the stamp hash,
//! then kept current by this instance's own invalidations (applied before
//! their future resolves, or marked in [`Pending`] when Redis did not take
//! them) and by the messages other instances publish (see
//! [`feed`](super::feed)).
//!
//! The view is only trusted while the feed is in sync: messages sent while
//! it is down are lost, so from the moment it drops until the hash has been
//! read again every entry counts as invalid (a miss, never a stale hit).
//!
//! Stamps from Redis are never adopted out of range (see
//! [`read_stamp`]): a table field out of range counts as an invalidation
//! *now* (it fails closed for its tag, and is repaired in Redis); a message
//! out of range is refused, which makes the feed reload the table.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::pending::Pending;
use super::scripts::{parse_stamp, read_stamp, StampRead};
use crate::entry::Entry;
use crate::stamp::{micros, now_micros, InvalidationMode, Stamp, TagBoard, Validity};

/// The stamps known here, and whether they can be trusted.
pub(crate) struct View {
    pub(crate) board: TagBoard,
    synced: AtomicBool,
    /// Invalidations Redis has not confirmed yet.
    pub(crate) pending: Pending,
    /// Bumped on every change to what the view knows (see
    /// [`Store::invalidation_generation`](crate::store::Store::invalidation_generation)).
    generation: AtomicU64,
}

/// What a table field turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// Applied (or too old to matter, or not a field of ours).
    Applied,
    /// Out of range: applied as an invalidation now, to be repaired.
    OutOfRange,
}

impl View {
    pub(crate) fn new(max_entry_life: Duration, max_tags: usize) -> View {
        View {
            board: TagBoard::new(max_entry_life, max_tags),
            synced: AtomicBool::new(false),
            pending: Pending::default(),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn set_synced(&self, synced: bool) {
        self.synced.store(synced, Ordering::Release);
        self.changed();
    }

    /// Something the view knows may have changed: an invalidation applied
    /// or queued, the feed lost or back. Bumped after the change, so a
    /// reader that sees the old number read before it.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn tag_stamp_count(&self) -> usize {
        self.board.len()
    }

    pub(crate) fn validity(&self, entry: &Entry) -> Validity {
        if !self.synced.load(Ordering::Acquire) {
            return Validity::Invalid;
        }
        // Marks first, stamps second: `send_queued` applies a stamp before
        // it removes the marks, so a reader between the two sees one.
        let queued = self.pending.validity(&entry.tags);
        let shared = self.board.validity(&entry.tags, entry.fill_stamp);
        match (shared, queued) {
            (shared, None) => shared,
            (Validity::Invalid, _) | (_, Some(Validity::Invalid)) => Validity::Invalid,
            (
                Validity::SoftInvalidated { at_micros: a },
                Some(Validity::SoftInvalidated { at_micros: b }),
            ) => Validity::SoftInvalidated {
                at_micros: a.min(b),
            },
            (Validity::Valid, Some(queued)) => queued,
            (shared, Some(Validity::Valid)) => shared,
        }
    }

    pub(crate) fn apply(&self, tags: &[impl AsRef<str>], stamp: Stamp, mode: InvalidationMode) {
        self.board.apply(tags, stamp, mode);
        self.changed();
    }

    pub(crate) fn apply_all(&self, stamp: Stamp) {
        self.board.invalidate_all(stamp);
        self.changed();
    }

    /// Applies one field of the stamp hash (`h:<tag>`, `s:<tag>`, `floor`).
    pub(crate) fn apply_field(&self, field: &[u8], value: &[u8]) -> Field {
        let (stamp, outcome) = match read_stamp(value) {
            StampRead::Stamp(stamp) => (stamp, Field::Applied),
            // Out of range: whatever it claims, it was never a stamp of
            // ours. Fail closed for what it names, from now on.
            StampRead::OutOfRange => (Stamp(now_micros()), Field::OutOfRange),
            StampRead::Garbage => return Field::Applied,
        };
        if field == b"floor" {
            self.apply_all(stamp);
            return outcome;
        }
        let horizon = now_micros().saturating_sub(micros(self.board.max_entry_life()));
        if stamp.0 < horizon {
            // Too old to invalidate a live entry: not worth holding.
            return outcome;
        }
        let (mode, tag) = match field.split_first() {
            Some((b'h', rest)) => (InvalidationMode::Hard, rest),
            Some((b's', rest)) => (InvalidationMode::Soft, rest),
            _ => return Field::Applied,
        };
        let Some((b':', tag)) = tag.split_first() else {
            return Field::Applied;
        };
        if let Ok(tag) = std::str::from_utf8(tag) {
            self.apply(&[tag], stamp, mode);
        }
        outcome
    }

    /// Applies a published invalidation; false if it could not be read
    /// (including a stamp out of range, which is never adopted).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Tag;
    use crate::store::redis::pending::Queued;

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
            b"1|a|18446744073709551615|",
            b"1|h|9007199254740993|1:a",
        ] {
            assert_eq!(
                parse_message(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn entry(tags: &[&str], fill: Stamp) -> Entry {
        Entry {
            tags: tags.iter().map(|&t| Tag::from(t)).collect(),
            fill_stamp: fill,
            stored_at_micros: now_micros(),
            ttl: Duration::from_secs(1),
            ..Entry::for_test()
        }
    }

    #[test]
    fn unsynced_view_treats_entries_as_invalid() {
        let view = View::new(Duration::from_secs(60), 1000);
        let entry = entry(&["t"], Stamp(now_micros()));
        assert_eq!(view.validity(&entry), Validity::Invalid);
        view.set_synced(true);
        assert_eq!(view.validity(&entry), Validity::Valid);
        let later = format!("{}", entry.fill_stamp.0 + 1);
        view.apply_field(b"h:t", later.as_bytes());
        assert_eq!(view.validity(&entry), Validity::Invalid);
    }

    #[test]
    fn queued_invalidations_count_before_redis_takes_them() {
        let view = View::new(Duration::from_secs(60), 1000);
        view.set_synced(true);
        let filled_later = entry(&["t"], Stamp(now_micros() + 10_000_000));
        view.pending
            .push(Queued::Tags(vec![Tag::from("t")], InvalidationMode::Hard));
        // Whatever its fill stamp: the queued invalidation has no stamp yet.
        assert_eq!(view.validity(&filled_later), Validity::Invalid);
        assert_eq!(view.validity(&entry(&["u"], Stamp(1))), Validity::Valid);
        let (id, _) = view.pending.front().unwrap();
        view.apply(&["t"], Stamp(now_micros()), InvalidationMode::Hard);
        view.pending.done(id);
        assert_eq!(view.validity(&filled_later), Validity::Valid);
    }

    #[test]
    fn fields_and_floor_load() {
        let view = View::new(Duration::from_secs(60), 1000);
        view.set_synced(true);
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

    #[test]
    fn fields_out_of_range_fail_closed_now_and_are_never_adopted() {
        let view = View::new(Duration::from_secs(60), 1000);
        view.set_synced(true);
        let before = Stamp(now_micros());
        assert_eq!(
            view.apply_field(b"floor", b"18446744073709551615"),
            Field::OutOfRange
        );
        assert_eq!(
            view.apply_field(b"h:t", b"9007199254740993"),
            Field::OutOfRange
        );
        // What was filled before counts as invalidated...
        assert_eq!(view.validity(&entry(&["u"], before)), Validity::Invalid);
        // ...and what is filled from now on is valid again.
        let after = Stamp(now_micros() + 1_000);
        assert_eq!(view.validity(&entry(&["t", "u"], after)), Validity::Valid);
    }
}
