//! Operations over real sockets, in-process: the admin listener (health, readiness, metrics),
//! readiness following a real redis-server, every metric family moving with its event, and
//! reload keeping sessions while dropping removed users.

mod support;

use std::time::Duration;

use support::login::{
    get_as, post_login, post_logout, request, unknown_id, users_toml, users_toml_with_alice,
    write_users, Backend, Conf, ALICE_PW, BOB_PW, DASHBOARD,
};
use support::ops::{get, Exposition};
use support::redis::RedisServer;
use support::{eventually, h1_client, Doorman, Upstream};

/// `/pub` is public, `/dashboard` and everything else need a session; failures throttle after
/// two.
fn conf() -> Conf {
    Conf {
        rest: format!(
            "[access]\ndefault = \"authenticated\"\n\n{DASHBOARD}\n[[routes]]\npath = \"/pub\"\naccess = \"public\"\n"
        ),
        login: "max_failures = 2\nhandoff_paths = [\"/app-login\"]".into(),
        ..Conf::default()
    }
}

async fn start(backend: &Backend, conf: &Conf) -> (Upstream, Doorman) {
    let upstream = Upstream::start().await;
    let users = write_users(&users_toml());
    let doorman = Doorman::toml(&conf.toml(&upstream.url(), backend, &users))
        .admin()
        .start()
        .await;
    (upstream, doorman)
}

/// The admin listener answers its three paths and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_health_readiness_and_metrics_and_nothing_else() {
    let (_upstream, doorman) = start(&Backend::embedded(), &conf()).await;
    let client = h1_client();

    let health = get(&client, &doorman.admin_url("/healthz")).await;
    assert_eq!(
        (health.status.as_u16(), health.text().as_str()),
        (200, "ok\n")
    );
    let ready = get(&client, &doorman.admin_url("/readyz")).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text().as_str()),
        (200, "ready\n")
    );

    // Request series appear with their first request (routes are not known before).
    assert_eq!(get(&client, &doorman.url("/pub")).await.status, 200);
    let metrics = doorman.metrics(&client).await;
    assert_eq!(
        metrics.get("doorman_logins_total", &[("result", "throttled")]),
        0.0
    );
    assert!(
        metrics.has("doorman_logins_total"),
        "result series exist at 0"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metrics.get("doorman_build_info", &[("version", version)]),
        1.0
    );
    for (family, kind) in [
        ("doorman_requests", "counter"),
        ("doorman_request_duration_seconds", "histogram"),
        ("doorman_upstream_duration_seconds", "histogram"),
        ("doorman_session_lookups", "counter"),
        ("doorman_logins", "counter"),
        ("doorman_store_errors", "counter"),
        ("doorman_open_connections", "gauge"),
        ("doorman_config_reloads", "counter"),
        ("doorman_build_info", "gauge"),
    ] {
        assert_eq!(
            metrics.types.get(family).map(String::as_str),
            Some(kind),
            "{family}: {:?}",
            metrics.types
        );
    }

    for path in [
        "/",
        "/metrics/x",
        "/healthz/",
        "/_doorman/login",
        "/dashboard",
    ] {
        let answer = get(&client, &doorman.admin_url(path)).await;
        assert_eq!(answer.status, 404, "admin {path}");
    }
    let post = request(&client, "POST", &doorman.admin_url("/healthz"), &[], "").await;
    assert_eq!(post.status, 405);
}

/// `/healthz`, `/readyz` and `/metrics` on the public port are ordinary paths: the access rules
/// apply (401 without a session) or, on a public route, the upstream answers. Doorman's admin
/// answers never appear there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoints_are_not_reachable_through_the_public_listener() {
    let (upstream, doorman) = start(&Backend::embedded(), &conf()).await;
    let client = h1_client();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = get(&client, &doorman.url(path)).await;
        assert_eq!(answer.status, 401, "{path}: {}", answer.text());
        assert!(!answer.text().contains("doorman_"), "{path}");
    }
    // With every path public, they reach the app.
    let open = Conf {
        rest: "[access]\ndefault = \"public\"\n".into(),
        ..Conf::default()
    };
    let (upstream2, doorman2) = start(&Backend::embedded(), &open).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = get(&client, &doorman2.url(path)).await;
        assert_eq!(answer.status, 200, "{path}");
        let echo = support::echoed(&answer.body);
        assert_eq!(echo["uri"], path, "the app answered {path}");
    }
    assert_eq!(upstream2.seen_paths(), ["/healthz", "/readyz", "/metrics"]);
    assert!(upstream.seen_paths().is_empty());
}

/// Readiness follows the session store: a stopped redis-server turns `/readyz` to 503 with a
/// one-line reason, and starting it again turns it back to 200 without restarting doorman.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_redis_server_stopped_and_started() {
    let mut redis = RedisServer::start();
    let (_upstream, doorman) = start(&Backend::redis(&redis), &conf()).await;
    let client = h1_client();
    let url = doorman.admin_url("/readyz");
    let ready = eventually(
        Duration::from_secs(10),
        async || get(&client, &url).await,
        |a| a.status == 200,
    )
    .await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    redis.stop();
    let down = eventually(
        Duration::from_secs(10),
        async || get(&client, &url).await,
        |a| a.status == 503,
    )
    .await;
    assert_eq!(down.status, 503, "{}", down.text());
    let reason = down.text();
    assert!(reason.starts_with("not ready: "), "{reason}");
    assert_eq!(reason.trim_end().lines().count(), 1, "one line: {reason:?}");
    // Liveness is not readiness: the process still serves.
    assert_eq!(
        get(&client, &doorman.admin_url("/healthz")).await.status,
        200
    );

    redis.start_again();
    let back = eventually(
        Duration::from_secs(15),
        async || get(&client, &url).await,
        |a| a.status == 200,
    )
    .await;
    assert_eq!(back.status, 200, "{}", back.text());
}

/// The difference of one sample between two scrapes.
fn delta(before: &Exposition, after: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

/// Each family moves when its event happens, and only the labels of that event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_metric_family_moves_when_its_event_happens() {
    let (_upstream, doorman) = start(&Backend::embedded(), &conf()).await;
    let client = h1_client();
    let base = doorman.url("");
    let m0 = doorman.metrics(&client).await;

    // A public request forwarded: requests by route and class, both histograms, a miss.
    assert_eq!(get(&client, &doorman.url("/pub/x")).await.status, 200);
    let m1 = doorman.metrics(&client).await;
    let reqs = "doorman_requests_total";
    assert_eq!(
        delta(
            &m0,
            &m1,
            reqs,
            &[("route", "/pub"), ("status_class", "2xx")]
        ),
        1.0
    );
    assert_eq!(
        delta(&m0, &m1, "doorman_request_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        delta(&m0, &m1, "doorman_upstream_duration_seconds_count", &[]),
        1.0
    );
    let lookups = "doorman_session_lookups_total";
    assert_eq!(delta(&m0, &m1, lookups, &[("result", "miss")]), 1.0);

    // A protected route without a session: 4xx on that route, not forwarded.
    assert_eq!(get(&client, &doorman.url("/dashboard")).await.status, 401);
    // A path no route matches: the default rule.
    assert_eq!(get(&client, &doorman.url("/elsewhere")).await.status, 401);
    let m2 = doorman.metrics(&client).await;
    assert_eq!(
        delta(
            &m1,
            &m2,
            reqs,
            &[("route", "/dashboard"), ("status_class", "4xx")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &m1,
            &m2,
            reqs,
            &[("route", "default"), ("status_class", "4xx")]
        ),
        1.0
    );
    assert_eq!(
        delta(&m1, &m2, "doorman_upstream_duration_seconds_count", &[]),
        0.0
    );

    // Logins: success, bad credentials, throttled, cross-site.
    let logins = "doorman_logins_total";
    let alice = support::login::log_in(&client, &base, "alice", ALICE_PW).await;
    for _ in 0..2 {
        let a = post_login(&client, &base, "bob", "wrong", None, &[]).await;
        assert_eq!(a.status, 401);
    }
    let throttled = post_login(&client, &base, "bob", BOB_PW, None, &[]).await;
    assert_eq!(throttled.status, 429);
    let cross = post_login(
        &client,
        &base,
        "alice",
        ALICE_PW,
        None,
        &[("origin", "http://evil.test")],
    )
    .await;
    assert_eq!(cross.status, 403);
    let m3 = doorman.metrics(&client).await;
    assert_eq!(delta(&m2, &m3, logins, &[("result", "success")]), 1.0);
    assert_eq!(
        delta(&m2, &m3, logins, &[("result", "bad_credentials")]),
        2.0
    );
    assert_eq!(delta(&m2, &m3, logins, &[("result", "throttled")]), 1.0);
    assert_eq!(delta(&m2, &m3, logins, &[("result", "cross_site")]), 1.0);
    assert_eq!(
        delta(
            &m2,
            &m3,
            reqs,
            &[("route", "doorman"), ("status_class", "3xx")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &m2,
            &m3,
            reqs,
            &[("route", "doorman"), ("status_class", "4xx")]
        ),
        4.0
    );

    // Session lookups: a hit, an id the store does not hold, a malformed cookie.
    let hit = get_as(&client, &doorman.url("/dashboard"), Some(&alice), &[]).await;
    assert_eq!(hit.status, 200);
    let unknown = get_as(
        &client,
        &doorman.url("/dashboard"),
        Some(&unknown_id()),
        &[],
    )
    .await;
    assert_eq!(unknown.status, 401);
    let garbage = get_as(&client, &doorman.url("/dashboard"), Some("garbage"), &[]).await;
    assert_eq!(garbage.status, 401);
    let m4 = doorman.metrics(&client).await;
    assert_eq!(delta(&m3, &m4, lookups, &[("result", "hit")]), 1.0);
    assert_eq!(delta(&m3, &m4, lookups, &[("result", "expired")]), 1.0);
    assert_eq!(delta(&m3, &m4, lookups, &[("result", "miss")]), 1.0);
    assert_eq!(delta(&m3, &m4, lookups, &[("result", "store_error")]), 0.0);
    assert_eq!(delta(&m3, &m4, "doorman_store_errors_total", &[]), 0.0);

    // A logged-out session is one the store no longer holds.
    assert_eq!(post_logout(&client, &base, &alice, &[]).await.status, 303);
    let m5 = doorman.metrics(&client).await;
    let after = get_as(&client, &doorman.url("/dashboard"), Some(&alice), &[]).await;
    assert_eq!(after.status, 401);
    let m6 = doorman.metrics(&client).await;
    assert_eq!(delta(&m5, &m6, lookups, &[("result", "expired")]), 1.0);

    // Open connections: one more while a raw connection is open, back when it closes.
    let open = "doorman_open_connections";
    let before = doorman.metrics(&client).await.get(open, &[]);
    let mut raw = support::raw::RawConn::connect(doorman.addr).await;
    assert!(raw.send(&support::raw::get_request("/pub/raw")).await);
    let resp = raw
        .response(Duration::from_secs(5))
        .await
        .expect("response");
    assert_eq!(resp.status, 200);
    assert_eq!(doorman.metrics(&client).await.get(open, &[]), before + 1.0);
    drop(raw);
    let closed = eventually(
        Duration::from_secs(10),
        async || doorman.metrics(&client).await.get(open, &[]),
        |v| *v == before,
    )
    .await;
    assert_eq!(closed, before);

    // Reloads: a good file, then a broken one.
    let reloads = "doorman_config_reloads_total";
    let r0 = doorman.metrics(&client).await;
    assert!(doorman.reload().await);
    std::fs::write(&doorman.file, "[listen]\nnot_a_key = 1\n").expect("break config");
    assert!(!doorman.reload().await);
    let r1 = doorman.metrics(&client).await;
    assert_eq!(delta(&r0, &r1, reloads, &[("result", "success")]), 1.0);
    assert_eq!(delta(&r0, &r1, reloads, &[("result", "failure")]), 1.0);
}

/// A store outage counts as store errors and as lookups that could not be answered; the
/// protected route fails closed (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_moves_store_errors_and_lookup_errors() {
    let mut redis = RedisServer::start();
    let (_upstream, doorman) = start(&Backend::redis(&redis), &conf()).await;
    let client = h1_client();
    let alice = support::login::log_in(&client, &doorman.url(""), "alice", ALICE_PW).await;
    let m0 = doorman.metrics(&client).await;
    redis.stop();
    let down = get_as(&client, &doorman.url("/dashboard"), Some(&alice), &[]).await;
    assert_eq!(down.status, 503);
    let public = get_as(&client, &doorman.url("/pub"), Some(&alice), &[]).await;
    assert_eq!(public.status, 200, "public routes still work, anonymously");
    let m1 = doorman.metrics(&client).await;
    assert_eq!(delta(&m0, &m1, "doorman_store_errors_total", &[]), 2.0);
    let lookups = "doorman_session_lookups_total";
    assert_eq!(delta(&m0, &m1, lookups, &[("result", "store_error")]), 2.0);
    assert_eq!(delta(&m0, &m1, lookups, &[("result", "hit")]), 0.0);
    assert_eq!(
        delta(
            &m0,
            &m1,
            "doorman_requests_total",
            &[("route", "/dashboard"), ("status_class", "5xx")]
        ),
        1.0
    );
}

/// A reload applies routes and users to new requests and keeps the store: sessions survive,
/// except those of a user removed from the users file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_sessions_and_refuses_removed_users() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let doorman = Doorman::toml(&conf().toml(&upstream.url(), &backend, &users))
        .admin()
        .start()
        .await;
    let client = h1_client();
    let base = doorman.url("");
    let alice = support::login::log_in(&client, &base, "alice", ALICE_PW).await;
    let bob = support::login::log_in(&client, &base, "bob", BOB_PW).await;
    assert_eq!(
        get_as(&client, &doorman.url("/other"), Some(&bob), &[])
            .await
            .status,
        200
    );

    // New file: alice is gone, /other is denied.
    std::fs::write(&users, users_toml_with_alice(None)).expect("users");
    let mut next = conf();
    next.rest
        .push_str("\n[[routes]]\npath = \"/other\"\naccess = \"deny\"\n");
    std::fs::write(&doorman.file, next.toml(&upstream.url(), &backend, &users)).expect("config");
    assert!(doorman.reload().await);

    let bob_after = get_as(&client, &doorman.url("/dashboard"), Some(&bob), &[]).await;
    assert_eq!(bob_after.status, 200, "bob's session survived the reload");
    assert_eq!(
        support::login::upstream_saw(&bob_after, "x-auth-user"),
        ["bob"]
    );
    let alice_after = get_as(&client, &doorman.url("/dashboard"), Some(&alice), &[]).await;
    assert_eq!(alice_after.status, 401, "alice left the users file");
    assert_eq!(
        get_as(&client, &doorman.url("/other"), Some(&bob), &[])
            .await
            .status,
        403
    );
}

/// A request in flight during a reload finishes under the config it started with (it holds the
/// old state); the next request uses the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_under_the_old_config() {
    let upstream = Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let open = Conf::default();
    let doorman = Doorman::toml(&open.toml(&upstream.url(), &backend, &users))
        .admin()
        .start()
        .await;
    let client = h1_client();

    let slow_url = doorman.url("/slow/1500");
    let slow_client = client.clone();
    let in_flight = tokio::spawn(async move { get(&slow_client, &slow_url).await });
    // Wait until the upstream has the request (no sleeping on a guess).
    let arrived = eventually(
        Duration::from_secs(10),
        async || upstream.seen_paths(),
        |paths| paths.iter().any(|p| p == "/slow/1500"),
    )
    .await;
    assert!(arrived.iter().any(|p| p == "/slow/1500"));

    // The new config points at an upstream that is not there.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    std::fs::write(&doorman.file, open.toml(&dead, &backend, &users)).expect("config");
    assert!(doorman.reload().await);
    let after = get(&h1_client(), &doorman.url("/new")).await;
    assert_eq!(after.status, 502, "new requests use the new upstream");

    let finished = in_flight.await.expect("in-flight request");
    assert_eq!(
        finished.status, 200,
        "the old upstream answered the request in flight"
    );
    assert_eq!(support::echoed(&finished.body)["uri"], "/slow/1500");
}
