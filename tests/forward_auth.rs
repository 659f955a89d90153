//! Forward-auth (DESIGN.md §8), spoken to as a gateway speaks to it: `<prefix>/auth` (nginx
//! `auth_request`) and `<prefix>/forward-auth` (Traefik, Caddy), over real sockets, with real
//! stores. The gateways themselves are in tests/gateways.rs; this file pins what doorman
//! answers to every shape of sub-request, including the ones a gateway lets a client shape.

mod support;

use support::doorman::Doorman;
use support::login::{
    log_in, post_login, request, users_toml, write_users, Answer, Backend, Conf, HttpClient,
    StoreChoice, ALICE_PW, BOB_PW,
};

/// The host the gateway serves, as it names it in sub-requests.
const APP: &str = "app.test";

/// Routes: `/dashboard` needs a session, `/admin` only for alice, `/private` is denied, the
/// ops host is denied whatever the path, `/pages` redirects page loads to the login page;
/// `/` and `/public` are public, and everything else needs a session.
fn routes() -> String {
    format!(
        r#"
[forward_auth]
trusted_gateways = ["127.0.0.1/32"]
allowed_hosts = ["{APP}", "*.apps.test", "ops.test"]

[access]
default = "authenticated"

[[routes]]
path = "/"
hosts = ["ops.test"]
access = "deny"

[[routes]]
glob = "/"
access = "public"

[[routes]]
path = "/public"
access = "public"

[[routes]]
path = "/dashboard"
access = "authenticated"

[[routes]]
path = "/admin"
access = "authenticated"
users = ["alice"]

[[routes]]
path = "/private"
access = "deny"

[[routes]]
path = "/pages"
access = "authenticated"
on_unauthenticated = "redirect"
"#
    )
}

fn conf(login: &str) -> Conf {
    Conf {
        rest: routes(),
        login: login.to_string(),
        ..Conf::default()
    }
}

/// `GET <base>/_doorman/auth` as nginx sends it: `X-Original-Method`, `X-Original-URL`, plus
/// `extra`.
async fn auth(client: &HttpClient, base: &str, url: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![("x-original-method", "GET"), ("x-original-url", url)];
    headers.extend_from_slice(extra);
    request(
        client,
        "GET",
        &format!("{base}/_doorman/auth"),
        &headers,
        "",
    )
    .await
}

/// `GET <base>/_doorman/forward-auth` as Traefik and Caddy send it, for `https://APP{uri}`.
async fn forward_auth(
    client: &HttpClient,
    base: &str,
    proto: &str,
    uri: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut headers = vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", proto),
        ("x-forwarded-host", APP),
        ("x-forwarded-uri", uri),
    ];
    headers.extend_from_slice(extra);
    request(
        client,
        "GET",
        &format!("{base}/_doorman/forward-auth"),
        &headers,
        "",
    )
    .await
}

fn cookie(value: &str) -> String {
    format!("doorman_session={value}")
}

fn assert_no_store(a: &Answer) {
    assert_eq!(
        a.header("cache-control"),
        Some("no-store"),
        "{:?}",
        a.headers
    );
}

#[tokio::test]
async fn the_other_header_family_is_never_read() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    // nginx forwards a client's X-Forwarded-Uri to the auth sub-request: /auth must judge
    // X-Original-URL (protected) and ignore the client's family (public).
    let a = auth(
        c,
        &d.base,
        "http://app.test/dashboard",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", APP),
            ("x-forwarded-uri", "/public"),
        ],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text());
    assert_no_store(&a);
    // Traefik and Caddy pass a client's X-Original-URL through: /forward-auth must ignore it.
    let a = forward_auth(
        c,
        &d.base,
        "http",
        "/dashboard",
        &[
            ("x-original-method", "GET"),
            ("x-original-url", "http://app.test/public"),
        ],
    )
    .await;
    assert_eq!(a.status, 401, "{}", a.text());
    // The right family naming a public path passes, whatever the other one says.
    let a = auth(
        c,
        &d.base,
        "http://app.test/public",
        &[("x-forwarded-uri", "/dashboard")],
    )
    .await;
    assert_eq!(a.status, 200);
    // And a /forward-auth request with only nginx's family is missing its own: 400.
    let a = request(
        c,
        "GET",
        &d.url("/_doorman/forward-auth"),
        &[
            ("x-original-method", "GET"),
            ("x-original-url", "http://app.test/public"),
        ],
        "",
    )
    .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn missing_repeated_or_malformed_descriptions_are_400() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let url = d.url("/_doorman/auth");
    for headers in [
        vec![("x-original-method", "GET")],
        vec![("x-original-url", "http://app.test/")],
        vec![
            ("x-original-method", "GET"),
            ("x-original-method", "GET"),
            ("x-original-url", "http://app.test/"),
        ],
        vec![
            ("x-original-method", "GET"),
            ("x-original-url", "http://app.test/"),
            ("x-original-url", "http://app.test/dashboard"),
        ],
        vec![
            ("x-original-method", "GET"),
            ("x-original-url", "/dashboard"),
        ],
        vec![
            ("x-original-method", "get"),
            ("x-original-url", "http://app.test/"),
        ],
        vec![
            ("x-original-method", "GET"),
            ("x-original-url", "http://u@app.test/"),
        ],
    ] {
        let a = request(c, "GET", &url, &headers, "").await;
        assert_eq!(a.status, 400, "{headers:?}");
        assert_no_store(&a);
    }
    // Ambiguous original paths are refused by the same normaliser as proxied requests.
    for path in ["/a%2Fb", "/x/..%2F..", "/a\\b", "/%00", "/../.."] {
        let a = auth(c, &d.base, &format!("http://app.test{path}"), &[]).await;
        assert_eq!(a.status, 400, "{path}");
    }
    for uri in ["/a%2Fb", "dashboard", ""] {
        let a = forward_auth(c, &d.base, "https", uri, &[]).await;
        assert_eq!(a.status, 400, "{uri:?}");
    }
    let a = forward_auth(c, &d.base, "ftp", "/", &[]).await;
    assert_eq!(a.status, 400);
    // Only GET and HEAD ask.
    let a = request(c, "POST", &url, &[], "").await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn routes_sessions_and_hosts_decide_as_they_do_for_proxied_requests() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let alice = log_in(c, &d.base, "alice", ALICE_PW).await;
    let bob = log_in(c, &d.base, "bob", BOB_PW).await;
    let (alice, bob) = (cookie(&alice), cookie(&bob));

    // (original URL, who asks, status): the decision a proxied request would get.
    let none = String::new();
    for (url, who, status) in [
        ("http://app.test/dashboard", &none, 401),
        // Normalised first: a dot-segment walk into /dashboard is /dashboard.
        ("http://app.test/public/../DashBoard/x", &none, 401),
        ("http://app.test/dashboard", &alice, 200),
        ("http://app.test/admin", &bob, 403),
        ("http://app.test/admin?x=1", &alice, 200),
        ("http://app.test/private", &alice, 403),
        // Hosts: only allowed ones (port ignored, "*." one label), and routes match on them.
        ("http://evil.test/", &none, 403),
        ("http://app.test.evil/", &none, 403),
        ("https://WIKI.apps.test:8443/", &none, 200),
        ("https://a.wiki.apps.test/", &none, 403),
        ("http://OPS.test:81/public", &alice, 403),
        // The login page is never behind itself.
        ("http://app.test/_doorman/login?next=/x", &none, 200),
        ("http://app.test/_DOORMAN/../_doorman/logout", &none, 200),
        // Another spelling may reach the app through a case-sensitive gateway location: it is
        // judged by the routes (here the default: authenticated).
        ("http://app.test/_DOORMAN/x", &none, 401),
        ("http://app.test/_Doorman", &none, 401),
        ("http://app.test/_doormanx", &none, 401),
    ] {
        let cookie = [("cookie", who.as_str())];
        let a = auth(c, &d.base, url, if who.is_empty() { &[] } else { &cookie }).await;
        assert_eq!(a.status, status, "{url} as {who:?}");
        assert_no_store(&a);
        if status == 401 {
            assert!(a.header("www-authenticate").is_some());
        }
    }
    let a = auth(
        c,
        &d.base,
        "http://app.test/dashboard",
        &[("cookie", &alice)],
    )
    .await;
    assert_eq!(a.header("x-auth-user"), Some("alice"));
    assert_eq!(a.header("x-auth-groups"), Some("admin,staff"));
    assert_eq!(a.text(), "");

    // The same through /forward-auth.
    let a = forward_auth(c, &d.base, "http", "/dashboard", &[("cookie", &alice)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-auth-user"), Some("alice"));
    let a = forward_auth(c, &d.base, "http", "/admin", &[("cookie", &bob)]).await;
    assert_eq!(a.status, 403);
}

/// Identity headers are on every 200, empty for an anonymous request: a gateway copying them
/// always overwrites what the client sent.
#[tokio::test]
async fn identity_headers_are_always_present_on_a_200() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    for a in [
        auth(
            c,
            &d.base,
            "http://app.test/public",
            &[("x-auth-user", "admin")],
        )
        .await,
        forward_auth(c, &d.base, "http", "/", &[("x-auth-user", "admin")]).await,
    ] {
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-auth-user"), Some(""));
        assert_eq!(a.header("x-auth-groups"), Some(""));
    }
    // A stale cookie on a public route: still 200, anonymous, and the cookie is expired.
    let stale = cookie(&support::login::unknown_id());
    let a = auth(c, &d.base, "http://app.test/public", &[("cookie", &stale)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-auth-user"), Some(""));
    assert!(a.expires_cookie("doorman_session"));
}

#[tokio::test]
async fn page_loads_under_redirect_go_to_the_login_page_with_the_original_url() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let navigate = [("sec-fetch-mode", "navigate")];
    let a = forward_auth(c, &d.base, "https", "/pages/a?b=c", &navigate).await;
    assert_eq!(a.status, 302, "{}", a.text());
    assert_eq!(
        a.header("location"),
        Some("https://app.test/_doorman/login?next=https%3A%2F%2Fapp.test%2Fpages%2Fa%3Fb%3Dc")
    );
    assert_no_store(&a);
    // An API call on the same route gets 401 JSON with the same login URL.
    let a = forward_auth(c, &d.base, "https", "/pages/a", &[]).await;
    assert_eq!(a.status, 401);
    assert!(
        a.text().contains("https://app.test/_doorman/login?next="),
        "{}",
        a.text()
    );
    // nginx's auth_request takes only 2xx/401/403: /auth never redirects.
    let a = auth(c, &d.base, "https://app.test/pages/a", &navigate).await;
    assert_eq!(a.status, 401);

    // With a login host (public_origin), the login page is there.
    let d = Doorman::conf(&conf("public_origin = \"https://login.apps.test\""))
        .start()
        .await;
    let a = forward_auth(&d.client, &d.base, "https", "/pages", &navigate).await;
    assert_eq!(
        a.header("location"),
        Some("https://login.apps.test/_doorman/login?next=https%3A%2F%2Fapp.test%2Fpages")
    );
}

#[tokio::test]
async fn only_trusted_gateways_may_ask() {
    let rest = routes().replace("127.0.0.1/32", "10.0.0.0/8");
    let d = Doorman::conf(&Conf {
        rest,
        ..Conf::default()
    })
    .start()
    .await;
    let a = auth(&d.client, &d.base, "http://app.test/public", &[]).await;
    assert_eq!(a.status, 403);
    let a = forward_auth(&d.client, &d.base, "http", "/public", &[]).await;
    assert_eq!(a.status, 403);
    assert_no_store(&a);
}

#[tokio::test]
async fn a_store_outage_is_503_never_200() {
    let d = Doorman::conf(&conf(""))
        .store(StoreChoice::Redis)
        .start()
        .await;
    let c = &d.client;
    let alice = cookie(&log_in(c, &d.base, "alice", ALICE_PW).await);
    let a = auth(
        c,
        &d.base,
        "http://app.test/dashboard",
        &[("cookie", &alice)],
    )
    .await;
    assert_eq!(a.status, 200);
    let redis = d.redis.as_ref().expect("redis");
    redis.pause();
    let a = auth(
        c,
        &d.base,
        "http://app.test/dashboard",
        &[("cookie", &alice)],
    )
    .await;
    let b = forward_auth(c, &d.base, "http", "/dashboard", &[("cookie", &alice)]).await;
    redis.resume();
    for a in [a, b] {
        assert_eq!(a.status, 503, "{}", a.text());
        assert!(a.header("retry-after").is_some());
        assert_no_store(&a);
        assert!(
            a.set_cookie("doorman_session").is_none(),
            "an outage logs nobody out"
        );
    }
}

/// Behind a TLS-terminating gateway, the cookie is the https one (`__Host-`, Secure) exactly
/// when the browser used https, and forward-auth reads the cookie of the original's scheme.
#[tokio::test]
async fn the_browser_scheme_comes_from_the_gateway() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let login = |proto: &'static str| {
        let base = d.base.clone();
        async move {
            post_login(
                c,
                &base,
                "alice",
                ALICE_PW,
                None,
                &[
                    ("x-forwarded-proto", proto),
                    ("x-forwarded-host", APP),
                    ("x-forwarded-for", "198.51.100.7"),
                    ("origin", &format!("{proto}://{APP}")),
                ],
            )
            .await
        }
    };
    let a = login("https").await;
    assert_eq!(a.status, 303, "{}", a.text());
    let line = a
        .set_cookie("__Host-doorman_session")
        .expect("__Host- cookie");
    assert!(line.contains("Secure"), "{line}");
    let value = support::login::cookie_value(&line);
    let host_cookie = format!("__Host-doorman_session={value}");
    let a = forward_auth(
        c,
        &d.base,
        "https",
        "/dashboard",
        &[("cookie", &host_cookie)],
    )
    .await;
    assert_eq!(a.header("x-auth-user"), Some("alice"));
    // Over plain http the browser would never send a __Host- cookie; doorman does not read one.
    let a = forward_auth(
        c,
        &d.base,
        "http",
        "/dashboard",
        &[("cookie", &host_cookie)],
    )
    .await;
    assert_eq!(a.status, 401);

    let a = login("http").await;
    assert_eq!(a.status, 303);
    let line = a.set_cookie("doorman_session").expect("plain cookie");
    assert!(!line.contains("Secure"), "{line}");
    // The Origin check compares with the browser's origin, not doorman's own.
    let a = post_login(
        c,
        &d.base,
        "alice",
        ALICE_PW,
        None,
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", APP),
            ("origin", "https://evil.test"),
        ],
    )
    .await;
    assert_eq!(a.status, 403);
}

/// The throttle counts the browser's address (the gateway's X-Forwarded-For), so one client's
/// failures never lock out everyone behind the gateway.
#[tokio::test]
async fn throttling_counts_clients_behind_the_gateway() {
    let d = Doorman::conf(&conf("max_failures = 2")).start().await;
    let c = &d.client;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..2 {
        let a = post_login(c, &d.base, "alice", "wrong", None, &from("192.0.2.1")).await;
        assert_eq!(a.status, 401);
    }
    let a = post_login(c, &d.base, "alice", ALICE_PW, None, &from("192.0.2.1")).await;
    assert_eq!(a.status, 429);
    // The same /64 is the same client.
    for _ in 0..2 {
        let a = post_login(c, &d.base, "bob", "wrong", None, &from("2001:db8::1")).await;
        assert_eq!(a.status, 401);
    }
    let a = post_login(c, &d.base, "bob", BOB_PW, None, &from("2001:db8::ffff:2")).await;
    assert_eq!(a.status, 429);
    // Another client behind the same gateway is not locked out.
    let a = post_login(c, &d.base, "alice", ALICE_PW, None, &from("192.0.2.2")).await;
    assert_eq!(a.status, 303);
    let a = post_login(c, &d.base, "bob", BOB_PW, None, &from("2001:db8:0:1::1")).await;
    assert_eq!(a.status, 303);
}

/// After login, an absolute `next` is followed only to an allowed host, and to plain http only
/// from a plain-http login.
#[tokio::test]
async fn login_returns_only_to_allowed_hosts() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let https = [("x-forwarded-proto", "https"), ("x-forwarded-host", APP)];
    for (next, expected) in [
        ("https://app.test/pages?a=b", "https://app.test/pages?a=b"),
        ("https://wiki.apps.test/x", "https://wiki.apps.test/x"),
        ("http://app.test/pages", "/"),
        ("https://evil.test/", "/"),
        ("//evil.test/", "/"),
        ("https://app.test.evil/", "/"),
        ("https://app.test@evil.test/", "/"),
        ("https://app.test\\@evil.test/", "/"),
        ("https:\\\\evil.test/", "/"),
        ("https%3A%2F%2Fevil.test/", "/"),
        ("https://app%2etest/", "/"),
    ] {
        let a = post_login(c, &d.base, "alice", ALICE_PW, Some(next), &https).await;
        assert_eq!(a.status, 303, "{next}");
        assert_eq!(a.header("location"), Some(expected), "{next}");
    }
    let http = [("x-forwarded-proto", "http"), ("x-forwarded-host", APP)];
    let a = post_login(
        c,
        &d.base,
        "alice",
        ALICE_PW,
        Some("http://app.test/p"),
        &http,
    )
    .await;
    assert_eq!(a.header("location"), Some("http://app.test/p"));
}

/// Without `[upstream]`, doorman serves its own endpoints and nothing else.
#[tokio::test]
async fn auth_only_mode_serves_no_upstream() {
    let users = write_users(&users_toml());
    let backend = Backend::embedded();
    let toml = format!(
        "{}\n[login]\nusers_file = {users:?}\n{}",
        backend.section(""),
        routes()
    );
    let d = Doorman::toml(&toml).start().await;
    let c = &d.client;
    let a = request(c, "GET", &d.url("/anything"), &[], "").await;
    assert_eq!(a.status, 404);
    let alice = cookie(&log_in(c, &d.base, "alice", ALICE_PW).await);
    let a = auth(
        c,
        &d.base,
        "http://app.test/dashboard",
        &[("cookie", &alice)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-auth-user"), Some("alice"));
}

/// The proxy path matches `hosts` the same way: the ops host is denied, whatever the path, and
/// with host-scoped routes a host that is not a plain host name is refused, not matched
/// against no host.
#[tokio::test]
async fn proxied_requests_match_routes_on_hosts_too() {
    let d = Doorman::conf(&conf("")).start().await;
    let c = &d.client;
    let url = d.url("/public");
    for (host, status) in [
        ("app.test", 200),
        ("OPS.test.:8080", 403),
        ("ops%2etest", 400),
        ("ops.test~", 400),
    ] {
        let a = request(c, "GET", &url, &[("host", host)], "").await;
        assert_eq!(a.status, status, "{host}");
    }
}
