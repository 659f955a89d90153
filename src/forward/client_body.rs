//! The client's request body on its way upstream, and the deadlines that depend on it
//! (DESIGN.md §14, §3 `body_timeout`, `[upstream] timeout`).
//!
//! * **`body_timeout`** runs only while doorman waits on the *client*: the upstream side polled
//!   [`ClientBody`] and the client had nothing for it. A client that stops sending mid-body
//!   fails the upstream request with [`BodyError::Stalled`], which the caller finds in the error
//!   chain ([`client_fault`]) and answers `408` (or, once a response has started, the exchange
//!   is cut). While the upstream does not poll (its socket is full), the client is not to blame
//!   and no body timer runs.
//! * **`[upstream] timeout`** bounds the upstream's own delays: from the end of the request
//!   body to the response head, and, while a body is still in flight, how long the upstream may
//!   leave a body frame untaken. A slow but progressing upload is governed by `body_timeout`
//!   alone ([`Progress`], [`head_within`]). A request without a body waits under a plain
//!   timeout: no shared state is allocated for it.
//! * **Malformed chunked bodies** (a bad chunk size, data longer than its chunk, more than hyper's
//!   16 KiB of chunk extensions) are a client error: `400`, not the `502` an upstream failure
//!   gets. So that the usual probes never reach the upstream at all, a chunked body is
//!   [prefetched](ClientBody::prefetch) before the request is forwarded: its first frame (under
//!   `body_timeout`) and whatever further frames are already available, up to
//!   [`PREFETCH_BYTES`]. A malformed chunk that arrives later, after the head went upstream,
//!   aborts the upstream request: `400` if no response has started, else the client connection
//!   is cut (h2: the stream is reset).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::error::ProxyError;
use crate::timer::{self, Kept, Lent};

/// The most body data taken ahead of forwarding a chunked request: enough for the usual form
/// or JSON body to arrive whole (so a malformed one is refused before the upstream sees it),
/// small enough that thousands of uploads in flight cost little.
pub const PREFETCH_BYTES: usize = 64 * 1024;

/// The most frames taken ahead: one-byte chunks would otherwise cost a frame each.
const PREFETCH_FRAMES: usize = 256;

/// Why the client's body failed the upstream request.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream waited for body bytes and the client sent none for this long.
    #[error("no request body bytes for {0:?}")]
    Stalled(Duration),
    /// The client's body could not be read: a malformed chunk, or the client went away.
    #[error("client request body: {0}")]
    Client(#[source] hyper::Error),
}

/// The cause to answer with when the upstream request failed because of the client's body, or
/// `e` back for a failure of the upstream's own. `e` is the upstream client's error, whose
/// source chain holds the [`BodyError`] the body returned, if it was the body.
pub fn client_fault(e: hyper::Error) -> Result<ProxyError, hyper::Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut stalled = None;
    while let Some(err) = cause {
        if let Some(body) = err.downcast_ref::<BodyError>() {
            stalled = Some(match body {
                BodyError::Stalled(after) => Some(*after),
                BodyError::Client(_) => None,
            });
            break;
        }
        cause = err.source();
    }
    match stalled {
        Some(Some(after)) => Ok(ProxyError::BodyStalled(after)),
        // The chain (hyper's "user body" error around the client's) goes to the log.
        Some(None) => Ok(ProxyError::BadRequestBody(Box::new(e))),
        None => Err(e),
    }
}

/// What the request body has been doing, shared between [`ClientBody`] (which the upstream
/// connection polls) and [`head_within`] (which waits for the response head).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    /// Microseconds from `start` to the last moment the body moved (a frame handed upstream,
    /// or its end), with [`WAITING`] set while the upstream is waiting on the client. One word,
    /// so the reader always sees a consistent pair.
    state: AtomicU64,
}

/// Set in [`Progress::state`] while the upstream waits for client bytes.
const WAITING: u64 = 1 << 63;

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            state: AtomicU64::new(0),
        }
    }

    fn moved(&self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(WAITING - 1);
        self.state.store(micros.min(WAITING - 1), Ordering::Release);
    }

    fn waiting_on_client(&self) {
        self.state.fetch_or(WAITING, Ordering::AcqRel);
    }

    /// When the upstream is overdue, if nothing moves before then; `None` while it waits on
    /// the client (whose delays `body_timeout` governs).
    fn upstream_deadline(&self, timeout: Duration) -> Option<Instant> {
        let state = self.state.load(Ordering::Acquire);
        (state & WAITING == 0).then(|| self.start + Duration::from_micros(state) + timeout)
    }
}

thread_local! {
    /// This worker's timers for [`head_within`] (`crate::timer`): each is set `[upstream]
    /// timeout` from its request's start, so a lent one moves later, except when a request
    /// body's progress sets an earlier deadline (tokio then files it again, as a new timer).
    static TIMERS: Kept = const { Kept::new() };
}

/// Wait for `send` (the upstream's response head) under `[upstream] timeout`; `None` if the
/// upstream took too long. Without `progress` (no body in flight) this is a plain timeout;
/// with it, the timeout counts only the upstream's time (see the module docs). On a worker,
/// the timer is one the worker keeps (`crate::timer`), given back when the future is dropped.
///
/// A future of its own rather than an `async fn`: an `async fn` keeps its argument `send` and
/// the timeout wrapped around it as two fields, so every request's state carried the upstream
/// exchange twice (3.8 KB each), and moved both with it.
pub fn head_within<F: Future>(
    timeout: Duration,
    progress: Option<Arc<Progress>>,
    send: F,
) -> HeadWithin<F> {
    let wake = progress
        .as_deref()
        .and_then(|p| p.upstream_deadline(timeout))
        .unwrap_or_else(|| Instant::now() + timeout);
    HeadWithin {
        send,
        sleep: timer::lend(&TIMERS, wake),
        timeout,
        progress,
    }
}

pin_project_lite::pin_project! {
    /// [`head_within`]'s future.
    pub struct HeadWithin<F> {
        #[pin]
        send: F,
        // Given back to the worker's timers when the future is dropped.
        sleep: Lent,
        timeout: Duration,
        progress: Option<Arc<Progress>>,
    }
}

impl<F: Future> Future for HeadWithin<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let had_budget = tokio::task::coop::has_budget_remaining();
        if let Poll::Ready(out) = this.send.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let sleep = this.sleep;
        loop {
            if sleep.poll_after(cx, had_budget).is_pending() {
                return Poll::Pending;
            }
            let Some(progress) = this.progress.as_deref() else {
                return Poll::Ready(None);
            };
            // While the client is the one being waited for, look again a `timeout` later: a
            // body that moves or ends in between sets a deadline at least that far away.
            let now = Instant::now();
            let wake = match progress.upstream_deadline(*this.timeout) {
                Some(at) if at <= now => return Poll::Ready(None),
                Some(at) => at,
                None => now + *this.timeout,
            };
            sleep.reset(wake);
        }
    }
}

pin_project_lite::pin_project! {
    /// The client's `Incoming` body as the upstream reads it: frames taken ahead by
    /// [`prefetch`](ClientBody::prefetch) first, then the rest as it arrives, under
    /// `body_timeout` while the upstream waits for it.
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        ahead: VecDeque<Frame<Bytes>>,
        // `inner` has yielded its last frame (or an error): nothing more to poll.
        ended: bool,
        timeout: Duration,
        // Armed when the upstream starts waiting on the client; created on first use, so a
        // request without a body never touches the timer. Boxed: every request's future
        // carries a `ClientBody`, and an inline `Sleep` would triple its size.
        stall: Option<Pin<Box<Sleep>>>,
        waiting: bool,
        progress: Option<Arc<Progress>>,
    }
}

impl ClientBody {
    /// `inner` with `body_timeout` = `timeout`.
    pub fn new(inner: Incoming, timeout: Duration) -> ClientBody {
        ClientBody {
            ended: inner.is_end_stream(),
            inner,
            ahead: VecDeque::new(),
            timeout,
            stall: None,
            waiting: false,
            progress: None,
        }
    }

    /// Whether the body still has to be sent: the upstream timeout then needs its
    /// [`Progress`]. `None` (and nothing allocated) for a body already complete.
    pub fn track(&mut self) -> Option<Arc<Progress>> {
        if self.ended && self.ahead.is_empty() {
            return None;
        }
        let progress = Arc::new(Progress::new());
        self.progress = Some(Arc::clone(&progress));
        Some(progress)
    }

    /// Take the body's first frame (waiting at most `body_timeout`) and whatever further frames
    /// are already available without waiting, up to [`PREFETCH_BYTES`]; they are sent first
    /// when the body is forwarded. An error among them is the client's: `400`, and the request
    /// is never forwarded.
    pub async fn prefetch(&mut self) -> Result<(), ProxyError> {
        if self.ended {
            return Ok(());
        }
        let mut next = match tokio::time::timeout(self.timeout, self.inner.frame()).await {
            Err(_) => return Err(ProxyError::BodyStalled(self.timeout)),
            Ok(frame) => frame,
        };
        let mut bytes = 0;
        loop {
            match next {
                None => {
                    self.ended = true;
                    return Ok(());
                }
                Some(Err(e)) => return Err(ProxyError::BadRequestBody(Box::new(e))),
                Some(Ok(frame)) => {
                    bytes += frame.data_ref().map_or(0, Bytes::len);
                    let last = frame.is_trailers() || self.inner.is_end_stream();
                    self.ahead.push_back(frame);
                    if last {
                        self.ended = true;
                        return Ok(());
                    }
                }
            }
            if bytes >= PREFETCH_BYTES || self.ahead.len() >= PREFETCH_FRAMES {
                return Ok(());
            }
            // hyper's HTTP/1 connection decodes the next frame only once this one was taken,
            // in the same task: let it run once, so bytes already received (a malformed chunk
            // right behind a good one) are seen, but never wait for the network.
            next = match poll_once(&mut self.inner).await {
                Some(frame) => frame,
                None => {
                    tokio::task::yield_now().await;
                    match poll_once(&mut self.inner).await {
                        Some(frame) => frame,
                        None => return Ok(()),
                    }
                }
            };
        }
    }
}

type Polled = Option<Result<Frame<Bytes>, hyper::Error>>;

/// Poll `body` once: `None` if no frame is ready.
async fn poll_once(body: &mut Incoming) -> Option<Polled> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => Some(frame),
            Poll::Pending => None,
        })
    })
    .await
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        if let Some(frame) = this.ahead.pop_front() {
            if let Some(progress) = this.progress {
                progress.moved();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                let frame = match frame {
                    None => {
                        *this.ended = true;
                        None
                    }
                    Some(Ok(frame)) => {
                        *this.ended = frame.is_trailers() || this.inner.is_end_stream();
                        Some(Ok(frame))
                    }
                    Some(Err(e)) => {
                        *this.ended = true;
                        Some(Err(BodyError::Client(e)))
                    }
                };
                if let Some(progress) = this.progress {
                    progress.moved();
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if !*this.waiting {
                    *this.waiting = true;
                    let at = Instant::now() + *this.timeout;
                    match this.stall {
                        Some(stall) => stall.as_mut().reset(at),
                        None => *this.stall = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                    if let Some(progress) = this.progress {
                        progress.waiting_on_client();
                    }
                }
                match this.stall.as_mut().map(|stall| stall.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        *this.ended = true;
                        Poll::Ready(Some(Err(BodyError::Stalled(*this.timeout))))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.ahead.is_empty() {
            return self.inner.size_hint();
        }
        // The whole body taken ahead, without trailers: its length is known.
        if self.ended && self.ahead.iter().all(Frame::is_data) {
            let len = self
                .ahead
                .iter()
                .filter_map(Frame::data_ref)
                .map(Bytes::len);
            return SizeHint::with_exact(len.sum::<usize>() as u64);
        }
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A `head_within` over a response that never comes, and when it gave up.
    fn give_up(progress: Option<Arc<Progress>>) -> tokio::task::JoinHandle<Instant> {
        give_up_after(TIMEOUT, progress)
    }

    fn give_up_after(
        timeout: Duration,
        progress: Option<Arc<Progress>>,
    ) -> tokio::task::JoinHandle<Instant> {
        tokio::spawn(async move {
            let out = head_within(timeout, progress, std::future::pending::<()>()).await;
            assert!(out.is_none());
            Instant::now()
        })
    }

    /// The timers this thread keeps, by address.
    fn kept() -> Vec<*const Sleep> {
        TIMERS.with(Kept::addresses)
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_given_back_serves_the_next_request_with_its_own_deadline() {
        // The test's runtime runs every task on this thread: serve as a worker does.
        crate::worker::enter(0);
        // Answered in time: the timer goes back, its deadline still ahead.
        let out = head_within(TIMEOUT, None, async { 1 }).await;
        assert_eq!(out, Some(1));
        let first = kept();
        assert_eq!(first.len(), 1);
        // A later request with the same timer: its deadline counts from its own start.
        tokio::time::sleep(TIMEOUT / 2).await;
        let start = Instant::now();
        let gave_up = give_up_after(TIMEOUT, None).await.unwrap();
        assert_eq!(gave_up - start, TIMEOUT);
        assert_eq!(kept(), first, "the same timer, given back again");
        // Its last deadline passed while it rested: it still serves, with a shorter timeout too
        // (a deadline before the one it had).
        tokio::time::sleep(TIMEOUT * 3).await;
        let long = head_within(TIMEOUT * 4, None, async { 2 }).await;
        assert_eq!(long, Some(2));
        let start = Instant::now();
        let gave_up = give_up_after(TIMEOUT / 5, None).await.unwrap();
        assert_eq!(gave_up - start, TIMEOUT / 5);
        assert_eq!(kept(), first);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_side_by_side_borrow_timers_of_their_own_and_the_rest_are_dropped() {
        crate::worker::enter(0);
        let start = Instant::now();
        let waiters: Vec<_> = (0..timer::KEPT + 3)
            .map(|_| give_up_after(TIMEOUT, None))
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap() - start, TIMEOUT);
        }
        assert_eq!(kept().len(), timer::KEPT, "at most timer::KEPT kept");
    }

    #[tokio::test]
    async fn off_the_workers_nothing_is_kept() {
        assert_eq!(head_within(TIMEOUT, None, async { 3 }).await, Some(3));
        assert!(kept().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_body_the_timeout_runs_from_the_start() {
        let start = Instant::now();
        assert_eq!(give_up(None).await.unwrap() - start, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_the_client_stops_the_upstream_timeout_and_the_end_restarts_it() {
        let progress = Arc::new(Progress::new());
        let waiter = give_up(Some(Arc::clone(&progress)));
        progress.moved();
        progress.waiting_on_client();
        // A slow client: far beyond the upstream timeout, the upstream is not blamed.
        tokio::time::sleep(TIMEOUT * 7).await;
        assert!(
            !waiter.is_finished(),
            "the upstream timed out while the client was slow"
        );
        // The body ends: the upstream has `timeout` from now for its head.
        let ended = Instant::now();
        progress.moved();
        let gave_up = waiter.await.unwrap();
        assert!(gave_up >= ended + TIMEOUT, "gave up early");
        assert!(gave_up <= ended + TIMEOUT * 2, "gave up late");
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_does_not_take_the_body_times_out() {
        let progress = Arc::new(Progress::new());
        let waiter = give_up(Some(Arc::clone(&progress)));
        tokio::time::sleep(TIMEOUT / 2).await;
        // A frame handed over, and the upstream never asks for the next one.
        let moved = Instant::now();
        progress.moved();
        let gave_up = waiter.await.unwrap();
        assert!(gave_up >= moved + TIMEOUT && gave_up <= moved + TIMEOUT * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_response_in_time_is_returned() {
        let progress = Some(Arc::new(Progress::new()));
        let out = head_within(TIMEOUT, progress, async {
            tokio::time::sleep(TIMEOUT / 2).await;
            7
        })
        .await;
        assert_eq!(out, Some(7));
    }
}
