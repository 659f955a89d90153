//! Doorman as the auth server of real gateways (DESIGN.md §8): Debian's nginx (`auth_request`
//! to `/_doorman/auth`) and Caddy 2.6 (`forward_auth` to `/_doorman/forward-auth`), each run
//! with the example config the README documents (`examples/`), in front of the echo app, over
//! loopback sockets. The browser only ever talks to the gateway, at `app.test:PORT`.
//!
//! What is shown, through each gateway:
//! * a client's own identity headers (every name of DESIGN.md §5, also spelled with `_` or `.`)
//!   never reach the app: an anonymous request on a public route arrives with no user, a
//!   logged-in one with doorman's user only; and without the example's clearing lines the same
//!   request *would* carry the client's value (so the check can fail);
//! * login, the session and logout work through the gateway, which proxies `/_doorman/` with
//!   `X-Forwarded-Proto/-Host/-For`: the Origin check accepts the browser's origin and refuses
//!   another; behind nginx terminating TLS the cookie is `__Host-doorman_session` and `Secure`
//!   exactly when the browser used https;
//! * not logged in: 401, or 302 to the login page for a page load; not permitted / `deny`: 403;
//!   the session store stopped: nginx 500, Caddy 503, never a 200; in none of these does the
//!   app see the request;
//! * doorman with and without an `[upstream]` table (auth-only mode).

mod support;

use std::path::Path;

use support::gateway::{Gateway, Kind, TestCert, HOST, MORE_HOSTS};
use support::login::{
    form_encode, users_toml, write_users, Answer, Backend, StoreChoice, ALICE_PW, BOB_PW, COOKIE,
};
use support::redis::RedisServer;
use support::{echoed, echoed_header, Doorman, Upstream};

/// Doorman's cookie name when the browser used https (`cookie_secure = "auto"`).
const HOST_COOKIE: &str = "__Host-doorman_session";

/// Whether doorman also proxies itself (`[upstream]`), or only answers the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AuthOnly,
    WithUpstream,
}

/// The routes every test here uses.
const ROUTES: &str = r#"
[access]
default = "authenticated"

[[routes]]
path = "/public"
access = "public"

[[routes]]
path = "/dashboard"
access = "authenticated"
on_unauthenticated = "redirect"

[[routes]]
path = "/admin"
access = "authenticated"
groups = ["admin"]

[[routes]]
path = "/closed"
access = "deny"
"#;

fn doorman_toml(backend: &Backend, users: &Path, upstream: Option<&str>) -> String {
    let upstream = upstream
        .map(|url| format!("[upstream]\nurl = \"{url}\"\n"))
        .unwrap_or_default();
    format!(
        "[listen]\n\n{upstream}\n{}\n[login]\nusers_file = {users:?}\n\n\
         [forward_auth]\ntrusted_gateways = [\"127.0.0.1/32\"]\nallowed_hosts = [\"{HOST}\"]\n\
         {ROUTES}",
        backend.section("")
    )
}

/// A gateway, doorman behind it, the app, and (for a Redis store) Redis. Dropped in this order.
struct Stack {
    gateway: Gateway,
    /// Serving the gateway's checks and doorman's endpoints; kept alive with the stack.
    _doorman: Doorman,
    app: Upstream,
    redis: Option<RedisServer>,
}

struct Options {
    kind: Kind,
    mode: Mode,
    store: StoreChoice,
    cert: Option<TestCert>,
    drop: &'static [&'static str],
}

impl Options {
    fn new(kind: Kind) -> Options {
        Options {
            kind,
            mode: Mode::AuthOnly,
            store: StoreChoice::Embedded,
            cert: None,
            drop: &[],
        }
    }
}

impl Stack {
    async fn start(kind: Kind) -> Stack {
        Stack::with(Options::new(kind)).await
    }

    async fn with(o: Options) -> Stack {
        let app = Upstream::start().await;
        let redis = (o.store == StoreChoice::Redis).then(RedisServer::start);
        let backend = match &redis {
            Some(redis) => Backend::redis(redis),
            None => Backend::embedded(),
        };
        let users = write_users(&users_toml());
        let upstream = match o.mode {
            // Doorman's own upstream: the app too, as when doorman also serves some traffic.
            Mode::WithUpstream => Some(app.url()),
            Mode::AuthOnly => None,
        };
        let doorman = Doorman::start(&doorman_toml(&backend, &users, upstream.as_deref())).await;
        let gateway = Gateway::start_with(o.kind, doorman.addr, app.addr, o.cert.as_ref(), o.drop);
        Stack {
            gateway,
            _doorman: doorman,
            app,
            redis,
        }
    }

    /// Log in through the gateway's plain port; the new cookie's value.
    async fn log_in(&self, user: &str, password: &str) -> String {
        let g = &self.gateway;
        let answer = g.post_login(false, &g.origin(), user, password, None).await;
        assert_eq!(answer.status, 303, "login: {}\n{}", answer.text(), g.log());
        answer.new_cookie(COOKIE)
    }

    /// Whether the app ever received a request for `path` (query ignored).
    fn app_saw(&self, path: &str) -> bool {
        self.app
            .seen_paths()
            .iter()
            .any(|p| p.split('?').next() == Some(path))
    }
}

/// A header name as a CGI-style app reads it: lower case, `_` and `.` as `-`.
fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Every identity header name of DESIGN.md §5 (with doorman's default `[identity]`).
fn identity_names() -> Vec<&'static str> {
    let mut names = vec![
        "x-auth-user",
        "x-auth-groups",
        "x-auth-assertion",
        "x-doorman-login",
        "x-doorman-groups",
        "x-doorman-logout",
    ];
    names.extend_from_slice(doorman::identity::BUILT_IN);
    names
}

/// What a client claiming to be `admin` sends: every identity header, the user header also
/// spelled with `_` and `.` (nginx drops such names; Caddy's example deletes them), and one
/// header that is not about identity, which the app must receive: the gateway passes the
/// client's headers through, so an identity header missing at the app was cleared.
fn spoofed() -> Vec<(&'static str, &'static str)> {
    let mut headers: Vec<_> = identity_names().into_iter().map(|n| (n, "admin")).collect();
    headers.push(("x_auth_user", "admin"));
    headers.push(("x.auth.user", "admin"));
    // Under doorman's strip_prefix, but not a name the nginx example can list.
    headers.push(("x-auth-role", "admin"));
    headers.push(("x-app-theme", "admin"));
    headers
}

/// The identity headers the app received, by canonical name, with their values.
fn identity_seen(echo: &serde_json::Value) -> Vec<(String, String)> {
    let names = identity_names();
    echo["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_string(),
                pair[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(name, _)| names.contains(&canonical(name).as_str()))
        .collect()
}

/// The echo of a 200 the gateway relayed from the app.
fn app_echo(answer: &Answer, what: &str, g: &Gateway) -> serde_json::Value {
    assert_eq!(answer.status, 200, "{what}: {}\n{}", answer.text(), g.log());
    echoed(&answer.body)
}

// ---------------------------------------------------------------------------------------------
// Identity headers: doorman's or none, never the client's

async fn an_anonymous_spoofed_request_reaches_the_app_with_no_user(kind: Kind) {
    let s = Stack::start(kind).await;
    let answer = s.gateway.get("/public", &spoofed()).await;
    let echo = app_echo(&answer, "anonymous, public route", &s.gateway);
    assert_eq!(
        echoed_header(&echo, "x-app-theme"),
        ["admin"],
        "the gateway passes a client's other headers through"
    );
    // Doorman answered 200 with empty X-Auth-User / X-Auth-Groups: nginx then sends neither,
    // Caddy sends them empty. Never the client's value, nor a placeholder.
    for (name, value) in identity_seen(&echo) {
        assert!(
            value.is_empty() && ["x-auth-user", "x-auth-groups"].contains(&name.as_str()),
            "{kind:?}: the app received {name}: {value:?}"
        );
    }
    if kind == Kind::Caddy {
        assert_eq!(echoed_header(&echo, "x-auth-user"), [""]);
        assert_eq!(echoed_header(&echo, "x-auth-groups"), [""]);
        // Caddy deletes by prefix (`request_header -X-Auth-*`); nginx cannot, and its example
        // says the app must not read other X-Auth-* request headers.
        assert!(echoed_header(&echo, "x-auth-role").is_empty());
    }
}

#[tokio::test]
async fn nginx_an_anonymous_spoofed_request_reaches_the_app_with_no_user() {
    an_anonymous_spoofed_request_reaches_the_app_with_no_user(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_an_anonymous_spoofed_request_reaches_the_app_with_no_user() {
    an_anonymous_spoofed_request_reaches_the_app_with_no_user(Kind::Caddy).await;
}

async fn a_logged_in_spoofed_request_reaches_the_app_as_doorman_says(kind: Kind) {
    let s = Stack::start(kind).await;
    let cookie = s.log_in("bob", BOB_PW).await;
    let cookie_header = format!("{COOKIE}={cookie}");
    let mut headers = spoofed();
    headers.push(("cookie", &cookie_header));
    for path in ["/dashboard", "/public"] {
        let answer = s.gateway.get(path, &headers).await;
        let echo = app_echo(&answer, path, &s.gateway);
        assert_eq!(echoed_header(&echo, "x-app-theme"), ["admin"]);
        let mut seen = identity_seen(&echo);
        seen.retain(|(_, value)| !value.is_empty());
        // bob has no groups: nginx drops the empty groups header, Caddy sends it empty.
        assert_eq!(
            seen,
            [("x-auth-user".to_string(), "bob".to_string())],
            "{kind:?} {path}"
        );
    }
}

#[tokio::test]
async fn nginx_a_logged_in_spoofed_request_reaches_the_app_as_doorman_says() {
    a_logged_in_spoofed_request_reaches_the_app_as_doorman_says(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_a_logged_in_spoofed_request_reaches_the_app_as_doorman_says() {
    a_logged_in_spoofed_request_reaches_the_app_as_doorman_says(Kind::Caddy).await;
}

/// The same example with some of its clearing lines removed lets exactly those claims through:
/// the clearing is what protects the app, and the checks above can fail.
async fn without_its_clearing_lines_the_example_lets_claims_through(
    kind: Kind,
    drop: &'static [&'static str],
    leaked: &[&str],
) {
    let s = Stack::with(Options {
        drop,
        ..Options::new(kind)
    })
    .await;
    let answer = s.gateway.get("/public", &spoofed()).await;
    let echo = app_echo(&answer, "weakened example", &s.gateway);
    for name in leaked {
        assert_eq!(
            echoed_header(&echo, name),
            ["admin"],
            "{kind:?} without {drop:?}: {name}"
        );
    }
}

#[tokio::test]
async fn nginx_without_its_clearing_lines_the_example_lets_claims_through() {
    without_its_clearing_lines_the_example_lets_claims_through(
        Kind::Nginx,
        &[
            "proxy_set_header X-Forwarded-User ",
            "proxy_set_header Remote-User ",
        ],
        &["x-forwarded-user", "remote-user"],
    )
    .await;
}

#[tokio::test]
async fn caddy_without_its_clearing_lines_the_example_lets_claims_through() {
    without_its_clearing_lines_the_example_lets_claims_through(
        Kind::Caddy,
        &[
            "request_header -X-Forwarded-User",
            "request_header -Remote-User",
            "request_header -*_*",
        ],
        // Go spells a header name with `_` in its own canonical form.
        &["x-forwarded-user", "remote-user", "x_auth_user"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Login, session and logout through the gateway

async fn login_session_and_logout_work_through_the_gateway(kind: Kind, mode: Mode) {
    let s = Stack::with(Options {
        mode,
        ..Options::new(kind)
    })
    .await;
    let g = &s.gateway;

    let page = g.get("/_doorman/login?next=/dashboard", &[]).await;
    assert_eq!(page.status, 200, "login page: {}", g.log());
    assert!(page.text().contains("<form"), "{}", page.text());

    // The Origin check knows the browser's origin from X-Forwarded-Proto/-Host.
    let cross = g
        .post_login(false, "http://evil.test", "alice", ALICE_PW, None)
        .await;
    assert_eq!(cross.status, 403, "cross-site login: {}", cross.text());
    let https_origin = format!("https://{}", g.authority());
    let wrong_scheme = g
        .post_login(false, &https_origin, "alice", ALICE_PW, None)
        .await;
    assert_eq!(wrong_scheme.status, 403, "the browser used http, not https");

    let login = g
        .post_login(false, &g.origin(), "alice", ALICE_PW, Some("/dashboard"))
        .await;
    assert_eq!(login.status, 303, "login: {}", login.text());
    assert_eq!(login.header("location"), Some("/dashboard"));
    let line = login.set_cookie(COOKIE).expect("session cookie");
    assert!(
        !line.contains("Secure") && login.set_cookie(HOST_COOKIE).is_none(),
        "plain http: no Secure, no __Host- cookie: {line}"
    );
    let cookie = login.new_cookie(COOKIE);
    let cookie_header = format!("{COOKIE}={cookie}");
    let with_cookie = [("cookie", cookie_header.as_str())];

    let answer = g.get("/dashboard", &with_cookie).await;
    let echo = app_echo(&answer, "logged in", g);
    assert_eq!(echoed_header(&echo, "x-auth-user"), ["alice"]);
    assert_eq!(echoed_header(&echo, "x-auth-groups"), ["admin,staff"]);

    let session = g.get("/_doorman/session", &with_cookie).await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(echoed(&session.body)["user"], "alice");

    let origin = g.origin();
    let logout = g
        .request(
            "POST",
            "/_doorman/logout",
            &[("cookie", &cookie_header), ("origin", &origin)],
            "",
        )
        .await;
    assert_eq!(logout.status, 303, "logout: {}", logout.text());
    assert!(logout.expires_cookie(COOKIE));
    let after = g
        .get(
            "/dashboard",
            &[("cookie", &cookie_header), ("accept", "application/json")],
        )
        .await;
    assert_eq!(after.status, 401, "after logout");
}

#[tokio::test]
async fn nginx_login_session_and_logout_work_through_the_gateway() {
    login_session_and_logout_work_through_the_gateway(Kind::Nginx, Mode::AuthOnly).await;
}

#[tokio::test]
async fn nginx_login_works_when_doorman_also_has_an_upstream() {
    login_session_and_logout_work_through_the_gateway(Kind::Nginx, Mode::WithUpstream).await;
}

#[tokio::test]
async fn caddy_login_session_and_logout_work_through_the_gateway() {
    login_session_and_logout_work_through_the_gateway(Kind::Caddy, Mode::AuthOnly).await;
}

#[tokio::test]
async fn caddy_login_works_when_doorman_also_has_an_upstream() {
    login_session_and_logout_work_through_the_gateway(Kind::Caddy, Mode::WithUpstream).await;
}

/// nginx terminating TLS: the login knows the browser used https (X-Forwarded-Proto), so its
/// cookie is `__Host-` and `Secure`, its Origin check wants the https origin, and the check
/// reads the `__Host-` cookie for https requests only. On the plain port of the same nginx,
/// the plain cookie.
#[tokio::test]
async fn nginx_terminating_tls_gets_a_secure_host_cookie_and_plain_http_does_not() {
    let s = Stack::with(Options {
        cert: Some(TestCert::generate()),
        ..Options::new(Kind::Nginx)
    })
    .await;
    let g = &s.gateway;
    let https = g.tls_origin();

    let plain_origin = format!("http://{HOST}:{}", g.tls_port.expect("tls port"));
    let wrong = g
        .post_login(true, &plain_origin, "alice", ALICE_PW, None)
        .await;
    assert_eq!(wrong.status, 403, "http origin on an https login");

    let login = g.post_login(true, &https, "alice", ALICE_PW, None).await;
    assert_eq!(
        login.status,
        303,
        "https login: {}\n{}",
        login.text(),
        g.log()
    );
    assert!(login.set_cookie(COOKIE).is_none(), "{:?}", login.headers);
    let line = login.set_cookie(HOST_COOKIE).expect("__Host- cookie");
    let attributes: Vec<&str> = line.split(';').map(str::trim).collect();
    assert!(attributes.contains(&"Secure"), "{line}");
    assert!(attributes.contains(&"Path=/"), "{line}");
    assert!(!line.contains("Domain"), "{line}");
    let cookie = login.new_cookie(HOST_COOKIE);
    let host_cookie = format!("{HOST_COOKIE}={cookie}");

    let answer = g
        .request_tls("GET", "/dashboard", &[("cookie", &host_cookie)], "")
        .await;
    let echo = app_echo(&answer, "https, logged in", g);
    assert_eq!(echoed_header(&echo, "x-auth-user"), ["alice"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);

    // The same cookie over plain http is not the session (a browser would not send it there).
    let answer = g
        .get(
            "/dashboard",
            &[("cookie", &host_cookie), ("accept", "application/json")],
        )
        .await;
    assert_eq!(answer.status, 401, "a __Host- cookie over http");

    let login = g.post_login(false, &g.origin(), "bob", BOB_PW, None).await;
    assert_eq!(login.status, 303, "http login: {}", login.text());
    assert!(login.set_cookie(HOST_COOKIE).is_none());
    let line = login.set_cookie(COOKIE).expect("plain cookie");
    assert!(!line.contains("Secure"), "{line}");
}

/// The same nginx without the example's `X-Forwarded-Proto` lines: doorman takes the https
/// login for plain http and refuses the browser's https origin. What the example sets is what
/// makes the test above pass.
#[tokio::test]
async fn nginx_without_x_forwarded_proto_doorman_cannot_know_the_browser_used_https() {
    let s = Stack::with(Options {
        cert: Some(TestCert::generate()),
        drop: &["proxy_set_header X-Forwarded-Proto "],
        ..Options::new(Kind::Nginx)
    })
    .await;
    let g = &s.gateway;
    let login = g
        .post_login(true, &g.tls_origin(), "alice", ALICE_PW, None)
        .await;
    assert_eq!(login.status, 403, "{}", login.text());
    let http_origin = format!("http://{HOST}:{}", g.tls_port.expect("tls port"));
    let login = g
        .post_login(true, &http_origin, "alice", ALICE_PW, None)
        .await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert!(login.set_cookie(HOST_COOKIE).is_none());
    assert!(!login.set_cookie(COOKIE).expect("cookie").contains("Secure"));
}

// ---------------------------------------------------------------------------------------------
// Refusals: 401 / 302, 403, store down; the app never sees the request

async fn anonymous_requests_on_protected_routes_are_challenged(kind: Kind) {
    let s = Stack::start(kind).await;
    let g = &s.gateway;
    let api = [("accept", "application/json"), ("x-auth-user", "admin")];
    let page_load = [
        ("sec-fetch-mode", "navigate"),
        ("accept", "text/html,*/*;q=0.8"),
        ("x-auth-user", "admin"),
    ];

    let answer = g.get("/dashboard", &api).await;
    assert_eq!(answer.status, 401, "{kind:?} API call: {}", answer.text());
    let answer = g.get("/admin", &page_load).await;
    let expected = match kind {
        // nginx's example sends every page load to the login page (error_page 401).
        Kind::Nginx => 302,
        // Caddy relays doorman's answer: /admin keeps on_unauthenticated = "401".
        Kind::Caddy => 401,
    };
    assert_eq!(answer.status, expected, "{kind:?} /admin page load");

    let answer = g.get("/dashboard", &page_load).await;
    assert_eq!(answer.status, 302, "{kind:?} page load: {}", answer.text());
    let location = answer.header("location").expect("location").to_string();
    let next = match kind {
        Kind::Nginx => "/dashboard".to_string(),
        // From /forward-auth: the login page on the browser's origin, next = the original
        // absolute URL.
        Kind::Caddy => format!("{}/dashboard", g.origin()),
    };
    let login_page = match kind {
        // nginx makes its relative redirect absolute, with the browser's Host.
        Kind::Nginx => format!("{}/_doorman/login?next=/dashboard", g.origin()),
        Kind::Caddy => format!(
            "{}/_doorman/login?next={}",
            g.origin(),
            support::login::form_encode(&next)
        ),
    };
    assert_eq!(location, login_page, "{kind:?}");
    let path = location.trim_start_matches(&g.origin());
    let page = g.get(path, &[]).await;
    assert_eq!(page.status, 200, "{kind:?} the login page: {}", page.text());

    // Logging in there goes back to the page first asked for.
    let login = g
        .post_login(false, &g.origin(), "alice", ALICE_PW, Some(&next))
        .await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location"), Some(next.as_str()));

    assert!(
        !s.app_saw("/dashboard") && !s.app_saw("/admin"),
        "{:?}",
        s.app.seen_paths()
    );

    // Doorman's check passes anything under its prefix, in any case (the login page is not
    // behind itself): so the gateway must send every spelling of the prefix to doorman, never
    // to the app. (The nginx example's location is case-insensitive for this: with a plain
    // `location /_doorman/`, these reach the app.)
    for path in ["/_DOORMAN/x", "/_Doorman/session", "/_doorman/x"] {
        g.get(path, &api).await;
    }
    assert!(
        s.app
            .seen_paths()
            .iter()
            .all(|p| !p.to_ascii_lowercase().starts_with("/_doorman")),
        "{kind:?}: {:?}",
        s.app.seen_paths()
    );
}

#[tokio::test]
async fn nginx_anonymous_requests_on_protected_routes_are_challenged() {
    anonymous_requests_on_protected_routes_are_challenged(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_anonymous_requests_on_protected_routes_are_challenged() {
    anonymous_requests_on_protected_routes_are_challenged(Kind::Caddy).await;
}

async fn denied_and_not_permitted_requests_are_403(kind: Kind) {
    let s = Stack::start(kind).await;
    let g = &s.gateway;
    let alice = format!("{COOKIE}={}", s.log_in("alice", ALICE_PW).await);
    let bob = format!("{COOKIE}={}", s.log_in("bob", BOB_PW).await);

    for (cookie, path) in [
        (None, "/closed"),
        (Some(&alice), "/closed"),
        (Some(&bob), "/admin"),
    ] {
        let mut headers = vec![("accept", "application/json")];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        let answer = g.get(path, &headers).await;
        assert_eq!(answer.status, 403, "{kind:?} {path} as {cookie:?}");
    }
    assert!(!s.app_saw("/closed") && !s.app_saw("/admin"));
    let answer = g.get("/admin", &[("cookie", &alice)]).await;
    let echo = app_echo(&answer, "alice on /admin", g);
    assert_eq!(echoed_header(&echo, "x-auth-user"), ["alice"]);
}

#[tokio::test]
async fn nginx_denied_and_not_permitted_requests_are_403() {
    denied_and_not_permitted_requests_are_403(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_denied_and_not_permitted_requests_are_403() {
    denied_and_not_permitted_requests_are_403(Kind::Caddy).await;
}

/// Redis stopped (SIGSTOP: connections open, nothing answers): doorman answers the check 503;
/// nginx turns that into 500, Caddy relays it. Never a 200, and the app is not reached. A public
/// route still reaches the app, without identity.
async fn a_stopped_store_fails_closed_through_the_gateway(kind: Kind) {
    let s = Stack::with(Options {
        store: StoreChoice::Redis,
        ..Options::new(kind)
    })
    .await;
    let g = &s.gateway;
    let cookie = format!("{COOKIE}={}", s.log_in("alice", ALICE_PW).await);
    let answer = g.get("/dashboard", &[("cookie", &cookie)]).await;
    assert_eq!(answer.status, 200, "before the outage");
    let served = s.app.seen_paths().len();

    s.redis.as_ref().expect("redis").pause();
    for path in ["/dashboard", "/admin"] {
        let answer = g
            .get(path, &[("cookie", &cookie), ("accept", "application/json")])
            .await;
        assert_eq!(
            answer.status.as_u16(),
            kind.store_down_status(),
            "{kind:?} {path} with the store stopped: {}",
            answer.text()
        );
    }
    assert_eq!(s.app.seen_paths().len(), served, "the app was reached");

    let answer = g
        .get("/public", &[("cookie", &cookie), ("x-auth-user", "admin")])
        .await;
    let echo = app_echo(&answer, "public route, store stopped", g);
    assert!(
        echoed_header(&echo, "x-auth-user")
            .iter()
            .all(String::is_empty),
        "{echo}"
    );
    s.redis.as_ref().expect("redis").resume();
}

#[tokio::test]
async fn nginx_a_stopped_store_fails_closed_with_500() {
    a_stopped_store_fails_closed_through_the_gateway(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_a_stopped_store_fails_closed_with_503() {
    a_stopped_store_fails_closed_through_the_gateway(Kind::Caddy).await;
}

/// Signing in once for several hosts behind one Caddy (DESIGN.md §8): `app.test` and `b.test`
/// send the browser to the login host `login.test`, which hands each a one-time code for its
/// own cookie; a logout on `b.test` ends the session on `app.test` too. (Caddy relays doorman's
/// redirect to the login host as it is; the nginx example's `error_page` redirect stays on the
/// request's own host, so it signs in per host.)
#[tokio::test]
async fn caddy_signs_in_once_for_several_hosts() {
    let app = Upstream::start().await;
    let users = write_users(&users_toml());
    let backend = Backend::embedded();
    let [login, other] = MORE_HOSTS;
    let toml = |public_origin: &str| {
        format!(
            "[listen]\n\n{}\n[login]\nusers_file = {users:?}\n{public_origin}\n\n\
             [forward_auth]\ntrusted_gateways = [\"127.0.0.1/32\"]\n\
             allowed_hosts = [\"{HOST}\", \"{login}\", \"{other}\"]\n{ROUTES}",
            backend.section("")
        )
    };
    let doorman = Doorman::start(&toml("")).await;
    let g = Gateway::start(Kind::Caddy, doorman.addr, app.addr);
    // The login host's origin names the gateway's port, known only now.
    let login_origin = format!("http://{login}:{}", g.port);
    std::fs::write(
        &doorman.file,
        toml(&format!("public_origin = \"{login_origin}\"")),
    )
    .expect("rewrite config");
    assert!(doorman.reload().await, "reload with public_origin");

    let navigate = [("sec-fetch-mode", "navigate")];
    let page = |host: &str| format!("http://{host}:{}/dashboard", g.port);
    // app.test without a session: to the login host, with the page as next.
    let a = g.request_on(HOST, "GET", "/dashboard", &navigate, "").await;
    assert_eq!(a.status, 302, "{}\n{}", a.text(), g.log());
    let expected = format!(
        "{login_origin}/_doorman/login?next={}",
        form_encode(&page(HOST))
    );
    assert_eq!(a.header("location"), Some(expected.as_str()));

    // The login there sends the browser to app.test's callback with a code.
    let form = format!(
        "username=alice&password={}&next={}",
        form_encode(ALICE_PW),
        form_encode(&page(HOST))
    );
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", login_origin.as_str()),
    ];
    let a = g
        .request_on(login, "POST", "/_doorman/login", &headers, &form)
        .await;
    assert_eq!(a.status, 303, "{}\n{}", a.text(), g.log());
    let login_cookie = format!("{COOKIE}={}", a.new_cookie(COOKIE));
    let redeem = |a: Answer, host: &'static str| {
        let g = &g;
        async move {
            let location = a.header("location").expect("Location").to_string();
            let origin = format!("http://{host}:{}", g.port);
            let callback = location
                .strip_prefix(&origin)
                .unwrap_or_else(|| panic!("{location} is not on {origin}"));
            assert!(
                callback.starts_with("/_doorman/callback?code="),
                "{callback}"
            );
            let a = g.request_on(host, "GET", callback, &[], "").await;
            assert_eq!(a.status, 303, "{}\n{}", a.text(), g.log());
            // Replayed: refused.
            let again = g.request_on(host, "GET", callback, &[], "").await;
            assert_eq!(again.status, 403);
            format!("{COOKIE}={}", a.new_cookie(COOKIE))
        }
    };
    let app_cookie = redeem(a, HOST).await;
    let a = g
        .request_on(HOST, "GET", "/dashboard", &[("cookie", &app_cookie)], "")
        .await;
    assert_eq!(echoed_header(&echoed(&a.body), "x-auth-user"), ["alice"]);

    // b.test: the login host already knows the browser, so no form, straight back with a code.
    let a = g
        .request_on(other, "GET", "/dashboard", &navigate, "")
        .await;
    assert_eq!(a.status, 302);
    let login_page = a
        .header("location")
        .and_then(|l| l.strip_prefix(&login_origin))
        .expect("to the login host")
        .to_string();
    let a = g
        .request_on(login, "GET", &login_page, &[("cookie", &login_cookie)], "")
        .await;
    assert_eq!(a.status, 303, "{}", a.text());
    let b_cookie = redeem(a, other).await;
    let a = g
        .request_on(other, "GET", "/dashboard", &[("cookie", &b_cookie)], "")
        .await;
    assert_eq!(echoed_header(&echoed(&a.body), "x-auth-user"), ["alice"]);
    // Two sessions, not one id shared between hosts.
    assert_ne!(app_cookie, b_cookie);

    // Logout on b.test ends app.test's session too.
    let b_origin = format!("http://{other}:{}", g.port);
    let a = g
        .request_on(
            other,
            "POST",
            "/_doorman/logout",
            &[("cookie", &b_cookie), ("origin", &b_origin)],
            "",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.text());
    let json = [("accept", "application/json")];
    for (host, cookie) in [(HOST, &app_cookie), (other, &b_cookie)] {
        let mut headers = json.to_vec();
        headers.push(("cookie", cookie));
        let a = g.request_on(host, "GET", "/dashboard", &headers, "").await;
        assert_eq!(a.status, 401, "{host} after logout");
    }
}
