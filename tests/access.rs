//! Access rules over real sockets: the route table, the one path normaliser, the answers to a
//! client without a session, and what must never cross to the upstream (forged identity,
//! rewrite headers, doorman's own cookie).
//!
//! Sessions do not exist yet, so every request is anonymous: a protected route answering 401
//! (or 302 to the login page) and the upstream having seen nothing is the proof that a rule
//! held. Every refusal is checked against the upstream's record of what it received.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use support::raw::{RawConn, RawResponse};
use support::{echoed, echoed_header, get, h1_client, h2_client, send, Doorman, Upstream};

/// Generous bound for one response on loopback; a safety net, never a timing assertion.
const WAIT: Duration = Duration::from_secs(10);

/// An upstream and doorman in front of it, with `extra` appended to the config (the support
/// helper adds `[access] default = "public"` unless `extra` has its own `[access]`).
async fn start(extra: &str) -> (Upstream, Doorman) {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", extra)).await;
    (upstream, doorman)
}

/// Send `method target` exactly as written (no client-side normalisation) on a fresh raw
/// connection, with `headers` (`Name: value` lines), and read one response.
async fn raw(doorman: &Doorman, method: &str, target: &str, headers: &[&str]) -> RawResponse {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut conn = RawConn::connect(doorman.addr).await;
    assert!(conn.send(req.as_bytes()).await, "doorman closed early");
    conn.response(WAIT)
        .await
        .unwrap_or_else(|| panic!("no response to {method} {target:?}"))
}

/// The status of `GET target` sent raw.
async fn status_of(doorman: &Doorman, target: &str) -> u16 {
    raw(doorman, "GET", target, &[]).await.status
}

/// The echo upstream's JSON from a raw response.
fn echo_of(resp: &RawResponse) -> serde_json::Value {
    assert_eq!(
        resp.status,
        200,
        "expected the upstream's echo, got {} {:?}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    echoed(&Bytes::from(resp.body.clone()))
}

/// A request with any method and headers, for the hyper client.
fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

// ---- the route table ----------------------------------------------------------------------

/// `path = "/dashboard"` must protect the page and everything below it, but a string prefix
/// would also swallow `/dashboardx` (over-blocking) and, worse, a rule written for `/api/v1`
/// that matched `/api/v10` would apply the wrong policy.
#[tokio::test]
async fn path_routes_cover_whole_segments_not_string_prefixes() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/dashboard"
access = "authenticated"
"#,
    )
    .await;
    for protected in [
        "/dashboard",
        "/dashboard/",
        "/dashboard/x",
        "/dashboard/x/y?z=1",
    ] {
        assert_eq!(status_of(&doorman, protected).await, 401, "{protected}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
    for public in ["/dashboardx", "/dash", "/x/dashboard"] {
        assert_eq!(status_of(&doorman, public).await, 200, "{public}");
    }
    assert_eq!(
        upstream.seen_paths(),
        ["/dashboardx", "/dash", "/x/dashboard"]
    );
}

/// Globs are how operators protect a family of paths (`/api/*/admin/**`); `*` must be exactly
/// one segment and `**` any depth, or a rule would silently cover too little or too much.
#[tokio::test]
async fn globs_match_one_segment_per_star_and_any_depth_per_double_star() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
glob = "/api/*/admin/**"
access = "deny"

[[routes]]
glob = "/**/secret"
access = "authenticated"
"#,
    )
    .await;
    for (path, want) in [
        ("/api/v1/admin", 403),
        ("/api/v1/admin/", 403),
        ("/api/v1/admin/users/7", 403),
        ("/api/admin", 200),
        ("/api/v1/v2/admin", 200),
        ("/api/v1/adminx", 200),
        ("/secret", 401),
        ("/a/secret", 401),
        ("/a/b/c/secret", 401),
        ("/a/secretx", 200),
        ("/a/secret/x", 200),
    ] {
        assert_eq!(status_of(&doorman, path).await, want, "{path}");
    }
    assert_eq!(
        upstream.seen_paths(),
        [
            "/api/admin",
            "/api/v1/v2/admin",
            "/api/v1/adminx",
            "/a/secretx",
            "/a/secret/x"
        ]
    );
}

/// `methods` is part of the match: a route that makes reads public must not make writes
/// public, and a request with another method must reach the later rule written for it rather
/// than being refused or allowed by the first.
#[tokio::test]
async fn methods_are_part_of_the_match_and_other_methods_fall_through() {
    let (upstream, doorman) = start(
        r#"
[access]
default = "authenticated"

[[routes]]
path = "/api"
methods = ["GET"]
access = "public"

[[routes]]
path = "/api"
access = "deny"
"#,
    )
    .await;
    let client = h1_client();
    let (status, _, _) = send(&client, get(&doorman.url("/api/items"), &[])).await;
    assert_eq!(status, 200);
    // "GET" also matches HEAD (frameworks answer HEAD with the GET handler).
    let (status, _, _) = send(
        &client,
        request(Method::HEAD, &doorman.url("/api/items"), &[]),
    )
    .await;
    assert_eq!(status, 200, "HEAD on a GET route");
    for method in [Method::POST, Method::DELETE, Method::PUT] {
        let (status, _, _) = send(
            &client,
            request(method.clone(), &doorman.url("/api/items"), &[]),
        )
        .await;
        assert_eq!(status, 403, "{method}");
    }
    // Neither /api route matches /other: the default applies.
    let (status, _, _) = send(&client, get(&doorman.url("/other"), &[])).await;
    assert_eq!(status, 401);
    assert_eq!(upstream.seen_paths(), ["/api/items", "/api/items"]);
}

/// Routes are tried in file order and the first match decides, as operators read the file; a
/// broader later rule must not override a narrower earlier one, nor the reverse.
#[tokio::test]
async fn the_first_matching_route_wins() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/shop/admin"
access = "deny"

[[routes]]
path = "/shop"
access = "public"

[[routes]]
path = "/docs"
access = "public"

[[routes]]
path = "/docs/internal"
access = "deny"
"#,
    )
    .await;
    assert_eq!(status_of(&doorman, "/shop/admin/x").await, 403);
    assert_eq!(status_of(&doorman, "/shop/cart").await, 200);
    // The earlier, broader public route wins over the later deny.
    assert_eq!(status_of(&doorman, "/docs/internal").await, 200);
    assert_eq!(upstream.seen_paths(), ["/shop/cart", "/docs/internal"]);
}

/// A request matching no route gets `[access] default`, and when the operator did not set it
/// that is "authenticated": forgetting a route must fail closed, not open.
#[tokio::test]
async fn unmatched_requests_get_the_access_default_which_is_authenticated_unless_set() {
    // `[access]` present without `default`: the built-in default applies.
    for (access, want) in [
        ("case_sensitive = false", 401),
        ("default = \"authenticated\"", 401),
        ("default = \"public\"", 200),
        ("default = \"deny\"", 403),
    ] {
        let (upstream, doorman) = start(&format!(
            "[access]\n{access}\n\n[[routes]]\npath = \"/open\"\naccess = \"public\"\n"
        ))
        .await;
        assert_eq!(status_of(&doorman, "/elsewhere").await, want, "{access}");
        assert_eq!(status_of(&doorman, "/open").await, 200, "{access}");
        let forwarded: Vec<String> = if want == 200 {
            vec!["/elsewhere".into(), "/open".into()]
        } else {
            vec!["/open".into()]
        };
        assert_eq!(upstream.seen_paths(), forwarded, "{access}");
    }
}

/// `deny` is an absolute refusal: 403 with doorman's short body, and the upstream never sees
/// the request.
#[tokio::test]
async fn deny_routes_answer_403_without_reaching_the_upstream() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/internal"
access = "deny"
"#,
    )
    .await;
    let (status, headers, body) =
        send(&h1_client(), get(&doorman.url("/internal/metrics"), &[])).await;
    assert_eq!(status, 403);
    assert!(
        headers.get("www-authenticate").is_none(),
        "403 is no login prompt"
    );
    assert!(!body.is_empty() && body.len() < 100, "short body: {body:?}");
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// Express, ASP.NET and case-insensitive file systems route `/DASHBOARD` to the `/dashboard`
/// handler; a case-sensitive proxy in front of them would be bypassed by capital letters.
#[tokio::test]
async fn routes_match_case_insensitively_by_default() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/dashboard"
access = "authenticated"

[[routes]]
path = "/Reports"
access = "deny"

[[routes]]
glob = "/API/*/Admin"
access = "deny"
"#,
    )
    .await;
    for (path, want) in [
        ("/DASHBOARD", 401),
        ("/Dashboard/X", 401),
        ("/dAsHbOaRd/", 401),
        ("/reports", 403),
        ("/REPORTS/q1", 403),
        ("/api/v1/admin", 403),
        ("/Api/V2/ADMIN", 403),
    ] {
        assert_eq!(status_of(&doorman, path).await, want, "{path}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// With `case_sensitive = true` (apps that route case-sensitively) a route covers only its own
/// spelling, and the path is forwarded with its case as sent.
#[tokio::test]
async fn case_sensitive_routes_only_match_their_exact_case() {
    let (upstream, doorman) = start(
        r#"
[access]
default = "public"
case_sensitive = true

[[routes]]
path = "/dashboard"
access = "authenticated"
"#,
    )
    .await;
    assert_eq!(status_of(&doorman, "/dashboard/x").await, 401);
    let resp = raw(&doorman, "GET", "/DASHBOARD/x", &[]).await;
    assert_eq!(echo_of(&resp)["uri"], "/DASHBOARD/x");
    assert_eq!(upstream.seen_paths(), ["/DASHBOARD/x"]);
}

// ---- answers to a client without a session ----------------------------------------------

/// A protected route without a session answers 401 with a `WWW-Authenticate` challenge
/// (RFC 9110 §11.6.1 requires one) and a short fixed body, and the upstream — which trusts
/// everything doorman forwards — never sees the request.
#[tokio::test]
async fn a_protected_route_without_a_session_gets_401_with_a_challenge() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/dashboard"
access = "authenticated"
"#,
    )
    .await;
    let client = h1_client();
    for req in [
        get(&doorman.url("/dashboard?x=1"), &[]),
        get(
            &doorman.url("/dashboard"),
            &[("cookie", "doorman_session=not-a-session")],
        ),
        request(Method::POST, &doorman.url("/dashboard/save"), &[]),
    ] {
        let (status, headers, body) = send(&client, req).await;
        assert_eq!(status, 401);
        assert_eq!(headers["www-authenticate"], "Doorman realm=\"doorman\"");
        assert!(headers.get("location").is_none());
        assert!(!body.is_empty() && body.len() < 100, "short body: {body:?}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

const REDIRECT_ROUTES: &str = r#"
[[routes]]
path = "/dashboard"
access = "authenticated"
on_unauthenticated = "redirect"
"#;

/// Browsers navigating to a protected page should land on the login form and come back to
/// exactly where they were: `next` is the normalised path and the original query, encoded so
/// that nothing in it can be read as part of the login URL's own query.
#[tokio::test]
async fn redirect_mode_sends_page_loads_to_the_login_page_with_next() {
    let (upstream, doorman) = start(REDIRECT_ROUTES).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (target, headers, location) in [
        (
            "/dashboard?x=1",
            vec!["Sec-Fetch-Mode: navigate", "Accept: */*"],
            "/_doorman/login?next=%2Fdashboard%3Fx%3D1",
        ),
        (
            "/dashboard?x=1",
            vec![&*format!("Accept: {browser}")],
            "/_doorman/login?next=%2Fdashboard%3Fx%3D1",
        ),
        (
            // Normalised path, query exactly as sent (its escapes escaped again).
            "//public/../Dashboard/./a%7Eb/?q=%2F&r=1",
            vec!["Sec-Fetch-Mode: navigate"],
            "/_doorman/login?next=%2FDashboard%2Fa~b%2F%3Fq%3D%252F%26r%3D1",
        ),
        (
            "/dashboard",
            vec!["Sec-Fetch-Mode: navigate"],
            "/_doorman/login?next=%2Fdashboard",
        ),
    ] {
        let resp = raw(&doorman, "GET", target, &headers).await;
        assert_eq!(resp.status, 302, "{target} {headers:?}");
        assert_eq!(resp.header("location"), Some(location), "{target}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// A fetch or API client cannot follow a redirect to an HTML form; it needs a 401 it can act
/// on, naming the login page. `Sec-Fetch-Mode` (when present) decides over `Accept`.
#[tokio::test]
async fn redirect_mode_gives_api_clients_401_json_with_the_login_url() {
    let (upstream, doorman) = start(REDIRECT_ROUTES).await;
    let expected =
        r#"{"error":"unauthenticated","login_url":"/_doorman/login?next=%2Fdashboard%3Fx%3D1"}"#;
    for headers in [
        vec!["Sec-Fetch-Mode: cors", "Accept: text/html"],
        vec!["Sec-Fetch-Mode: no-cors"],
        vec!["Accept: application/json"],
        vec!["Accept: application/json, text/html;q=0.5"],
        vec![],
    ] {
        let resp = raw(&doorman, "GET", "/dashboard?x=1", &headers).await;
        assert_eq!(resp.status, 401, "{headers:?}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{headers:?}"
        );
        assert_eq!(String::from_utf8_lossy(&resp.body), expected, "{headers:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Doorman realm=\"doorman\"")
        );
        assert!(resp.header("location").is_none());
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// The login URL follows `[login] prefix`: with a custom prefix a hard-coded `/_doorman` would
/// send users to the app (or nowhere).
#[tokio::test]
async fn a_custom_login_prefix_shows_in_the_login_url() {
    let (upstream, doorman) =
        start(&format!("[login]\nprefix = \"/auth\"\n{REDIRECT_ROUTES}")).await;
    let resp = raw(
        &doorman,
        "GET",
        "/dashboard/a?b=c",
        &["Sec-Fetch-Mode: navigate"],
    )
    .await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some("/auth/login?next=%2Fdashboard%2Fa%3Fb%3Dc")
    );
    let resp = raw(&doorman, "GET", "/dashboard", &["Accept: application/json"]).await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        String::from_utf8_lossy(&resp.body),
        r#"{"error":"unauthenticated","login_url":"/auth/login?next=%2Fdashboard"}"#
    );
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

// ---- the path normaliser on the wire ------------------------------------------------------

/// Route bypasses come from the proxy and the app reading one path two ways. Every spelling an
/// app might route to `/admin` must be matched as `/admin` (401), and every spelling without
/// one agreed reading must be refused (400); none may reach the upstream. Sent over raw
/// sockets so no client library tidies the path first.
#[tokio::test]
async fn bypass_spellings_of_a_protected_path_never_reach_the_upstream() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/admin"
access = "authenticated"

[[routes]]
path = "/public"
access = "public"
"#,
    )
    .await;
    let cases: &[(&str, u16)] = &[
        ("/admin", 401),
        ("/ADMIN", 401),
        ("/Admin/Users", 401),
        ("//admin", 401),
        ("///admin//x", 401),
        ("/./admin", 401),
        ("/public/../admin", 401),
        ("/public/./../admin/", 401),
        ("/%61dmin", 401),
        ("/%61%64%6D%69%6E", 401),
        ("/%41DMIN", 401),
        ("/public/%2e%2e/admin", 401),
        ("/public/.%2E/admin", 401),
        ("/public/%2E./ADMIN", 401),
        ("/admin/", 401),
        ("/admin/.", 401),
        ("/admin/x/..", 401),
        ("http://app.test/admin", 401),
        ("http://app.test//public/../admin", 401),
        ("/%2e%2e/admin", 400),
        ("/..", 400),
        ("/../admin", 400),
        ("/public/../../admin", 400),
        ("/admin;x", 400),
        ("/admin;jsessionid=1", 400),
        ("/admin/..;/x", 400),
        ("/public/..;/admin", 400),
        ("/admin%2Fx", 400),
        ("/public%2F..%2Fadmin", 400),
        ("/public/..%2fadmin", 400),
        ("/%2Fadmin", 400),
        ("/admin%5C", 400),
        ("/public/..%5cadmin", 400),
        ("/admin%00", 400),
        ("/admin%00.html", 400),
        ("/admin%0a", 400),
        ("/admin%09", 400),
        ("/admin%7f", 400),
        ("/admin\\x", 400),
        ("/public\\..\\admin", 400),
        ("/%", 400),
        ("/admin%", 400),
        ("/admin%4", 400),
        ("/%zzadmin", 400),
    ];
    let mut wrong = Vec::new();
    for &(target, want) in cases {
        let got = status_of(&doorman, target).await;
        if got != want {
            wrong.push(format!("{target:?}: want {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    assert!(
        upstream.seen_paths().is_empty(),
        "the upstream received refused requests: {:?}",
        upstream.seen_paths()
    );
    // The recorder works: a public request is seen, alone.
    assert_eq!(status_of(&doorman, "/public/x").await, 200);
    assert_eq!(upstream.seen_paths(), ["/public/x"]);
}

/// The request-head half of the bypass corpus: methods an app reads differently from the route
/// table (`get` run as GET), and hosts that are missing, repeated or not an authority. Each is
/// refused before any route is consulted, and none reaches the upstream. Sent as exact bytes.
#[tokio::test]
async fn request_head_bypasses_are_refused_and_never_reach_the_upstream() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/reports"
methods = ["GET"]
access = "authenticated"

[[routes]]
path = "/admin"
access = "deny"

[access]
default = "public"
"#,
    )
    .await;
    let cases: &[(&str, u16)] = &[
        ("get /reports HTTP/1.1\r\nHost: a\r\n", 400),
        ("Get /reports HTTP/1.1\r\nHost: a\r\n", 400),
        ("gET /reports HTTP/1.1\r\nHost: a\r\n", 400),
        (
            "post /reports HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n",
            400,
        ),
        ("propfind /reports HTTP/1.1\r\nHost: a\r\n", 400),
        ("Propfind /admin HTTP/1.1\r\nHost: a\r\n", 400),
        ("GET /reports HTTP/1.1\r\nHost: a\r\n", 401),
        (
            "GET /admin HTTP/1.1\r\nHost: a\r\nX-HTTP-Method-Override: GET\r\n",
            403,
        ),
        ("GET /x HTTP/1.1\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: a\r\nHost: a\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: a b\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: evil/x\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: u@h\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: u:p@h:80\r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: \r\n", 400),
        ("GET /x HTTP/1.1\r\nHost: h:99999999\r\n", 400),
        ("GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n", 400),
        (
            "CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n",
            405,
        ),
    ];
    let mut wrong = Vec::new();
    for &(head, want) in cases {
        let mut conn = RawConn::connect(doorman.addr).await;
        assert!(conn.send(format!("{head}\r\n").as_bytes()).await);
        let got = conn.response(WAIT).await.map_or(0, |r| r.status);
        if got != want {
            wrong.push(format!("{head:?}: want {want}, got {got}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    assert!(
        upstream.seen_paths().is_empty(),
        "the upstream received refused requests: {:?}",
        upstream.seen_paths()
    );

    // HTTP/2 carries the method in `:method`: the same rule.
    let client = h2_client();
    let lower = Method::from_bytes(b"get").expect("extension method");
    let (status, _, _) = send(&client, request(lower, &doorman.url("/reports"), &[])).await;
    assert_eq!(status, 400, ":method get");
    let (status, _, _) = send(
        &client,
        request(Method::HEAD, &doorman.url("/reports"), &[]),
    )
    .await;
    assert_eq!(status, 401, "HEAD over h2");
    // A route listing GET covers HEAD (raw, a HEAD answer's length would be read as a body).
    let (status, _, _) = send(
        &h1_client(),
        request(Method::HEAD, &doorman.url("/reports"), &[]),
    )
    .await;
    assert_eq!(status, 401, "HEAD over h1");
    assert!(upstream.seen_paths().is_empty());

    // The rules refuse only what is ambiguous: HTTP/1.0 may omit Host, upper-case extension
    // methods pass.
    for (head, want) in [
        ("GET /x HTTP/1.0\r\n", 200),
        ("PROPFIND /x HTTP/1.1\r\nHost: a\r\n", 200),
        ("GET /x HTTP/1.1\r\nHost: [::1]:8080\r\n", 200),
    ] {
        let mut conn = RawConn::connect(doorman.addr).await;
        assert!(conn.send(format!("{head}\r\n").as_bytes()).await);
        let got = conn.response(WAIT).await.map_or(0, |r| r.status);
        assert_eq!(got, want, "{head:?}");
    }
}

/// HTTP/2 carries the path in `:path`; it must go through the same normaliser and table.
#[tokio::test]
async fn http2_requests_are_decided_on_the_same_normalised_path() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/admin"
access = "authenticated"
"#,
    )
    .await;
    let client = h2_client();
    for (path, want) in [
        ("//ADMIN/./x", 401),
        ("/public/../admin", 401),
        ("/%61dmin", 401),
        ("/admin;x", 400),
        ("/admin%2Fx", 400),
        ("/%2e%2e/admin", 400),
    ] {
        let (status, _, _) = send(&client, get(&doorman.url(path), &[])).await;
        assert_eq!(status, want, "{path}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// The upstream must receive exactly the path the rules were checked against — otherwise the
/// app could route a request somewhere the proxy never judged — with the query untouched
/// (never matched, never rewritten).
#[tokio::test]
async fn the_path_forwarded_is_exactly_the_path_matched() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/files"
access = "deny"

[[routes]]
path = "/public"
access = "public"
"#,
    )
    .await;
    for (target, forwarded) in [
        ("/files/../public/./x//y?q=%2F..", "/public/x/y?q=%2F.."),
        (
            "/public/%7Euser/%41%2d?a=%41&b=/../x",
            "/public/~user/A-?a=%41&b=/../x",
        ),
        ("/public/%c3%a9t%C3%A9", "/public/%C3%A9t%C3%A9"),
        ("/public/%252e%252e/files", "/public/%252e%252e/files"),
        ("//public/a/b/../", "/public/a/"),
        ("/PUBLIC/x", "/PUBLIC/x"),
    ] {
        let resp = raw(&doorman, "GET", target, &[]).await;
        assert_eq!(echo_of(&resp)["uri"], forwarded, "{target}");
    }
    // The deny route is judged on the normalised path too.
    assert_eq!(status_of(&doorman, "/public/../files/x").await, 403);
    assert_eq!(
        upstream.seen_paths(),
        [
            "/public/x/y?q=%2F..",
            "/public/~user/A-?a=%41&b=/../x",
            "/public/%C3%A9t%C3%A9",
            "/public/%252e%252e/files",
            "/public/a/",
            "/PUBLIC/x"
        ]
    );
}

// ---- client headers never change the decision ---------------------------------------------

const REWRITE_HEADERS: &[&str] = &[
    "X-Original-URL: /public",
    "X-Rewrite-URL: /public",
    "X-Forwarded-Uri: /public",
    "X-Forwarded-Prefix: /public",
    "X-HTTP-Method-Override: GET",
];

/// IIS, Symfony and many frameworks honour `X-Original-URL` / `X-HTTP-Method-Override`; the
/// decision must be made on the request line alone, whatever the client claims in headers.
#[tokio::test]
async fn rewrite_and_override_headers_never_change_the_decision() {
    let (upstream, doorman) = start(
        r#"
[[routes]]
path = "/admin"
access = "authenticated"

[[routes]]
path = "/api"
methods = ["GET"]
access = "public"

[[routes]]
path = "/api"
access = "deny"
"#,
    )
    .await;
    let resp = raw(&doorman, "GET", "/admin/users", REWRITE_HEADERS).await;
    assert_eq!(resp.status, 401);
    for h in REWRITE_HEADERS {
        let resp = raw(&doorman, "GET", "/admin", &[h]).await;
        assert_eq!(resp.status, 401, "{h}");
        let resp = raw(&doorman, "DELETE", "/api/items/1", &[h]).await;
        assert_eq!(resp.status, 403, "{h}");
    }
    let resp = raw(&doorman, "POST", "/api/items", REWRITE_HEADERS).await;
    assert_eq!(resp.status, 403);
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// On a public route those headers must not reach the app either: there they would rewrite a
/// request doorman judged as `/public` into `/admin` inside the app.
#[tokio::test]
async fn rewrite_and_override_headers_are_stripped_from_forwarded_requests() {
    let (_upstream, doorman) = start(
        r#"
[[routes]]
path = "/admin"
access = "authenticated"
"#,
    )
    .await;
    let resp = raw(
        &doorman,
        "GET",
        "/public",
        &[
            "X-Original-URL: /admin",
            "X-Rewrite-URL: /admin",
            "X-Forwarded-Uri: /admin",
            "x_original_url: /admin",
            "X.Rewrite.URL: /admin",
            "X-HTTP-Method-Override: DELETE",
            "x_http_method_override: DELETE",
            "X-Client-IP: 10.0.0.1",
            "X-Cluster-Client-IP: 10.0.0.1",
            "Fastly-Client-IP: 10.0.0.1",
            "CF-Connecting-IP: 10.0.0.1",
            "x_client_ip: 10.0.0.1",
            "X-Original-URI: /admin",
            "X-Original-Method: GET",
            "X-Original-Host: admin.test",
            "X-Forwarded-Method: GET",
            "X-Request-Id: kept",
        ],
    )
    .await;
    let echo = echo_of(&resp);
    let names: Vec<String> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            pair[0]
                .as_str()
                .unwrap_or_default()
                .replace(['_', '.'], "-")
        })
        .collect();
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-http-method-override",
        "x-client-ip",
        "x-cluster-client-ip",
        "fastly-client-ip",
        "cf-connecting-ip",
        "x-original-uri",
        "x-original-method",
        "x-original-host",
        "x-forwarded-method",
    ] {
        assert!(!names.iter().any(|n| n == gone), "{gone} forwarded: {echo}");
    }
    assert_eq!(echoed_header(&echo, "x-request-id"), ["kept"]);
    assert_eq!(echo["method"], "GET");
}

// ---- doorman's own prefix -------------------------------------------------------------------

/// Doorman's endpoints (login, logout, session) live under `[login] prefix`; a request there
/// must never reach the app — whatever the routes say and however the path is spelled — or an
/// app route could impersonate the login page.
#[tokio::test]
async fn paths_under_the_login_prefix_are_answered_by_doorman_never_forwarded() {
    let (upstream, doorman) = start(
        r#"
[access]
default = "public"

[[routes]]
glob = "/**"
access = "public"
"#,
    )
    .await;
    // Doorman's endpoints answer (the login form, in every spelling of its path) ...
    for target in [
        "/_doorman/login",
        "/_doorman/login?next=%2F",
        "//_doorman/login",
        "/x/../_doorman/login",
        "/%5Fdoorman/login",
        "/_DOORMAN/login",
    ] {
        assert_eq!(status_of(&doorman, target).await, 200, "{target}");
    }
    // ... the session probe answers 401 without a session, and logout redirects ...
    assert_eq!(status_of(&doorman, "/_doorman/./session").await, 401);
    let resp = raw(&doorman, "POST", "/_doorman/logout", &["Content-Length: 0"]).await;
    assert_eq!(resp.status, 303);
    // ... and everything else under the prefix is doorman's 404, never the app's.
    for target in ["/_doorman", "/_doorman/", "/_doorman/x/y", "/_Doorman"] {
        assert_eq!(status_of(&doorman, target).await, 404, "{target}");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
    // Only whole segments: /_doormanx is the app's.
    assert_eq!(status_of(&doorman, "/_doormanx").await, 200);
    assert_eq!(upstream.seen_paths(), ["/_doormanx"]);
}

/// With a custom prefix, that prefix is doorman's, and `/_doorman` is an ordinary app path.
#[tokio::test]
async fn a_custom_login_prefix_is_the_one_never_forwarded() {
    let (upstream, doorman) = start("[login]\nprefix = \"/auth\"\n").await;
    assert_eq!(status_of(&doorman, "/auth/login").await, 200);
    assert_eq!(status_of(&doorman, "/auth").await, 404);
    assert_eq!(status_of(&doorman, "/_doorman/login").await, 200);
    assert_eq!(upstream.seen_paths(), ["/_doorman/login"]);
}

// ---- identity headers ----------------------------------------------------------------------

/// The upstream trusts the configured identity headers because only doorman can reach it. A
/// client-sent copy under any name the app might read as one of them — in any case, with `_`
/// or `.` for `-` (CGI-style stacks fold them), repeated — must be removed, with the
/// configured prefix, `strip_headers`, `X-Doorman-*` and the other proxies' names; unrelated
/// lookalikes must pass.
#[tokio::test]
async fn configured_and_built_in_identity_headers_are_stripped_in_every_spelling() {
    let (_upstream, doorman) = start(
        r#"
[identity]
user_header = "X-User-Name"
groups_header = "X-User-Roles"
strip_prefix = "X-MyCo-"
strip_headers = ["X-Api-User"]
"#,
    )
    .await;
    let forged = [
        "X-User-Name",
        "x-user-name",
        "X_USER_NAME",
        "x.user.name",
        "X-User-Name",
        "X-User-Roles",
        "x_user_roles",
        "X.User.Roles",
        "X-MyCo-Tenant",
        "x-myco-role",
        "X_MYCO_ANYTHING",
        "x.myco.x",
        "X-Api-User",
        "x_api_user",
        "X.API.USER",
        "X-Doorman-Login",
        "x_doorman_groups",
        "X.Doorman.Logout",
        "X-Doorman-Anything",
        "X-Forwarded-User",
        "x_forwarded_user",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "Remote-User",
        "REMOTE_USER",
        "Remote-Groups",
        "Remote-Email",
        "Remote-Name",
        "X-Remote-User",
        "X-User",
        "x_user",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
        "X-Auth-Request-Groups",
    ];
    let kept = [
        "X-Request-Id",
        "X-User-Agent-Hint",
        "X-Users",
        "X-MyCoffee",
        "X-Api-Username",
        "X-Doormanx",
        "Remote-Addr-Hint",
    ];
    let lines: Vec<String> = forged
        .iter()
        .map(|n| format!("{n}: forged"))
        .chain(kept.iter().map(|n| format!("{n}: kept")))
        .collect();
    let line_refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let resp = raw(&doorman, "GET", "/me", &line_refs).await;
    let echo = echo_of(&resp);
    let leaked: Vec<&serde_json::Value> = echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|pair| pair[1] == "forged")
        .collect();
    assert!(
        leaked.is_empty(),
        "forged identity reached the upstream: {leaked:?}"
    );
    for name in kept {
        assert_eq!(
            echoed_header(&echo, &name.to_ascii_lowercase()),
            ["kept"],
            "{name} must pass: {echo}"
        );
    }
}

/// A chunked request may carry header fields after the body (trailers). An app that merges
/// trailers into its headers would read a forged identity there: identity names in request
/// trailers must not reach the upstream either.
#[tokio::test]
async fn identity_headers_sent_as_request_trailers_never_reach_the_upstream() {
    let (_upstream, doorman) = start("").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    let req = "POST /upload HTTP/1.1\r\n\
               Host: app.test\r\n\
               Transfer-Encoding: chunked\r\n\
               TE: trailers\r\n\
               Trailer: X-Auth-User, X-Forwarded-User, Remote_User, X-Checksum\r\n\
               \r\n\
               5\r\nhello\r\n0\r\n\
               X-Auth-User: forged\r\n\
               X-Forwarded-User: forged\r\n\
               Remote_User: forged\r\n\
               X-Checksum: kept\r\n\
               \r\n";
    assert!(conn.send(req.as_bytes()).await);
    let resp = conn.response(WAIT).await.expect("a response");
    let echo = echo_of(&resp);
    assert_eq!(echo["body_len"], 5);
    let trailers = echo["trailers"].as_array().expect("trailers");
    assert!(
        !trailers.iter().any(|t| t[1] == "forged"),
        "a forged identity arrived as a trailer: {trailers:?}"
    );
}

// ---- doorman's cookie ----------------------------------------------------------------------

/// The session cookie is a bearer credential: an app that logs request headers must never see
/// it. Every other cookie is the app's and must arrive exactly as sent.
#[tokio::test]
async fn doormans_cookie_is_removed_from_the_cookie_header_and_the_rest_kept_byte_for_byte() {
    let (_upstream, doorman) = start("").await;
    let client = h1_client();
    for (sent, forwarded) in [
        ("a=1; doorman_session=secret; b=2", "a=1; b=2"),
        (
            "doorman_session=secret; b=\"x y\"; c=%41; d=e=f",
            "b=\"x y\"; c=%41; d=e=f",
        ),
        ("a=1; __Host-doorman_session=secret", "a=1"),
        ("a=1;b=2", "a=1;b=2"),
        (
            "doorman_session2=x; xdoorman_session=y",
            "doorman_session2=x; xdoorman_session=y",
        ),
    ] {
        let (status, _, body) = send(&client, get(&doorman.url("/c"), &[("cookie", sent)])).await;
        assert_eq!(status, 200);
        let echo = echoed(&body);
        assert_eq!(echoed_header(&echo, "cookie"), [forwarded], "sent {sent:?}");
    }
}

/// With `[session] cookie_name` set, that name is the credential to remove; the default name
/// is then an ordinary app cookie.
#[tokio::test]
async fn a_configured_cookie_name_is_the_one_removed() {
    let (_upstream, doorman) = start("[session]\ncookie_name = \"sid\"\n").await;
    let (status, _, body) = send(
        &h1_client(),
        get(
            &doorman.url("/c"),
            &[("cookie", "a=1; sid=secret; doorman_session=app-owned")],
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        echoed_header(&echoed(&body), "cookie"),
        ["a=1; doorman_session=app-owned"]
    );
}

/// A request carrying only doorman's cookie must not reach the app with an empty `Cookie:`
/// header (or a leftover separator) — just none.
#[tokio::test]
async fn a_request_with_only_doormans_cookie_forwards_no_cookie_header() {
    let (_upstream, doorman) = start("").await;
    for sent in ["doorman_session=secret", " doorman_session=secret; "] {
        let resp = raw(&doorman, "GET", "/c", &[&format!("Cookie: {sent}")]).await;
        let echo = echo_of(&resp);
        assert!(
            echoed_header(&echo, "cookie").is_empty(),
            "sent {sent:?}: {echo}"
        );
    }
}

/// An app (compromised or careless) must not be able to fix a session onto a browser by
/// setting doorman's cookie; its own cookies must still reach the client, in order.
#[tokio::test]
async fn the_upstream_cannot_set_doormans_cookie() {
    let (_upstream, doorman) = start("").await;
    let (status, headers, _) = send(&h1_client(), get(&doorman.url("/set-cookies"), &[])).await;
    assert_eq!(status, 200);
    let set: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        set,
        [
            "app=1; Path=/",
            "sid=fixated; Path=/",
            "theme=dark; Max-Age=60"
        ]
    );

    let (_upstream, doorman) = start("[session]\ncookie_name = \"sid\"\n").await;
    let (status, headers, _) = send(&h1_client(), get(&doorman.url("/set-cookies"), &[])).await;
    assert_eq!(status, 200);
    let set: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        set,
        [
            "app=1; Path=/",
            "doorman_session=fixated; Path=/; HttpOnly",
            "__Host-doorman_session=fixated; Path=/; Secure",
            "theme=dark; Max-Age=60"
        ]
    );
}
