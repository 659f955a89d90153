//! Operations of the real binary: SIGHUP reload (a changed route takes effect, an invalid file
//! keeps the old config with `doorman check`'s messages in the log, restart-only settings are
//! reported, sessions survive), audit events for every login outcome, and the access log.

mod support;

use std::path::Path;
use std::time::Duration;

use support::login::{
    get_as, log_in, post_login, post_logout, users_toml, users_toml_with_alice, write_users,
    Backend, Conf, ALICE_PW, BOB_PW, COOKIE, DASHBOARD,
};
use support::ops::{records, scrape};
use support::process::run_cli;
use support::{eventually, free_port, h1_client, DoormanProcess, Upstream};

fn conf(extra_rest: &str, admin_port: u16) -> Conf {
    Conf {
        rest: format!(
            "[access]\ndefault = \"authenticated\"\n\n{DASHBOARD}\n[[routes]]\npath = \"/pub\"\naccess = \"public\"\n\n{extra_rest}\n[admin]\naddr = \"127.0.0.1:{admin_port}\"\n"
        ),
        login: "max_failures = 2\nhandoff_paths = [\"/app-login\"]".into(),
        ..Conf::default()
    }
    .for_binary()
}

/// SIGTERM and wait for a clean exit; the whole log.
fn stop(mut process: DoormanProcess) -> String {
    process.signal(libc::SIGTERM);
    let status = process.wait_exit(Duration::from_secs(15));
    let logs = process.logs();
    assert!(status.is_some_and(|s| s.success()), "log:\n{logs}");
    logs
}

/// Wait until the log contains `needle` (or give up after a while); the log.
async fn log_shows(process: &DoormanProcess, needle: &str) -> String {
    eventually(
        Duration::from_secs(10),
        async || process.logs(),
        |l| l.contains(needle),
    )
    .await
}

/// Rewrite the binary's config file with `{addr}` filled in as it was at spawn.
fn rewrite(process: &DoormanProcess, toml: &str) {
    std::fs::write(
        process.dir.join("proxy.toml"),
        toml.replace("{addr}", &process.addr.to_string()),
    )
    .expect("rewrite config");
}

/// SIGHUP with a changed route: new requests follow it, sessions made before survive, a
/// removed user is refused, a changed listener setting is reported as needing a restart, and the
/// reload is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_route_and_users_and_keeps_sessions() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let admin = free_port();
    let v1 = conf(
        "[[routes]]\npath = \"/reports\"\naccess = \"deny\"\n",
        admin,
    );
    let doorman = DoormanProcess::spawn(&v1.toml(&upstream.url(), &backend, &users), &[]);
    let client = h1_client();
    let base = doorman.url("");
    let alice = log_in(&client, &base, "alice", ALICE_PW).await;
    let bob = log_in(&client, &base, "bob", BOB_PW).await;
    assert_eq!(
        get_as(&client, &doorman.url("/reports"), Some(&bob), &[])
            .await
            .status,
        403
    );

    let mut v2 = conf(
        "[[routes]]\npath = \"/reports\"\naccess = \"public\"\n",
        admin,
    );
    v2.listen.push_str("\nmax_connections = 77");
    std::fs::write(&users, users_toml_with_alice(None)).expect("users");
    rewrite(&doorman, &v2.toml(&upstream.url(), &backend, &users));
    doorman.signal(libc::SIGHUP);

    let reports = eventually(
        Duration::from_secs(10),
        async || {
            get_as(&client, &doorman.url("/reports"), None, &[])
                .await
                .status
        },
        |s| *s == 200,
    )
    .await;
    assert_eq!(
        reports,
        200,
        "the new route applies; log:\n{}",
        doorman.logs()
    );
    let bob_after = get_as(&client, &doorman.url("/dashboard"), Some(&bob), &[]).await;
    assert_eq!(bob_after.status, 200, "bob's session survived the reload");
    let alice_after = get_as(&client, &doorman.url("/dashboard"), Some(&alice), &[]).await;
    assert_eq!(
        alice_after.status, 401,
        "alice was removed from the users file"
    );

    let metrics = scrape(&client, &format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(
        metrics.get("doorman_config_reloads_total", &[("result", "success")]),
        1.0
    );
    let logs = stop(doorman);
    let restart = logs
        .lines()
        .find(|l| l.contains("restart to apply it"))
        .unwrap_or_else(|| panic!("no restart notice:\n{logs}"));
    assert!(restart.contains("listen.max_connections"), "{restart}");
    assert!(logs.contains("config reloaded"), "{logs}");
}

/// A file that fails validation on SIGHUP is logged with exactly the lines `doorman check`
/// prints for it, and the old config keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_on_sighup_is_logged_as_check_does_and_the_old_one_keeps_serving() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let admin = free_port();
    let v1 = conf("", admin);
    let doorman = DoormanProcess::spawn(&v1.toml(&upstream.url(), &backend, &users), &[]);
    let client = h1_client();
    assert_eq!(
        get_as(&client, &doorman.url("/pub"), None, &[])
            .await
            .status,
        200
    );

    let broken = conf(
        "[[routes]]\npath = \"/pub\"\naccess = \"nobody\"\nbogus = 1\n",
        admin,
    )
    .toml(&upstream.url(), &backend, &users);
    rewrite(&doorman, &broken);
    let file = doorman.dir.join("proxy.toml");
    let (code, _, expected) = run_cli(&["check", "--config", path_str(&file)]);
    assert_eq!(code, 2, "{expected}");
    let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
    assert!(expected.len() >= 2, "{expected:?}");

    doorman.signal(libc::SIGHUP);
    let logs = log_shows(&doorman, "config reload refused").await;
    for line in &expected {
        assert!(logs.contains(line), "check says {line:?}; log:\n{logs}");
    }
    // The old config still serves: /pub is still public, /dashboard still protected.
    assert_eq!(
        get_as(&client, &doorman.url("/pub"), None, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        get_as(&client, &doorman.url("/dashboard"), None, &[])
            .await
            .status,
        401
    );
    let metrics = scrape(&client, &format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(
        metrics.get("doorman_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(
        metrics.get("doorman_config_reloads_total", &[("result", "success")]),
        0.0
    );
    stop(doorman);
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The one audit record with `event`, asserting there is exactly one.
fn audit<'a>(records: &'a [serde_json::Value], event: &str, logs: &str) -> &'a serde_json::Value {
    let found: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["fields"]["event"] == event)
        .collect();
    assert_eq!(found.len(), 1, "one {event} event; log:\n{logs}");
    &found[0]["fields"]
}

/// Every login outcome, logout, handoff login and logout, and a revoke each write one audit
/// record with the user and the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_outcome_writes_an_audit_event_with_user_and_client() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let handoff = "[[routes]]\npath = \"/app-login\"\naccess = \"public\"\n\n[[routes]]\npath = \"/app-logout\"\naccess = \"public\"\n";
    let toml = conf(handoff, free_port()).toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &["--log-format", "json"]);
    let client = h1_client();
    let base = doorman.url("");

    let alice = log_in(&client, &base, "alice", ALICE_PW).await;
    for _ in 0..2 {
        assert_eq!(
            post_login(&client, &base, "bob", "wrong", None, &[])
                .await
                .status,
            401
        );
    }
    assert_eq!(
        post_login(&client, &base, "bob", BOB_PW, None, &[])
            .await
            .status,
        429
    );
    let cross = [("sec-fetch-site", "cross-site")];
    assert_eq!(
        post_login(&client, &base, "alice", ALICE_PW, None, &cross)
            .await
            .status,
        403
    );
    assert_eq!(post_logout(&client, &base, &alice, &[]).await.status, 303);

    // Handoff: the app logs carol in, then out.
    let handed = get_as(&client, &doorman.url("/app-login?user=carol"), None, &[]).await;
    assert_eq!(handed.status, 200);
    let carol = handed.new_cookie(COOKIE);
    let out = get_as(&client, &doorman.url("/app-logout"), Some(&carol), &[]).await;
    assert_eq!(out.status, 200);
    assert!(out.expires_cookie(COOKIE));

    // Revoke through the CLI, which reaches this doorman's control socket.
    let (code, stdout, stderr) = run_cli(&[
        "sessions",
        "revoke",
        "--user",
        "bob",
        "--config",
        path_str(&doorman.dir.join("proxy.toml")),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    let logs = stop(doorman);
    let events = records(&logs, "doorman::audit");
    let peer = |f: &serde_json::Value| f["peer"].as_str().unwrap_or_default().to_string();
    let logins: Vec<&serde_json::Value> = events
        .iter()
        .filter(|r| r["fields"]["event"] == "login")
        .map(|r| &r["fields"])
        .collect();
    assert_eq!(logins.len(), 1, "{logs}");
    assert!(logins
        .iter()
        .all(|f| f["user"] == "alice" && peer(f).starts_with("127.0.0.1:")));
    assert!(logins
        .iter()
        .all(|f| f["session"].as_str().is_some_and(|s| s.len() == 8)));

    let failures: Vec<&serde_json::Value> = events
        .iter()
        .filter(|r| r["fields"]["event"] == "login_failure")
        .map(|r| &r["fields"])
        .collect();
    let reasons: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| {
            (
                f["reason"].as_str().unwrap_or("?"),
                f["user"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("bad_credentials", "bob"),
            ("bad_credentials", "bob"),
            ("throttled", "bob"),
            ("cross_site", "-"),
        ],
        "{logs}"
    );
    assert!(failures.iter().all(|f| peer(f).starts_with("127.0.0.1:")));

    let logout = audit(&events, "logout", &logs);
    assert_eq!(logout["user"], "alice");
    assert!(peer(logout).starts_with("127.0.0.1:"));
    let handoff_login = audit(&events, "handoff_login", &logs);
    assert_eq!(handoff_login["user"], "carol");
    assert!(peer(handoff_login).starts_with("127.0.0.1:"));
    let handoff_logout = audit(&events, "handoff_logout", &logs);
    assert_eq!(handoff_logout["user"], "carol");
    let revoke = audit(&events, "revoke", &logs);
    assert_eq!(revoke["user"], "bob");
    assert_eq!(revoke["peer"], "control-socket");
    // Session ids never appear, only tags.
    for id in [&alice, &carol] {
        assert!(
            !logs.contains(id.as_str()),
            "a session id leaked into the log"
        );
    }
}

/// One access record per request, with the fields operators filter on: the normalised path,
/// the route, the body bytes sent, the user and a session tag that is not the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_records_carry_route_bytes_user_and_a_session_tag() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let toml = conf("", free_port()).toml(&upstream.url(), &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &["--log-format", "json"]);
    let client = h1_client();
    let alice = log_in(&client, &doorman.url(""), "alice", ALICE_PW).await;
    let seen = get_as(
        &client,
        &doorman.url("/dashboard/./a//b"),
        Some(&alice),
        &[],
    )
    .await;
    assert_eq!(seen.status, 200);
    let download = get_as(&client, &doorman.url("/pub/../download/100000"), None, &[]).await;
    assert_eq!(
        download.status, 401,
        "/download is under the default (authenticated) rule"
    );
    let download = get_as(&client, &doorman.url("/download/100000"), Some(&alice), &[]).await;
    assert_eq!(download.body.len(), 100_000);

    let logs = stop(doorman);
    let access = records(&logs, "doorman::access");
    let find = |path: &str, status: u64| {
        access
            .iter()
            .map(|r| &r["fields"])
            .find(|f| f["path"] == path && f["status"] == status)
            .unwrap_or_else(|| panic!("no access record for {path} {status}:\n{logs}"))
    };
    let dash = find("/dashboard/a/b", 200);
    assert_eq!(dash["route"], "/dashboard");
    assert_eq!(dash["method"], "GET");
    assert_eq!(dash["user"], "alice");
    assert_eq!(dash["bytes"], seen.body.len() as u64);
    assert_eq!(dash["complete"], true);
    assert!(dash["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(dash["duration_ms"].as_f64().is_some());
    let tag = dash["session"].as_str().expect("session tag");
    assert_eq!(tag.len(), 8);
    assert!(!alice.contains(tag), "the tag is not a piece of the id");

    let refused = find("/download/100000", 401);
    assert_eq!(refused["route"], "default");
    assert!(refused.get("user").is_none_or(|u| u.is_null()), "{refused}");
    let big = find("/download/100000", 200);
    assert_eq!(big["bytes"], 100_000);
    assert_eq!(big["user"], "alice");
    let login = access
        .iter()
        .map(|r| &r["fields"])
        .find(|f| f["path"] == "/_doorman/login")
        .expect("login record");
    assert_eq!(login["route"], "doorman");
    assert_eq!(login["status"], 303);
    assert_eq!(login["user"], "alice");
}
