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

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn decode(s: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(hi), Some(lo)) = (
                    s.get(i + 1).copied().and_then(hex),
                    s.get(i + 2).copied().and_then(hex),
                ) {
                    out.push(hi * 16 + lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
