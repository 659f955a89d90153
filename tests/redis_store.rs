//! The Redis session store against real `redis-server` processes (never a mock): the layout,
//! both clocks, one round trip per lookup, revoke-all, throttling counters, and outages —
//! Redis down at start, paused (SIGSTOP), stopped and started again — with recovery in the same
//! store object.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use doorman::clock::Clock;
use doorman::config::{ClusterTarget, RedisTarget, SentinelTarget};
use doorman::session::redis::{RedisStore, COMMAND_TIMEOUT};
use doorman::session::{
    now_millis, Origin, Record, SessionId, SessionKey, SessionStore, Timeouts, RECORD_VERSION,
};
use support::redis::{calls_since, command_calls, free_port, RedisServer};

const PREFIX: &str = "t:";

fn timeouts(idle_ms: u64, absolute_ms: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_millis(idle_ms),
        absolute: Duration::from_millis(absolute_ms),
    }
}

fn store_at(url: &str, t: Timeouts) -> RedisStore {
    RedisStore::new(&RedisTarget::Standalone(url.to_string()), PREFIX, t).expect("store")
}

/// A new session for `user` starting now, stored.
async fn login(
    store: &RedisStore,
    user: &str,
    groups: &[&str],
    t: &Timeouts,
) -> (SessionKey, Record) {
    login_at(store, user, groups, t, now_millis()).await
}

/// A new session for `user` starting at `now` (Unix ms; the store's clock's now, for a store
/// on an advanced clock), stored.
async fn login_at(
    store: &RedisStore,
    user: &str,
    groups: &[&str],
    t: &Timeouts,
    now: u64,
) -> (SessionKey, Record) {
    let key = SessionId::generate().expect("id").key();
    let groups = groups.iter().map(|g| g.to_string()).collect();
    let record = Record::new(user, groups, Origin::Login, now, t);
    store.create(&key, &record).await.expect("create");
    (key, record)
}

fn record_key(key: &SessionKey) -> String {
    format!("{PREFIX}s:{}", key.hex())
}

/// One raw command on the inspection connection.
fn q<T: redis::FromRedisValue>(conn: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Writes since start-up (`rdb_changes_since_last_save`; nothing is ever saved here).
fn writes(conn: &mut redis::Connection) -> u64 {
    let info: String = q(conn, &["INFO", "persistence"]);
    info.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rdb_changes_since_last_save")
}

/// Retry `lookup` until it answers Ok, for at most `limit`.
async fn lookup_until_ok(store: &RedisStore, key: &SessionKey, limit: Duration) -> Option<Record> {
    let deadline = Instant::now() + limit;
    loop {
        match store.lookup(key, now_millis()).await {
            Ok(found) => return found,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("store did not recover within {limit:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn create_then_lookup_round_trips_in_the_documented_layout() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let (key, record) = login(&store, "alice", &["admin", "ops"], &t).await;

    let found = store.lookup(&key, record.created + 1).await.unwrap();
    assert_eq!(found, Some(record.clone()));

    let mut raw = redis.client();
    let fields: HashMap<String, String> = q(&mut raw, &["HGETALL", &record_key(&key)]);
    let expect = |k: &str, v: String| assert_eq!(fields.get(k), Some(&v), "field {k}");
    expect("v", RECORD_VERSION.to_string());
    expect("user", "alice".into());
    expect("groups", "admin,ops".into());
    expect("origin", "login".into());
    expect("created", record.created.to_string());
    expect("exp", record.absolute_expiry.to_string());
    expect("seen", record.last_seen.to_string());
    // Every value but `seen` again, packed for the lookup: `{length}:{bytes}`, `-` for the
    // absent link and express id.
    let (v, created, exp) = (
        RECORD_VERSION.to_string(),
        record.created.to_string(),
        record.absolute_expiry.to_string(),
    );
    expect(
        "r",
        format!(
            "{}:{v}5:alice9:admin,ops5:login{}:{created}{}:{exp}--",
            v.len(),
            created.len(),
            exp.len()
        ),
    );
    assert_eq!(fields.len(), 8, "{fields:?}");

    // The user index: member = key hex, score = absolute expiry; expires with that session.
    let index = format!("{PREFIX}u:alice");
    let score: f64 = q(&mut raw, &["ZSCORE", &index, &key.hex()]);
    assert_eq!(score as u64, record.absolute_expiry);
    let index_ttl: i64 = q(&mut raw, &["PTTL", &index]);
    assert!(index_ttl > 590_000 && index_ttl <= 600_000, "{index_ttl}");

    // Another session's key is simply unknown.
    let other = SessionId::generate().unwrap().key();
    assert_eq!(store.lookup(&other, now_millis()).await.unwrap(), None);
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn lookups_slide_last_seen_at_most_once_per_tenth_of_idle() {
    let redis = RedisServer::start();
    let t = timeouts(10_000, 100_000);
    let store = store_at(&redis.url(), t);
    let (key, record) = login(&store, "alice", &[], &t).await;
    let mut raw = redis.client();
    let seen =
        |raw: &mut redis::Connection| -> u64 { q(raw, &["HGET", &record_key(&key), "seen"]) };

    // Within idle/10 (1s) of the last write: the lookup writes nothing at all.
    let before = writes(&mut raw);
    let ttl_before: i64 = q(&mut raw, &["PTTL", &record_key(&key)]);
    let found = store
        .lookup(&key, record.created + 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_seen, record.created);
    let found = store
        .lookup(&key, record.created + 999)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_seen, record.created);
    assert_eq!(writes(&mut raw), before, "coalesced lookups must not write");
    assert_eq!(seen(&mut raw), record.created);
    let ttl_after: i64 = q(&mut raw, &["PTTL", &record_key(&key)]);
    assert!(
        ttl_after <= ttl_before,
        "TTL not pushed: {ttl_before} -> {ttl_after}"
    );

    // Past idle/10: `seen` moves to the lookup's time, and the TTL is the idle clock again.
    let now = record.created + 1_500;
    let found = store.lookup(&key, now).await.unwrap().unwrap();
    assert_eq!(found.last_seen, now);
    assert_eq!(
        found.absolute_expiry, record.absolute_expiry,
        "absolute never moves"
    );
    assert_eq!(seen(&mut raw), now);
    assert_eq!(
        writes(&mut raw),
        before + 2,
        "two writes: HSET seen, PEXPIRE"
    );
    let ttl: i64 = q(&mut raw, &["PTTL", &record_key(&key)]);
    assert!(ttl > 9_000 && ttl <= 10_000, "{ttl}");

    // The idle clock now runs from the new `seen`: 9s after creation it would have been close
    // to expiry; it is not.
    let later = store.lookup(&key, record.created + 11_000).await.unwrap();
    assert!(later.is_some(), "idle slid from the touch");
}

#[tokio::test]
async fn an_idle_session_expires_and_is_deleted() {
    let redis = RedisServer::start();
    let t = timeouts(600_000, 1_500_000);
    let clock = Clock::system();
    let store = store_at(&redis.url(), t).with_clock(clock.clone());
    let (key, _) = login_at(&store, "alice", &[], &t, clock.now_millis()).await;
    assert!(store
        .lookup(&key, clock.now_millis())
        .await
        .unwrap()
        .is_some());

    clock.advance(Duration::from_secs(12 * 60));
    assert_eq!(store.lookup(&key, clock.now_millis()).await.unwrap(), None);
    let exists: i64 = q(&mut redis.client(), &["EXISTS", &record_key(&key)]);
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn the_clocks_are_checked_against_the_record_not_the_ttl() {
    // A lookup whose time is past the idle or absolute limit is refused (and the record
    // deleted) even though the key's TTL has not run out yet.
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let mut raw = redis.client();

    let (idle_key, r) = login(&store, "alice", &[], &t).await;
    assert_eq!(
        store.lookup(&idle_key, r.last_seen + 60_000).await.unwrap(),
        None
    );
    let exists: i64 = q(&mut raw, &["EXISTS", &record_key(&idle_key)]);
    assert_eq!(exists, 0, "an idle record is deleted");

    let (abs_key, r) = login(&store, "alice", &[], &t).await;
    // Keep it active (each lookup within idle) right up to its absolute expiry.
    let mut now = r.created;
    while now + 50_000 < r.absolute_expiry {
        now += 50_000;
        assert!(
            store.lookup(&abs_key, now).await.unwrap().is_some(),
            "{now}"
        );
    }
    assert_eq!(
        store.lookup(&abs_key, r.absolute_expiry).await.unwrap(),
        None
    );
    let exists: i64 = q(&mut raw, &["EXISTS", &record_key(&abs_key)]);
    assert_eq!(exists, 0, "an expired record is deleted");
}

#[tokio::test]
async fn use_never_extends_the_absolute_expiry_and_the_ttl_stays_within_both_clocks() {
    let redis = RedisServer::start();
    // Idle 10 min, absolute 25 min, used every minute of the store's clock: the lookups' `now`
    // and the TTLs the store sets follow it, while Redis counts the TTLs down in real time.
    let t = timeouts(600_000, 1_500_000);
    let clock = Clock::system();
    let store = store_at(&redis.url(), t).with_clock(clock.clone());
    let (key, record) = login_at(&store, "alice", &[], &t, clock.now_millis()).await;
    let mut raw = redis.client();

    let mut live_lookups = 0;
    loop {
        let now = clock.now_millis();
        let found = store.lookup(&key, now).await.unwrap();
        if now + 50 < record.absolute_expiry {
            let found =
                found.unwrap_or_else(|| panic!("gone {}ms early", record.absolute_expiry - now));
            assert_eq!(found.absolute_expiry, record.absolute_expiry);
            live_lookups += 1;
            let ttl: i64 = q(&mut raw, &["PTTL", &record_key(&key)]);
            let absolute_left = record.absolute_expiry.saturating_sub(clock.now_millis()) as i64;
            assert!(ttl > 0 && ttl <= 600_000, "TTL {ttl} beyond idle");
            assert!(
                ttl <= absolute_left + 50,
                "TTL {ttl} beyond absolute left {absolute_left}"
            );
        } else if now >= record.absolute_expiry {
            assert_eq!(found, None, "used past its absolute expiry");
            break;
        }
        clock.advance(Duration::from_secs(60));
    }
    assert!(live_lookups >= 10, "{live_lookups}");
    let exists: i64 = q(&mut raw, &["EXISTS", &record_key(&key)]);
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn delete_removes_one_session() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let (a, _) = login(&store, "alice", &[], &t).await;
    let (b, _) = login(&store, "alice", &[], &t).await;
    store.delete(&a).await.unwrap();
    assert_eq!(store.lookup(&a, now_millis()).await.unwrap(), None);
    assert!(store.lookup(&b, now_millis()).await.unwrap().is_some());
    store
        .delete(&a)
        .await
        .expect("deleting a missing session is fine");
}

#[tokio::test]
async fn delete_user_removes_all_of_that_users_sessions_and_no_others() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(login(&store, "alice", &[], &t).await.0);
    }
    let (bob, _) = login(&store, "bob", &[], &t).await;
    // One of alice's sessions already logged out: not counted, not an error.
    store.delete(&alice[0]).await.unwrap();

    assert_eq!(store.delete_user("alice").await.unwrap(), 2);
    for key in &alice {
        assert_eq!(store.lookup(key, now_millis()).await.unwrap(), None);
    }
    assert!(store.lookup(&bob, now_millis()).await.unwrap().is_some());
    let index: i64 = q(
        &mut redis.client(),
        &["EXISTS", &format!("{PREFIX}u:alice")],
    );
    assert_eq!(index, 0, "the emptied index is removed");

    assert_eq!(store.revoke("alice").await.unwrap(), 0);
    assert_eq!(store.revoke("bob").await.unwrap(), 1);
    assert_eq!(store.lookup(&bob, now_millis()).await.unwrap(), None);
}

#[tokio::test]
async fn the_user_index_drops_sessions_past_their_absolute_expiry() {
    let redis = RedisServer::start();
    let short = timeouts(30_000, 60_000);
    let long = timeouts(60_000, 600_000);
    let clock = Clock::system();
    let store = store_at(&redis.url(), short).with_clock(clock.clone());
    let (old, _) = login_at(&store, "alice", &[], &short, clock.now_millis()).await;
    // The trim compares the scores with the store's clock.
    clock.advance(Duration::from_secs(2 * 60));
    let (new, _) = login_at(&store, "alice", &[], &long, clock.now_millis()).await;
    let mut raw = redis.client();
    let members: Vec<String> = q(
        &mut raw,
        &["ZRANGE", &format!("{PREFIX}u:alice"), "0", "-1"],
    );
    assert_eq!(members, vec![new.hex()], "{} trimmed", old.tag());
}

#[tokio::test]
async fn hit_counts_within_a_window_that_starts_at_the_first_event() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    // Real waits in this test on purpose: the counters expire by Redis's own clock (PEXPIRE),
    // which doorman's clock cannot move.
    let window = Duration::from_millis(1_000);
    assert_eq!(store.count("alice|1.2.3.4").await.unwrap(), 0);
    assert_eq!(store.hit("alice|1.2.3.4", window).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.hit("alice|1.2.3.4", window).await.unwrap(), 2);
    assert_eq!(store.hit("alice|1.2.3.4", window).await.unwrap(), 3);
    assert_eq!(store.count("alice|1.2.3.4").await.unwrap(), 3);
    assert_eq!(
        store.count("bob|1.2.3.4").await.unwrap(),
        0,
        "counters are separate"
    );

    let ttl: i64 = q(
        &mut redis.client(),
        &["PTTL", &format!("{PREFIX}c:alice|1.2.3.4")],
    );
    assert!(
        ttl > 0 && ttl <= 700,
        "later hits do not extend the window: {ttl}"
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        store.count("alice|1.2.3.4").await.unwrap(),
        0,
        "window over"
    );
    assert_eq!(
        store.hit("alice|1.2.3.4", window).await.unwrap(),
        1,
        "a new window"
    );
}

/// A successful login clears its user+client counter (`reset`, one `DEL`) and takes its own
/// attempt back from the per-client counter (`unhit`): never below zero, never creating a
/// counter, and keeping the window's TTL.
#[tokio::test]
async fn reset_forgets_a_counter_and_unhit_takes_one_event_back() {
    let redis = RedisServer::start();
    let store = store_at(&redis.url(), timeouts(60_000, 600_000));
    let window = Duration::from_secs(60);
    for _ in 0..3 {
        store.hit("pair", window).await.unwrap();
    }
    store.reset("pair").await.unwrap();
    assert_eq!(store.count("pair").await.unwrap(), 0);
    store.reset("never-counted").await.unwrap();
    assert_eq!(store.hit("pair", window).await.unwrap(), 1, "a new window");

    assert_eq!(store.hit("client", window).await.unwrap(), 1);
    assert_eq!(store.hit("client", window).await.unwrap(), 2);
    store.unhit("client").await.unwrap();
    assert_eq!(store.count("client").await.unwrap(), 1);
    let ttl: i64 = q(&mut redis.client(), &["PTTL", &format!("{PREFIX}c:client")]);
    assert!(ttl > 0 && ttl <= 60_000, "the window is kept: {ttl}");
    store.unhit("client").await.unwrap();
    store.unhit("client").await.unwrap();
    assert_eq!(store.count("client").await.unwrap(), 0, "never below zero");
    store.unhit("absent").await.unwrap();
    let exists: i64 = q(
        &mut redis.client(),
        &["EXISTS", &format!("{PREFIX}c:absent")],
    );
    assert_eq!(exists, 0, "unhit created a counter");
}

/// A lookup is one round trip, an `HMGET` (no script: Redis spends a fifth of the time on it);
/// the touch script follows only when `seen` is due a slide, at most once per `idle / 10`.
#[tokio::test]
async fn a_lookup_is_one_round_trip_and_a_slide_one_more() {
    let redis = RedisServer::start();
    let t = timeouts(10_000, 600_000);
    let store = store_at(&redis.url(), t);
    let (key, record) = login(&store, "alice", &[], &t).await;
    let missing = SessionId::generate().unwrap().key();
    // A first slide on a server that does not know the touch script yet loads it (once).
    let (warm, _) = login(&store, "bob", &[], &t).await;
    assert!(store
        .lookup(&warm, record.created + 5_000)
        .await
        .unwrap()
        .is_some());

    let mut raw = redis.client();
    let before = command_calls(&mut raw);
    const N: u64 = 25;
    for i in 0..N {
        // Live (with and without a touch) and missing records alike.
        if i % 5 == 0 {
            assert_eq!(store.lookup(&missing, record.created).await.unwrap(), None);
        } else {
            let now = record.created + i * 500;
            assert!(store.lookup(&key, now).await.unwrap().is_some());
        }
    }
    let after = command_calls(&mut raw);
    let mut diff = calls_since(&before, &after);
    assert_eq!(diff.remove("info"), Some(1), "our own INFO");
    // Command stats also count what scripts call inside the server: those are not round trips.
    let touches = diff.remove("evalsha").unwrap_or(0);
    assert!(
        touches > 0 && touches < N - N / 5,
        "coalesced touches: {touches}"
    );
    assert_eq!(
        diff.remove("hmget"),
        Some(N + touches),
        "one HMGET per lookup, and one inside each touch script"
    );
    assert_eq!(diff.remove("hset"), Some(touches), "each touch slides");
    assert_eq!(
        diff.remove("pexpire"),
        Some(touches),
        "the TTL moves with a touch"
    );
    assert!(diff.is_empty(), "no other command ran: {diff:?}");
}

/// A record as a doorman from before the packed field wrote it (no `r`): found, slid and deleted
/// like any other during a rolling upgrade, for one more `HMGET` per lookup.
#[tokio::test]
async fn a_record_written_without_the_packed_field_is_still_a_session() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let mut raw = redis.client();
    let now = now_millis();
    let record = Record::new("bob", vec!["ops".into()], Origin::Login, now, &t);
    let key = SessionId::generate().unwrap().key();
    let (v, created, exp) = (
        RECORD_VERSION.to_string(),
        record.created.to_string(),
        record.absolute_expiry.to_string(),
    );
    let _: i64 = q(
        &mut raw,
        &[
            "HSET",
            &record_key(&key),
            "v",
            &v,
            "user",
            "bob",
            "groups",
            "ops",
            "origin",
            "login",
            "created",
            &created,
            "exp",
            &exp,
            "seen",
            &created,
        ],
    );

    let before = command_calls(&mut raw);
    assert_eq!(
        store.lookup(&key, now + 1).await.unwrap(),
        Some(record.clone())
    );
    let mut diff = calls_since(&before, &command_calls(&mut raw));
    diff.remove("info");
    assert_eq!(
        diff.remove("hmget"),
        Some(2),
        "the packed read, then the fields"
    );
    assert!(diff.is_empty(), "{diff:?}");

    // Due a slide: the touch script works on it as on any record.
    let later = now + 10_000;
    let mut slid = record.clone();
    slid.last_seen = later;
    assert_eq!(store.lookup(&key, later).await.unwrap(), Some(slid));
    let seen: u64 = q(&mut raw, &["HGET", &record_key(&key), "seen"]);
    assert_eq!(seen, later);

    assert!(store.delete(&key).await.unwrap());
    assert_eq!(store.lookup(&key, later).await.unwrap(), None);
}

#[tokio::test]
async fn a_record_of_another_version_or_damaged_is_no_session_and_left_alone() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let mut raw = redis.client();
    let now = now_millis().to_string();
    let exp = (now_millis() + 60_000).to_string();

    let newer = SessionId::generate().unwrap().key();
    let v = (RECORD_VERSION + 1).to_string();
    let _: i64 = q(
        &mut raw,
        &[
            "HSET",
            &record_key(&newer),
            "v",
            &v,
            "user",
            "alice",
            "groups",
            "",
            "origin",
            "login",
            "created",
            &now,
            "exp",
            &exp,
            "seen",
            &now,
            "extra",
            "field",
        ],
    );
    assert_eq!(store.lookup(&newer, now_millis()).await.unwrap(), None);
    let exists: i64 = q(&mut raw, &["EXISTS", &record_key(&newer)]);
    assert_eq!(exists, 1, "a newer doorman's record is not deleted");

    let damaged = SessionId::generate().unwrap().key();
    let v = RECORD_VERSION.to_string();
    let _: i64 = q(
        &mut raw,
        &[
            "HSET",
            &record_key(&damaged),
            "v",
            &v,
            "user",
            "alice",
            "exp",
            "soon",
            "seen",
            &now,
        ],
    );
    assert_eq!(store.lookup(&damaged, now_millis()).await.unwrap(), None);
    let bad_origin = SessionId::generate().unwrap().key();
    let _: i64 = q(
        &mut raw,
        &[
            "HSET",
            &record_key(&bad_origin),
            "v",
            &v,
            "user",
            "alice",
            "groups",
            "",
            "origin",
            "martian",
            "created",
            &now,
            "exp",
            &exp,
            "seen",
            &now,
        ],
    );
    assert_eq!(store.lookup(&bad_origin, now_millis()).await.unwrap(), None);
}

#[tokio::test]
async fn redis_down_at_start_fails_closed_then_recovers_without_a_new_store() {
    let port = free_port();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&format!("redis://127.0.0.1:{port}"), t);
    let key = SessionId::generate().unwrap().key();

    let started = Instant::now();
    assert!(
        store.lookup(&key, now_millis()).await.is_err(),
        "fail closed"
    );
    assert!(store.ping().await.is_err());
    let record = Record::new("alice", vec![], Origin::Login, now_millis(), &t);
    assert!(store.create(&key, &record).await.is_err());
    assert!(
        started.elapsed() < COMMAND_TIMEOUT * 3,
        "{:?}",
        started.elapsed()
    );

    let _redis = RedisServer::start_on(port);
    assert_eq!(
        lookup_until_ok(&store, &key, Duration::from_secs(5)).await,
        None
    );
    store
        .create(&key, &record)
        .await
        .expect("create after recovery");
    assert!(store.lookup(&key, now_millis()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_paused_redis_is_an_error_within_the_command_timeout_and_recovers() {
    let redis = RedisServer::start();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let (key, record) = login(&store, "alice", &[], &t).await;
    assert!(store.lookup(&key, now_millis()).await.unwrap().is_some());

    redis.pause();
    for _ in 0..2 {
        let started = Instant::now();
        let result = store.lookup(&key, now_millis()).await;
        let took = started.elapsed();
        assert!(result.is_err(), "fail closed: {result:?}");
        assert!(
            took <= COMMAND_TIMEOUT + Duration::from_millis(500),
            "took {took:?}"
        );
    }
    assert!(store.ping().await.is_err());
    redis.resume();

    let found = lookup_until_ok(&store, &key, Duration::from_secs(5)).await;
    assert_eq!(found.map(|r| r.user), Some(record.user));
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_and_its_sessions_are_back() {
    let mut redis = RedisServer::start_persistent();
    let t = timeouts(60_000, 600_000);
    let store = store_at(&redis.url(), t);
    let (key, record) = login(&store, "alice", &["ops"], &t).await;

    redis.stop();
    assert!(
        store.lookup(&key, now_millis()).await.is_err(),
        "fail closed while down"
    );
    redis.start_again();

    let found = lookup_until_ok(&store, &key, Duration::from_secs(5)).await;
    assert_eq!(found.map(|r| r.groups), Some(record.groups));
}

/// Redis Cluster refuses any command whose keys hash to different slots (CROSSSLOT), even on
/// a single node that owns every slot: so this proves the store never sends one.
#[tokio::test]
async fn every_operation_works_on_a_cluster() {
    let redis = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-announce-ip",
        "127.0.0.1",
    ]);
    let mut raw = redis.client();
    let _: () = q(&mut raw, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !q::<String>(&mut raw, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "cluster never became ok");
        std::thread::sleep(Duration::from_millis(50));
    }

    let t = timeouts(10_000, 600_000);
    let target = RedisTarget::Cluster(ClusterTarget {
        nodes: vec![redis.url()],
        password: None,
    });
    let store = RedisStore::new(&target, PREFIX, t).expect("store");
    store.ping().await.expect("ping");
    let (a, record) = login(&store, "alice", &["ops"], &t).await;
    let (b, _) = login(&store, "alice", &[], &t).await;
    let (c, _) = login(&store, "bob", &[], &t).await;
    assert_eq!(
        store.lookup(&a, record.created).await.unwrap(),
        Some(record.clone())
    );
    let touched = store.lookup(&a, record.created + 2_000).await.unwrap();
    assert_eq!(touched.map(|r| r.last_seen), Some(record.created + 2_000));
    store.delete(&c).await.unwrap();
    assert_eq!(store.lookup(&c, now_millis()).await.unwrap(), None);
    assert_eq!(store.delete_user("alice").await.unwrap(), 2);
    assert_eq!(store.lookup(&b, now_millis()).await.unwrap(), None);
    assert_eq!(store.hit("x", Duration::from_secs(5)).await.unwrap(), 1);
    assert_eq!(store.hit("x", Duration::from_secs(5)).await.unwrap(), 2);
    assert_eq!(store.count("x").await.unwrap(), 2);
}

/// Sentinel: the master is found through the Sentinel, and after a failover the store
/// re-resolves it (a connection kept to the old address would hit a read-only replica). A store
/// with `cache = true` follows too: its tracking connection moves to the new master, so a
/// revoke there still ends a session it had cached.
#[tokio::test]
async fn sentinel_finds_the_master_and_follows_a_failover() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let sentinel = RedisServer::start_sentinel(master.port, "mymaster");
    let mut sentinel_raw = sentinel.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    let wait = |what: &str| {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    };
    while !q::<String>(&mut replica.client(), &["INFO", "replication"])
        .contains("master_link_status:up")
    {
        wait("replication");
    }
    while q::<Vec<redis::Value>>(&mut sentinel_raw, &["SENTINEL", "REPLICAS", "mymaster"])
        .is_empty()
    {
        wait("the sentinel to see the replica");
    }

    let t = timeouts(60_000, 600_000);
    let target = RedisTarget::Sentinel(SentinelTarget {
        master: "mymaster".into(),
        nodes: vec![sentinel.url()],
        ..SentinelTarget::default()
    });
    let store = RedisStore::new(&target, PREFIX, t).expect("store");
    let cached = RedisStore::new(&target, PREFIX, t)
        .and_then(|s| s.with_cache(&target))
        .expect("cached store");
    let (before, record) = login(&store, "alice", &[], &t).await;
    assert!(store.lookup(&before, now_millis()).await.unwrap().is_some());
    let sessions = cached.session_cache().expect("cache on");
    while sessions.is_empty() {
        assert!(cached
            .lookup(&before, now_millis())
            .await
            .unwrap()
            .is_some());
        wait("the cached store to cache the session");
    }
    let on_master: i64 = q(&mut master.client(), &["EXISTS", &record_key(&before)]);
    assert_eq!(on_master, 1, "written to the master");
    while q::<i64>(&mut replica.client(), &["EXISTS", &record_key(&before)]) == 0 {
        wait("the record to replicate");
    }

    let _: () = q(&mut sentinel_raw, &["SENTINEL", "FAILOVER", "mymaster"]);
    loop {
        let addr: Vec<String> = q(
            &mut sentinel_raw,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        );
        if addr.get(1) == Some(&replica.port.to_string()) {
            break;
        }
        wait("the failover");
    }
    // The old master is reconfigured as a replica (Sentinel drops its clients while it does).
    loop {
        let info = master.try_client().and_then(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
        });
        if info.is_ok_and(|i| i.contains("role:slave")) {
            break;
        }
        wait("the old master to become a replica");
    }

    // Writes reach the new master; a write or two may fail while the store notices.
    let key = SessionId::generate().unwrap().key();
    let fresh = Record::new("bob", vec![], Origin::Login, now_millis(), &t);
    let mut failures = 0;
    while let Err(e) = store.create(&key, &fresh).await {
        failures += 1;
        eprintln!("create after failover: {e}");
        wait("the store to follow the failover");
    }
    assert!(failures <= 3, "{failures}");
    let on_new_master: i64 = q(&mut replica.client(), &["EXISTS", &record_key(&key)]);
    assert_eq!(on_new_master, 1, "written to the new master");
    assert!(store.lookup(&key, now_millis()).await.unwrap().is_some());
    let kept = store
        .lookup(&before, record.created + 10_000)
        .await
        .unwrap();
    assert_eq!(
        kept.map(|r| r.user),
        Some("alice".into()),
        "sessions survive the failover"
    );

    // Cached again after the failover, then revoked on the new master: the cached store must
    // stop serving it well before the record would be due for a touch (idle / 10 = 6 s), which
    // would have sent the lookup to Redis anyway.
    while !sessions.trusted() || sessions.is_empty() {
        let _ = cached.lookup(&before, now_millis()).await;
        wait("the cached store to cache the session again");
    }
    let revoked = Instant::now();
    let _: i64 = q(&mut replica.client(), &["DEL", &record_key(&before)]);
    while !matches!(cached.lookup(&before, now_millis()).await, Ok(None)) {
        assert!(
            revoked.elapsed() < Duration::from_secs(3),
            "revoke not seen"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
