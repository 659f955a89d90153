//! Redis behind a network fault, not a process death (DESIGN.md §5, §7, §14): the Redis
//! server runs in a network namespace of its own and the link to it is cut for a few
//! seconds — taken down, or made to drop every packet — while doorman holds an open connection
//! to it. Protected routes answer 503 (never 200, never 401, the cookie kept) within the
//! command timeout, public routes forward at once, and when the link is back the same cookie is
//! served again by itself, without a restart.
//!
//! Needs root for `ip netns` and `tc`; elsewhere the tests print `SKIPPED: …` and return, and
//! under `CI=true` they fail instead (see `support::netns`).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorman::session::redis::COMMAND_TIMEOUT;
use support::login::{get_as, upstream_saw, Backend, Conf, HttpClient, ALICE_PW, COOKIE};
use support::netns::NetNs;
use support::Doorman;

/// Added to [`COMMAND_TIMEOUT`] for the longest a request may wait on the store during the
/// cut. This is a correctness bound — no request hangs past the command timeout — not a speed
/// target: the slack is for a loaded two-core machine running other tests.
const SLACK: Duration = Duration::from_secs(2);
/// The longest a request that needs no store answer (no cookie, or failing fast) may take:
/// well under the command timeout, so it cannot have waited for Redis.
const AT_ONCE: Duration = Duration::from_secs(1);
/// How long the link stays cut at least (longer if lookups do not fail fast by then, so both
/// phases of an outage are seen: waiting for Redis, then failing fast). Long enough that the
/// open connection's retransmissions are seconds apart (Linux doubles the wait from 200 ms:
/// after 7 s the next is due at about 12.6 s), so recovering by waiting for them cannot pass
/// for recovering by reconnecting ([`PROMPT_RECOVERY`]).
const CUT_FOR: Duration = Duration::from_secs(7);
/// How long after the link is back the old cookie is polled for at most.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);
/// How soon after the link is back the old cookie must be served again: a probe or two (every
/// 250 ms, each connecting afresh within 1 s) and slack; waiting for the connection that was
/// open during the cut takes until its next retransmission, seconds later.
const PROMPT_RECOVERY: Duration = Duration::from_secs(3);

/// How the link is cut.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `ip link set … down`: the route goes, new connections fail at once.
    LinkDown,
    /// Every packet dropped silently (`tc qdisc … netem loss 100%`, see `NetNs::drop_all`):
    /// the link stays up, so new connections hang as well as open ones.
    Loss,
}

impl Fault {
    /// Cut the link; how.
    fn begin(self, ns: &NetNs) -> &'static str {
        match self {
            Fault::LinkDown => {
                ns.cut_link();
                "ip link set down"
            }
            Fault::Loss => ns.drop_all(),
        }
    }

    fn end(self, ns: &NetNs) {
        match self {
            Fault::LinkDown => ns.restore_link(),
            Fault::Loss => ns.stop_dropping(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_link_down_protected_routes_503_public_ones_forward_and_it_recovers_by_itself() {
    outage(
        Fault::LinkDown,
        "with_the_link_down_protected_routes_503_public_ones_forward_and_it_recovers_by_itself",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_packets_lost_protected_routes_503_public_ones_forward_and_it_recovers_by_itself()
{
    outage(
        Fault::Loss,
        "with_all_packets_lost_protected_routes_503_public_ones_forward_and_it_recovers_by_itself",
    )
    .await;
}

/// What the public-route prober saw while it ran.
#[derive(Debug, Default)]
struct PublicFigures {
    requests: u32,
    slowest: Duration,
}

/// `GET /public` without a cookie every 50 ms until `stop`, each asserted 200 within
/// [`AT_ONCE`] (no cookie, no lookup: the store's state must not matter).
async fn probe_public(client: HttpClient, url: String, stop: Arc<AtomicBool>) -> PublicFigures {
    let mut figures = PublicFigures::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let answer = get_as(&client, &url, None, &[]).await;
        let took = started.elapsed();
        assert_eq!(answer.status, 200, "public route: {}", answer.text());
        assert!(
            took < AT_ONCE,
            "public route without a cookie took {took:?}"
        );
        figures.requests += 1;
        figures.slowest = figures.slowest.max(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    figures
}

/// The whole outage: alice logged in over an open connection to Redis, the link cut for
/// [`CUT_FOR`] at least while requests keep coming, then restored.
async fn outage(fault: Fault, test: &str) {
    let Some(mut ns) = NetNs::for_test(test) else {
        return;
    };
    let url = ns.start_redis();
    let d = Doorman::conf(&Conf::dashboard())
        .backend(Backend::Redis {
            url,
            prefix: "dm:".into(),
        })
        .admin()
        .start()
        .await;
    // Logging in and being served opens doorman's connection to Redis: the fault finds it
    // established and idle, as in production, rather than making the first connection.
    let alice = d.log_in("alice", ALICE_PW).await;
    assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let public = tokio::spawn(probe_public(
        d.client.clone(),
        d.url("/public"),
        Arc::clone(&stop),
    ));

    let how = fault.begin(&ns);
    let cut = Instant::now();
    let mut first_503 = None;
    let mut slowest_503 = Duration::ZERO;
    let mut slowest_public_with_cookie = Duration::ZERO;
    let mut failing_fast_after = None;
    while cut.elapsed() < CUT_FOR || failing_fast_after.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(20),
            "lookups never started failing fast"
        );
        let started = Instant::now();
        let protected = d.get("/dashboard", Some(&alice)).await;
        let took = started.elapsed();
        assert_eq!(
            protected.status,
            503,
            "a valid cookie while Redis is unreachable: {}",
            protected.text()
        );
        assert!(
            protected.set_cookie(COOKIE).is_none(),
            "a 503 keeps the cookie: an outage must not log anyone out"
        );
        assert!(
            protected.header("retry-after").is_some(),
            "503 without Retry-After"
        );
        assert!(
            took < COMMAND_TIMEOUT + SLACK,
            "a protected request waited {took:?} for an unreachable Redis"
        );
        first_503.get_or_insert(cut.elapsed());
        slowest_503 = slowest_503.max(took);

        // No cookie: nothing to look up, so 401 at once whatever the store's state (§5).
        let started = Instant::now();
        let anonymous = d.get("/dashboard", None).await;
        assert_eq!(anonymous.status, 401, "{}", anonymous.text());
        assert!(
            started.elapsed() < AT_ONCE,
            "401 took {:?}",
            started.elapsed()
        );

        // A public route presenting the cookie is forwarded without identity; its lookup may
        // wait out the command timeout until lookups fail fast, and is at once after that.
        let fast = failing_fast_after.is_some();
        let started = Instant::now();
        let public = d.get("/public", Some(&alice)).await;
        let took = started.elapsed();
        assert!(
            upstream_saw(&public, "x-auth-user").is_empty(),
            "forwarded with an identity nobody could check"
        );
        assert!(
            took < if fast {
                AT_ONCE
            } else {
                COMMAND_TIMEOUT + SLACK
            },
            "public route with a cookie took {took:?} (failing fast: {fast})"
        );
        slowest_public_with_cookie = slowest_public_with_cookie.max(took);

        if failing_fast_after.is_none()
            && d.metrics(&d.client)
                .await
                .get("doorman_session_store_unreachable", &[])
                == 1.0
        {
            failing_fast_after = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = cut.elapsed();

    fault.end(&ns);
    let restored = Instant::now();
    let mut during_recovery = Vec::new();
    loop {
        let answer = d.get("/dashboard", Some(&alice)).await;
        match answer.status.as_u16() {
            200 => break,
            503 => during_recovery.push(503),
            other => panic!(
                "after the link came back the cookie got {other}: {}",
                answer.text()
            ),
        }
        assert!(
            restored.elapsed() < RECOVERY_LIMIT,
            "the cookie was not served again within {RECOVERY_LIMIT:?} of the link coming back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = restored.elapsed();
    assert!(
        recovered < PROMPT_RECOVERY,
        "served again only {recovered:?} after the link came back: waited for the connection \
         that was open during the cut instead of connecting afresh"
    );
    stop.store(true, Ordering::Relaxed);
    let public = public.await.expect("public prober");

    // Back for good, with no restart: the old cookie, and a fresh login.
    assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 200);
    let again = d.log_in("alice", ALICE_PW).await;
    assert_eq!(d.get("/dashboard", Some(&again)).await.status, 200);
    assert_eq!(
        d.metrics(&d.client)
            .await
            .get("doorman_session_store_unreachable", &[]),
        0.0
    );

    let first_503 = first_503.expect("at least one request during the cut");
    eprintln!(
        "{fault:?} ({how}): first 503 {first_503:?} after the cut (slowest 503 {slowest_503:?}); \
         failing fast after {:?}; link cut for {held:?}; public route without a cookie: \
         {} requests, slowest {:?}; with the cookie slowest {slowest_public_with_cookie:?}; \
         recovered {recovered:?} after the link came back ({} × 503 meanwhile)",
        failing_fast_after.unwrap_or_default(),
        public.requests,
        public.slowest,
        during_recovery.len(),
    );
}
