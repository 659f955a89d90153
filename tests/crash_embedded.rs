//! `kill -9` of doorman under load, twenty times in a row on one embedded store file (DESIGN.md
//! §7: the embedded store is crash-safe and survives restart): the store opens every time, no
//! session acknowledged before a kill is lost, and none logged out comes back.
//!
//! Run with `cargo test --test crash_embedded -- --nocapture` to see each cycle's figures.
//! Timings and the load's choices come from a seed, printed first; `DOORMAN_CRASH_SEED=<n>`
//! replays them (thread scheduling, and so the exact interleaving, is not replayed).
//!
//! Each cycle starts the real binary on the same store file, waits until `/readyz` answers 200
//! and the control socket (`<store>.sock`, left behind by the last kill) answers, checks every
//! session the ledger knows, runs load on eight connections for 150–600 ms, and `SIGKILL`s it
//! while requests are in flight. The ledger, across cycles:
//!
//! * **acknowledged**: a login whose whole `303` (head and body) arrived with doorman's
//!   `Set-Cookie`. At every later start it must answer `200` on `/dashboard`, with its user
//!   reaching the upstream as `X-Auth-User`.
//! * **logged out**: a logout whose whole `303`, expiring the cookie, arrived. From then on it
//!   must answer `401`, never `200`.
//! * **unknown**: a logout in flight at the kill, or a login whose `Set-Cookie` came but whose
//!   response was cut. Neither check applies, but the next start must answer one of the two
//!   (`200` as its user, or `401`); from then on the session is held to what that start showed,
//!   so a logout that did land can never come back either.
//!
//! Nothing expires during the test, so "unless it had expired" never applies: the absolute
//! timeout is an hour, and the idle timeout ([`IDLE`]) is longer than the whole test may run
//! (asserted at each start). A crash can move a session's idle clock back, but never to before
//! its creation, which was durable. The idle timeout is still short enough that later starts
//! touch the records they check (every `IDLE / 10`), so the store's non-durable touch commits
//! are among what the kills cut.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use support::login::{
    cheap_hash, cookie_value, form_encode, write_users, Answer, Backend, Conf, HttpClient, COOKIE,
    DASHBOARD,
};
use support::{echoed, echoed_header, free_port, h1_client, DoormanProcess, Upstream};
use tokio::sync::Notify;

/// Kills in a row; one more start checks what the last one left.
const CYCLES: usize = 20;
/// Concurrent load connections, each logging in as its own user (a user's logins from one
/// client take turns in doorman's throttle, so one shared user would serialise them).
const TASKS: usize = 8;
/// `[session] idle_timeout`: longer than the test may run (it takes ~10–20 s), short enough
/// that sessions checked at later starts are touched (every `IDLE / 10` = 6 s).
const IDLE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "crash-test-pw";

type Ledger = Arc<Mutex<Vec<Entry>>>;

/// `kill -9` of doorman under load, 20 times on one store file: every start opens the store,
/// every acknowledged session answers as its user, every logged-out one answers 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_session_and_resurrects_no_logout() {
    let began = Instant::now();
    let seed = std::env::var("DOORMAN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(1, |d| d.as_nanos() as u64)
        });
    println!("crash_embedded: seed {seed} (DOORMAN_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let Backend::Embedded(store) = &backend else {
        unreachable!("an embedded backend")
    };
    let users = write_users(&users_file());
    let toml = |admin: u16| {
        Conf {
            session: format!(
                "idle_timeout = \"{}s\"\nabsolute_timeout = \"1h\"",
                IDLE.as_secs()
            ),
            // A kill mid-login leaves that attempt counted as a failure (as for a client that
            // hung up mid-check); twenty kills must not lock anyone out.
            login: "max_failures = 1000".into(),
            rest: format!("{DASHBOARD}\n[admin]\naddr = \"127.0.0.1:{admin}\"\n"),
            ..Conf::default()
        }
        .for_binary()
        .toml(&upstream.url(), &backend, &users)
    };

    let ledger = Ledger::default();
    let mut total = Counts::default();
    let mut ready_times = Vec::new();
    for cycle in 0..=CYCLES {
        let (mut doorman, ready) = start(&toml, store).await;
        ready_times.push(ready);
        let base = format!("http://{}", doorman.addr);
        assert!(
            began.elapsed() < IDLE - Duration::from_secs(5),
            "the test ran for {:?}, near the idle timeout: a missing session could have \
             expired, so a loss cannot be told apart (seed {seed})",
            began.elapsed()
        );
        let (mut counts, violations) = check(&base, &ledger).await;
        assert!(
            violations.is_empty(),
            "cycle {cycle} (seed {seed}), after the restart:\n{}\ndoorman's log:\n{}",
            violations.join("\n"),
            doorman.logs()
        );
        if cycle == CYCLES {
            total.add(&counts);
            println!(
                "final start: ready in {ready:?}; {} alive + {} logged out ({} unknown \
                 resolved)",
                counts.checked_alive, counts.checked_out, counts.resolved
            );
            doorman.signal(libc::SIGTERM);
            let status = doorman.wait_exit(Duration::from_secs(15));
            assert!(
                status.is_some_and(|s| s.success()),
                "the last doorman did not stop cleanly: {status:?}; log:\n{}",
                doorman.logs()
            );
            break;
        }

        let probe = Arc::new(Probe::default());
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let load = Load {
                    user: user(task),
                    task,
                    base: base.clone(),
                    client: h1_client(),
                    ledger: Arc::clone(&ledger),
                    probe: Arc::clone(&probe),
                };
                tokio::spawn(load.run(Rng(rng.next())))
            })
            .collect();
        let load_for = Duration::from_millis(150 + rng.below(451) as u64);
        let when = [
            When::Anytime,
            When::After(Kind::Login),
            When::After(Kind::Logout),
        ][rng.below(3)];
        tokio::time::sleep(load_for).await;
        kill_mid_request(&mut doorman, &probe, when, &mut counts, cycle, seed).await;
        for task in tasks {
            let done = tokio::time::timeout(Duration::from_secs(20), task).await;
            counts.add(
                &done
                    .expect("a load task outlived the kill")
                    .expect("load task"),
            );
        }
        // A logout cut by the kill may or may not have landed.
        for entry in lock(&ledger).iter_mut() {
            if entry.state == State::LoggingOut {
                entry.state = State::Unknown;
            }
        }
        let violations = std::mem::take(&mut *lock(&probe.violations));
        assert!(
            violations.is_empty(),
            "cycle {cycle} (seed {seed}), under load:\n{}\ndoorman's log:\n{}",
            violations.join("\n"),
            doorman.logs()
        );
        let size = std::fs::metadata(store).map_or(0, |m| m.len());
        println!(
            "cycle {cycle:2}: ready in {ready:?}, load {load_for:?}, kill {when:?}, store \
             {size} B; {counts}"
        );
        total.add(&counts);
    }

    let entries = lock(&ledger);
    let count = |state| entries.iter().filter(|e| e.state == state).count();
    ready_times.sort();
    println!(
        "crash_embedded: {CYCLES} kills in {:?}; start to ready min {:?}, median {:?}, max {:?}; \
         at the end {} sessions alive, {} logged out, {} unknown; in all: {total}",
        began.elapsed(),
        ready_times[0],
        ready_times[ready_times.len() / 2],
        ready_times[ready_times.len() - 1],
        count(State::Alive),
        count(State::LoggedOut),
        count(State::Unknown),
    );
    // Not vacuous: enough sessions, logouts, checks and cut writes for a loss or a
    // resurrection to show.
    assert!(
        total.logins >= 60,
        "only {} logins acknowledged",
        total.logins
    );
    assert!(
        total.logouts >= 15,
        "only {} logouts acknowledged",
        total.logouts
    );
    assert!(
        total.checked_alive >= 200 && total.checked_out >= 50,
        "too few checks after restarts: {total}"
    );
    assert!(
        total.writes_at_kill >= CYCLES / 2,
        "kills rarely cut a login or logout: {total}"
    );
    assert_eq!(total.errors_before_kill, 0, "requests failed before a kill");
}

/// One session the test was told about.
struct Entry {
    cookie: String,
    user: String,
    /// The load task that uses and logs out this session (in every cycle), so no two tasks
    /// race on one session.
    owner: usize,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Acknowledged, not logged out: must answer 200 as its user.
    Alive,
    /// Its logout is in flight.
    LoggingOut,
    /// Logged out, acknowledged: must answer 401.
    LoggedOut,
    /// Cut by a kill: the next start shows which it is.
    Unknown,
}

/// Requests of one kind, as indexes into [`Probe::in_flight`].
#[derive(Debug, Clone, Copy)]
enum Kind {
    Login = 0,
    Use = 1,
    Logout = 2,
}

/// When, after the load's time is up, the kill is sent: at once, or just after the next
/// acknowledged login or logout (the moment a write the client was told about is most likely
/// to be lost, if it were not durable).
#[derive(Debug, Clone, Copy)]
enum When {
    Anytime,
    After(Kind),
}

/// What the load tasks and the killer share.
#[derive(Default)]
struct Probe {
    /// Set just before the `SIGKILL`: a request failing after it was cut by the kill.
    killed: AtomicBool,
    /// Requests sent and not yet wholly answered, by [`Kind`].
    in_flight: [AtomicUsize; 3],
    /// Told when a login or logout (by [`Kind`]) is acknowledged.
    acknowledged: [Notify; 3],
    /// Answers that broke the contract, in words.
    violations: Mutex<Vec<String>>,
}

impl Probe {
    fn in_flight(&self, kind: Kind) -> usize {
        self.in_flight[kind as usize].load(Ordering::SeqCst)
    }

    fn violation(&self, what: String) {
        lock(&self.violations).push(what);
    }

    /// Run `request` counted as in flight until it is wholly answered or has failed.
    async fn count<T>(&self, kind: Kind, request: impl std::future::Future<Output = T>) -> T {
        self.in_flight[kind as usize].fetch_add(1, Ordering::SeqCst);
        let done = request.await;
        self.in_flight[kind as usize].fetch_sub(1, Ordering::SeqCst);
        done
    }
}

/// What happened, in one cycle or in all.
#[derive(Default)]
struct Counts {
    /// Logins acknowledged (a whole 303 with the cookie).
    logins: usize,
    /// Authenticated requests answered 200 as their user under load.
    uses: usize,
    /// Logouts acknowledged.
    logouts: usize,
    /// Logins answered 503 (every hashing thread busy): not acknowledged, not a fault.
    busy: usize,
    /// Logins and logouts in flight when the kill was sent.
    writes_at_kill: usize,
    /// Requests in flight when the kill was sent.
    at_kill: usize,
    /// Requests sent before the kill that it cut.
    cut: usize,
    /// Kills sent as soon as a login or logout was acknowledged.
    kills_after_acknowledgement: usize,
    errors_before_kill: usize,
    /// Sessions checked after a restart: alive (200 as their user), logged out (401), unknown
    /// that answered one way or the other.
    checked_alive: usize,
    checked_out: usize,
    resolved: usize,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.logins += other.logins;
        self.uses += other.uses;
        self.logouts += other.logouts;
        self.busy += other.busy;
        self.writes_at_kill += other.writes_at_kill;
        self.at_kill += other.at_kill;
        self.cut += other.cut;
        self.kills_after_acknowledgement += other.kills_after_acknowledgement;
        self.errors_before_kill += other.errors_before_kill;
        self.checked_alive += other.checked_alive;
        self.checked_out += other.checked_out;
        self.resolved += other.resolved;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} alive + {} logged out ({} unknown resolved) at restart; acknowledged {} logins, \
             {} uses, {} logouts ({} busy); at the kill {} in flight ({} logins or logouts), \
             {} cut, {} kills just after an acknowledgement; {} errors before a kill",
            self.checked_alive,
            self.checked_out,
            self.resolved,
            self.logins,
            self.uses,
            self.logouts,
            self.busy,
            self.at_kill,
            self.writes_at_kill,
            self.cut,
            self.kills_after_acknowledgement,
            self.errors_before_kill
        )
    }
}

/// The users file: `t0` … `t7`, one per load task, with cheap hashes.
fn users_file() -> String {
    let hash = cheap_hash(PASSWORD);
    (0..TASKS)
        .map(|task| {
            format!(
                "[users.{}]\npassword = {hash:?}\ngroups = []\n\n",
                user(task)
            )
        })
        .collect()
}

fn user(task: usize) -> String {
    format!("t{task}")
}

/// Start doorman on `store` and wait until it is ready: `/readyz` answers 200 (the store
/// opened and answers) and the control socket answers (a stale one was replaced). Fails with
/// doorman's log if it exits first. Returns it and how long the start took.
async fn start(toml: &impl Fn(u16) -> String, store: &Path) -> (DoormanProcess, Duration) {
    let socket = doorman::control::control_socket_path(store);
    let client = h1_client();
    for _attempt in 0..3 {
        let began = Instant::now();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut doorman = DoormanProcess::spawn(&toml(admin.port()), &[]);
        loop {
            if let Ok(Some(status)) = doorman.child.try_wait() {
                let logs = doorman.logs();
                if logs.contains("binding the admin listener") {
                    break; // the free port was taken in between: try another
                }
                panic!("doorman exited ({status}) before it was ready; log:\n{logs}");
            }
            let req = http::Request::get(format!("http://{admin}/readyz"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let ready = matches!(exchange(&client, req).await, Ok(a) if a.status == 200);
            if ready && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return (doorman, began.elapsed());
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "doorman not ready after 30 s; log:\n{}",
                doorman.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("no free admin port in three attempts");
}

/// Wait for the moment `when` says and until a request is in flight, then `SIGKILL` doorman
/// and reap it; note what was in flight in `counts`.
async fn kill_mid_request(
    doorman: &mut DoormanProcess,
    probe: &Probe,
    when: When,
    counts: &mut Counts,
    cycle: usize,
    seed: u64,
) {
    if let When::After(kind) = when {
        let acknowledged = probe.acknowledged[kind as usize].notified();
        // A logout may be a while coming (a task logs out only with two sessions in hand).
        if tokio::time::timeout(Duration::from_secs(2), acknowledged)
            .await
            .is_ok()
        {
            counts.kills_after_acknowledgement += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let [login, used, logout] = loop {
        let n = [Kind::Login, Kind::Use, Kind::Logout].map(|k| probe.in_flight(k));
        if n.iter().sum::<usize>() > 0 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "cycle {cycle} (seed {seed}): no request in flight for 5 s"
        );
        tokio::task::yield_now().await;
    };
    if let Ok(Some(status)) = doorman.child.try_wait() {
        panic!(
            "cycle {cycle} (seed {seed}): doorman exited on its own ({status}); log:\n{}",
            doorman.logs()
        );
    }
    probe.killed.store(true, Ordering::SeqCst);
    doorman.signal(libc::SIGKILL);
    let status = doorman
        .wait_exit(Duration::from_secs(10))
        .expect("doorman still running after SIGKILL");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "cycle {cycle}: {status}"
    );
    counts.at_kill += login + used + logout;
    counts.writes_at_kill += login + logout;
}

/// One load connection until the kill: log in as its user, use its sessions on `/dashboard`,
/// log some out. What it was told goes into the ledger; answers that break the contract into
/// the probe's violations.
struct Load {
    task: usize,
    user: String,
    base: String,
    client: HttpClient,
    ledger: Ledger,
    probe: Arc<Probe>,
}

impl Load {
    async fn run(self, mut rng: Rng) -> Counts {
        let mut counts = Counts::default();
        while !self.probe.killed.load(Ordering::SeqCst) {
            let mine: Vec<usize> = lock(&self.ledger)
                .iter()
                .enumerate()
                .filter(|(_, e)| e.owner == self.task && e.state == State::Alive)
                .map(|(i, _)| i)
                .collect();
            let roll = rng.below(100);
            let answered = if mine.len() < 2 || roll < 45 {
                self.log_in(&mut counts).await
            } else if roll < 80 {
                self.use_session(mine[rng.below(mine.len())], &mut counts)
                    .await
            } else {
                self.log_out(mine[rng.below(mine.len())], &mut counts).await
            };
            if answered {
                continue;
            }
            if self.probe.killed.load(Ordering::SeqCst) {
                counts.cut += 1;
            } else {
                counts.errors_before_kill += 1;
                eprintln!("a request as {} failed before the kill", self.user);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        counts
    }

    /// `POST /_doorman/login`; whether it was wholly answered.
    async fn log_in(&self, counts: &mut Counts) -> bool {
        let form = format!("username={}&password={}", self.user, form_encode(PASSWORD));
        let req = http::Request::post(format!("{}/_doorman/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .expect("request");
        let done = self
            .probe
            .count(Kind::Login, exchange(&self.client, req))
            .await;
        let add = |headers: &HeaderMap, state| {
            let answer = Answer {
                status: StatusCode::SEE_OTHER,
                headers: headers.clone(),
                body: Bytes::new(),
            };
            let cookie = answer.set_cookie(COOKIE).map(|line| cookie_value(&line));
            let cookie = cookie.filter(|value| !value.is_empty())?;
            lock(&self.ledger).push(Entry {
                cookie,
                user: self.user.clone(),
                owner: self.task,
                state,
            });
            Some(())
        };
        match &done {
            Ok(answer) if answer.status == 303 => match add(&answer.headers, State::Alive) {
                Some(()) => {
                    counts.logins += 1;
                    self.probe.acknowledged[Kind::Login as usize].notify_waiters();
                }
                None => self.probe.violation(format!(
                    "login as {}: 303 without a cookie: {:?}",
                    self.user, answer.headers
                )),
            },
            Ok(answer) if answer.status == 503 => counts.busy += 1,
            Ok(answer) => self.probe.violation(format!(
                "login as {} answered {}: {}",
                self.user,
                answer.status,
                answer.text()
            )),
            Err(Some(head)) => {
                let _ = add(head, State::Unknown);
            }
            Err(None) => {}
        }
        done.is_ok()
    }

    /// `GET /dashboard` with the live session `i`; whether it was wholly answered.
    async fn use_session(&self, i: usize, counts: &mut Counts) -> bool {
        let cookie = format!("{COOKIE}={}", lock(&self.ledger)[i].cookie);
        let req = http::Request::get(format!("{}/dashboard", self.base))
            .header("cookie", cookie)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let done = self
            .probe
            .count(Kind::Use, exchange(&self.client, req))
            .await;
        if let Ok(answer) = &done {
            match as_user(answer) {
                Some(seen) if seen == self.user => counts.uses += 1,
                _ => self.probe.violation(format!(
                    "{}'s live session answered {}: {}",
                    self.user,
                    answer.status,
                    answer.text()
                )),
            }
        }
        done.is_ok()
    }

    /// `POST /_doorman/logout` with the live session `i`; whether it was wholly answered.
    async fn log_out(&self, i: usize, counts: &mut Counts) -> bool {
        let cookie = {
            let mut ledger = lock(&self.ledger);
            ledger[i].state = State::LoggingOut;
            format!("{COOKIE}={}", ledger[i].cookie)
        };
        let req = http::Request::post(format!("{}/_doorman/logout", self.base))
            .header("cookie", cookie)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let done = self
            .probe
            .count(Kind::Logout, exchange(&self.client, req))
            .await;
        match &done {
            Ok(answer) if answer.status == 303 && answer.expires_cookie(COOKIE) => {
                lock(&self.ledger)[i].state = State::LoggedOut;
                counts.logouts += 1;
                self.probe.acknowledged[Kind::Logout as usize].notify_waiters();
            }
            Ok(answer) => self.probe.violation(format!(
                "{}'s logout answered {}: {:?}",
                self.user, answer.status, answer.headers
            )),
            Err(_) => {} // stays LoggingOut: unknown once the kill is done
        }
        done.is_ok()
    }
}

/// Present every session in the ledger on `/dashboard` (on eight connections at once): alive
/// ones must answer 200 as their user, logged-out ones 401, unknown ones either (and are held
/// to it from then on). The counts, and what broke the contract.
async fn check(base: &str, ledger: &Ledger) -> (Counts, Vec<String>) {
    let work: Vec<(usize, String, String, State)> = lock(ledger)
        .iter()
        .enumerate()
        .map(|(i, e)| (i, e.cookie.clone(), e.user.clone(), e.state))
        .collect();
    let mut tasks = Vec::new();
    for chunk in work.chunks(work.len().div_ceil(TASKS).max(1)) {
        let (chunk, base) = (chunk.to_vec(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            let mut seen = Vec::new();
            for (i, cookie, user, state) in chunk {
                let req = http::Request::get(format!("{base}/dashboard"))
                    .header("cookie", format!("{COOKIE}={cookie}"))
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let answer = tokio::time::timeout(Duration::from_secs(10), exchange(&client, req));
                seen.push((i, user, state, answer.await.ok().and_then(Result::ok)));
            }
            seen
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("check task"));
    }
    let (mut counts, mut violations) = (Counts::default(), Vec::new());
    let mut ledger = lock(ledger);
    for (i, user, state, answer) in answers {
        let Some(answer) = answer else {
            violations.push(format!("{user}'s session ({state:?}): no answer"));
            continue;
        };
        let seen = as_user(&answer);
        let as_its_user = seen.as_deref() == Some(user.as_str());
        match (state, answer.status.as_u16()) {
            (State::Alive, 200) if as_its_user => counts.checked_alive += 1,
            (State::LoggedOut, 401) => counts.checked_out += 1,
            (State::Unknown, 200) if as_its_user => {
                ledger[i].state = State::Alive;
                counts.resolved += 1;
            }
            (State::Unknown, 401) => {
                ledger[i].state = State::LoggedOut;
                counts.resolved += 1;
            }
            (state, status) => {
                let what = match state {
                    State::Alive => "an acknowledged session was lost",
                    State::LoggedOut => "a logged-out session came back",
                    _ => "a session cut by the kill answered neither 200 as its user nor 401",
                };
                violations.push(format!(
                    "{what}: {user}'s session ({state:?}) answered {status}, upstream saw \
                     user {seen:?}: {}",
                    answer.text()
                ));
            }
        }
    }
    (counts, violations)
}

/// The user the echo upstream saw on a 200, if it saw exactly one.
fn as_user(answer: &Answer) -> Option<String> {
    if answer.status != 200 {
        return None;
    }
    match echoed_header(&echoed(&answer.body), "x-auth-user").as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Send `req` and read the whole answer. `Err(None)`: no head came (refused, reset, the
/// process gone); `Err(Some(head))`: the head came, the body was cut.
async fn exchange(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
) -> Result<Answer, Option<HeaderMap>> {
    let resp = client.request(req).await.map_err(|_| None)?;
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(body) => Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.to_bytes(),
        }),
        Err(_) => Err(Some(parts.headers)),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// SplitMix64: a seeded, reproducible source of the test's choices (no RNG crate needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
