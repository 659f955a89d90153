//! Doorman's cookie handling (src/cookie.rs) on any `Cookie` and `Set-Cookie` headers.
//!
//! Input: one header value per line; a line starting `Set-Cookie:` is an upstream response's
//! `Set-Cookie`, every other line a request's `Cookie` (values a header cannot carry are
//! skipped). Asserted:
//!
//! * `CookiePolicy::read` (plain and TLS names) finds a session exactly when one pair of its
//!   name is present and its value is a well-formed id, that id; `Absent` when no pair has the
//!   name; `Invalid` otherwise. `only_value` likewise for another app's cookie.
//! * After `remove_from_request`, no pair left in the request is doorman's (the session
//!   cookie under its plain, `__Host-` or `__Secure-` name, or a sign-in flow's), every other
//!   pair is kept in order, and a request that had none of doorman's in one header is left
//!   byte for byte.
//! * What `CookiePolicy::read_remembering` says the upstream's copy of the cookies needs
//!   (`ForUpstream`), applied, leaves exactly what `remove_from_request` leaves.
//! * After `remove_from_response`, no `Set-Cookie` left can make a browser send doorman one of
//!   its cookies: each is read as a browser stores it (RFC 6265bis §5.7: the name-value pair
//!   before the first `;`; without `=`, or with an empty name, the cookie is nameless and sent
//!   back as its bare value) and the `Cookie` pair the browser would send back must not be
//!   doorman's.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use doorman::config::Config;
use doorman::cookie::{self, CookiePolicy, KeyMemo, Presented};
use doorman::session::SessionId;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAME: &str = "doorman_session";
const APP_COOKIE: &str = "connect.sid";
const FLOW_PREFIX: &str = "doorman_oidc_";

/// The plain and TLS policies of the default `[session]`.
fn policies() -> &'static [CookiePolicy; 2] {
    static POLICIES: OnceLock<[CookiePolicy; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let config = Config::parse("", Path::new("/nonexistent/proxy.toml"))
            .unwrap_or_else(|e| panic!("the empty config: {e}"));
        [
            CookiePolicy::new(&config.session, false),
            CookiePolicy::new(&config.session, true),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"Set-Cookie:") {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                response.append(SET_COOKIE, v);
            }
        } else if let Ok(v) = HeaderValue::from_bytes(line) {
            request.append(COOKIE, v);
        }
    }
    check_read(&request);
    check_for_upstream(&request);
    check_remove_from_request(request);
    check_remove_from_response(response);
});

/// The `(name, value)` pairs of `Cookie` headers as doorman documents reading them: split on
/// `;`, trimmed, split at the first `=`; a pair without `=` has no name (`None`).
fn pairs(headers: &HeaderMap) -> Vec<(Option<&[u8]>, &[u8])> {
    let mut out = Vec::new();
    for v in headers.get_all(COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            match pair.iter().position(|&b| b == b'=') {
                Some(i) => out.push((Some(pair[..i].trim_ascii()), pair[i + 1..].trim_ascii())),
                None => out.push((None, pair)),
            }
        }
    }
    out
}

/// Whether a cookie called `name` is one of doorman's: the session's under any of its names,
/// or a sign-in flow's (`doorman_oidc_…`, plain or `__Host-`).
fn is_doormans(name: &[u8]) -> bool {
    let Ok(name) = std::str::from_utf8(name) else {
        return false;
    };
    let bare = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    bare == NAME
        || name
            .strip_prefix("__Host-")
            .unwrap_or(name)
            .starts_with(FLOW_PREFIX)
}

/// A request presenting a well-formed session cookie of `policy`'s name (the fuzzed request
/// may present the same one: the memo must answer right either way).
fn another_session(policy: &CookiePolicy) -> HeaderMap {
    let mut h = HeaderMap::new();
    let value = format!("{}={}", policy.name(), "A".repeat(43));
    h.insert(
        COOKIE,
        HeaderValue::from_str(&value).expect("a cookie name and base64url are a header value"),
    );
    h
}

fn check_read(request: &HeaderMap) {
    let pairs = pairs(request);
    for policy in policies() {
        let named: Vec<&[u8]> = pairs
            .iter()
            .filter(|(n, _)| *n == Some(policy.name().as_bytes()))
            .map(|(_, v)| *v)
            .collect();
        let want = match named.as_slice() {
            [] => Presented::Absent,
            [one] => std::str::from_utf8(one)
                .ok()
                .and_then(SessionId::parse)
                .map_or(Presented::Invalid, |id| Presented::Key(id.key())),
            _ => Presented::Invalid,
        };
        assert_eq!(policy.read(request), want, "{}", policy.name());
        // A connection's memo of its last cookie answers as reading without it does: on a
        // fresh memo, on the repeat it remembers, and after another cookie took the memo.
        let memo = KeyMemo::default();
        assert_eq!(
            policy.read_remembering(request, &memo).0,
            want,
            "{}",
            policy.name()
        );
        assert_eq!(
            policy.read_remembering(request, &memo).0,
            want,
            "{}",
            policy.name()
        );
        let _ = policy.read_remembering(&another_session(policy), &memo);
        assert_eq!(
            policy.read_remembering(request, &memo).0,
            want,
            "{}",
            policy.name()
        );
    }
    let named: Vec<&[u8]> = pairs
        .iter()
        .filter(|(n, _)| *n == Some(APP_COOKIE.as_bytes()))
        .map(|(_, v)| *v)
        .collect();
    let want = match named.as_slice() {
        [one] => std::str::from_utf8(one).ok().map(str::to_string),
        _ => None,
    };
    assert_eq!(cookie::only_value(request, APP_COOKIE), want);
}

fn check_for_upstream(request: &HeaderMap) {
    for policy in policies() {
        let (_, upstream) = policy.read_remembering(request, &KeyMemo::default());
        let mut applied = request.clone();
        upstream.apply(&mut applied, NAME);
        let mut removed = request.clone();
        cookie::remove_from_request(&mut removed, NAME);
        assert_eq!(applied, removed, "read as {upstream:?}");
    }
}

fn check_remove_from_request(mut request: HeaderMap) {
    let before = request.clone();
    let headers_before = before.get_all(COOKIE).iter().count();
    // What should stay: every non-empty pair that is not doorman's, leading spaces dropped.
    let mut kept = Vec::new();
    let mut ours = false;
    for v in before.get_all(COOKIE) {
        for pair in v.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii_start();
            if pair.is_empty() {
                continue;
            }
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            if is_doormans(name.trim_ascii()) {
                ours = true;
            } else {
                kept.push(pair.to_vec());
            }
        }
    }
    cookie::remove_from_request(&mut request, NAME);
    if !ours && headers_before == 1 {
        assert_eq!(
            request, before,
            "a request without doorman's cookie was changed"
        );
        return;
    }
    let after: Vec<&HeaderValue> = request.get_all(COOKIE).iter().collect();
    assert!(after.len() <= 1, "{} Cookie headers left", after.len());
    let after_pairs: Vec<Vec<u8>> = after
        .first()
        .map(|v| {
            v.as_bytes()
                .split(|&b| b == b';')
                .map(|p| p.trim_ascii_start().to_vec())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(after_pairs, kept, "the other cookies were not kept as sent");
    for (name, _) in pairs(&request) {
        if let Some(name) = name {
            assert!(!is_doormans(name), "{:?} reached the upstream", after);
        }
    }
    for policy in policies() {
        assert_eq!(policy.read(&request), Presented::Absent, "{after:?}");
    }
}

/// The `Cookie` pair a browser sends back for a `Set-Cookie` value it accepted, or `None` when
/// it stores nothing (RFC 6265bis §5.7, §5.8.3 step 4 for the nameless cookie).
fn sent_back(set_cookie: &[u8]) -> Option<Vec<u8>> {
    let pair = set_cookie.split(|&b| b == b';').next().unwrap_or_default();
    let (name, value) = match pair.iter().position(|&b| b == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (&b""[..], pair),
    };
    // A header value holds no white space but SP and HTAB, which is what browsers trim.
    let (name, value) = (name.trim_ascii().to_vec(), value.trim_ascii().to_vec());
    match (name.is_empty(), value.is_empty()) {
        (true, true) => None,
        (true, false) => Some(value),
        (false, _) => Some([name, b"=".to_vec(), value].concat()),
    }
}

fn check_remove_from_response(mut response: HeaderMap) {
    cookie::remove_from_response(&mut response, NAME);
    for v in response.get_all(SET_COOKIE) {
        let Some(back) = sent_back(v.as_bytes()) else {
            continue;
        };
        let Ok(back) = HeaderValue::from_bytes(&back) else {
            continue;
        };
        let mut request = HeaderMap::new();
        request.insert(COOKIE, back);
        for (name, _) in pairs(&request) {
            if let Some(name) = name {
                assert!(
                    !is_doormans(name),
                    "the upstream's Set-Cookie {v:?} reaches the browser and comes back as {:?}",
                    request[COOKIE]
                );
            }
        }
        for policy in policies() {
            assert_eq!(policy.read(&request), Presented::Absent, "{v:?}");
        }
    }
}
