//! Sessions from the operator's side, through the real binary: `doorman hash-password`,
//! `doorman sessions revoke` on the embedded store (with doorman running, through its control
//! socket, and with doorman stopped, in the file itself), the embedded store after `kill -9`,
//! and the session id kept out of the logs.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use support::login::{
    form_encode, get_as, log_in, post_login, post_logout, unknown_id, upstream_saw, users_toml,
    write_users, Backend, Conf, HttpClient, ALICE_PW, BOB_PW, COOKIE,
};
use support::{h1_client, Doorman, DoormanProcess, Upstream};

/// `doorman ARGS` on another thread (a running in-process doorman must keep serving meanwhile).
async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::process::run_cli(&args)
    })
    .await
    .expect("cli thread")
}

/// `doorman sessions revoke --user USER --config CONFIG`.
async fn revoke(user: &str, config: &std::path::Path) -> (i32, String, String) {
    let config = config.to_str().expect("utf-8 path").to_string();
    cli(["sessions", "revoke", "--user", user, "--config", &config]
        .map(String::from)
        .to_vec())
    .await
}

/// SIGTERM the binary and wait for a clean exit.
fn stop(mut process: DoormanProcess) {
    process.signal(libc::SIGTERM);
    let status = process
        .wait_exit(Duration::from_secs(15))
        .expect("doorman did not exit on SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", process.logs());
}

/// Users get their password hashes from `doorman hash-password`: what it prints must be an
/// Argon2id PHC string (salted: the same password twice gives two hashes) that doorman then
/// accepts in a users file.
#[tokio::test]
async fn hash_password_prints_an_argon2id_hash_doorman_logs_in_with() {
    let hash = |password: &str| {
        let mut child = Command::new(support::process::binary())
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hash-password");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write password");
        let out = child.wait_with_output().expect("hash-password");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    let password = "carol's long passphrase";
    let phc = hash(password);
    let parsed: argon2::password_hash::phc::PasswordHash =
        phc.parse().unwrap_or_else(|e| panic!("{phc:?}: {e}"));
    assert_eq!(parsed.algorithm.as_str(), "argon2id", "{phc}");
    assert_eq!(parsed.version, Some(19), "{phc}");
    assert!(parsed.salt.is_some() && parsed.hash.is_some(), "{phc}");
    for param in ["m", "t", "p"] {
        assert!(
            parsed.params.iter().any(|(k, _)| k.as_str() == param),
            "{phc}: no {param}"
        );
    }
    assert!(!phc.contains(password));
    assert_ne!(hash(password), phc, "unsalted");

    let users = write_users(&format!(
        "[users.carol]\npassword = {phc:?}\ngroups = [\"ops\"]\n"
    ));
    let s = Doorman::conf(&Conf::dashboard())
        .users(&users)
        .start()
        .await;
    let wrong = post_login(&s.client, &s.base, "carol", "not it", None, &[]).await;
    assert_eq!(wrong.status, 401);
    let cookie = s.log_in("carol", password).await;
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["carol"]);
    assert_eq!(upstream_saw(&answer, "x-auth-groups"), ["ops"]);
}

/// With doorman running, the embedded file is locked by it; revoke must reach the running
/// doorman (its control socket) and take effect at once — including for sessions it has in
/// its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_revoke_reaches_a_running_doorman_on_the_embedded_store() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let alice1 = s.log_in("alice", ALICE_PW).await;
    let alice2 = s.log_in("alice", ALICE_PW).await;
    let bob = s.log_in("bob", BOB_PW).await;
    for cookie in [&alice1, &alice2, &bob] {
        assert_eq!(s.get("/dashboard", Some(cookie)).await.status, 200);
    }
    let Backend::Embedded(store) = s.backend() else {
        unreachable!()
    };
    let socket = std::path::PathBuf::from(format!("{}.sock", store.display()));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("control socket beside the store")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

    let (code, out, err) = revoke("alice", &s.file).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 2 session"), "{out}");
    for cookie in [&alice1, &alice2] {
        assert_eq!(s.get("/dashboard", Some(cookie)).await.status, 401);
    }
    let answer = s.get("/dashboard", Some(&bob)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);
}

/// DESIGN.md §14: a store whose `<path>.sock` is too long for a Unix socket address (108
/// bytes on Linux) does not stop doorman starting, and `sessions revoke`, another process
/// knowing only the config, still reaches it through that socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_revoke_reaches_a_doorman_whose_store_path_is_too_long_for_a_socket() {
    let mut dir = support::temp_dir("deep-store");
    while dir.as_os_str().len() < 150 {
        dir.push("a-folder-deep-in-the-tree");
    }
    let store = dir.join("sessions.db");
    let socket = std::path::PathBuf::from(format!("{}.sock", store.display()));
    assert!(socket.as_os_str().len() >= 150, "{}", socket.display());
    let upstream = Upstream::start().await;
    let users = write_users(&users_toml());
    let toml = Conf::dashboard().for_binary().toml(
        &upstream.url(),
        &Backend::Embedded(store.clone()),
        &users,
    );
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    let alice1 = log_in(&client, &base, "alice", ALICE_PW).await;
    let alice2 = log_in(&client, &base, "alice", ALICE_PW).await;
    let bob = log_in(&client, &base, "bob", BOB_PW).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("control socket beside the store")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "control socket mode {mode:o}");

    let config = doorman.dir.join("proxy.toml");
    let (code, out, err) = revoke("alice", &config).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 2 session"), "{out}");
    for cookie in [&alice1, &alice2] {
        let answer = get_as(&client, &format!("{base}/dashboard"), Some(cookie), &[]).await;
        assert_eq!(answer.status, 401);
    }
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&bob), &[]).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);
    // The running doorman did it (its audit event), not the CLI in the file, which the
    // running doorman holds locked.
    assert!(
        doorman.logs().contains("control-socket"),
        "{}",
        doorman.logs()
    );
    stop(doorman);
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

/// A clean stop removes the control socket file, also when no connection was open to drain
/// (shutdown used to abort the socket's task before it could remove the file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_removes_the_control_socket_file() {
    let upstream = Upstream::start().await;
    let users = write_users(&users_toml());
    let store = support::temp_dir("stop-socket").join("sessions.db");
    let socket = std::path::PathBuf::from(format!("{}.sock", store.display()));
    let toml = Conf::dashboard().for_binary().toml(
        &upstream.url(),
        &Backend::Embedded(store.clone()),
        &users,
    );
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no control socket at {}; log:\n{}",
            socket.display(),
            doorman.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(doorman);
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

/// With no doorman running, revoke opens the file itself; the next doorman on that file has
/// the sessions gone. (On the way: the file holds no session id, only their hashes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_revoke_without_a_running_doorman_edits_the_file() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let toml = Conf::dashboard()
        .for_binary()
        .toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    let alice = log_in(&client, &base, "alice", ALICE_PW).await;
    let bob = log_in(&client, &base, "bob", BOB_PW).await;
    let config = doorman.dir.join("proxy.toml");
    stop(doorman);
    // A copied store file must not be replayable as cookies: no id in it, raw or encoded.
    let Backend::Embedded(file) = &backend else {
        unreachable!()
    };
    let bytes = std::fs::read(file).expect("store file");
    for cookie in [&alice, &bob] {
        use base64::Engine;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cookie)
            .expect("base64url");
        assert!(!bytes.windows(id.len()).any(|w| w == id.as_slice()));
        assert!(!bytes.windows(cookie.len()).any(|w| w == cookie.as_bytes()));
    }

    let (code, out, err) = revoke("alice", &config).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked 1 session"), "{out}");

    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&alice), &[]).await;
    assert_eq!(answer.status, 401);
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&bob), &[]).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);
}

/// One login over HTTP that tolerates the server dying: the cookie on a 303, else `None`.
async fn try_log_in(client: &HttpClient, base: &str, user: &str, password: &str) -> Option<String> {
    let form = format!(
        "username={}&password={}",
        form_encode(user),
        form_encode(password)
    );
    let req = http::Request::post(format!("{base}/_doorman/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .expect("request");
    let resp = client.request(req).await.ok()?;
    if resp.status() != 303 {
        return None;
    }
    let line = resp.headers().get("set-cookie")?.to_str().ok()?.to_string();
    Some(support::login::cookie_value(&line))
}

/// The embedded store's promise: a session a client was told about (its 303 arrived) survives
/// a `kill -9` of doorman in the middle of writing logins, and the file opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_every_acknowledged_login_after_kill_9() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let toml = Conf::dashboard()
        .for_binary()
        .toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let issued: Arc<Mutex<Vec<(&'static str, String)>>> = Arc::default();

    let mut writers = Vec::new();
    for (user, password) in [("alice", ALICE_PW), ("bob", BOB_PW)] {
        let issued = Arc::clone(&issued);
        let base = base.clone();
        writers.push(tokio::spawn(async move {
            let client = h1_client();
            while let Some(cookie) = try_log_in(&client, &base, user, password).await {
                issued.lock().expect("lock").push((user, cookie));
            }
        }));
    }
    // Let logins land, then kill doorman while the writers are mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while issued.lock().expect("lock").len() < 12 {
        assert!(std::time::Instant::now() < deadline, "logins too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doorman.signal(libc::SIGKILL);
    for w in writers {
        w.await.expect("writer");
    }
    drop(doorman);
    let issued = issued.lock().expect("lock").clone();

    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    for (user, cookie) in &issued {
        let answer = get_as(&client, &format!("{base}/dashboard"), Some(cookie), &[]).await;
        assert_eq!(
            answer.status,
            200,
            "{user}'s acknowledged session was lost ({} issued)",
            issued.len()
        );
        assert_eq!(upstream_saw(&answer, "x-auth-user"), [*user]);
    }
    // The reopened store takes new logins too.
    log_in(&client, &base, "alice", ALICE_PW).await;
}

/// The session id is a bearer credential: even at debug level, doorman's logs must never
/// contain it (nor a password), whatever the request did with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_id_never_appears_in_the_logs() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let toml = Conf::dashboard()
        .for_binary()
        .toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn_with(&toml, &[], |cmd| {
        cmd.env("RUST_LOG", "debug");
    });
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();

    let cookie = log_in(&client, &base, "alice", ALICE_PW).await;
    let url = |p: &str| format!("{base}{p}");
    for path in [
        "/dashboard",
        "/home",
        "/_doorman/session",
        "/dashboard/x?y=1",
    ] {
        let answer = get_as(&client, &url(path), Some(&cookie), &[]).await;
        assert_eq!(answer.status, 200, "{path}");
    }
    let stale = unknown_id();
    get_as(&client, &url("/dashboard"), Some(&stale), &[]).await;
    get_as(&client, &url("/home"), Some(&stale), &[]).await;
    let doubled = format!("{COOKIE}={cookie}; {COOKIE}={cookie}");
    get_as(&client, &url("/dashboard"), None, &[("cookie", &doubled)]).await;
    let again = format!("{COOKIE}={cookie}");
    let rotated = post_login(
        &client,
        &base,
        "alice",
        ALICE_PW,
        None,
        &[("cookie", &again)],
    )
    .await
    .new_cookie(COOKIE);
    post_login(&client, &base, "alice", "wrong-password", None, &[]).await;
    post_logout(&client, &base, &rotated, &[]).await;
    get_as(&client, &url("/dashboard"), Some(&rotated), &[]).await;

    let logs = doorman.logs();
    assert!(
        logs.contains("login") && logs.contains("DEBUG"),
        "expected debug logs:\n{logs}"
    );
    for secret in [&cookie, &rotated, &stale] {
        assert!(
            !logs.contains(secret.as_str()),
            "session id in the log:\n{logs}"
        );
    }
    for password in [ALICE_PW, "wrong-password"] {
        assert!(!logs.contains(password), "password in the log:\n{logs}");
    }
}
