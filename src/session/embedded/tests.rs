//! Unit tests of the embedded store.

use super::*;
use crate::scratch::Scratch;
use crate::session::{now_millis, Origin, SessionId};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const LONG: Timeouts = Timeouts {
    idle: Duration::from_secs(10),
    absolute: Duration::from_secs(100),
};

/// A fresh folder under the system temp dir, removed on drop; the store goes two folders down.
struct TempDir(Scratch);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(Scratch::new(&format!("emb-{name}")))
    }

    fn db(&self) -> PathBuf {
        self.0.join("nested/folder/sessions.db")
    }
}

fn session(user: &str, now: u64, t: &Timeouts) -> (SessionKey, Record) {
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(user, vec!["staff".into()], Origin::Login, now, t);
    (key, record)
}

impl EmbeddedStore {
    fn writes(&self) -> u64 {
        self.inner.session_writes.load(Ordering::Relaxed)
    }

    /// The record as persisted, bypassing the cache.
    fn stored(&self, key: &SessionKey) -> Option<Record> {
        self.inner.read_session(key).unwrap().flatten()
    }

    fn rows(&self) -> (u64, u64, u64) {
        use redb::ReadableTableMetadata;
        let txn = self.inner.db.begin_read().unwrap();
        let s = txn.open_table(SESSIONS).unwrap().len().unwrap();
        let u = txn.open_multimap_table(USERS).unwrap().len().unwrap();
        let c = txn.open_table(COUNTERS).unwrap().len().unwrap();
        (s, u, c)
    }

    fn cached_len(&self) -> usize {
        self.inner.cache().map.len()
    }
}

#[tokio::test]
async fn creates_folders_and_finds_what_it_stored() {
    let dir = TempDir::new("create");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let mode = fs::metadata(dir.db()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the store file is private");
    let now = now_millis();
    let (key, record) = session("alice", now, &LONG);
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.lookup(&key, now + 1).await.unwrap(), Some(record));
    let (unknown, _) = session("alice", now, &LONG);
    assert_eq!(store.lookup(&unknown, now).await.unwrap(), None);
    store.ping().await.unwrap();
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = TempDir::new("exclusive");
    let _store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    match EmbeddedStore::open(&dir.db(), LONG) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("in use"), "{m}"),
        other => panic!("expected in-use, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn idle_expiry_with_real_time() {
    let t = Timeouts {
        idle: Duration::from_millis(300),
        absolute: Duration::from_secs(1),
    };
    let dir = TempDir::new("idle-real");
    let store = EmbeddedStore::open(&dir.db(), t).unwrap();
    let (key, record) = session("alice", now_millis(), &t);
    store.create(&key, &record).await.unwrap();
    assert!(store.lookup(&key, now_millis()).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.lookup(&key, now_millis()).await.unwrap(), None);
    assert_eq!(
        store.stored(&key),
        None,
        "an expired record is deleted on lookup"
    );
    assert_eq!(store.rows().1, 0, "with its index entry");
}

#[tokio::test]
async fn idle_slides_but_absolute_is_never_extended() {
    let t = Timeouts {
        idle: Duration::from_millis(300),
        absolute: Duration::from_secs(1),
    };
    let dir = TempDir::new("absolute");
    let store = EmbeddedStore::open(&dir.db(), t).unwrap();
    let start = 1_000_000;
    let (key, record) = session("alice", start, &t);
    store.create(&key, &record).await.unwrap();
    // Used every 200 ms: the idle clock (300 ms) keeps sliding...
    for step in 1..=4 {
        let now = start + step * 200;
        let found = store.lookup(&key, now).await.unwrap();
        assert_eq!(found.map(|r| r.last_seen), Some(now), "step {step}");
    }
    // ... persisted, not only cached ...
    assert_eq!(store.stored(&key).unwrap().last_seen, start + 800);
    assert_eq!(store.stored(&key).unwrap().absolute_expiry, start + 1000);
    // ... until the absolute expiry, which no use moved.
    assert_eq!(store.lookup(&key, start + 1000).await.unwrap(), None);
    // And idle still applies on its own: a new session unused for 300 ms is gone.
    let (key, record) = session("bob", start, &t);
    store.create(&key, &record).await.unwrap();
    assert!(store.lookup(&key, start + 299).await.unwrap().is_some());
    assert_eq!(store.lookup(&key, start + 299 + 300).await.unwrap(), None);
}

#[tokio::test]
async fn touches_are_coalesced_to_one_write_per_tenth_of_idle() {
    let dir = TempDir::new("coalesce");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap(); // idle 10 s: touch per 1 s
    let start = 5_000_000;
    let (key, record) = session("alice", start, &LONG);
    store.create(&key, &record).await.unwrap();
    assert_eq!(store.writes(), 1);
    for ms in [1, 10, 500, 999] {
        let r = store.lookup(&key, start + ms).await.unwrap().unwrap();
        assert_eq!(r.last_seen, start, "no touch within idle/10");
    }
    assert_eq!(store.writes(), 1, "reads within idle/10 write nothing");
    let r = store.lookup(&key, start + 1000).await.unwrap().unwrap();
    assert_eq!(r.last_seen, start + 1000);
    assert_eq!(store.writes(), 2, "one touch");
    for ms in [1001, 1500, 1999] {
        store.lookup(&key, start + ms).await.unwrap().unwrap();
    }
    assert_eq!(store.writes(), 2);
    assert_eq!(store.stored(&key).unwrap().last_seen, start + 1000);
    // The touch is what a fresh process sees.
    drop(store);
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    assert_eq!(store.stored(&key).unwrap().last_seen, start + 1000);
    // A lookup from a time before last_seen (clock step back) never moves it backwards.
    let r = store.lookup(&key, start + 2500).await.unwrap().unwrap();
    assert_eq!(r.last_seen, start + 2500);
    assert_eq!(
        store
            .lookup(&key, start + 100)
            .await
            .unwrap()
            .unwrap()
            .last_seen,
        start + 2500
    );
}

#[tokio::test]
async fn lazy_touches_are_made_durable_periodically() {
    let t = Timeouts {
        idle: Duration::from_secs(10),
        absolute: Duration::from_secs(1000),
    };
    let dir = TempDir::new("lazy");
    let store = EmbeddedStore::open(&dir.db(), t).unwrap();
    let mut now = 7_000_000;
    let (key, record) = session("alice", now, &t);
    store.create(&key, &record).await.unwrap();
    for _ in 0..LAZY_COMMITS_MAX * 2 + 1 {
        now += 1000;
        store.lookup(&key, now).await.unwrap().unwrap();
        assert!(store.inner.lazy_commits.load(Ordering::Relaxed) <= LAZY_COMMITS_MAX);
    }
    store.delete(&key).await.unwrap();
    assert_eq!(store.inner.lazy_commits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn sessions_survive_reopening() {
    let dir = TempDir::new("reopen");
    let now = now_millis();
    let (key, record) = session("alice", now, &LONG);
    {
        let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
        store.create(&key, &record).await.unwrap();
    }
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    assert_eq!(store.lookup(&key, now + 5).await.unwrap(), Some(record));
}

#[tokio::test]
async fn delete_removes_the_record_its_index_entry_and_the_cached_copy() {
    let dir = TempDir::new("delete");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let now = now_millis();
    let (key, record) = session("alice", now, &LONG);
    store.create(&key, &record).await.unwrap();
    assert!(store.lookup(&key, now).await.unwrap().is_some());
    assert_eq!(store.cached_len(), 1);
    store.delete(&key).await.unwrap();
    assert_eq!(store.lookup(&key, now).await.unwrap(), None);
    assert_eq!(store.rows(), (0, 0, 0));
    store.delete(&key).await.unwrap(); // missing: not an error
}

#[tokio::test]
async fn delete_user_revokes_every_session_of_that_user_only() {
    let dir = TempDir::new("delete-user");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let now = now_millis();
    let mut alice = Vec::new();
    for _ in 0..3 {
        let (key, record) = session("alice", now, &LONG);
        store.create(&key, &record).await.unwrap();
        alice.push(key);
    }
    let (bob, record) = session("bob", now, &LONG);
    store.create(&bob, &record).await.unwrap();
    for key in &alice {
        assert!(store.lookup(key, now).await.unwrap().is_some()); // cached now
    }
    assert_eq!(store.delete_user("alice").await.unwrap(), 3);
    for key in &alice {
        assert_eq!(store.lookup(key, now).await.unwrap(), None);
    }
    assert!(store.lookup(&bob, now).await.unwrap().is_some());
    assert_eq!(store.delete_user("alice").await.unwrap(), 0);
    assert_eq!(store.delete_user("nobody").await.unwrap(), 0);
    assert_eq!(store.rows(), (1, 1, 0));
}

#[tokio::test]
async fn delete_user_counts_only_live_sessions_but_removes_all() {
    let dir = TempDir::new("delete-user-expired");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let (old, record) = session("alice", now_millis() - 60_000, &LONG);
    store.create(&old, &record).await.unwrap();
    let (live, record) = session("alice", now_millis(), &LONG);
    store.create(&live, &record).await.unwrap();
    assert_eq!(store.delete_user("alice").await.unwrap(), 1);
    assert_eq!(store.rows(), (0, 0, 0));
}

#[tokio::test]
async fn counters_count_within_a_window_from_the_first_hit() {
    let dir = TempDir::new("counters");
    let clock = crate::clock::Clock::system();
    let store = EmbeddedStore::open(&dir.db(), LONG)
        .unwrap()
        .with_clock(clock.clone());
    let w = Duration::from_secs(60);
    assert_eq!(store.count("alice|1.2.3.4").await.unwrap(), 0);
    assert_eq!(store.hit("alice|1.2.3.4", w).await.unwrap(), 1);
    assert_eq!(store.hit("alice|1.2.3.4", w).await.unwrap(), 2);
    assert_eq!(store.hit("other", w).await.unwrap(), 1);
    assert_eq!(store.hit("alice|1.2.3.4", w).await.unwrap(), 3);
    assert_eq!(store.count("alice|1.2.3.4").await.unwrap(), 3);
    assert_eq!(store.count("other").await.unwrap(), 1);

    // A window that has ended reads as 0 and starts again at the next hit.
    let short = Duration::from_millis(200);
    assert_eq!(store.hit("brief", short).await.unwrap(), 1);
    clock.advance(Duration::from_millis(300));
    assert_eq!(store.count("brief").await.unwrap(), 0);
    assert_eq!(store.hit("brief", short).await.unwrap(), 1);

    // The window is fixed at the first hit: hits do not extend it (deterministic clock).
    let i = &store.inner;
    assert_eq!(
        i.hit("fixed", Duration::from_millis(100), 1_000).unwrap(),
        1
    );
    assert_eq!(
        i.hit("fixed", Duration::from_millis(100), 1_099).unwrap(),
        2
    );
    assert_eq!(i.count("fixed", 1_099).unwrap(), 2);
    assert_eq!(i.count("fixed", 1_100).unwrap(), 0);
    assert_eq!(
        i.hit("fixed", Duration::from_millis(100), 1_100).unwrap(),
        1
    );
}

#[tokio::test]
async fn reset_forgets_a_counter_and_unhit_takes_one_event_back() {
    let dir = TempDir::new("unhit");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let w = Duration::from_secs(60);
    for _ in 0..3 {
        store.hit("pair", w).await.unwrap();
    }
    store.reset("pair").await.unwrap();
    assert_eq!(store.count("pair").await.unwrap(), 0);
    store.reset("never-counted").await.unwrap();

    assert_eq!(store.hit("client", w).await.unwrap(), 1);
    assert_eq!(store.hit("client", w).await.unwrap(), 2);
    store.unhit("client").await.unwrap();
    assert_eq!(store.count("client").await.unwrap(), 1);
    store.unhit("client").await.unwrap();
    store.unhit("client").await.unwrap();
    assert_eq!(store.count("client").await.unwrap(), 0, "never below zero");
    store.unhit("absent").await.unwrap();

    // The window stays where the first hit put it (deterministic clock).
    let i = &store.inner;
    i.hit("fixed", Duration::from_millis(100), 1_000).unwrap();
    i.hit("fixed", Duration::from_millis(100), 1_010).unwrap();
    i.unhit("fixed", 1_050).unwrap();
    assert_eq!(i.count("fixed", 1_099).unwrap(), 1);
    assert_eq!(i.count("fixed", 1_100).unwrap(), 0);
}

#[tokio::test]
async fn the_sweep_removes_expired_sessions_index_entries_and_counters() {
    let dir = TempDir::new("sweep");
    let clock = crate::clock::Clock::system();
    let store = EmbeddedStore::open(&dir.db(), LONG)
        .unwrap()
        .with_clock(clock.clone());
    let now = now_millis();
    let mut expired = Vec::new();
    for when in [now - 11_000, now - 200_000] {
        let (key, record) = session("alice", when, &LONG);
        store.create(&key, &record).await.unwrap();
        expired.push(key);
    }
    let (live, record) = session("alice", now, &LONG);
    store.create(&live, &record).await.unwrap();
    for i in 0..5 {
        store
            .hit(&format!("gone{i}"), Duration::from_millis(1))
            .await
            .unwrap();
    }
    store.hit("kept", Duration::from_secs(60)).await.unwrap();
    // An index entry whose record is gone (as an unreadable record would leave).
    {
        let txn = store.inner.db.begin_write().unwrap();
        txn.open_multimap_table(USERS)
            .unwrap()
            .insert("carol", &[7u8; 32])
            .unwrap();
        txn.commit().unwrap();
    }
    clock.advance(Duration::from_millis(5));
    assert_eq!(store.rows(), (3, 4, 6));

    let swept = store.sweep().await.unwrap();
    assert_eq!(
        swept,
        Swept {
            sessions: 2,
            index_entries: 1,
            counters: 5
        }
    );
    assert_eq!(store.rows(), (1, 1, 1));
    assert!(store.lookup(&live, now_millis()).await.unwrap().is_some());
    assert_eq!(store.count("kept").await.unwrap(), 1);
    assert_eq!(store.sweep().await.unwrap(), Swept::default());
}

#[tokio::test]
async fn unreadable_records_are_absent_and_swept() {
    let dir = TempDir::new("unreadable");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let key = SessionId::generate().unwrap().key();
    {
        let txn = store.inner.db.begin_write().unwrap();
        txn.open_table(SESSIONS)
            .unwrap()
            .insert(&key.0, b"{\"version\":9}".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(store.lookup(&key, now_millis()).await.unwrap(), None);
    assert_eq!(store.rows().0, 0, "deleted on lookup");
}

#[tokio::test]
async fn the_sweeper_task_runs_and_stops_with_the_store() {
    let dir = TempDir::new("sweeper");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let (key, record) = session("alice", now_millis() - 20_000, &LONG);
    store.create(&key, &record).await.unwrap();
    let task = store.spawn_sweeper(Duration::from_millis(20));
    for _ in 0..100 {
        if store.rows().0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.rows().0, 0, "swept without a lookup");
    drop(store);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the sweeper ends when the store is dropped")
        .unwrap();
    // The file was closed: it opens again.
    EmbeddedStore::open(&dir.db(), LONG).unwrap();
}

#[tokio::test]
async fn the_cache_is_bounded_and_stays_correct() {
    let dir = TempDir::new("cache");
    let store = EmbeddedStore::open_with_cache_cap(&dir.db(), LONG, 4).unwrap();
    let now = now_millis();
    let mut keys = Vec::new();
    for i in 0..10 {
        let (key, record) = session(&format!("u{i}"), now, &LONG);
        store.create(&key, &record).await.unwrap();
        keys.push((key, record));
    }
    for _ in 0..3 {
        for (key, record) in &keys {
            assert_eq!(store.lookup(key, now).await.unwrap().as_ref(), Some(record));
            assert!(store.cached_len() <= 4);
        }
    }
    assert_eq!(CACHE_CAP, 10_000, "the production bound");
}

#[tokio::test]
async fn cache_hits_need_no_transaction_and_expire_by_their_timestamps() {
    let t = Timeouts {
        idle: Duration::from_millis(300),
        absolute: Duration::from_secs(1),
    };
    let dir = TempDir::new("cache-expiry");
    let store = EmbeddedStore::open(&dir.db(), t).unwrap();
    let start = 9_000_000;
    let (key, record) = session("alice", start, &t);
    store.create(&key, &record).await.unwrap();
    store.lookup(&key, start + 1).await.unwrap().unwrap();
    assert_eq!(store.cached_len(), 1);
    // Remove it behind the cache's back: a cached, fresh record is answered from memory ...
    {
        let txn = store.inner.db.begin_write().unwrap();
        txn.open_table(SESSIONS).unwrap().remove(&key.0).unwrap();
        txn.commit().unwrap();
    }
    assert!(store.lookup(&key, start + 2).await.unwrap().is_some());
    // ... but a touch re-reads the file, and an idle-expired cached copy is never served.
    assert_eq!(store.lookup(&key, start + 100).await.unwrap(), None);
    store.create(&key, &record).await.unwrap();
    store.lookup(&key, start + 1).await.unwrap().unwrap();
    assert_eq!(store.lookup(&key, start + 400).await.unwrap(), None);
}

#[tokio::test]
async fn a_fill_that_raced_a_delete_is_dropped() {
    let dir = TempDir::new("epoch");
    let store = EmbeddedStore::open(&dir.db(), LONG).unwrap();
    let now = now_millis();
    let (key, record) = session("alice", now, &LONG);
    store.create(&key, &record).await.unwrap();
    let (epoch, _) = store.inner.cached(&key, now); // a lookup starts ...
    store.delete(&key).await.unwrap(); // ... a revoke lands ...
    store.inner.fill(&key, &record, epoch); // ... and the lookup's fill comes late.
    assert_eq!(store.cached_len(), 0);
    assert_eq!(store.lookup(&key, now).await.unwrap(), None);
}
