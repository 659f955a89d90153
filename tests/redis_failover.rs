//! A Redis master dies (`kill -9`) under doorman (DESIGN.md §13): Sentinel promotes a replica,
//! doorman follows it by itself, and nothing gets through a protected route without a valid
//! session meanwhile. Creation, logout and revoke wait for a replica (`WAIT 1 100`), so a
//! logout acknowledged before the master died stays a logout on the new master.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::login::{
    post_login, post_logout, unknown_id, Backend, Conf, ALICE_PW, BOB_PW, COOKIE,
};
use support::redis::{query, record_key, RedisServer};
use support::Doorman;

const NAME: &str = "mymaster";

/// Wait (polling every 50 ms, at most 20 s) until `ready` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A replica of `master`, in sync.
fn replica_of(master: &RedisServer) -> RedisServer {
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_until("the replica to sync", || {
        replica.try_client().is_ok_and(|mut c| {
            redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c)
                .is_ok_and(|i| i.contains("master_link_status:up"))
        })
    });
    replica
}

/// The port Sentinel `sentinel` names as the master.
fn master_port(sentinel: &RedisServer) -> Option<u16> {
    let addr: Vec<String> = sentinel
        .try_client()
        .ok()
        .and_then(|mut c| {
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(NAME)
                .query(&mut c)
                .ok()
        })
        .unwrap_or_default();
    addr.get(1).and_then(|p| p.parse().ok())
}

/// `redis_sentinel` for these Sentinels.
fn backend(sentinels: &[&RedisServer]) -> Backend {
    let nodes: Vec<String> = sentinels.iter().map(|s| format!("{:?}", s.url())).collect();
    Backend::sentinel(&format!(
        "{{ master = {NAME:?}, nodes = [{}] }}",
        nodes.join(", ")
    ))
}

/// Logout, then at once `kill -9` of the master: the replica Sentinel promotes must not bring
/// the session back. The logout's `WAIT 1 100` returned only once the replica had the `DEL`, so
/// the old cookie is `401` on the new master, which doorman finds by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_just_before_the_master_dies_stays_a_logout() {
    let mut master = RedisServer::start();
    let replica = replica_of(&master);
    let sentinel = RedisServer::start_sentinel(master.port, NAME);
    wait_until("the sentinel to see the replica", || {
        sentinel.try_client().is_ok_and(|mut c| {
            query::<Vec<redis::Value>>(&mut c, &["SENTINEL", "REPLICAS", NAME]).len() == 1
        })
    });
    let d = Doorman::conf(&Conf::dashboard())
        .backend(backend(&[&sentinel]))
        .start()
        .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 200);
    let key = record_key(&alice);
    let on_replica: i64 = query(&mut replica.client(), &["EXISTS", &key]);
    assert_eq!(on_replica, 1, "creation waited for the replica");

    let logout = post_logout(&d.client, &d.base, &alice, &[]).await;
    assert!(
        logout.status.is_redirection() || logout.status.is_success(),
        "{}",
        logout.status
    );
    master.kill();
    let killed = Instant::now();
    let gone: i64 = query(&mut replica.client(), &["EXISTS", &key]);
    assert_eq!(
        gone, 0,
        "the logout reached the replica before doorman answered it"
    );

    wait_until("Sentinel to promote the replica", || {
        master_port(&sentinel) == Some(replica.port)
    });
    // Meanwhile and after: 503 (no master) or 401, never the session back.
    let mut statuses = Vec::new();
    loop {
        let status = d.get("/dashboard", Some(&alice)).await.status.as_u16();
        statuses.push(status);
        assert!(matches!(status, 401 | 503), "{statuses:?}");
        if status == 401 {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Doorman writes to the new master: a fresh login works there.
    let again = d.log_in("alice", ALICE_PW).await;
    assert_eq!(d.get("/dashboard", Some(&again)).await.status, 200);
    let there: i64 = query(&mut replica.client(), &["EXISTS", &record_key(&again)]);
    assert_eq!(there, 1);
    eprintln!(
        "old cookie 401 on the new master {:?} after the kill ({} answers)",
        killed.elapsed(),
        statuses.len()
    );
}

/// What one load request was, for the checks.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Live,
    NoCookie,
    MadeUp,
    LoggedOut,
    Public,
    Login,
    Logout,
}

/// Sentinel failover under load: a master, two replicas, three Sentinels (quorum 2), two
/// doormen, four clients mixing authenticated and public GETs, logins and logouts, and the
/// master `kill -9`ed three seconds in. Nothing without a valid session gets a 200; failures
/// are 503s that never delete the cookie; both doormen serve again by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_lets_nothing_through_and_heals_itself() {
    let mut master = RedisServer::start();
    let replicas = [replica_of(&master), replica_of(&master)];
    let sentinels: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_sentinel_quorum(master.port, NAME, 2, ""))
        .collect();
    wait_until("the sentinels to see each other and the replicas", || {
        sentinels.iter().all(|s| {
            s.try_client().is_ok_and(|mut c| {
                query::<Vec<redis::Value>>(&mut c, &["SENTINEL", "REPLICAS", NAME]).len() == 2
                    && query::<Vec<redis::Value>>(&mut c, &["SENTINEL", "SENTINELS", NAME]).len()
                        == 2
            })
        })
    });
    let b = backend(&sentinels.iter().collect::<Vec<_>>());
    let first = Doorman::conf(&Conf::dashboard())
        .backend(b.clone())
        .start()
        .await;
    let second = Doorman::conf(&Conf::dashboard())
        .backend(b)
        .users(first.users())
        .start()
        .await;
    let doormen = Arc::new([first, second]);
    let mut before = Vec::new();
    for i in 0..8 {
        let (user, pw) = if i % 2 == 0 {
            ("alice", ALICE_PW)
        } else {
            ("bob", BOB_PW)
        };
        before.push(doormen[i % 2].log_in(user, pw).await);
    }
    let live = Arc::new(Mutex::new(before.clone()));
    let logged_out = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::new(Mutex::new(Vec::<(Duration, usize, Kind, u16)>::new()));
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4usize {
        let keep = before.clone();
        let (doormen, live, logged_out, log, stop) = (
            Arc::clone(&doormen),
            Arc::clone(&live),
            Arc::clone(&logged_out),
            Arc::clone(&log),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let mut n = client;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let at = n % 2;
                let d = &doormen[at];
                let pick = |list: &Mutex<Vec<String>>| {
                    let list = list.lock().unwrap();
                    (!list.is_empty()).then(|| list[n % list.len()].clone())
                };
                let kind = [
                    Kind::Live,
                    Kind::Public,
                    Kind::Live,
                    Kind::NoCookie,
                    Kind::MadeUp,
                    Kind::LoggedOut,
                    Kind::Live,
                    Kind::Login,
                    Kind::Logout,
                ][n % 9];
                let answer = match kind {
                    Kind::Live => match pick(&live) {
                        Some(c) => d.get("/dashboard", Some(&c)).await,
                        None => continue,
                    },
                    Kind::LoggedOut => match pick(&logged_out) {
                        Some(c) => d.get("/dashboard", Some(&c)).await,
                        None => continue,
                    },
                    Kind::NoCookie => d.get("/dashboard", None).await,
                    Kind::MadeUp => d.get("/dashboard", Some(&unknown_id())).await,
                    Kind::Public => d.get("/public", None).await,
                    Kind::Login => {
                        let a = post_login(&d.client, &d.base, "bob", BOB_PW, None, &[]).await;
                        if a.status == 303 {
                            live.lock().unwrap().push(a.new_cookie(COOKIE));
                        }
                        a
                    }
                    Kind::Logout => {
                        // Only sessions the load made: the first eight stay, to count losses.
                        let Some(c) = pick(&live).filter(|c| !keep.contains(c)) else {
                            continue;
                        };
                        let a = post_logout(&d.client, &d.base, &c, &[]).await;
                        if a.status.is_redirection() || a.status.is_success() {
                            live.lock().unwrap().retain(|x| *x != c);
                            logged_out.lock().unwrap().push(c);
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
                log.lock()
                    .unwrap()
                    .push((start.elapsed(), at, kind, status));
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let acknowledged = live.lock().unwrap().clone();
    let killed_at = start.elapsed();
    master.kill();
    // Both doormen serve a session created before the kill again, by themselves.
    let probe = acknowledged[0].clone();
    let mut recovered = [None, None];
    while recovered.iter().any(Option::is_none) {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "no recovery: {recovered:?}"
        );
        for (i, d) in doormen.iter().enumerate() {
            if recovered[i].is_none() && d.get("/dashboard", Some(&probe)).await.status == 200 {
                recovered[i] = Some(start.elapsed() - killed_at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("a client failed");
    }

    let log = log.lock().unwrap().clone();
    let fails: Vec<Duration> = log.iter().filter(|e| e.3 == 503).map(|e| e.0).collect();
    let window = fails.first().zip(fails.last()).map(|(a, b)| (*a, *b - *a));
    let logged_out = logged_out.lock().unwrap().clone();
    let mut lost = 0;
    for cookie in acknowledged.iter().filter(|c| !logged_out.contains(c)) {
        match doormen[0]
            .get("/dashboard", Some(cookie))
            .await
            .status
            .as_u16()
        {
            200 => {}
            401 => lost += 1,
            other => panic!("after recovery: {other}"),
        }
    }
    let promoted = master_port(&sentinels[0]);
    assert!(
        replicas.iter().any(|r| Some(r.port) == promoted),
        "{promoted:?}"
    );
    eprintln!(
        "{} requests; kill at {killed_at:?}; 503s: {} (first at, window) {window:?}; \
         recovered after {recovered:?}; sessions lost {lost} of {}",
        log.len(),
        fails.len(),
        acknowledged.len()
            - acknowledged
                .iter()
                .filter(|c| logged_out.contains(c))
                .count(),
    );
    assert!(recovered
        .iter()
        .flatten()
        .all(|r| *r < Duration::from_secs(15)));
}
