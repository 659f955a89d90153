//! Protocol switches (DESIGN.md §3 `[upstream] upgrades`, §5): a tunnel carries bytes doorman
//! never parses, so only the switches doorman can vouch for are made.
//!
//! The worst finding of the outside attack: an `Upgrade: h2c` on a public route was forwarded,
//! an h2c-speaking upstream answered `101`, and the tunnel carried HTTP/2 streams for denied
//! and protected routes, with forged identity headers, straight to the app. These tests put a
//! real h2c upstream (hyper serving HTTP/2 after its `101`) behind doorman and prove that no
//! stream reaches it, and that a `101` which does not answer what the client asked is never
//! relayed.

mod support;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::h2c::{h2c_attack, H2cUpstream};
use support::raw::{ws_request, RawConn};
use support::upstream::websocket_accept;
use support::{echoed, echoed_header, Doorman, Upstream};

const PATIENCE: Duration = Duration::from_secs(5);

/// Routes the attack aims at: one denied, one for a group, one for any session.
const ROUTES: &str = r#"
[[routes]]
path = "/admin"
access = "deny"

[[routes]]
path = "/staff"
access = "authenticated"
groups = ["admin"]

[[routes]]
path = "/private"
access = "authenticated"

[[routes]]
path = "/ws-private"
access = "authenticated"

[access]
default = "public"
"#;

const PROTECTED: &[&str] = &["/admin", "/staff", "/private"];

/// An HTTP/2 (prior knowledge) connection to `addr`, ready for requests.
async fn h2_to(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

async fn doorman_for(upstream_url: &str, extra: &str) -> Doorman {
    Doorman::start(&support::doorman::config(upstream_url, "", extra)).await
}

/// The audit's exact request on a public route: doorman serves it as a plain GET (no `101`),
/// the upstream sees no upgrade headers, and the HTTP/2 the attacker speaks next never reaches
/// the upstream as a stream.
#[tokio::test]
async fn an_h2c_upgrade_is_never_tunnelled_and_no_http2_stream_reaches_the_upstream() {
    let upstream = H2cUpstream::start().await;
    let doorman = doorman_for(&upstream.url(), ROUTES).await;
    let stream = TcpStream::connect(doorman.addr).await.expect("connect");
    let outcome = h2c_attack(stream, "/", PROTECTED).await;
    assert!(
        outcome.head.starts_with("HTTP/1.1 200"),
        "the upgrade must be served as a plain request: {}",
        outcome.head
    );
    assert!(
        outcome.h2_statuses.is_empty(),
        "HTTP/2 streams were answered through doorman: {:?}",
        outcome.h2_statuses
    );
    assert!(
        upstream.h2_seen().is_empty(),
        "HTTP/2 streams reached the upstream: {:?}",
        upstream.h2_seen()
    );
    let h1 = upstream.h1_seen();
    assert_eq!(h1.len(), 1, "{h1:?}");
    for gone in ["upgrade", "http2-settings", "connection", "x-auth-user"] {
        assert!(
            h1[0].header(gone).is_empty(),
            "{gone} reached the upstream: {h1:?}"
        );
    }
}

/// The same upgrade aimed at protected routes gets their answers (403, 401) and the upstream
/// sees nothing at all.
#[tokio::test]
async fn an_h2c_upgrade_on_a_protected_route_is_decided_like_any_request() {
    let upstream = H2cUpstream::start().await;
    let doorman = doorman_for(&upstream.url(), ROUTES).await;
    for (path, want) in [("/admin", "403"), ("/private", "401"), ("/staff", "401")] {
        let stream = TcpStream::connect(doorman.addr).await.expect("connect");
        let outcome = h2c_attack(stream, path, PROTECTED).await;
        assert!(
            outcome.head.starts_with(&format!("HTTP/1.1 {want}")),
            "{path}: {}",
            outcome.head
        );
        assert!(outcome.h2_statuses.is_empty(), "{path}: {outcome:?}");
    }
    assert!(upstream.h1_seen().is_empty(), "{:?}", upstream.h1_seen());
    assert!(upstream.h2_seen().is_empty(), "{:?}", upstream.h2_seen());
}

/// Even an operator who lists `h2c` cannot open the hole: the config is refused.
#[tokio::test]
async fn h2c_in_the_allow_list_is_a_config_error() {
    let dir = support::temp_dir("h2c-config");
    let file = dir.join("proxy.toml");
    std::fs::write(&file, "[upstream]\nupgrades = [\"websocket\", \"h2c\"]\n").expect("write");
    let errors = doorman::config::Config::load(&file)
        .expect_err("h2c accepted")
        .to_string();
    assert!(errors.contains("upstream.upgrades[1]"), "{errors}");
}

/// A WebSocket handshake that the upstream answers properly is relayed with its
/// `Sec-WebSocket-Accept`, and the tunnel works.
#[tokio::test]
async fn a_websocket_101_is_relayed_with_the_accept_for_the_clients_key() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&ws_request("/ws", "")).await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ==").as_str())
    );
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    conn.assert_frame_echoed(b"ping", PATIENCE).await;
}

/// A WebSocket tunnel carries WebSocket frames only: bytes from the client that are not a
/// masked frame with a defined opcode (an HTTP request, as a confused app's `101` would invite)
/// close it, and none of them reach the upstream.
#[tokio::test]
async fn a_websocket_tunnel_closes_on_anything_but_client_frames() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    for (what, bytes) in [
        (
            "an HTTP request",
            b"GET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n".to_vec(),
        ),
        (
            "an unmasked frame",
            vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
        ),
        ("an undefined opcode", vec![0x83, 0x80, 1, 2, 3, 4]),
    ] {
        let mut conn = RawConn::connect(doorman.addr).await;
        conn.send(&ws_request("/ws", "")).await;
        let resp = conn.response(PATIENCE).await.expect("a response");
        assert_eq!(resp.status, 101, "{what}");
        // A good frame first: the tunnel works, and the echo proves the upstream side is up.
        conn.assert_frame_echoed(b"fine", PATIENCE).await;
        conn.stream.write_all(&bytes).await.expect("write");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            PATIENCE,
            tokio::io::AsyncReadExt::read_to_end(&mut conn.stream, &mut rest),
        )
        .await
        .expect("the tunnel closes in time");
        // Closed (EOF or reset), with nothing of the refused bytes echoed back.
        assert!(read.is_err() || rest.is_empty(), "{what}: {rest:?}");
    }
}

/// A `101` with a wrong or missing `Sec-WebSocket-Accept`, or switching to another protocol
/// than asked (h2c), is a broken or hostile upstream: `502`, and the connection is never
/// turned into a tunnel — the client's next bytes are parsed by doorman as a request.
#[tokio::test]
async fn a_101_that_does_not_answer_the_request_is_502_and_nothing_is_tunnelled() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    for path in ["/ws-bad-accept", "/ws-no-accept", "/ws-to-h2c"] {
        let mut conn = RawConn::connect(doorman.addr).await;
        conn.send(&ws_request(path, "")).await;
        let resp = conn.response(PATIENCE).await.expect("a response");
        assert_eq!(resp.status, 502, "{path}");
        assert_eq!(resp.header("upgrade"), None, "{path}");
        // Not a tunnel: this is read by doorman as a request and forwarded as one (a tunnel
        // would hand the raw bytes to the upstream's echo).
        if conn
            .send(b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
        {
            if let Some(next) = conn.response(PATIENCE).await {
                assert_eq!(next.status, 200, "{path}");
                let echo = echoed(&Bytes::from(next.body));
                assert_eq!(echo["uri"], "/after", "{path}");
                assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
            }
        }
    }
}

/// Switches doorman will not vouch for are stripped and the request served plainly: the
/// support upstream's `/ws` answers `426` to a request without `Upgrade: websocket`.
#[tokio::test]
async fn upgrades_doorman_cannot_vouch_for_are_served_as_plain_requests() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "POST with a body",
            format!(
                "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 {key}Content-Length: 5\r\n\r\nhello"
            )
            .into_bytes(),
        ),
        (
            "HTTP/1.0",
            format!(
                "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{key}\r\n"
            )
            .into_bytes(),
        ),
        (
            "no key",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec(),
        ),
        (
            "a key that is not 16 bytes",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: c2hvcnQ=\r\n\r\n"
                .to_vec(),
        ),
        (
            "two keys",
            format!(
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{key}{key}\r\n"
            )
            .into_bytes(),
        ),
        (
            "two Upgrade headers",
            format!(
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Upgrade: websocket\r\n{key}\r\n"
            )
            .into_bytes(),
        ),
        (
            "a protocol not in the list",
            format!(
                "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x-custom\r\n{key}\r\n"
            )
            .into_bytes(),
        ),
        (
            "Upgrade without Connection: upgrade",
            format!("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n{key}\r\n").into_bytes(),
        ),
    ];
    for (what, request) in cases {
        let mut conn = RawConn::connect(doorman.addr).await;
        conn.send(&request).await;
        let resp = conn.response(PATIENCE).await.expect("a response");
        assert_eq!(
            resp.status, 426,
            "{what}: the upstream was asked to upgrade"
        );
        assert_eq!(resp.header("upgrade"), None, "{what}");
    }

    // An empty allow-list turns WebSockets off.
    let strict = doorman_for(&upstream.url(), "upgrades = []\n").await;
    let mut conn = RawConn::connect(strict.addr).await;
    conn.send(&ws_request("/ws", "")).await;
    assert_eq!(
        conn.response(PATIENCE).await.expect("a response").status,
        426
    );
}

/// An upgrade on an authenticated route is decided before the upstream sees it: without a
/// session, 401, and nothing was forwarded.
#[tokio::test]
async fn an_upgrade_on_a_protected_route_needs_a_session_first() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), ROUTES).await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&ws_request("/ws-private", "")).await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 401);
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

// ---- siblings: other ways to make a hop carry what doorman did not decide ---------------------

/// `CONNECT` is a tunnel to anywhere: 405 over HTTP/1.1 and HTTP/2 (hyper's HTTP/2 server does
/// not advertise extended CONNECT, so `:protocol` streams are refused by the protocol itself).
#[tokio::test]
async fn connect_is_refused_on_both_protocols() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
        .await;
    assert_eq!(conn.response(PATIENCE).await.map(|r| r.status), Some(405));

    let mut sender = h2_to(doorman.addr).await;
    let req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("127.0.0.1:22")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("an answer");
    assert_eq!(resp.status(), 405);
    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
}

/// `Connection` may name any header as hop-by-hop; naming the framing or the host must not
/// leave the upstream with a body it cannot frame or a request without a host.
#[tokio::test]
async fn connection_naming_framing_headers_does_not_unframe_the_request() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream.url(), "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: app.test\r\nConnection: Content-Length, Host, X-Forwarded-For\r\n\
          Content-Length: 5\r\n\r\nhello",
    )
    .await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 200);
    let echo = echoed(&Bytes::from(resp.body));
    assert_eq!(echo["body_len"], 5);
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    // The connection is still in step: the next request is a request, not leftover body.
    conn.send(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let next = conn.response(PATIENCE).await.expect("a second response");
    assert_eq!(echoed(&Bytes::from(next.body))["uri"], "/next");
}

/// HTTP/2 reaches doorman only as HTTP/2 doorman terminates itself (prior knowledge here; ALPN
/// under TLS): each stream is decided and forwarded as HTTP/1.1, so even an upstream that
/// speaks h2c with prior knowledge receives no HTTP/2 from doorman.
#[tokio::test]
async fn http2_to_doorman_is_terminated_and_decided_per_stream() {
    let upstream = H2cUpstream::start().await;
    let doorman = doorman_for(&upstream.url(), ROUTES).await;
    let mut sender = h2_to(doorman.addr).await;
    let mut statuses = Vec::new();
    for path in ["/admin", "/staff", "/private", "/open"] {
        let req = http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .header("x-auth-user", "alice")
            .header("x-auth-groups", "admin")
            .body(http_body_util::Empty::<Bytes>::new())
            .expect("request");
        statuses.push(
            sender
                .send_request(req)
                .await
                .expect("answer")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [403, 401, 401, 200]);
    assert!(upstream.h2_seen().is_empty(), "{:?}", upstream.h2_seen());
    let h1 = upstream.h1_seen();
    assert_eq!(h1.len(), 1, "{h1:?}");
    assert_eq!(h1[0].path, "/open");
    assert!(h1[0].header("x-auth-user").is_empty(), "{h1:?}");

    // The support upstream really speaks h2c with prior knowledge: straight to it, a stream is
    // served and recorded (so the empty record above means something).
    let mut sender = h2_to(upstream.addr).await;
    let req = http::Request::builder()
        .uri("http://localhost/direct")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    assert_eq!(
        sender.send_request(req).await.expect("answer").status(),
        200
    );
    assert_eq!(upstream.h2_seen().len(), 1);
}
