//! Deadline timers a worker keeps and lends to its requests, instead of each request making
//! its own.
//!
//! A new `tokio::time::Sleep` costs a timer-wheel insertion on its first poll and a removal
//! when it is dropped, each under the time driver's lock (about 340 instructions per request
//! for the upstream's deadline, `benches/callgrind.sh`). A timer given back stays registered,
//! and the next request moves its deadline later, which tokio does with one compare-and-swap
//! and no lock: the wheel finds the later deadline when the earlier one comes round, and files
//! the entry again (once per timeout at most). So each kind of deadline has its own timers
//! ([`Kept`]), and the deadlines of one kind are (almost always) the same duration from their
//! start: a lent timer's deadline is then later than the one it had. One that is earlier (after
//! a reload shortened the duration, or a request body's progress set it) is moved by tokio
//! under its lock, as a new timer is filed: correct either way, only slower.
//!
//! Kept per worker thread, and only on the workers ([`crate::worker::on_worker`]): a timer is
//! polled only on the runtime it was made on, which lives as long as its thread. Elsewhere
//! (tests serving in-process, the main runtime) each use makes its own. A timer dropped on
//! another thread than the one that lent it is not given back there (it belongs to the first
//! worker's runtime); every future that lends one today runs on its worker's single-threaded
//! runtime, so that does not happen, but would not break anything if it did.
//!
//! A timer kept here still holds the waker of the task that last polled it: when its deadline
//! passes, that task is woken once for nothing; and should the task be gone (its connection
//! closed), its memory (about the size of the connection's future, a few KiB) stays allocated
//! until the timer is lent again. That is at most [`KEPT`] such tasks per worker and kind,
//! after a peak of requests on connections that closed since; forgetting the waker when a
//! timer comes back (a poll with a no-op waker) cost about as much as keeping the timer saved.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How many timers a worker keeps of one kind: twice the HTTP/1 requests `benches/run.sh`
/// keeps waiting on one worker at 256 connections. Uses beyond it (HTTP/2 streams side by side
/// can be more) make their own, as every use did before.
pub const KEPT: usize = 256;

/// One worker's idle timers of one kind, in a `thread_local!` of the module that lends them.
pub struct Kept(RefCell<Vec<Pin<Box<Sleep>>>>);

impl Kept {
    /// No timers yet: they are made as needed, and kept when given back.
    pub const fn new() -> Kept {
        Kept(RefCell::new(Vec::new()))
    }

    /// The addresses of the timers kept now, for tests that follow one through a lend.
    #[cfg(test)]
    pub fn addresses(&self) -> Vec<*const Sleep> {
        self.0
            .borrow()
            .iter()
            .map(|s| &**s as *const Sleep)
            .collect()
    }
}

impl Default for Kept {
    fn default() -> Self {
        Kept::new()
    }
}

/// A timer set for a deadline, lent by a worker's [`Kept`] (or made for this use alone, off
/// the workers). A future that completes at the deadline; given back when dropped.
pub struct Lent {
    /// `None` only once given back, as it is dropped.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Where it goes back to, and the worker that lent it: `None` when it was made off the
    /// workers.
    home: Option<(&'static LocalKey<Kept>, usize)>,
}

/// A timer of `kind` set for `wake`: one the worker keeps, when there is one.
#[inline]
pub fn lend(kind: &'static LocalKey<Kept>, wake: Instant) -> Lent {
    let Some(worker) = crate::worker::on_worker() else {
        return Lent {
            sleep: Some(Box::pin(tokio::time::sleep_until(wake))),
            home: None,
        };
    };
    // `try_with`: a thread being torn down has no timers to lend (nor takes any back).
    let kept = kind.try_with(|kept| kept.0.borrow_mut().pop());
    let sleep = match kept.ok().flatten() {
        Some(mut sleep) => {
            sleep.as_mut().reset(wake);
            sleep
        }
        None => Box::pin(tokio::time::sleep_until(wake)),
    };
    Lent {
        sleep: Some(sleep),
        home: Some((kind, worker)),
    }
}

impl Lent {
    /// Set the deadline to `wake` (later, as a rule: see the module docs).
    pub fn reset(&mut self, wake: Instant) {
        if let Some(sleep) = self.sleep.as_mut() {
            sleep.as_mut().reset(wake);
        }
    }

    /// Poll the deadline right after the future it bounds was polled, as `tokio::time::timeout`
    /// does: when that future used up the task's cooperative budget (`had_budget` says whether
    /// there was some before it), the deadline is polled unconstrained, so that a future which
    /// always uses up the budget cannot keep its deadline from being seen.
    pub fn poll_after(&mut self, cx: &mut Context<'_>, had_budget: bool) -> Poll<()> {
        if had_budget && !tokio::task::coop::has_budget_remaining() {
            return Pin::new(&mut tokio::task::coop::unconstrained(&mut *self)).poll(cx);
        }
        Pin::new(self).poll(cx)
    }
}

impl Future for Lent {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            // Never reached while it can be polled (it is emptied by its drop alone); were it,
            // the deadline counts as passed rather than never.
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Lent {
    #[inline]
    fn drop(&mut self) {
        let (Some((home, lender)), Some(sleep)) = (self.home, self.sleep.take()) else {
            return;
        };
        if crate::worker::on_worker() != Some(lender) {
            // Another thread: its runtime is not this timer's (see the module docs).
            return;
        }
        let mut sleep = Some(sleep);
        let _ = home.try_with(|kept| {
            let mut kept = kept.0.borrow_mut();
            if kept.len() < KEPT {
                kept.extend(sleep.take());
            }
        });
        // Past the limit (or on a thread being torn down): dropped, and taken off the wheel,
        // outside the borrow.
        drop(sleep);
    }
}

pin_project_lite::pin_project! {
    /// [`within`]'s future: `F`'s output, or `None` once the deadline passed first.
    pub struct Within<F> {
        #[pin]
        inner: F,
        deadline: Lent,
    }
}

/// `inner`, bounded by `timeout` from now with a timer of `kind`: as `tokio::time::timeout`
/// (cooperative budget included, [`Lent::poll_after`]), with a kept timer.
pub fn within<F: Future>(kind: &'static LocalKey<Kept>, timeout: Duration, inner: F) -> Within<F> {
    Within {
        inner,
        deadline: lend(kind, Instant::now() + timeout),
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let had_budget = tokio::task::coop::has_budget_remaining();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        this.deadline.poll_after(cx, had_budget).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TEST_TIMERS: Kept = const { Kept::new() };
    }

    const TIMEOUT: Duration = Duration::from_millis(1500);

    fn kept() -> Vec<*const Sleep> {
        TEST_TIMERS.with(Kept::addresses)
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_bounds_each_use_from_its_own_start() {
        // The test's runtime runs every task on this thread: serve as a worker does.
        crate::worker::enter(0);
        assert_eq!(within(&TEST_TIMERS, TIMEOUT, async { 1 }).await, Some(1));
        let first = kept();
        assert_eq!(first.len(), 1, "given back");
        tokio::time::sleep(TIMEOUT / 3).await;
        let start = Instant::now();
        let never = within(&TEST_TIMERS, TIMEOUT, std::future::pending::<()>()).await;
        assert_eq!(never, None);
        assert_eq!(Instant::now() - start, TIMEOUT);
        assert_eq!(kept(), first, "the same timer, lent again");
        // Its deadline passed while it was kept: it still serves the next use in full.
        tokio::time::sleep(TIMEOUT * 2).await;
        let answer = within(&TEST_TIMERS, TIMEOUT, async {
            tokio::time::sleep(TIMEOUT - Duration::from_millis(1)).await;
            2
        });
        assert_eq!(answer.await, Some(2));
        assert_eq!(kept(), first);
    }

    #[tokio::test(start_paused = true)]
    async fn uses_side_by_side_have_timers_of_their_own_and_at_most_kept_are_kept() {
        crate::worker::enter(0);
        let start = Instant::now();
        let waiters: Vec<_> = (0..KEPT + 2)
            .map(|_| tokio::spawn(within(&TEST_TIMERS, TIMEOUT, std::future::pending::<()>())))
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), None);
            assert_eq!(Instant::now() - start, TIMEOUT);
        }
        assert_eq!(kept().len(), KEPT);
    }

    #[tokio::test]
    async fn a_future_that_uses_up_the_budget_still_times_out() {
        crate::worker::enter(0);
        // Always ready to run again, and out of budget after every poll: without the
        // unconstrained poll, the deadline's timer (which spends budget too) never fires.
        let busy = async {
            loop {
                tokio::task::coop::consume_budget().await;
            }
        };
        let bounded = within(&TEST_TIMERS, Duration::from_millis(50), busy);
        let out = tokio::time::timeout(Duration::from_secs(10), bounded).await;
        assert_eq!(out.ok(), Some(None), "the deadline was never seen");
    }

    #[test]
    fn a_timer_dropped_on_another_worker_is_not_kept_there() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _context = runtime.enter();
        crate::worker::enter(0);
        let lent = lend(&TEST_TIMERS, Instant::now() + TIMEOUT);
        let kept_there = std::thread::spawn(move || {
            crate::worker::enter(1);
            drop(lent);
            kept().len()
        });
        assert_eq!(kept_there.join().unwrap(), 0);
        assert!(kept().is_empty(), "nor here, where it was not dropped");
        // Dropped where it was lent, it is kept.
        drop(lend(&TEST_TIMERS, Instant::now() + TIMEOUT));
        assert_eq!(kept().len(), 1);
    }

    #[tokio::test]
    async fn off_the_workers_nothing_is_kept() {
        assert_eq!(within(&TEST_TIMERS, TIMEOUT, async { 3 }).await, Some(3));
        assert!(kept().is_empty());
    }
}
