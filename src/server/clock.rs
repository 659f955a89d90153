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
//! The clock is always in one of three phases: waiting for a head (deadline: `header_timeout`
//! after accept, or after the first byte of the next request), busy (no deadline: the upstream
//! `timeout` and the client govern), or idle (deadline: `idle_timeout` after the last response).
//! The connection task races [`ConnClock::expired`] against hyper's connection future.
//!
//! Phase changes happen twice or three times per request, so they only write the state: they
//! wake nobody and arm no timer. [`ConnClock::expired`] instead never sleeps longer than the
//! shorter of the two timeouts (its *tick*) before looking again. Every deadline a phase change
//! can set lies at least one tick after the change, so the timer already armed always fires
//! first, and the deadline is still met exactly: once it is less than a tick away, the timer is
//! armed for it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head (or the first one, after accept) did not complete in time.
    Header,
    /// No request arrived on an idle connection.
    Idle,
}

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
}

/// The deadline state of one connection.
#[derive(Debug)]
pub struct ConnClock {
    state: Mutex<State>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl ConnClock {
    /// A clock for a connection accepted now: a complete head is due within `header_timeout`.
    pub fn new(header_timeout: Duration, idle_timeout: Duration) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            state: Mutex::new(State {
                phase: Phase::Head {
                    since: Instant::now(),
                },
                h2: false,
            }),
            header_timeout,
            idle_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data, always consistent between statements; a panic elsewhere
        // cannot leave it half-written, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            }
        }
    }

    /// hyper handed doorman a complete request head.
    pub fn start_request(self: &Arc<Self>) -> RequestGuard {
        let mut s = self.lock();
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

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        match self.lock().phase {
            Phase::Head { since } => Some((since + self.header_timeout, Expiry::Header)),
            Phase::Idle { since } => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves when the connection's current deadline passes.
    pub async fn expired(&self) -> Expiry {
        // No phase change sets a deadline less than `tick` away (see the module docs).
        let tick = self
            .header_timeout
            .min(self.idle_timeout)
            .max(Duration::from_millis(1));
        loop {
            let now = Instant::now();
            let wake = match self.deadline() {
                Some((at, expiry)) if at <= now => return expiry,
                Some((at, _)) => at.min(now + tick),
                None => now + tick,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
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
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_owes_a_head_within_header_timeout() {
        let clock = ConnClock::new(HEAD, IDLE);
        let start = Instant::now();
        assert_eq!(clock.expired().await, Expiry::Header);
        assert_eq!(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_have_no_deadline_and_idle_ones_get_idle_timeout() {
        let clock = ConnClock::new(HEAD, IDLE);
        clock.on_read();
        let guard = clock.start_request();
        let waiter = tokio::spawn({
            let clock = Arc::clone(&clock);
            async move { (clock.expired().await, Instant::now()) }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiter.is_finished(), "a request in flight must not be cut");
        let idle_from = Instant::now();
        drop(guard);
        let (expiry, at) = waiter.await.unwrap();
        assert_eq!(expiry, Expiry::Idle);
        assert_eq!(at - idle_from, IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_of_the_next_request_starts_the_header_clock() {
        let clock = ConnClock::new(HEAD, IDLE);
        clock.on_read();
        drop(clock.start_request());
        tokio::time::sleep(Duration::from_secs(30)).await;
        let first_byte = Instant::now();
        clock.on_read();
        assert_eq!(clock.expired().await, Expiry::Header);
        assert_eq!(first_byte.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn h2_control_frames_do_not_turn_idle_into_header_wait() {
        let clock = ConnClock::new(HEAD, IDLE);
        clock.serving_http2();
        drop(clock.start_request());
        let idle_from = Instant::now();
        clock.on_read(); // a PING frame
        assert_eq!(clock.expired().await, Expiry::Idle);
        assert_eq!(idle_from.elapsed(), IDLE);
    }
}
