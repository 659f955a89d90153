//! A future that is polled only when its own waker fired.
//!
//! A connection's task waits on its hyper connection, its clock's deadline and the shutdown
//! signal at once (`tokio::select!`). Each wake-up of the task, twice a request (the
//! client's bytes, the upstream's answer), polled all three: the clock's sleep and the
//! shutdown watch cost about as much again as hyper's own poll of an idle socket, for events
//! that come once a second or once in the process's life. [`WokenOnly`] gives its future a
//! waker of its own that records that it fired, and skips the poll when it did not: the
//! future still wakes the task, and is polled on that wake-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pin_project_lite::pin_project! {
    /// `inner`, polled on its first poll and then only after its waker fired.
    pub struct WokenOnly<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        waker: Waker,
        polled: bool,
    }
}

/// What `inner`'s waker does: note that it fired, and wake the task that polls it.
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = crate::lock::lock(&self.task).as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F> WokenOnly<F> {
    pub fn new(inner: F) -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        WokenOnly {
            inner,
            waker: Waker::from(Arc::clone(&flag)),
            flag,
            polled: false,
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        {
            let mut task = crate::lock::lock(&this.flag.task);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // Cleared before `inner` is polled: a wake-up during or after that poll is kept for
        // the next one.
        if *this.polled && !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        *this.polled = true;
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; never ready, never wakes anyone.
    struct Counting {
        polls: Arc<AtomicUsize>,
    }

    impl Future for Counting {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            Poll::Pending
        }
    }

    #[test]
    fn a_future_that_was_not_woken_is_not_polled_again() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut fut = std::pin::pin!(WokenOnly::new(Counting {
            polls: Arc::clone(&polls)
        }));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, never woken");
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_inside_still_ends_the_wait() {
        let sleep = WokenOnly::new(tokio::time::sleep(Duration::from_secs(5)));
        let other = std::future::pending::<()>();
        let start = tokio::time::Instant::now();
        tokio::select! {
            _ = sleep => {}
            _ = other => unreachable!(),
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_wake_up_during_the_wait_is_seen() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let rx = WokenOnly::new(rx);
        let send = async {
            tokio::task::yield_now().await;
            let _ = tx.send(7);
            std::future::pending::<()>().await;
        };
        tokio::select! {
            got = rx => assert_eq!(got.ok(), Some(7)),
            _ = send => unreachable!(),
        }
    }
}
