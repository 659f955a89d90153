//! Per-connection deadlines with the contract's meaning, for HTTP/1 and HTTP/2 alike.
//!
//! hyper alone falls short here: its HTTP/1 `header_read_timeout` also runs while a keep-alive
//! connection waits for its next request (so it cannot tell `header_timeout` from
//! `idle_timeout`), and HTTP/2 has no header timeout at all. So every connection gets a
//! [`ConnClock`], fed by two observers (and told once whether the connection speaks HTTP/2):
//!
//! * [`Watched`] wraps the socket and notes each read, so the clock sees the first byte of a new
//!   HTTP/1 request arrive on an idle connection;
//! * [`RequestGuard`] lives from the moment hyper hands doorman a complete request head until
//!   the response body is finished or dropped.
//!
//! [`Watched`] also notes when a write to the client returned `Pending` and when one made
//! progress again: a write blocked for `send_timeout` (the client stopped reading) ends the
//! connection, in any phase and for HTTP/1 and HTTP/2 alike (DESIGN.md §14). A quiet response
//! (SSE, long poll) writes nothing, so nothing is blocked. After an upgrade the socket belongs to
//! the tunnel and nobody races the clock any more, so tunnels are exempt. What it cannot see:
//! an HTTP/2 client that keeps reading but never opens its flow-control window (hyper then has
//! nothing it may write).
//!
//! The clock is (apart from blocked writes) always in one of three phases: waiting for a head
//! (deadline: `header_timeout` after accept, or after the first byte of the next request), busy
//! (no deadline: the upstream `timeout` and the client govern), or idle (deadline:
//! `idle_timeout` after the last response).
//! The connection task races [`ConnClock::expired`] against hyper's connection future.
//!
//! An idle HTTP/1 connection also has an earlier, softer deadline: [`REST_AFTER`] after its
//! last response ([`Expiry::Rest`]), the connection task puts hyper's connection state away
//! (its 8 KiB read and write buffers among it) and waits on the bare socket, as nginx frees a
//! keep-alive connection's buffers (`benches/scale.sh`: 10,000 idle connections went from 12.3
//! to 5.1 KiB each, with `super::trim`). It is marked [`ConnClock::rested`] until the client's
//! next byte, so it fires once per idle spell.
//!
//! A busy HTTP/1 connection is also where doorman notices a client that left mid-request
//! ([`Expiry::Left`]): hyper's own read-ahead, which would see the client's EOF, is off (it cost
//! every request a fresh 8 KiB read buffer: `super::protocol`). Once a tick, while a request is
//! in flight, the clock asks the socket whether the client shut its side
//! ([`ConnClock::watch_client`]); if so, the connection is dropped, and with it the request
//! and its upstream exchange, as hyper would have done. A request shorter than a tick costs
//! nothing for it; a client's leaving is seen within about [`REST_AFTER`].
//!
//! Phase changes happen twice or three times per request, so they only write the state: they
//! wake nobody and arm no timer. [`ConnClock::expired`] instead never sleeps longer than the
//! shortest of the timeouts — and of [`REST_AFTER`], while the connection may still rest — (its
//! *tick*) before looking again: a connection that may rest looks once a second. Every
//! deadline a phase change can set lies at least one tick after the change, so the timer
//! already armed always fires first, and the deadline is still met exactly: once it is less
//! than a tick away, the timer is armed for it. A blocked write is the same: its deadline is
//! `send_timeout` (at least a tick) after it is noted, and noting it is one atomic store, done
//! only when a write first blocks.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head (or the first one, after accept) did not complete in time.
    Header,
    /// No request arrived on an idle connection.
    Idle,
    /// A write to the client made no progress for `send_timeout`.
    Send,
    /// An HTTP/1 connection has been idle for [`REST_AFTER`]: time to put hyper's state away.
    Rest,
    /// The client shut its side of the connection while a request was in flight (HTTP/1).
    Left,
}

/// How long an idle HTTP/1 connection keeps hyper's state (and its buffers) before it rests
/// (see the module docs). A client that sends its next request within it pays nothing; one that
/// comes back later pays for a new hyper connection state, a few microseconds, once.
pub const REST_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head { since: Instant },
    Busy { requests: usize },
    Idle { since: Instant },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// HTTP/2 connections carry control frames while idle, so reads do not start a head timer.
    h2: bool,
    /// The idle connection rests (hyper's state put away) until the client's next byte.
    rested: bool,
    /// The last request came with a body. hyper may still be reading (or giving up on) it
    /// after the response ended, and a connection taken apart then could leave its rest on
    /// the socket for the next request: such a connection never rests.
    body: bool,
}

/// The deadline state of one connection.
#[derive(Debug)]
pub struct ConnClock {
    state: Mutex<State>,
    header_timeout: Duration,
    idle_timeout: Duration,
    send_timeout: Duration,
    /// Where `write_blocked` counts from: when the clock was made.
    start: Instant,
    /// When the write that is blocked now first returned `Pending`, in nanoseconds after
    /// `start`, plus one; 0 while writes are not blocked. Outside `state`: it is read on every
    /// write, and an atomic load costs less than a lock.
    write_blocked: AtomicU64,
    /// Set while the connection task asks hyper to let go of an idle connection: hyper's
    /// shutdown of the socket then leaves it open ([`Watched`]), for the resting connection.
    keeps_socket: AtomicBool,
    /// The client's socket, looked at while an HTTP/1 request is in flight ([`Expiry::Left`]);
    /// -1 for none.
    client: AtomicI32,
}

impl ConnClock {
    /// A clock for a connection accepted now: a complete head is due within `header_timeout`.
    pub fn new(
        header_timeout: Duration,
        idle_timeout: Duration,
        send_timeout: Duration,
    ) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            send_timeout,
            start: Instant::now(),
            write_blocked: AtomicU64::new(0),
            keeps_socket: AtomicBool::new(false),
            client: AtomicI32::new(-1),
            state: Mutex::new(State {
                phase: Phase::Head {
                    since: Instant::now(),
                },
                h2: false,
                rested: false,
                body: false,
            }),
            header_timeout,
            idle_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, always consistent between statements.
        crate::lock::lock(&self.state)
    }

    /// Look at the client's socket `fd` while an HTTP/1 request is in flight, to end the
    /// connection when the client leaves ([`Expiry::Left`]). `fd` must stay open for as long
    /// as anyone polls [`expired`](Self::expired): the connection task, which owns the
    /// socket, is the only one that does.
    pub fn watch_client(&self, fd: RawFd) {
        self.client.store(fd, Ordering::Relaxed);
    }

    /// Whether the client shut its side while an HTTP/1 request is in flight. A client that
    /// sent more (a pipelined request) but is still there has not left.
    fn client_left(&self) -> bool {
        let fd = self.client.load(Ordering::Relaxed);
        if fd < 0 {
            return false;
        }
        {
            let s = self.lock();
            if s.h2 || !matches!(s.phase, Phase::Busy { .. }) {
                return false;
            }
        }
        peer_shut(fd)
    }

    /// The connection turned out to speak HTTP/2 ([`super::protocol::sniff`]).
    pub fn serving_http2(&self) {
        self.lock().h2 = true;
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        let mut s = self.lock();
        if let Phase::Idle { .. } = s.phase {
            if !s.h2 {
                s.phase = Phase::Head {
                    since: Instant::now(),
                };
                s.rested = false;
            }
        }
    }

    /// The connection tried to put hyper's state away ([`Expiry::Rest`]): no second try until
    /// the client's next byte.
    pub fn rested(&self) {
        self.lock().rested = true;
    }

    /// While set, a shutdown of the socket by hyper leaves it open (see [`Watched`]).
    pub fn keep_socket(&self, keep: bool) {
        self.keeps_socket.store(keep, Ordering::Relaxed);
    }

    /// A write (or flush) to the client returned: `Pending` (`blocked`), or made progress.
    fn on_write(&self, blocked: bool) {
        let since = self.write_blocked.load(Ordering::Relaxed);
        if blocked && since == 0 {
            let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.write_blocked.store(nanos + 1, Ordering::Relaxed);
        } else if !blocked && since != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }

    /// When the write blocked now will have made no progress for `send_timeout`.
    fn send_deadline(&self) -> Option<Instant> {
        match self.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            since => Some(self.start + Duration::from_nanos(since - 1) + self.send_timeout),
        }
    }

    /// hyper handed doorman a complete request head; `with_body`: not known to be empty.
    pub fn start_request(self: &Arc<Self>, with_body: bool) -> RequestGuard {
        let mut s = self.lock();
        s.body = with_body;
        s.phase = match s.phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Busy { requests: 1 },
        };
        RequestGuard {
            clock: Arc::clone(self),
        }
    }

    fn end_request(&self) {
        let mut s = self.lock();
        if let Phase::Busy { requests } = s.phase {
            s.phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
    }

    /// Whether this connection can rest at all ([`Expiry::Rest`]): HTTP/1, and an
    /// `idle_timeout` well beyond [`REST_AFTER`].
    fn rests(&self) -> bool {
        self.can_rest(&self.lock())
    }

    /// [`rests`](Self::rests), with the state already locked.
    fn can_rest(&self, s: &State) -> bool {
        !s.h2 && REST_AFTER * 2 <= self.idle_timeout
    }

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        let send = self.send_deadline();
        let s = self.lock();
        let phase = match s.phase {
            Phase::Head { since } => Some((since + self.header_timeout, Expiry::Header)),
            // Resting is worth it only well before the idle deadline, and only for HTTP/1
            // (hyper's HTTP/2 state cannot be taken apart); never with a write blocked (its
            // bytes are still in hyper's buffer).
            Phase::Idle { since }
                if send.is_none() && !s.rested && !s.body && self.can_rest(&s) =>
            {
                Some((since + REST_AFTER, Expiry::Rest))
            }
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
        };
        drop(s);
        match (phase, send) {
            (Some((at, expiry)), Some(send)) if at <= send => Some((at, expiry)),
            (_, Some(send)) => Some((send, Expiry::Send)),
            (phase, None) => phase,
        }
    }

    /// Resolves when the connection's current deadline passes.
    pub async fn expired(&self) -> Expiry {
        self.expired_every(true).await
    }

    /// [`expired`](Self::expired) for a resting connection: nothing can end a request while it
    /// rests, so it looks as seldom as a connection that never rests.
    pub async fn expired_resting(&self) -> Expiry {
        self.expired_every(false).await
    }

    async fn expired_every(&self, may_rest: bool) -> Expiry {
        // No phase change sets a deadline less than `tick` away (see the module docs).
        let tick = self
            .header_timeout
            .min(self.idle_timeout)
            .min(self.send_timeout)
            .max(Duration::from_millis(1));
        loop {
            // An HTTP/1 connection being served can go idle at any moment, and its rest is due
            // `REST_AFTER` after that: it looks once a second. A resting one (or HTTP/2) wakes
            // no more often than before.
            let tick = if may_rest && self.rests() {
                tick.min(REST_AFTER)
            } else {
                tick
            };
            let now = Instant::now();
            let wake = match self.deadline() {
                Some((at, expiry)) if at <= now => return expiry,
                Some((at, _)) => at.min(now + tick),
                None => now + tick,
            };
            tokio::time::sleep_until(wake).await;
            if self.client_left() {
                return Expiry::Left;
            }
        }
    }
}

/// Whether the peer of socket `fd` shut its sending side (or the connection failed), asked
/// without reading: `poll` for `POLLRDHUP`, which a FIN sets whatever data is still unread
/// (TLS's close_notify included). Linux only; elsewhere a client's leaving is seen when a
/// write to it fails.
#[cfg(target_os = "linux")]
fn peer_shut(fd: RawFd) -> bool {
    let mut probe = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `poll` reads and writes only `probe`, which outlives the call, and never blocks
    // (timeout 0). `fd` is the connection's own socket, open while its task polls the clock
    // ([`ConnClock::watch_client`]); a closed one answers `POLLNVAL`, which is not counted.
    let ready = unsafe { libc::poll(&mut probe, 1, 0) };
    ready == 1 && probe.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(not(target_os = "linux"))]
fn peer_shut(_fd: RawFd) -> bool {
    false
}

/// Held while one request is in flight; dropping it (response finished, or the client gone)
/// moves the clock on.
#[derive(Debug)]
pub struct RequestGuard {
    clock: Arc<ConnClock>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.clock.end_request();
    }
}

pin_project_lite::pin_project! {
    /// A client connection as hyper sees it: its reads are reported to its [`ConnClock`], and
    /// the bytes read before hyper took over ([`super::protocol::sniff`]) are read again first.
    pub struct Watched<S> {
        #[pin]
        io: S,
        clock: Arc<ConnClock>,
        replay: Bytes,
    }
}

impl<S> Watched<S> {
    pub fn new(io: S, clock: Arc<ConnClock>) -> Self {
        Watched {
            io,
            clock,
            replay: Bytes::new(),
        }
    }

    /// Give `bytes`, already read from the connection, to the next reads, before the socket's.
    pub fn replay(&mut self, bytes: Bytes) {
        debug_assert!(self.replay.is_empty(), "one replay at a time");
        self.replay = bytes;
    }

    /// Put `bytes` back in front of what the next reads return: bytes read from the connection
    /// but not consumed (hyper's read buffer, when its state is put away), which came before
    /// anything still waiting to be replayed.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            // Dropped, not kept: an empty `Bytes` can still own the buffer it was cut from
            // (hyper's 8 KiB read buffer, which resting is meant to free).
        } else if self.replay.is_empty() {
            self.replay = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.replay.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.replay);
            self.replay = joined.freeze();
        }
    }

    /// Whether bytes read from the connection wait to be read again.
    pub fn has_unread(&self) -> bool {
        !self.replay.is_empty()
    }
}

impl<S: Socket> Watched<S> {
    /// Resolves when the client sent something (or closed): without reading it, so nothing
    /// is allocated for it until it arrives.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.io.poll_read_ready(cx)).await
    }
}

/// A client connection's transport, which can tell when the client sent something without
/// reading it: a resting connection ([`Expiry::Rest`]) waits on this alone.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would not return `Pending` (data, the client's close, or an error).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Socket for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl<S: Socket> Socket for Box<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

impl Socket for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        if !tls.wants_read() {
            // Decrypted bytes wait in the TLS session already.
            return Poll::Ready(Ok(()));
        }
        // Bytes on the socket may be a TLS record without application data; then the read
        // after this finds nothing and the new hyper state waits as any idle one does.
        tcp.poll_read_ready(cx)
    }
}

impl<S: AsyncRead> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.replay.is_empty() {
            // Already reported to the clock when first read.
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                this.clock.on_read();
            }
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write(cx, buf);
        this.clock.on_write(polled.is_pending());
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.io.poll_write_vectored(cx, bufs);
        this.clock.on_write(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.io.poll_flush(cx);
        this.clock.on_write(polled.is_pending());
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.clock.keeps_socket.load(Ordering::Relaxed) {
            // hyper closing an idle connection so that it can rest: the socket stays open.
            return Poll::Ready(Ok(()));
        }
        let polled = this.io.poll_shutdown(cx);
        this.clock.on_write(polled.is_pending());
        polled
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its request's [`RequestGuard`] until hyper has finished
    /// sending it (or dropped it because the client left), so the connection's clock knows when
    /// the connection turns idle.
    pub struct Tracked {
        #[pin]
        inner: crate::body::Body,
        _guard: RequestGuard,
    }
}

impl Tracked {
    pub fn new(inner: crate::body::Body, guard: RequestGuard) -> Self {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, crate::body::BodyError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);
    const SEND: Duration = Duration::from_secs(20);

    /// A loopback connection: (client, server).
    async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    // Real time: the clock asks a real socket, once a tick (REST_AFTER).
    #[tokio::test]
    async fn a_busy_http1_connection_ends_when_its_client_leaves_and_only_then() {
        use std::os::fd::AsRawFd;
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = socket_pair().await;
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.watch_client(server.as_raw_fd());
        clock.on_read();
        let guard = clock.start_request(false);
        // Still there, a pipelined request unread on the socket: not gone.
        client
            .write_all(b"GET /next HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let waited = tokio::time::timeout(REST_AFTER * 3, clock.expired()).await;
        assert!(
            waited.is_err(),
            "a client still there was taken for gone: {waited:?}"
        );
        drop(client);
        let waited = tokio::time::timeout(REST_AFTER * 3, clock.expired()).await;
        assert_eq!(waited, Ok(Expiry::Left));
        // Between requests a client's leaving is hyper's to read: the clock only rests.
        drop(guard);
        assert_eq!(clock.expired().await, Expiry::Rest);
    }

    #[tokio::test]
    async fn http2_connections_are_not_looked_at() {
        use std::os::fd::AsRawFd;
        let (client, server) = socket_pair().await;
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.watch_client(server.as_raw_fd());
        clock.serving_http2();
        let _guard = clock.start_request(false);
        drop(client);
        let waited = tokio::time::timeout(REST_AFTER * 3, clock.expired()).await;
        assert!(
            waited.is_err(),
            "hyper's HTTP/2 reads find the client's leaving: {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_a_head_within_header_timeout() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        let start = Instant::now();
        assert_eq!(clock.expired().await, Expiry::Header);
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_have_no_deadline_and_idle_ones_get_idle_timeout() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        let guard = clock.start_request(false);
        let waiter = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { (clock.expired().await, Instant::now()) }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "a request in flight must not be cut");
        let idle_from = Instant::now();
        drop(guard);
        let (expiry, at) = waiter.await.unwrap();
        assert_eq!(expiry, Expiry::Rest);
        assert_eq!(at - idle_from, REST_AFTER);
        // Resting is once per idle spell; the idle deadline still counts from the response.
        clock.rested();
        assert_eq!(clock.expired().await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rested_connection_rests_again_only_after_its_next_request() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        drop(clock.start_request(false));
        assert_eq!(clock.expired().await, Expiry::Rest);
        clock.rested();
        clock.on_read(); // the next request's first byte
        assert_eq!(clock.expired().await, Expiry::Header);
        clock.on_read();
        drop(clock.start_request(false));
        let idle_from = Instant::now();
        assert_eq!(clock.expired().await, Expiry::Rest);
        assert_eq!(idle_from.elapsed(), REST_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_whose_last_request_had_a_body_does_not_rest() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        drop(clock.start_request(true));
        let idle_from = Instant::now();
        assert_eq!(clock.expired().await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
        // The next request, without one, makes it eligible again.
        clock.on_read();
        drop(clock.start_request(false));
        assert_eq!(clock.expired().await, Expiry::Rest);
    }

    #[tokio::test(start_paused = true)]
    async fn no_rest_with_a_write_blocked_or_a_short_idle_timeout() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        drop(clock.start_request(false));
        clock.on_write(true);
        let blocked_from = Instant::now();
        assert_eq!(clock.expired().await, Expiry::Send);
        assert_eq!(blocked_from.elapsed(), SEND);

        let short = ConnClock::new(HEAD, REST_AFTER, SEND);
        short.on_read();
        drop(short.start_request(false));
        assert_eq!(short.expired().await, Expiry::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_the_next_request_starts_the_header_clock() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        drop(clock.start_request(false));
        clock.rested();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let first_byte = Instant::now();
        clock.on_read();
        assert_eq!(clock.expired().await, Expiry::Header);
        assert_eq!(first_byte.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn h2_control_frames_do_not_turn_idle_into_header_wait() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.serving_http2();
        drop(clock.start_request(false));
        let idle_from = Instant::now();
        clock.on_read(); // a PING frame
        assert_eq!(clock.expired().await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_for_send_timeout_expires_even_mid_request() {
        let clock = ConnClock::new(HEAD, IDLE, SEND);
        clock.on_read();
        let _guard = clock.start_request(false);
        clock.on_write(true);
        tokio::time::sleep(SEND / 2).await;
        let blocked_from = Instant::now();
        // Still blocked: only the first `Pending` starts the clock...
        clock.on_write(true);
        tokio::time::sleep(SEND / 4).await;
        // ...and any progress stops it.
        clock.on_write(false);
        let waiter = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { (clock.expired().await, Instant::now()) }
        });
        tokio::time::sleep(SEND * 3).await;
        assert!(!waiter.is_finished(), "a write that progressed was cut");
        let blocked_again = Instant::now();
        clock.on_write(true);
        let (expiry, at) = waiter.await.unwrap();
        assert_eq!(expiry, Expiry::Send);
        assert_eq!(at - blocked_again, SEND);
        assert!(blocked_from < blocked_again);
    }
}
