//! `[session] cache = true`: the local [`SessionCache`] in front of Redis lookups, and the
//! start-up of the tracking connection that keeps it honest.
//!
//! A hot session is answered from memory, with no round trip, until Redis says its record
//! changed, the record needs its idle clock slid, or the tracking connection is in doubt (the
//! cache's own rules). A miss runs the ordinary lookup and fills the cache. This
//! instance's own deletes invalidate its cache at once; other instances hear of them through
//! Redis within milliseconds. Standalone and Sentinel only (the config refuses Cluster).
//!
//! The tracker is started once, on whichever runtime asks first: `server::Server::open` asks on the
//! main runtime (through `RedisStore::start_background`), so the tracker's health checks never
//! queue behind a busy serving worker; a store used without it starts the tracker on its first
//! lookup.

use crate::clock::Clock;
use std::sync::{Arc, Mutex, Once};

use crate::lock::lock;
use crate::session::cache::{SessionCache, Ticket};
use crate::session::live::Registry;
use crate::session::{tracking, Record, SessionKey, Timeouts};

/// What the cache says about a key, before any Redis round trip.
pub(super) enum Answer {
    /// A live record that needs no touch: the answer.
    Hit(Record),
    /// Ask Redis; give its answer to [`Cached::fill`] with this ticket.
    Miss(Ticket),
}

/// The session cache and what its tracker needs to start.
pub(super) struct Cached {
    sessions: Arc<SessionCache>,
    source: Mutex<Option<tracking::Source>>,
    started: Once,
    /// The long-lived exchanges the tracker's invalidations are passed on to.
    live: Arc<Registry>,
}

impl Cached {
    /// An empty cache whose tracker, once started, connects through `source`; its trust runs
    /// on `clock`. What Redis says changed is passed on to `live` too, whose exchanges of a
    /// changed session are re-checked at once (DESIGN.md §11).
    pub(super) fn new(source: tracking::Source, clock: Clock, live: Arc<Registry>) -> Cached {
        Cached {
            sessions: Arc::new(SessionCache::with_clock(clock)),
            source: Mutex::new(Some(source)),
            started: Once::new(),
            live,
        }
    }

    /// The cache itself (for tests and diagnostics).
    pub(super) fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    /// Start the tracker, once; the first lookup calls this from inside the runtime. Later
    /// calls cost one atomic load. `record_prefix` names the keys it watches (`{prefix}s:`).
    pub(super) fn start(&self, record_prefix: impl FnOnce() -> String) {
        self.started.call_once(|| {
            if let Some(source) = lock(&self.source).take() {
                tracking::spawn(source, record_prefix(), &self.sessions, &self.live);
            }
        });
    }

    /// Answer `key` from memory if the cache may, else hand out the ticket the fill after the
    /// Redis lookup needs. Starts the tracker if nothing has yet. Synchronous, so the store's
    /// lookup future nests no deeper for the cache (the server's futures are already deep).
    pub(super) fn answer(
        &self,
        key: &SessionKey,
        now: u64,
        timeouts: &Timeouts,
        record_prefix: impl FnOnce() -> String,
    ) -> Answer {
        self.start(record_prefix);
        match self.sessions.get(key, now, timeouts) {
            Some(record) => Answer::Hit(record),
            // Taken before the read: an invalidation while it runs voids the fill.
            None => Answer::Miss(self.sessions.ticket(key)),
        }
    }

    /// [`answer`](Self::answer)'s hit, without a ticket on a miss: for a look before the
    /// store's lookup, which asks again (and takes the ticket) when this finds nothing.
    pub(super) fn peek(
        &self,
        key: &SessionKey,
        now: u64,
        timeouts: &Timeouts,
        record_prefix: impl FnOnce() -> String,
    ) -> Option<Record> {
        self.start(record_prefix);
        // A miss here is counted by the lookup's own `answer`, which follows it.
        self.sessions.get_if_hit(key, now, timeouts)
    }

    /// Keep what the Redis lookup answered for a [`Answer::Miss`], unless the ticket was voided.
    pub(super) fn fill(&self, key: &SessionKey, record: &Record, ticket: Ticket, now: u64) {
        self.sessions.fill(key, record, ticket, now);
    }

    /// Forget `key` now: this instance deleted it, and must not answer it from memory while
    /// Redis's invalidation is on its way.
    pub(super) fn invalidate(&self, key: &SessionKey) {
        self.sessions.invalidate(key);
    }
}
