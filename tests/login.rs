//! Doorman's login over HTTP: where it sends the browser afterwards (no open redirect), who may
//! post to it (no cross-site login or logout), how hard it is to guess a password (throttling,
//! counted in the store), and the login handoff from an app that keeps its own form (§6).

mod support;

use std::time::Duration;

use support::login::{
    get_as, post_login, post_logout, request, upstream_saw, Answer, Conf, StoreChoice, ALICE_PW,
    BOB_PW, COOKIE,
};
use support::Doorman;

// ---- next: no open redirect ---------------------------------------------------------------

/// After login the browser goes to `next` only when it is a path on this site. A link to the
/// login page with `next=//evil.com` (or any spelling a browser or a framework would read as
/// another host, a script, or a header break) must land on `/`: doorman's trusted origin must
/// not become a phishing redirector.
#[tokio::test]
async fn login_redirects_only_to_local_paths() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let cases: &[(&str, &str)] = &[
        ("/dashboard", "/dashboard"),
        ("/ok?x=1", "/ok?x=1"),
        ("/x?next=//evil.com", "/x?next=//evil.com"),
        ("/caf\u{e9} menu", "/caf%C3%A9%20menu"),
        ("", "/"),
        ("//evil.com", "/"),
        ("///evil.com", "/"),
        ("/\\evil.com", "/"),
        ("\\\\evil.com", "/"),
        ("https://evil.com", "/"),
        ("http:evil.com", "/"),
        ("javascript:alert(1)", "/"),
        ("data:text/html,<script>alert(1)</script>", "/"),
        ("evil.com", "/"),
        ("/%2F%2Fevil.com", "/"),
        ("/%2fevil.com", "/"),
        ("/%5Cevil.com", "/"),
        ("/%252F%252Fevil.com", "/"),
        ("/\tevil", "/"),
        ("/\t/evil.com", "/"),
        ("/x\r\nSet-Cookie: x=1", "/"),
        ("/%0d%0aSet-Cookie:x", "/"),
        ("/%09/evil.com", "/"),
        ("/a\\b", "/"),
    ];
    let mut wrong = Vec::new();
    for &(next, expected) in cases {
        let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, Some(next), &[]).await;
        let location = answer.header("location").map(str::to_string);
        if answer.status != 303 || location.as_deref() != Some(expected) {
            wrong.push(format!(
                "next={next:?}: {} {location:?}, expected {expected:?}",
                answer.status
            ));
        }
        assert!(answer.headers.get("set-cookie").is_some(), "{next:?}");
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    // No `next` at all: the root.
    let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(answer.header("location"), Some("/"));
}

/// The login form carries `next` through a hidden field, so a crafted `next` must come back
/// escaped, and the page must forbid scripts and framing (clickjacking, injected markup).
#[tokio::test]
async fn the_login_page_escapes_next_and_forbids_scripts_and_framing() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let page = s
        .get(
            "/_doorman/login?next=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            None,
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let html = page.text();
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""));
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("default-src 'none'") || csp.contains("script-src 'none'"),
        "{csp}"
    );

    // A failed login shows the form again with an error, and sets no session.
    let failed = post_login(&s.client, &s.base, "alice", "wrong", Some("/x"), &[]).await;
    assert_eq!(failed.status, 401);
    assert!(failed.text().contains("<form"), "{}", failed.text());
    assert!(failed.set_cookie(COOKIE).is_none());
    // An unknown user gets the very same answer as a wrong password.
    let unknown = post_login(&s.client, &s.base, "mallory", "wrong", Some("/x"), &[]).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(
        unknown.text().replace("mallory", "alice"),
        failed.text(),
        "the answer reveals whether the user exists"
    );
}

// ---- cross-site -----------------------------------------------------------------------------

/// Another site must not be able to post the login form (login CSRF: the victim's browser
/// logged in as the attacker) or log the victim out. The browser's `Origin` and
/// `Sec-Fetch-Site` say where a POST came from.
#[tokio::test]
async fn cross_site_login_and_logout_are_refused() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let own_origin = s.base.clone();
    let refused: &[&[(&str, &str)]] = &[
        &[("origin", "http://evil.test")],
        &[("origin", "null")],
        &[("origin", "https://127.0.0.1")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "cross-site"), ("origin", &own_origin)],
    ];
    for headers in refused {
        let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, None, headers).await;
        assert_eq!(answer.status, 403, "{headers:?}");
        assert!(answer.set_cookie(COOKIE).is_none(), "{headers:?}");
    }
    let allowed: &[&[(&str, &str)]] = &[
        &[("origin", &own_origin)],
        &[("sec-fetch-site", "same-origin"), ("origin", &own_origin)],
        &[], // no Fetch metadata at all: a script or an old browser, without ambient cookies
    ];
    for headers in allowed {
        let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, None, headers).await;
        assert_eq!(answer.status, 303, "{headers:?}: {}", answer.text());
    }

    let cookie = s.log_in("alice", ALICE_PW).await;
    for headers in refused {
        let answer = post_logout(&s.client, &s.base, &cookie, headers).await;
        assert_eq!(answer.status, 403, "logout {headers:?}");
        assert!(answer.set_cookie(COOKIE).is_none());
    }
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 200);
    let out = post_logout(&s.client, &s.base, &cookie, &[("origin", &own_origin)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 401);
}

/// Over HTTP/2 there is no `Host` header: the public origin comes from `:authority`, so a
/// same-origin login works and a foreign `Origin` is still refused.
#[tokio::test]
async fn over_http2_the_origin_is_checked_against_the_authority() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let h2 = support::h2_client();
    let own_origin = s.base.clone();
    let answer = post_login(
        &h2,
        &s.base,
        "alice",
        ALICE_PW,
        None,
        &[("origin", &own_origin)],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let cookie = answer.new_cookie(COOKIE);
    let dash = get_as(&h2, &s.url("/dashboard"), Some(&cookie), &[]).await;
    assert_eq!(upstream_saw(&dash, "x-auth-user"), ["alice"]);
    let answer = post_login(
        &h2,
        &s.base,
        "alice",
        ALICE_PW,
        None,
        &[("origin", "http://evil.test")],
    )
    .await;
    assert_eq!(answer.status, 403);
}

/// Behind a load balancer the Host doorman sees is not what browsers see: with
/// `public_origin` set, only that origin may post the form.
#[tokio::test]
async fn with_public_origin_only_that_origin_may_log_in() {
    let conf = Conf {
        login: "public_origin = \"https://app.example.com\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).start().await;
    let ok = post_login(
        &s.client,
        &s.base,
        "alice",
        ALICE_PW,
        None,
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(ok.status, 303, "{}", ok.text());
    for origin in [
        s.base.as_str(),
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://evil.example.com",
    ] {
        let answer = post_login(
            &s.client,
            &s.base,
            "alice",
            ALICE_PW,
            None,
            &[("origin", origin)],
        )
        .await;
        assert_eq!(answer.status, 403, "{origin}");
    }
}

// ---- throttling -----------------------------------------------------------------------------

/// A 429 from the throttle, with the wait it asks for.
fn assert_throttled(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 429, "{what}: {}", answer.text());
    let retry: u64 = answer
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .expect("Retry-After seconds");
    assert!(retry >= 1, "{what}: {retry}");
    assert!(answer.set_cookie(COOKIE).is_none(), "{what}");
}

/// Password guessing is bounded: after `max_failures` wrong passwords for one user from one
/// client, even the right password gets 429 until the window passes; and one client spraying
/// guesses over many user names hits a per-client limit (4 × max_failures).
async fn throttling(store: StoreChoice) {
    // The window must outlast five Argon2id checks on a loaded 2-core CI machine. On the
    // embedded store it runs on doorman's clock, which the test advances, so it can be long;
    // on Redis the counters expire by Redis's own TTL, in real time, so it is kept short.
    let window = match store {
        StoreChoice::Embedded => "10m",
        StoreChoice::Redis => "3s",
    };
    let conf = Conf {
        login: format!("max_failures = 3\nfailure_window = \"{window}\"\n"),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).store(store).start().await;
    for i in 0..3 {
        let answer = post_login(&s.client, &s.base, "alice", "guess", None, &[]).await;
        assert_eq!(answer.status, 401, "{store:?}: attempt {i}");
    }
    let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_throttled(&answer, "right password after 3 failures");
    // Another user from the same client is not locked out by alice's counter.
    let answer = post_login(&s.client, &s.base, "bob", BOB_PW, None, &[]).await;
    assert_eq!(answer.status, 303, "{store:?}: bob");

    if let Some(redis) = &s.redis {
        // The counters live in Redis, under the prefix, with a TTL (they expire with the window).
        let mut raw = redis.client();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("dm:c:*")
            .query(&mut raw)
            .expect("KEYS");
        assert!(keys.len() >= 2, "{keys:?}");
        for key in &keys {
            let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut raw).expect("PTTL");
            assert!(ttl > 0 && ttl <= 3_000, "{key}: PTTL {ttl}");
        }
    }

    match store {
        StoreChoice::Embedded => s.clock.advance(Duration::from_secs(11 * 60)),
        // A real wait on purpose: Redis expires the counters by its own clock (PEXPIRE), which
        // doorman's clock cannot move.
        StoreChoice::Redis => tokio::time::sleep(Duration::from_millis(3_100)).await,
    }
    let answer = post_login(&s.client, &s.base, "alice", ALICE_PW, None, &[]).await;
    assert_eq!(
        answer.status,
        303,
        "{store:?}: window passed: {}",
        answer.text()
    );

    // Spraying: one failure for each of 12 names (never 3 for one) exhausts the client's budget.
    // A fresh doorman with a long window, so thirteen password checks never race the clock.
    let conf = Conf {
        login: "max_failures = 3\nfailure_window = \"10m\"\n".into(),
        ..Conf::dashboard()
    };
    let s = Doorman::conf(&conf).store(store).start().await;
    for i in 0..12 {
        let answer = post_login(&s.client, &s.base, &format!("user{i}"), "guess", None, &[]).await;
        assert_eq!(answer.status, 401, "{store:?}: spray {i}");
    }
    let answer = post_login(&s.client, &s.base, "bob", BOB_PW, None, &[]).await;
    assert_throttled(&answer, "per-client limit");
}

/// Throttling on the embedded store.
#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_per_client_embedded() {
    throttling(StoreChoice::Embedded).await;
}

/// Throttling on Redis, where replicas share the counters.
#[tokio::test]
async fn failed_logins_are_throttled_per_user_and_per_client_redis() {
    throttling(StoreChoice::Redis).await;
}

// ---- login handoff (§6) ---------------------------------------------------------------------

/// Handoff on `/app-login` (and nothing else), granting at most the `staff` group.
fn handoff_conf() -> Conf {
    Conf {
        login: "handoff_paths = [\"/app-login\"]\nhandoff_groups = [\"staff\"]\n".into(),
        ..Conf::dashboard()
    }
}

/// Whether any `X-Doorman-*` header reached the client.
fn leaked_handoff_headers(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-doorman-"))
        .collect()
}

/// An app that keeps its own login form tells doorman who logged in with response headers on a
/// handoff path: doorman opens a session on that very response, the browser never sees the
/// handoff headers, and later requests carry that user and only the groups a handoff may grant.
#[tokio::test]
async fn a_handoff_on_a_handoff_path_creates_a_session() {
    let s = Doorman::conf(&handoff_conf()).start().await;
    let answer = s
        .get("/app-login?user=carol&groups=staff,admin", None)
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        leaked_handoff_headers(&answer).is_empty(),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let cookie = answer.new_cookie(COOKIE);
    assert_eq!(cookie.len(), 43);

    // carol is in no users file: handoff sessions are not tied to it.
    let dash = s.get("/dashboard", Some(&cookie)).await;
    assert_eq!(upstream_saw(&dash, "x-auth-user"), ["carol"]);
    assert_eq!(upstream_saw(&dash, "x-auth-groups"), ["staff"]);
    let info = s.get("/_doorman/session", Some(&cookie)).await;
    let json: serde_json::Value = serde_json::from_slice(&info.body).expect("json");
    assert_eq!(json["user"], "carol");
    assert_eq!(json["groups"], serde_json::json!(["staff"]));

    // A handoff presented with a session rotates it: the old one ends.
    let old = format!("{COOKIE}={cookie}");
    let again = get_as(
        &s.client,
        &s.url("/app-login?user=dave"),
        None,
        &[("cookie", &old)],
    )
    .await;
    let dave = again.new_cookie(COOKIE);
    assert_ne!(dave, cookie);
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 401);
    let dash = s.get("/dashboard", Some(&dave)).await;
    assert_eq!(upstream_saw(&dash, "x-auth-user"), ["dave"]);
    // No groups handed off: the groups header is set, and empty (never the client's).
    assert_eq!(upstream_saw(&dash, "x-auth-groups"), [""]);
}

/// An app endpoint that reflects a query parameter into a response header must not become a
/// log-in-as-anyone hole: handoff headers on any other path, on a cross-site request, or with
/// a user name that is not a safe header value are ignored, and stripped all the same.
#[tokio::test]
async fn handoffs_off_path_cross_site_or_with_unsafe_names_are_ignored() {
    let s = Doorman::conf(&handoff_conf()).start().await;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("/app-login/elsewhere?user=carol", &[]),
        ("/app-login?user=carol", &[("sec-fetch-site", "cross-site")]),
        ("/app-login?user=carol", &[("origin", "http://evil.test")]),
        ("/app-login?user=a%2Cb", &[]),
        ("/app-login?user=%C3%A9ve", &[]),
        ("/app-login?user=a%09b", &[]),
        ("/app-login?user=", &[]),
    ];
    for (path, headers) in cases {
        let answer = get_as(&s.client, &s.url(path), None, headers).await;
        assert_eq!(answer.status, 200, "{path}");
        assert!(
            answer.headers.get("set-cookie").is_none(),
            "{path} {headers:?} created a session: {:?}",
            answer.headers
        );
        assert!(leaked_handoff_headers(&answer).is_empty(), "{path}");
    }
}

/// Handoff is off unless `handoff_paths` is set: the headers are then ignored, and still
/// stripped, so an app's stray `X-Doorman-Login` never leaks nor logs anyone in.
#[tokio::test]
async fn without_handoff_paths_the_headers_are_ignored_and_stripped() {
    let s = Doorman::conf(&Conf::dashboard()).start().await;
    let answer = s.get("/app-login?user=carol&groups=staff", None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.headers.get("set-cookie").is_none());
    assert!(leaked_handoff_headers(&answer).is_empty());
    let cookie = s.log_in("alice", ALICE_PW).await;
    let answer = s.get("/app-logout", Some(&cookie)).await;
    assert!(leaked_handoff_headers(&answer).is_empty());
    assert!(answer.set_cookie(COOKIE).is_none());
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 200);
}

/// The app logs the user out with `X-Doorman-Logout: 1`: the session ends in the store and
/// the cookie is expired on that response.
#[tokio::test]
async fn x_doorman_logout_ends_the_session() {
    let s = Doorman::conf(&handoff_conf()).start().await;
    let handed = s
        .get("/app-login?user=carol", None)
        .await
        .new_cookie(COOKIE);
    let out = s.get("/app-logout", Some(&handed)).await;
    assert_eq!(out.status, 200);
    assert!(out.expires_cookie(COOKIE), "{:?}", out.headers);
    assert!(leaked_handoff_headers(&out).is_empty());
    assert_eq!(s.get("/dashboard", Some(&handed)).await.status, 401);

    // The same for a password session.
    let cookie = s.log_in("alice", ALICE_PW).await;
    assert!(s
        .get("/app-logout", Some(&cookie))
        .await
        .expires_cookie(COOKIE));
    assert_eq!(s.get("/dashboard", Some(&cookie)).await.status, 401);
}

/// A client cannot speak the handoff protocol itself: `X-Doorman-*` request headers never
/// reach the app (which might trust them) and never create a session.
#[tokio::test]
async fn client_sent_handoff_headers_never_reach_the_app() {
    let s = Doorman::conf(&handoff_conf()).start().await;
    for path in ["/anything", "/app-login"] {
        let answer = request(
            &s.client,
            "GET",
            &s.url(path),
            &[
                ("x-doorman-login", "mallory"),
                ("x-doorman-groups", "staff"),
                ("x-doorman-logout", "1"),
                ("x_doorman_login", "mallory"),
            ],
            "",
        )
        .await;
        let echo = support::echoed(&answer.body);
        let names: Vec<String> = echo["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|pair| pair[0].as_str().unwrap_or_default().to_string())
            .filter(|n| n.replace('_', "-").starts_with("x-doorman-"))
            .collect();
        assert!(names.is_empty(), "{path}: the app saw {names:?}");
        assert!(answer.headers.get("set-cookie").is_none(), "{path}");
    }
}
