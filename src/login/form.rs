//! Reading the login form: `application/x-www-form-urlencoded`, small, and read under one
//! deadline.
//!
//! Decoding is `form_urlencoded`'s (the url ecosystem's parser, as browsers encode): `+` is a
//! space, invalid escapes are kept literally, invalid UTF-8 is replaced.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;

/// The largest login form accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A decoded form or query string.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Decode `a=1&b=x+y%21`.
    pub fn parse(input: &[u8]) -> Form {
        Form(form_urlencoded::parse(input).into_owned().collect())
    }

    /// The query string of a request target (empty without one).
    pub fn query(query: Option<&str>) -> Form {
        query.map(|q| Form::parse(q.as_bytes())).unwrap_or_default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read a form body of at most [`MAX_FORM_BYTES`], all of it within `deadline`.
///
/// A declared length over the limit (`Content-Length`, on h1 and h2 alike, as the body's size
/// hint) is refused before a byte is read, so a client is not kept waiting to send what
/// would be refused anyway. The deadline covers the whole body, not each read: a form is a few
/// hundred bytes, and a per-read timeout would let one byte every few seconds hold the
/// connection (and a turn in the throttle's queue) for minutes.
pub async fn read(body: Incoming, deadline: Duration) -> Result<Form, ProxyError> {
    let declared = hyper::body::Body::size_hint(&body).lower();
    if declared > MAX_FORM_BYTES as u64 {
        return Err(ProxyError::PayloadTooLarge);
    }
    let read = Limited::new(body, MAX_FORM_BYTES).collect();
    let body: Bytes = match tokio::time::timeout(deadline, read).await {
        Err(_) => return Err(ProxyError::RequestBodyTimeout),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(ProxyError::PayloadTooLarge),
        Ok(Err(_)) => return Err(ProxyError::BadRequest("the login form could not be read")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(Form::parse(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode() {
        let form = Form::parse(
            b"username=al+ice&password=p%40ss%26w%3Drd&next=%2Fdash%3Fx%3D1&empty=&flag",
        );
        assert_eq!(form.get("username"), Some("al ice"));
        assert_eq!(form.get("password"), Some("p@ss&w=rd"));
        assert_eq!(form.get("next"), Some("/dash?x=1"));
        assert_eq!(form.get("empty"), Some(""));
        assert_eq!(form.get("flag"), Some(""));
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b"a=%zz%4").get("a"), Some("%zz%4"));
        assert_eq!(Form::parse(b"a=%E2%82%AC").get("a"), Some("\u{20ac}"));
        assert_eq!(Form::query(Some("next=%2Fx")).get("next"), Some("/x"));
        assert_eq!(Form::query(None).get("next"), None);
    }
}
