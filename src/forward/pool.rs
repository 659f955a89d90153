//! Doorman's own upstream connection pool: HTTP/1.1 connections to the one upstream, kept per
//! worker, built directly on `hyper::client::conn::http1`.
//!
//! # Why not hyper-util's pooled client
//! That client serves any number of origins, so every request hashes a scheme+host key (three
//! times), clones the connector, and spawns one more task per HTTP/1 request that waits for the
//! connection to turn idle before putting it back. Doorman has one upstream and a pool per
//! worker, so none of that is needed: a pool here is a `Vec` behind an uncontended mutex.
//!
//! # What it guarantees
//! * A connection goes back to its worker's pool only when its response body was read to the
//!   end (the last data frame, the trailers, or an empty body). A body dropped early, an error,
//!   a `101 Switching Protocols`, or a connection found closed is never put back.
//! * A checkout never hands out a connection that is closed, not ready for a new request (so a
//!   request never waits behind another one's body), or idle for `pool_idle_timeout` or longer.
//!   The most recently used connection goes first (LIFO), so surplus connections age out.
//! * Idle connections are closed within about `pool_idle_timeout` even when traffic stops: a
//!   pool that turns non-empty arms a reaper task on its worker, which keeps running only while
//!   the pool holds connections.
//! * A request that could not be written on a *pooled* connection (it closed before anything
//!   was sent, so hyper hands the request back) is sent once more on a fresh connection.
//! * A request that may have reached the upstream is sent again only in the keep-alive race
//!   (DESIGN.md §14, as nginx's `proxy_next_upstream`): an idempotent method, no body, a pooled
//!   connection that sat idle at least [`REPLAY_AFTER_IDLE`], closed before any byte of a
//!   response. Then once, on a fresh connection. Anything else (a POST, a body, a connection in
//!   use a moment ago, a response begun) is never sent twice.
//!
//! Connection tasks are spawned on the caller's runtime (`tokio::spawn` from the request's
//! task), which is the worker the pool belongs to.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use tokio::time::Instant;
use tower_service::Service;
use tracing::debug;

use crate::error::BoxError;

/// A request body that can make an empty stand-in of itself: what lets the pool send an
/// idempotent request without a body again.
pub trait Replayable: Sized {
    /// An empty body of the same type when this one is empty (nothing to send); else `None`.
    fn replay(&self) -> Option<Self>;
}

/// How long a pooled connection must have been idle before a request sent on it keeps a copy
/// for a resend: the race with an upstream's keep-alive timer is on connections idle about as
/// long as that timer, never on ones in use a moment ago, and the copy (the head's headers)
/// is not free.
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// Why no response head came back: the one distinction [`super::Upstream`] maps to a status.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, timed out, TLS failed).
    Connect(BoxError),
    /// The connection broke, or the response was malformed, before a complete head arrived.
    Request(hyper::Error),
}

/// One pool per worker, all for the same upstream, reached through `connector`.
pub struct Pool<C, B> {
    connector: C,
    /// The upstream's scheme and authority, as the connector wants it.
    target: Uri,
    workers: Box<[Arc<Slot<B>>]>,
}

/// One worker's idle connections.
struct Slot<B> {
    idle: Mutex<Idle<B>>,
    idle_timeout: Duration,
    /// `pool_max_idle`: past this many, returning a connection closes the oldest idle one.
    max_idle: usize,
}

struct Idle<B> {
    /// Oldest first: pushed when returned, so `since` only grows along the `Vec`.
    conns: Vec<IdleConn<B>>,
    /// Whether a reaper task is watching this slot.
    reaping: bool,
}

struct IdleConn<B> {
    sender: SendRequest<B>,
    since: Instant,
}

impl<C, B> Pool<C, B>
where
    C: Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send,
    B: Body + Replayable + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool for each of `workers` workers; connections idle for `idle_timeout` are closed,
    /// and each worker keeps at most `max_idle` idle (a burst's surplus is closed as it
    /// returns, rather than held until it times out).
    pub fn new(
        connector: C,
        target: Uri,
        workers: usize,
        idle_timeout: Duration,
        max_idle: usize,
    ) -> Self {
        let workers = (0..workers.max(1))
            .map(|_| {
                Arc::new(Slot {
                    idle: Mutex::new(Idle {
                        conns: Vec::new(),
                        reaping: false,
                    }),
                    idle_timeout,
                    max_idle: max_idle.max(1),
                })
            })
            .collect();
        Pool {
            connector,
            target,
            workers,
        }
    }

    /// Send `req` (origin-form target, `Host` set) on a pooled connection of the calling
    /// worker, or a new one, and return the response head; its body hands the connection back
    /// when read to the end.
    ///
    /// The request comes boxed, and leaves its box only into hyper's own send: unboxed, this
    /// future would hold it (about 350 bytes) beside hyper's copy, and every request's future
    /// is sized with this one and moved with it. Not an `async fn`, for the same reason: one
    /// keeps its arguments twice in its state (as captured, and moved into a local on the first
    /// poll); the `async move` block uses the captured box where it lies.
    // Not `async fn` on purpose: see the doc comment (the arguments, held once).
    #[allow(clippy::manual_async_fn)]
    pub fn send(
        &self,
        req: Box<Request<B>>,
    ) -> impl Future<Output = Result<Response<PooledBody<B>>, SendError>> + Send + '_ {
        async move {
            let slot = &self.workers[crate::worker::current() % self.workers.len()];
            let (mut sender, idle_for) = match slot.checkout() {
                Some((sender, idle_for)) => (sender, Some(idle_for)),
                None => (self.connect().await?, None),
            };
            // An idempotent request without a body, on a connection that sat idle: keep a copy,
            // should the upstream close it as the request arrives (its keep-alive timer).
            let replay = match idle_for {
                // Boxed: only a connection that sat idle needs it, and unboxed its room would
                // be in every request's future.
                Some(idle) if idle >= REPLAY_AFTER_IDLE && is_idempotent(req.method()) => {
                    replay_of(&req).map(Box::new)
                }
                _ => None,
            };
            // The retries' future is made (boxed) in one match and awaited after it: a failed
            // send's error holds the whole request (about 350 bytes), and awaited inside the
            // match that took it apart, it would be kept through the retry, and this future
            // (in every request's) sized for it. Boxed: the retries' state (the failed request,
            // its copy, a second exchange) is larger than the common path's.
            let sent = match sender.try_send_request(*req).await {
                Ok(resp) => Ok(resp),
                Err(e) => Err(Box::pin(self.retry(e, idle_for.is_some(), replay))),
            };
            let (resp, sender) = match sent {
                Ok(resp) => (resp, sender),
                Err(retry) => retry.await?,
            };
            // A connection that switched protocols belongs to the tunnel now.
            let lease = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease {
                sender,
                slot: Arc::clone(slot),
            });
            Ok(resp.map(|incoming| PooledBody::new(incoming, lease)))
        }
    }

    /// After `try_send_request` failed on a connection (pooled when `pooled`): send again on a
    /// new connection when that is safe, else the error.
    async fn retry(
        &self,
        mut e: TrySendError<Request<B>>,
        pooled: bool,
        replay: Option<Box<Request<B>>>,
    ) -> Result<(Response<Incoming>, SendRequest<B>), SendError> {
        let again = match (e.take_message(), replay) {
            // Nothing was written: the pooled connection closed under us. Safe to resend,
            // whatever the method.
            (Some(req), _) if pooled => {
                debug!(error = %e.error(), "pooled upstream connection closed before use; retrying on a new one");
                req
            }
            // Written, and the connection closed before any response byte: as nginx's
            // proxy_next_upstream, an idempotent bodiless request goes once more, on a new
            // connection.
            (None, Some(again)) if e.error().is_incomplete_message() => {
                debug!(error = %e.error(), "pooled upstream connection closed before answering; resending an idempotent request on a new one");
                *again
            }
            _ => return Err(SendError::Request(e.into_error())),
        };
        let mut sender = self.connect().await?;
        let resp = sender
            .try_send_request(again)
            .await
            .map_err(|e| SendError::Request(e.into_error()))?;
        Ok((resp, sender))
    }

    /// A new connection, its task spawned on the caller's runtime (with upgrades, so a `101`
    /// hands the socket over). Boxed: its state (the connector's and the handshake's futures,
    /// 1.3 KB) would otherwise be part of every request's future, and be moved with it,
    /// although only a pool miss needs it.
    fn connect(&self) -> Pin<Box<impl Future<Output = Result<SendRequest<B>, SendError>> + '_>> {
        Box::pin(async move {
            let mut connector = self.connector.clone();
            std::future::poll_fn(|cx| connector.poll_ready(cx))
                .await
                .map_err(|e| SendError::Connect(e.into()))?;
            let io = connector
                .call(self.target.clone())
                .await
                .map_err(|e| SendError::Connect(e.into()))?;
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| SendError::Connect(Box::new(e)))?;
            tokio::spawn(Driven(conn.with_upgrades()));
            Ok(sender)
        })
    }
}

/// An upstream connection's task: hyper's connection state, polled to its end, its error
/// logged. A named future, not an `async` block: the block would hold the connection twice
/// (as the value it captured and as the future it awaits, 1,744 bytes each), and each pooled
/// connection's task is allocated at its largest state for as long as the connection lives.
struct Driven<F>(F);

impl<F: Future<Output = hyper::Result<()>> + Unpin> Future for Driven<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(error)) => {
                debug!(%error, "upstream connection ended with an error");
                Poll::Ready(())
            }
        }
    }
}

/// RFC 9110 §9.2.2: methods whose request may be sent twice with the effect of once.
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// A copy of `req` to send again, when its body is empty (see [`Replayable`]).
fn replay_of<B: Replayable>(req: &Request<B>) -> Option<Request<B>> {
    let body = req.body().replay()?;
    let mut again = Request::new(body);
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    Some(again)
}

fn lock<B>(idle: &Mutex<Idle<B>>) -> MutexGuard<'_, Idle<B>> {
    // Nothing panics while holding it; if something did, the `Vec` is still whole.
    crate::lock::lock(idle)
}

impl<B: Send + 'static> Slot<B> {
    /// The most recently returned connection that is open, ready and not expired, and how long
    /// it sat idle. Expired and closed ones met on the way are dropped; ones not ready yet
    /// (still finishing a response) stay for a later checkout.
    fn checkout(&self) -> Option<(SendRequest<B>, Duration)> {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        let conns = &mut idle.conns;
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            if conns[i].since + self.idle_timeout <= now {
                // This one and every older one below it have expired.
                conns.drain(..=i);
                return None;
            }
            if conns[i].sender.is_closed() {
                conns.remove(i);
            } else if conns[i].sender.is_ready() {
                let conn = conns.remove(i);
                return Some((conn.sender, now.saturating_duration_since(conn.since)));
            }
        }
        None
    }

    /// Put a connection whose response was read to the end back, and make sure a reaper
    /// watches the pool.
    fn checkin(self: &Arc<Self>, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let arm = {
            let mut idle = lock(&self.idle);
            idle.conns.push(IdleConn {
                sender,
                since: Instant::now(),
            });
            if idle.conns.len() > self.max_idle {
                // The oldest goes (dropping its sender closes it): LIFO would use it last.
                idle.conns.remove(0);
            }
            !std::mem::replace(&mut idle.reaping, true)
        };
        if arm {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(Arc::clone(self).reap());
                }
                // No runtime to reap on (not reachable from a request): keep nothing idle.
                Err(_) => {
                    let mut idle = lock(&self.idle);
                    idle.conns.clear();
                    idle.reaping = false;
                }
            }
        }
    }

    /// Close idle connections as they expire; stop once the pool is empty (the next checkin
    /// arms a new reaper). One timer per worker at most, and none while nothing is idle.
    async fn reap(self: Arc<Self>) {
        let mut wake = Instant::now() + self.idle_timeout;
        loop {
            tokio::time::sleep_until(wake).await;
            let now = Instant::now();
            let (expired, next) = {
                let mut idle = lock(&self.idle);
                let live = idle
                    .conns
                    .iter()
                    .position(|c| c.since + self.idle_timeout > now)
                    .unwrap_or(idle.conns.len());
                let expired: Vec<IdleConn<B>> = idle.conns.drain(..live).collect();
                idle.conns.retain(|c| !c.sender.is_closed());
                let next = idle.conns.first().map(|c| c.since + self.idle_timeout);
                idle.reaping = next.is_some();
                (expired, next)
            };
            // Dropping a sender closes its connection; done outside the lock.
            drop(expired);
            match next {
                Some(next) => wake = next,
                None => return,
            }
        }
    }
}

/// A connection lent to one request: returned to `slot` when the response has been read.
struct Lease<B> {
    sender: SendRequest<B>,
    slot: Arc<Slot<B>>,
}

impl<B: Send + 'static> Lease<B> {
    fn release(self) {
        self.slot.checkin(self.sender);
    }
}

pin_project_lite::pin_project! {
    /// The upstream's response body, streamed as is; it returns the connection to the pool
    /// when its end has been read, and closes it (by dropping it) otherwise.
    pub struct PooledBody<B> {
        #[pin]
        inner: Incoming,
        lease: Option<Lease<B>>,
    }
}

impl<B: Send + 'static> PooledBody<B> {
    fn new(inner: Incoming, lease: Option<Lease<B>>) -> Self {
        // An empty body (204, 304, HEAD, `Content-Length: 0`) is never polled: done already.
        let lease = match lease {
            Some(lease) if inner.is_end_stream() => {
                lease.release();
                None
            }
            lease => lease,
        };
        PooledBody { inner, lease }
    }
}

impl<B: Send + 'static> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            None => true,
            // hyper stops polling after trailers, or once `is_end_stream` says the length is met.
            Some(Ok(frame)) => frame.is_trailers() || this.inner.is_end_stream(),
            Some(Err(_)) => {
                this.lease.take();
                false
            }
        };
        if ended {
            if let Some(lease) = this.lease.take() {
                lease.release();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    //! The pool against an in-memory upstream (`tokio::io::duplex`), so a test decides exactly
    //! when the upstream's side of a connection closes relative to doorman's next request.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::mpsc;

    use super::*;

    /// A connector whose every connection is an in-memory pipe; the upstream's ends arrive on
    /// a channel, in connect order.
    #[derive(Clone)]
    struct Pipes {
        upstream_ends: mpsc::UnboundedSender<DuplexStream>,
        connects: Arc<AtomicUsize>,
    }

    impl Service<Uri> for Pipes {
        type Response = TokioIo<DuplexStream>;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            self.connects.fetch_add(1, Ordering::SeqCst);
            let sent = self.upstream_ends.send(theirs);
            std::future::ready(
                sent.map(|()| TokioIo::new(ours))
                    .map_err(|_| std::io::Error::other("test upstream gone")),
            )
        }
    }

    type TestPool = Pool<Pipes, Empty<Bytes>>;

    impl Replayable for Empty<Bytes> {
        fn replay(&self) -> Option<Self> {
            Some(Empty::new())
        }
    }

    fn pool() -> (
        TestPool,
        mpsc::UnboundedReceiver<DuplexStream>,
        Arc<AtomicUsize>,
    ) {
        pool_with(Duration::from_secs(60), 64)
    }

    /// A one-worker pool over in-memory pipes, with these `pool_idle_timeout` and
    /// `pool_max_idle`: the pool, the upstream ends of its connections, and its connect count.
    fn pool_with(
        idle_timeout: Duration,
        max_idle: usize,
    ) -> (
        TestPool,
        mpsc::UnboundedReceiver<DuplexStream>,
        Arc<AtomicUsize>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let connects = Arc::new(AtomicUsize::new(0));
        let pipes = Pipes {
            upstream_ends: tx,
            connects: Arc::clone(&connects),
        };
        let target = Uri::from_static("http://upstream.test/");
        (
            Pool::new(pipes, target, 1, idle_timeout, max_idle),
            rx,
            connects,
        )
    }

    fn post(path: &'static str) -> Request<Empty<Bytes>> {
        Request::post(path)
            .header(http::header::HOST, "upstream.test")
            .body(Empty::new())
            .expect("request")
    }

    fn get(path: &'static str) -> Request<Empty<Bytes>> {
        Request::get(path)
            .header(http::header::HOST, "upstream.test")
            .body(Empty::new())
            .expect("request")
    }

    /// Read one request head off the upstream's end; false at EOF.
    async fn read_head(io: &mut DuplexStream) -> bool {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match io.read(&mut byte).await {
                Ok(1) => buf.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// `fut`, or a failure instead of a hang when the pool went a way the test did not expect.
    async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("stuck: the pool used another connection than the test expected")
    }

    /// Send `req` while the upstream end `io` reads its head and writes `answer`.
    async fn exchange(
        pool: &TestPool,
        req: Request<Empty<Bytes>>,
        io: &mut DuplexStream,
        answer: &[u8],
    ) -> Result<Response<PooledBody<Empty<Bytes>>>, SendError> {
        let upstream = async {
            assert!(read_head(io).await, "the upstream saw no request");
            io.write_all(answer).await.expect("write answer");
        };
        let (resp, ()) = within(async { tokio::join!(pool.send(Box::new(req)), upstream) }).await;
        resp
    }

    /// Send `req` while the upstream takes a *new* connection, reads the head and answers
    /// [`OK`]; the response, and the upstream's end of that connection.
    async fn exchange_on_a_new_connection(
        pool: &TestPool,
        req: Request<Empty<Bytes>>,
        ends: &mut mpsc::UnboundedReceiver<DuplexStream>,
    ) -> (
        Result<Response<PooledBody<Empty<Bytes>>>, SendError>,
        DuplexStream,
    ) {
        let upstream = async {
            let mut io = ends.recv().await.expect("a new connection");
            assert!(read_head(&mut io).await, "the upstream saw no request");
            io.write_all(OK).await.expect("write answer");
            io
        };
        within(async { tokio::join!(pool.send(Box::new(req)), upstream) }).await
    }

    fn idle_count(pool: &TestPool) -> usize {
        lock(&pool.workers[0].idle).conns.len()
    }

    /// Read the first exchange to its end, so its connection is back in the pool.
    async fn first_exchange(
        pool: &TestPool,
        ends: &mut mpsc::UnboundedReceiver<DuplexStream>,
    ) -> DuplexStream {
        let (resp, io) = exchange_on_a_new_connection(pool, get("/first"), ends).await;
        let body = resp.expect("response").into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes(), "ok");
        assert_eq!(idle_count(pool), 1, "read to its end: pooled");
        io
    }

    /// The legacy client's `retry_canceled_requests`: the upstream closed an idle pooled
    /// connection and doorman had not noticed yet when it picked it. hyper hands the unsent
    /// request back, and the pool sends it on a new connection instead of failing it.
    #[tokio::test]
    async fn a_request_hyper_could_not_write_on_a_pooled_connection_goes_out_on_a_new_one() {
        let (pool, mut ends, connects) = pool();
        let first = first_exchange(&pool, &mut ends).await;
        // The upstream closes; the connection's task has not run since, so it still looks open.
        drop(first);
        let (resp, _io) = exchange_on_a_new_connection(&pool, get("/second"), &mut ends).await;
        let resp = resp.expect("retried on a new connection, not failed");
        assert_eq!(resp.status(), 200);
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }

    /// A request the upstream may have received on a connection in use a moment ago (no
    /// keep-alive race) is never sent twice.
    #[tokio::test]
    async fn a_request_that_reached_the_upstream_is_not_retried() {
        let (pool, mut ends, connects) = pool();
        let mut first = first_exchange(&pool, &mut ends).await;
        let upstream = async {
            assert!(read_head(&mut first).await, "the request went out");
            drop(first);
        };
        let (resp, ()) =
            within(async { tokio::join!(pool.send(Box::new(get("/second"))), upstream) }).await;
        let resp = resp.map(|r| r.status());
        assert!(matches!(resp, Err(SendError::Request(_))), "{resp:?}");
        assert_eq!(connects.load(Ordering::SeqCst), 1, "no second attempt");
    }

    /// A body dropped before its end leaves its connection out of the pool, even when hyper
    /// could have drained the rest: what state it is in is not the pool's guess to make.
    #[tokio::test]
    async fn a_response_dropped_before_its_end_does_not_return_its_connection() {
        let (pool, mut ends, connects) = pool();
        let mut io = first_exchange(&pool, &mut ends).await;
        let resp = exchange(
            &pool,
            get("/half"),
            &mut io,
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        )
        .await
        .expect("response");
        let mut body = resp.into_body();
        let frame = body.frame().await.expect("a frame").expect("data");
        assert_eq!(frame.into_data().expect("data"), "hello");
        // The rest arrives, then the reader walks away.
        io.write_all(b"world").await.expect("write rest");
        drop(body);
        tokio::task::yield_now().await;
        assert_eq!(idle_count(&pool), 0);

        let (resp, _io) = exchange_on_a_new_connection(&pool, get("/next"), &mut ends).await;
        let body = resp.expect("response").into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes(), "ok");
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }

    /// A `101` connection belongs to the tunnel: it never goes back to the pool.
    #[tokio::test]
    async fn a_connection_that_switched_protocols_is_not_pooled() {
        let (pool, mut ends, _) = pool();
        let mut io = first_exchange(&pool, &mut ends).await;
        let resp = exchange(
            &pool,
            get("/ws"),
            &mut io,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .expect("response");
        assert_eq!(resp.status(), 101);
        assert!(resp.body().is_end_stream());
        assert_eq!(idle_count(&pool), 0);
    }

    /// Checkout order and expiry: the most recently returned connection first, and none idle
    /// for `pool_idle_timeout`.
    #[tokio::test(start_paused = true)]
    async fn checkout_is_lifo_and_skips_expired_connections() {
        let (pool, mut ends, _) = pool_with(Duration::from_secs(4), 64);
        let mut older = first_exchange(&pool, &mut ends).await;
        tokio::time::advance(Duration::from_secs(2)).await;
        // A second connection, made while the first is busy, returned later.
        let busy = pool.workers[0].checkout().expect("the first connection").0;
        let _newer = first_exchange(&pool, &mut ends).await;
        pool.workers[0].checkin(busy);
        assert_eq!(idle_count(&pool), 2);
        // LIFO: the one returned last (the first connection) answers.
        let resp = exchange(&pool, get("/lifo"), &mut older, OK).await;
        let body = resp.expect("response").into_body().collect().await;
        assert_eq!(body.expect("body").to_bytes(), "ok");
        // 4 s after the second connection was returned, it has expired: a checkout drops it.
        tokio::time::advance(Duration::from_secs(4)).await;
        let stale = pool.workers[0].checkout();
        assert!(stale.is_none(), "an expired connection was handed out");
        assert_eq!(idle_count(&pool), 0);
    }

    /// `pool_max_idle`: a connection returned to a full pool closes the oldest idle one.
    #[tokio::test]
    async fn a_full_pool_closes_its_oldest_idle_connection() {
        let (pool, mut ends, _) = pool_with(Duration::from_secs(60), 2);
        let mut first = first_exchange(&pool, &mut ends).await;
        // Two more connections, made while the others are checked out, all returned.
        let a = pool.workers[0].checkout().expect("the first connection").0;
        let _second = first_exchange(&pool, &mut ends).await;
        let b = pool.workers[0].checkout().expect("the second connection").0;
        let mut third = first_exchange(&pool, &mut ends).await;
        pool.workers[0].checkin(b);
        assert_eq!(idle_count(&pool), 2);
        pool.workers[0].checkin(a);
        assert_eq!(idle_count(&pool), 2, "never more than pool_max_idle");
        // The oldest idle one (the third connection, returned first) is closed; the first
        // connection, returned last, is not.
        let mut byte = [0u8; 1];
        let closed = within(third.read(&mut byte)).await;
        assert_eq!(
            closed.ok(),
            Some(0),
            "the oldest idle connection was closed"
        );
        let open = tokio::time::timeout(Duration::from_millis(100), first.read(&mut byte)).await;
        assert!(open.is_err(), "the newest idle connection stays open");
    }

    /// The keep-alive race: the upstream reads a request on a connection that sat idle and
    /// closes it unanswered (its keep-alive timer fired). A GET goes once more, on a new
    /// connection; a POST does not.
    #[tokio::test]
    async fn an_idempotent_request_dropped_unanswered_is_sent_once_more() {
        let (pool, mut ends, connects) = pool();
        for (req, resent) in [(get("/again"), true), (post("/once"), false)] {
            let mut idle = first_exchange(&pool, &mut ends).await;
            tokio::time::sleep(REPLAY_AFTER_IDLE + Duration::from_millis(50)).await;
            let before = connects.load(std::sync::atomic::Ordering::SeqCst);
            let upstream = async {
                assert!(
                    read_head(&mut idle).await,
                    "the request reached the idle connection"
                );
                drop(idle);
                if !resent {
                    return None;
                }
                let mut io = ends.recv().await.expect("a new connection");
                assert!(read_head(&mut io).await);
                io.write_all(OK).await.expect("answer");
                Some(io)
            };
            let (resp, _io) =
                within(async { tokio::join!(pool.send(Box::new(req)), upstream) }).await;
            let after = connects.load(std::sync::atomic::Ordering::SeqCst);
            if resent {
                assert_eq!(resp.expect("answered on a new connection").status(), 200);
                assert_eq!(after, before + 1);
            } else {
                assert!(resp.is_err(), "a POST is never sent twice");
                assert_eq!(after, before);
            }
        }
    }
}
