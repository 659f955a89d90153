//! The body type every response doorman sends has: either the upstream's streamed body or a
//! small fixed one of doorman's own, behind one boxed type so handlers can return either.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// A response body: streamed from the upstream, or doorman's own.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// Why a response body stopped short: the upstream's body failed, or doorman ended it (a
/// stream whose session ended, DESIGN.md §11). hyper closes an HTTP/1 connection on it, and
/// on HTTP/2 resets the stream with the reason an `h2::Error` in it carries.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A complete body from static or owned bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
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
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The upstream's body, passed through frame by frame (data and trailers), never buffered.
pub fn stream<B>(incoming: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    incoming.map_err(Into::into).boxed_unsync()
}
