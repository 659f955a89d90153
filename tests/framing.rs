//! The listener's hardening against hostile framing and slow clients, checked with exact bytes
//! on raw sockets: request smuggling, oversized heads, slowloris, idle keep-alive connections,
//! HTTP/2 prior knowledge and malformed request lines.

mod support;

use std::time::{Duration, Instant};

use support::doorman::config;
use support::raw::{self, get_request, RawConn};
use support::{echoed, echoed_header, get, h1_client, h2_client, send, Doorman, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Comfortably more than any deadline under test here: a peer that has not closed by then
/// never will on its own.
const PATIENCE: Duration = Duration::from_secs(3);

/// Doorman in front of `upstream` with `listen` keys added to `[listen]`.
async fn doorman(upstream: &Upstream, listen: &str) -> Doorman {
    Doorman::start(&config(&upstream.url(), listen, "")).await
}

/// Send `request` (Transfer-Encoding and Content-Length disagreeing about where the body ends)
/// and check doorman answers at most the first request, closes, and never forwards the bytes
/// after the first request's chunked body as a request of their own. Returns the upstream's
/// echo of the first request, if it was forwarded.
async fn assert_not_smuggled(upstream: &Upstream, request: &[u8]) -> Option<serde_json::Value> {
    let doorman = doorman(upstream, "").await;
    let mut stream = raw::connect(doorman.addr).await;
    let (text, closed) = raw::exchange(&mut stream, request, PATIENCE).await;
    assert!(
        raw::count_responses(&text) <= 1,
        "more than one response to one request:\n{text}"
    );
    assert!(
        closed,
        "doorman kept the connection open after TE + CL:\n{text}"
    );
    assert!(
        !upstream.seen_paths().iter().any(|p| p.contains("smuggled")),
        "the smuggled request reached the upstream: {:?}",
        upstream.seen_paths()
    );
    let status_line = text.lines().next().unwrap_or_default();
    if status_line.starts_with("HTTP/1.1 400") {
        assert!(
            upstream.seen_paths().is_empty(),
            "a refused request was forwarded"
        );
        return None;
    }
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "expected 400, or 200 read as chunked: {text}"
    );
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    assert!(
        head.to_ascii_lowercase().contains("\r\nconnection: close"),
        "a TE + CL request answered without `connection: close`:\n{head}"
    );
    assert_eq!(upstream.seen_paths(), ["/echo"]);
    Some(echoed(&bytes::Bytes::from(body.to_string())))
}

/// The classic smuggling shape where a chunked reader sees a second request: the chunked body
/// ends at `0\r\n\r\n` and a `GET /smuggled` follows, which a Content-Length reader would take as
/// body. If doorman kept the connection alive it would serve (and forward) the smuggled request
/// that a front proxy reading Content-Length never saw.
#[tokio::test]
async fn te_and_cl_together_never_turn_the_trailing_bytes_into_a_second_request() {
    let upstream = Upstream::start().await;
    let tail = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{tail}",
        tail.len()
    );
    if let Some(echo) = assert_not_smuggled(&upstream, request.as_bytes()).await {
        assert_eq!(echo["body_len"], 0, "the chunked body is empty");
    }
}

/// The opposite shape: with `Content-Length: 4` a length reader would stop after the chunk-size
/// line and read the chunk's data (`GET /smuggled ...`) as the next request. Doorman must read
/// the body as chunked, so those bytes are body, forwarded as such, and never a request.
#[tokio::test]
async fn te_and_cl_together_are_read_as_chunked_never_by_content_length() {
    let upstream = Upstream::start().await;
    let chunk = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    if let Some(echo) = assert_not_smuggled(&upstream, request.as_bytes()).await {
        assert_eq!(echo["body_len"], chunk.len(), "the chunk is the body");
        assert!(
            echoed_header(&echo, "content-length").is_empty()
                || echoed_header(&echo, "content-length") == [chunk.len().to_string()],
            "the client's Content-Length must not reach the upstream: {echo}"
        );
    }
}

/// A chunked request without Content-Length is re-framed correctly for the upstream, and (the
/// documented decision, RFC 9112 §6.1) its connection is closed after the response, since a
/// proxy in front may have framed it differently.
#[tokio::test]
async fn a_chunked_request_is_forwarded_whole_and_its_connection_closed() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    let echo = echoed(&bytes::Bytes::from(resp.body));
    assert_eq!(echo["body_len"], 11);
    assert_eq!(echo["method"], "POST");
    assert!(
        conn.closed_within(PATIENCE).await,
        "doorman kept a chunked request's connection open"
    );
}

/// The same for a chunked body that is empty (its last chunk at once): the body is known to be
/// empty only once read, so the gate, which skips looking for Transfer-Encoding on a body
/// known empty at the head, still sees it, and closes.
#[tokio::test]
async fn an_empty_chunked_request_closes_its_connection_too() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(b"GET /empty HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(echoed(&bytes::Bytes::from(resp.body))["body_len"], 0);
    assert!(
        conn.closed_within(PATIENCE).await,
        "doorman kept an empty chunked request's connection open"
    );
}

/// A head of exactly `len` bytes (request line + headers + blank line) for `GET /big`, padded
/// with one `X-Pad` header; returns the head and the pad's length.
fn head_of_len(len: usize) -> (Vec<u8>, usize) {
    let fixed = "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n".len();
    let pad = "a".repeat(len - fixed);
    let head = format!("GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n");
    assert_eq!(head.len(), len);
    (head.into_bytes(), pad.len())
}

/// `max_header_bytes` bounds the memory one request head can take: a head beyond it is refused
/// with 431 and never forwarded.
#[tokio::test]
async fn a_head_beyond_max_header_bytes_gets_431() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "max_header_bytes = 8192").await;
    let mut stream = raw::connect(doorman.addr).await;
    let (text, closed) = raw::exchange(&mut stream, &head_of_len(12_000).0, PATIENCE).await;
    assert!(
        text.starts_with("HTTP/1.1 431"),
        "expected 431 for a 12000-byte head: {text:?}"
    );
    assert!(closed, "the connection stays open after 431");
    assert!(
        upstream.seen_paths().is_empty(),
        "an oversized head was forwarded"
    );
}

/// The limit is not tighter than configured: a head just under `max_header_bytes` is served.
#[tokio::test]
async fn a_head_just_under_max_header_bytes_is_served() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "max_header_bytes = 8192").await;
    let mut conn = RawConn::connect(doorman.addr).await;
    let (head, pad_len) = head_of_len(8_000);
    conn.send(&head).await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 200);
    let echo = echoed(&bytes::Bytes::from(resp.body));
    assert_eq!(echoed_header(&echo, "x-pad")[0].len(), pad_len);
}

/// The limit is exact, not "about": the audit saw `max_header_bytes = 32768` let heads of up
/// to 49,152 bytes through (the read buffer's growth, not the head, was being capped). One byte
/// over is 431; exactly at the limit is served.
#[tokio::test]
async fn max_header_bytes_is_exact() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "max_header_bytes = 32768").await;
    for (len, want) in [(32_769, 431), (40_000, 431), (49_152, 431), (32_768, 200)] {
        let mut conn = RawConn::connect(doorman.addr).await;
        conn.send(&head_of_len(len).0).await;
        let status = conn.response(PATIENCE).await.map_or(0, |r| r.status);
        assert_eq!(status, want, "a {len}-byte head");
    }
    assert_eq!(upstream.seen_paths(), ["/big"]);
}

/// Write `first`, then one byte of `drip` every 100 ms (starting over at its end), until
/// doorman closes the connection (or [`PATIENCE`] passes); returns when the close was seen, or
/// `None`.
async fn drip_until_closed(stream: TcpStream, first: &[u8], drip: &[u8]) -> Option<Instant> {
    let (mut rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    });
    let started = Instant::now();
    let _ = wr.write_all(first).await;
    let drip = async {
        for byte in drip.iter().cycle() {
            if started.elapsed() >= PATIENCE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A write error means doorman is gone; the reader sees it too.
            let _ = wr.write_all(&[*byte]).await;
        }
    };
    tokio::pin!(reader);
    tokio::select! {
        closed = &mut reader => Some(closed.expect("reader task")),
        () = drip => None,
    }
}

/// Slowloris: a client that trickles a head byte by byte holds a connection (and a slot)
/// forever unless the whole head has a deadline. It must be cut at `header_timeout` from
/// accept, however steadily it sends.
#[tokio::test]
async fn a_head_trickled_byte_by_byte_on_a_new_connection_is_cut_at_header_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "header_timeout = \"500ms\"").await;
    let connected = Instant::now();
    let stream = raw::connect(doorman.addr).await;
    let closed = drip_until_closed(stream, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a")
        .await
        .expect("a trickled head was not cut within 3 s");
    let after = closed - connected;
    assert!(
        after >= Duration::from_millis(400),
        "closed after {after:?}: before header_timeout, so not by the header deadline"
    );
    assert!(upstream.seen_paths().is_empty());
}

/// Telling HTTP/2 from HTTP/1 waits for bytes too: a client that trickles the HTTP/2 preface,
/// never finishing it, is cut at `header_timeout` from accept like any slow head.
#[tokio::test]
async fn an_http2_preface_trickled_byte_by_byte_is_cut_at_header_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "header_timeout = \"500ms\"").await;
    let connected = Instant::now();
    let stream = raw::connect(doorman.addr).await;
    // 23 of the preface's 24 bytes take 2.3 s at this pace.
    let closed = drip_until_closed(stream, b"", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r")
        .await
        .expect("a trickled preface was not cut within 3 s");
    let after = closed - connected;
    assert!(
        after >= Duration::from_millis(400) && after < Duration::from_millis(2000),
        "closed after {after:?}: not by the header deadline"
    );
    assert!(upstream.seen_paths().is_empty());
}

/// A connection that never sends a byte still costs a socket and a slot; it is closed at
/// `header_timeout`, which covers protocol detection too.
#[tokio::test]
async fn a_silent_new_connection_is_closed_after_header_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "header_timeout = \"500ms\"").await;
    let connected = Instant::now();
    let mut conn = RawConn::connect(doorman.addr).await;
    assert!(
        conn.closed_within(PATIENCE).await,
        "a silent connection was not closed within 3 s"
    );
    let after = connected.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "closed after only {after:?}"
    );
    assert!(
        conn.pending().is_empty(),
        "doorman wrote to a silent connection"
    );
}

/// An idle keep-alive connection is governed by `idle_timeout`, not `header_timeout` (waiting
/// for the next request is not a slow head); but once the next request's first byte arrives,
/// its head is due within `header_timeout`, so a slowloris on a reused connection is cut too.
#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_header_timeout_but_a_slow_next_head_does_not() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "header_timeout = \"500ms\"\nidle_timeout = \"5s\"",
    )
    .await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&get_request("/first")).await;
    let resp = conn.response(PATIENCE).await.expect("first response");
    assert_eq!(resp.status, 200);
    let idle_from = Instant::now();
    assert!(
        !conn.closed_within(Duration::from_secs(1)).await,
        "an idle keep-alive connection was closed after {:?}, before idle_timeout",
        idle_from.elapsed()
    );

    let first_byte = Instant::now();
    let closed = drip_until_closed(conn.stream, b"G", b"a")
        .await
        .expect("a slow second head was not cut within 3 s");
    let after = closed - first_byte;
    assert!(
        after >= Duration::from_millis(400),
        "closed {after:?} after the first byte: not the header deadline"
    );
    assert!(
        closed - idle_from < Duration::from_millis(4_000),
        "closed only by idle_timeout ({:?} after the response)",
        closed - idle_from
    );
    assert_eq!(upstream.seen_paths(), ["/first"]);
}

/// Idle keep-alive connections are closed after `idle_timeout`, so they do not pile up.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "header_timeout = \"5s\"\nidle_timeout = \"700ms\"",
    )
    .await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&get_request("/")).await;
    assert_eq!(conn.response(PATIENCE).await.expect("response").status, 200);
    let idle_from = Instant::now();
    assert!(
        conn.closed_within(PATIENCE).await,
        "an idle connection was kept beyond 3 s with idle_timeout = 700ms"
    );
    let after = idle_from.elapsed();
    assert!(
        after >= Duration::from_millis(500),
        "closed after only {after:?}"
    );
}

/// `idle_timeout` counts from the last response, not from accept: a connection in steady use
/// stays open well past it.
#[tokio::test]
async fn a_keep_alive_connection_in_steady_use_outlives_idle_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "header_timeout = \"5s\"\nidle_timeout = \"700ms\"",
    )
    .await;
    let mut conn = RawConn::connect(doorman.addr).await;
    let started = Instant::now();
    for i in 0..5 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(
            conn.send(&get_request(&format!("/n{i}"))).await,
            "request {i}: closed"
        );
        let resp = conn
            .response(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("request {i} at {:?} not answered", started.elapsed()));
        assert_eq!(resp.status, 200);
    }
    assert!(started.elapsed() > Duration::from_millis(1_200));
    assert_eq!(upstream.seen_paths(), ["/n0", "/n1", "/n2", "/n3", "/n4"]);
}

/// A request in flight has no listener deadline: a slow upstream answer (longer than both
/// `header_timeout` and `idle_timeout`) is delivered, not cut.
#[tokio::test]
async fn a_slow_response_in_flight_is_not_cut_by_header_or_idle_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(
        &upstream,
        "header_timeout = \"500ms\"\nidle_timeout = \"700ms\"",
    )
    .await;
    let started = Instant::now();
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/slow/1500"), &[])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert_eq!(echoed(&body)["uri"], "/slow/1500");
}

/// HTTP/2 with prior knowledge is served, and forwarded to the HTTP/1.1 upstream with the
/// upstream's Host (`preserve_host = false`), not an h2-marked request.
#[tokio::test]
async fn http2_prior_knowledge_is_served_and_forwarded_as_http1() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "").await;
    let (status, _, body) = send(&h2_client(), get(&doorman.url("/h2?q=1"), &[])).await;
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["uri"], "/h2?q=1");
    assert_eq!(echoed_header(&echo, "host"), [upstream.addr.to_string()]);
}

/// HTTP/2 has no header timeout of its own: a client that sends only the connection preface
/// and then nothing must still be closed at `header_timeout`.
#[tokio::test]
async fn a_silent_http2_preface_only_connection_is_closed_after_header_timeout() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "header_timeout = \"500ms\"").await;
    let connected = Instant::now();
    let mut conn = RawConn::connect(doorman.addr).await;
    assert!(conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await);
    assert!(
        conn.closed_within(PATIENCE).await,
        "a preface-only h2 connection was not closed within 3 s"
    );
    let after = connected.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "closed after only {after:?}"
    );
    assert!(upstream.seen_paths().is_empty());
}

/// A request line that does not parse is answered 400 and the connection closed: there is no
/// telling where the next request would start.
#[tokio::test]
async fn a_malformed_request_line_gets_400_and_the_connection_closes() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream, "").await;
    for line in [
        "GET /a b HTTP/1.1",
        "GET / HTTP/1.1 extra",
        "G(ET / HTTP/1.1",
        "NOT A REQUEST",
    ] {
        let mut stream = raw::connect(doorman.addr).await;
        let bytes = format!(
            "{line}\r\nHost: x\r\n\r\n{}",
            "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
        );
        let (text, closed) = raw::exchange(&mut stream, bytes.as_bytes(), PATIENCE).await;
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{line:?}: expected 400, got {text:?}"
        );
        assert_eq!(raw::count_responses(&text), 1, "{line:?}: {text:?}");
        assert!(closed, "{line:?}: connection left open after 400");
    }
    assert!(
        upstream.seen_paths().is_empty(),
        "forwarded: {:?}",
        upstream.seen_paths()
    );
}
