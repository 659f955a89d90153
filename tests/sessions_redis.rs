//! Sessions on Redis when Redis misbehaves, with real `redis-server` processes: paused
//! (SIGSTOP), stopped and started again, down when doorman starts. Doorman must fail closed (503
//! on protected routes, the upstream never called), keep the browser's cookie (an outage must
//! not log everyone out), serve public routes anonymously, and recover without a restart. Also:
//! replicas sharing one Redis, and `doorman sessions revoke` through the user index.

mod support;

use std::time::{Duration, Instant};

use support::login::{
    post_login, post_logout, unknown_id, upstream_saw, Answer, Backend, Conf, StoreChoice,
    ALICE_PW, BOB_PW, COOKIE,
};
use support::redis::{calls_since, free_port, RedisServer};
use support::Doorman;

/// How long a recovery may take: reconnects are lazy and bounded by doorman's timeouts.
const RECOVERY: Duration = Duration::from_secs(15);

/// The answer to a protected request while the store cannot answer: 503 with `Retry-After`,
/// and the cookie left alone.
fn assert_fails_closed(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 503, "{what}: {}", answer.text());
    assert!(
        answer
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{what}: {:?}",
        answer.headers
    );
    assert!(
        answer.headers.get("set-cookie").is_none(),
        "{what}: the cookie must be kept through an outage: {:?}",
        answer.headers
    );
}

/// A public route during an outage: forwarded, without identity, cookie kept.
fn assert_forwarded_anonymously(answer: &Answer, what: &str) {
    assert!(upstream_saw(answer, "x-auth-user").is_empty(), "{what}");
    assert!(upstream_saw(answer, "cookie").is_empty(), "{what}");
    assert!(answer.headers.get("set-cookie").is_none(), "{what}");
}

/// Repeat `GET /dashboard` with `cookie` until it answers 200 (allowing only 503 meanwhile).
async fn until_served(s: &Doorman, cookie: &str) -> Answer {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let answer = s.get("/dashboard", Some(cookie)).await;
        if answer.status == 200 {
            return answer;
        }
        assert_fails_closed(&answer, "while recovering");
        assert!(Instant::now() < deadline, "no recovery within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Redis that stops answering (SIGSTOP: connections open, no replies) must not let requests
/// through, must not log users out, and must not need a doorman restart once it answers again.
#[tokio::test]
async fn a_paused_redis_fails_closed_and_recovers_with_the_same_cookie() {
    let s = Doorman::conf(&Conf::dashboard())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = s.redis.as_ref().expect("redis");
    let cookie = s.log_in("alice", ALICE_PW).await;
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 200);
    let served = s.upstream().seen_paths().len();

    redis.pause();
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_fails_closed(&answer, "paused, protected");
    assert_eq!(
        s.upstream().seen_paths().len(),
        served,
        "the upstream was called during the outage"
    );
    let answer = s.get("/home", Some(&cookie)).await;
    assert_forwarded_anonymously(&answer, "paused, public");
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 503, "login during the outage");
    assert!(login.headers.get("set-cookie").is_none());

    redis.resume();
    let answer = until_served(&s, &cookie).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
}

/// A Redis that goes away for real (process stopped, port closed) and comes back with its data
/// (persistence on): 503 meanwhile, then the same session again, with no doorman restart.
#[tokio::test]
async fn a_stopped_redis_fails_closed_and_recovers_after_a_restart() {
    let mut s = Doorman::conf(&Conf::dashboard())
        .redis(RedisServer::start_persistent())
        .start()
        .await;
    let cookie = s.log_in("alice", ALICE_PW).await;
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 200);
    let served = s.upstream().seen_paths().len();

    s.redis.as_mut().expect("redis").stop();
    for _ in 0..3 {
        let answer = s.get("/dashboard", Some(&cookie)).await;
        assert_fails_closed(&answer, "stopped, protected");
    }
    assert_eq!(s.upstream().seen_paths().len(), served);
    let answer = s.get("/home", Some(&cookie)).await;
    assert_forwarded_anonymously(&answer, "stopped, public");
    let answer = s.get("/_doorman/session", Some(&cookie)).await;
    assert_fails_closed(&answer, "stopped, session probe");

    s.redis.as_mut().expect("redis").start_again();
    let answer = until_served(&s, &cookie).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
}

/// Redis down when doorman starts must not stop doorman: it serves, fails closed on protected
/// routes, and logins work as soon as Redis is there, without a restart.
#[tokio::test]
async fn redis_down_at_start_then_up_works_without_restarting_doorman() {
    let port = free_port();
    let backend = Backend::Redis {
        url: format!("redis://127.0.0.1:{port}"),
        prefix: "dm:".into(),
    };
    let s = Doorman::conf(&Conf::dashboard())
        .backend(backend)
        .start()
        .await;
    // No cookie: nothing to look up, a plain 401.
    assert_eq!(s.get("/dashboard", None).await.status, 401);
    let answer = s.get("/dashboard", Some(&unknown_id())).await;
    assert_fails_closed(&answer, "redis down, a cookie to check");
    let answer = s.get("/home", Some(&unknown_id())).await;
    assert_forwarded_anonymously(&answer, "redis down, public");
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 503);
    assert!(s.upstream().seen_paths().iter().all(|p| p == "/home"));

    let _redis = RedisServer::start_on(port);
    let deadline = Instant::now() + RECOVERY;
    let cookie = loop {
        let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
        if login.status == 303 {
            break login.new_cookie(COOKIE);
        }
        assert_eq!(login.status, 503, "{}", login.text());
        assert!(Instant::now() < deadline, "no login within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
}

/// Replicas share sessions through Redis: a login on one instance is valid on another, and a
/// logout on either ends the session everywhere.
#[tokio::test]
async fn two_doorman_instances_share_sessions_through_one_redis() {
    let a = Doorman::conf(&Conf::dashboard())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = a.redis.as_ref().expect("redis");
    let b = Doorman::conf(&Conf::dashboard())
        .backend(Backend::redis(redis))
        .users(a.users())
        .start()
        .await;

    let cookie = a.log_in("alice", ALICE_PW).await;
    let on_b = b.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&on_b, "x-auth-user"), ["alice"]);

    let out = post_logout(&b.client, &b.base, &cookie, &[]).await;
    assert_eq!(out.status, 303);
    let on_a = a.get("/dashboard", Some(&cookie)).await;
    assert_eq!(on_a.status, 401);
    assert!(on_a.expires_cookie(COOKIE));
}

/// `doorman sessions revoke --user alice` on Redis ends every session of alice (through the
/// user index, from another process) and no one else's.
#[tokio::test]
async fn sessions_revoke_ends_every_session_of_one_user_on_redis() {
    let s = Doorman::conf(&Conf::dashboard())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let alice1 = s.log_in("alice", ALICE_PW).await;
    let alice2 = s.log_in("alice", ALICE_PW).await;
    let bob = s.log_in("bob", BOB_PW).await;
    let (code, out, err) = s.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 2 session"), "{out}");

    for cookie in [&alice1, &alice2] {
        assert_eq!(s.get("/dashboard", Some(cookie)).await.status, 401);
    }
    let answer = s.get("/dashboard", Some(&bob)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);
    let mut raw = s.redis.as_ref().expect("redis").client();
    let index: i64 = redis::cmd("EXISTS")
        .arg("dm:u:alice")
        .query(&mut raw)
        .expect("EXISTS");
    assert_eq!(index, 0, "alice's index outlived her sessions");
}

/// A leaked Redis dump must not be replayable as cookies: Redis holds the session under the
/// SHA-256 of the id, and the id itself appears in no key and no value.
#[tokio::test]
async fn redis_holds_only_the_sha256_of_the_session_id() {
    use base64::Engine;
    let s = Doorman::conf(&Conf::dashboard())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let cookie = s.log_in("alice", ALICE_PW).await;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cookie)
        .expect("base64url cookie");
    assert_eq!(id.len(), 32);
    let digest = ring::digest::digest(&ring::digest::SHA256, &id);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();

    let mut raw = s.redis.as_ref().expect("redis").client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).expect("KEYS");
    let session_keys: Vec<&String> = keys.iter().filter(|k| k.starts_with("dm:s:")).collect();
    assert_eq!(session_keys, [&format!("dm:s:{hex}")]);
    for key in &keys {
        assert!(!key.contains(&cookie), "{key}");
        let dump: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut raw).expect("DUMP");
        let text = String::from_utf8_lossy(&dump);
        assert!(!text.contains(&cookie), "{key} holds the session id");
        assert!(
            !dump.windows(id.len()).any(|w| w == id.as_slice()),
            "{key} holds the raw id"
        );
    }
}

/// Speed is a feature: an authenticated request through doorman costs exactly one Redis round
/// trip (an `HMGET` of the record; the idle clock's slide, a second one, comes at most once per
/// `idle / 10`, and not within this test's seconds of a 30-minute idle timeout), whatever the
/// route, and a public request without a cookie costs none. Counted by Redis itself, end to
/// end.
#[tokio::test]
async fn each_authenticated_request_costs_one_redis_round_trip() {
    // /dashboard needs a session; everything else (here /public) is public.
    let s = Doorman::conf(&Conf::dashboard())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let redis = s.redis.as_ref().expect("redis");
    let cookie = s.log_in("alice", ALICE_PW).await;
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 200);

    const N: u64 = 40;
    let before = redis.command_calls();
    for i in 0..N {
        let answer = s.get(&format!("/dashboard/{i}"), Some(&cookie)).await;
        assert_eq!(answer.status, 200);
        assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    }
    for _ in 0..N {
        assert_eq!(s.get("/public", None).await.status, 200);
    }
    let after = redis.command_calls();
    let delta = calls_since(&before, &after);
    // Our own INFO call is the only other command Redis saw.
    let round_trips: u64 = delta
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(_, d)| d)
        .sum();
    assert_eq!(round_trips, N, "{delta:?}");
    assert!(delta.get("hmget") == Some(&N), "{delta:?}");
}
