//! Requests and responses pass through intact, minus exactly what must not cross a proxy.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{echoed, echoed_header, get, h1_client, h2_client, send, Doorman, Upstream};

#[tokio::test]
async fn method_path_query_and_body_reach_the_upstream_unchanged() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/a/b?x=1&y=%20z"), &[])).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/a/b?x=1&y=%20z");
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
}

// ---- helpers -------------------------------------------------------------------------------

/// One HTTP/1.1 response read off a raw socket.
struct RawResponse {
    status: u16,
    /// `(lower-case name, value)` in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Read exactly one response (head, then a `Content-Length` or chunked body) and nothing more,
/// so the connection can carry another request afterwards.
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(Duration::from_secs(5), read_response_inner(stream))
        .await
        .expect("a response within 5 s")
}

async fn read_response_inner(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, &mut buf).await;
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        while !rest.windows(5).any(|w| w == b"0\r\n\r\n") {
            read_more(stream, &mut rest).await;
        }
        rest
    } else {
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().expect("content-length"))
            .unwrap_or(0);
        while rest.len() < len {
            read_more(stream, &mut rest).await;
        }
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await.expect("read");
    assert!(
        n > 0,
        "connection closed mid-response; got {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Header names the upstream received, read as a CGI-style app would (lower case, `_` and `.`
/// as `-`).
fn canonical_names(echo: &serde_json::Value) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            pair[0]
                .as_str()
                .unwrap_or_default()
                .replace(['_', '.'], "-")
        })
        .collect()
}

/// Send a request with a buffered body and collect the response, trailers included.
async fn send_collect(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    req: http::Request<Full<Bytes>>,
) -> (http::StatusCode, Bytes, Option<http::HeaderMap>) {
    let resp = client.request(req).await.expect("request through doorman");
    let status = resp.status();
    let collected = resp.into_body().collect().await.expect("response body");
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}

// ---- hop-by-hop headers ---------------------------------------------------------------------

/// Hop-by-hop headers describe the client's connection to doorman; passed on, they would tell
/// the upstream to keep or close a connection it does not have, drop headers, or switch
/// protocols. Everything else — including repeated headers, in order — must arrive untouched.
#[tokio::test]
async fn hop_by_hop_request_headers_are_removed_and_the_rest_arrive_intact() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut s = TcpStream::connect(doorman.addr).await.expect("connect");
    s.write_all(
        b"GET /hop?q=1 HTTP/1.1\r\n\
          Host: app.test\r\n\
          X-Dup: first\r\n\
          Connection: keep-alive, X-Secret\r\n\
          X-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: gzip\r\n\
          Upgrade: websocket\r\n\
          Accept: text/plain\r\n\
          X-Dup: second\r\n\
          X-Dup: third\r\n\
          \r\n",
    )
    .await
    .expect("write");
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 200);
    let echo = echoed(&Bytes::from(resp.body));
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            echoed_header(&echo, gone).is_empty(),
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(echoed_header(&echo, "x-dup"), ["first", "second", "third"]);
    assert_eq!(echoed_header(&echo, "accept"), ["text/plain"]);
    assert_eq!(echo["uri"], "/hop?q=1");
    // Nothing else appeared: only the survivors and doorman's own host and forwarding headers.
    let mut names = canonical_names(&echo);
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "accept",
            "host",
            "x-dup",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto"
        ]
    );

    // The connection is still an ordinary keep-alive one: a second request is served.
    s.write_all(b"GET /status/204 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_response(&mut s).await.status, 204);
}

/// `TE: trailers` is the one TE value an upstream needs (gRPC and friends refuse to answer
/// without it), so it is re-added after the hop-by-hop sweep — as `trailers` alone, since the
/// other codings described the client's hop.
#[tokio::test]
async fn te_trailers_is_forwarded_as_trailers_and_other_te_values_are_not() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let client = h1_client();
    for (sent, expected) in [
        ("trailers", vec!["trailers"]),
        ("gzip, trailers", vec!["trailers"]),
        ("deflate", vec![]),
    ] {
        let (status, _, body) = send(&client, get(&doorman.url("/te"), &[("te", sent)])).await;
        assert_eq!(status, 200);
        assert_eq!(
            echoed_header(&echoed(&body), "te"),
            expected,
            "client sent TE: {sent}"
        );
    }
}

/// The client's `Transfer-Encoding` framed its own hop. The upstream must see a body framed by
/// doorman's hop — the same bytes, with exactly one framing — and, because a request with
/// `Transfer-Encoding` may have been read differently by a proxy in front, doorman closes the
/// client connection after answering (DESIGN.md §5).
#[tokio::test]
async fn a_chunked_request_body_is_reframed_for_the_upstream() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut s = TcpStream::connect(doorman.addr).await.expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\n\
          Host: app.test\r\n\
          Transfer-Encoding: chunked\r\n\
          \r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await
    .expect("write");
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), ["close"]);
    let echo = echoed(&Bytes::from(resp.body));
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 11);
    let te = echoed_header(&echo, "transfer-encoding");
    let cl = echoed_header(&echo, "content-length");
    assert!(
        (te == ["chunked"] && cl.is_empty()) || (te.is_empty() && cl == ["11"]),
        "the upstream must see exactly one framing, got transfer-encoding {te:?}, content-length {cl:?}"
    );
}

/// A request without a body is forwarded without one (doorman passes no body along for it),
/// framed as before: a `POST` with `Content-Length: 0` still says 0, a `GET` says nothing; and
/// the connection carries on to the next request.
#[tokio::test]
async fn requests_without_a_body_keep_their_framing() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut s = TcpStream::connect(doorman.addr).await.expect("connect");
    for (request, method, length) in [
        (
            &b"POST /empty HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n"[..],
            "POST",
            vec!["0"],
        ),
        (
            &b"GET /empty HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
            "GET",
            vec![],
        ),
        (
            &b"POST /full HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello"[..],
            "POST",
            vec!["5"],
        ),
    ] {
        s.write_all(request).await.expect("write");
        let resp = read_response(&mut s).await;
        assert_eq!(resp.status, 200);
        assert!(resp.header("connection").is_empty(), "kept alive");
        let echo = echoed(&Bytes::from(resp.body));
        assert_eq!(echo["method"], method);
        assert_eq!(echoed_header(&echo, "content-length"), length, "{method}");
        assert!(echoed_header(&echo, "transfer-encoding").is_empty());
        let body_len = length.first().map_or(0, |l| l.parse::<u64>().unwrap_or(0));
        assert_eq!(echo["body_len"], body_len);
    }
}

/// The upstream's hop-by-hop headers describe its connection to doorman, and its `X-Doorman-*`
/// headers are instructions to doorman (login handoff, DESIGN.md §6): neither may reach the
/// client. Ordinary response headers must.
#[tokio::test]
async fn hop_by_hop_and_handoff_response_headers_are_removed() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, headers, body) = send(&h1_client(), get(&doorman.url("/hop-headers"), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok");
    for gone in [
        "x-internal",
        "keep-alive",
        "proxy-authenticate",
        "x-doorman-login",
        "x-doorman-groups",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the client: {headers:?}"
        );
    }
    for value in headers.get_all("connection") {
        assert!(
            !value.to_str().unwrap_or("").contains("x-internal"),
            "the upstream's Connection header reached the client"
        );
    }
    assert_eq!(headers["x-kept"], "yes");
}

// ---- forwarding headers ---------------------------------------------------------------------

/// Headers the client can spell that describe where the request came from, sent directly
/// (no, or an untrusted, proxy in front).
const SPOOFED: &[(&str, &str)] = &[
    ("x-forwarded-for", "1.2.3.4"),
    ("x_forwarded_for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("X_Forwarded_Host", "evil.example"),
    ("forwarded", "for=1.2.3.4;proto=https"),
    ("x-real-ip", "1.2.3.4"),
    ("x_real_ip", "1.2.3.4"),
    ("true-client-ip", "1.2.3.4"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-ssl", "on"),
    ("x-url-scheme", "https"),
    ("x-forwarded-uri", "/admin"),
    ("x-original-url", "/admin"),
    ("x.original.url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-http-method-override", "DELETE"),
    ("X_HTTP_Method_Override", "DELETE"),
];

/// From a peer that is not a trusted proxy, every forwarding header is a claim the client made
/// about itself: apps use them for IP allow-lists, redirects, and (`X-Original-URL`,
/// `X-HTTP-Method-Override`) even routing. Doorman replaces X-Forwarded-For/-Proto/-Host with
/// what it saw and removes the rest, in every spelling a CGI-style app would read.
#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced_or_removed() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut headers = vec![("host", "app.example")];
    headers.extend_from_slice(SPOOFED);
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/xff"), &headers)).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-host"), ["app.example"]);
    let names = canonical_names(&echo);
    for (name, _) in SPOOFED {
        let canonical = name.to_ascii_lowercase().replace(['_', '.'], "-");
        let expected = match canonical.as_str() {
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" => 1,
            _ => 0,
        };
        assert_eq!(
            names.iter().filter(|n| **n == canonical).count(),
            expected,
            "{name} from an untrusted peer: {echo}"
        );
    }
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/xff");
}

/// Behind a trusted load balancer the chain it built is the truth: doorman appends the peer it
/// saw to X-Forwarded-For and keeps the proto and host the balancer reported, so apps still see
/// the real client and the public origin.
#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(
        &upstream.url(),
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "",
    ))
    .await;
    let (status, _, body) = send(
        &h1_client(),
        get(
            &doorman.url("/xff"),
            &[
                ("host", "internal.lb"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "public.example"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(
        echoed_header(&echo, "x-forwarded-for"),
        ["1.2.3.4, 127.0.0.1"]
    );
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-host"), ["public.example"]);
}

// ---- identity headers -----------------------------------------------------------------------

/// The upstream trusts identity headers because only doorman can reach it. A client-sent copy,
/// in any spelling an app might normalise to the same name, would make the client whoever it
/// claims to be.
#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let claims = [
        "X-Auth-User",
        "x_auth_user",
        "X.Auth.User",
        "X-Auth-Groups",
        "X-Auth-Anything",
        "X-Doorman-Login",
        "X_Doorman_Groups",
        "Remote-User",
        "remote_user",
        "Remote-Groups",
        "X-Remote-User",
        "X-User",
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "X-Auth-Request-Email",
    ];
    let mut headers: Vec<(&str, &str)> = claims.iter().map(|n| (*n, "mallory")).collect();
    headers.push(("x-request-id", "r-1"));
    headers.push(("x-authorization-hint", "kept"));
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/me"), &headers)).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    let names = canonical_names(&echo);
    for claim in claims {
        let canonical = claim.to_ascii_lowercase().replace(['_', '.'], "-");
        assert!(
            !names.contains(&canonical),
            "{claim} reached the upstream: {echo}"
        );
    }
    assert!(
        !body.windows(7).any(|w| w == b"mallory"),
        "a claimed identity reached the upstream: {echo}"
    );
    // Lookalikes that are not identity headers pass.
    assert_eq!(echoed_header(&echo, "x-request-id"), ["r-1"]);
    assert_eq!(echoed_header(&echo, "x-authorization-hint"), ["kept"]);
}

/// `Connection` may name headers for the next hop to drop. A client naming the identity or
/// forwarding headers must not get doorman to forward its own copy, nor make doorman (or a
/// proxy after it) drop what doorman sets: naming is processed before doorman sets anything.
#[tokio::test]
async fn connection_naming_identity_or_forwarding_headers_changes_nothing() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, _, body) = send(
        &h1_client(),
        get(
            &doorman.url("/me"),
            &[
                (
                    "connection",
                    "X-Auth-User, X-Forwarded-For, X-Forwarded-Proto",
                ),
                ("x-auth-user", "mallory"),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-request-id", "r-2"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert!(echoed_header(&echo, "x-auth-user").is_empty(), "{echo}");
    assert!(echoed_header(&echo, "connection").is_empty(), "{echo}");
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&echo, "x-request-id"), ["r-2"]);
}

// ---- Host ----------------------------------------------------------------------------------

/// By default the upstream sees its own authority as Host (virtual-hosted apps and TLS SNI
/// checks expect that); with `preserve_host = true` it sees the client's, for apps that build
/// absolute URLs from Host.
#[tokio::test]
async fn host_is_the_upstream_authority_unless_preserve_host_is_set() {
    let upstream = Upstream::start().await;
    let rewritten = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let preserved = Doorman::start(&support::doorman::config(
        &upstream.url(),
        "",
        "preserve_host = true",
    ))
    .await;
    let client = h1_client();
    let host = [("host", "app.example:8443")];

    let (status, _, body) = send(&client, get(&rewritten.url("/h"), &host)).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
    assert_eq!(
        echoed_header(&echo, "x-forwarded-host"),
        ["app.example:8443"]
    );

    let (status, _, body) = send(&client, get(&preserved.url("/h"), &host)).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echoed_header(&echo, "host"), ["app.example:8443"]);
}

// ---- HTTP/2 clients -------------------------------------------------------------------------

/// An HTTP/2 client has no Host header, only `:authority`; the upstream still speaks HTTP/1.1
/// and must get a well-formed request: the right target, a Host, and X-Forwarded-Host taken
/// from `:authority`.
#[tokio::test]
async fn an_http2_client_is_forwarded_as_http1_with_host_and_target_intact() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let resp = h2_client()
        .request(get(&doorman.url("/p/q?x=1&y=two"), &[("x-custom", "v")]))
        .await
        .expect("h2 request");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let echo = echoed(&body);
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/p/q?x=1&y=two");
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
    assert_eq!(
        echoed_header(&echo, "x-forwarded-host"),
        [doorman.addr.to_string()]
    );
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&echo, "x-custom"), ["v"]);
}

// ---- statuses, bodies, trailers -------------------------------------------------------------

/// Doorman is not the app: whatever status and body the upstream chose, the client gets —
/// errors included, and a 204 stays bodiless.
#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let client = h1_client();
    for code in [404u16, 503, 204, 418] {
        let (status, _, body) =
            send(&client, get(&doorman.url(&format!("/status/{code}")), &[])).await;
        assert_eq!(status, code);
        assert!(body.is_empty(), "{code} came with a body: {body:?}");
    }
    let (status, headers, body) = send(&client, get(&doorman.url("/download/100000"), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], "100000");
    assert_eq!(body.len(), 100_000);
    assert!(body.iter().all(|b| *b == b'x'));
}

/// Trailers carry checksums and gRPC statuses after a streamed body; an HTTP/2 client that
/// asked for them (`te: trailers`) must get the upstream's.
#[tokio::test]
async fn response_trailers_reach_an_http2_client() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, body, trailers) = send_collect(
        &h2_client(),
        get(&doorman.url("/trailers"), &[("te", "trailers")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello world");
    let trailers = trailers.expect("trailers reached the client");
    assert_eq!(trailers["x-checksum"], "abc123");
}

/// The same holds for an HTTP/1.1 client that sent `TE: trailers`: a chunked response ends
/// with the upstream's trailer fields.
#[tokio::test]
async fn response_trailers_reach_an_http1_client_that_accepts_them() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let (status, body, trailers) = send_collect(
        &h1_client(),
        get(&doorman.url("/trailers"), &[("te", "trailers")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello world");
    let trailers = trailers.expect("trailers reached the client");
    assert_eq!(trailers["x-checksum"], "abc123");
}

/// Request bodies arrive whole, over either client protocol.
#[tokio::test]
async fn post_bodies_arrive_with_their_full_length() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let payload = Bytes::from(vec![7u8; 300_000]);
    for (client, name) in [(h1_client(), "h1"), (h2_client(), "h2")] {
        let req = http::Request::post(doorman.url("/upload"))
            .body(Full::new(payload.clone()))
            .expect("request");
        let (status, _, body) = send(&client, req).await;
        assert_eq!(status, 200, "{name}");
        let echo = echoed(&body);
        assert_eq!(echo["method"], "POST", "{name}");
        assert_eq!(echo["body_len"], 300_000, "{name}");
    }
}

// ---- upgrades -------------------------------------------------------------------------------

/// WebSockets are how many apps push updates; after the upstream agrees (101) doorman must be
/// a transparent pipe, both ways, for as long as the conversation lasts.
#[tokio::test]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut s = TcpStream::connect(doorman.addr).await.expect("connect");
    s.write_all(&support::raw::ws_request("/ws", ""))
        .await
        .expect("write");
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade"), ["websocket"]);
    assert!(
        resp.body.is_empty(),
        "bytes before the tunnel: {:?}",
        resp.body
    );
    for round in 0..5 {
        let msg =
            support::ws_frame(format!("round {round}: {}", "z".repeat(round * 1000)).as_bytes());
        s.write_all(&msg).await.expect("write through tunnel");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .expect("echo within 5 s")
            .expect("read through tunnel");
        assert_eq!(back, msg, "round {round}");
    }
}

/// An upgrade the upstream refuses is an ordinary response: the connection must not become a
/// tunnel (the client's next bytes would reach the upstream unparsed, bypassing every check),
/// and it stays a working HTTP connection.
#[tokio::test]
async fn a_refused_upgrade_is_not_tunnelled_and_the_connection_stays_http() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&support::doorman::config(&upstream.url(), "", "")).await;
    let mut s = TcpStream::connect(doorman.addr).await.expect("connect");
    s.write_all(
        b"GET /ws-refuse HTTP/1.1\r\n\
          Host: app.test\r\n\
          Connection: Upgrade\r\n\
          Upgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\
          \r\n",
    )
    .await
    .expect("write");
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 403);
    assert!(resp.header("upgrade").is_empty());
    s.write_all(b"GET /after?n=2 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let resp = read_response(&mut s).await;
    assert_eq!(resp.status, 200);
    let echo = echoed(&Bytes::from(resp.body));
    assert_eq!(echo["uri"], "/after?n=2");
    // Doorman parsed and forwarded it (a tunnel would have passed the client's bytes raw).
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
}
