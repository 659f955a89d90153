//! The access log and the per-request metrics, written once the response body is done.
//!
//! The gate opens an entry ([`Opened`]) for every request it receives, and its finishing step
//! wraps the response body in it, which counts the body bytes as hyper takes them and, when
//! the body is finished or dropped (the client left), writes one line on the
//! `doorman::access` target and counts the request in `doorman_requests_total` /
//! `doorman_request_duration_seconds`. So `bytes` is the response
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
use std::time::Instant;

use bytes::{Buf, Bytes};
use http::{Method, Uri};
use http_body::{Body as _, Frame, SizeHint};
use tracing::info;

use crate::body::Body;
use crate::exchange::{ClientInfo, Exchange};
use crate::metrics::{Metrics, RouteLabel};
use crate::session::SessionTag;

/// One request's access log entry, opened when the request arrives: the [`Exchange`] the gate
/// fills in while it decides (reached through `Deref`), in the allocation that becomes the
/// response body's wrapper when [`finish`](Opened::finish)ed. So a request pays one allocation
/// for both, where boxing the exchange and then the wrapper took two.
///
/// An entry dropped unfinished (its request's future was dropped: the client left before any
/// response) writes no line.
pub struct Opened(Box<Logged>);

impl Opened {
    /// The entry for a request with this head ([`Exchange::new`]'s).
    ///
    /// Made where it lives, in its box: an exchange made first and then moved in was copied
    /// whole (640 bytes, about 140 instructions per request, `benches/callgrind.sh`), and at
    /// 256 connections each copy writes to lines of a box no other request touched lately.
    pub fn open(
        client: ClientInfo,
        method: Method,
        raw_target: Uri,
        started: Instant,
        span: tracing::Span,
    ) -> Self {
        Opened(Box::write(
            Box::new_uninit(),
            Logged {
                // Zero-sized, so not allocated: replaced by the response's body in `finish`.
                inner: crate::body::empty(),
                finish: Finish {
                    exchange: Exchange::new(client, method, raw_target, started, span),
                    line: None,
                    bytes: 0,
                    complete: false,
                },
            },
        ))
    }

    /// The response's body, wrapped in this entry's box: the line is written, and the request
    /// counted, when that body is finished or dropped (with `status`, in the exchange's span).
    pub fn finish(self, body: Body, status: u16, metrics: Arc<Metrics>) -> Body {
        let mut logged = self.0;
        logged.finish.complete = body.is_end_stream();
        logged.inner = body;
        logged.finish.line = Some(Line { status, metrics });
        Body::from_box(logged)
    }
}

impl std::ops::Deref for Opened {
    type Target = Exchange;

    fn deref(&self) -> &Exchange {
        &self.0.finish.exchange
    }
}

impl std::ops::DerefMut for Opened {
    fn deref_mut(&mut self) -> &mut Exchange {
        &mut self.0.finish.exchange
    }
}

/// What the line needs beyond the exchange, known once the response is.
struct Line {
    status: u16,
    metrics: Arc<Metrics>,
}

/// The entry and the count of body bytes ([`Logged`] counts them): the line is written exactly
/// once, when dropped after the response was made.
struct Finish {
    /// What doorman learnt about the request (peer, method, target, path, route, user,
    /// session).
    exchange: Exchange,
    /// Set by [`Opened::finish`]: until then, nothing is written.
    line: Option<Line>,
    bytes: u64,
    complete: bool,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let Some(Line { status, metrics }) = &self.line else {
            return;
        };
        let ex = &self.exchange;
        let took = ex.started.elapsed();
        let route = ex.route.clone().unwrap_or_else(RouteLabel::none);
        metrics.request(&route, *status, took);
        let route = route.as_str();
        let path = ex.path.as_deref().unwrap_or(ex.raw_target.path());
        // In the request's span, so the line carries the same context as the rest of it.
        ex.span.in_scope(|| {
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
    struct Logged {
        #[pin]
        inner: Body,
        finish: Finish,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use http_body_util::BodyExt as _;

    use super::*;
    use crate::exchange::ClientInfo;

    fn opened() -> Opened {
        let mut ex = Opened::open(
            ClientInfo::direct("127.0.0.1:4000".parse().unwrap(), false),
            http::Method::GET,
            http::Uri::from_static("/dashboard"),
            Instant::now(),
            tracing::Span::none(),
        );
        // Reached through the entry, as the gate fills it in.
        ex.route = Some(RouteLabel::new("/dashboard"));
        ex
    }

    fn counted(metrics: &Metrics) -> String {
        metrics
            .encode()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("doorman_requests_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The access lines written while `f` runs, as the fmt subscriber prints them.
    fn lines_of(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|l| l.contains("doorman::access"))
            .map(String::from)
            .collect()
    }

    #[test]
    fn an_entry_dropped_before_its_response_writes_nothing() {
        let lines = lines_of(|| drop(opened()));
        assert!(lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_finished_entry_writes_and_counts_once_when_its_body_is_done() {
        let metrics = Arc::new(Metrics::new());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lines = lines_of(|| {
            let body = opened().finish(crate::body::full("ok\n"), 200, Arc::clone(&metrics));
            // Counted when the body ends, not when the response is made.
            assert_eq!(counted(&metrics), "");
            let read = runtime.block_on(body.collect()).unwrap().to_bytes();
            assert_eq!(read, "ok\n");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        for field in [
            "method=GET",
            "path=\"/dashboard\"",
            "status=200",
            "bytes=3",
            "complete=true",
        ] {
            assert!(lines[0].contains(field), "{field} not in {}", lines[0]);
        }
        assert_eq!(
            counted(&metrics),
            "doorman_requests_total{route=\"/dashboard\",status_class=\"2xx\"} 1"
        );
    }
}
