//! Doorman's login under abuse (issue 12): bursts of parallel guesses must not buy more password
//! checks than the throttle allows, a slow or oversized form must not hold a connection, and
//! bursts of logins must not grow the process's memory for good.
//!
//! Password checks are counted with `doorman_logins_total{result}` on the admin listener: every
//! check ends as `bad_credentials` or `success`, every refusal by the throttle as `throttled`.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use http::StatusCode;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use support::login::{
    post_login, users_toml, write_users, Backend, Conf, HttpClient, StoreChoice, ALICE_PW, BOB_PW,
    COOKIE,
};
use support::raw::RawConn;
use support::{eventually, Doorman, DoormanProcess, Upstream};

/// An HTTP client whose connections come from `127.0.0.N`, so each scenario is its own client
/// to the throttle (its own per-client counter).
fn client_from(n: u8) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Doorman in-process with its admin listener, on `store`, with extra `[login]` keys.
struct Guarded {
    doorman: Doorman,
    base: String,
}

impl Guarded {
    async fn start(store: StoreChoice, login: &str, listen: &str) -> Guarded {
        let conf = Conf {
            login: login.into(),
            listen: listen.into(),
            ..Conf::dashboard()
        };
        let doorman = Doorman::conf(&conf).store(store).admin().start().await;
        let base = doorman.base.clone();
        Guarded { doorman, base }
    }

    /// `(checks that failed, checks that succeeded, attempts refused by the throttle)` so far.
    async fn logins(&self) -> (u64, u64, u64) {
        let m = self.doorman.metrics(&support::h1_client()).await;
        let n = |result| m.get("doorman_logins_total", &[("result", result)]) as u64;
        (n("bad_credentials"), n("success"), n("throttled"))
    }
}

/// Post `passwords.len()` logins as `user` at once from `client`; their statuses and whether
/// each set a session cookie, in the order of `passwords`.
async fn burst(
    client: &HttpClient,
    base: &str,
    user: &str,
    passwords: Vec<String>,
) -> Vec<(StatusCode, bool)> {
    let tasks: Vec<_> = passwords
        .into_iter()
        .map(|password| {
            let (client, base, user) = (client.clone(), base.to_string(), user.to_string());
            tokio::spawn(async move {
                let answer = post_login(&client, &base, &user, &password, None, &[]).await;
                (answer.status, answer.set_cookie(COOKIE).is_some())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("login task"));
    }
    out
}

fn guesses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("guess{i}")).collect()
}

fn tally(answers: &[(StatusCode, bool)], status: u16) -> usize {
    answers.iter().filter(|(s, _)| *s == status).count()
}

/// Parallel guesses buy no more checks than `max_failures`: each attempt is counted before its
/// password is checked, and attempts for one user and client take turns. A right password in a
/// throttled burst is refused like the rest, and a success clears the user+client count.
async fn bursts_are_throttled(store: StoreChoice) {
    let max = 5;
    let g = Guarded::start(
        store,
        &format!("max_failures = {max}\nfailure_window = \"10m\"\n"),
        "",
    )
    .await;

    // 40 wrong guesses at once: exactly `max` checked (401), the rest 429.
    let (bad0, ok0, thr0) = g.logins().await;
    let answers = burst(&client_from(2), &g.base, "alice", guesses(40)).await;
    let (bad, ok, thr) = g.logins().await;
    assert_eq!(tally(&answers, 401), max, "{store:?}: {answers:?}");
    assert_eq!(tally(&answers, 429), 40 - max, "{store:?}: {answers:?}");
    assert_eq!((bad - bad0, ok - ok0, thr - thr0), (max as u64, 0, 35));

    // 200 at once, another client: still at most `max` checks.
    let answers = burst(&client_from(3), &g.base, "alice", guesses(200)).await;
    let (bad1, ..) = g.logins().await;
    assert!(bad1 - bad <= max as u64, "{store:?}: {} checks", bad1 - bad);
    assert_eq!(tally(&answers, 429), 200 - (bad1 - bad) as usize);

    // The right password hidden in a burst: sent once the first wrong guess has been checked,
    // while the other 28 wait their turn. It is refused, and nothing more was checked.
    let client = client_from(4);
    let wrong = {
        let (client, base) = (client.clone(), g.base.clone());
        tokio::spawn(async move { burst(&client, &base, "bob", guesses(29)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.logins().await.0 == bad1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let right = post_login(&client, &g.base, "bob", BOB_PW, None, &[]).await;
    let wrong = wrong.await.expect("burst");
    assert_eq!(right.status, 429, "{store:?}: {}", right.text());
    assert!(right.set_cookie(COOKIE).is_none());
    let (bad2, ok2, _) = g.logins().await;
    assert_eq!((bad2 - bad1, ok2 - ok), (max as u64, 0), "{store:?}");
    assert_eq!(tally(&wrong, 401), max, "{wrong:?}");

    // A success clears the user+client count: `max` failures are allowed again after it.
    let client = client_from(5);
    for i in 0..max - 1 {
        let answer = post_login(&client, &g.base, "alice", "wrong", None, &[]).await;
        assert_eq!(answer.status, 401, "{store:?}: failure {i}");
    }
    let answer = post_login(&client, &g.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(answer.status, 303, "{store:?}: {}", answer.text());
    for i in 0..max {
        let answer = post_login(&client, &g.base, "alice", "wrong", None, &[]).await;
        assert_eq!(answer.status, 401, "{store:?}: failure {i} after the reset");
    }
    let answer = post_login(&client, &g.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(answer.status, 429, "{store:?}: after {max} new failures");
}

#[tokio::test]
async fn parallel_guesses_get_max_failures_checks_embedded() {
    bursts_are_throttled(StoreChoice::Embedded).await;
}

#[tokio::test]
async fn parallel_guesses_get_max_failures_checks_redis() {
    bursts_are_throttled(StoreChoice::Redis).await;
}

/// The head of a login post declaring `length` body bytes.
fn login_head(length: usize) -> Vec<u8> {
    format!(
        "POST /_doorman/login HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

/// A declared body over the form limit is refused before it is sent: the client learns at
/// once, and doorman reads none of it.
#[tokio::test]
async fn an_oversized_login_form_is_refused_before_its_body() {
    let g = Guarded::start(StoreChoice::Embedded, "", "").await;
    let mut conn = RawConn::connect(g.doorman.addr).await;
    assert!(conn.send(&login_head(16 * 1024 + 1)).await);
    let resp = conn
        .response(Duration::from_secs(5))
        .await
        .expect("a response to the head alone");
    assert_eq!(resp.status, 413);
    // At the limit, the form is read (and fails as a login, not as a size).
    let mut conn = RawConn::connect(g.doorman.addr).await;
    let mut form = b"username=alice&password=".to_vec();
    form.resize(16 * 1024, b'x');
    let mut request = login_head(form.len());
    request.extend_from_slice(&form);
    assert!(conn.send(&request).await);
    let resp = conn
        .response(Duration::from_secs(30))
        .await
        .expect("answer");
    assert_eq!(resp.status, 401);
}

/// A login form dribbled one byte at a time is cut at `body_timeout` for the whole body: the
/// bytes keep coming, so no per-read timeout would ever fire.
#[tokio::test]
async fn a_dribbled_login_form_is_cut_at_body_timeout() {
    let g = Guarded::start(StoreChoice::Embedded, "", "body_timeout = \"1s\"").await;
    let mut conn = RawConn::connect(g.doorman.addr).await;
    let started = Instant::now();
    assert!(conn.send(&login_head(100)).await);
    let mut answer = None;
    while started.elapsed() < Duration::from_secs(5) {
        if !conn.send(b"u").await {
            break;
        }
        answer = conn.response(Duration::from_millis(300)).await;
        if answer.is_some() || conn.closed_within(Duration::ZERO).await {
            break;
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2_200), "open for {took:?}");
    if let Some(resp) = answer {
        assert_eq!(resp.status, 408);
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(conn.closed_within(Duration::from_secs(2)).await);
    }
}

/// Bursts of logins run on a fixed pool of hashing threads, each reusing its Argon2 memory:
/// the process's peak (VmHWM) stays within idle + threads × m_cost + 20 MB, and after six
/// bursts its memory is back within 10 MB of where it was before them (after a first, warming
/// burst). Before the pool, one burst of 200 took it from 13 MB to 2.26 GB, for good.
///
/// Throttling is set out of the way (`max_failures = 1000`, and a different user name per
/// attempt), so every attempt is checked or waits for a thread; those that wait longer than
/// the login's hashing wait get 503, as many as the pool cannot take in that time.
#[tokio::test]
async fn bursts_of_logins_do_not_grow_memory_for_good() {
    const MIB: u64 = 1024; // VmRSS is in kB
    let m_cost_kib = 19 * MIB; // the default Argon2id parameters the test users file uses
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;

    let upstream = Upstream::start().await;
    let admin: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .expect("addr");
    let conf = Conf {
        login: "max_failures = 1000\n".into(),
        rest: format!("[admin]\naddr = \"{admin}\"\n"),
        ..Conf::dashboard()
    }
    .for_binary();
    let users = write_users(&users_toml());
    let doorman = DoormanProcess::spawn(
        &conf.toml(&upstream.url(), &Backend::embedded(), &users),
        &[],
    );
    let base = format!("http://{}", doorman.addr);
    let metrics = format!("http://{admin}/metrics");
    let checks = async || {
        let m = support::ops::scrape(&support::h1_client(), &metrics).await;
        m.get("doorman_logins_total", &[("result", "bad_credentials")]) as u64
    };
    // Idle once start-up is over: the store open, the hashers ready, the listener serving.
    eventually(
        Duration::from_secs(10),
        async || doorman.logs(),
        |logs| logs.contains("doorman listening"),
    )
    .await;
    let idle = doorman.status_kb("VmRSS");

    // A first burst warms what any burst of 200 needs and keeps: each hashing thread makes its
    // Argon2 block, and 200 connections size the server's buffers and the allocator's arenas.
    // The six bursts after it must not add to that for good.
    let client = client_from(6);
    let users_of = |burst: usize, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("user{burst}x{i}")).collect()
    };
    let warm = parallel_logins(&client, &base, users_of(99, 200)).await;
    assert!(warm.iter().all(|s| *s == 401 || *s == 503), "{warm:?}");
    let warmed = doorman.status_kb("VmRSS");

    let mut outcomes = Vec::new();
    for b in 0..6 {
        let checked = checks().await;
        let answers = parallel_logins(&client, &base, users_of(b, 200)).await;
        let checked = checks().await - checked;
        let busy = answers.iter().filter(|s| **s == 503).count();
        let other: Vec<_> = answers
            .iter()
            .filter(|s| **s != 401 && **s != 503)
            .collect();
        assert!(other.is_empty(), "burst {b}: {other:?}");
        outcomes.push((checked, busy, doorman.status_kb("VmRSS")));
    }
    drop(client); // its 200 idle connections
    let peak = doorman.status_kb("VmHWM");
    let bound = idle + threads * m_cost_kib + 20 * MIB;
    let mut after = doorman.status_kb("VmRSS");
    let deadline = Instant::now() + Duration::from_secs(5);
    while after > warmed + 10 * MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = doorman.status_kb("VmRSS");
    }
    eprintln!(
        "threads {threads}: idle {idle} kB, warmed {warmed} kB, per burst (checks, 503s, VmRSS kB) \
         {outcomes:?}, peak {peak} kB (bound {bound} kB), after {after} kB"
    );
    assert!(
        outcomes.iter().all(|(checked, ..)| *checked >= threads),
        "the bursts ran too few checks to mean anything: {outcomes:?}"
    );
    assert!(peak <= bound, "peak {peak} kB over {bound} kB");
    assert!(
        after <= warmed + 10 * MIB,
        "{after} kB after the bursts, {warmed} kB before"
    );
}

/// Post one login per name in `users` (a wrong password) at once; their statuses.
async fn parallel_logins(client: &HttpClient, base: &str, users: Vec<String>) -> Vec<u16> {
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (client, base) = (client.clone(), base.to_string());
            tokio::spawn(async move {
                post_login(&client, &base, &user, "wrong", None, &[])
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("login task"));
    }
    out
}
