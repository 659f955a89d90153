//! The embedded store (the default): sessions in one local redb file, no other service needed.
//!
//! Why it is shaped this way:
//!
//! * **Crash safety.** redb is ACID with copy-on-write commits. Creates, deletes, revokes,
//!   throttling counters and sweeps commit with [`Durability::Immediate`] (fsynced before the
//!   call returns), so a session a client was told about survives a restart and a `kill -9`.
//! * **Coalesced touches.** The idle clock slides on use, but a session's `last_seen` is
//!   persisted at most once per `idle_timeout / 10` ([`Record::needs_touch`]), so reads do not
//!   each pay a write. Those touch commits use [`Durability::None`]: a crash loses at most the
//!   touches since the last durable commit, which only moves `last_seen` back — it can shorten a
//!   session, never extend it (the absolute expiry is written once, at creation). Every
//!   [`LAZY_COMMITS_MAX`]th touch, every other write and every sweep is durable, which bounds
//!   what a crash can lose and lets redb reuse freed pages.
//! * **Validity from timestamps.** Both clocks are checked against the record on every lookup;
//!   the periodic sweep ([`EmbeddedStore::spawn_sweeper`]) only reclaims space. The store works
//!   without it (expired records read as absent), it just grows.
//! * **A bounded cache.** Hot records are kept in memory so a request whose session needs no
//!   touch costs no transaction. The cache holds at most [`CACHE_CAP`] records and is cleared
//!   when full (simple, bounded; a hot set re-warms with one read each). Every write evicts what
//!   it changes, and a fill that raced a delete is dropped (an epoch counter), so a revoked
//!   session is never served from memory.
//! * **Blocking off the runtime.** redb's API is blocking (file I/O, fsync), so every
//!   transaction runs under [`tokio::task::spawn_blocking`], never on an async worker thread.
//! * **One process holds the file.** redb locks its file exclusively (even a read-only open
//!   fails while doorman runs), so `doorman sessions revoke` reaches a running doorman through a
//!   control socket beside the store (the top-level `control` module, an operations endpoint
//!   that calls [`SessionStore::delete_user`] here), and opens the file itself only when no
//!   doorman listens.
//!
//! Layout: `sessions` (SHA-256 key → JSON [`Record`]), `users` (a multimap user → keys, for
//! revoke), `counters` (name → (count, window end in Unix ms), for login throttling).

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redb::{
    Database, DatabaseError, Durability, MultimapTableDefinition, ReadableDatabase,
    ReadableMultimapTable, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::task::JoinHandle;

use super::{Record, SessionKey, SessionStore, StoreError, Timeouts};
use crate::clock::Clock;
use crate::digest_map::DigestMap;

/// Sessions: SHA-256 of the id → the JSON-encoded [`Record`].
const SESSIONS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("sessions");
/// User → the keys of that user's sessions, for revoke-all.
const USERS: MultimapTableDefinition<&str, &[u8; 32]> = MultimapTableDefinition::new("users");
/// Throttling counter name → (count, end of its window in Unix ms).
const COUNTERS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("counters");

/// redb's page cache. Its default is 1 GiB; session records are small and hot ones are cached
/// above redb anyway.
const REDB_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Most records kept in the in-memory cache (~a few MiB at worst).
pub const CACHE_CAP: usize = 10_000;
/// Non-durable touch commits in a row before one is made durable.
pub const LAZY_COMMITS_MAX: u32 = 64;

/// Sessions in a local redb file. Cheap to clone: clones share one open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// The time expiry and counter windows are judged against.
    clock: Clock,
}

struct Inner {
    /// The open long-lived exchanges of this store's sessions (DESIGN.md §11).
    live: Arc<super::live::Registry>,
    db: Database,
    /// One permit: the write transaction redb allows at a time. Writers wait for it here, as a
    /// task, rather than on redb's lock inside a blocking thread, so a burst of writes (logins
    /// count each attempt) does not start a thread per write, each with its stack and memory.
    writer: Arc<tokio::sync::Semaphore>,
    timeouts: Timeouts,
    cache: Mutex<Cache>,
    cache_cap: usize,
    /// Non-durable commits since the last durable one.
    lazy_commits: AtomicU32,
    /// Commits that wrote a session record (create or touch), for the coalescing tests.
    #[cfg(test)]
    session_writes: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Cache {
    /// Filled only with records read from the file (`DigestMap`'s rule).
    map: DigestMap<SessionKey, Record>,
    /// Bumped by every delete; a lookup fills the cache only if no delete ran since it started
    /// reading, so a record read just before a revoke cannot be cached after it.
    epoch: u64,
}

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Expired (or unreadable) session records.
    pub sessions: usize,
    /// User-index entries pointing at no record.
    pub index_entries: usize,
    /// Counters past their window.
    pub counters: usize,
}

impl EmbeddedStore {
    /// The record of `key` when the in-memory cache answers it as is (live, no touch due),
    /// without a future: see [`Store::fresh`](crate::session::Store::fresh).
    pub fn fresh(&self, key: &SessionKey, now: u64) -> Option<Record> {
        match self.inner.cached(key, now).1 {
            Some(Cached::Fresh(record)) => Some(record),
            _ => None,
        }
    }

    /// Open (creating folders and file as needed) the store at `path`.
    ///
    /// Fails with [`StoreError::Unavailable`] when another process holds the file (a running
    /// doorman: use its control socket instead). Blocking: call it at start-up, or from
    /// [`tokio::task::spawn_blocking`].
    pub fn open(path: &Path, timeouts: Timeouts) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with_cache_cap(path, timeouts, CACHE_CAP)
    }

    fn open_with_cache_cap(
        path: &Path,
        timeouts: Timeouts,
        cache_cap: usize,
    ) -> Result<EmbeddedStore, StoreError> {
        let io_err = |what: &str, e: io::Error| {
            StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_err("cannot create the folder of", e))?;
        }
        // Records name users and groups: keep the file private to doorman's user.
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_err("cannot open", e))?;
        let db = Database::builder()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "{} is in use by another process (a running doorman?)",
                    path.display()
                )),
                e => StoreError::Unavailable(format!("cannot open {}: {e}", path.display())),
            })?;
        // Create the tables once, so read transactions can open them.
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(SESSIONS).map_err(unavailable)?;
        txn.open_multimap_table(USERS).map_err(unavailable)?;
        txn.open_table(COUNTERS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            clock: Clock::system(),
            inner: Arc::new(Inner {
                live: Arc::default(),
                db,
                writer: Arc::new(tokio::sync::Semaphore::new(1)),
                timeouts,
                cache: Mutex::new(Cache::default()),
                cache_cap: cache_cap.max(1),
                lazy_commits: AtomicU32::new(0),
                #[cfg(test)]
                session_writes: Default::default(),
            }),
        })
    }

    /// The same store, judging time by `clock` (the system clock unless set).
    pub fn with_clock(mut self, clock: Clock) -> EmbeddedStore {
        self.clock = clock;
        self
    }

    /// The express-session ids of `user`'s sessions taken over from an express app
    /// ([`Record::express`]): what a revoke deletes in the app's Redis (DESIGN.md §12).
    pub async fn express_ids(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.blocking(move |inner| inner.express_ids(&user)).await
    }

    /// The open long-lived exchanges of this store's sessions: a delete ends them.
    pub fn live(&self) -> &Arc<super::live::Registry> {
        &self.inner.live
    }

    /// Remove expired sessions, dangling index entries and expired counters now.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        let now = self.clock.now_millis();
        self.blocking(move |inner| inner.sweep(now)).await
    }

    /// Sweep every `every` on the current runtime. The task holds the store weakly: it ends
    /// when the last handle is dropped (so the file is closed), or when the handle is aborted.
    pub fn spawn_sweeper(&self, every: Duration) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let store = EmbeddedStore {
                    inner,
                    clock: clock.clone(),
                };
                match store.sweep().await {
                    Ok(swept) if swept != Swept::default() => {
                        tracing::debug!(
                            sessions = swept.sessions,
                            index_entries = swept.index_entries,
                            counters = swept.counters,
                            "session store swept"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session store sweep failed"),
                }
            }
        })
    }

    /// Run `f` on tokio's blocking pool: redb calls never run on an async worker thread.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("session store task failed: {e}")))?
    }

    /// [`blocking`](Self::blocking) for a write transaction: started once the write permit is
    /// had, which the blocking task holds until it is done.
    async fn blocking_write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.writer)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("session store closed".into()))?;
        self.blocking(move |inner| {
            let _permit = permit;
            f(inner)
        })
        .await
    }
}

impl SessionStore for EmbeddedStore {
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let (key, record) = (*key, record.clone());
        self.blocking_write(move |inner| inner.create(&key, &record))
            .await
    }

    async fn lookup(&self, key: &SessionKey, now: u64) -> Result<Option<Record>, StoreError> {
        let key = *key;
        let (epoch, cached) = self.inner.cached(&key, now);
        if let Some(Cached::Fresh(record)) = cached {
            return Ok(Some(record));
        }
        let stale = matches!(cached, Some(Cached::NeedsTouch));
        self.blocking(move |inner| inner.lookup(&key, now, epoch, stale))
            .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = *key;
        self.blocking_write(move |inner| inner.delete(&key)).await
    }

    async fn delete_family(&self, user: &str, family: &str) -> Result<usize, StoreError> {
        let (user, family) = (user.to_owned(), family.to_owned());
        self.blocking_write(move |inner| inner.delete_family(&user, &family))
            .await
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let user = user.to_owned();
        let now = self.clock.now_millis();
        self.blocking_write(move |inner| inner.delete_user(&user, now))
            .await
    }

    async fn sealed_id_token(&self, key: &SessionKey) -> Result<Option<String>, StoreError> {
        let key = *key;
        let record = self.blocking(move |inner| inner.read_session(&key)).await?;
        Ok(record.flatten().and_then(|r| r.id_token.map(String::from)))
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<u64, StoreError> {
        let counter = counter.to_owned();
        let now = self.clock.now_millis();
        self.blocking_write(move |inner| inner.hit(&counter, window, now))
            .await
    }

    async fn count(&self, counter: &str) -> Result<u64, StoreError> {
        let counter = counter.to_owned();
        let now = self.clock.now_millis();
        self.blocking(move |inner| inner.count(&counter, now)).await
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        let counter = counter.to_owned();
        self.blocking_write(move |inner| inner.reset(&counter))
            .await
    }

    async fn unhit(&self, counter: &str) -> Result<(), StoreError> {
        let counter = counter.to_owned();
        let now = self.clock.now_millis();
        self.blocking_write(move |inner| inner.unhit(&counter, now))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|inner| {
            let txn = inner.db.begin_read().map_err(unavailable)?;
            txn.open_table(SESSIONS).map_err(unavailable)?;
            Ok(())
        })
        .await
    }
}

/// What a touch transaction found.
enum Touch {
    Touched(Record),
    Fresh(Record),
    Gone,
    Dead,
}

/// What the cache knows about a key that it holds.
enum Cached {
    /// Live, and no touch due: the answer.
    Fresh(Record),
    /// Live, but its idle clock is due to be persisted.
    NeedsTouch,
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        crate::lock::lock(&self.cache)
    }

    /// The cache's view of `key` at `now`, and the epoch to fill it under afterwards.
    fn cached(&self, key: &SessionKey, now: u64) -> (u64, Option<Cached>) {
        let mut cache = self.cache();
        let epoch = cache.epoch;
        let found = match cache.map.get(key) {
            None => None,
            Some(r) if !r.is_live(now, &self.timeouts) => {
                cache.map.remove(key);
                None
            }
            Some(r) if r.needs_touch(now, &self.timeouts) => Some(Cached::NeedsTouch),
            Some(r) => Some(Cached::Fresh(r.clone())),
        };
        (epoch, found)
    }

    /// Cache `record` unless a delete ran since `epoch`; keeps the newer `last_seen` when two
    /// lookups race.
    fn fill(&self, key: &SessionKey, record: &Record, epoch: u64) {
        let mut cache = self.cache();
        if cache.epoch != epoch {
            return;
        }
        if let Some(held) = cache.map.get(key) {
            if held.last_seen >= record.last_seen {
                return;
            }
        } else if cache.map.len() >= self.cache_cap {
            cache.map.clear();
        }
        cache.map.insert(*key, record.clone());
    }

    /// Drop `keys` from the cache after they were deleted from the file.
    fn evict<'a>(&self, keys: impl IntoIterator<Item = &'a SessionKey>) {
        let mut cache = self.cache();
        for key in keys {
            cache.map.remove(key);
        }
        cache.epoch = cache.epoch.wrapping_add(1);
    }

    fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let txn = self.begin_write(Durability::Immediate)?;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let mut users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            let old = sessions
                .insert(&key.0, bytes.as_slice())
                .map_err(unavailable)?
                .and_then(|old| decode(old.value()));
            if let Some(old) = old.filter(|old| old.user != record.user) {
                users
                    .remove(old.user.as_ref(), &key.0)
                    .map_err(unavailable)?;
            }
            users
                .insert(record.user.as_ref(), &key.0)
                .map_err(unavailable)?;
        }
        self.commit(txn, Durability::Immediate)?;
        self.count_session_write();
        // Evict rather than fill: the first lookup fills it, under the epoch rule.
        self.cache().map.remove(key);
        Ok(())
    }

    /// The lookup after a cache miss (or a cached record due for a touch).
    fn lookup(
        &self,
        key: &SessionKey,
        now: u64,
        epoch: u64,
        touch_due: bool,
    ) -> Result<Option<Record>, StoreError> {
        let t = &self.timeouts;
        if !touch_due {
            match self.read_session(key)? {
                None => return Ok(None),
                Some(Some(record)) if record.is_live(now, t) => {
                    if !record.needs_touch(now, t) {
                        self.fill(key, &record, epoch);
                        return Ok(Some(record));
                    }
                }
                Some(_) => {
                    self.remove_dead(key, now)?;
                    return Ok(None);
                }
            }
        }
        // Slide the idle clock: re-read inside the write transaction, which serialises with
        // deletes and with other touches (a concurrent lookup may have just done it).
        let txn = self.begin_write(Durability::None)?;
        let outcome = {
            let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let found = sessions
                .get(&key.0)
                .map_err(unavailable)?
                .map(|g| decode(g.value()));
            match found {
                None => Touch::Gone,
                Some(Some(mut record)) if record.is_live(now, t) => {
                    if record.needs_touch(now, t) {
                        record.last_seen = record.last_seen.max(now);
                        sessions
                            .insert(&key.0, encode(&record)?.as_slice())
                            .map_err(unavailable)?;
                        Touch::Touched(record)
                    } else {
                        Touch::Fresh(record) // another lookup just touched it
                    }
                }
                Some(_) => Touch::Dead,
            }
        };
        match outcome {
            Touch::Touched(record) => {
                self.commit(txn, Durability::None)?;
                self.count_session_write();
                self.fill(key, &record, epoch);
                Ok(Some(record))
            }
            Touch::Fresh(record) => {
                txn.abort().map_err(unavailable)?;
                self.fill(key, &record, epoch);
                Ok(Some(record))
            }
            Touch::Gone => {
                txn.abort().map_err(unavailable)?;
                Ok(None)
            }
            Touch::Dead => {
                txn.abort().map_err(unavailable)?;
                self.remove_dead(key, now)?;
                Ok(None)
            }
        }
    }

    fn express_ids(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let users = txn.open_multimap_table(USERS).map_err(unavailable)?;
        let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
        let mut ids = Vec::new();
        for k in users.get(user).map_err(unavailable)? {
            let key = *k.map_err(unavailable)?.value();
            let record = sessions
                .get(&key)
                .map_err(unavailable)?
                .and_then(|g| decode(g.value()));
            if let Some(id) = record.filter(|r| &*r.user == user).and_then(|r| r.express) {
                ids.push(id.into_string());
            }
        }
        Ok(ids)
    }

    /// The stored record at `key`: `Some(None)` when present but unreadable.
    fn read_session(&self, key: &SessionKey) -> Result<Option<Option<Record>>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
        let found = sessions.get(&key.0).map_err(unavailable)?;
        Ok(found.map(|g| decode(g.value())))
    }

    /// Delete `key` if it is (still) expired or unreadable. Losing this on a crash is harmless
    /// (the record stays expired), so it does not pay an fsync.
    fn remove_dead(&self, key: &SessionKey, now: u64) -> Result<(), StoreError> {
        let t = self.timeouts;
        let txn = self.begin_write(Durability::None)?;
        let removed = remove_session_if(&txn, key, |r| !r.is_some_and(|r| r.is_live(now, &t)))?;
        self.commit(txn, Durability::None)?;
        if removed {
            self.evict([key]);
        }
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        let removed = remove_session_if(&txn, key, |_| true)?;
        self.commit(txn, Durability::Immediate)?;
        self.evict([key]);
        Ok(removed)
    }

    /// Delete `user`'s sessions and codes whose family is `family`, in one transaction.
    fn delete_family(&self, user: &str, family: &str) -> Result<usize, StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        let mut removed = Vec::new();
        {
            let users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            let mut keys = Vec::new();
            for k in users.get(user).map_err(unavailable)? {
                keys.push(SessionKey(*k.map_err(unavailable)?.value()));
            }
            drop(users);
            for key in keys {
                let in_family = |r: Option<&Record>| {
                    r.is_some_and(|r| &*r.user == user && r.family(&key) == family)
                };
                if remove_session_if(&txn, &key, in_family)? {
                    removed.push(key);
                }
            }
        }
        self.commit(txn, Durability::Immediate)?;
        self.evict(&removed);
        Ok(removed.len())
    }

    /// Delete every session of `user`; counts those that were still live at `now`.
    fn delete_user(&self, user: &str, now: u64) -> Result<usize, StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        let mut keys = Vec::new();
        let mut live = 0;
        {
            let mut users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            for k in users.remove_all(user).map_err(unavailable)? {
                keys.push(SessionKey(*k.map_err(unavailable)?.value()));
            }
            for key in &keys {
                let record = sessions
                    .get(&key.0)
                    .map_err(unavailable)?
                    .map(|g| decode(g.value()));
                // Only this user's records: the index is a hint, the record is the truth.
                match record {
                    Some(Some(r)) if &*r.user == user => {
                        sessions.remove(&key.0).map_err(unavailable)?;
                        if r.is_live(now, &self.timeouts) {
                            live += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
        self.commit(txn, Durability::Immediate)?;
        self.evict(&keys);
        Ok(live)
    }

    fn hit(&self, counter: &str, window: Duration, now: u64) -> Result<u64, StoreError> {
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let txn = self.begin_write(Durability::Immediate)?;
        let count = {
            let mut counters = txn.open_table(COUNTERS).map_err(unavailable)?;
            let current = counters
                .get(counter)
                .map_err(unavailable)?
                .map(|g| g.value());
            let (count, end) = match current {
                Some((count, end)) if now < end => (count.saturating_add(1), end),
                _ => (1, now.saturating_add(window)),
            };
            counters
                .insert(counter, (count, end))
                .map_err(unavailable)?;
            count
        };
        self.commit(txn, Durability::Immediate)?;
        Ok(count)
    }

    fn reset(&self, counter: &str) -> Result<(), StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        txn.open_table(COUNTERS)
            .map_err(unavailable)?
            .remove(counter)
            .map_err(unavailable)?;
        self.commit(txn, Durability::Immediate)
    }

    fn unhit(&self, counter: &str, now: u64) -> Result<(), StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        {
            let mut counters = txn.open_table(COUNTERS).map_err(unavailable)?;
            let current = counters
                .get(counter)
                .map_err(unavailable)?
                .map(|g| g.value());
            match current {
                Some((count, end)) if now < end && count > 1 => {
                    counters
                        .insert(counter, (count - 1, end))
                        .map_err(unavailable)?;
                }
                Some(_) => {
                    counters.remove(counter).map_err(unavailable)?;
                }
                None => {}
            }
        }
        self.commit(txn, Durability::Immediate)
    }

    fn count(&self, counter: &str, now: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let counters = txn.open_table(COUNTERS).map_err(unavailable)?;
        let current = counters
            .get(counter)
            .map_err(unavailable)?
            .map(|g| g.value());
        Ok(match current {
            Some((count, end)) if now < end => count,
            _ => 0,
        })
    }

    /// Find what is dead under a read transaction (writers keep going), then delete it in one
    /// durable write transaction that checks each again.
    fn sweep(&self, now: u64) -> Result<Swept, StoreError> {
        let t = self.timeouts;
        let (dead, dangling, expired) = {
            let txn = self.db.begin_read().map_err(unavailable)?;
            let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let mut dead = Vec::new();
            for entry in sessions.iter().map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                if !decode(v.value()).is_some_and(|r| r.is_live(now, &t)) {
                    dead.push(SessionKey(*k.value()));
                }
            }
            let users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            let mut dangling = Vec::new();
            for entry in users.iter().map_err(unavailable)? {
                let (user, keys) = entry.map_err(unavailable)?;
                for k in keys {
                    let k = *k.map_err(unavailable)?.value();
                    if sessions.get(&k).map_err(unavailable)?.is_none() {
                        dangling.push((user.value().to_owned(), k));
                    }
                }
            }
            let counters = txn.open_table(COUNTERS).map_err(unavailable)?;
            let mut expired = Vec::new();
            for entry in counters.iter().map_err(unavailable)? {
                let (name, v) = entry.map_err(unavailable)?;
                if now >= v.value().1 {
                    expired.push(name.value().to_owned());
                }
            }
            (dead, dangling, expired)
        };

        let mut swept = Swept::default();
        let txn = self.begin_write(Durability::Immediate)?;
        for key in &dead {
            if remove_session_if(&txn, key, |r| !r.is_some_and(|r| r.is_live(now, &t)))? {
                swept.sessions += 1;
            }
        }
        {
            let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let mut users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            for (user, k) in &dangling {
                if sessions.get(k).map_err(unavailable)?.is_none()
                    && users.remove(user.as_str(), k).map_err(unavailable)?
                {
                    swept.index_entries += 1;
                }
            }
            let mut counters = txn.open_table(COUNTERS).map_err(unavailable)?;
            for name in &expired {
                let end = counters
                    .get(name.as_str())
                    .map_err(unavailable)?
                    .map(|g| g.value().1);
                if end.is_some_and(|end| now >= end) {
                    counters.remove(name.as_str()).map_err(unavailable)?;
                    swept.counters += 1;
                }
            }
        }
        // Always durable, even when nothing was removed: it also persists pending touches.
        self.commit(txn, Durability::Immediate)?;
        self.evict(&dead);
        Ok(swept)
    }

    /// A write transaction with `durability`, except that every [`LAZY_COMMITS_MAX`]th lazy
    /// one is made durable (pass the same value to [`Inner::commit`]).
    fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(unavailable)?;
        let lazy = matches!(durability, Durability::None)
            && self.lazy_commits.load(Ordering::Relaxed) < LAZY_COMMITS_MAX;
        let durability = if lazy {
            Durability::None
        } else {
            Durability::Immediate
        };
        txn.set_durability(durability).map_err(unavailable)?;
        Ok(txn)
    }

    fn commit(&self, txn: WriteTransaction, asked: Durability) -> Result<(), StoreError> {
        // Write transactions are serialised, so this reads the count `begin_write` saw.
        let lazy = matches!(asked, Durability::None)
            && self.lazy_commits.load(Ordering::Relaxed) < LAZY_COMMITS_MAX;
        txn.commit().map_err(unavailable)?;
        if lazy {
            self.lazy_commits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lazy_commits.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    fn count_session_write(&self) {
        #[cfg(test)]
        self.session_writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Remove the session at `key` (and its index entry) if `dead(record)` says so; `None` is
/// passed for a record that cannot be decoded. Returns whether a record was removed.
fn remove_session_if(
    txn: &WriteTransaction,
    key: &SessionKey,
    dead: impl FnOnce(Option<&Record>) -> bool,
) -> Result<bool, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
    let record = match sessions.get(&key.0).map_err(unavailable)? {
        None => return Ok(false),
        Some(g) => decode(g.value()),
    };
    if !dead(record.as_ref()) {
        return Ok(false);
    }
    sessions.remove(&key.0).map_err(unavailable)?;
    if let Some(record) = record {
        let mut users = txn.open_multimap_table(USERS).map_err(unavailable)?;
        users
            .remove(record.user.as_ref(), &key.0)
            .map_err(unavailable)?;
    }
    // An unreadable record's index entry is left for the sweep's dangling-entry pass.
    Ok(true)
}

fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A record this build cannot read (another format) is treated as absent.
fn decode(bytes: &[u8]) -> Option<Record> {
    serde_json::from_slice(bytes).ok()
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

// Bench-only (benches/seed.rs): outside the default build, but compiled for the unit tests so
// the seeded layout is checked against the store's on every `cargo test`.
#[cfg(any(test, feature = "bench-seed"))]
mod seed;
#[cfg(test)]
mod tests;
