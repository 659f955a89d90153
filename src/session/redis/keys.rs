//! The Redis key schema: which key holds what, all under the configured `key_prefix`.
//!
//! | key | type | contents |
//! |---|---|---|
//! | `{prefix}s:{hex sha256(id)}` | hash | `v` (format version), `user`, `groups` (comma-joined), `origin`, `created`, `exp` (absolute expiry), `seen` (last seen); times in Unix ms; `r`: every value but `seen` again, packed for the lookup (see `codec`) |
//! | `{prefix}u:{user}` | sorted set | member: a session's key hex, score: its absolute expiry |
//! | `{prefix}c:{counter}` | string | a login-throttling counter; its TTL is the window |
//!
//! Kept in one place because three parties must agree on it: the store's commands, the
//! tracking connection (which subscribes to the record prefix, [`Keys::records`]) and the bench
//! seeder (`benches/seed.rs`, which writes records for `redis-cli --pipe`). The hash's fields
//! are the record codec's business, not this file's.
//!
//! No key names another: every command touches one key, so every command hashes to one slot and
//! Redis Cluster works without hash tags.

use crate::session::SessionKey;

/// The key names of one store, from its `key_prefix`.
#[derive(Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(key_prefix: &str) -> Keys {
        Keys {
            prefix: key_prefix.to_string(),
        }
    }

    /// The prefix every session record key starts with (`{prefix}s:`): what the tracking
    /// connection asks Redis to broadcast changes of.
    pub(super) fn records(&self) -> String {
        self.record_prefix(0)
    }

    /// The record of the session at `key`.
    pub(super) fn record(&self, key: &SessionKey) -> String {
        // Built in place: every lookup makes one (the same string as `record_hex(&key.hex())`).
        let mut record = self.record_prefix(2 * key.0.len());
        crate::encoding::push_hex_lower(&mut record, &key.0);
        record
    }

    /// The record whose key is `hex` (as stored in a user index).
    pub(super) fn record_hex(&self, hex: &str) -> String {
        let mut record = self.record_prefix(hex.len());
        record.push_str(hex);
        record
    }

    /// [`records`](Self::records), with room for `room` more bytes: the one place the record
    /// keys' `s:` is written.
    fn record_prefix(&self, room: usize) -> String {
        let mut prefix = String::with_capacity(self.prefix.len() + 2 + room);
        prefix.push_str(&self.prefix);
        prefix.push_str("s:");
        prefix
    }

    /// The index of `user`'s sessions.
    pub(super) fn user(&self, user: &str) -> String {
        format!("{}u:{}", self.prefix, user)
    }

    /// A login-throttling counter.
    pub(super) fn counter(&self, counter: &str) -> String {
        format!("{}c:{}", self.prefix, counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_schema() {
        let keys = Keys::new("dm:");
        let key = SessionKey([0xab; 32]);
        let hex = "ab".repeat(32);
        assert_eq!(keys.record(&key), format!("dm:s:{hex}"));
        assert_eq!(keys.record_hex(&hex), keys.record(&key));
        assert!(keys.record(&key).starts_with(&keys.records()));
        assert_eq!(keys.user("alice"), "dm:u:alice");
        assert_eq!(keys.counter("ip:1"), "dm:c:ip:1");
    }
}
