//! The way to the upstream: how its failures become 502/504, how the connection pool behaves,
//! and `https://` upstreams.

mod support;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{echoed, echoed_header, eventually, get, h1_client, send, Doorman, Upstream};

/// The fixed body doorman answers a 502 with (src/error.rs).
const BAD_GATEWAY_BODY: &str = "Bad gateway: the upstream could not be reached\n";

/// A config with short client-side deadlines and the given `[upstream]` extras.
fn config(upstream_url: &str, upstream_extra: &str) -> String {
    support::doorman::config(upstream_url, "header_timeout = \"500ms\"", upstream_extra)
}

/// Read one request head (up to the blank line) off a raw upstream socket.
async fn read_request_head(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

/// A raw upstream that accepts, reads each request head, and then hangs up without a word —
/// with a reset (`SO_LINGER` 0) when `reset`, else an orderly close.
async fn hang_up_upstream(reset: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                read_request_head(&mut stream).await;
                if reset {
                    let _ = stream.set_zero_linger();
                }
                drop(stream);
            });
        }
    });
    (addr, task)
}

// ---- failures ------------------------------------------------------------------------------

/// An upstream that is down must look like a gateway error to the client, and the client must
/// learn nothing about the network behind doorman: no address, no OS error text.
#[tokio::test]
async fn a_refused_upstream_is_a_502_with_a_fixed_body() {
    let port = support::free_port();
    let doorman = Doorman::start(&config(&format!("http://127.0.0.1:{port}"), "")).await;
    let (status, headers, body) = send(&h1_client(), get(&doorman.url("/x"), &[])).await;
    assert_eq!(status, 502);
    assert_eq!(body, BAD_GATEWAY_BODY);
    let text = String::from_utf8_lossy(&body).to_ascii_lowercase();
    for leak in [
        port.to_string().as_str(),
        "127.0.0.1",
        "refused",
        "os error",
    ] {
        assert!(!text.contains(leak), "the 502 body leaks {leak:?}: {text}");
    }
    assert_eq!(headers["cache-control"], "no-store");
}

/// An upstream that takes the request and closes the connection without answering (a crash,
/// a restart) is a 502, not a hang and not an empty 200.
#[tokio::test]
async fn an_upstream_that_closes_without_answering_is_a_502() {
    let (addr, _task) = hang_up_upstream(false).await;
    let doorman = Doorman::start(&config(&format!("http://{addr}"), "")).await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/x"), &[])).await;
    assert_eq!(status, 502);
    assert_eq!(body, BAD_GATEWAY_BODY);
}

/// The same for an upstream that resets the connection after reading the request.
#[tokio::test]
async fn an_upstream_that_resets_the_connection_is_a_502() {
    let (addr, _task) = hang_up_upstream(true).await;
    let doorman = Doorman::start(&config(&format!("http://{addr}"), "")).await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/x"), &[])).await;
    assert_eq!(status, 502);
    assert_eq!(body, BAD_GATEWAY_BODY);
}

/// `timeout` bounds how long a client waits for the upstream's response head: a stuck app
/// must not hold client connections (and doorman's resources) indefinitely.
#[tokio::test]
async fn an_upstream_slower_than_timeout_is_a_504() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(&upstream.url(), "timeout = \"300ms\"")).await;
    let started = Instant::now();
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/slow/2000"), &[])).await;
    let took = started.elapsed();
    assert_eq!(status, 504);
    assert_eq!(
        body,
        "Gateway timeout: the upstream did not answer in time\n"
    );
    // The upstream answers after 2 s; a 504 before that is the timeout's, not a late failure.
    assert!(took < Duration::from_millis(1900), "504 took {took:?}");
}

/// A listener whose accept queue is full, so further SYNs are dropped and connecting to it
/// hangs — an upstream host that is unreachable without saying so. Returns the address and the
/// connections that fill the queue (kept open for as long as the test needs the hang).
async fn black_hole() -> (SocketAddr, std::net::TcpListener, Vec<TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket we own; calling it again only changes the backlog.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(fd, 0): {}", std::io::Error::last_os_error());
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => return (addr, listener, fillers), // the queue is full: connects now hang
        }
    }
    panic!(
        "connecting to a listener with backlog 0 that never accepts did not hang after {} \
         connections: this kernel does not drop SYNs for a full accept queue",
        fillers.len()
    );
}

/// `connect_timeout` bounds connecting separately from `timeout`: an upstream host that drops
/// SYNs (down, firewalled) is reported as a 504 after `connect_timeout`, not after the much
/// longer `timeout` — and certainly not after the OS's minutes of SYN retries.
#[tokio::test]
async fn connect_timeout_bounds_an_upstream_that_never_accepts_the_connection() {
    let (addr, _listener, _fillers) = black_hole().await;
    let doorman = Doorman::start(&config(
        &format!("http://{addr}"),
        "connect_timeout = \"300ms\"\ntimeout = \"10s\"",
    ))
    .await;
    let started = Instant::now();
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/x"), &[])).await;
    let took = started.elapsed();
    assert_eq!(status, 504);
    // `timeout` (10 s) would also give a 504; only connect_timeout answers this early.
    assert!(took < Duration::from_secs(3), "504 took {took:?}");
}

// ---- the pool ------------------------------------------------------------------------------

/// A new upstream connection per request costs a handshake (and a TLS one for https) and
/// exhausts ephemeral ports under load; sequential requests must reuse one pooled connection.
#[tokio::test]
async fn sequential_requests_reuse_one_pooled_upstream_connection() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(&upstream.url(), "")).await;
    let client = h1_client();
    for i in 0..20 {
        let (status, _, body) = send(&client, get(&doorman.url(&format!("/n/{i}")), &[])).await;
        assert_eq!(status, 200);
        assert_eq!(echoed(&body)["uri"], format!("/n/{i}"));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

/// `pool_idle_timeout` must actually retire pooled connections: a socket kept past the
/// upstream's own keep-alive timeout (Node's is 5s) is the one it closes just as doorman writes.
#[tokio::test]
async fn pooled_connections_idle_past_pool_idle_timeout_are_not_reused() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(&upstream.url(), "pool_idle_timeout = \"200ms\"")).await;
    let client = h1_client();
    let (status, _, _) = send(&client, get(&doorman.url("/first"), &[])).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(&client, get(&doorman.url("/soon"), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        1,
        "reused within the idle timeout"
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (status, _, _) = send(&client, get(&doorman.url("/later"), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.connections.load(Ordering::SeqCst),
        2,
        "idle connection retired"
    );
}

/// Upstreams close idle keep-alive connections whenever they like, without notice. A pooled
/// connection the upstream has closed must never turn into a client-visible error: doorman
/// notices the close, or retries a request it could not send, on a fresh connection.
#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let closed = Arc::new(AtomicUsize::new(0));
    let closed_in_server = Arc::clone(&closed);
    let _server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let closed = Arc::clone(&closed_in_server);
            tokio::spawn(async move {
                if read_request_head(&mut stream).await {
                    // A valid keep-alive answer: nothing says the connection will close.
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                drop(stream);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let doorman = Doorman::start(&config(&format!("http://{addr}"), "")).await;
    let client = h1_client();
    for i in 0..50 {
        let (status, _, body) = send(&client, get(&doorman.url("/again"), &[])).await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(body, "ok", "request {i}");
        // The next request goes out after the upstream closed the connection this one used.
        let deadline = Instant::now() + Duration::from_secs(2);
        while closed.load(Ordering::SeqCst) <= i && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection goes back to the pool whenever its response was read to the end, however that
/// end looks: a `Content-Length` body, one streamed in many chunks, a chunked body ending in
/// trailers, and the bodies hyper never polls (`204`, `304`, `HEAD`). Missing one of them
/// would open a connection per such response.
#[tokio::test]
async fn every_kind_of_response_end_returns_the_connection_to_the_pool() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(&upstream.url(), "")).await;
    let client = h1_client();
    for round in 0..3 {
        for path in [
            "/echo",
            "/download/300000",
            "/trailers",
            "/status/204",
            "/status/304",
        ] {
            let mut req = get(&doorman.url(path), &[("te", "trailers")]);
            if path == "/status/304" {
                req.headers_mut()
                    .insert("if-none-match", http::HeaderValue::from_static("\"x\""));
            }
            let (status, _, body) = send(&client, req).await;
            assert!(status.is_success() || status == 304, "{path}: {status}");
            if path == "/download/300000" {
                assert_eq!(body.len(), 300_000, "{path}");
            }
        }
        let mut head = get(&doorman.url("/echo"), &[]);
        *head.method_mut() = http::Method::HEAD;
        let (status, _, body) = send(&client, head).await;
        assert_eq!(status, 200, "HEAD");
        assert!(body.is_empty());
        assert_eq!(
            upstream.connections.load(Ordering::SeqCst),
            1,
            "round {round}: a response end left its connection out of the pool"
        );
    }
}

/// A raw keep-alive upstream answering every request with `ok`; it counts accepted
/// connections and notes each connection doorman closes (EOF while waiting for a request).
async fn counting_upstream() -> (
    SocketAddr,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                while read_request_head(&mut stream).await {
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
                let _ = closed_tx.send(Instant::now());
            });
        }
    });
    (addr, accepted, closed, task)
}

/// Idle pooled connections are closed once `pool_idle_timeout` passes, even when no further
/// request comes to notice they expired: the upstream's sockets (and its connection limit)
/// are not held by an idle proxy.
#[tokio::test]
async fn idle_pooled_connections_are_closed_after_pool_idle_timeout_without_traffic() {
    let (addr, accepted, mut closed, _task) = counting_upstream().await;
    let doorman = Doorman::start(&config(
        &format!("http://{addr}"),
        "pool_idle_timeout = \"300ms\"",
    ))
    .await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/once"), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok");
    let answered = Instant::now();
    let at = tokio::time::timeout(Duration::from_secs(3), closed.recv())
        .await
        .expect("the idle connection was still open 3 s later")
        .expect("upstream running");
    let after = at.duration_since(answered);
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?}, before pool_idle_timeout"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A response body the client stopped reading half-way (it went away) must not put its
/// connection back: the rest of that body is still on the wire, and the next request would
/// read it as its response. The next request gets its own answer on a new connection.
#[tokio::test]
async fn a_response_body_dropped_half_read_does_not_return_its_connection() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(&upstream.url(), "")).await;
    let mut raw = TcpStream::connect(doorman.addr).await.expect("connect");
    raw.write_all(b"GET /download/50000000 HTTP/1.1\r\nHost: doorman\r\n\r\n")
        .await
        .expect("write");
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < 256 * 1024 {
        match raw.read(&mut buf).await {
            Ok(0) | Err(_) => panic!("doorman closed after {got} bytes"),
            Ok(n) => got += n,
        }
    }
    drop(raw);
    // Doorman notices the client left and drops the half-read body, and with it that upstream
    // connection: wait for the upstream to see it close (a connection put back in the pool
    // would stay open, and the requests below would catch it).
    eventually(
        Duration::from_secs(5),
        async || upstream.closed.load(Ordering::SeqCst),
        |closed| *closed >= 1,
    )
    .await;
    let client = h1_client();
    for i in 0..3 {
        let (status, _, body) = send(&client, get(&doorman.url(&format!("/after/{i}")), &[])).await;
        assert_eq!(status, 200);
        assert_eq!(echoed(&body)["uri"], format!("/after/{i}"));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
}

// ---- https upstreams -----------------------------------------------------------------------

/// A TLS upstream for `localhost` with a fresh self-signed certificate; returns it and the
/// certificate's PEM.
async fn tls_upstream() -> (Upstream, String) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert_pem = key.cert.pem();
    let cert_der = key.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key_der)
    .expect("server config");
    (Upstream::start_tls(Arc::new(server)).await, cert_pem)
}

/// Upstreams on another host are reached over TLS, verified against the CA the operator
/// configured (a private CA is the usual case inside a company network).
#[tokio::test]
async fn an_https_upstream_verified_by_the_configured_ca_is_reached() {
    let (upstream, ca_pem) = tls_upstream().await;
    let url = format!("https://localhost:{}", upstream.addr.port());
    let doorman = Doorman::toml(&config(&url, "ca = \"ca.pem\""))
        .file("ca.pem", ca_pem.as_bytes())
        .start()
        .await;
    let client = h1_client();
    for i in 0..3 {
        let (status, _, body) = send(&client, get(&doorman.url(&format!("/tls/{i}")), &[])).await;
        assert_eq!(status, 200);
        let echo = echoed(&body);
        assert_eq!(echo["uri"], format!("/tls/{i}"));
        assert_eq!(
            echoed_header(&echo, "host"),
            [format!("localhost:{}", upstream.addr.port())]
        );
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

/// Without `ca`, only the system trust store is trusted: a self-signed upstream
/// certificate must fail the handshake (502), never be accepted unverified.
#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_is_a_502() {
    let (upstream, _) = tls_upstream().await;
    let url = format!("https://localhost:{}", upstream.addr.port());
    let doorman = Doorman::start(&config(&url, "")).await;
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/tls"), &[])).await;
    assert_eq!(status, 502);
    assert_eq!(body, BAD_GATEWAY_BODY);
}
