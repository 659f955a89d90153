//! Doorman on Redis through Sentinel with credentials and a database (DESIGN.md §13):
//! `redis_sentinel = { master, nodes, password, sentinel_password, db }`, against a real master
//! and replica with `requirepass` and a real Sentinel with a `requirepass` of its own (and
//! `sentinel auth-pass`, so it can watch the master).
//!
//! The keys must land in the configured database, each password must really be the one used
//! where it belongs (a wrong one fails closed), and neither may appear in doorman's log.

mod support;

use std::time::{Duration, Instant};

use support::cache::until_cached;
use support::login::{
    post_login, upstream_saw, users_toml, write_users, Backend, Conf, ALICE_PW, BOB_PW,
};
use support::redis::{command_calls, query, record_key, RedisServer};
use support::{eventually, Doorman, DoormanProcess, Upstream};

/// The master's and replica's `requirepass`.
const DATA_PW: &str = "data-s3cret";
/// The Sentinel's own `requirepass`.
const SENTINEL_PW: &str = "sentinel-s3cret";

/// A master and a replica with [`DATA_PW`], and a Sentinel with [`SENTINEL_PW`] watching the
/// master as `mymaster`, once the replica is in sync.
fn protected_sentinel() -> (RedisServer, RedisServer, RedisServer) {
    let auth = ["--requirepass", DATA_PW, "--masterauth", DATA_PW];
    let master = RedisServer::start_with(&auth);
    let port = master.port.to_string();
    let mut replica_args = vec!["--replicaof", "127.0.0.1", &port];
    replica_args.extend(auth);
    let replica = RedisServer::start_with(&replica_args);
    let sentinel = RedisServer::start_sentinel_with(
        master.port,
        "mymaster",
        &format!("sentinel auth-pass mymaster {DATA_PW}\nrequirepass {SENTINEL_PW}\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !query::<String>(&mut authed(&replica, None), &["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Both really want their password: without it, nothing is answered.
    for node in [&master, &sentinel] {
        let refused = redis::cmd("PING").query::<String>(&mut node.client());
        assert!(
            refused.as_ref().is_err_and(|e| e.code() == Some("NOAUTH")),
            "{refused:?}"
        );
    }
    (master, replica, sentinel)
}

/// A connection to a data node, authenticated, in database `db` (0 when `None`).
fn authed(node: &RedisServer, db: Option<u32>) -> redis::Connection {
    let mut conn = node.client();
    let () = query(&mut conn, &["AUTH", DATA_PW]);
    let () = query(&mut conn, &["SELECT", &db.unwrap_or(0).to_string()]);
    conn
}

/// The `redis_sentinel` table for `sentinel`, with these passwords and `db = 3`.
fn table(sentinel: &RedisServer, password: &str, sentinel_password: &str) -> String {
    format!(
        "{{ master = \"mymaster\", nodes = [{:?}], password = {password:?}, \
         sentinel_password = {sentinel_password:?}, db = 3 }}",
        sentinel.url()
    )
}

/// With both passwords right, sessions work and live in database 3 of the master (and nothing
/// of doorman's in database 0); the Sentinel password may also be given in the Sentinel's URL;
/// `doorman sessions revoke` (its own process, the same config) reaches them too.
#[tokio::test]
async fn sentinel_with_passwords_keeps_sessions_in_the_configured_db() {
    let (master, replica, sentinel) = protected_sentinel();
    let a = Doorman::conf(&Conf::dashboard())
        .backend(Backend::sentinel(&table(&sentinel, DATA_PW, SENTINEL_PW)))
        .start()
        .await;
    let in_url = format!(
        "{{ master = \"mymaster\", nodes = [\"redis://:{SENTINEL_PW}@127.0.0.1:{}\"], \
         password = {DATA_PW:?}, db = 3 }}",
        sentinel.port
    );
    let b = Doorman::conf(&Conf::dashboard())
        .backend(Backend::sentinel(&in_url))
        .users(a.users())
        .start()
        .await;

    let alice = a.log_in("alice", ALICE_PW).await;
    let bob = b.log_in("bob", BOB_PW).await;
    for d in [&a, &b] {
        for (cookie, user) in [(&alice, "alice"), (&bob, "bob")] {
            let answer = d.get("/dashboard", Some(cookie)).await;
            assert_eq!(upstream_saw(&answer, "x-auth-user"), [user]);
        }
    }
    let key = record_key(&alice);
    let in_3: i64 = query(&mut authed(&master, Some(3)), &["EXISTS", &key]);
    assert_eq!(in_3, 1, "the record is not in db 3 of the master");
    let in_0: Vec<String> = query(&mut authed(&master, None), &["KEYS", "dm:*"]);
    assert!(in_0.is_empty(), "doorman wrote to db 0: {in_0:?}");
    let index: i64 = query(&mut authed(&master, Some(3)), &["EXISTS", "dm:u:alice"]);
    assert_eq!(index, 1);
    // Replicated like any write (the replica holds db 3 too): it was written to the master.
    let replicated = eventually(
        Duration::from_secs(5),
        async || query::<i64>(&mut authed(&replica, Some(3)), &["EXISTS", &key]),
        |n| *n == 1,
    )
    .await;
    assert_eq!(replicated, 1);

    let (code, out, err) = a.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 1 session"), "{out}");
    assert_eq!(b.get("/dashboard", Some(&alice)).await.status, 401);
    let left: i64 = query(&mut authed(&master, Some(3)), &["EXISTS", &key]);
    assert_eq!(left, 0);
}

/// Each password is the one used where it belongs: a wrong `sentinel_password` (the Sentinel
/// refuses to say where the master is) or a wrong `password` (the master refuses the
/// connection) fails closed with 503, and no login gets through.
#[tokio::test]
async fn a_wrong_sentinel_or_data_password_fails_closed() {
    let (_master, _replica, sentinel) = protected_sentinel();
    let users = write_users(&users_toml());
    for (password, sentinel_password) in [(DATA_PW, "wrong"), ("wrong", SENTINEL_PW)] {
        let d = Doorman::conf(&Conf::dashboard())
            .backend(Backend::sentinel(&table(
                &sentinel,
                password,
                sentinel_password,
            )))
            .users(&users)
            .start()
            .await;
        let login = post_login(&d.client, &d.base, "alice", ALICE_PW, None, &[]).await;
        assert_eq!(
            login.status,
            503,
            "password {password}, sentinel_password {sentinel_password}: {}",
            login.text()
        );
    }
}

/// The real binary on a wrong data password: it logs the failure, and neither password.
#[tokio::test]
async fn doormans_log_never_shows_a_redis_password() {
    let (_master, _replica, sentinel) = protected_sentinel();
    let upstream = Upstream::start().await;
    let users = write_users(&users_toml());
    let backend = Backend::sentinel(&table(&sentinel, "wrong-data-s3cret", SENTINEL_PW));
    let toml = Conf::dashboard()
        .for_binary()
        .toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let client = support::h1_client();
    let base = format!("http://{}", doorman.addr);
    let login = post_login(&client, &base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 503, "{}", login.text());
    let failed =
        |logs: &String| logs.contains("status=503") && logs.contains("authentication failed");
    let logs = eventually(Duration::from_secs(5), async || doorman.logs(), failed).await;
    assert!(failed(&logs), "the failure is not logged:\n{logs}");
    for secret in ["wrong-data-s3cret", SENTINEL_PW] {
        assert!(!logs.contains(secret), "{secret} in the log:\n{logs}");
    }
}

/// `cache = true` on the same protected Sentinel: the tracking connection finds the master
/// with the same credentials (else the cache would never be trusted and every request would
/// cost a lookup), and a revoke through the other doorman ends the cached session at once.
#[tokio::test]
async fn the_session_cache_tracks_a_protected_master_in_db_3() {
    let (master, _replica, sentinel) = protected_sentinel();
    let backend = Backend::sentinel(&table(&sentinel, DATA_PW, SENTINEL_PW));
    let cached = Conf {
        session: "cache = true\n".into(),
        ..Conf::dashboard()
    };
    let a = Doorman::conf(&Conf::dashboard())
        .backend(backend.clone())
        .start()
        .await;
    let c = Doorman::conf(&cached)
        .backend(backend)
        .users(a.users())
        .start()
        .await;
    let cookie = a.log_in("alice", ALICE_PW).await;
    let lookups = || {
        command_calls(&mut authed(&master, None))
            .get("hmget")
            .copied()
            .unwrap_or(0)
    };
    until_cached(&c, lookups, &cookie).await;
    let answer = c.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    let (code, out, err) = a.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    let revoked = Instant::now();
    while c.get("/dashboard", Some(&cookie)).await.status != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(3),
            "the cached session outlived its revoke"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
