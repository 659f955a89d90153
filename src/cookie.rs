//! Doorman's session cookie at the boundary with the upstream.
//!
//! The upstream never sees the session cookie (it is a bearer credential, and an app that logs
//! request headers would leak it), and the upstream can never set it (an app compromised or
//! merely careless must not be able to fix a session onto a browser). Every other cookie passes
//! through byte for byte.

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// Cookie names doorman answers to for `name`: the plain one and the prefixed forms it uses
/// under TLS (`__Host-`, or `__Secure-` with a cookie domain).
fn is_ours(cookie_name: &str, name: &str) -> bool {
    cookie_name == name
        || cookie_name.strip_prefix("__Host-") == Some(name)
        || cookie_name.strip_prefix("__Secure-") == Some(name)
}

/// Remove doorman's cookie from the `Cookie` header(s) of a request going upstream, keeping the
/// other cookies exactly as sent. Several `Cookie` headers (as HTTP/2 clients send them) are
/// joined with `; `, as RFC 9113 §8.2.3 asks when forwarding to HTTP/1.1.
pub fn remove_from_request(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii_start();
            if pair.is_empty() {
                continue;
            }
            let pair_name = pair
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if std::str::from_utf8(pair_name).is_ok_and(|n| is_ours(n, name)) {
                removed = true;
            } else {
                kept.push(pair);
            }
        }
    }
    if !removed && headers.get_all(COOKIE).iter().count() == 1 {
        return; // nothing of ours, one header: leave it exactly as it came
    }
    let joined = kept.join(&b"; "[..]);
    headers.remove(COOKIE);
    if !joined.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(COOKIE, v);
        }
    }
}

/// Drop every upstream `Set-Cookie` that would set (or clear) doorman's cookie.
pub fn remove_from_response(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let set_name = v
                .as_bytes()
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            !std::str::from_utf8(set_name).is_ok_and(|n| is_ours(n, name))
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn our_cookie_is_removed_and_the_rest_kept_byte_for_byte() {
        let mut h = request(&["a=1; doorman_session=secret; b=\"x y\"; c=%41;d"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "a=1; b=\"x y\"; c=%41; d");
    }

    #[test]
    fn prefixed_and_repeated_forms_are_removed_too() {
        let mut h = request(&[
            "__Host-doorman_session=s1",
            "x=1; doorman_session=s2",
            "__Secure-doorman_session=s3",
        ]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["x=1"]);
    }

    #[test]
    fn a_request_with_only_our_cookie_forwards_no_cookie_header() {
        let mut h = request(&["doorman_session=secret"]);
        remove_from_request(&mut h, "doorman_session");
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn untouched_headers_stay_identical() {
        let mut h = request(&["a=1;b=2"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "a=1;b=2");
    }

    #[test]
    fn a_similar_name_is_not_ours() {
        let mut h = request(&["doorman_session2=x; xdoorman_session=y"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "doorman_session2=x; xdoorman_session=y");
    }

    #[test]
    fn upstream_cannot_set_our_cookie() {
        let mut h = HeaderMap::new();
        for v in [
            "app=1; Path=/",
            "doorman_session=fixated; Path=/",
            " __Host-doorman_session=x; Secure",
            "other=2",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        remove_from_response(&mut h, "doorman_session");
        assert_eq!(
            h.get_all(SET_COOKIE).iter().collect::<Vec<_>>(),
            ["app=1; Path=/", "other=2"]
        );
    }
}
