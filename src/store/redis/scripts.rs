//! The Lua scripts behind the shared invalidation clock, and the one reader
//! of the stamps they write.
//!
//! Every script declares all the keys it touches, and all of them carry the
//! `{<ns>}` hash tag, so each call runs on one node of a Redis Cluster (the
//! namespace's master) and is atomic there. The pub/sub channels are
//! arguments, not keys: classic `PUBLISH` is not bound to a slot (a cluster
//! broadcasts it to every node).
//!
//! # Stamps stay where Lua and Rust agree
//!
//! Stamps are microseconds since the epoch. Lua's numbers are doubles, exact
//! up to 2^53, so stamps are always written with `%.0f` (never `tostring`,
//! which rounds to 14 digits) and must stay below 2^53. Anyone with write
//! access to Redis could put any value in the clock, the stamp table or the
//! channel; so:
//!
//! * the clock never runs more than [`MAX_AHEAD`] ahead of the server's
//!   `TIME`: a clock found beyond that (or unreadable) is *repaired*,
//!   started again from `TIME`, and the script says so;
//! * every stamp read back from Redis goes through [`read_stamp`], which
//!   refuses values at or past 2^53 or more than [`MAX_AHEAD`] ahead of this
//!   machine's clock. Callers fail closed on a refused stamp, and never
//!   adopt it.
//!
//! Stepping the clock back on repair cannot serve a stale entry: every
//! stamp handed out from the bad clock was refused by the instances, so no
//! entry and no invalidation carries one.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::StoreState;
use crate::stamp::{micros, now_micros, Stamp};
use crate::store::StoreResult;

/// How far a stamp may be ahead of a clock (the server's `TIME` in the
/// scripts, this machine's when reading): one hour covers any sane clock
/// difference and every stamp taken within the same microsecond, and
/// nothing a poisoned value would need.
pub(crate) const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// Lua's numbers are exact below this.
pub(crate) const LUA_EXACT: u64 = 1 << 53;

/// `take(clock)`: the next stamp, `max(last + 1, server time in µs)`, stored
/// back in the clock key; and whether the clock had to be repaired. Because
/// it is never behind the server's clock, it stays monotonic even if the
/// clock key is lost (evicted, flushed, or a failover to a replica that
/// missed the last write).
const CLOCK: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function take(clock)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', clock) or '0')
  local repaired = 0
  if last == nil or last ~= last or last < 0 or last > now + tonumber(ARGV[1]) then
    last = 0
    repaired = 1
  end
  local s = now
  if last + 1 > s then s = last + 1 end
  local str = string.format('%.0f', s)
  redis.call('SET', clock, str)
  return s, str, repaired
end
"#;

/// `KEYS[1]` = clock; `ARGV[1]` = [`MAX_AHEAD`] in µs. Returns
/// `{stamp, repaired}`.
const FILL_STAMP_BODY: &str = r#"
local _, str, repaired = take(KEYS[1])
return {str, repaired}
"#;

/// `KEYS` = clock, tag hash, tag times (zset).
/// `ARGV[1]` = [`MAX_AHEAD`] in µs, `ARGV[2]` = mode (`h` hard, `s` soft,
/// `a` all), `ARGV[3]` = how long stamps are kept, in µs, `ARGV[4]` = the
/// channel, `ARGV[5..]` = tags.
///
/// Takes a stamp, records it for each tag (`HSET <tags> <mode>:<tag>` and
/// `ZADD <times> <stamp> <mode>:<tag>`, or the `floor` field for `a`),
/// prunes a bounded number of stamps older than the longest entry life, and
/// publishes `1|<mode>|<stamp>|<len>:<tag>...` on the channel. Returns
/// `{stamp, repaired}`.
///
/// `allow-oom`: an invalidation is a few bytes that must not be lost, so it
/// is recorded even when Redis refuses other writes for want of memory
/// (`maxmemory` with `noeviction`, where every entry write fails).
const INVALIDATE_BODY: &str = r#"
local s, str, repaired = take(KEYS[1])
local mode = ARGV[2]
local parts = {}
if mode == 'a' then
  redis.call('HSET', KEYS[2], 'floor', str)
else
  for i = 5, #ARGV do
    local tag = ARGV[i]
    local field = mode .. ':' .. tag
    redis.call('HSET', KEYS[2], field, str)
    redis.call('ZADD', KEYS[3], str, field)
    parts[#parts + 1] = string.format('%d', #tag) .. ':' .. tag
  end
end
local horizon = s - tonumber(ARGV[3])
if horizon > 0 then
  local limit = 100 + 2 * (#ARGV - 4)
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', horizon), 'LIMIT', 0, limit)
  for _, field in ipairs(old) do
    redis.call('HDEL', KEYS[2], field)
    redis.call('ZREM', KEYS[3], field)
  end
end
redis.call('PUBLISH', ARGV[4], '1|' .. mode .. '|' .. str .. '|' .. table.concat(parts))
return {str, repaired}
"#;

/// `KEYS[1]` = the tag hash; `ARGV[1]` = [`MAX_AHEAD`] in µs, `ARGV[2..]` =
/// fields. Each field whose stamp is still out of range (unreadable, at or
/// past 2^53, or more than `MAX_AHEAD` ahead of the server's `TIME`) is set
/// to the server's `TIME`: from then on it invalidates what was filled
/// before the repair, as the bad value claimed to, but nothing after.
/// Returns how many fields it repaired.
const REPAIR_FIELDS: &str = r#"#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local repaired = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  local value = raw and tonumber(raw)
  if raw and (value == nil or value ~= value or value >= 9007199254740992 or value > now + tonumber(ARGV[1])) then
    redis.call('HSET', KEYS[1], ARGV[i], string.format('%.0f', now))
    repaired = repaired + 1
  end
end
return repaired
"#;

/// `KEYS[1]` = clock (for routing only: the script runs on the namespace's
/// master); `ARGV[1]` = channel, `ARGV[2]` = message. Publishes from the
/// node that publishes invalidations, so a feed that receives it receives
/// invalidations too.
const HEARTBEAT: &str = r#"
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"#;

/// `KEYS[1]` = the namespace's settings hash; `ARGV` = field, value pairs.
/// Sets each field that is not set yet and returns every field's value as
/// stored, so an instance can tell it disagrees with the others.
const SETTINGS: &str = r#"
local out = {}
for i = 1, #ARGV, 2 do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  out[#out + 1] = redis.call('HGET', KEYS[1], ARGV[i])
end
return out
"#;

/// A script with its source, so that it can be loaded ahead ([`preload`]).
pub(crate) struct Sourced {
    source: String,
    script: Script,
}

impl Sourced {
    pub(crate) fn new(source: String) -> Sourced {
        let script = Script::new(&source);
        Sourced { source, script }
    }
}

impl std::ops::Deref for Sourced {
    type Target = Script;

    fn deref(&self) -> &Script {
        &self.script
    }
}

/// The fill-stamp script.
pub(crate) static FILL_STAMP: LazyLock<Sourced> =
    LazyLock::new(|| Sourced::new(format!("{CLOCK}{FILL_STAMP_BODY}")));

/// The invalidation script.
pub(crate) static INVALIDATE: LazyLock<Sourced> =
    LazyLock::new(|| Sourced::new(format!("#!lua flags=allow-oom\n{CLOCK}{INVALIDATE_BODY}")));

/// The stamp-table repair script.
pub(crate) static REPAIR: LazyLock<Script> = LazyLock::new(|| Script::new(REPAIR_FIELDS));

/// The feed's heartbeat.
pub(crate) static HEARTBEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HEARTBEAT));

/// The shared settings check.
pub(crate) static SETTINGS_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTINGS));

/// Loads `scripts` on every node (`SCRIPT LOAD` goes to all nodes of a
/// cluster); the feed does it each time it (re)connects, for the scripts
/// requests run. A script a node does not know costs a second round trip
/// on its first call (`NOSCRIPT`, then load and retry), and in that time a
/// later command can overtake it: a lease's release could reach Redis after
/// the next instance's acquire, which would then wait on a lease already
/// over. Loaded ahead, a store's commands reach Redis in the order they
/// were made. (A node that forgets them, restarted or promoted, reopens
/// that window only until the next resync: a wait, never a wrong answer.)
pub(crate) async fn preload(shared: &StoreState, scripts: &[&Sourced]) -> StoreResult<()> {
    for script in scripts {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&script.source);
        let _: redis::Value = shared.call("script load", shared.conn.query(&cmd)).await?;
    }
    Ok(())
}

/// [`MAX_AHEAD`] as the scripts take it.
pub(crate) fn max_ahead_arg() -> u64 {
    micros(MAX_AHEAD)
}

/// What reading a stamp from Redis gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StampRead {
    /// A stamp in range.
    Stamp(Stamp),
    /// Digits, but out of range: never adopted.
    OutOfRange,
    /// Not a stamp at all.
    Garbage,
}

/// Reads a stamp as the scripts write it (and publish it): decimal digits,
/// below 2^53 and at most [`MAX_AHEAD`] ahead of this machine's clock.
/// Every stamp that comes from Redis, as a reply, a hash field or a feed
/// message, is read here.
pub(crate) fn read_stamp(raw: &[u8]) -> StampRead {
    let Some(value) = std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    else {
        return StampRead::Garbage;
    };
    match value.parse::<u64>() {
        Ok(stamp) if stamp < LUA_EXACT && stamp <= now_micros() + micros(MAX_AHEAD) => {
            StampRead::Stamp(Stamp(stamp))
        }
        _ => StampRead::OutOfRange,
    }
}

/// A stamp in range, or `None`.
pub(crate) fn parse_stamp(raw: &[u8]) -> Option<Stamp> {
    match read_stamp(raw) {
        StampRead::Stamp(stamp) => Some(stamp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_out_of_range_are_refused() {
        let now = now_micros();
        assert_eq!(
            read_stamp(now.to_string().as_bytes()),
            StampRead::Stamp(Stamp(now))
        );
        assert_eq!(read_stamp(b"1"), StampRead::Stamp(Stamp(1)));
        for bad in [
            "18446744073709551615",
            "18446744073709551616",
            "9007199254740993",
            "9007199254740992",
        ] {
            assert_eq!(read_stamp(bad.as_bytes()), StampRead::OutOfRange, "{bad}");
        }
        let far = now + micros(MAX_AHEAD) + 60_000_000;
        assert_eq!(
            read_stamp(far.to_string().as_bytes()),
            StampRead::OutOfRange
        );
        for garbage in ["", "-1", "1e9", " 1", "abc", "1.5"] {
            assert_eq!(
                read_stamp(garbage.as_bytes()),
                StampRead::Garbage,
                "{garbage:?}"
            );
        }
    }
}
