//! The Lua scripts the store runs in Redis, each an atomic step on one key.
//!
//! Scripts, not command sequences, because each step must see and change a key without another
//! instance's command landing in between, in one round trip: a lookup checks both clocks and
//! slides `seen`, a create writes a record and its TTL together. Each touches exactly one key
//! (see the key schema), so each runs unchanged on Redis Cluster.
//!
//! [`redis::Script`] sends `EVALSHA` and falls back to loading the script, once, when the
//! server does not know it yet (after a restart); [`SCRIPTS`] computes the SHA1s once per
//! process.

use std::sync::LazyLock;

use redis::Script;

/// Read a record, check both clocks against its timestamps, slide `seen` (coalesced) and set
/// the key's TTL, in one step: every authenticated request runs this once.
///
/// KEYS[1] the record; ARGV[1] now (ms), ARGV[2] idle timeout (ms), ARGV[3] the format version
/// this build reads. Returns nil for a missing or expired record (an expired one is deleted), the
/// values untouched for a record of another version or with unreadable times (doorman treats it
/// as absent and leaves it to its TTL: a newer doorman sharing this Redis may own it), and
/// otherwise the values with `seen` as stored now.
///
/// The values are those of [`FIELDS`](super::codec::FIELDS), in its order (`HMGET`): no field
/// names on the wire and no table built in Lua, which halves what both Redis and doorman parse
/// per lookup.
///
/// `seen` slides at most once per `idle / 10`, so most lookups write nothing. The TTL is only
/// set when `seen` moves: it is `min(seen + idle, exp) - now`, a deadline that does not change
/// while `seen` does not. The TTL only cleans up; validity is decided from `exp` and `seen`.
pub(super) const LOOKUP: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'v', 'user', 'groups', 'origin', 'created', 'exp', 'seen', 'x', 'e')
if not r[1] then return false end
if r[1] ~= ARGV[3] then return r end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local exp = tonumber(r[6])
local seen = tonumber(r[7])
if seen == nil or exp == nil or now == nil or idle == nil then return r end
local elapsed = math.max(0, now - seen)
if elapsed >= idle or now >= exp then
  redis.call('DEL', KEYS[1])
  return false
end
if elapsed >= math.floor(idle / 10) then
  redis.call('HSET', KEYS[1], 'seen', ARGV[1])
  r[7] = ARGV[1]
  redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
end
return r
"#;

/// Write a new record and its TTL atomically (a record must never outlive its TTL by accident).
/// KEYS[1] the record; ARGV[1] the TTL (ms), then field/value pairs.
pub(super) const CREATE: &str = r#"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Add a session to its user's index, drop members whose absolute expiry has passed, and let
/// the index expire with its last session. KEYS[1] the index; ARGV[1] the member (key hex),
/// ARGV[2] its absolute expiry (ms), ARGV[3] now (ms).
pub(super) const INDEX: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return 1
"#;

/// Count one event; the first event of a window starts its expiry. KEYS[1] the counter;
/// ARGV[1] the window (ms). A counter somehow left without a TTL gets one here too.
pub(super) const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"#;

/// Take back one counted event: decrement, or delete at the last one, so a counter never goes
/// below zero and a missing one is not created (a bare `DECR` would make a `-1` without a TTL).
/// `DECR` keeps the key's TTL, so the window does not move. KEYS[1] the counter.
pub(super) const UNHIT: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then
  return redis.call('DECR', KEYS[1])
end
if n == 1 then
  redis.call('DEL', KEYS[1])
end
return 0
"#;

/// The scripts, with their SHA1s computed once per process.
pub(super) struct Scripts {
    pub(super) lookup: Script,
    pub(super) create: Script,
    pub(super) index: Script,
    pub(super) hit: Script,
    pub(super) unhit: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    lookup: Script::new(LOOKUP),
    create: Script::new(CREATE),
    index: Script::new(INDEX),
    hit: Script::new(HIT),
    unhit: Script::new(UNHIT),
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::redis::codec::{encode, FIELDS};
    use crate::session::{Origin, Record};

    use crate::session::TEST_TIMEOUTS as T;

    #[test]
    fn the_lookup_script_reads_the_fields_encode_writes_in_order() {
        let quoted: Vec<String> = FIELDS.iter().map(|f| format!("'{f}'")).collect();
        let hmget = format!("redis.call('HMGET', KEYS[1], {})", quoted.join(", "));
        assert!(LOOKUP.contains(&hmget), "LOOKUP must read {hmget}");
        let mut record = Record::new("a".into(), vec![], Origin::Login, 1, &T);
        record.link = Some(Box::new(crate::session::Link {
            family: "ab".repeat(32),
            code: None,
        }));
        record.express = Some("id".into());
        let written: Vec<&str> = encode(&record).into_iter().map(|(k, _)| k).collect();
        assert_eq!(written, FIELDS);
    }
}
