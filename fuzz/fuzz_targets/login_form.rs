//! The login form parser, `login::form::Form` (src/login/form.rs), and the page a failed login
//! answers with, which shows two of its fields again.
//!
//! Input: a login POST's body (`application/x-www-form-urlencoded`). Asserted:
//!
//! * `Form::parse` never panics and reads the body as its docs say, checked against a decoder
//!   written here: pairs split on `&` (empty ones skipped), name and value split at the first
//!   `=`, `+` is a space, `%XX` is decoded and a malformed escape kept literally, invalid
//!   UTF-8 replaced; `get(name)` is the first pair of that name, for every name in the body and
//!   for the three the login handler reads (`username`, `password`, `next`);
//! * the failed-login page that shows `username` and `next` again is the same markup whatever
//!   they hold: the same count of `<`, `>`, `"` and `'` as with plain values, every `&` starts
//!   one of the escapes the page writes, and both values appear escaped.

#![no_main]

use doorman::fuzzing::{failed_login_page, Form};
use libfuzzer_sys::fuzz_target;

// Shared by several targets; not a target itself (scripts/fuzz runs fuzz_targets/*.rs).
#[path = "shared/percent.rs"]
mod percent;

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    let pairs = reference(data);
    let first = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for name in ["username", "password", "next"] {
        assert_eq!(form.get(name), first(name), "{name}");
    }
    for (name, _) in pairs.iter().take(16) {
        assert_eq!(form.get(name), first(name), "{name:?}");
    }
    // `Form::query` is the same parser over a request target's query.
    if let Ok(query) = std::str::from_utf8(data) {
        assert_eq!(Form::query(Some(query)).get("next"), first("next"));
    }

    let (username, next) = (first("username"), first("next"));
    let page = failed_login_page(next, username);
    // The same page with values that hold nothing to escape; an empty user name focuses a
    // different field, so it stays empty.
    let plain_user = username.map(|u| if u.is_empty() { "" } else { "u" });
    let plain = failed_login_page(next.map(|_| "/n"), plain_user);
    for c in ['<', '>', '"', '\''] {
        assert_eq!(
            page.matches(c).count(),
            plain.matches(c).count(),
            "{c:?} in the page for username {username:?}, next {next:?}"
        );
    }
    for (i, _) in page.match_indices('&') {
        let rest = &page[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "a bare & in the page at {}",
            &rest[..rest.len().min(16)]
        );
    }
    for value in [username, next].into_iter().flatten() {
        assert!(
            page.contains(&escape(value)),
            "{value:?} is not on the page"
        );
    }
});

/// A form field, decoded: `+` is a space.
fn decode(s: &[u8]) -> String {
    String::from_utf8_lossy(&percent::decode(s, true)).into_owned()
}

/// A form body's pairs, decoded as browsers encode them.
fn reference(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// HTML escaping as the page documents it.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
