//! A bounded mixed load on several doormen sharing one Redis, for the failover tests
//! (DESIGN.md §13; issue 19 item 3): authenticated and public GETs, logins and logouts, with
//! the rules every answer must keep while a master dies checked as the answers come.
//!
//! The rules: nothing without a valid session gets a `200` on the protected route (no cookie,
//! a made-up one, a logged-out one: `401` or `503`); a live session gets `200`, `401` (lost in
//! the failover) or `503`; a `503` never deletes the cookie; the public route is always `200`.
//! Logins and logouts may fail with `503` only. A broken rule fails the client task, and so
//! [`Load::stop`].
//!
//! The figures of the issue are read from the log afterwards ([`Outcome`]): the `503` window,
//! the time until every doorman serves a session made before the kill, and the sessions
//! acknowledged before the kill that are missing after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::login::{post_login, post_logout, unknown_id, BOB_PW, COOKIE};
use super::Doorman;

/// What one load request was, for the checks.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    Live,
    NoCookie,
    MadeUp,
    LoggedOut,
    Public,
    Login,
    Logout,
}

/// The mix each client cycles through: a third authenticated with a live session.
const MIX: [Kind; 9] = [
    Kind::Live,
    Kind::Public,
    Kind::Live,
    Kind::NoCookie,
    Kind::MadeUp,
    Kind::LoggedOut,
    Kind::Live,
    Kind::Login,
    Kind::Logout,
];

/// One answer: when it came (since the load started), from which doorman, what, its status,
/// and how long it took.
pub type Entry = (Duration, usize, Kind, u16, Duration);

/// The load, running.
pub struct Load {
    doormen: Arc<Vec<Doorman>>,
    live: Arc<Mutex<Vec<String>>>,
    logged_out: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<Vec<Entry>>>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
    /// When the load started: the zero of every [`Entry`].
    pub start: Instant,
    /// The sessions made before the load; the load never logs them out, so each is counted as
    /// kept or lost.
    keep: Vec<String>,
}

impl Load {
    /// Start `clients` clients round-robin over `doormen`; `keep` are sessions made beforehand
    /// (live, never logged out by the load).
    pub fn start(doormen: Arc<Vec<Doorman>>, keep: Vec<String>, clients: usize) -> Load {
        let live = Arc::new(Mutex::new(keep.clone()));
        let logged_out = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let tasks = (0..clients)
            .map(|client| {
                let client = Client {
                    n: client,
                    doormen: Arc::clone(&doormen),
                    live: Arc::clone(&live),
                    logged_out: Arc::clone(&logged_out),
                    log: Arc::clone(&log),
                    keep: keep.clone(),
                    start,
                };
                let stop = Arc::clone(&stop);
                tokio::spawn(async move { client.run(&stop).await })
            })
            .collect();
        Load {
            doormen,
            live,
            logged_out,
            log,
            stop,
            clients: tasks,
            start,
            keep,
        }
    }

    /// The sessions live now (those made before the load, and logins the load has had
    /// acknowledged and not logged out).
    pub fn live(&self) -> Vec<String> {
        self.live.lock().unwrap().clone()
    }

    /// Poll every doorman with `probe` (a session that must survive) until each serves it:
    /// how long after `since` each did. Fails after `within`.
    pub async fn recovered(&self, probe: &str, since: Instant, within: Duration) -> Vec<Duration> {
        let mut recovered = vec![None; self.doormen.len()];
        while recovered.iter().any(Option::is_none) {
            assert!(
                since.elapsed() < within,
                "no recovery within {within:?}: {recovered:?}"
            );
            for (i, d) in self.doormen.iter().enumerate() {
                if recovered[i].is_none() && d.get("/dashboard", Some(probe)).await.status == 200 {
                    recovered[i] = Some(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recovered.into_iter().flatten().collect()
    }

    /// Stop the clients (each fails the test here if one of its answers broke a rule), then
    /// check which of `acknowledged` (live at the kill) survived, through the first doorman.
    pub async fn stop(self, acknowledged: &[String]) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.expect("a load client broke a rule");
        }
        let logged_out = self.logged_out.lock().unwrap().clone();
        let mut kept = 0;
        let mut lost = 0;
        for cookie in acknowledged.iter().filter(|c| !logged_out.contains(c)) {
            match self.doormen[0]
                .get("/dashboard", Some(cookie))
                .await
                .status
                .as_u16()
            {
                200 => kept += 1,
                401 => lost += 1,
                other => panic!("after recovery: {other}"),
            }
        }
        let log = self.log.lock().unwrap().clone();
        Outcome { log, kept, lost }
    }

    /// The sessions made before the load.
    pub fn kept_sessions(&self) -> &[String] {
        &self.keep
    }
}

/// What the load saw.
pub struct Outcome {
    pub log: Vec<Entry>,
    /// Sessions acknowledged before the kill and still served after recovery.
    pub kept: usize,
    /// Sessions acknowledged before the kill and `401` after recovery.
    pub lost: usize,
}

impl Outcome {
    /// The first `503` (since the load started) and the span to the last one.
    pub fn window(&self) -> Option<(Duration, Duration)> {
        let fails: Vec<Duration> = self
            .log
            .iter()
            .filter(|e| e.3 == 503)
            .map(|e| e.0)
            .collect();
        fails.first().zip(fails.last()).map(|(a, b)| (*a, *b - *a))
    }

    /// The slowest answer.
    pub fn slowest(&self) -> Option<Entry> {
        self.log.iter().max_by_key(|e| e.4).copied()
    }

    /// How many answers were `503`.
    pub fn failures(&self) -> usize {
        self.log.iter().filter(|e| e.3 == 503).count()
    }

    /// How many answers of `kind` there were, and how many of them were `status`.
    pub fn count(&self, kind: Kind, status: u16) -> (usize, usize) {
        let all = self.log.iter().filter(|e| e.2 == kind);
        let n = all.clone().count();
        (n, all.filter(|e| e.3 == status).count())
    }
}

/// One client's share of the load.
struct Client {
    n: usize,
    doormen: Arc<Vec<Doorman>>,
    live: Arc<Mutex<Vec<String>>>,
    logged_out: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<Vec<Entry>>>,
    keep: Vec<String>,
    start: Instant,
}

impl Client {
    async fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.n += 1;
            let at = self.n % self.doormen.len();
            let kind = MIX[self.n % MIX.len()];
            let sent = Instant::now();
            let Some(status) = self.one(at, kind).await else {
                // Nothing to send for this kind yet (no logged-out session, say).
                tokio::task::yield_now().await;
                continue;
            };
            self.log
                .lock()
                .unwrap()
                .push((self.start.elapsed(), at, kind, status, sent.elapsed()));
        }
    }

    fn pick(&self, list: &Mutex<Vec<String>>) -> Option<String> {
        let list = list.lock().unwrap();
        (!list.is_empty()).then(|| list[self.n % list.len()].clone())
    }

    /// Send one request of `kind` to doorman `at`, check its answer against the rules, and
    /// return its status (`None` when there was nothing to send).
    async fn one(&self, at: usize, kind: Kind) -> Option<u16> {
        let d = &self.doormen[at];
        let answer = match kind {
            Kind::Live => d.get("/dashboard", Some(&self.pick(&self.live)?)).await,
            Kind::LoggedOut => {
                d.get("/dashboard", Some(&self.pick(&self.logged_out)?))
                    .await
            }
            Kind::NoCookie => d.get("/dashboard", None).await,
            Kind::MadeUp => d.get("/dashboard", Some(&unknown_id())).await,
            Kind::Public => d.get("/public", None).await,
            Kind::Login => {
                let a = post_login(&d.client, &d.base, "bob", BOB_PW, None, &[]).await;
                if a.status == 303 {
                    self.live.lock().unwrap().push(a.new_cookie(COOKIE));
                }
                a
            }
            Kind::Logout => {
                // Only sessions the load made: those made before stay, to count losses.
                let c = self.pick(&self.live).filter(|c| !self.keep.contains(c))?;
                let a = post_logout(&d.client, &d.base, &c, &[]).await;
                if a.status.is_redirection() || a.status.is_success() {
                    self.live.lock().unwrap().retain(|x| *x != c);
                    self.logged_out.lock().unwrap().push(c);
                }
                a
            }
        };
        let status = answer.status.as_u16();
        if status == 503 {
            assert!(!answer.expires_cookie(COOKIE), "a 503 deleted the cookie");
        }
        match kind {
            Kind::NoCookie | Kind::MadeUp | Kind::LoggedOut => {
                assert!(matches!(status, 401 | 503), "{kind:?}: {status}")
            }
            Kind::Live => assert!(matches!(status, 200 | 401 | 503), "{status}"),
            Kind::Public => assert_eq!(status, 200, "a public route"),
            Kind::Login | Kind::Logout => {
                assert!(status < 500 || status == 503, "{kind:?}: {status}")
            }
        }
        Some(status)
    }
}
