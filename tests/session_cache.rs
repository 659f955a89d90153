//! `[session] cache = true`: hot sessions answered from memory, invalidated by Redis through
//! RESP3 client tracking — with real `redis-server` processes and real doorman instances.
//!
//! What must hold: a cached session costs no Redis round trip (counted by Redis itself); a
//! logout or revoke on any instance, or a flush, is seen by every instance at once; the idle
//! clock still slides and still expires; and a Redis that stops answering stops the cache from
//! serving within its trust window, after which requests fail closed like without a cache.

mod support;

use std::time::{Duration, Instant};

use doorman::session::redis::TRUST_WINDOW;
use support::cache::{lookups, until_cached, until_status};
use support::login::{
    post_logout, upstream_saw, Backend, Conf, StoreChoice, ALICE_PW, BOB_PW, COOKIE, DASHBOARD,
};
use support::redis::{calls_since, RedisServer};
use support::Doorman;

/// A config with `/dashboard` protected and the cache on, plus `session` keys.
fn cached(session: &str) -> Conf {
    Conf {
        session: format!("cache = true\n{session}"),
        rest: DASHBOARD.into(),
        ..Conf::default()
    }
}

/// The point of the cache: once a session is hot, requests cost Redis nothing at all — and
/// the upstream still gets the identity from the cached record.
#[tokio::test]
async fn a_hot_session_costs_no_redis_round_trip() {
    let s = Doorman::conf(&cached(""))
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = s.redis.as_ref().expect("redis");
    let cookie = s.log_in("alice", ALICE_PW).await;
    until_cached(&s, || lookups(redis), &cookie).await;

    const N: usize = 40;
    let before = redis.command_calls();
    for i in 0..N {
        let answer = s.get(&format!("/dashboard/{i}"), Some(&cookie)).await;
        assert_eq!(answer.status, 200);
        assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    }
    let after = redis.command_calls();
    let delta = calls_since(&before, &after);
    // Besides our own INFO, only the tracker's health checks (one PING a second) may show.
    let others: Vec<(&String, &u64)> = delta
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "ping"))
        .collect();
    assert!(
        others.is_empty(),
        "{N} cached requests reached Redis: {delta:?}"
    );
}

/// Replicas with the cache on: a logout on one instance ends the session on the other at once,
/// although the other had it cached; `doorman sessions revoke` from a third process does the
/// same for every instance; and an unknown cookie is never cached into validity.
#[tokio::test]
async fn a_logout_or_revoke_anywhere_is_seen_by_every_cached_instance() {
    let a = Doorman::conf(&cached(""))
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = a.redis.as_ref().expect("redis");
    let b = Doorman::conf(&cached(""))
        .backend(Backend::redis(redis))
        .users(a.users())
        .start()
        .await;

    let cookie = a.log_in("alice", ALICE_PW).await;
    until_cached(&a, || lookups(redis), &cookie).await;
    until_cached(&b, || lookups(redis), &cookie).await;
    let out = post_logout(&b.client, &b.base, &cookie, &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(
        b.get("/dashboard", Some(&cookie)).await.status,
        401,
        "B itself"
    );
    // Without invalidation A would serve its cached copy for minutes (until idle / 10); it must
    // flip as soon as Redis's push arrives.
    let took = until_status(&a, &cookie, 401, Duration::from_secs(2)).await;
    eprintln!("logout on B seen by A after {took:?}");

    let alice = a.log_in("alice", ALICE_PW).await;
    let bob = b.log_in("bob", BOB_PW).await;
    for s in [&a, &b] {
        until_cached(s, || lookups(redis), &alice).await;
        until_cached(s, || lookups(redis), &bob).await;
    }
    let (code, out, err) = a.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    for s in [&a, &b] {
        let took = until_status(s, &alice, 401, Duration::from_secs(2)).await;
        eprintln!("revoke seen after {took:?}");
        let answer = s.get("/dashboard", Some(&bob)).await;
        assert_eq!(
            upstream_saw(&answer, "x-auth-user"),
            ["bob"],
            "bob untouched"
        );
    }
}

/// `FLUSHALL` (a null invalidation) empties every cache: no session outlives its record.
#[tokio::test]
async fn a_flushed_redis_flushes_the_cache() {
    let s = Doorman::conf(&cached(""))
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = s.redis.as_ref().expect("redis");
    let cookie = s.log_in("alice", ALICE_PW).await;
    until_cached(&s, || lookups(redis), &cookie).await;
    let mut raw = redis.client();
    let _: () = ::redis::cmd("FLUSHALL").query(&mut raw).expect("FLUSHALL");
    until_status(&s, &cookie, 401, Duration::from_secs(2)).await;
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(answer.status, 401);
    assert!(answer.expires_cookie(COOKIE));
}

/// The cache never stops the idle clock: a cached session still slides (Redis is asked, and
/// the record touched, once per `idle / 10`), so steady use keeps it alive past `idle_timeout`;
/// and a session left idle expires on time although it is cached.
#[tokio::test]
async fn cached_sessions_still_slide_and_still_expire() {
    let s = Doorman::conf(&cached("idle_timeout = \"2s\"\nabsolute_timeout = \"1h\""))
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = s.redis.as_ref().expect("redis");
    let cookie = s.log_in("alice", ALICE_PW).await;
    until_cached(&s, || lookups(redis), &cookie).await;
    let before = lookups(redis);
    // Real time on purpose, here and below: the cache's trust is renewed by the tracker's
    // health checks once a second of real time. Advancing doorman's clock faster than that
    // would let the trust lapse (and the tracker flush the cache), so the lookups counted and
    // the final 401 would no longer be those of a trusted cache holding the session.
    let start = Instant::now();
    let mut requests = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        let answer = s.get("/dashboard", Some(&cookie)).await;
        assert_eq!(answer.status, 200, "alive after {:?}", start.elapsed());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Per idle / 10 (200 ms): the touching lookup, and one more because this instance hears of
    // its own touch through Redis like every other instance does. The rest are cache hits.
    let touches = lookups(redis) - before;
    assert!(
        touches >= 10 && touches * 2 < requests,
        "{touches} lookups for {requests} requests over 5 s"
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(answer.status, 401, "idle for longer than idle_timeout");
}

/// A Redis that stops answering (SIGSTOP) stops the cache too, within its trust window: from
/// then on protected requests fail closed (503, cookie kept, upstream not called), and once
/// Redis answers again the session is served — and cached — again, with no doorman restart.
/// A restarted Redis (its tracking state gone) is picked up the same way.
#[tokio::test]
async fn an_unreachable_redis_turns_the_cache_off_and_it_comes_back() {
    let mut s = Doorman::conf(&cached(""))
        .redis(RedisServer::start_persistent())
        .start()
        .await;
    let cookie = s.log_in("alice", ALICE_PW).await;
    let redis = s.redis.as_ref().expect("redis");
    until_cached(&s, || lookups(redis), &cookie).await;

    redis.pause();
    // The trust window runs on doorman's clock: move it a whole window on rather than wait
    // for the window to run out (the tracker's health checks, on real time, fail meanwhile
    // and turn the cache off too; a renewal answered just before the pause only delays this).
    s.clock.advance(TRUST_WINDOW);
    let took = until_status(&s, &cookie, 503, Duration::from_secs(8)).await;
    eprintln!("cache off {took:?} after the pause");
    let served = s.upstream().seen_paths().len();
    for _ in 0..3 {
        let answer = s.get("/dashboard", Some(&cookie)).await;
        assert_eq!(answer.status, 503);
        assert!(answer.headers.get("set-cookie").is_none(), "cookie kept");
    }
    assert_eq!(
        s.upstream().seen_paths().len(),
        served,
        "upstream called while paused"
    );
    redis.resume();
    until_status(&s, &cookie, 200, Duration::from_secs(15)).await;
    until_cached(&s, || lookups(redis), &cookie).await;

    let redis = s.redis.as_mut().expect("redis");
    redis.stop();
    redis.start_again();
    let redis = s.redis.as_ref().expect("redis");
    until_status(&s, &cookie, 200, Duration::from_secs(15)).await;
    until_cached(&s, || lookups(redis), &cookie).await;
    // Tracking is on again on the new server: a revoke there still reaches this instance.
    let mut raw = redis.client();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("dm:s:*")
        .query(&mut raw)
        .expect("KEYS");
    let _: i64 = ::redis::cmd("DEL").arg(&keys).query(&mut raw).expect("DEL");
    until_status(&s, &cookie, 401, Duration::from_secs(2)).await;
}
