//! The local session cache behind `[session] cache = true`: hot sessions answered from memory,
//! invalidated by Redis.
//!
//! This module is the data structure only; [`super::tracking`] keeps it honest by feeding it
//! Redis's invalidation messages and by telling it when it can no longer hear them.
//!
//! # When an entry may be served
//!
//! Only while the cache is *trusted*: a tracking connection has `CLIENT TRACKING` on and
//! answered a health check within [`TRUST_WINDOW`]. Losing the connection, a failed health
//! check, or silence longer than the window empties the cache and stops it serving, and lookups
//! fall back to Redis, which fails closed when it is down. So a revoke elsewhere is seen within
//! milliseconds while tracking works, and even when its invalidation is lost (a partition
//! between this instance and a Redis that still serves the others), a cached session outlives
//! it by at most [`TRUST_WINDOW`].
//!
//! Even then an entry is served only while its record is live and does not need its idle clock
//! slid ([`Record::needs_touch`]); otherwise the lookup goes to Redis, which slides it. So the
//! cache never extends a session, and sliding-expiry writes stay coalesced to one per
//! `idle / 10` per session.
//!
//! # The fill race
//!
//! A lookup that misses reads Redis and then fills the cache. If an invalidation for that key
//! is processed between the read being sent and the fill, the value read may already be stale:
//! filling it would keep a revoked session alive. Each shard therefore has an epoch that every
//! invalidation, removal and flush bumps; a lookup notes the epoch before it sends the read
//! ([`SessionCache::ticket`]) and the fill is dropped if the epoch moved. An invalidation that
//! arrives after the fill simply removes the entry. (Bumping per shard rather than per key
//! costs at most an occasional extra miss.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Record, SessionKey, Timeouts};
use crate::clock::Clock;
use crate::digest_map::DigestMap;
use crate::metrics::CacheStats;

/// How long after the last successful health check of the tracking connection the cache keeps
/// serving. The tracker checks every second, so this tolerates one slow answer, not an outage.
pub const TRUST_WINDOW: Duration = Duration::from_millis(2500);

/// Upper bound on cached sessions (all shards together). At roughly 200 bytes each this caps
/// the cache near 20 MB; past it, new fills push out dead or arbitrary entries.
pub const CAPACITY: usize = 100_000;

const SHARDS: usize = 16;

/// Cached session records, keyed like the store ([`SessionKey`]), split into shards so the
/// request threads rarely meet on one lock. No lock is held across an `.await`.
pub struct SessionCache {
    shards: [Mutex<Shard>; SHARDS],
    /// Monotonic milliseconds since `origin` until which the cache may serve; 0 = not trusted.
    trusted_until: AtomicU64,
    /// Bumped by every [`SessionCache::distrust`]: a health check that succeeded on a
    /// connection that has since been lost must not renew the trust.
    generation: AtomicU64,
    /// When the cache was made, on `clock`.
    origin: Instant,
    /// The time trust is judged against.
    clock: Clock,
    stats: CacheStats,
}

#[derive(Default)]
struct Shard {
    /// Filled only with records Redis returned (`DigestMap`'s rule).
    entries: DigestMap<SessionKey, Record>,
    epoch: u64,
}

/// The tracking connection a [`SessionCache::trust`] was granted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// A fill permit: the shard's epoch when the read was sent (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl Default for SessionCache {
    fn default() -> Self {
        SessionCache::new()
    }
}

impl SessionCache {
    /// An empty, untrusted cache on the system clock.
    pub fn new() -> SessionCache {
        SessionCache::with_clock(Clock::system())
    }

    /// An empty, untrusted cache whose trust window runs on `clock`.
    pub fn with_clock(clock: Clock) -> SessionCache {
        SessionCache {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            trusted_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            origin: clock.instant(),
            clock,
            stats: CacheStats::default(),
        }
    }

    /// The cache's counters and gauges, for the metrics registry.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// A live record that needs no touch at `now` (Unix ms), if the cache may serve one.
    pub fn get(&self, key: &SessionKey, now: u64, timeouts: &Timeouts) -> Option<Record> {
        let found = self.peek(key, now, timeouts);
        match found {
            Some(_) => self.stats.hit(),
            None => self.stats.miss(),
        };
        found
    }

    /// [`get`](Self::get) counting a hit but not a miss: for a look whose miss is followed by
    /// a `get` (the store's lookup), so that each lookup counts once.
    pub fn get_if_hit(&self, key: &SessionKey, now: u64, timeouts: &Timeouts) -> Option<Record> {
        let found = self.peek(key, now, timeouts);
        if found.is_some() {
            self.stats.hit();
        }
        found
    }

    fn peek(&self, key: &SessionKey, now: u64, timeouts: &Timeouts) -> Option<Record> {
        if !self.trusted() {
            return None;
        }
        self.shard(key)
            .entries
            .get(key)
            .filter(|r| r.is_live(now, timeouts) && !r.needs_touch(now, timeouts))
            .cloned()
    }

    /// Note the epoch of `key`'s shard before reading the record from Redis.
    pub fn ticket(&self, key: &SessionKey) -> Ticket {
        Ticket(self.shard(key).epoch)
    }

    /// Fill the cache with what Redis answered, unless something invalidated the shard since
    /// `ticket` was taken or the cache is not trusted. `None` (no session) is not cached: a
    /// missing session costs a round trip, as a login that has not happened yet must be seen.
    pub fn fill(&self, key: &SessionKey, record: &Record, ticket: Ticket, now: u64) {
        let mut shard = self.shard(key);
        if shard.epoch != ticket.0 || !self.trusted() {
            return;
        }
        let before = shard.entries.len();
        if before >= CAPACITY / SHARDS && !shard.entries.contains_key(key) {
            shard.entries.retain(|_, r| now < r.absolute_expiry);
            if shard.entries.len() >= CAPACITY / SHARDS {
                if let Some(victim) = shard.entries.keys().next().copied() {
                    shard.entries.remove(&victim);
                }
            }
        }
        shard.entries.insert(*key, record.clone());
        self.counted(before, shard.entries.len());
    }

    /// Forget `key` (Redis said it changed, or this instance deleted it).
    pub fn invalidate(&self, key: &SessionKey) {
        let mut shard = self.shard(key);
        shard.epoch = shard.epoch.wrapping_add(1);
        if shard.entries.remove(key).is_some() {
            self.stats.entries.dec();
        }
    }

    /// The current generation: take it before opening a tracking connection, and give it to
    /// [`trust`](Self::trust) once tracking is on, so a loss in between is not forgotten.
    pub fn current(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Start serving: tracking is on and healthy. Anything cached before is dropped first,
    /// because invalidations may have been missed while tracking was off. Refused (returns
    /// `false`) when the connection of `generation` was lost since it was taken.
    pub fn trust(&self, generation: Generation) -> bool {
        self.flush();
        self.renew(generation);
        self.trusted()
    }

    /// The tracking connection answered a health check: keep serving for [`TRUST_WINDOW`],
    /// unless that connection was lost meanwhile.
    pub fn renew(&self, generation: Generation) {
        if self.generation.load(Ordering::Acquire) != generation.0 {
            return;
        }
        let until = self.elapsed_ms() + millis(TRUST_WINDOW);
        self.trusted_until.store(until, Ordering::Release);
        self.stats.trusted.set(1);
        // A distrust between the check and the store: undo (it stored 0 before we stored).
        if self.generation.load(Ordering::Acquire) != generation.0 {
            self.trusted_until.store(0, Ordering::Release);
            self.stats.trusted.set(0);
        }
    }

    /// [`distrust`](Self::distrust), if the connection of `generation` is still the one
    /// trusted: a connection replaced already must not turn its successor off.
    pub fn distrust_if(&self, generation: Generation) {
        if self
            .generation
            .compare_exchange(
                generation.0,
                generation.0.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            self.trusted_until.store(0, Ordering::Release);
            self.stats.trusted.set(0);
            self.flush();
        }
    }

    /// Stop serving and forget everything: invalidations can no longer be heard.
    pub fn distrust(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.trusted_until.store(0, Ordering::Release);
        self.stats.trusted.set(0);
        self.flush();
    }

    /// Forget everything (Redis flushed its data, or tracking restarted).
    pub fn flush(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.epoch = shard.epoch.wrapping_add(1);
            let before = shard.entries.len();
            shard.entries.clear();
            self.counted(before, 0);
        }
    }

    /// Keep the entries gauge in step with a shard that went from `before` to `after` entries.
    fn counted(&self, before: usize, after: usize) {
        let delta =
            i64::try_from(after).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(i64::MAX);
        if delta != 0 {
            self.stats.entries.inc_by(delta);
        }
    }

    /// Whether entries may be served now.
    pub fn trusted(&self) -> bool {
        self.elapsed_ms() < self.trusted_until.load(Ordering::Acquire)
    }

    /// How many sessions are cached (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &SessionKey) -> MutexGuard<'_, Shard> {
        // The key is a SHA-256: any byte is uniformly spread.
        lock(&self.shards[usize::from(key.0[0]) % SHARDS])
    }

    fn elapsed_ms(&self) -> u64 {
        // Starts at 1, so a fresh cache (trusted_until = 0) is never trusted.
        millis(self.clock.instant().saturating_duration_since(self.origin)) + 1
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // Nothing that runs under the lock can panic halfway through an update that matters.
    crate::lock::lock(shard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Origin;

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(100),
        absolute: Duration::from_secs(1000),
    };

    fn key(n: u8) -> SessionKey {
        SessionKey([n; 32])
    }

    fn record(now: u64) -> Record {
        Record::new("alice", vec!["admin".into()], Origin::Login, now, &T)
    }

    #[test]
    fn an_untrusted_cache_neither_fills_nor_serves() {
        let cache = SessionCache::new();
        let ticket = cache.ticket(&key(1));
        cache.fill(&key(1), &record(0), ticket, 0);
        assert!(cache.is_empty());
        assert_eq!(cache.get(&key(1), 0, &T), None);
    }

    #[test]
    fn a_trusted_cache_serves_live_records_that_need_no_touch() {
        let cache = SessionCache::new();
        assert!(cache.trust(cache.current()));
        let r = record(0);
        cache.fill(&key(1), &r, cache.ticket(&key(1)), 0);
        assert_eq!(cache.get(&key(1), 5_000, &T), Some(r));
        assert_eq!(cache.get(&key(1), 10_000, &T), None, "due for a touch");
        assert_eq!(cache.get(&key(2), 0, &T), None);
    }

    #[test]
    fn an_invalidation_between_read_and_fill_drops_the_fill() {
        let cache = SessionCache::new();
        assert!(cache.trust(cache.current()));
        let ticket = cache.ticket(&key(1));
        cache.invalidate(&key(1));
        cache.fill(&key(1), &record(0), ticket, 0);
        assert_eq!(cache.get(&key(1), 1, &T), None);
        // A fresh read after the invalidation may fill.
        cache.fill(&key(1), &record(0), cache.ticket(&key(1)), 0);
        assert!(cache.get(&key(1), 1, &T).is_some());
        cache.invalidate(&key(1));
        assert_eq!(cache.get(&key(1), 1, &T), None);
    }

    #[test]
    fn distrust_empties_and_stops_serving_until_trusted_again() {
        let cache = SessionCache::new();
        let lost = cache.current();
        assert!(cache.trust(lost));
        cache.fill(&key(2), &record(0), cache.ticket(&key(2)), 0);
        let in_flight = cache.ticket(&key(1));
        cache.distrust();
        assert!(cache.is_empty());
        assert!(!cache.trusted());
        cache.renew(lost);
        assert!(
            !cache.trusted(),
            "a lost connection's health check renews nothing"
        );
        assert!(!cache.trust(lost), "nor does its late trust");
        let current = cache.current();
        assert!(cache.trust(current));
        cache.fill(&key(1), &record(0), in_flight, 0);
        assert!(
            cache.is_empty(),
            "a read begun before the outage may not fill"
        );
        cache.distrust_if(lost);
        assert!(
            cache.trusted(),
            "a lost connection's late goodbye changes nothing"
        );
        cache.renew(current);
        assert!(cache.trusted());
        cache.distrust_if(current);
        assert!(!cache.trusted());
    }

    #[test]
    fn trust_ends_when_the_clock_passes_the_trust_window() {
        let clock = Clock::system();
        let cache = SessionCache::with_clock(clock.clone());
        assert!(cache.trust(cache.current()));
        let r = record(0);
        cache.fill(&key(1), &r, cache.ticket(&key(1)), 0);
        clock.advance(TRUST_WINDOW / 2);
        assert_eq!(cache.get(&key(1), 1, &T), Some(r), "within the window");
        clock.advance(TRUST_WINDOW / 2 + Duration::from_millis(1));
        assert!(!cache.trusted());
        assert_eq!(
            cache.get(&key(1), 1, &T),
            None,
            "served past its trust window without a renewal"
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = SessionCache::new();
        assert!(cache.trust(cache.current()));
        for i in 0..(CAPACITY + 5000) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let k = SessionKey(k);
            cache.fill(&k, &record(0), cache.ticket(&k), 0);
        }
        assert!(cache.len() <= CAPACITY);
        assert_eq!(cache.stats().entries.get(), cache.len() as i64);
        cache.invalidate(&SessionKey([0; 32]));
        assert_eq!(cache.stats().entries.get(), cache.len() as i64);
        cache.distrust();
        assert_eq!(cache.stats().entries.get(), 0);
        assert_eq!(cache.stats().trusted.get(), 0);
    }

    #[test]
    fn the_session_cache_is_exported_when_on() {
        use crate::metrics::Metrics;
        use crate::session::Origin;
        let t = Timeouts {
            idle: Duration::from_secs(100),
            absolute: Duration::from_secs(1000),
        };
        assert!(!Metrics::new().encode().unwrap().contains("session_cache"));
        let cache = SessionCache::new();
        let mut m = Metrics::new();
        m.register_session_cache(cache.stats());
        let key = SessionKey([1; 32]);
        assert!(cache.get(&key, 0, &t).is_none());
        assert!(cache.trust(cache.current()));
        let record = Record::new("alice", vec![], Origin::Login, 0, &t);
        cache.fill(&key, &record, cache.ticket(&key), 0);
        assert!(cache.get(&key, 1, &t).is_some());
        let text = m.encode().unwrap();
        for line in [
            "doorman_session_cache_lookups_total{result=\"hit\"} 1",
            "doorman_session_cache_lookups_total{result=\"miss\"} 1",
            "doorman_session_cache_entries 1",
            "doorman_session_cache_trusted 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // The look before a store's lookup counts its hits, and leaves a miss to the lookup.
        assert!(cache.get_if_hit(&SessionKey([2; 32]), 1, &t).is_none());
        assert!(cache.get_if_hit(&key, 1, &t).is_some());
        let text = m.encode().unwrap();
        for line in [
            "doorman_session_cache_lookups_total{result=\"hit\"} 2",
            "doorman_session_cache_lookups_total{result=\"miss\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
