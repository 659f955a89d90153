//! `[listen] redirect_http`: the plain-HTTP listener that only sends browsers to HTTPS.
//!
//! Every request is answered `308 Permanent Redirect` to `https://{host}{path-and-query}`,
//! where the host comes from `Host` (or the absolute request target) and the port is the
//! https listener's, left out when it is 443. 308 rather than 301 so a `POST` stays a `POST`.
//! Nothing here reads a cookie, sets one, or forwards a byte to the upstream: a session cookie
//! sent over plain HTTP has already leaked, and answering anything but "go to https" would
//! invite clients to keep using the plain listener. A request without a usable `Host` gets 400,
//! since there is no URL to send it to.

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode};

use crate::body::{self, Body};

/// The answer to any request on the redirect listener.
pub fn answer<B>(req: &Request<B>, https_port: u16) -> Response<Body> {
    match location(req, https_port) {
        Some(location) => {
            let mut resp = Response::new(body::empty());
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        None => {
            let mut resp = Response::new(body::full("400 Bad Request: missing or invalid Host\n"));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
    }
}

/// `https://host[:port]/path?query`, or `None` when the request names no usable host.
fn location<B>(req: &Request<B>, https_port: u16) -> Option<HeaderValue> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.clone(),
        None => req
            .headers()
            .get(header::HOST)?
            .to_str()
            .ok()?
            .parse::<Authority>()
            .ok()?,
    };
    // User info has no place in a Host header; `Authority::host` also needs a non-empty value.
    if authority.as_str().is_empty() || authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    // `OPTIONS *` and the like have no path to keep.
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    HeaderValue::from_str(&format!(
        "https://{}{port}{target}",
        host.to_ascii_lowercase()
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(uri: &str, host: Option<&str>, port: u16) -> (u16, Option<String>) {
        let mut b = Request::get(uri);
        if let Some(host) = host {
            b = b.header(header::HOST, host);
        }
        let resp = answer(&b.body(()).unwrap(), port);
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), location)
    }

    #[test]
    fn the_location_keeps_host_path_and_query_and_uses_the_https_port() {
        assert_eq!(
            redirect("/a/b?x=1&y=%2F", Some("Example.com:8081"), 8443),
            (308, Some("https://example.com:8443/a/b?x=1&y=%2F".into()))
        );
        assert_eq!(
            redirect("/", Some("example.com"), 443),
            (308, Some("https://example.com/".into()))
        );
        assert_eq!(
            redirect("/x", Some("[::1]:8081"), 8443),
            (308, Some("https://[::1]:8443/x".into()))
        );
        assert_eq!(
            redirect("http://example.com:80/abs?q", None, 443),
            (308, Some("https://example.com/abs?q".into()))
        );
        assert_eq!(
            redirect("*", Some("example.com"), 443),
            (308, Some("https://example.com/".into()))
        );
    }

    #[test]
    fn no_usable_host_is_a_bad_request() {
        for host in [
            None,
            Some(""),
            Some("user@evil.example"),
            Some(":8080"),
            Some("a b"),
        ] {
            assert_eq!(redirect("/", host, 443), (400, None), "{host:?}");
        }
    }
}
