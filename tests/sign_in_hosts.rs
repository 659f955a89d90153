//! Signing in once for several hosts behind one gateway (DESIGN.md §8): the login host hands
//! each other host a one-time code, the host's callback turns it into a cookie of its own, and a
//! logout on any host ends them all. Spoken to as a gateway speaks: requests from 127.0.0.1 (a
//! trusted gateway) with `X-Forwarded-Host` / `-Proto` naming the browser's host, on both
//! stores.

mod support;

use std::time::Duration;

use support::doorman::Doorman;
use support::login::{post_login, request, Answer, Conf, HttpClient, StoreChoice, ALICE_PW};

const LOGIN: &str = "login.test";

fn conf() -> Conf {
    Conf {
        login: format!("public_origin = \"http://{LOGIN}\""),
        rest: format!(
            r#"
[forward_auth]
trusted_gateways = ["127.0.0.1/32"]
allowed_hosts = ["{LOGIN}", "a.test", "b.test"]

[[routes]]
path = "/dashboard"
access = "authenticated"
on_unauthenticated = "redirect"
"#
        ),
        ..Conf::default()
    }
}

/// A request to doorman's `path` as the gateway proxies it for a browser on `host`.
async fn on_host(
    c: &HttpClient,
    d: &Doorman,
    method: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> Answer {
    let origin = format!("http://{host}");
    let cookie = cookie.map(|v| format!("doorman_session={v}"));
    let mut headers = vec![
        ("x-forwarded-host", host),
        ("x-forwarded-proto", "http"),
        ("origin", origin.as_str()),
    ];
    if let Some(cookie) = &cookie {
        headers.push(("cookie", cookie));
    }
    request(c, method, &d.url(path), &headers, "").await
}

/// Whether `host`'s gateway lets a page load of `/dashboard` through with `cookie`.
async fn passes(c: &HttpClient, d: &Doorman, host: &str, cookie: &str) -> bool {
    let cookie = format!("doorman_session={cookie}");
    let a = request(
        c,
        "GET",
        &d.url("/_doorman/forward-auth"),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", host),
            ("x-forwarded-uri", "/dashboard"),
            ("cookie", &cookie),
        ],
        "",
    )
    .await;
    assert!(matches!(a.status.as_u16(), 200 | 401), "{}", a.status);
    a.status == 200
}

/// The callback URL's path and query (`/_doorman/callback?code=…`) from a redirect to `host`.
fn callback_on(a: &Answer, host: &str) -> String {
    assert_eq!(a.status, 303, "{}", a.text());
    let location = a.header("location").expect("Location");
    let prefix = format!("http://{host}/_doorman/callback?code=");
    assert!(location.starts_with(&prefix), "{location}");
    location[format!("http://{host}").len()..].to_string()
}

/// Redeem `callback` on `host`: the new cookie, after checking the redirect to `next`.
async fn redeem(c: &HttpClient, d: &Doorman, host: &str, callback: &str, next: &str) -> String {
    let a = on_host(c, d, "GET", host, callback, None).await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert_eq!(a.header("location"), Some(next));
    let line = a
        .set_cookie("doorman_session")
        .expect("a cookie of this host");
    assert!(
        !line.to_ascii_lowercase().contains("domain="),
        "host-only: {line}"
    );
    a.new_cookie("doorman_session")
}

async fn one_login_signs_in_every_host(store: StoreChoice) {
    let d = Doorman::conf(&conf()).store(store).start().await;
    let c = &d.client;

    // a.test has no session: its page load goes to the login host, with the original URL.
    let a = request(
        c,
        "GET",
        &d.url("/_doorman/forward-auth"),
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "a.test"),
            ("x-forwarded-uri", "/dashboard"),
            ("sec-fetch-mode", "navigate"),
        ],
        "",
    )
    .await;
    assert_eq!(
        a.header("location"),
        Some("http://login.test/_doorman/login?next=http%3A%2F%2Fa.test%2Fdashboard")
    );

    // Logging in there sends the browser back to a.test's callback with a code.
    let headers = [
        ("x-forwarded-host", LOGIN),
        ("x-forwarded-proto", "http"),
        ("origin", "http://login.test"),
    ];
    let a = post_login(
        c,
        &d.base,
        "alice",
        ALICE_PW,
        Some("http://a.test/dashboard"),
        &headers,
    )
    .await;
    let login_cookie = a.new_cookie("doorman_session");
    let callback = callback_on(&a, "a.test");
    let a_cookie = redeem(c, &d, "a.test", &callback, "http://a.test/dashboard").await;
    assert!(passes(c, &d, "a.test", &a_cookie).await);
    // Each host has its own session: cookies are not interchangeable ids of one session.
    assert_ne!(a_cookie, login_cookie);

    // b.test: the login host already has a session, so no form: straight back with a code.
    let login_page = "/_doorman/login?next=http%3A%2F%2Fb.test%2Fdashboard%3Fx%3D1";
    let a = on_host(c, &d, "GET", LOGIN, login_page, Some(&login_cookie)).await;
    let callback = callback_on(&a, "b.test");
    // Without a session there, the login page is the form.
    let a = on_host(c, &d, "GET", LOGIN, login_page, None).await;
    assert_eq!(a.status, 200);
    assert!(a.text().contains("<form"), "{}", a.text());

    // A code is not a session, even presented as a cookie.
    let code = callback.rsplit('=').next().expect("code").to_string();
    assert!(!passes(c, &d, "b.test", &code).await);
    // Used on another host: refused, and burnt.
    let a = on_host(c, &d, "GET", "a.test", &callback, None).await;
    assert_eq!(a.status, 403);
    let a = on_host(c, &d, "GET", "b.test", &callback, None).await;
    assert_eq!(a.status, 403);

    // A fresh code works once; a replay is refused.
    let a = on_host(c, &d, "GET", LOGIN, login_page, Some(&login_cookie)).await;
    let callback = callback_on(&a, "b.test");
    let b_cookie = redeem(c, &d, "b.test", &callback, "http://b.test/dashboard?x=1").await;
    assert!(passes(c, &d, "b.test", &b_cookie).await);
    let a = on_host(c, &d, "GET", "b.test", &callback, None).await;
    assert_eq!(a.status, 403);

    // Expired after a minute.
    let a = on_host(c, &d, "GET", LOGIN, login_page, Some(&login_cookie)).await;
    let callback = callback_on(&a, "b.test");
    d.clock.advance(Duration::from_secs(61));
    let a = on_host(c, &d, "GET", "b.test", &callback, None).await;
    assert_eq!(a.status, 403);
    // Garbage codes.
    for bad in ["/_doorman/callback", "/_doorman/callback?code=x"] {
        let a = on_host(c, &d, "GET", "b.test", bad, None).await;
        assert_eq!(a.status, 400, "{bad}");
    }

    // A code still unused when the login ends is worthless.
    let a = on_host(c, &d, "GET", LOGIN, login_page, Some(&login_cookie)).await;
    let unused = callback_on(&a, "b.test");

    // Logout on b.test ends the sessions of every host made from that login.
    assert!(passes(c, &d, "a.test", &a_cookie).await);
    assert!(passes(c, &d, LOGIN, &login_cookie).await);
    let a = on_host(c, &d, "POST", "b.test", "/_doorman/logout", Some(&b_cookie)).await;
    assert_eq!(a.status, 303, "{}", a.text());
    assert!(!passes(c, &d, "b.test", &b_cookie).await);
    assert!(!passes(c, &d, "a.test", &a_cookie).await);
    assert!(!passes(c, &d, LOGIN, &login_cookie).await);
    let a = on_host(c, &d, "GET", "b.test", &unused, None).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn one_login_signs_in_every_host_embedded() {
    one_login_signs_in_every_host(StoreChoice::Embedded).await;
}

#[tokio::test]
async fn one_login_signs_in_every_host_redis() {
    one_login_signs_in_every_host(StoreChoice::Redis).await;
}

/// Another login of the same user (another browser) is not logged out with this one.
#[tokio::test]
async fn logout_ends_one_login_not_every_login_of_the_user() {
    let d = Doorman::conf(&conf())
        .store(StoreChoice::Redis)
        .start()
        .await;
    let c = &d.client;
    let headers = [
        ("x-forwarded-host", LOGIN),
        ("x-forwarded-proto", "http"),
        ("origin", "http://login.test"),
    ];
    let next = "http://a.test/dashboard";
    let first = post_login(c, &d.base, "alice", ALICE_PW, Some(next), &headers).await;
    let first_a = redeem(c, &d, "a.test", &callback_on(&first, "a.test"), next).await;
    let second = post_login(c, &d.base, "alice", ALICE_PW, Some(next), &headers).await;
    let second_a = redeem(c, &d, "a.test", &callback_on(&second, "a.test"), next).await;
    let a = on_host(c, &d, "POST", "a.test", "/_doorman/logout", Some(&first_a)).await;
    assert_eq!(a.status, 303);
    assert!(!passes(c, &d, "a.test", &first_a).await);
    assert!(passes(c, &d, "a.test", &second_a).await);
    let second_login = second.new_cookie("doorman_session");
    assert!(passes(c, &d, LOGIN, &second_login).await);
}
