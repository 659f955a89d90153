//! An upstream that speaks h2c, as Hypercorn, Jetty or a Go `h2c` handler do, and the attack
//! that turned such an upstream into a full bypass when a proxy tunnels the upgrade.
//!
//! The upstream ([`H2cUpstream`]) serves HTTP/1.1; a request with `Connection: Upgrade,
//! HTTP2-Settings` and `Upgrade: h2c` is answered `101 Switching Protocols` and the connection
//! then serves HTTP/2 (hyper's server); a connection that opens with the HTTP/2 preface is
//! served HTTP/2 at once (prior knowledge). Every HTTP/2 request it receives is recorded apart,
//! so a test can prove that none ever arrived. Plain HTTP/1.1 requests are answered with a JSON
//! echo of their head.
//!
//! [`h2c_attack`] plays the attacker on any client stream to doorman (plain or TLS with ALPN
//! `http/1.1`): the upgrade request on a public path, then, whatever the answer, an HTTP/2
//! connection on the same stream with requests for protected paths carrying forged identity
//! headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The `HTTP2-Settings` value of the audit's request (SETTINGS_HEADER_TABLE_SIZE and friends).
pub const SETTINGS: &str = "AAEAABAAAAIAAAABAAQAAP__AAUAAEAAAAgAAAAAAAMAAABkAAYAAQAA";

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A running h2c-capable upstream; stops when dropped.
pub struct H2cUpstream {
    pub addr: SocketAddr,
    /// Requests received as HTTP/1.1.
    pub h1: Log,
    /// Requests received as HTTP/2 streams, after an upgrade.
    pub h2: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2cUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn seen(req: &Request<Incoming>) -> Seen {
    Seen {
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map_or("", |p| p.as_str())
            .to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

fn log(log: &Log, entry: Seen) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
}

impl H2cUpstream {
    pub async fn start() -> H2cUpstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind h2c upstream");
        let addr = listener.local_addr().expect("addr");
        let h1: Log = Arc::default();
        let h2: Log = Arc::default();
        let (h1_log, h2_log) = (Arc::clone(&h1), Arc::clone(&h2));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h1_log, h2_log) = (Arc::clone(&h1_log), Arc::clone(&h2_log));
                tokio::spawn(async move {
                    // h2c with prior knowledge: the connection opens with the HTTP/2 preface.
                    let mut first = [0u8; 24];
                    let peeked = tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            match stream.peek(&mut first).await {
                                Ok(n) if n < first.len() && first[..n] == PREFACE[..n] && n > 0 => {
                                    tokio::time::sleep(Duration::from_millis(5)).await
                                }
                                other => return other,
                            }
                        }
                    })
                    .await;
                    if let Ok(Ok(24)) = peeked {
                        if &first == PREFACE {
                            serve_h2(TokioIo::new(stream), h2_log).await;
                            return;
                        }
                    }
                    let service = service_fn(move |mut req: Request<Incoming>| {
                        let entry = seen(&req);
                        log(&h1_log, entry.clone());
                        let wants_h2c = entry
                            .header("upgrade")
                            .iter()
                            .any(|v| v.to_ascii_lowercase().contains("h2c"));
                        let resp = if wants_h2c {
                            let upgrade = hyper::upgrade::on(&mut req);
                            let h2_log = Arc::clone(&h2_log);
                            tokio::spawn(async move {
                                if let Ok(upgraded) = upgrade.await {
                                    serve_h2(upgraded, h2_log).await;
                                }
                            });
                            Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", "h2c")
                                .body(Full::new(Bytes::new()))
                                .expect("101")
                        } else {
                            let echo = serde_json::json!({
                                "method": entry.method,
                                "uri": entry.path,
                                "headers": entry.headers,
                            });
                            Response::new(Full::new(Bytes::from(echo.to_string())))
                        };
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        H2cUpstream { addr, h1, h2, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn h1_seen(&self) -> Vec<Seen> {
        self.h1.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn h2_seen(&self) -> Vec<Seen> {
        self.h2.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serve HTTP/2 on an upgraded connection, recording every stream, answering 200.
async fn serve_h2<I>(io: I, h2_log: Log)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        log(&h2_log, seen(&req));
        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("h2 stream served")))) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

/// What the attack got back from doorman.
#[derive(Debug)]
pub struct AttackOutcome {
    /// The status line and headers of the answer to the upgrade request.
    pub head: String,
    /// The statuses of the HTTP/2 requests that got an answer through the connection (empty
    /// when the HTTP/2 attempt failed, as it must).
    pub h2_statuses: Vec<u16>,
}

/// The audit's request, on `path` with `host`.
pub fn upgrade_request(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {SETTINGS}\r\n\r\n"
    )
}

/// Send the h2c upgrade for `path` on `stream`, read the answer's head (and its body, when it
/// has a `Content-Length`), then try HTTP/2 on the same stream: requests for each of
/// `protected` with `x-auth-user: alice`, `x-auth-groups: admin`.
pub async fn h2c_attack<S>(mut stream: S, path: &str, protected: &[&str]) -> AttackOutcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    stream
        .write_all(upgrade_request(path, "localhost").as_bytes())
        .await
        .expect("send upgrade request");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !buf.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut byte)).await;
        match read {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = tokio::time::timeout_at(deadline, stream.read_exact(&mut body)).await;

    // Whatever the answer, speak HTTP/2 now, as a client that got its 101 would.
    let mut h2_statuses = Vec::new();
    let handshake = tokio::time::timeout(
        Duration::from_secs(5),
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        ),
    )
    .await;
    if let Ok(Ok((mut sender, conn))) = handshake {
        tokio::spawn(conn);
        for path in protected {
            let req = Request::builder()
                .uri(format!("http://localhost{path}"))
                .header("x-auth-user", "alice")
                .header("x-auth-groups", "admin")
                .body(Empty::new())
                .expect("request");
            let sent = tokio::time::timeout(Duration::from_secs(3), sender.send_request(req)).await;
            if let Ok(Ok(resp)) = sent {
                h2_statuses.push(resp.status().as_u16());
                let _ = resp.into_body().collect().await;
            }
        }
    }
    AttackOutcome { head, h2_statuses }
}
