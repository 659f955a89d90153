//! What doorman refuses in a request head before anything else reads it (DESIGN.md §5).
//!
//! A proxy and the app behind it must read every request the same way; where the two could
//! disagree, doorman refuses instead of guessing. Each rule here closes a reading an app or
//! framework is known to take differently:
//!
//! * **Method case.** Methods are case-sensitive (RFC 9110 §9.1): `get` is not `GET`, so it
//!   would not match a route with `methods = ["GET"]` — but many apps upper-case the method
//!   and run their GET handler. A method with any lower-case letter is `400`, as nginx does,
//!   custom methods included (`propfind` must not slip past a `PROPFIND` rule), on h1 and h2.
//! * **Host.** RFC 9112 §3.2: an HTTP/1.1 request has exactly one `Host`; none, two, or one
//!   that is not a valid authority (`a b`, `evil/x`, `u@h`) is `400`. HTTP/1.0 and HTTP/2 may
//!   omit it, but not repeat or garble it; an HTTP/2 `Host` that names another authority than
//!   `:authority` is malformed (RFC 9113 §8.3.1). The host doorman forwards in
//!   `X-Forwarded-Host` and builds origins from is therefore always a plain authority.
//! * **`CONNECT`.** A reverse proxy is not a tunnel to arbitrary hosts: `405`.
//!
//! The head size itself is hyper's to enforce: `max_header_size` counts the request line and
//! headers exactly as received (see `server::protocol`).

use http::{header, HeaderMap, Method, Request, Uri, Version};

use crate::error::ProxyError;

/// Refuse what no route should ever be asked to judge.
pub fn check<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    if !method_is_upper_case(req.method()) {
        return Err(ProxyError::BadRequest("method with lower-case letters"));
    }
    check_host(req)
}

/// Standard methods are upper-case by construction; only extension methods need a look.
fn method_is_upper_case(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::OPTIONS
            | Method::PATCH
            | Method::TRACE
    ) || !method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ProxyError::BadRequest("more than one Host header")),
        (None, None) if req.version() == Version::HTTP_11 => {
            return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"))
        }
        (host, None) => host,
    };
    if let Some(host) = host {
        if !is_authority(host.as_bytes()) {
            return Err(ProxyError::BadRequest("invalid Host"));
        }
        if req.version() == Version::HTTP_2 {
            if let Some(authority) = req.uri().authority() {
                if !authority
                    .as_str()
                    .as_bytes()
                    .eq_ignore_ascii_case(host.as_bytes())
                {
                    return Err(ProxyError::BadRequest("Host differs from :authority"));
                }
            }
        }
    }
    if let Some(authority) = req.uri().authority() {
        if !is_authority(authority.as_str().as_bytes()) {
            return Err(ProxyError::BadRequest("invalid authority"));
        }
    }
    Ok(())
}

/// The bytes a reg-name may hold (RFC 3986 §3.2.2: unreserved, sub-delims, `%`), as a table:
/// one load per byte of every request's `Host`, where a search of the punctuation took ten.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let punctuation = b"-._~!$&'()*+,;=%";
    let mut i = 0;
    while i < punctuation.len() {
        table[punctuation[i] as usize] = true;
        i += 1;
    }
    table
};

/// `host[:port]` as RFC 3986 §3.2 allows it in a `Host` header: a reg-name (unreserved,
/// sub-delims and percent signs) or an IP literal in brackets, an optional all-digit port of at
/// most 5 digits, no user info. Empty is refused too: doorman never serves a request for no
/// host.
fn is_authority(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        let after = &rest[end + 1..];
        match after.split_first() {
            None => (&b"x"[..], None),
            Some((b':', port)) => (&b"x"[..], Some(port)),
            Some(_) => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        }
    };
    let host_ok = !host.is_empty() && host.iter().all(|&b| REG_NAME[usize::from(b)]);
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    host_ok && port_ok
}

/// The host the client addressed: the h2 `:authority` / absolute-form authority, else `Host`
/// (both refused by [`check`] unless they are a plain authority).
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri("/x")
            .version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    fn status(r: &Request<()>) -> u16 {
        match check(r) {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn methods_with_lower_case_letters_are_refused() {
        for m in [
            "get", "Get", "gET", "post", "propfind", "Propfind", "x-custom",
        ] {
            assert_eq!(status(&req(m, Version::HTTP_11, &["a"])), 400, "{m}");
        }
        for m in [
            "GET", "HEAD", "POST", "DELETE", "PROPFIND", "X-CUSTOM", "M-SEARCH",
        ] {
            assert_eq!(status(&req(m, Version::HTTP_11, &["a"])), 200, "{m}");
        }
        assert_eq!(status(&req("CONNECT", Version::HTTP_11, &["a:443"])), 405);
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        assert_eq!(status(&req("GET", Version::HTTP_11, &[])), 400);
        assert_eq!(status(&req("GET", Version::HTTP_11, &["a", "a"])), 400);
        assert_eq!(status(&req("GET", Version::HTTP_11, &["a", "b"])), 400);
        assert_eq!(status(&req("GET", Version::HTTP_10, &[])), 200);
        assert_eq!(status(&req("GET", Version::HTTP_10, &["a", "b"])), 400);
        assert_eq!(status(&req("GET", Version::HTTP_2, &[])), 200);
        assert_eq!(status(&req("GET", Version::HTTP_2, &["a", "b"])), 400);
    }

    #[test]
    fn hosts_must_be_authorities() {
        for good in [
            "app.test",
            "app.test:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
            "A_B.test",
        ] {
            assert!(is_authority(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "a b", "evil/x", "u@h", "u:p@h", "h:port", "h:123456", ":80", "[::1", "[::1]x",
            "[]", "h?x", "h#x", "h\\x", "[zz]",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad:?}");
        }
        assert_eq!(status(&req("GET", Version::HTTP_11, &["a b"])), 400);
    }

    #[test]
    fn the_reg_name_table_is_unreserved_sub_delims_and_percent() {
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], allowed, "byte {b:#04x}");
        }
    }

    #[test]
    fn an_h2_host_must_agree_with_authority() {
        let r = Request::builder()
            .uri("https://app.test/x")
            .version(Version::HTTP_2)
            .header(header::HOST, "other.test")
            .body(())
            .unwrap();
        assert_eq!(status(&r), 400);
        let r = Request::builder()
            .uri("https://app.test/x")
            .version(Version::HTTP_2)
            .header(header::HOST, "APP.test")
            .body(())
            .unwrap();
        assert_eq!(status(&r), 200);
    }
}
