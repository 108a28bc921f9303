//! Fleet-wide leases in Redis (see [`crate::store::lease`]).
//!
//! A key's lease is the string `{ns:e:<32 hex>}:lease`: its hash tag is the
//! entry's whole key, so both live in the entry's cluster slot and one
//! script sees both. Its value is the holder's token, with `|w` appended
//! once an instance waits on it, or `pass` while the key passes. Three
//! scripts, each atomic on the entry's node:
//!
//! * **acquire**: returns the entry if asked and present; else takes the
//!   lease (`SET … PX ttl`) if free, or reports who has it and for how long,
//!   marking it waited on;
//! * **renew**: `PEXPIRE` if the token still holds it;
//! * **release**: stores the entry first when given (`SET … PX`), then, if
//!   the token still holds the lease, deletes it (or makes it `pass`) and,
//!   only if somebody waits, publishes `<32 hex>|<end>` on `ns:leases`.
//!
//! So an uncontended miss costs what it did before leases (the acquire
//! replaces the second look-up a leader made, and the release rides on the
//! entry's `SET`), and publishes nothing. A value of the wrong type or a
//! lease without expiry under a lease key (not written by tagcache) is
//! replaced or given one, never waited on for ever.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use dashmap::DashMap;
use redis::Value;
use tokio::sync::watch;

use super::scripts::Sourced;
use super::{codec, eager, retention_millis, RedisStore, StoreState};
use crate::entry::{Entry, KeyHash};
use crate::store::{
    Acquired, LeaseEnd, LeaseToken, LeaseWait, Leases, StoreError, StoreErrorKind, StoreFuture,
    StoreResult,
};

/// Reads a lease key as a string, deleting a value of another type.
const STRING_AT: &str = r#"
local function string_at(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return nil end
  if kind ~= 'string' then
    redis.call('DEL', key)
    return nil
  end
  return redis.call('GET', key)
end
"#;

/// `KEYS` = entry, lease; `ARGV` = token, ttl in ms, `1` to read the entry.
/// Returns `{'e', value}`, `{'l'}` (taken), `{'h', ms left}` or
/// `{'p', ms left}`.
const ACQUIRE_BODY: &str = r#"
if ARGV[3] == '1' and redis.call('TYPE', KEYS[1]).ok == 'string' then
  return {'e', redis.call('GET', KEYS[1])}
end
local holder = string_at(KEYS[2])
if not holder then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {'l'}
end
local left = redis.call('PTTL', KEYS[2])
if left < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  left = tonumber(ARGV[2])
end
if holder == 'pass' then return {'p', left} end
if string.sub(holder, -2) ~= '|w' then
  redis.call('SET', KEYS[2], holder .. '|w', 'KEEPTTL')
end
return {'h', left}
"#;

/// `KEYS` = lease; `ARGV` = token, ttl in ms. Returns 1 if renewed.
const RENEW_BODY: &str = r#"
local holder = string_at(KEYS[1])
if holder == ARGV[1] or holder == ARGV[1] .. '|w' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// `KEYS` = entry, lease; `ARGV` = token, end code, pass time in ms,
/// channel, message, and optionally the entry's value and its `PX`.
/// Returns 1 if the token still held the lease.
const RELEASE_BODY: &str = r#"
if ARGV[6] then
  redis.call('SET', KEYS[1], ARGV[6], 'PX', ARGV[7])
end
local holder = string_at(KEYS[2])
if holder ~= ARGV[1] and holder ~= ARGV[1] .. '|w' then return 0 end
if ARGV[2] == 'p' then
  redis.call('SET', KEYS[2], 'pass', 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[2])
end
if holder ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
"#;

pub(crate) static ACQUIRE: LazyLock<Sourced> =
    LazyLock::new(|| Sourced::new(format!("{STRING_AT}{ACQUIRE_BODY}")));
pub(crate) static RENEW: LazyLock<Sourced> =
    LazyLock::new(|| Sourced::new(format!("{STRING_AT}{RENEW_BODY}")));
pub(crate) static RELEASE: LazyLock<Sourced> =
    LazyLock::new(|| Sourced::new(format!("{STRING_AT}{RELEASE_BODY}")));

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn token_arg(token: LeaseToken) -> String {
    format!("{:016x}", token.0)
}

/// The release message for `key`: `<32 hex>|<end code>`.
fn message(key: KeyHash, end: LeaseEnd) -> String {
    format!("{:032x}|{}", key.0, end.code() as char)
}

/// Reads a release message back.
fn parse_message(payload: &[u8]) -> Option<(KeyHash, LeaseEnd)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (hex, code) = text.split_once('|')?;
    if hex.len() != 32 || code.len() != 1 {
        return None;
    }
    let key = u128::from_str_radix(hex, 16).ok()?;
    Some((KeyHash(key), LeaseEnd::from_code(code.as_bytes()[0])?))
}

fn corrupt(what: String) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, what)
}

/// What the acquire script answered.
enum Reply {
    Entry(Vec<u8>),
    Taken,
    Held(Duration),
    Passing(Duration),
}

fn parse_reply(value: Value) -> StoreResult<Reply> {
    let Value::Array(mut parts) = value else {
        return Err(corrupt(format!("lease script answered {value:?}")));
    };
    let left = |value: Option<&Value>| match value {
        Some(Value::Int(ms)) => Ok(Duration::from_millis((*ms).max(0) as u64)),
        other => Err(corrupt(format!(
            "lease script answered {other:?} for a time"
        ))),
    };
    let tag = match parts.first() {
        Some(Value::BulkString(tag)) => tag.clone(),
        other => return Err(corrupt(format!("lease script answered {other:?}"))),
    };
    match &tag[..] {
        b"e" => match parts.pop() {
            Some(Value::BulkString(raw)) if parts.len() == 1 => Ok(Reply::Entry(raw)),
            other => Err(corrupt(format!(
                "lease script answered {other:?} for an entry"
            ))),
        },
        b"l" => Ok(Reply::Taken),
        b"h" => Ok(Reply::Held(left(parts.get(1))?)),
        b"p" => Ok(Reply::Passing(left(parts.get(1))?)),
        other => Err(corrupt(format!("lease script answered {other:?}"))),
    }
}

/// The instances' waits on lease ends, by key: the feed wakes them when a
/// release message arrives. One channel per key waited on, removed when
/// the lease ends or its last listener stops.
#[derive(Default)]
pub(crate) struct LeaseWaits {
    waits: DashMap<KeyHash, watch::Sender<Option<LeaseEnd>>>,
}

impl LeaseWaits {
    /// Starts listening for the end of `key`'s lease.
    fn listen(self: &Arc<Self>, key: KeyHash) -> LeaseWait {
        let receiver = self
            .waits
            .entry(key)
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe();
        let mut listening = Listening {
            waits: self.clone(),
            key,
            receiver: Some(receiver),
        };
        LeaseWait::new(async move {
            let Some(receiver) = listening.receiver.as_mut() else {
                return std::future::pending().await;
            };
            let end = receiver
                .wait_for(Option::is_some)
                .await
                .map(|end| end.unwrap_or(LeaseEnd::Abandoned));
            match end {
                Ok(end) => end,
                // Only `heard` drops a sender, after sending: unreachable,
                // and a wait that never ends would still end at expiry.
                Err(_) => std::future::pending().await,
            }
        })
    }

    /// Takes in a message from the lease channel. Unreadable messages are
    /// ignored: a waiter that misses its wake-up still stops waiting when
    /// the lease expires.
    pub(crate) fn heard(&self, payload: &[u8]) {
        let Some((key, end)) = parse_message(payload) else {
            tracing::debug!(
                payload = %String::from_utf8_lossy(&payload[..payload.len().min(80)]),
                "tagcache: ignoring an unreadable lease message"
            );
            return;
        };
        if let Some((_, sender)) = self.waits.remove(&key) {
            sender.send_replace(Some(end));
        }
    }

    /// Keys waited on now (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waits.len()
    }
}

/// One listener; stopping it removes the key's channel if it was the last.
struct Listening {
    waits: Arc<LeaseWaits>,
    key: KeyHash,
    receiver: Option<watch::Receiver<Option<LeaseEnd>>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.waits
            .waits
            .remove_if(&self.key, |_, sender| sender.receiver_count() == 0);
    }
}

impl StoreState {
    /// Runs the release script, storing `entry` first when given.
    pub(crate) async fn release(
        &self,
        key: KeyHash,
        token: LeaseToken,
        end: LeaseEnd,
        entry: Option<&Entry>,
    ) -> StoreResult<()> {
        let pass = match end {
            LeaseEnd::Pass(time) => time,
            _ => Duration::ZERO,
        };
        let mut invocation = RELEASE.key(self.keys.entry(key));
        invocation
            .key(self.keys.lease(key))
            .arg(token_arg(token))
            .arg(&[end.code()][..])
            .arg(millis(pass))
            .arg(&self.keys.lease_channel)
            .arg(message(key, end));
        if let Some(entry) = entry {
            invocation
                .arg(&codec::encode(entry)[..])
                .arg(retention_millis(entry, self.options.max_entry_life));
        }
        let _: i64 = self
            .call("lease release", self.conn.script(&invocation))
            .await?;
        Ok(())
    }
}

impl Leases for RedisStore {
    fn acquire(
        &self,
        key: KeyHash,
        token: LeaseToken,
        ttl: Duration,
        read_entry: bool,
    ) -> StoreFuture<Acquired> {
        let shared = self.shared();
        eager(async move {
            let mut read_entry = read_entry;
            loop {
                let mut invocation = ACQUIRE.key(shared.keys.entry(key));
                invocation
                    .key(shared.keys.lease(key))
                    .arg(token_arg(token))
                    .arg(millis(ttl))
                    .arg(if read_entry { "1" } else { "0" });
                let reply: Value = shared
                    .call("lease", shared.conn.script(&invocation))
                    .await?;
                return Ok(match parse_reply(reply)? {
                    Reply::Entry(raw) => match shared.decode(key, raw) {
                        Some(entry) => Acquired::Entry(entry),
                        // Undecodable (counted and logged): refill it.
                        None => {
                            read_entry = false;
                            continue;
                        }
                    },
                    Reply::Taken => Acquired::Taken,
                    Reply::Held(expires_in) => Acquired::Held { expires_in },
                    Reply::Passing(expires_in) => Acquired::Passing { expires_in },
                });
            }
        })
    }

    fn renew(&self, key: KeyHash, token: LeaseToken, ttl: Duration) -> StoreFuture<bool> {
        let shared = self.shared();
        eager(async move {
            let mut invocation = RENEW.key(shared.keys.lease(key));
            invocation.arg(token_arg(token)).arg(millis(ttl));
            let renewed: i64 = shared
                .call("lease renew", shared.conn.script(&invocation))
                .await?;
            Ok(renewed == 1)
        })
    }

    fn release(
        &self,
        key: KeyHash,
        token: LeaseToken,
        end: LeaseEnd,
        entry: Option<Arc<Entry>>,
    ) -> StoreFuture<()> {
        let shared = self.shared();
        match entry {
            Some(entry) => {
                let seq = shared.recent.write_started(key, entry.clone());
                eager(async move {
                    let result = shared.release(key, token, end, Some(&entry)).await;
                    shared.recent.write_answered(key, seq);
                    result
                })
            }
            None => eager(async move { shared.release(key, token, end, None).await }),
        }
    }

    fn ended(&self, key: KeyHash) -> Option<LeaseWait> {
        let shared = &self.handle.shared;
        shared
            .options
            .lease_notifications
            .then(|| shared.lease_waits.listen(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let key = KeyHash(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        for end in [
            LeaseEnd::Filled,
            LeaseEnd::NotShareable,
            LeaseEnd::Abandoned,
        ] {
            assert_eq!(
                parse_message(message(key, end).as_bytes()),
                Some((key, end))
            );
        }
        for garbage in [
            "",
            "|f",
            "0123|f",
            "0123456789abcdef0011223344556677|",
            "0123456789abcdef0011223344556677|x",
            "0123456789abcdef0011223344556677|ff",
            "0123456789abcdef001122334455667g|f",
            "\u{e9}123456789abcdef001122334455667|f",
        ] {
            assert_eq!(parse_message(garbage.as_bytes()), None, "{garbage:?}");
        }
    }

    #[tokio::test]
    async fn a_listener_hears_its_key_and_leaves_no_trace() {
        let waits = Arc::new(LeaseWaits::default());
        let key = KeyHash(7);
        let wait = waits.listen(key);
        let other = waits.listen(KeyHash(8));
        assert_eq!(waits.len(), 2);
        waits.heard(message(key, LeaseEnd::Abandoned).as_bytes());
        assert_eq!(wait.await, LeaseEnd::Abandoned);
        assert_eq!(waits.len(), 1);
        drop(other);
        assert_eq!(waits.len(), 0, "a listener that stops removes its key");
    }

    #[test]
    fn replies_are_read_or_refused() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert!(matches!(
            parse_reply(Value::Array(vec![bulk("l")])),
            Ok(Reply::Taken)
        ));
        assert!(matches!(
            parse_reply(Value::Array(vec![bulk("h"), Value::Int(250)])),
            Ok(Reply::Held(left)) if left == Duration::from_millis(250)
        ));
        assert!(matches!(
            parse_reply(Value::Array(vec![bulk("p"), Value::Int(-1)])),
            Ok(Reply::Passing(left)) if left.is_zero()
        ));
        assert!(matches!(
            parse_reply(Value::Array(vec![bulk("e"), bulk("v")])),
            Ok(Reply::Entry(raw)) if raw == b"v"
        ));
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![bulk("h")]),
            Value::Array(vec![bulk("e")]),
            Value::Array(vec![bulk("z")]),
        ] {
            assert!(parse_reply(bad).is_err());
        }
    }
}
