//! Redis going away and coming back (DESIGN.md §14): a restart costs no request.
//!
//! Doorman serves on two worker runtimes, each with its own Redis connection, as the binary
//! does. Connections to doorman are held open so both workers serve some of them; after
//! redis-server restarts, the first command on each worker's pooled connection meets a closed
//! socket — which used to answer 503 — and must instead be retried on a fresh connection.

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorman::server::Workers;
use support::login::{Backend, Conf, ALICE_PW, COOKIE};
use support::raw::RawConn;
use support::redis::RedisServer;
use support::Doorman;

const PATIENCE: Duration = Duration::from_secs(5);

/// Doorman with `/dashboard` behind a session, its sessions on `redis`, served by two workers.
async fn doorman(redis: &RedisServer, workers: &Arc<Workers>) -> Doorman {
    Doorman::conf(&Conf::dashboard())
        .backend(Backend::redis(redis))
        .workers(Arc::clone(workers))
        .start()
        .await
}

/// `n` connections to doorman opened together, so the workers share them.
async fn connections(d: &Doorman, n: usize) -> Vec<RawConn> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(RawConn::connect(d.addr).await);
    }
    conns
}

/// `GET /dashboard` with `cookie` on each connection (keep-alive): the statuses.
async fn statuses(conns: &mut [RawConn], cookie: &str) -> Vec<u16> {
    let req =
        format!("GET /dashboard HTTP/1.1\r\nHost: app.test\r\nCookie: {COOKIE}={cookie}\r\n\r\n");
    let mut out = Vec::with_capacity(conns.len());
    for conn in conns.iter_mut() {
        assert!(conn.send(req.as_bytes()).await, "connection closed");
        out.push(conn.response(PATIENCE).await.expect("a response").status);
    }
    out
}

/// Doorman on two workers in front of `redis`, alice logged in and served on six held
/// connections; then redis-server restarted. (doorman, alice's cookie, the held connections)
async fn served_then_restarted(redis: &mut RedisServer) -> (Doorman, String, Vec<RawConn>) {
    let workers = Arc::new(Workers::start(2).expect("workers"));
    let d = doorman(redis, &workers).await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut held = connections(&d, 6).await;
    assert_eq!(statuses(&mut held, &alice).await, vec![200; 6]);
    redis.stop();
    redis.start_again();
    (d, alice, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_a_persistent_redis_costs_no_request() {
    let mut redis = RedisServer::start_persistent();
    let (d, alice, mut held) = served_then_restarted(&mut redis).await;
    // Every worker's connection broke with the restart: the held connections' next requests
    // are each their worker's first command since.
    assert_eq!(
        statuses(&mut held, &alice).await,
        vec![200; 6],
        "0 × 503 after the restart"
    );
    let mut fresh = connections(&d, 6).await;
    assert_eq!(statuses(&mut fresh, &alice).await, vec![200; 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_empty_redis_restarts_old_cookies_get_401_and_logins_work_at_once() {
    let mut redis = RedisServer::start();
    let (d, alice, mut held) = served_then_restarted(&mut redis).await;
    assert_eq!(
        statuses(&mut held, &alice).await,
        vec![401; 6],
        "the sessions are gone"
    );
    // The login right after (it used to answer 503 on a worker whose connection had not been
    // used since the restart).
    for _ in 0..4 {
        let again = d.log_in("alice", ALICE_PW).await;
        assert_eq!(statuses(&mut held, &again).await, vec![200; 6]);
    }
}

/// Redis frozen (`kill -STOP`): once the breaker has opened, lookups fail at once — a public
/// route answers anonymously, a protected one 503 with the cookie kept — and `/readyz` and
/// `/metrics` say so; when Redis answers again, sessions are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_frozen_lookups_fail_fast_until_a_probe_gets_an_answer() {
    use std::time::Instant;
    let redis = RedisServer::start();
    let d = Doorman::conf(&Conf::dashboard())
        .backend(Backend::redis(&redis))
        .admin()
        .start()
        .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 200);

    redis.pause();
    // Each of these waits for its timeout: they are what opens the breaker.
    for _ in 0..3 {
        assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 503);
    }
    let started = Instant::now();
    let public = d.get("/public", Some(&alice)).await;
    let took = started.elapsed();
    assert_eq!(public.status, 200, "a public route forwards anonymously");
    assert!(
        took < Duration::from_millis(100),
        "public answer took {took:?}"
    );
    assert!(support::login::upstream_saw(&public, "x-auth-user").is_empty());
    let started = Instant::now();
    let protected = d.get("/dashboard", Some(&alice)).await;
    let took = started.elapsed();
    assert_eq!(protected.status, 503);
    assert!(
        took < Duration::from_millis(100),
        "protected answer took {took:?}"
    );
    assert!(
        protected.set_cookie(COOKIE).is_none(),
        "the cookie is kept through an outage"
    );
    let metrics = d.metrics(&d.client).await;
    assert_eq!(metrics.get("doorman_session_store_unreachable", &[]), 1.0);
    let ready = support::login::request(&d.client, "GET", &d.admin_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("failing fast"), "{}", ready.text());

    redis.resume();
    let back = Instant::now();
    loop {
        if d.get("/dashboard", Some(&alice)).await.status == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "sessions not served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = d.metrics(&d.client).await;
    assert_eq!(metrics.get("doorman_session_store_unreachable", &[]), 0.0);
}

/// A Redis that restarts with data accepts connections before it has read its files back, and
/// answers `LOADING` until then: the requests that arrive meanwhile wait for it (within the
/// command timeout) instead of answering 503 for sessions that are about to be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_during_a_restarted_redis_s_loading_wait_for_it_instead_of_503() {
    let mut redis = RedisServer::start_persistent();
    let workers = Arc::new(Workers::start(2).expect("workers"));
    let d = doorman(&redis, &workers).await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut held = connections(&d, 6).await;
    assert_eq!(statuses(&mut held, &alice).await, vec![200; 6]);
    // Enough data that loading it back takes a while (a few hundred ms), written into the
    // append-only file's base so the restart reads it.
    let mut admin = redis.client();
    for batch in 0..400 {
        let mut mset = ::redis::cmd("MSET");
        for i in 0..1000 {
            mset.arg(format!("filler:{batch}:{i}")).arg("x");
        }
        let _: () = mset.query(&mut admin).expect("MSET filler");
    }
    let _: () = ::redis::cmd("BGREWRITEAOF")
        .query(&mut admin)
        .expect("BGREWRITEAOF");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let info: String = ::redis::cmd("INFO")
            .arg("persistence")
            .query(&mut admin)
            .expect("INFO");
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the AOF rewrite took too long"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(admin);
    redis.stop();
    assert!(
        redis.start_again_loading(),
        "the restarted redis-server was still loading when it first answered"
    );
    assert_eq!(
        statuses(&mut held, &alice).await,
        vec![200; 6],
        "0 × 503 while Redis loads"
    );
}
