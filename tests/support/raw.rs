//! Raw-socket helpers for framing tests: exact bytes in, whatever comes back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Write `bytes` and read until the peer closes or `wait` passes with nothing new; returns what
/// was read and whether the peer closed the connection.
pub async fn exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> (String, bool) {
    stream.write_all(bytes).await.expect("write");
    read_for(stream, wait).await
}

/// Read until the peer closes, or until `wait` passes without a byte.
pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// How many HTTP responses (status lines) a raw read contains.
pub fn count_responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

/// One HTTP/1.x response parsed off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header lines as (lower-case name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw client connection that reads whole responses (Content-Length or chunked bodies), so a
/// test can send several requests on one socket and tell when the peer closed it.
pub struct RawConn<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    closed: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        RawConn::over(connect(addr).await)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawConn<S> {
    /// A raw connection over a stream the test connected itself (from another source address,
    /// with socket options set; or TLS).
    pub fn over(stream: S) -> RawConn<S> {
        RawConn {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Write `bytes`; false if the peer already closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// The next complete response, or `None` if the peer closed, or `wait` passed without one.
    pub async fn response(&mut self, wait: Duration) -> Option<RawResponse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((resp, used)) = parse_response(&self.buf) {
                self.buf.drain(..used);
                return Some(resp);
            }
            if self.closed || !self.fill_until(deadline).await {
                return None;
            }
        }
    }

    /// Wait up to `wait` for the peer to close; true if it did. Bytes read meanwhile are kept
    /// (see [`pending`](Self::pending)).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.closed {
            if !self.fill_until(deadline).await {
                return self.closed;
            }
        }
        true
    }

    /// Bytes received but not yet returned as a response.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Read once before `deadline`; false if the deadline passed or the peer closed.
    async fn fill_until(&mut self, deadline: tokio::time::Instant) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.closed = true;
                false
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

/// A minimal GET for `path` with `Host: x`.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Parse one complete response at the start of `buf`: the response and the bytes it used.
fn parse_response(buf: &[u8]) -> Option<(RawResponse, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let rest = &buf[head_end..];
    let (body, used) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = std::str::from_utf8(&rest[at..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // Trailers (if any) end with an empty line.
                let end = rest[at..].windows(2).position(|w| w == b"\r\n")?;
                if end == 0 {
                    break (body, at + 2);
                }
                let trailers_end = rest[at..].windows(4).position(|w| w == b"\r\n\r\n")?;
                break (body, at + trailers_end + 4);
            }
            if rest.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    } else if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else {
        let len: usize = find("content-length").map_or(Some(0), |v| v.parse().ok())?;
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    };
    let resp = RawResponse {
        status,
        headers,
        body,
    };
    Some((resp, head_end + used))
}

/// A WebSocket handshake for `path` (the RFC 6455 §1.3 sample key), with `extra` header lines
/// (each ending in `\r\n`).
pub fn ws_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

impl RawConn {
    /// Send one client frame of `payload` through a tunnel to the test upstream's `/ws` echo
    /// and read the same frame back, within `wait`.
    pub async fn assert_frame_echoed(&mut self, payload: &[u8], wait: Duration) {
        let frame = super::ws_frame(payload);
        self.stream.write_all(&frame).await.expect("write");
        let mut back = vec![0u8; frame.len()];
        tokio::time::timeout(wait, self.stream.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, frame);
    }
}
