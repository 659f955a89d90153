//! The access log and the per-request metrics, written once the response body is done.
//!
//! The gate's finishing step wraps every response body in [`Logged`], which counts
//! the body bytes as hyper takes them and, when the body is finished or dropped (the client
//! left), writes one line on the `doorman::access` target and counts the request in
//! `doorman_requests_total` / `doorman_request_duration_seconds`. So `bytes` is the response
//! body bytes actually handed to the connection (not the `Content-Length`, and not headers),
//! `duration_ms` runs to the end of the body, and `complete = false` marks a body the client did
//! not wait for.
//!
//! Fields: `peer` (the TCP peer), `client` (the client's address: the peer, or what a trusted
//! gateway's `X-Forwarded-For` says), `method`, `path` (normalised; the raw path when normalisation refused it),
//! `route`, `status`, `bytes`, `duration_ms`, `complete`, and when there is one `user` and
//! `session` — a short tag of the session's store key ([`SessionKey::tag`]), which cannot be
//! turned back into the cookie.
//!
//! [`SessionKey::tag`]: crate::session::SessionKey::tag

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tracing::info;

use crate::body::Body;
use crate::exchange::Exchange;
use crate::metrics::{Metrics, RouteLabel};
use crate::session::SessionTag;

/// One request's log line, finished when the body is.
pub struct Entry {
    /// What doorman learnt about the request (peer, method, target, path, route, user,
    /// session).
    exchange: Box<Exchange>,
    status: u16,
    metrics: Arc<Metrics>,
    /// The request's span, so the line carries the same context as the rest of the request.
    span: tracing::Span,
}

impl Entry {
    /// The line for `exchange`, answered with `status`.
    pub fn new(
        exchange: Box<Exchange>,
        status: u16,
        metrics: Arc<Metrics>,
        span: tracing::Span,
    ) -> Self {
        Entry {
            exchange,
            status,
            metrics,
            span,
        }
    }
}

/// Counts bytes and writes the entry exactly once, when dropped.
struct Finish {
    entry: Entry,
    bytes: u64,
    complete: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let Entry {
            exchange: ex,
            status,
            metrics,
            span,
        } = &self.entry;
        let took = ex.started.elapsed();
        let route = ex.route.clone().unwrap_or_else(RouteLabel::none);
        metrics.request(&route, *status, took);
        let route = route.as_str();
        let path = ex.path.as_deref().unwrap_or(ex.raw_target.path());
        span.in_scope(|| {
            info!(
                target: "doorman::access",
                peer = %ex.client.peer,
                client = %ex.client.addr,
                method = %ex.method,
                path,
                route,
                status,
                bytes = self.bytes,
                duration_ms = took.as_secs_f64() * 1000.0,
                complete = self.complete,
                user = ex.user.as_deref(),
                session = ex.session_tag.as_ref().map(SessionTag::as_str),
                "request"
            );
        });
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts what it yields and logs the request when done.
    pub struct Logged {
        #[pin]
        inner: Body,
        finish: Finish,
    }
}

impl Logged {
    /// Wrap `body`; the entry is written when the result is finished or dropped.
    pub fn wrap(body: Body, entry: Entry) -> Body {
        let complete = body.is_end_stream();
        Logged {
            inner: body,
            finish: Finish {
                entry,
                bytes: 0,
                complete,
            },
        }
        .boxed_unsync()
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = crate::body::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::body::BodyError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.finish.bytes += data.remaining() as u64;
                }
                // hyper stops polling a body of known length once it has all of it.
                if this.inner.is_end_stream() {
                    this.finish.complete = true;
                }
            }
            Poll::Ready(None) => this.finish.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
