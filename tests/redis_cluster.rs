//! Doorman on a real Redis Cluster: three masters and three replicas on free loopback ports
//! (`support::cluster`), two doormen sharing it (DESIGN.md §13).
//!
//! Sessions land on several masters and work from both doormen; `doorman sessions revoke`
//! reaches a user's sessions on every node; login throttling counts across the doormen; a
//! session whose slot is being migrated is found through `ASK`, and one whose slot has moved
//! through `MOVED`; `redis-cli --cluster reshard` of 3000 slots under load costs no request; a
//! cluster with a password works with either form of `redis_cluster`.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doorman::config::{ClusterTarget, RedisTarget};
use doorman::session::redis::RedisStore;
use doorman::session::{now_millis, Origin, Record, SessionId, SessionStore, Timeouts};
use support::cluster::{key_slot, RedisCluster};
use support::login::{
    post_login, post_logout, unknown_id, upstream_saw, Backend, Conf, ALICE_PW, BOB_PW, COOKIE,
};
use support::redis::{command_calls, query, record_key};
use support::Doorman;

/// Two doormen on `backend`, with one users file.
async fn two_doormen(conf: &Conf, backend: Backend) -> (Doorman, Doorman) {
    let a = Doorman::conf(conf).backend(backend.clone()).start().await;
    let b = Doorman::conf(conf)
        .backend(backend)
        .users(a.users())
        .start()
        .await;
    (a, b)
}

/// The password of `user` in the standard users file.
fn password(user: &str) -> &'static str {
    match user {
        "alice" => ALICE_PW,
        _ => BOB_PW,
    }
}

/// `GET /dashboard` with `cookie` on `d`: served, as `user`.
async fn assert_serves(d: &Doorman, cookie: &str, user: &str) {
    let answer = d.get("/dashboard", Some(cookie)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(upstream_saw(&answer, "x-auth-user"), [user]);
}

/// Log `user` in, alternately through `a` and `b`, until their records are on at least two
/// masters (and at least `min` sessions): the cookies, and the masters' ports.
async fn sessions_on_several_masters(
    cluster: &RedisCluster,
    (a, b): (&Doorman, &Doorman),
    user: &str,
    min: usize,
) -> (Vec<String>, BTreeSet<u16>) {
    let mut cookies = Vec::new();
    let mut masters = BTreeSet::new();
    // Record keys are uniformly spread: two masters are all but certain after a few logins.
    for i in 0..40 {
        if cookies.len() >= min && masters.len() >= 2 {
            break;
        }
        let d = if i % 2 == 0 { a } else { b };
        let cookie = d.log_in(user, password(user)).await;
        masters.insert(cluster.owner(&record_key(&cookie)).port);
        cookies.push(cookie);
    }
    assert!(masters.len() >= 2, "{user}'s sessions all on {masters:?}");
    (cookies, masters)
}

/// Sessions made through either doorman spread over the masters (each record on the master
/// that owns its slot), and each works from both doormen. Nothing goes to a replica.
#[tokio::test]
async fn sessions_from_two_doormen_spread_over_the_masters_and_work_from_both() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let (a, b) = two_doormen(&Conf::dashboard(), Backend::cluster(&cluster.seed_urls())).await;

    let (alice, alice_masters) = sessions_on_several_masters(&cluster, (&a, &b), "alice", 4).await;
    let (bob, _) = sessions_on_several_masters(&cluster, (&b, &a), "bob", 2).await;
    for cookie in alice.iter().chain(&bob) {
        let key = record_key(cookie);
        let exists: i64 = query(&mut cluster.client_for(&key), &["EXISTS", &key]);
        assert_eq!(exists, 1, "{key} is not on the master that owns its slot");
    }
    for (user, cookies) in [("alice", &alice), ("bob", &bob)] {
        for cookie in cookies {
            assert_serves(&a, cookie, user).await;
            assert_serves(&b, cookie, user).await;
        }
    }

    // Replicas only replicate: writes and a script's effects reach them, never a read (`HMGET`)
    // or an EVALSHA, so a replica that counted one was asked a lookup.
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port).collect();
    for node in cluster.nodes.iter().filter(|n| !masters.contains(&n.port)) {
        let calls = command_calls(&mut cluster.connect(node.port));
        assert!(
            !["hmget", "evalsha", "eval"]
                .iter()
                .any(|c| calls.contains_key(*c)),
            "replica {} ran scripts: {calls:?}",
            node.port
        );
    }
    // Each creation waited for one replica with one WAIT sent to the master owning its
    // record (DESIGN.md §13), not a bare WAIT, which the crate would send to every master.
    let waits: u64 = masters
        .iter()
        .map(|port| {
            command_calls(&mut cluster.connect(*port))
                .get("wait")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        waits,
        (alice.len() + bob.len()) as u64,
        "one WAIT per session created, on its own master"
    );
    eprintln!(
        "alice's sessions on masters {alice_masters:?}; test took {:?}",
        started.elapsed()
    );
}

/// `doorman sessions revoke --user alice` (the CLI, its own process) ends alice's sessions on
/// every master they are on, and her index with them; bob's stay.
#[tokio::test]
async fn revoke_ends_a_users_sessions_on_every_master() {
    let cluster = RedisCluster::start();
    let (a, b) = two_doormen(&Conf::dashboard(), Backend::cluster(&cluster.seed_urls())).await;
    let (alice, _) = sessions_on_several_masters(&cluster, (&a, &b), "alice", 4).await;
    let bob = b.log_in("bob", BOB_PW).await;

    let (code, out, err) = a.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("revoked {} session", alice.len())),
        "{out}"
    );
    for cookie in &alice {
        assert_eq!(a.get("/dashboard", Some(cookie)).await.status, 401);
        assert_eq!(b.get("/dashboard", Some(cookie)).await.status, 401);
    }
    assert_serves(&a, &bob, "bob").await;
    let records: Vec<String> = cluster.keys("dm:s:*").into_iter().map(|(_, k)| k).collect();
    assert_eq!(records, [record_key(&bob)], "records left behind");
    let indexes: Vec<String> = cluster.keys("dm:u:*").into_iter().map(|(_, k)| k).collect();
    assert_eq!(indexes, ["dm:u:bob"], "alice's index outlived her sessions");
}

/// Failed logins count in the cluster, so both doormen enforce one limit: two failures on
/// each of two doormen use up `max_failures = 4`, and the next attempt is refused on either,
/// even with the right password.
#[tokio::test]
async fn login_throttling_counts_across_both_doormen() {
    let cluster = RedisCluster::start();
    let conf = Conf {
        login: "max_failures = 4\nfailure_window = \"10m\"\n".into(),
        ..Conf::dashboard()
    };
    let (a, b) = two_doormen(&conf, Backend::cluster(&cluster.seed_urls())).await;
    for d in [&a, &b, &a, &b] {
        let answer = post_login(&d.client, &d.base, "alice", "wrong", None, &[]).await;
        assert_eq!(answer.status, 401, "{}", answer.text());
    }
    for d in [&a, &b] {
        let answer = post_login(&d.client, &d.base, "alice", ALICE_PW, None, &[]).await;
        assert_eq!(answer.status, 429, "{}", answer.text());
    }
    // Another user from the same client is not throttled by alice's failures.
    let answer = post_login(&b.client, &b.base, "bob", BOB_PW, None, &[]).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert!(
        !cluster.keys("dm:c:*").is_empty(),
        "no counter in the cluster"
    );
}

/// A slot migrated by hand, as `redis-cli --cluster reshard` does it: while the session's
/// record has moved but its slot is still being migrated, the old owner answers `ASK` and the
/// lookup follows it; once the slot is handed over, the old owner answers `MOVED` and the
/// lookup follows that. A logout then deletes the record on its new master.
#[tokio::test]
async fn a_session_in_a_migrating_slot_is_found_through_ask_then_moved() {
    let cluster = RedisCluster::start();
    let (a, b) = two_doormen(&Conf::dashboard(), Backend::cluster(&cluster.seed_urls())).await;
    let cookie = a.log_in("alice", ALICE_PW).await;
    assert_serves(&b, &cookie, "alice").await;
    let key = record_key(&cookie);
    let slot = cluster.slot(&key).to_string();
    let from = cluster.owner(&key);
    let to = cluster
        .masters()
        .into_iter()
        .find(|m| m.id != from.id)
        .expect("another master");
    let (moved_before, ask_before) = cluster.redirections();

    let mut target = cluster.connect(to.port);
    let mut source = cluster.connect(from.port);
    let () = query(
        &mut target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from.id],
    );
    let () = query(
        &mut source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to.id],
    );
    let to_port = to.port.to_string();
    let () = query(
        &mut source,
        &[
            "MIGRATE",
            "127.0.0.1",
            &to_port,
            "",
            "0",
            "5000",
            "KEYS",
            &key,
        ],
    );
    for d in [&a, &b] {
        assert_serves(d, &cookie, "alice").await;
    }
    let (_, ask_during) = cluster.redirections();
    assert!(ask_during > ask_before, "no ASK was answered");

    // Hand the slot over: the new owner first, then the old one, then the third master.
    let mut order = vec![to.port, from.port];
    let third: Vec<u16> = cluster
        .masters()
        .iter()
        .map(|m| m.port)
        .filter(|p| !order.contains(p))
        .collect();
    order.extend(third);
    for port in order {
        let () = query(
            &mut cluster.connect(port),
            &["CLUSTER", "SETSLOT", &slot, "NODE", &to.id],
        );
    }
    for d in [&a, &b] {
        assert_serves(d, &cookie, "alice").await;
    }
    let (moved_after, _) = cluster.redirections();
    assert!(moved_after > moved_before, "no MOVED was answered");
    assert_eq!(cluster.owner(&key).id, to.id);

    let out = post_logout(&b.client, &b.base, &cookie, &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(a.get("/dashboard", Some(&cookie)).await.status, 401);
    let exists: i64 = query(&mut cluster.connect(to.port), &["EXISTS", &key]);
    assert_eq!(exists, 0, "the logout left the record on its new master");
}

/// What the load saw go wrong, and how many requests it made.
#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.lock().expect("tally").push(what());
        }
    }
}

/// `redis-cli --cluster reshard` of 3000 slots from one master to another, while two doormen
/// serve a bounded load (authenticated GETs with sessions spread over the slots, logins each
/// followed by a request on the other doorman, public GETs, and unknown cookies that must get
/// 401): no request fails. Every `MOVED` and `ASK` of the migration is followed inside the
/// request's own bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_costs_no_request() {
    const SLOTS: usize = 3000;
    let started = Instant::now();
    let cluster = Arc::new(RedisCluster::start());
    let (a, b) = two_doormen(&Conf::dashboard(), Backend::cluster(&cluster.seed_urls())).await;
    let doormen = Arc::new([a, b]);
    let mut sessions = Vec::new();
    for i in 0..16 {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let cookie = doormen[i % 2].log_in(user, password(user)).await;
        sessions.push((user, cookie));
    }
    let masters = cluster.masters();
    let (from, to) = (masters[0].clone(), masters[1].clone());
    // The reshard moves `from`'s lowest slots first, a slot at a time: the record of a session
    // is in a migrating slot, where ASK answers once it has moved, for a few milliseconds at
    // most. One slot in the middle of the move is made slow to migrate (many keys, moved ten
    // per MIGRATE), with sessions of its own, so the load meets ASK while it lasts.
    let slow = from.slot_list()[SLOTS / 2];
    let in_slow = slow_slot_sessions(&cluster, slow, 8).await;
    let sessions = Arc::new(sessions);
    let in_slow = Arc::new(in_slow);
    let (moved_before, ask_before) = cluster.redirections();
    let ready = started.elapsed();

    let done = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    // Authenticated GETs, each session on both doormen in turn.
    for worker in 0..2 {
        let (doormen, sessions, done, tally) = (
            Arc::clone(&doormen),
            Arc::clone(&sessions),
            Arc::clone(&done),
            Arc::clone(&tally),
        );
        load.push(tokio::spawn(async move {
            let mut i = worker;
            while !done.load(Ordering::Relaxed) {
                let (user, cookie) = &sessions[i % sessions.len()];
                let d = &doormen[(i / sessions.len()) % 2];
                let answer = d.get(&format!("/dashboard/{i}"), Some(cookie)).await;
                let saw = (answer.status == 200).then(|| upstream_saw(&answer, "x-auth-user"));
                tally.check(saw.as_deref() == Some(&[user.to_string()][..]), || {
                    format!("GET as {user}: {} {}", answer.status, answer.text())
                });
                i += 2;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    // The sessions in the slow slot, as fast as they are answered.
    {
        let (doormen, in_slow, done, tally) = (
            Arc::clone(&doormen),
            Arc::clone(&in_slow),
            Arc::clone(&done),
            Arc::clone(&tally),
        );
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let (user, cookie) = &in_slow[i % in_slow.len()];
                let answer = doormen[i % 2].get("/dashboard", Some(cookie)).await;
                let saw = (answer.status == 200).then(|| upstream_saw(&answer, "x-auth-user"));
                tally.check(saw.as_deref() == Some(&[user.to_string()][..]), || {
                    format!(
                        "GET as {user} (slow slot): {} {}",
                        answer.status,
                        answer.text()
                    )
                });
                i += 1;
            }
        }));
    }
    // Logins, each new session used at once on the other doorman.
    {
        let (doormen, done, tally) = (Arc::clone(&doormen), Arc::clone(&done), Arc::clone(&tally));
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let user = if i % 2 == 0 { "alice" } else { "bob" };
                let (d, other) = (&doormen[i % 2], &doormen[(i + 1) % 2]);
                let login = post_login(&d.client, &d.base, user, password(user), None, &[]).await;
                tally.check(login.status == 303, || {
                    format!("login as {user}: {} {}", login.status, login.text())
                });
                if login.status == 303 {
                    let cookie = login.new_cookie(COOKIE);
                    let answer = other.get("/dashboard", Some(&cookie)).await;
                    let saw = (answer.status == 200).then(|| upstream_saw(&answer, "x-auth-user"));
                    tally.check(saw.as_deref() == Some(&[user.to_string()][..]), || {
                        format!("new session of {user}: {} {}", answer.status, answer.text())
                    });
                }
                i += 1;
            }
        }));
    }
    // Public GETs, and cookies no session has: 401, never 503 (which a failed lookup gives).
    {
        let (doormen, done, tally) = (Arc::clone(&doormen), Arc::clone(&done), Arc::clone(&tally));
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                let d = &doormen[i % 2];
                let public = d.get("/home", None).await;
                tally.check(public.status == 200, || {
                    format!("public GET: {}", public.status)
                });
                let unknown = d.get("/dashboard", Some(&unknown_id())).await;
                tally.check(unknown.status == 401, || {
                    format!("unknown cookie: {} {}", unknown.status, unknown.text())
                });
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    let resharding = Instant::now();
    let reshard = {
        let (cluster, from, to) = (Arc::clone(&cluster), from.clone(), to.clone());
        tokio::task::spawn_blocking(move || cluster.reshard(&from, &to, SLOTS))
    };
    reshard.await.expect("reshard");
    let reshard_took = resharding.elapsed();
    done.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }

    let failures = tally.failures.lock().expect("tally").clone();
    let requests = tally.requests.load(Ordering::Relaxed);
    let (moved, ask) = cluster.redirections();
    eprintln!(
        "reshard of {SLOTS} slots took {reshard_took:?} under {requests} requests; \
         MOVED {} ASK {} answered meanwhile; set-up {ready:?}, test {:?}",
        moved - moved_before,
        ask - ask_before,
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {requests} failed: {failures:#?}",
        failures.len()
    );
    assert!(
        requests >= 50,
        "too little load to show anything: {requests}"
    );
    assert!(moved > moved_before, "the load never met a moved slot");
    assert!(ask > ask_before, "the load never met a migrating slot");
    let after = cluster.masters();
    let count = |id: &str| {
        after
            .iter()
            .find(|m| m.id == id)
            .map_or(0, support::cluster::Master::slot_count)
    };
    assert_eq!(count(&from.id), from.slot_count() - SLOTS);
    assert_eq!(count(&to.id), to.slot_count() + SLOTS);
    assert_eq!(cluster.owner(&record_key(&in_slow[0].1)).id, to.id);
    for (user, cookie) in sessions.iter().chain(in_slow.iter()) {
        for d in doormen.iter() {
            assert_serves(d, cookie, user).await;
        }
    }
}

/// `count` sessions (alternately alice's and bob's) whose records are in `slot`, written
/// through doorman's own store (ids drawn until one hashes there: logging in until then would
/// take thousands of logins), after 20000 filler keys in the same slot, so that moving it takes
/// thousands of MIGRATE round trips. The sessions' `(user, cookie)`.
async fn slow_slot_sessions(
    cluster: &RedisCluster,
    slot: u16,
    count: usize,
) -> Vec<(&'static str, String)> {
    let timeouts = Timeouts {
        idle: Duration::from_secs(30 * 60),
        absolute: Duration::from_secs(12 * 3600),
    };
    let target = RedisTarget::Cluster(ClusterTarget {
        nodes: cluster.seed_urls(),
        password: None,
    });
    let store = RedisStore::new(&target, "dm:", timeouts).expect("store");
    // The fillers first: Redis 7 lists a slot's keys newest first, and redis-cli moves them in
    // that order, so the sessions move at the start of the slot's migration, and ASK answers
    // for them while the fillers follow.
    let tag = (0u32..)
        .map(|n| format!("filler{n}"))
        .find(|t| key_slot(&format!("{{{t}}}")) == slot)
        .expect("a hash tag for the slot");
    let mut owner = cluster.client_for(&format!("{{{tag}}}"));
    let mut fill = redis::pipe();
    for n in 0..20_000 {
        fill.cmd("SET")
            .arg(format!("{{{tag}}}:{n}"))
            .arg(n)
            .ignore();
    }
    let () = fill.query(&mut owner).expect("fill the slow slot");
    let mut sessions = Vec::new();
    while sessions.len() < count {
        let id = SessionId::generate().expect("id");
        let cookie = id.to_cookie_value();
        if key_slot(&record_key(&cookie)) != slot {
            continue;
        }
        let user = if sessions.len() % 2 == 0 {
            "alice"
        } else {
            "bob"
        };
        let record = Record::new(user, vec![], Origin::Login, now_millis(), &timeouts);
        store.create(&id.key(), &record).await.expect("create");
        sessions.push((user, cookie));
    }
    assert_eq!(cluster.slot(&record_key(&sessions[0].1)), slot);
    sessions
}

/// A cluster whose nodes have a password: reached with `redis_cluster = { nodes, password }`
/// and with the password in every seed URL alike; a wrong password fails closed (503).
#[tokio::test]
async fn a_cluster_with_a_password_works_with_either_form_of_redis_cluster() {
    const PW: &str = "cluster-s3cret";
    let cluster = RedisCluster::start_with_password(Some(PW));
    let table = |password: &str| Backend::RedisBy {
        key: "redis_cluster",
        value: format!(
            "{{ nodes = {:?}, password = {password:?} }}",
            cluster.seed_urls()
        ),
        prefix: "dm:".into(),
    };
    let a = Doorman::conf(&Conf::dashboard())
        .backend(table(PW))
        .start()
        .await;
    let in_urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("redis://:{PW}@127.0.0.1:{}", n.port))
        .collect();
    let b = Doorman::conf(&Conf::dashboard())
        .backend(Backend::cluster(&in_urls))
        .users(a.users())
        .start()
        .await;

    let from_a = a.log_in("alice", ALICE_PW).await;
    let from_b = b.log_in("bob", BOB_PW).await;
    for d in [&a, &b] {
        assert_serves(d, &from_a, "alice").await;
        assert_serves(d, &from_b, "bob").await;
    }
    let key = record_key(&from_a);
    let exists: i64 = query(&mut cluster.client_for(&key), &["EXISTS", &key]);
    assert_eq!(exists, 1);

    let wrong = Doorman::conf(&Conf::dashboard())
        .backend(table("wrong"))
        .users(a.users())
        .start()
        .await;
    assert_eq!(wrong.get("/dashboard", Some(&from_a)).await.status, 503);
    let login = post_login(&wrong.client, &wrong.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 503, "{}", login.text());
}
