//! The accept step every listener shares (the public and redirect listeners, the admin
//! listener, the control socket): wait for the next connection or for shutdown, and never spin
//! on an accept error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tracing::{debug, warn};

/// How long accept pauses after running out of file descriptors (or memory) before trying
/// again, instead of spinning on an error that only a closing connection can clear.
pub const BACKOFF: Duration = Duration::from_millis(100);

/// The next connection `accept` yields, or `None` once `shutdown` resolves.
///
/// An accept error is logged (with `listener`, which names the listener) and accepting goes
/// on: after a lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) it first pauses for
/// [`BACKOFF`], still watching `shutdown`; any other error (a client that reset before it was
/// accepted) is retried at once.
pub async fn next<T, F, Fut, S>(
    listener: &'static str,
    mut accept: F,
    mut shutdown: Pin<&mut S>,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<T>>,
    S: Future + ?Sized,
{
    loop {
        let error = tokio::select! {
            accepted = accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => error,
            },
            _ = shutdown.as_mut() => return None,
        };
        if is_resource_exhaustion(&error) {
            warn!(listener, %error, "accept failed: out of resources; backing off");
            tokio::select! {
                () = tokio::time::sleep(BACKOFF) => {}
                _ = shutdown.as_mut() => return None,
            }
        } else {
            debug!(listener, %error, "accept failed");
        }
    }
}

fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn errors_are_retried_and_a_lack_of_resources_pauses_first() {
        let calls = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let got = next(
            "test",
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 => Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
                        1 => Err(io::Error::from_raw_os_error(libc::EMFILE)),
                        _ => Ok(n),
                    }
                }
            },
            shutdown.as_mut(),
        )
        .await;
        assert_eq!(got, Some(2));
        assert_eq!(started.elapsed(), BACKOFF, "one pause, for the EMFILE only");
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait() {
        let shutdown = std::future::ready(());
        tokio::pin!(shutdown);
        let got: Option<()> = next(
            "test",
            std::future::pending::<io::Result<()>>,
            shutdown.as_mut(),
        )
        .await;
        assert_eq!(got, None);
    }
}
