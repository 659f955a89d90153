//! A response body that follows its session (DESIGN.md §11): an event stream, or any
//! response of a session still streaming after `recheck / 2`, is ended when its session is.
//!
//! The body is registered with the store's `session::live` registry as soon as it is known
//! to be long-lived: at once for `text/event-stream`, otherwise when the upstream has kept it
//! waiting, in total, for `recheck / 2` (a timer armed at its first wait, so a response that
//! arrives whole never arms one). Ending drops the upstream's body — its connection is closed,
//! not pooled — and fails the client's: hyper closes an HTTP/1 connection and resets an HTTP/2
//! stream with `CANCEL`, the reason the error carries. The session's absolute expiry is the
//! body's own timer, armed when it registers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use crate::body::BodyError;
use crate::session::live::{Ended, OwnedTicket, Registration};

enum State {
    /// Not long-lived yet: registers if still streaming once `after` has passed since the
    /// upstream first kept it waiting.
    Waiting {
        ticket: OwnedTicket,
        after: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// Registered: ends with its session.
    Following(Box<Follow>),
    /// Ended by its session, or its upstream finished.
    Done,
}

struct Follow {
    registration: Registration,
    expiry: Pin<Box<Sleep>>,
    user: String,
}

impl Follow {
    fn new(ticket: OwnedTicket) -> Follow {
        let expiry = Box::pin(tokio::time::sleep(ticket.expires_in()));
        let user = ticket.user().to_string();
        Follow {
            registration: ticket.register(),
            expiry,
            user,
        }
    }

    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        if let Poll::Ready(why) = self.registration.poll_ended(cx) {
            return Poll::Ready(why);
        }
        if self.expiry.as_mut().poll(cx).is_ready() {
            self.registration.expired();
            return Poll::Ready(Ended::Expired);
        }
        Poll::Pending
    }
}

/// The upstream's body of a session's response (see the module docs).
pub struct Following<B> {
    inner: Option<B>,
    state: State,
}

impl<B> Following<B> {
    /// Follow `inner` for the session `ticket` names: at once when `stream` (an event
    /// stream), else once it has streamed for `after`.
    pub fn new(inner: B, ticket: OwnedTicket, stream: bool, after: Duration) -> Following<B> {
        let state = if stream {
            State::Following(Box::new(Follow::new(ticket)))
        } else {
            State::Waiting {
                ticket,
                after,
                timer: None,
            }
        };
        Following {
            inner: Some(inner),
            state,
        }
    }
}

/// The error an ended body fails with: an HTTP/2 `CANCEL` for hyper to reset the stream with.
fn session_ended() -> BodyError {
    Box::new(h2::Error::from(h2::Reason::CANCEL))
}

impl<B> HttpBody for Following<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            if let State::Following(follow) = &mut this.state {
                if let Poll::Ready(why) = follow.poll_end(cx) {
                    let session = follow.registration.session_tag();
                    crate::audit::long_lived_ended("stream", &follow.user, &session, why.as_str());
                    // Dropped, not finished: its connection is closed rather than pooled.
                    this.inner = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(session_ended())));
                }
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let polled = Pin::new(inner).poll_frame(cx);
            if let Poll::Ready(None) = polled {
                this.state = State::Done;
                return Poll::Ready(None);
            }
            let long_lived = match &mut this.state {
                State::Waiting { after, timer, .. } => {
                    // Armed at the first wait: a response that arrives whole never arms one.
                    if polled.is_pending() && timer.is_none() {
                        *timer = Some(Box::pin(tokio::time::sleep(*after)));
                    }
                    timer
                        .as_mut()
                        .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
                }
                State::Following(_) | State::Done => false,
            };
            if long_lived {
                if let State::Waiting { ticket, .. } =
                    std::mem::replace(&mut this.state, State::Done)
                {
                    this.state = State::Following(Box::new(Follow::new(ticket)));
                }
                if polled.is_pending() {
                    // Poll its end once, above, so the registration knows whom to wake.
                    continue;
                }
            }
            return polled.map(|frame| frame.map(|f| f.map_err(Into::into)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}
