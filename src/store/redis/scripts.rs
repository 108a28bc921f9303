//! The Lua scripts behind the shared invalidation clock.
//!
//! Every script declares all the keys it touches, and all of them carry the
//! `{<ns>}` hash tag, so each call runs on one node of a Redis Cluster and is
//! atomic there. The pub/sub channel is an argument, not a key: classic
//! `PUBLISH` is not bound to a slot (a cluster broadcasts it to every node).
//!
//! Stamps are microseconds since the epoch and stay below 2^53, so Lua's
//! doubles hold them exactly; they are always turned into strings with
//! `%.0f`, never with `tostring` (which would round them to 14 digits).

use std::sync::LazyLock;

use redis::Script;

use crate::stamp::Stamp;

/// `take(clock)`: the next stamp, `max(last + 1, server time in µs)`, stored
/// back in the clock key. Because it is never behind the server's clock, it
/// stays monotonic even if the clock key is lost (evicted, flushed, or a
/// failover to a replica that missed the last write).
const CLOCK: &str = r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function take(clock)
  local t = redis.call('TIME')
  local s = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', clock) or '0') or 0
  if last + 1 > s then s = last + 1 end
  local str = string.format('%.0f', s)
  redis.call('SET', clock, str)
  return s, str
end
"#;

/// `KEYS[1]` = clock. Returns the stamp as a decimal string.
const FILL_STAMP_BODY: &str = r#"
local _, str = take(KEYS[1])
return str
"#;

/// `KEYS` = clock, tag hash, tag times (zset).
/// `ARGV[1]` = mode (`h` hard, `s` soft, `a` all), `ARGV[2]` = longest entry
/// life in µs, `ARGV[3]` = the channel, `ARGV[4..]` = tags.
///
/// Takes a stamp, records it for each tag (`HSET <tags> <mode>:<tag>` and
/// `ZADD <times> <stamp> <mode>:<tag>`, or the `floor` field for `a`),
/// prunes a bounded number of stamps older than the longest entry life, and
/// publishes `1|<mode>|<stamp>|<len>:<tag>...` on the channel. Returns the
/// stamp as a decimal string.
const INVALIDATE_BODY: &str = r#"
local s, str = take(KEYS[1])
local mode = ARGV[1]
local parts = {}
if mode == 'a' then
  redis.call('HSET', KEYS[2], 'floor', str)
else
  for i = 4, #ARGV do
    local tag = ARGV[i]
    local field = mode .. ':' .. tag
    redis.call('HSET', KEYS[2], field, str)
    redis.call('ZADD', KEYS[3], str, field)
    parts[#parts + 1] = string.format('%d', #tag) .. ':' .. tag
  end
end
local horizon = s - tonumber(ARGV[2])
if horizon > 0 then
  local limit = 100 + 2 * (#ARGV - 3)
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', horizon), 'LIMIT', 0, limit)
  for _, field in ipairs(old) do
    redis.call('HDEL', KEYS[2], field)
    redis.call('ZREM', KEYS[3], field)
  end
end
redis.call('PUBLISH', ARGV[3], '1|' .. mode .. '|' .. str .. '|' .. table.concat(parts))
return str
"#;

/// The fill-stamp script.
pub(crate) static FILL_STAMP: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{CLOCK}{FILL_STAMP_BODY}")));

/// The invalidation script.
pub(crate) static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{CLOCK}{INVALIDATE_BODY}")));

/// Reads a stamp as the scripts write it (and publish it): decimal digits.
/// Every stamp that comes from Redis, as a reply, a hash field or a feed
/// message, is read here.
pub(crate) fn parse_stamp(raw: &[u8]) -> Option<Stamp> {
    std::str::from_utf8(raw).ok()?.parse().ok().map(Stamp)
}
