//! What the Redis store tells operators: its usage (no I/O: the state of
//! the feed and the breaker, this instance's view of the stamps) and a
//! listing of the entries of its namespace.
//!
//! The listing walks the keyspace with `SCAN cursor MATCH ns:e:* COUNT n`
//! (never `KEYS`, which blocks the server for as long as it takes to walk
//! everything) and reads the page's values with one `MGET`. Redis' cursor
//! is handed out as is (prefixed with `r`): it stays valid whatever is
//! written meanwhile, and an entry present for the whole listing is
//! returned at least once. A page may hold fewer entries than asked, or
//! none, while more follow. Each call reads the values of the (at most
//! about 100) keys it found whole, bodies included: a listing costs the
//! size of what it walks. Redis Cluster is not listed (each node would
//! need a walk of its own).

use std::sync::Arc;

use redis::Value;

use super::StoreState;
use crate::entry::KeyHash;
use crate::inspect::{FeedState, ScanOutcome, ScanPage, ScanRequest, StoreUsage};
use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// Bounds on how many keys one `SCAN` call is asked to examine: at least
/// a few, so that small pages of a sparse keyspace do not take many round
/// trips, and at most 100, because every key found is read whole (body
/// included) by the `MGET` that follows; larger pages take several calls.
const MIN_COUNT: usize = 10;
const MAX_COUNT: usize = 100;

pub(super) fn usage(shared: &StoreState) -> StoreUsage {
    let breaker_open = shared.breaker.is_open();
    let feed = match (breaker_open, shared.view.is_synced()) {
        (true, _) => FeedState::Down,
        (false, true) => FeedState::InSync,
        (false, false) => FeedState::Resyncing,
    };
    StoreUsage {
        tag_stamps: Some(shared.view.tag_stamp_count() as u64),
        feed: Some(feed),
        breaker_open: Some(breaker_open),
        queued_invalidations: Some(shared.view.pending.len() as u64),
        ..StoreUsage::unknown("redis")
    }
}

/// `ns:e:*` with the namespace's glob characters escaped.
fn entry_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

fn parse_cursor(cursor: Option<&str>) -> Result<u64, String> {
    match cursor {
        None => Ok(0),
        Some(raw) => raw
            .strip_prefix('r')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n != 0)
            .ok_or_else(|| format!("{raw:?} is not a cursor of this store")),
    }
}

pub(super) async fn scan(
    shared: Arc<StoreState>,
    request: ScanRequest,
) -> StoreResult<ScanOutcome> {
    if shared.cluster.is_some() {
        return Ok(ScanOutcome::Unsupported);
    }
    let cursor = match parse_cursor(request.cursor.as_deref()) {
        Ok(cursor) => cursor,
        Err(reason) => return Ok(ScanOutcome::BadCursor(reason)),
    };
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(entry_pattern(&shared.keys.entry_prefix))
        .arg("COUNT")
        .arg(request.limit.clamp(MIN_COUNT, MAX_COUNT));
    let (next, keys): (u64, Vec<Vec<u8>>) = shared.call("SCAN", shared.conn.query(&cmd)).await?;
    let mut entries = Vec::new();
    if !keys.is_empty() {
        let mut mget = redis::cmd("MGET");
        for key in &keys {
            mget.arg(key);
        }
        let values: Vec<Value> = shared.call("MGET", shared.conn.query(&mget)).await?;
        for (key, value) in keys.iter().zip(values) {
            let Some(hash) = hash_of(&key[shared.keys.entry_prefix.len()..]) else {
                continue;
            };
            let raw = match value {
                // Expired or removed since the SCAN.
                Value::Nil => continue,
                Value::BulkString(raw) => raw,
                other => {
                    return Err(StoreError::new(
                        StoreErrorKind::Corrupt,
                        format!("redis MGET answered {other:?}"),
                    ))
                }
            };
            if let Some(entry) = shared.decode(hash, raw) {
                if request.selects(&entry) {
                    entries.push((hash, entry));
                }
            }
        }
    }
    // SCAN may return more keys than COUNT: the page keeps them all rather
    // than lose the rest (the cursor is past them).
    let next = (next != 0).then(|| format!("r{next}"));
    Ok(ScanOutcome::Page(ScanPage { entries, next }))
}

/// The key hash at the end of an entry's Redis key.
fn hash_of(hex: &[u8]) -> Option<KeyHash> {
    let hex = std::str::from_utf8(hex).ok()?;
    (hex.len() == 32)
        .then(|| u128::from_str_radix(hex, 16).ok())
        .flatten()
        .map(KeyHash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_glob_characters() {
        assert_eq!(entry_pattern("app:e:"), "app:e:*");
        assert_eq!(entry_pattern("a*b?[c]\\:e:"), "a\\*b\\?\\[c\\]\\\\:e:*");
    }

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor(None), Ok(0));
        assert_eq!(parse_cursor(Some("r42")), Ok(42));
        for bad in ["42", "r", "rx", "r0", "m1-00", "r-1"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes() {
        let hex = format!("{:032x}", 0xabcu128);
        assert_eq!(hash_of(hex.as_bytes()), Some(KeyHash(0xabc)));
        assert_eq!(hash_of(b"abc"), None);
        assert_eq!(hash_of(&[b'z'; 32]), None);
    }
}
