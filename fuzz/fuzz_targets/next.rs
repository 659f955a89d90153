//! The `next` validator, `login::next::safe_next` (src/login/next.rs): where a login sends the
//! browser must never be off the site.
//!
//! Input: the `next` value (as the form decoded it; invalid UTF-8 replaced, as the form
//! parser does). Each input is checked without `[forward_auth]`, and with it (allowed hosts
//! `app.example.com` and `*.apps.example.com`) over https and over plain http. Asserted:
//!
//! * the answer is `/` or the value itself, with only non-ASCII bytes, controls and the space
//!   percent-encoded; it is visible ASCII, a valid `Location` value, at most `MAX_LEN` bytes;
//! * a value kept is not empty, not longer than `MAX_LEN`, holds no `\`, no control character
//!   raw or once percent-decoded, and, when it is a path, its second character is neither `/`
//!   nor `\` however many times its start is percent-decoded (rules 1–6 of the module docs);
//! * the browser's view: resolved as a `Location` against the login page's URL by a WHATWG URL
//!   parser (the `url` crate), the answer stays on the login page's origin; with
//!   `[forward_auth]` it may instead be an https URL (http only when the login was plain http)
//!   on an allowed host, with no user info.

#![no_main]

use std::sync::OnceLock;

use doorman::fuzzing::{safe_next, Absolute, NEXT_MAX_LEN};
use doorman::host::HostPattern;
use libfuzzer_sys::fuzz_target;
use url::Url;

// Shared by several targets; not a target itself (scripts/fuzz runs fuzz_targets/*.rs).
#[path = "shared/percent.rs"]
mod percent;
use percent::hex;

fn hosts() -> &'static [HostPattern] {
    static HOSTS: OnceLock<Vec<HostPattern>> = OnceLock::new();
    HOSTS.get_or_init(|| {
        ["app.example.com", "*.apps.example.com"]
            .iter()
            .map(|h| HostPattern::parse(h).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    check(&raw, None);
    for http in [false, true] {
        check(
            &raw,
            Some(Absolute {
                hosts: hosts(),
                http,
            }),
        );
    }
});

fn check(raw: &str, absolute: Option<Absolute<'_>>) {
    let got = safe_next(Some(raw), absolute);
    assert!(got.len() <= NEXT_MAX_LEN, "{raw:?} -> {got:?}: too long");
    assert!(
        got.bytes().all(|b| b.is_ascii_graphic()),
        "{raw:?} -> {got:?}: not visible ASCII"
    );
    assert!(http::HeaderValue::from_str(&got).is_ok(), "{got:?}");
    if got != "/" || raw == "/" {
        assert_eq!(got, location_encoded(raw), "{raw:?} was changed");
        check_kept(raw);
    }
    check_browser(raw, &got, absolute);
}

/// What the validator may change: bytes a `Location` cannot carry (controls, non-ASCII) and
/// the space, percent-encoded.
fn location_encoded(raw: &str) -> String {
    let mut out = String::new();
    for &b in raw.as_bytes() {
        if b <= b' ' || b >= 0x7f {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// Rules 1–6 for a value that was kept.
fn check_kept(raw: &str) {
    assert!(!raw.is_empty() && raw.len() <= NEXT_MAX_LEN, "{raw:?}");
    assert!(!raw.contains('\\'), "{raw:?} kept with a backslash");
    assert!(
        !raw.chars().any(char::is_control),
        "{raw:?} kept with a control"
    );
    let decoded = percent::decode(raw.as_bytes(), false);
    assert!(
        !String::from_utf8_lossy(&decoded)
            .chars()
            .any(char::is_control),
        "{raw:?} kept with an encoded control"
    );
    if let Some(rest) = raw.strip_prefix('/') {
        // The start, decoded as often as it decodes.
        let mut head = rest.as_bytes().to_vec();
        loop {
            assert!(
                !matches!(head.first(), Some(b'/' | b'\\')),
                "{raw:?} kept: scheme-relative once decoded"
            );
            match head.as_slice() {
                [b'%', hi, lo, tail @ ..] => match (hex(*hi), hex(*lo)) {
                    (Some(hi), Some(lo)) => head = [&[hi * 16 + lo][..], tail].concat(),
                    _ => break,
                },
                _ => break,
            }
        }
    }
}

/// Whether a host, as the URL parser gives it, is one `allowed_hosts` covers.
fn allowed_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host == "app.example.com"
        || host
            .strip_suffix(".apps.example.com")
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

fn check_browser(raw: &str, got: &str, absolute: Option<Absolute<'_>>) {
    let http = absolute.is_some_and(|a| a.http);
    let login = if http {
        "http://app.example.com/_doorman/login"
    } else {
        "https://app.example.com/_doorman/login"
    };
    let base = Url::parse(login).expect("the login URL");
    let Ok(target) = base.join(got) else {
        return; // not a URL the browser can follow: it goes nowhere
    };
    if target.origin() == base.origin() {
        return;
    }
    assert!(
        absolute.is_some(),
        "{raw:?} -> {got:?} leaves the site: {target}"
    );
    let scheme_ok = target.scheme() == "https" || (http && target.scheme() == "http");
    assert!(scheme_ok, "{raw:?} -> {got:?}: scheme of {target}");
    assert!(
        target.host_str().is_some_and(allowed_host),
        "{raw:?} -> {got:?}: host of {target} is not allowed"
    );
    assert!(
        target.username().is_empty() && target.password().is_none(),
        "{raw:?} -> {got:?}: user info in {target}"
    );
}
