//! Signed tokens kept for reuse, so that signing is not on every request.
//!
//! A token is reused while at least half its ttl is left (DESIGN.md §9): an app that caches
//! the token it verified for its lifetime then still sees a fresh one at least every ttl/2,
//! and doorman signs at most about twice per ttl per session and audience. The entry is keyed
//! by the session's store key and the audience, and a hit also needs the same groups (they come
//! from the users file at request time and may change under a session); the signing key is the
//! cache's own (a cache belongs to one [`super::Assertion`], built anew on every reload).
//!
//! Bounded: [`CAPACITY`] entries in all, at most [`PER_SESSION`] audiences per session. When a
//! shard is full, entries that would be re-signed anyway are dropped; if that frees too little
//! the shard is emptied (each token is then signed again once), so one insert never scans more
//! than once per quarter-shard of inserts. A hit takes one shard's lock, one hash lookup and a
//! reference-count increment (no allocation).

use std::sync::Mutex;

use http::HeaderValue;

use crate::digest_map::DigestMap;
use crate::lock::lock;

/// Entries kept in all (spread over the shards).
pub const CAPACITY: usize = 100_000;
/// Audiences kept per session (a session seen through many forward-auth hosts).
pub const PER_SESSION: usize = 8;
/// Locks to spread the serving threads over: the key is a SHA-256, so any byte picks evenly.
const SHARDS: usize = 16;

struct Entry {
    audience: Box<str>,
    groups: Box<[String]>,
    /// The token's `exp`, Unix seconds.
    exp: u64,
    token: HeaderValue,
}

#[derive(Default)]
struct Shard {
    /// By session store key (`DigestMap`: only valid sessions' keys are ever kept).
    sessions: DigestMap<[u8; 32], Vec<Entry>>,
    entries: usize,
}

/// The tokens of one assertion config, by session store key, audience and groups.
pub(super) struct Cache {
    shards: [Mutex<Shard>; SHARDS],
    /// The tokens' ttl, seconds.
    ttl: u64,
    /// Entries per shard before it is pruned.
    shard_capacity: usize,
}

/// Whether a token expiring at `exp` may still be handed out at `now`: at least half of `ttl`
/// left.
pub(super) fn fresh(exp: u64, now: u64, ttl: u64) -> bool {
    exp.saturating_sub(now).saturating_mul(2) >= ttl
}

impl Cache {
    pub(super) fn new(ttl: u64) -> Cache {
        Cache::with_capacity(ttl, CAPACITY)
    }

    fn with_capacity(ttl: u64, capacity: usize) -> Cache {
        Cache {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            ttl,
            shard_capacity: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, session: &[u8; 32]) -> &Mutex<Shard> {
        // The last byte: the first eight are the hash within the shard (`DigestMap`), whose
        // low bits must not all be alike.
        &self.shards[usize::from(session[31]) % SHARDS]
    }

    /// The cached token for this session, audience and groups, if it is still fresh at `now`.
    pub(super) fn get(
        &self,
        session: &[u8; 32],
        audience: &str,
        groups: &[String],
        now: u64,
    ) -> Option<HeaderValue> {
        let shard = lock(self.shard(session));
        let entry = shard
            .sessions
            .get(session)?
            .iter()
            .find(|e| &*e.audience == audience)?;
        (*entry.groups == *groups && fresh(entry.exp, now, self.ttl)).then(|| entry.token.clone())
    }

    /// Keep `token` (expiring at `exp`) for this session, audience and groups, replacing what
    /// was kept for that session and audience.
    pub(super) fn put(
        &self,
        session: &[u8; 32],
        audience: &str,
        groups: &[String],
        exp: u64,
        token: HeaderValue,
        now: u64,
    ) {
        let mut shard = lock(self.shard(session));
        if shard.entries >= self.shard_capacity {
            self.prune(&mut shard, now);
        }
        let shard = &mut *shard;
        let entries = shard.sessions.entry(*session).or_default();
        let before = entries.len();
        entries.retain(|e| &*e.audience != audience);
        if entries.len() >= PER_SESSION {
            entries.remove(0); // the longest kept
        }
        entries.push(Entry {
            audience: audience.into(),
            groups: groups.into(),
            exp,
            token,
        });
        shard.entries = shard.entries + entries.len() - before;
    }

    /// Drop what would be re-signed anyway; empty the shard if that leaves it over 3/4 full.
    fn prune(&self, shard: &mut Shard, now: u64) {
        let ttl = self.ttl;
        shard.sessions.retain(|_, entries| {
            entries.retain(|e| fresh(e.exp, now, ttl));
            !entries.is_empty()
        });
        shard.entries = shard.sessions.values().map(Vec::len).sum();
        if shard.entries * 4 > self.shard_capacity * 3 {
            shard.sessions = DigestMap::default();
            shard.entries = 0;
        }
    }

    /// Entries kept (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 60;

    fn token(n: u32) -> HeaderValue {
        HeaderValue::from_str(&format!("token-{n}")).unwrap()
    }

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_token_is_fresh_while_half_its_ttl_is_left() {
        // Signed at 1000, expiring at 1060.
        assert!(fresh(1060, 1000, TTL));
        assert!(fresh(1060, 1030, TTL)); // exactly half left
        assert!(!fresh(1060, 1031, TTL));
        assert!(!fresh(1060, 1060, TTL));
        assert!(!fresh(1060, 5000, TTL)); // long expired: no underflow
    }

    #[test]
    fn a_hit_needs_the_same_session_audience_and_groups_and_a_fresh_token() {
        let cache = Cache::new(TTL);
        let (s, other) = ([1u8; 32], [2u8; 32]);
        let admin = groups(&["admin"]);
        cache.put(&s, "app.example.com", &admin, 1060, token(1), 1000);
        assert_eq!(
            cache.get(&s, "app.example.com", &admin, 1030),
            Some(token(1))
        );
        assert_eq!(cache.get(&s, "app.example.com", &admin, 1031), None);
        assert_eq!(cache.get(&other, "app.example.com", &admin, 1000), None);
        assert_eq!(cache.get(&s, "other.example.com", &admin, 1000), None);
        assert_eq!(cache.get(&s, "app.example.com", &groups(&[]), 1000), None);
        assert_eq!(
            cache.get(&s, "app.example.com", &groups(&["admin", "ops"]), 1000),
            None
        );
    }

    #[test]
    fn a_new_token_replaces_the_old_one_for_its_audience_only() {
        let cache = Cache::new(TTL);
        let s = [1u8; 32];
        let g = groups(&[]);
        cache.put(&s, "a", &g, 1060, token(1), 1000);
        cache.put(&s, "b", &g, 1060, token(2), 1000);
        cache.put(&s, "a", &g, 1090, token(3), 1031);
        assert_eq!(cache.get(&s, "a", &g, 1031), Some(token(3)));
        assert_eq!(cache.get(&s, "b", &g, 1030), Some(token(2)));
        assert_eq!(cache.len(), 2);
        for n in 0..20 {
            cache.put(&s, &format!("host{n}"), &g, 1060, token(n), 1000);
        }
        assert_eq!(cache.len(), PER_SESSION);
        assert_eq!(cache.get(&s, "host19", &g, 1000), Some(token(19)));
        assert_eq!(cache.get(&s, "a", &g, 1000), None);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let capacity = 160;
        let cache = Cache::with_capacity(TTL, capacity);
        let g = groups(&[]);
        let session = |n: u32| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&n.to_le_bytes());
            k[31] = n.to_le_bytes()[0];
            k
        };
        // Stale entries go first: those put at 1000 are not fresh at 1040.
        for n in 0..capacity as u32 {
            cache.put(&session(n), "a", &g, 1060, token(n), 1000);
        }
        for n in 0..1000u32 {
            cache.put(&session(10_000 + n), "a", &g, 1100, token(n), 1040);
            assert!(cache.len() <= capacity, "{} entries", cache.len());
        }
        assert_eq!(cache.get(&session(10_999), "a", &g, 1040), Some(token(999)));
    }
}
