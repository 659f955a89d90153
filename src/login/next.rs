//! Where to send a browser after login: the `next` parameter, kept only when it is a local path.
//!
//! `next` comes from the query string of the login page and back through a hidden form field,
//! so an attacker can set it in a link. Redirecting to whatever it says would make doorman an
//! open redirect (a phishing aid that borrows the app's trusted origin). [`safe_next`] returns
//! `raw` when it is a path on this origin, else `/`.
//!
//! The value arrives already form-decoded once. It is kept only when all of these hold:
//!
//! 1. It is at most [`MAX_LEN`] bytes long and not empty.
//! 2. It starts with `/`. This alone rules out every scheme (`https:`, `javascript:`, `data:`,
//!    `vbscript:`, `http:evil.com`), a leading space, and a bare `\\evil.com` or `evil.com`.
//! 3. The second character is neither `/` nor `\` (`//evil.com` and `/\evil.com` are
//!    scheme-relative URLs to another host: browsers treat `\` as `/`). Exactly `/` is fine.
//! 4. The same holds after percent-decoding the start as many times as it decodes:
//!    `/%2F%2Fevil.com`, `/%5Cevil.com` and `/%252F…` are refused, because some servers and app
//!    frameworks decode the path once more and then redirect or route on the result.
//! 5. It contains no backslash anywhere (a browser turns `\` into `/` in special URLs, so a
//!    backslash can only make a path mean something other than what it looks like).
//! 6. It contains no control character (C0, DEL, C1 — including tab, CR and LF, which the URL
//!    parser silently deletes, so `/\t/evil.com` would become `//evil.com`, and which could
//!    split a header), neither raw nor percent-encoded (`%00`–`%1F`, `%7F`, and the UTF-8
//!    encodings of C1 such as `%C2%85`), checked after one percent-decoding of the whole value.
//!
//! Decisions, with the reasoning:
//!
//! * `/@evil.com`, `/evil.com`, `/javascript:alert(1)` and `/x?next=//evil.com` are kept: a
//!   value starting with one `/` and then something else is a path-absolute reference, which the
//!   browser resolves against the current origin; the `@` or `:` is just a path character
//!   there, never userinfo or a scheme.
//! * `/.//evil.com` and `/..//evil.com` are kept: the URL parser resolves them to the path
//!   `//evil.com` *on this host* (the dot segments are removed after the authority is fixed), so
//!   they are odd but same-origin.
//! * Look-alike slashes (`/∕evil.com`, `/／evil.com`) are kept: outside the host, the URL parser
//!   does no Unicode mapping, so they are only path characters.
//! * The value returned is always visible ASCII, so it fits a `Location` header as-is: bytes
//!   outside ASCII and the space are percent-encoded (as the browser would do itself), nothing
//!   else is changed.

//!
//! ## Absolute URLs (forward-auth, DESIGN.md §8)
//!
//! Behind a gateway, the login page is reached from other hosts, and `next` is the original
//! absolute URL. With `[forward_auth]`, an absolute `next` is kept only when all of these hold
//! (rules 1, 5 and 6 above apply too):
//!
//! * It starts with exactly `https://` — or `http://` when the login request itself was plain
//!   HTTP (a page loaded over https never sends its user back to plain HTTP). Lower-case only:
//!   doorman writes these URLs itself, so nothing legitimate differs.
//! * Its authority (up to the first `/`, `?` or `#`) is a plain host name with an optional
//!   port: no `@` (`https://app.example.com@evil` is a login to `evil`), no `%` (no encoded
//!   dots or at-signs), and the host, without port, is covered by `allowed_hosts` exactly as a
//!   forward-auth request's host is (`https://app.example.com.evil` is not
//!   `app.example.com`).

/// The longest `next` kept, in bytes (before and after encoding).
pub const MAX_LEN: usize = 2048;

use crate::encoding::hex_pair;
use crate::host::HostPattern;

/// Which absolute URLs `next` may name (with `[forward_auth]`).
#[derive(Debug, Clone, Copy)]
pub struct Absolute<'a> {
    /// `allowed_hosts`.
    pub hosts: &'a [HostPattern],
    /// Whether `http://` URLs are allowed too (the login request was plain HTTP).
    pub http: bool,
}

/// Where to redirect to after login: `raw` when it is a safe local path, or, when `absolute`
/// is given, an absolute URL on an allowed host (see the module documentation for the rules);
/// else `/`.
pub fn safe_next(raw: Option<&str>, absolute: Option<Absolute<'_>>) -> String {
    raw.filter(|s| is_safe(s) || absolute.is_some_and(|a| is_allowed_absolute(s, a)))
        .map(encode_for_location)
        .filter(|s| s.len() <= MAX_LEN)
        .unwrap_or_else(|| "/".to_owned())
}

fn is_safe(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('/') else {
        return false;
    };
    if starts_with_slash_decoded(rest.as_bytes()) {
        return false;
    }
    is_clean(s)
}

/// Rules 1, 5 and 6: not empty, not too long, no backslash, no control character (raw or
/// percent-encoded).
fn is_clean(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_LEN {
        return false;
    }
    if s.contains('\\') || s.chars().any(char::is_control) {
        return false;
    }
    let decoded = percent_decode(s.as_bytes());
    !String::from_utf8_lossy(&decoded)
        .chars()
        .any(char::is_control)
}

/// An absolute `https://` or `http://` URL (lower-case scheme) split into its scheme and its
/// authority (up to the first `/`, `?` or `#`); `None` for anything else.
pub fn absolute_parts(s: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
        (Some(rest), _) => ("https", rest),
        (None, Some(rest)) => ("http", rest),
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((scheme, &rest[..end]))
}

fn is_allowed_absolute(s: &str, allowed: Absolute<'_>) -> bool {
    let Some((scheme, authority)) = absolute_parts(s) else {
        return false;
    };
    if scheme == "http" && !allowed.http {
        return false;
    }
    if authority.contains(['@', '%']) {
        return false;
    }
    let Some(host) = crate::host::normalise(authority) else {
        return false;
    };
    crate::host::any_matches(allowed.hosts, &host) && is_clean(s)
}

/// Whether `rest` (what follows the leading `/`) starts with `/` or `\`, either literally or
/// after any number of percent-decodings of its first character (`%2F`, `%5C`, `%252F`, ...).
fn starts_with_slash_decoded(rest: &[u8]) -> bool {
    let mut head = rest.to_vec();
    loop {
        match head.as_slice() {
            [b'/' | b'\\', ..] => return true,
            [b'%', hi, lo, tail @ ..] => match hex_pair(*hi, *lo) {
                Some(byte) => {
                    let mut next = vec![byte];
                    next.extend_from_slice(tail);
                    head = next;
                }
                _ => return false,
            },
            _ => return false,
        }
    }
}

/// Decode `%XX` escapes once; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(s).collect()
}

/// Percent-encode the bytes a `Location` header value cannot carry as-is (non-ASCII) or that
/// an HTTP parser would trim (space). `s` holds no control characters by now.
fn encode_for_location(s: &str) -> String {
    const LOCATION: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ');
    percent_encoding::utf8_percent_encode(s, LOCATION).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(raw, expected)`: open-redirect payloads and ordinary paths.
    const CASES: &[(&str, &str)] = &[
        // Ordinary local paths are kept as they are.
        ("/", "/"),
        ("/dashboard", "/dashboard"),
        ("/reports/2024?q=a&b=c#top", "/reports/2024?q=a&b=c#top"),
        ("/x?next=//evil.com", "/x?next=//evil.com"),
        ("/x?url=https://evil.com", "/x?url=https://evil.com"),
        ("/a/b//c", "/a/b//c"),
        ("/search?q=100%25", "/search?q=100%25"),
        ("/files/a%2Fb", "/files/a%2Fb"),
        ("/%", "/%"),
        ("/%zz", "/%zz"),
        // Same-origin although odd: documented decisions.
        ("/@evil.com", "/@evil.com"),
        ("/evil.com", "/evil.com"),
        ("/javascript:alert(1)", "/javascript:alert(1)"),
        ("/.//evil.com", "/.//evil.com"),
        ("/..//evil.com", "/..//evil.com"),
        ("/\u{2215}evil.com", "/%E2%88%95evil.com"),
        ("/\u{FF0F}evil.com", "/%EF%BC%8Fevil.com"),
        ("/caf\u{e9} menu", "/caf%C3%A9%20menu"),
        // Empty or missing.
        ("", "/"),
        // Scheme-relative: another host.
        ("//evil.com", "/"),
        ("//", "/"),
        ("///evil.com", "/"),
        ("////evil.com", "/"),
        ("//user@evil.com/", "/"),
        ("/\\evil.com", "/"),
        ("/\\/evil.com", "/"),
        ("\\\\evil.com", "/"),
        ("\\/evil.com", "/"),
        // Backslash anywhere.
        ("/a\\b", "/"),
        ("/.\\\\evil.com", "/"),
        // Schemes and hosts without a leading slash.
        ("https://evil.com", "/"),
        ("http://evil.com/", "/"),
        ("http:evil.com", "/"),
        ("https:/evil.com", "/"),
        ("HTTPS://evil.com", "/"),
        ("javascript:alert(1)", "/"),
        ("JaVaScRiPt:alert(1)", "/"),
        ("data:text/html,<script>alert(1)</script>", "/"),
        ("vbscript:msgbox(1)", "/"),
        ("evil.com", "/"),
        ("dashboard", "/"),
        (" /x", "/"),
        ("\t/x", "/"),
        ("%2Fx", "/"),
        // Percent-encoded slashes at the start.
        ("%2F%2Fevil.com", "/"),
        ("/%2F%2Fevil.com", "/"),
        ("/%2fevil.com", "/"),
        ("/%5Cevil.com", "/"),
        ("/%5cevil.com", "/"),
        ("/%252F%252Fevil.com", "/"),
        ("/%25252fevil.com", "/"),
        ("/%255cevil.com", "/"),
        // Control characters, raw.
        ("/\tevil", "/"),
        ("/\t/evil.com", "/"),
        ("/\n/evil.com", "/"),
        ("/x\r\nSet-Cookie: x=1", "/"),
        ("/x\0", "/"),
        ("/x\u{7f}", "/"),
        ("/x\u{85}", "/"),
        // Control characters, percent-encoded.
        ("/%09/evil.com", "/"),
        ("/%0d%0aSet-Cookie:x", "/"),
        ("/%0D%0ALocation:%20//evil.com", "/"),
        ("/x%00", "/"),
        ("/x%1f", "/"),
        ("/x%7F", "/"),
        ("/x%C2%85", "/"),
        ("/x?q=%0a", "/"),
    ];

    #[test]
    fn open_redirect_table() {
        let mut failures = Vec::new();
        for &(raw, expected) in CASES {
            let got = safe_next(Some(raw), None);
            if got != expected {
                failures.push(format!("{raw:?}: got {got:?}, expected {expected:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
        assert!(CASES.iter().filter(|(_, e)| *e == "/").count() >= 30);
    }

    #[test]
    fn missing_next_is_the_root() {
        assert_eq!(safe_next(None, None), "/");
    }

    #[test]
    fn length_is_bounded() {
        let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert_eq!(safe_next(Some(&longest), None), longest);
        let too_long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(safe_next(Some(&too_long), None), "/");
        // Within the limit as given, beyond it once encoded.
        let grows = format!("/{}", "\u{e9}".repeat(MAX_LEN / 4));
        assert!(grows.len() <= MAX_LEN);
        assert_eq!(safe_next(Some(&grows), None), "/");
    }

    #[test]
    fn result_always_fits_a_location_header() {
        for &(raw, _) in CASES {
            let got = safe_next(Some(raw), None);
            assert!(got.starts_with('/'));
            assert!(
                http::HeaderValue::from_str(&got).is_ok(),
                "{raw:?} -> {got:?}"
            );
            assert!(got.bytes().all(|b| b.is_ascii_graphic()), "{got:?}");
        }
    }

    #[test]
    fn absolute_next_only_on_allowed_hosts() {
        let hosts = [
            HostPattern::parse("app.example.com").unwrap(),
            HostPattern::parse("*.apps.example.com").unwrap(),
        ];
        let https_only = Some(Absolute {
            hosts: &hosts,
            http: false,
        });
        let with_http = Some(Absolute {
            hosts: &hosts,
            http: true,
        });
        for ok in [
            "https://app.example.com/x?y=1",
            "https://app.example.com",
            "https://APP.example.com:8443/a",
            "https://app.example.com.?q",
            "https://wiki.apps.example.com/page#top",
        ] {
            assert_eq!(safe_next(Some(ok), https_only), ok, "{ok}");
        }
        for evil in [
            "//evil.com",
            "https://evil.com/",
            "https://app.example.com.evil/",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com@app.example.com/",
            "https://evil.com\\@app.example.com/",
            "https://app.example.com\\@evil.com/",
            "https:\\\\app.example.com/",
            "https:/app.example.com/",
            "https:///app.example.com/",
            "https://app%2eexample.com/",
            "https%3A%2F%2Fapp.example.com/",
            "https://app.example.com%40evil.com/",
            "https://a.b.apps.example.com/",
            "https://apps.example.com/",
            "HTTPS://app.example.com/",
            "http://app.example.com/",
            "javascript://app.example.com/%0aalert(1)",
            "https://app.example.com/\t",
            "https://app.example.com/%0d%0aSet-Cookie:x",
            " https://app.example.com/",
            "https://app.example.com:x/",
        ] {
            assert_eq!(safe_next(Some(evil), https_only), "/", "{evil}");
        }
        // Plain http only when the login itself was plain http.
        assert_eq!(
            safe_next(Some("http://app.example.com/x"), with_http),
            "http://app.example.com/x"
        );
        assert_eq!(safe_next(Some("http://evil.com/x"), with_http), "/");
        // Without [forward_auth], never an absolute URL.
        assert_eq!(safe_next(Some("https://app.example.com/x"), None), "/");
    }

    #[test]
    fn percent_decode_decodes_once() {
        assert_eq!(percent_decode(b"%252F%2f%zz%4"), b"%2F/%zz%4");
        assert_eq!(percent_decode(b"%41"), b"A");
        assert_eq!(percent_decode(b"%"), b"%");
    }
}
