//! Which HTTP version a client connection speaks, and the hyper connection that serves it.
//!
//! One listener serves HTTP/1.1 and HTTP/2 (prior knowledge over plain TCP, or after TLS with
//! ALPN `h2`): the first bytes tell them apart, since every HTTP/2 connection opens with the
//! 24-byte preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` and no HTTP/1 request line does.
//!
//! hyper-util's auto builder does the same, but its sniff reads at most 24 bytes, so hyper's
//! HTTP/1 reader gets a 24-byte first read and needs a second read (a second syscall) for the
//! rest of the head. That second read finds its 8 KiB buffer 24 bytes short and doubles it to
//! 16 KiB, which the connection then keeps for its whole life, idle or not. [`sniff`] instead
//! takes one read of up to [`FIRST_READ`] bytes, whatever the client sent, and [`Watched`]
//! replays all of it: a typical request head reaches hyper whole, in the 8 KiB buffer hyper
//! allocates for it. Serving each version on its own connection type (rather than the auto
//! builder's enum of both) also keeps the HTTP/2 state out of every HTTP/1 connection's task.
//! With the TLS state boxed too (`Connection::serve`), 10,000 idle keep-alive connections went
//! from 226 MB to 137 MB of RSS (`benches/idle_conns.py` against a release build).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::deadlines::Watched;
use crate::config::Config;
use crate::error::BoxError;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most the sniff reads at once: the size of hyper's own first read, so whatever fits
/// there is handed over in one piece.
pub const FIRST_READ: usize = 8 * 1024;

/// The protocol a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

/// Read the connection's first bytes and tell which protocol they open; they stay in `io`, to
/// be replayed to hyper. `None`: the client closed before sending anything that decides it.
///
/// It reads again only while everything so far is a proper prefix of the HTTP/2 preface, so an
/// HTTP/1 request is decided on its first read. The caller bounds the wait (`header_timeout`).
pub async fn sniff<S: AsyncRead + Unpin>(io: &mut Watched<S>) -> io::Result<Option<Version>> {
    let mut first = BytesMut::with_capacity(FIRST_READ);
    loop {
        if io.read_buf(&mut first).await? == 0 {
            return Ok(None);
        }
        let seen = first.len().min(PREFACE.len());
        let version = if first[..seen] != PREFACE[..seen] {
            Some(Version::Http1)
        } else if seen == PREFACE.len() {
            Some(Version::Http2)
        } else {
            None
        };
        if let Some(version) = version {
            io.replay(first.freeze());
            return Ok(Some(version));
        }
    }
}

/// A client connection hyper can serve, with TLS or without.
pub trait Io: Read + Write + Unpin + Send + 'static {}
impl<T: Read + Write + Unpin + Send + 'static> Io for T {}

/// A service hyper can run on either protocol: HTTP/2 runs each request in a task of its own,
/// so the request's future and the response body must be `Send + 'static`.
pub trait ConnService:
    HttpService<
    Incoming,
    Future: Send + 'static,
    ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
>
{
}
impl<S> ConnService for S where
    S: HttpService<
        Incoming,
        Future: Send + 'static,
        ResBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
    >
{
}

/// The server settings for both protocols, shared by every connection.
pub struct HttpServer {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl HttpServer {
    pub fn new(config: &Config) -> HttpServer {
        let listen = &config.listen;
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // ConnClock owns header and idle deadlines; hyper's own would conflate the two.
            .header_read_timeout(None)
            .keep_alive(true)
            // No read-ahead while a request is in flight: hyper's, meant to see a client that
            // left, reserved a fresh 8 KiB read buffer for every request (the request's header
            // bytes still share the last one), about 900 instructions a request on glibc's
            // slow path (docs/BENCHMARKS.md). The connection's clock watches for the client's
            // leaving instead (`deadlines`, `Expiry::Left`).
            .half_close(true)
            // The request line and headers, counted as received: hyper answers 431 beyond
            // it. (The read buffer's own cap alone lets heads through up to the next read's
            // size past it.)
            .max_header_size(listen.max_header_bytes)
            .max_buf_size(listen.max_header_bytes);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(listen.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .max_pending_accept_reset_streams(64)
            .max_local_error_reset_streams(256);
        HttpServer {
            http1: h1,
            http2: h2,
        }
    }

    /// Serve `io` with `service` in the protocol [`sniff`] found. HTTP/1 connections support
    /// upgrades (WebSocket).
    pub fn serve<I: Io, S: ConnService>(
        &self,
        version: Version,
        io: I,
        service: S,
    ) -> Served<I, S> {
        match version {
            Version::Http1 => Served::Http1 {
                conn: self.http1.serve_connection(io, service).with_upgrades(),
            },
            Version::Http2 => Served::Http2 {
                conn: Box::pin(self.http2.serve_connection(io, service)),
            },
        }
    }
}

/// One client connection being served, in its protocol. `Unpin`, so that an idle HTTP/1
/// connection's state can be taken apart ([`Served::into_parts`]).
// The HTTP/1 variant, the common one, is inline on purpose; HTTP/2's is the boxed one.
#[allow(clippy::large_enum_variant)]
pub enum Served<I, S>
where
    S: HttpService<Incoming>,
{
    Http1 {
        conn: http1::UpgradeableConnection<I, S>,
    },
    // Boxed: HTTP/2's connection state (1.6 KB) is twice HTTP/1's, and would size every
    // HTTP/1 connection's task for it.
    Http2 {
        conn: Pin<Box<http2::Connection<I, S, TokioExecutor>>>,
    },
}

impl<I: Io, S: ConnService> Served<I, S> {
    /// Finish the requests in flight, take no new ones, then close.
    pub fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1 { conn } => Pin::new(conn).graceful_shutdown(),
            Served::Http2 { conn } => conn.as_mut().graceful_shutdown(),
        }
    }

    /// An HTTP/1 connection taken apart: its socket, the bytes hyper read but did not use
    /// yet, and the service, to serve the next request with a new hyper state. Only once hyper
    /// itself closed it as idle (the rest in `super::serve_until_rest`): hyper's state is
    /// dropped as it is. `None` for HTTP/2, or once upgraded.
    pub fn into_parts(self) -> Option<http1::Parts<I, S>> {
        match self {
            Served::Http1 { conn } => conn.into_parts(),
            Served::Http2 { .. } => None,
        }
    }
}

impl<I: Io, S: ConnService + Unpin> Future for Served<I, S> {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1 { conn } => Pin::new(conn).poll(cx),
            Served::Http2 { conn } => conn.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::server::deadlines::ConnClock;

    /// Sniff what `chunks` deliver (each one write, with a pause between them), then read back
    /// everything the connection replays and yields.
    async fn sniffed(chunks: &[&[u8]]) -> (Option<Version>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let clock = ConnClock::new(
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        let mut io = Watched::new(server, Arc::clone(&clock));
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let version = sniff(&mut io).await.unwrap();
        writer.await.unwrap();
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        (version, rest)
    }

    #[tokio::test]
    async fn an_http1_request_is_decided_on_its_first_byte_and_replayed_whole() {
        let head: &[u8] = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let (version, bytes) = sniffed(&[head]).await;
        assert_eq!(version, Some(Version::Http1));
        assert_eq!(bytes, head);
    }

    #[tokio::test]
    async fn the_preface_in_pieces_is_read_until_complete() {
        let (version, bytes) = sniffed(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r", b"\n\0\0"]).await;
        assert_eq!(version, Some(Version::Http2));
        assert_eq!(bytes, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0");
    }

    #[tokio::test]
    async fn a_request_that_starts_like_the_preface_is_http1_once_it_differs() {
        let (version, bytes) = sniffed(&[b"P", b"RI", b" /x HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(version, Some(Version::Http1));
        assert_eq!(bytes, b"PRI /x HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_client_that_leaves_before_deciding_is_none() {
        assert_eq!(sniffed(&[]).await.0, None);
        assert_eq!(sniffed(&[b"PRI * HTTP"]).await.0, None);
    }
}
