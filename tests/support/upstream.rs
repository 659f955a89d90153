//! A real upstream HTTP/1.1 server for the tests, built on hyper like any Rust app would be.
//!
//! Routes:
//! * anything not below: echo the request as JSON (`method`, `uri`, `version`, `headers` as
//!   `[name, value]` pairs in arrival order, `body_len`), reading the whole body without keeping it;
//! * `/status/{code}`: an empty response with that status;
//! * `/slow/{ms}`: the echo, after sleeping;
//! * `/download/{bytes}`: that many bytes, streamed in 64 KiB chunks;
//! * `/trailers`: a chunked body followed by the trailer `x-checksum: abc123`;
//! * `/early`: `200` at once, before reading the request body; the body then says `first\n`,
//!   and `read N\n` once the request body has been read to its end (N bytes);
//! * `/quiet/{ms}`: an event stream (`text/event-stream`) that sends `data: first`, stays
//!   silent for that long, then sends `data: last` and ends (a quiet SSE stream or long poll);
//! * `/drip/{ms}`: a `text/plain` body of `tick\n` every that many milliseconds, until the
//!   client goes (a long download, a long poll that is not an event stream);
//! * `/hop-headers`: a response carrying hop-by-hop and `X-Doorman-*` headers;
//! * `/ws`: `101` (with the RFC 6455 `Sec-WebSocket-Accept`) and an echo of every byte, when
//!   asked to upgrade; `426` otherwise; `/ws-bad-accept`, `/ws-no-accept` and `/ws-to-h2c`
//!   switch too, with a wrong accept value, none, or to `h2c` (an upstream doorman must not
//!   trust);
//! * `/ws-echo`: a WebSocket echo of whole messages (tokio-tungstenite: unmasked server
//!   frames, Close answered), for a browser at the other end;
//! * `/ws-refuse`: `403`, even to an upgrade request;
//! * `/set-cookies`: `200` with several `Set-Cookie` headers, including ones named
//!   `doorman_session`, `__Host-doorman_session` and `sid` (cookie-fixation attempts);
//! * `/app-login` and anything below it (`/app-login/x`): the echo, plus the login handoff
//!   headers (DESIGN.md §6) taken from the query: `?user=U&groups=G` answers with
//!   `X-Doorman-Login: U` and `X-Doorman-Groups: G` (percent-decoded to raw bytes), so a test
//!   plays an app that reflects a query parameter into a handoff header;
//! * `/app-logout`: the echo, plus `X-Doorman-Logout: 1`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Connections ended so far (closed by either side).
    pub closed: Arc<AtomicUsize>,
    /// The path (and query) of every request received, in arrival order.
    pub paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Start on a free loopback port.
    pub async fn start() -> Upstream {
        Upstream::serve(None).await
    }

    /// Start on a free loopback port, answering plain HTTP/1.1 or, with `tls`, HTTPS.
    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let closed = Arc::new(AtomicUsize::new(0));
        let closed_counter = Arc::clone(&closed);
        let paths = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&paths);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let recorder = Arc::clone(&recorder);
                let tls = tls.clone();
                let closed = Arc::clone(&closed_counter);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        record(&recorder, &req);
                        async move { Ok::<_, Infallible>(route(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http
                                    .serve_connection(TokioIo::new(stream), service)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Upstream {
            addr,
            connections,
            closed,
            paths,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The paths (with query) the upstream has received so far, in arrival order.
    pub fn seen_paths(&self) -> Vec<String> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Note the request's path (and query) in the upstream's `paths`.
fn record(paths: &Mutex<Vec<String>>, req: &Request<Incoming>) {
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    paths
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(target.to_string());
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    r
}

async fn route(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut segs = path.trim_start_matches('/').splitn(2, '/');
    match (segs.next().unwrap_or(""), segs.next()) {
        ("status", Some(code)) => status(code.parse().unwrap_or(500)),
        ("slow", Some(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(1000))).await;
            echo(req).await
        }
        ("download", Some(n)) => download(n.parse().unwrap_or(0)),
        ("trailers", None) => trailers(),
        ("early", None) => early(req),
        ("quiet", Some(ms)) => quiet(Duration::from_millis(ms.parse().unwrap_or(1000))),
        ("drip", Some(ms)) => drip(Duration::from_millis(ms.parse().unwrap_or(100))),
        ("hop-headers", None) => Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-doorman-login", "mallory")
            .header("x-doorman-groups", "admin")
            .header("x-kept", "yes")
            .body(full("ok"))
            .expect("response"),
        ("ws", None) => websocket(req, Switch::Correct),
        ("ws-echo", None) => websocket(req, Switch::Messages),
        ("ws-bad-accept", None) => websocket(req, Switch::WrongAccept),
        ("ws-no-accept", None) => websocket(req, Switch::NoAccept),
        ("ws-to-h2c", None) => websocket(req, Switch::ToH2c),
        ("ws-refuse", None) => status(403),
        ("set-cookies", None) => Response::builder()
            .header("set-cookie", "app=1; Path=/")
            .header("set-cookie", "doorman_session=fixated; Path=/; HttpOnly")
            .header(
                "set-cookie",
                "__Host-doorman_session=fixated; Path=/; Secure",
            )
            .header("set-cookie", "sid=fixated; Path=/")
            .header("set-cookie", "theme=dark; Max-Age=60")
            .body(full("ok"))
            .expect("response"),
        ("app-login", _) => {
            let query = query_pairs(req.uri().query());
            let mut resp = echo(req).await;
            for (param, header) in [("user", "x-doorman-login"), ("groups", "x-doorman-groups")] {
                if let Some((_, value)) = query.iter().find(|(k, _)| k == param) {
                    let value = http::HeaderValue::from_bytes(value).expect("header value");
                    resp.headers_mut().insert(header, value);
                }
            }
            resp
        }
        ("app-logout", None) => {
            let mut resp = echo(req).await;
            resp.headers_mut()
                .insert("x-doorman-logout", http::HeaderValue::from_static("1"));
            resp
        }
        _ => echo(req).await,
    }
}

/// `a=1&b=%C3%A9` → `[("a", b"1"), ("b", [0xC3, 0xA9])]`: values percent-decoded to raw bytes.
fn query_pairs(query: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = v.as_bytes();
            let mut out = Vec::with_capacity(v.len());
            let mut i = 0;
            while i < v.len() {
                match (
                    v[i],
                    v.get(i + 1).and_then(|&b| hex(b)),
                    v.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (b'%', Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 3;
                    }
                    (b, _, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            (k.to_string(), out)
        })
        .collect()
}

async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut body_len: u64 = 0;
    let mut trailers = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            body_len += data.len() as u64;
        } else if let Some(t) = frame.trailers_ref() {
            for (k, v) in t {
                trailers.push(serde_json::json!([k.as_str(), v.to_str().unwrap_or("")]));
            }
        }
    }
    let headers: Vec<_> = parts
        .headers
        .iter()
        .map(|(k, v)| serde_json::json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
        "trailers": trailers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(full(json.to_string()))
        .expect("response")
}

fn download(n: u64) -> Response<Body> {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let (tx, body) = ChannelBody::new();
    tokio::spawn(async move {
        let mut left = n;
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            if tx.send(Frame::data(chunk.slice(..take))).await.is_err() {
                return;
            }
            left -= take as u64;
        }
    });
    Response::builder()
        .header("content-length", n.to_string())
        .body(body.boxed())
        .expect("response")
}

fn early(req: Request<Incoming>) -> Response<Body> {
    let (tx, body) = ChannelBody::new();
    let mut incoming = req.into_body();
    tokio::spawn(async move {
        let _ = tx.send(Frame::data(Bytes::from_static(b"first\n"))).await;
        let mut read = 0;
        while let Some(Ok(frame)) = incoming.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
        }
        let _ = tx
            .send(Frame::data(Bytes::from(format!("read {read}\n"))))
            .await;
    });
    Response::builder().body(body.boxed()).expect("response")
}

fn quiet(silence: Duration) -> Response<Body> {
    let (tx, body) = ChannelBody::new();
    tokio::spawn(async move {
        let _ = tx
            .send(Frame::data(Bytes::from_static(b"data: first\n\n")))
            .await;
        tokio::time::sleep(silence).await;
        let _ = tx
            .send(Frame::data(Bytes::from_static(b"data: last\n\n")))
            .await;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body.boxed())
        .expect("response")
}

fn drip(every: Duration) -> Response<Body> {
    let (tx, body) = ChannelBody::new();
    tokio::spawn(async move {
        while tx
            .send(Frame::data(Bytes::from_static(b"tick\n")))
            .await
            .is_ok()
        {
            tokio::time::sleep(every).await;
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(body.boxed())
        .expect("response")
}

fn trailers() -> Response<Body> {
    let mut trailer = http::HeaderMap::new();
    trailer.insert("x-checksum", "abc123".parse().expect("value"));
    let (tx, body) = ChannelBody::new();
    tokio::spawn(async move {
        let _ = tx.send(Frame::data(Bytes::from_static(b"hello "))).await;
        let _ = tx.send(Frame::data(Bytes::from_static(b"world"))).await;
        let _ = tx.send(Frame::trailers(trailer)).await;
    });
    Response::builder()
        .header("trailer", "x-checksum")
        .body(body.boxed())
        .expect("response")
}

/// A body fed frame by frame from a channel, so responses stream and can end with trailers.
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Frame<Bytes>>);

impl ChannelBody {
    pub fn new() -> (tokio::sync::mpsc::Sender<Frame<Bytes>>, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, ChannelBody(rx))
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// How a `/ws*` route answers an upgrade: as RFC 6455 says, or wrongly in one way.
#[derive(Clone, Copy)]
enum Switch {
    /// `101`, then every byte echoed as it came (client frames come back masked: fine for a
    /// raw test client, refused by browsers).
    Correct,
    /// `101`, then a WebSocket server echoing each message.
    Messages,
    /// `101` with a `Sec-WebSocket-Accept` that answers another key.
    WrongAccept,
    /// `101` without `Sec-WebSocket-Accept`.
    NoAccept,
    /// `101` to `h2c`, whatever was asked.
    ToH2c,
}

fn websocket(mut req: Request<Incoming>, switch: Switch) -> Response<Body> {
    let wants = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants {
        return status(426);
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if let Switch::Messages = switch {
            return echo_messages(io).await;
        }
        let mut buf = [0u8; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let protocol = match switch {
        Switch::ToH2c => "h2c",
        _ => "websocket",
    };
    let accept = match switch {
        Switch::Correct | Switch::Messages | Switch::ToH2c => Some(websocket_accept(&key)),
        Switch::WrongAccept => Some(websocket_accept(b"AQIDBAUGBwgJCgsMDQ4PEA==")),
        Switch::NoAccept => None,
    };
    let mut resp = Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", protocol);
    if let Some(accept) = accept {
        resp = resp.header("sec-websocket-accept", accept);
    }
    resp.body(full("")).expect("response")
}

/// Serve a switched connection as a WebSocket server that echoes each data message.
async fn echo_messages<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// RFC 6455 §4.2.2: what a WebSocket server answers a `Sec-WebSocket-Key` with.
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

impl Upstream {
    /// Start on a free loopback port serving the same routes over TLS (an `https://` upstream).
    pub async fn start_tls(tls: Arc<rustls::ServerConfig>) -> Upstream {
        Upstream::serve(Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }
}
