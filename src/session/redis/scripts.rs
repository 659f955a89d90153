//! The Lua scripts the store runs in Redis, each an atomic step on one key.
//!
//! Scripts, not command sequences, where a step must see and change a key without another
//! instance's command landing in between, in one round trip: a slide checks the record is
//! still live before moving `seen`, a create writes a record and its TTL together. Each touches
//! exactly one key (see the key schema), so each runs unchanged on Redis Cluster. A plain read
//! is no script: a lookup is an `HMGET` (see the store's docs for why).
//!
//! [`redis::Script`] sends `EVALSHA` and falls back to loading the script, once, when the
//! server does not know it yet (after a restart); [`SCRIPTS`] computes the SHA1s once per
//! process.

use std::sync::LazyLock;

use redis::Script;

/// Slide a live record's `seen` to now and set the key's TTL, or delete an expired record, in
/// one step: what a lookup runs after its `HMGET` when the record is due a slide
/// ([`Record::needs_touch`](crate::session::Record::needs_touch), at most once per
/// `idle / 10`) or found expired (once per session, so dead records do not wait for their TTL,
/// which a clock ahead of Redis's would make late).
///
/// KEYS[1] the record; ARGV[1] now (ms), ARGV[2] idle timeout (ms), ARGV[3] the format version
/// this build reads. Returns 1 when the record is live (slid, unless another instance already
/// slid it further), 0 when it is gone, of another version, unreadable or expired (then
/// deleted), which the lookup answers as "no session": a logout that landed between the read
/// and the slide wins, and a slide never recreates a deleted record (`HSET` alone would).
///
/// The TTL is `min(seen + idle, exp) - now`, a deadline that does not move while `seen` does
/// not. The TTL only cleans up; validity is decided from `exp` and `seen`.
pub(super) const TOUCH: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'v', 'exp', 'seen')
if r[1] ~= ARGV[3] then return 0 end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local exp = tonumber(r[2])
local seen = tonumber(r[3])
if seen == nil or exp == nil or now == nil or idle == nil then return 0 end
if now - seen >= idle or now >= exp then
  redis.call('DEL', KEYS[1])
  return 0
end
if now > seen then
  redis.call('HSET', KEYS[1], 'seen', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
end
return 1
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
    pub(super) touch: Script,
    pub(super) create: Script,
    pub(super) index: Script,
    pub(super) hit: Script,
    pub(super) unhit: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    touch: Script::new(TOUCH),
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
    fn the_touch_script_reads_the_fields_encode_writes() {
        let record = Record::new("a", vec![], Origin::Login, 1, &T);
        let written: Vec<&str> = encode(&record).into_iter().map(|(k, _)| k).collect();
        for field in ["v", "exp", "seen"] {
            assert!(
                FIELDS.contains(&field) && written.contains(&field),
                "{field}"
            );
        }
        assert!(TOUCH.contains("redis.call('HMGET', KEYS[1], 'v', 'exp', 'seen')"));
    }
}
