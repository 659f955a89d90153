//! The body type every response doorman sends has: either the upstream's streamed body or a
//! small fixed one of doorman's own, behind one boxed type so handlers can return either.
//!
//! Doorman's own box rather than `http_body_util`'s `UnsyncBoxBody`: that one can only be made
//! by boxing a body anew, and [`Body::from_box`] turns a body that is already in a box into
//! one without a second allocation (the access log's wrapper is allocated when the request
//! arrives, with the request's exchange in it: `access_log::Opened`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

/// A response body: streamed from the upstream, or doorman's own. `Send`, which is what hyper
/// asks of a body; not `Sync`, which nothing needs.
pub struct Body(Pin<Box<dyn http_body::Body<Data = Bytes, Error = BodyError> + Send>>);

/// Why a response body stopped short: the upstream's body failed, or doorman ended it (a
/// stream whose session ended, DESIGN.md §11). hyper closes an HTTP/1 connection on it, and
/// on HTTP/2 resets the stream with the reason an `h2::Error` in it carries.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body {
    /// `body`, boxed. (A body without size, as [`empty`]'s, is not allocated.)
    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        Body(Box::pin(body))
    }

    /// A body already in its box, kept there.
    pub fn from_box<B>(body: Box<B>) -> Body
    where
        B: http_body::Body<Data = Bytes, Error = BodyError> + Send + 'static,
    {
        Body(Box::into_pin(body))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

/// A complete body from static or owned bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::new(Full::new(bytes.into()).map_err(|never| match never {}))
}

/// A complete response doorman writes itself: `status`, `Content-Type`, and
/// `Cache-Control: no-store` (doorman's own answers are about one client at one moment:
/// errors, challenges, the login form, session data — never for a shared cache).
pub fn own_response(
    status: http::StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> http::Response<Body> {
    let mut resp = http::Response::new(full(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// An empty body.
pub fn empty() -> Body {
    Body::new(Empty::new().map_err(|never| match never {}))
}

/// The upstream's body, passed through frame by frame (data and trailers), never buffered.
pub fn stream<B>(incoming: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    Body::new(incoming.map_err(Into::into))
}
