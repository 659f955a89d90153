//! Sessions end to end, over real sockets, on both stores (a redb file and a real
//! `redis-server`): the tutorial's three cases through the binary, the cookie doorman sets and
//! what it does with stale ones, rotation, logout, the session probe, both clocks, and the users
//! file as the source of who may do what.

mod support;

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;

use std::time::Duration;

use support::login::{
    get_as, post_login, post_logout, unknown_id, upstream_saw, users_toml, users_toml_with_alice,
    write_users, Backend, Conf, StoreChoice, ALICE_PW, BOB_PW, COOKIE,
};
use support::raw::RawConn;
use support::redis::RedisServer;
use support::{h1_client, Doorman, DoormanProcess};

/// The tutorial's app (examples/demo/app.rs) on a free port: `/dashboard` greets `X-Auth-User`.
async fn demo_app() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind demo app");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app::serve(listener));
    url
}

/// The redis server (if any) and the backend for `store`.
fn backend_for(store: StoreChoice) -> (Option<RedisServer>, Backend) {
    match store {
        StoreChoice::Embedded => (None, Backend::embedded()),
        StoreChoice::Redis => {
            let redis = RedisServer::start();
            let backend = Backend::redis(&redis);
            (Some(redis), backend)
        }
    }
}

/// SIGTERM the binary and wait for a clean exit, as an operator's restart would.
fn stop(mut process: DoormanProcess) {
    process.signal(libc::SIGTERM);
    let status = process
        .wait_exit(Duration::from_secs(15))
        .expect("doorman did not exit on SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", process.logs());
}

// ---- the tutorial's three cases -----------------------------------------------------------

/// The seed tutorial, done right: without a login the dashboard is refused by doorman (not the
/// app); a login makes the app greet the user it read from `X-Auth-User`; and a restart of
/// doorman keeps the user logged in with the same cookie.
async fn tutorial(store: StoreChoice) {
    let (_redis, backend) = backend_for(store);
    let users = write_users(&users_toml());
    let app = demo_app().await;
    let toml = Conf::dashboard().for_binary().toml(&app, &backend, &users);
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();

    // (1) Not logged in: 401 from doorman, with a challenge.
    let answer = get_as(&client, &format!("{base}/dashboard"), None, &[]).await;
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Doorman realm=\"doorman\"")
    );
    assert!(!answer.text().contains("Welcome"), "{}", answer.text());

    // (2) Log in; the dashboard greets alice because the app read X-Auth-User.
    let login = post_login(&client, &base, "alice", ALICE_PW, Some("/dashboard"), &[]).await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), Some("/dashboard"));
    let cookie = login.new_cookie(COOKIE);
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&cookie), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("Welcome, user alice"),
        "{}",
        answer.text()
    );

    // (3) Restart doorman on the same store: still logged in, same cookie.
    stop(doorman);
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base = format!("http://{}", doorman.addr);
    let answer = get_as(
        &h1_client(),
        &format!("{base}/dashboard"),
        Some(&cookie),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "after restart: {}", answer.text());
    assert!(answer.text().contains("Welcome, user alice"));
}

/// The tutorial's three cases on the default store, a local redb file (no Redis installed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_three_cases_on_the_embedded_store() {
    tutorial(StoreChoice::Embedded).await;
}

/// The tutorial's three cases on Redis, the store replicas share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_three_cases_on_redis() {
    tutorial(StoreChoice::Redis).await;
}

/// In redirect mode a browser's page load is sent to the login form with `next`, and the login
/// brings it back there; a script's fetch gets a 401 it can act on instead of an HTML form.
#[tokio::test]
async fn redirect_mode_sends_page_loads_through_the_login_form_and_back() {
    let conf = Conf {
        rest: "[[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n\
               on_unauthenticated = \"redirect\"\n"
            .into(),
        ..Conf::default()
    };
    let s = Doorman::conf(&conf).start().await;
    let url = s.url("/dashboard/x?y=1");
    let page = get_as(&s.client, &url, None, &[("sec-fetch-mode", "navigate")]).await;
    assert_eq!(page.status, 302);
    let location = page.header("location").expect("location").to_string();
    assert_eq!(location, "/_doorman/login?next=%2Fdashboard%2Fx%3Fy%3D1");
    let form = s.get(&location, None).await;
    assert_eq!(form.status, 200);
    assert!(form.text().contains("<form"), "{}", form.text());

    let login = post_login(
        &s.client,
        &s.base,
        "alice",
        ALICE_PW,
        Some("/dashboard/x?y=1"),
        &[],
    )
    .await;
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/dashboard/x?y=1"));
    let cookie = login.new_cookie(COOKIE);
    assert_eq!(s.get("/dashboard/x?y=1", Some(&cookie)).await.status, 200);

    let fetch = get_as(&s.client, &url, None, &[("sec-fetch-mode", "cors")]).await;
    assert_eq!(fetch.status, 401);
    let json: serde_json::Value = serde_json::from_slice(&fetch.body).expect("json");
    assert_eq!(json["error"], "unauthenticated");
    // Only the one authenticated request reached the app.
    assert_eq!(s.upstream().seen_paths(), ["/dashboard/x?y=1"]);
}

// ---- the cookie -----------------------------------------------------------------------------

/// The cookie is the session's bearer credential: scripts must not read it (`HttpOnly`), other
/// sites must not send it on subrequests (`Lax`), it must cover the whole app (`Path=/`), it
/// ends with the browser session unless configured otherwise, a shared cache must never store a
/// response that sets it, and the app behind doorman must never see it.
#[tokio::test]
async fn the_session_cookie_is_http_only_lax_site_wide_and_never_reaches_the_app() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/"));
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let line = login.set_cookie(COOKIE).expect("Set-Cookie");
    let value = login.new_cookie(COOKIE);
    assert_eq!(value.len(), 43, "{line}");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not base64url: {value}"
    );
    assert_eq!(
        line,
        format!("{COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/")
    );

    // The app gets the identity, never the cookie; other cookies pass untouched.
    let cookies = format!("a=1; {COOKIE}={value}; b=2");
    let answer = get_as(
        &s.client,
        &s.url("/dashboard"),
        None,
        &[("cookie", &cookies)],
    )
    .await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    assert_eq!(upstream_saw(&answer, "x-auth-groups"), ["admin,staff"]);
    assert_eq!(upstream_saw(&answer, "cookie"), ["a=1; b=2"]);
    assert!(
        !answer.text().contains(&value),
        "the app saw the session id"
    );
    // Using a session sets no cookie.
    assert!(answer.set_cookie(COOKIE).is_none());

    // A public page with the session: identity set, cookie stripped.
    let answer = s.get("/home", Some(&value)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    assert!(upstream_saw(&answer, "cookie").is_empty());
}

/// `persistent = true` is the one case a cookie outlives the browser session, and then exactly
/// as long as the session can live (`absolute_timeout`), never longer.
#[tokio::test]
async fn persistent_cookies_live_as_long_as_the_absolute_timeout() {
    let conf = Conf {
        session: "persistent = true\nabsolute_timeout = \"2h\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).start().await;
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    let line = login.set_cookie(COOKIE).expect("Set-Cookie");
    assert!(line.contains("; Max-Age=7200"), "{line}");
    assert!(
        line.contains("HttpOnly") && line.contains("Path=/"),
        "{line}"
    );
    assert_eq!(login.header("cache-control"), Some("no-store"));
}

/// Behind a TLS load balancer (`cookie_secure = "always"`) the cookie is `Secure` and named
/// `__Host-...`, so neither plain HTTP nor a sibling subdomain can plant or overwrite it; with a
/// `cookie_domain` the prefix is `__Secure-` (the only one a Domain attribute allows).
#[tokio::test]
async fn secure_cookies_carry_the_host_or_secure_prefix() {
    let conf = Conf {
        session: "cookie_secure = \"always\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).start().await;
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(login.status, 303, "{}", login.text());
    let name = format!("__Host-{COOKIE}");
    let line = login.set_cookie(&name).expect("__Host- cookie");
    let value = login.new_cookie(&name);
    assert_eq!(
        line,
        format!("{name}={value}; HttpOnly; SameSite=Lax; Secure; Path=/")
    );
    let cookie = format!("{name}={value}");
    let answer = get_as(
        &s.client,
        &s.url("/dashboard"),
        None,
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["alice"]);
    // The unprefixed name means nothing here.
    assert_eq!(s.get("/dashboard", Some(&value)).await.status, 401);
    // A stale prefixed cookie is expired with the same attributes, or the browser would keep it.
    let stale = format!("{name}={}", unknown_id());
    let answer = get_as(&s.client, &s.url("/dashboard"), None, &[("cookie", &stale)]).await;
    assert_eq!(answer.status, 401);
    let line = answer.set_cookie(&name).expect("expiring Set-Cookie");
    assert!(
        line.starts_with(&format!("{name}=;"))
            && line.contains("; Secure")
            && line.contains("; Path=/")
            && line.contains("Max-Age=0"),
        "{line}"
    );

    let conf = Conf {
        session: "cookie_secure = \"always\"\ncookie_domain = \"example.com\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).start().await;
    let login = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    let name = format!("__Secure-{COOKIE}");
    let line = login.set_cookie(&name).expect("__Secure- cookie");
    assert!(
        line.contains("; Secure") && line.contains("; Domain=example.com"),
        "{line}"
    );
}

// ---- rotation, logout, the session probe --------------------------------------------------

/// A session id planted in the browser before login (fixation) must be worthless after it: the
/// session presented at login is destroyed and a different id issued.
#[tokio::test]
async fn login_destroys_the_presented_session_and_issues_a_new_id() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let first = s.log_in("alice", ALICE_PW).await;
    assert_eq!(s.get("/dashboard", Some(&first)).await.status, 200);

    let cookie = format!("{COOKIE}={first}");
    let again = post_login(
        &s.client,
        &s.base,
        "bob",
        BOB_PW,
        None,
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(again.status, 303);
    let second = again.new_cookie(COOKIE);
    assert_ne!(second, first);
    assert_eq!(s.get("/dashboard", Some(&first)).await.status, 401);
    let answer = s.get("/dashboard", Some(&second)).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);

    // A planted id the store never knew is simply replaced.
    let planted = unknown_id();
    let cookie = format!("{COOKIE}={planted}");
    let login = post_login(
        &s.client,
        &s.base,
        "alice",
        ALICE_PW,
        None,
        &[("cookie", &cookie)],
    )
    .await;
    assert_ne!(login.new_cookie(COOKIE), planted);
}

/// Logout must end the session in the store, not just in this browser: a copied cookie is
/// dead afterwards too.
#[tokio::test]
async fn logout_destroys_the_session_and_expires_the_cookie() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let cookie = s.log_in("alice", ALICE_PW).await;
    let out = post_logout(&s.client, &s.base, &cookie, &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/"));
    assert!(out.expires_cookie(COOKIE), "{:?}", out.headers);
    assert_eq!(out.header("cache-control"), Some("no-store"));
    let after = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(after.status, 401);
    assert_eq!(s.get("/_doorman/session", Some(&cookie)).await.status, 401);
}

/// One connection, several cookies: a keep-alive connection (or a gateway's pooled one) that
/// presents alice's cookie twice, then bob's, then none, then alice's again, and alice's after
/// her logout, has each request judged by its own cookie. Doorman keeps a memo of each
/// connection's last cookie and its store key (`cookie::KeyMemo`); it remembers a key, never a
/// session, so the store still decides every request.
#[tokio::test]
async fn each_request_on_one_connection_is_judged_by_its_own_cookie() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let alice = s.log_in("alice", ALICE_PW).await;
    let bob = s.log_in("bob", BOB_PW).await;
    let mut conn = RawConn::connect(s.addr).await;
    let mut ask = async |cookie: Option<&str>| {
        let mut req = "GET /dashboard HTTP/1.1\r\nHost: app.test\r\n".to_string();
        if let Some(value) = cookie {
            req.push_str(&format!("Cookie: a=1; {COOKIE}={value}\r\n"));
        }
        req.push_str("\r\n");
        assert!(
            conn.send(req.as_bytes()).await,
            "doorman closed the connection"
        );
        let resp = conn
            .response(Duration::from_secs(10))
            .await
            .expect("a response on the same connection");
        let user = (resp.status == 200).then(|| {
            let echo = support::echoed(&bytes::Bytes::from(resp.body.clone()));
            support::echoed_header(&echo, "x-auth-user")
        });
        (resp.status, user)
    };
    let as_user = |name: &str| (200, Some(vec![name.to_string()]));
    assert_eq!(ask(Some(&alice)).await, as_user("alice"));
    assert_eq!(ask(Some(&alice)).await, as_user("alice"));
    assert_eq!(ask(Some(&bob)).await, as_user("bob"));
    assert_eq!(ask(None).await, (401, None));
    assert_eq!(ask(Some(&unknown_id())).await, (401, None));
    assert_eq!(ask(Some(&alice)).await, as_user("alice"));
    let out = post_logout(&s.client, &s.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(
        ask(Some(&alice)).await,
        (401, None),
        "ended on another connection"
    );
    assert_eq!(ask(Some(&bob)).await, as_user("bob"));
}

/// Front-end code asks `/_doorman/session` who is logged in: JSON with the user, the groups
/// from the users file, and both times; 401 without a session.
#[tokio::test]
async fn the_session_endpoint_answers_json_or_401() {
    let conf = Conf {
        session: "absolute_timeout = \"2h\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).start().await;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    };
    let before = now();
    let cookie = s.log_in("alice", ALICE_PW).await;
    let answer = s.get("/_doorman/session", Some(&cookie)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(json["user"], "alice");
    assert_eq!(json["groups"], serde_json::json!(["admin", "staff"]));
    let created = json["created"].as_i64().expect("created");
    let expires = json["expires"].as_i64().expect("expires");
    assert!(created >= before - 1 && created <= now() + 1, "{json}");
    assert!((expires - created - 7200).abs() <= 1, "{json}");

    assert_eq!(s.get("/_doorman/session", None).await.status, 401);
    let stale = s.get("/_doorman/session", Some(&unknown_id())).await;
    assert_eq!(stale.status, 401);
    assert!(stale.expires_cookie(COOKIE));
}

// ---- stale cookies ------------------------------------------------------------------------

/// The cookies that name no session: unknown (never issued or already gone), malformed, and
/// two of doorman's name at once (a planted duplicate must not win).
async fn stale_cookie_headers(s: &Doorman) -> Vec<(&'static str, String)> {
    let valid = s.log_in("alice", ALICE_PW).await;
    let other = s.log_in("bob", BOB_PW).await;
    vec![
        ("unknown", format!("{COOKIE}={}", unknown_id())),
        ("malformed", format!("{COOKIE}=not-a-session-id")),
        ("too long", format!("{COOKIE}={valid}A")),
        ("twice, same", format!("{COOKIE}={valid}; {COOKIE}={valid}")),
        (
            "two sessions",
            format!("{COOKIE}={other}; {COOKIE}={valid}"),
        ),
    ]
}

/// On a protected route a stale cookie is answered like no cookie (401 with a challenge), and
/// the browser is told to drop it so it stops sending it.
#[tokio::test]
async fn stale_cookies_on_a_protected_route_get_401_and_are_expired() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    for (what, cookie) in stale_cookie_headers(&s).await {
        let answer = get_as(
            &s.client,
            &s.url("/dashboard"),
            None,
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!(answer.status, 401, "{what}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Doorman realm=\"doorman\""),
            "{what}"
        );
        assert!(
            answer.expires_cookie(COOKIE),
            "{what}: {:?}",
            answer.headers
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{what}");
    }
    assert!(
        s.upstream().seen_paths().is_empty(),
        "{:?}",
        s.upstream().seen_paths()
    );
}

/// On a public route a stale cookie must not block the page: the request goes through
/// anonymously (no identity for the app), and the cookie is expired.
#[tokio::test]
async fn stale_cookies_on_a_public_route_are_forwarded_anonymously_and_expired() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    for (what, cookie) in stale_cookie_headers(&s).await {
        let answer = get_as(&s.client, &s.url("/home"), None, &[("cookie", &cookie)]).await;
        assert!(upstream_saw(&answer, "x-auth-user").is_empty(), "{what}");
        assert!(upstream_saw(&answer, "x-auth-groups").is_empty(), "{what}");
        assert!(upstream_saw(&answer, "cookie").is_empty(), "{what}");
        assert!(
            answer.expires_cookie(COOKIE),
            "{what}: {:?}",
            answer.headers
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{what}");
    }
}

// ---- the two clocks -----------------------------------------------------------------------

const MINUTE: Duration = Duration::from_secs(60);

/// The idle clock slides: a session in use outlives `idle_timeout`, and one left alone for
/// longer than it ends. Time passes on doorman's clock (advanced, not slept): the record's
/// timestamps are judged by it on both stores, and Redis's own TTL (10 min of real time) never
/// runs out during the test.
async fn idle_timeout_slides(store: StoreChoice) {
    let conf = Conf {
        session: "idle_timeout = \"10m\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).store(store).start().await;
    let cookie = s.log_in("alice", ALICE_PW).await;
    let started = s.clock.instant();
    while s.clock.instant() - started < MINUTE * 17 {
        s.clock.advance(MINUTE * 4);
        let answer = s.get("/dashboard", Some(&cookie)).await;
        assert_eq!(
            answer.status,
            200,
            "{store:?}: in use, yet gone after {:?}",
            s.clock.instant() - started
        );
    }
    s.clock.advance(MINUTE * 15);
    let answer = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(answer.status, 401, "{store:?}: idle for 15 min yet alive");
    assert!(answer.expires_cookie(COOKIE));
}

/// Idle expiry on the embedded store.
#[tokio::test]
async fn idle_timeout_slides_with_use_and_ends_an_unused_session_embedded() {
    idle_timeout_slides(StoreChoice::Embedded).await;
}

/// Idle expiry on Redis.
#[tokio::test]
async fn idle_timeout_slides_with_use_and_ends_an_unused_session_redis() {
    idle_timeout_slides(StoreChoice::Redis).await;
}

/// The absolute clock never moves: a stolen cookie kept busy still dies at
/// `absolute_timeout` after login. Time passes on doorman's clock, as above.
async fn absolute_timeout_holds(store: StoreChoice) {
    let conf = Conf {
        session: "idle_timeout = \"10m\"\nabsolute_timeout = \"20m\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).store(store).start().await;
    let sent = s.clock.instant();
    let cookie = s.log_in("alice", ALICE_PW).await;
    let logged_in = s.clock.instant();
    loop {
        s.clock.advance(MINUTE * 3);
        let status = s.get("/dashboard", Some(&cookie)).await.status;
        if s.clock.instant() - sent < MINUTE * 15 {
            assert_eq!(status, 200, "{store:?}: gone early");
        }
        if s.clock.instant() - logged_in > MINUTE * 21 {
            assert_eq!(status, 401, "{store:?}: alive past absolute_timeout");
            break;
        }
    }
}

/// Absolute expiry on the embedded store.
#[tokio::test]
async fn absolute_timeout_ends_a_busy_session_embedded() {
    absolute_timeout_holds(StoreChoice::Embedded).await;
}

/// Absolute expiry on Redis.
#[tokio::test]
async fn absolute_timeout_ends_a_busy_session_redis() {
    absolute_timeout_holds(StoreChoice::Redis).await;
}

// ---- the users file -----------------------------------------------------------------------

const ROLE_ROUTES: &str = r#"
[[routes]]
path = "/admin"
access = "authenticated"
groups = ["admin"]

[[routes]]
path = "/bobs"
access = "authenticated"
users = ["bob"]

[[routes]]
path = "/dashboard"
access = "authenticated"
"#;

/// Route `groups` and `users` lists decide with the users file's groups: in the group or on
/// the list → through; logged in but neither → 403, and the app never sees the request.
#[tokio::test]
async fn route_groups_and_users_are_enforced_with_403() {
    let conf = Conf {
        rest: ROLE_ROUTES.into(),
        ..Conf::default()
    };
    let s = Doorman::conf(&conf).start().await;
    let alice = s.log_in("alice", ALICE_PW).await;
    let bob = s.log_in("bob", BOB_PW).await;
    assert_eq!(s.get("/admin", Some(&alice)).await.status, 200);
    assert_eq!(s.get("/admin", Some(&bob)).await.status, 403);
    assert_eq!(s.get("/bobs", Some(&alice)).await.status, 403);
    assert_eq!(s.get("/bobs", Some(&bob)).await.status, 200);
    assert_eq!(s.get("/admin", None).await.status, 401);
    assert_eq!(s.upstream().seen_paths(), ["/admin", "/bobs"]);
}

/// Groups are read from the users file at request time, not frozen into the session: two
/// doorman instances sharing one Redis, whose users files disagree about alice, give the same
/// cookie different groups; and one whose users file lacks alice refuses her session outright.
#[tokio::test]
async fn groups_and_membership_come_from_the_users_file_at_request_time() {
    let redis = RedisServer::start();
    let conf = Conf {
        rest: ROLE_ROUTES.into(),
        ..Conf::default()
    };
    let a = Doorman::conf(&conf)
        .backend(Backend::redis(&redis))
        .start()
        .await;
    let demoted = write_users(&users_toml_with_alice(Some(&["ops"])));
    let b = Doorman::conf(&conf)
        .backend(Backend::redis(&redis))
        .users(&demoted)
        .start()
        .await;
    let gone = write_users(&users_toml_with_alice(None));
    let c = Doorman::conf(&conf)
        .backend(Backend::redis(&redis))
        .users(&gone)
        .start()
        .await;

    let cookie = a.log_in("alice", ALICE_PW).await;
    let on_a = a.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&on_a, "x-auth-groups"), ["admin,staff"]);
    assert_eq!(a.get("/admin", Some(&cookie)).await.status, 200);

    let on_b = b.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&on_b, "x-auth-user"), ["alice"]);
    assert_eq!(upstream_saw(&on_b, "x-auth-groups"), ["ops"]);
    assert_eq!(b.get("/admin", Some(&cookie)).await.status, 403);

    let on_c = c.get("/dashboard", Some(&cookie)).await;
    assert_eq!(on_c.status, 401);
    assert!(on_c.expires_cookie(COOKIE));
    assert!(c.upstream().seen_paths().is_empty());
}

/// A user removed from the users file is logged out at the next restart, on the embedded store
/// too: the old cookie gets 401 although its record is still in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_removed_from_the_users_file_is_refused_after_restart() {
    let upstream = support::Upstream::start().await;
    let backend = Backend::embedded();
    let users = write_users(&users_toml());
    let conf = Conf::dashboard().for_binary();
    let doorman = DoormanProcess::spawn(&conf.toml(&upstream.url(), &backend, &users), &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    let alice = support::login::log_in(&client, &base, "alice", ALICE_PW).await;
    let bob = support::login::log_in(&client, &base, "bob", BOB_PW).await;
    stop(doorman);

    std::fs::write(&users, users_toml_with_alice(None)).expect("rewrite users file");
    let doorman = DoormanProcess::spawn(&conf.toml(&upstream.url(), &backend, &users), &[]);
    let base = format!("http://{}", doorman.addr);
    let client = h1_client();
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&alice), &[]).await;
    assert_eq!(answer.status, 401);
    assert!(answer.expires_cookie(COOKIE));
    let answer = get_as(&client, &format!("{base}/dashboard"), Some(&bob), &[]).await;
    assert_eq!(upstream_saw(&answer, "x-auth-user"), ["bob"]);
}
