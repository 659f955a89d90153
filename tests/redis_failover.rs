//! A Redis master dies (`kill -9`) under doorman (DESIGN.md §13): Sentinel promotes a replica,
//! doorman follows it by itself, and nothing gets through a protected route without a valid
//! session meanwhile. Creation, logout and revoke wait for a replica (`WAIT 1 100`), so a
//! logout acknowledged before the master died stays a logout on the new master.

mod support;

use std::time::{Duration, Instant};

use support::login::{post_logout, Backend, Conf, ALICE_PW};
use support::redis::{query, RedisServer};
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

/// The record key of the session whose cookie is `cookie` (`dm:s:{hex(sha256(id))}`).
fn record_key(cookie: &str) -> String {
    use base64::Engine;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cookie)
        .expect("base64url cookie");
    let digest = ring::digest::digest(&ring::digest::SHA256, &id);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("dm:s:{hex}")
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
