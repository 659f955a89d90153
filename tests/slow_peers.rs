//! Limits on slow and broken peers (DESIGN.md §14): `body_timeout`, `send_timeout`,
//! `max_connections_per_client`, the upstream `timeout` starting after the request body, and
//! malformed chunked bodies refused before the upstream sees them, and a client that leaves
//! taking its upstream exchange with it. Real sockets, raw bytes where framing matters.
//!
//! Timing bounds are generous on purpose: they tell "cut" from "never cut", not how fast.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use support::doorman::config;
use support::raw::{get_request, RawConn};
use support::tls::{tls_connect, tls_doorman, tls_doorman_to};
use support::upstream::ChannelBody;
use support::{echoed, eventually, Doorman, Upstream};

/// Longer than every timeout under test here: a peer not cut by then never would be.
const PATIENCE: Duration = Duration::from_secs(6);

/// A POST whose head promises 16,000 bytes of body, followed by two of them.
const STALLING_POST: &[u8] = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\n\r\nab";

async fn doorman(upstream: &Upstream, listen: &str, extra: &str) -> Doorman {
    Doorman::start(&config(&upstream.url(), listen, extra)).await
}

/// Read from `stream` until the peer closes (or errors), or `wait` passes without a byte;
/// returns the bytes and whether the peer closed.
async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

// ---- body_timeout ---------------------------------------------------------------------------

/// The audit's slow POST: doorman stops waiting after `body_timeout`, answers 408 and closes the
/// connection, instead of holding it for the upstream's timeout (or forever).
#[tokio::test]
async fn a_stalled_request_body_is_answered_408_and_the_connection_closed() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "body_timeout = \"1s\"", "timeout = \"60s\"").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(STALLING_POST).await;
    let resp = conn
        .response(PATIENCE)
        .await
        .expect("a response to the stalled POST");
    assert_eq!(resp.status, 408);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        conn.closed_within(PATIENCE).await,
        "connection left open after 408"
    );
}

/// Once the upstream's response has started, a stalled body can no longer be answered 408: the
/// exchange is cut, and the client sees its response end without its last chunk.
#[tokio::test]
async fn a_body_that_stalls_after_the_response_started_closes_the_connection() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "body_timeout = \"1s\"", "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 16000\r\n\r\nab")
        .await;
    assert!(conn.closed_within(PATIENCE).await, "connection left open");
    let text = String::from_utf8_lossy(conn.pending()).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("first\n"), "{text}");
    assert!(
        !text.contains("read ") && !text.ends_with("0\r\n\r\n"),
        "the response ended as if complete: {text}"
    );
}

/// Over HTTP/2 a stalled body ends its own stream only: the connection and its other streams go
/// on.
#[tokio::test]
async fn over_h2_a_stalled_body_ends_its_stream_and_the_connection_keeps_serving() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "body_timeout = \"1s\"", "").await;
    let tcp = TcpStream::connect(doorman.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let (tx, body) = ChannelBody::new();
    tx.send(Frame::data(Bytes::from_static(b"ab")))
        .await
        .expect("first frame");
    let req = Request::post(format!("http://{}/upload", doorman.addr))
        .body(body.boxed())
        .expect("request");
    let stalled = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("the stalled stream ended within the patience window");
    // 408 on the stream (then reset, the body unread), or the reset alone.
    match stalled {
        Ok(resp) => assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT),
        Err(e) => eprintln!("stalled stream reset: {e}"),
    }
    drop(tx);
    let req = Request::get(format!("http://{}/after", doorman.addr))
        .body(Empty::<Bytes>::new().boxed())
        .expect("request");
    let resp = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("second stream answered in time")
        .expect("second stream on the same connection");
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The same over TLS: the deadline is the body's, whatever carries it.
#[tokio::test]
async fn over_tls_a_stalled_request_body_is_answered_408() {
    let upstream = Upstream::start().await;
    let (doorman, tls) = tls_doorman(&upstream, "body_timeout = \"1s\"").await;
    let mut stream = tls_connect(doorman.addr, &tls).await;
    stream.write_all(STALLING_POST).await.expect("write");
    let (bytes, closed) = read_until_closed(&mut stream, PATIENCE).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed, "connection left open after 408");
}

/// A slow but steady upload (a chunk every 300 ms, 3 s in all) outlasts an upstream `timeout`
/// of 1 s: that timeout runs from the end of the body, and a progressing body is governed by
/// `body_timeout` alone.
#[tokio::test]
async fn a_slow_but_steady_upload_outlasts_a_short_upstream_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "body_timeout = \"2s\"", "timeout = \"1s\"").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await;
    for _ in 0..10 {
        assert!(
            conn.send(b"5\r\nhello\r\n").await,
            "doorman cut a progressing upload"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    conn.send(b"0\r\n\r\n").await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(
        resp.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(echoed(&Bytes::from(resp.body))["body_len"], 50);
}

/// An upstream that takes the whole body and then does not answer still gets its `timeout`.
#[tokio::test]
async fn the_upstream_timeout_runs_from_the_end_of_the_body() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "", "timeout = \"1s\"").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(b"POST /slow/4000 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 504);
}

// ---- malformed chunked bodies ---------------------------------------------------------------

/// Each probe from the audit is the client's error (400, not 502), and never reaches the
/// upstream: the chunked body's first frames are read before the request is forwarded.
#[tokio::test]
async fn malformed_chunked_bodies_are_400_and_never_forwarded() {
    let long_extension = format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(40 * 1024));
    let probes: [(&str, &str); 5] = [
        (
            "a chunk size that overflows",
            "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ),
        ("a negative chunk size", "-3\r\nabc\r\n0\r\n\r\n"),
        ("a 0x-prefixed chunk size", "0x3\r\nabc\r\n0\r\n\r\n"),
        (
            "data longer than its chunk size",
            "3\r\nabcdef\r\n0\r\n\r\n",
        ),
        ("a 40 KB chunk extension", &long_extension),
    ];
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "", "").await;
    for (what, body) in probes {
        let mut conn = RawConn::connect(doorman.addr).await;
        let head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        conn.send(format!("{head}{body}").as_bytes()).await;
        let resp = conn
            .response(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{what}: no response"));
        assert_eq!(resp.status, 400, "{what}");
        assert!(
            conn.closed_within(PATIENCE).await,
            "{what}: connection left open"
        );
        assert!(
            upstream.seen_paths().is_empty(),
            "{what}: forwarded: {:?}",
            upstream.seen_paths()
        );
    }
    // A well-formed chunked body still goes through.
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 200);
    assert_eq!(echoed(&Bytes::from(resp.body))["body_len"], 3);
}

/// A malformed chunk that arrives after the head went upstream aborts the upstream request and
/// is still the client's error.
#[tokio::test]
async fn a_malformed_chunk_arriving_later_is_400() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "", "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    .await;
    // Later: once the head has gone upstream.
    let seen = eventually(
        Duration::from_secs(10),
        async || upstream.seen_paths(),
        |paths| !paths.is_empty(),
    )
    .await;
    assert_eq!(seen, ["/upload"], "the head never reached the upstream");
    conn.send(b"zz\r\n").await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 400);
}

// ---- send_timeout ---------------------------------------------------------------------------

/// A 4 MiB download.
const BIG: usize = 4 * 1024 * 1024;

/// A client that asks for a large response and never reads is dropped after `send_timeout`,
/// instead of holding the response's buffers (and the upstream connection) forever.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_send_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "send_timeout = \"1s\"", "").await;
    let socket = TcpSocket::new_v4().expect("socket");
    // A small window, so the response backs up into doorman quickly.
    socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
    let mut stream = socket.connect(doorman.addr).await.expect("connect");
    stream
        .write_all(&get_request(&format!("/download/{BIG}")))
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (bytes, closed) = read_until_closed(&mut stream, PATIENCE).await;
    assert!(closed, "a client that stopped reading was never dropped");
    assert!(
        bytes.len() < BIG,
        "the whole response was delivered: not a stalled write"
    );
}

/// The same over TLS, where a blocked write surfaces through the TLS stream.
#[tokio::test]
async fn over_tls_a_client_that_stops_reading_is_dropped() {
    let upstream = Upstream::start().await;
    let (doorman, tls) = tls_doorman(&upstream, "send_timeout = \"1s\"").await;
    let mut stream = tls_connect(doorman.addr, &tls).await;
    stream
        .write_all(&get_request(&format!("/download/{}", 4 * BIG)))
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (bytes, closed) = read_until_closed(&mut stream, PATIENCE).await;
    assert!(
        closed,
        "a TLS client that stopped reading was never dropped"
    );
    assert!(bytes.len() < 4 * BIG, "the whole response was delivered");
}

/// A quiet event stream has nothing to write: silence longer than `send_timeout` (and
/// `body_timeout`) is not a stalled write, and the stream completes.
#[tokio::test]
async fn a_quiet_event_stream_is_not_cut() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "send_timeout = \"1s\"\nbody_timeout = \"1s\"",
        "",
    )
    .await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&get_request("/quiet/2500")).await;
    let resp = conn.response(PATIENCE).await.expect("the whole stream");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"data: first\n\ndata: last\n\n");
}

// ---- a client that leaves --------------------------------------------------------------------

/// An upstream that takes one request and never answers it (or, with `head`, answers that
/// much and then goes quiet), on a free loopback port.
struct Holding {
    url: String,
    arrived: tokio::sync::oneshot::Receiver<()>,
    /// Whether doorman closed the upstream connection within [`PATIENCE`].
    closed: tokio::sync::oneshot::Receiver<bool>,
}

impl Holding {
    async fn start(head: &'static [u8]) -> Holding {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            conn.write_all(head).await.unwrap();
            let _ = arrived_tx.send(());
            let (_, closed) = read_until_closed(&mut conn, PATIENCE).await;
            let _ = closed_tx.send(closed);
        });
        Holding {
            url,
            arrived,
            closed,
        }
    }

    /// Wait until the request reached the upstream.
    async fn reached(&mut self) {
        assert_eq!(
            (&mut self.arrived).await,
            Ok(()),
            "the request never reached the upstream"
        );
    }

    /// Doorman must close the upstream connection once the client is gone: `what` (the
    /// request, the stream) must not outlive it.
    async fn closed_after_client(self, what: &str) {
        assert_eq!(
            self.closed.await,
            Ok(true),
            "the upstream {what} outlived its client"
        );
    }
}

/// A client that gives up while the upstream thinks (a slow page, a long poll) takes its
/// request with it: doorman drops the upstream exchange instead of waiting out `[upstream]
/// timeout` for an answer nobody will read. The connection's clock sees the client's EOF, once
/// a second while a request is in flight (`server::deadlines`, `Expiry::Left`): hyper's own
/// read-ahead, which saw it at once, cost every request a fresh 8 KiB buffer.
#[tokio::test]
async fn a_client_that_leaves_cancels_its_upstream_request() {
    let mut upstream = Holding::start(b"").await;
    let doorman = Doorman::start(&config(&upstream.url, "", "timeout = \"60s\"")).await;
    let mut client = TcpStream::connect(doorman.addr).await.unwrap();
    client.write_all(&get_request("/slow")).await.unwrap();
    upstream.reached().await;
    drop(client);
    upstream.closed_after_client("request").await;
}

/// The same over TLS: the client's FIN comes after its close_notify, which nobody reads while
/// the request is in flight.
#[tokio::test]
async fn over_tls_a_client_that_leaves_cancels_its_upstream_request() {
    let mut upstream = Holding::start(b"").await;
    let (doorman, tls) = tls_doorman_to(&upstream.url, "").await;
    let mut client = tls_connect(doorman.addr, &tls).await;
    client.write_all(&get_request("/slow")).await.unwrap();
    upstream.reached().await;
    client.shutdown().await.unwrap();
    drop(client);
    upstream.closed_after_client("request").await;
}

/// The same for a response that has started and gone quiet (an event stream): the client's
/// leaving ends the stream upstream too, not the stream's next event.
#[tokio::test]
async fn a_client_that_leaves_a_quiet_stream_ends_it_upstream() {
    let mut upstream = Holding::start(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          d\r\ndata: first\n\n\r\n",
    )
    .await;
    let doorman = Doorman::start(&config(&upstream.url, "", "timeout = \"60s\"")).await;
    let mut client = TcpStream::connect(doorman.addr).await.unwrap();
    client.write_all(&get_request("/events")).await.unwrap();
    upstream.reached().await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(11).any(|w| w == b"data: first") {
        let n = tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .expect("the stream's first event")
            .unwrap();
        assert!(n > 0, "doorman closed the stream");
        got.extend_from_slice(&buf[..n]);
    }
    drop(client);
    upstream.closed_after_client("stream").await;
}

/// An upgraded tunnel belongs to its two ends: idle longer than both timeouts, it still works.
#[tokio::test]
async fn an_idle_websocket_tunnel_is_exempt_from_both_timeouts() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "send_timeout = \"1s\"\nbody_timeout = \"1s\"",
        "",
    )
    .await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&support::raw::ws_request("/ws", "")).await;
    let resp = conn.response(PATIENCE).await.expect("101");
    assert_eq!(resp.status, 101);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Still open after both timeouts: a frame goes through and comes back.
    conn.assert_frame_echoed(b"still here", PATIENCE).await;
}

// ---- max_connections_per_client -------------------------------------------------------------

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source address"))
        .expect("bind source address");
    socket.connect(addr).await.expect("connect")
}

/// One client's slow-body connections fill only its own share: its connections beyond
/// `max_connections_per_client` are closed at once, and another client is served promptly.
#[tokio::test]
async fn one_clients_slow_connections_cannot_starve_another_client() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "max_connections = 50\nmax_connections_per_client = 20\nbody_timeout = \"60s\"",
        "",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut conn = RawConn::over(connect_from("127.0.0.1", doorman.addr).await);
        conn.send(STALLING_POST).await;
        slow.push(conn);
    }
    // Accepted in the order they connected: the first 20 are served (their bodies awaited), the
    // other 20 closed at accept.
    for (i, conn) in slow.iter_mut().enumerate().skip(20) {
        assert!(
            conn.closed_within(PATIENCE).await,
            "connection {} from one client was not closed at accept",
            i + 1
        );
    }
    for (i, conn) in slow.iter_mut().enumerate().take(20) {
        assert!(
            !conn.closed_within(Duration::from_millis(100)).await,
            "connection {} was closed although within the client's limit",
            i + 1
        );
    }

    let mut other = RawConn::over(connect_from("127.0.0.2", doorman.addr).await);
    other.send(&get_request("/hello")).await;
    let resp = other
        .response(Duration::from_secs(3))
        .await
        .expect("another client is served promptly");
    assert_eq!(resp.status, 200);

    let mut one_more = RawConn::over(connect_from("127.0.0.1", doorman.addr).await);
    assert!(
        one_more.closed_within(Duration::from_secs(2)).await,
        "the 21st connection from one client was not closed at once"
    );
    // Its first 20 are still being served (waiting for their bodies).
    drop(slow);
    // Once they are gone, the client may connect again.
    let mut again = RawConn::over(connect_from("127.0.0.1", doorman.addr).await);
    let mut ok = false;
    for _ in 0..20 {
        again.send(&get_request("/again")).await;
        if let Some(resp) = again.response(Duration::from_secs(1)).await {
            ok = resp.status == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = RawConn::over(connect_from("127.0.0.1", doorman.addr).await);
    }
    assert!(
        ok,
        "the client's slots were not given back when its connections closed"
    );
}
