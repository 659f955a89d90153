//! `rediss://`: the Redis store over TLS (rustls, ring), against a real `redis-server` speaking
//! TLS with a test certificate; and `redis_sentinel`'s `tls = true`, the master a Sentinel names
//! reached over TLS.
//!
//! The store trusts what the system trusts (the redis crate reads the platform store through
//! rustls-native-certs, which honours `SSL_CERT_FILE`). The test points `SSL_CERT_FILE` at its
//! own CA, which changes the process environment: that is why this is its own test binary with
//! a single test.

mod support;

use std::time::Duration;

use doorman::config::{RedisTarget, SentinelTarget};
use doorman::session::redis::RedisStore;
use doorman::session::{now_millis, Origin, Record, SessionId, SessionStore, Timeouts};
use support::redis::{RedisServer, TlsFiles};

#[tokio::test]
async fn rediss_works_and_verifies_the_server_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = support::temp_dir("redis-tls");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("certificate");
    let tls = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&tls.cert, cert.cert.pem()).unwrap();
    std::fs::write(&tls.key, cert.signing_key.serialize_pem()).unwrap();
    let redis = RedisServer::start_tls(tls.clone());
    let t = Timeouts {
        idle: Duration::from_secs(60),
        absolute: Duration::from_secs(600),
    };
    let target = RedisTarget::Standalone(redis.tls_url());
    let key = SessionId::generate().unwrap().key();
    let record = Record::new("alice", vec!["ops".into()], Origin::Login, now_millis(), &t);

    // Not trusted yet (the certificate is in no trust store): refused, never used unverified.
    std::env::set_var("SSL_CERT_FILE", dir.join("empty.pem"));
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let untrusted = RedisStore::new(&target, "t:", t).expect("store");
    assert!(
        untrusted.ping().await.is_err(),
        "an unverified server was accepted"
    );
    assert!(untrusted.create(&key, &record).await.is_err());

    // Trusted: the whole store works over TLS.
    std::env::set_var("SSL_CERT_FILE", &tls.cert);
    let store = RedisStore::new(&target, "t:", t).expect("store");
    store.ping().await.expect("ping over TLS");
    store.create(&key, &record).await.expect("create over TLS");
    assert_eq!(
        store.lookup(&key, now_millis()).await.unwrap(),
        Some(record.clone())
    );
    let user: String = redis::cmd("HGET")
        .arg(format!("t:s:{}", key.hex()))
        .arg("user")
        .query(&mut redis.client())
        .unwrap();
    assert_eq!(user, "alice", "written to this server");
    assert_eq!(store.delete_user("alice").await.unwrap(), 1);

    // The store's port speaks only TLS: a plain client gets nowhere there.
    let plain_url = redis.tls_url().replace("rediss://", "redis://");
    let plain = RedisStore::new(&RedisTarget::Standalone(plain_url), "t:", t).expect("store");
    assert!(
        plain.ping().await.is_err(),
        "the TLS port answered plain text"
    );

    // Through a (plain) Sentinel that watches the master on its TLS port: `tls = true` reaches
    // the master it names over TLS; without it, doorman would speak plain text to a TLS port.
    let sentinel = RedisServer::start_sentinel_with(
        redis.tls_port.expect("tls port"),
        "mymaster",
        &format!(
            "tls-replication yes\ntls-cert-file {cert}\ntls-key-file {key}\n\
             tls-ca-cert-file {cert}\ntls-auth-clients no\n",
            cert = tls.cert.display(),
            key = tls.key.display()
        ),
    );
    let through = |tls: bool| {
        let target = RedisTarget::Sentinel(SentinelTarget {
            master: "mymaster".into(),
            nodes: vec![sentinel.url()],
            tls,
            ..SentinelTarget::default()
        });
        RedisStore::new(&target, "t:", t).expect("store")
    };
    let store = through(true);
    let mut reached = store.ping().await;
    for _ in 0..50 {
        if reached.is_ok() {
            break;
        }
        // The Sentinel may not have reached the master yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
        reached = store.ping().await;
    }
    reached.expect("the master over TLS, found through the Sentinel");
    store.create(&key, &record).await.expect("create over TLS");
    assert!(store.lookup(&key, now_millis()).await.unwrap().is_some());
    assert!(
        through(false).ping().await.is_err(),
        "the TLS port answered plain text through the Sentinel"
    );
}
