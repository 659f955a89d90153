//! The one path normaliser: routes are matched on its output and the upstream receives exactly
//! that output.
//!
//! Route bypasses in session proxies come from two parsers disagreeing about a path: the proxy
//! matches `/public/../admin` or `/admin;x` or `/%61dmin` one way and the app routes it another.
//! Doorman removes the disagreement instead of guessing the app's parser: it rewrites the path
//! into a form every parser reads the same way, and refuses what has no such form.
//!
//! * percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded, so `%61dmin`
//!   is `admin`; every other escape is kept, with upper-case hex;
//! * `//` collapses to `/`, and `.` / `..` segments are resolved (RFC 3986 §5.2.4);
//! * refused with 400, never forwarded: `%2F` and `%5C` (an encoded separator that some
//!   upstreams decode before routing), encoded control characters (`%00`–`%1F`, `%7F`), a raw
//!   backslash, `;` anywhere in a segment (Tomcat-style path parameters), a malformed `%`,
//!   `..` above the root, and anything that is not an origin-form path.
//!
//! The query string is not touched and never matched.

use std::fmt;

use http::uri::{PathAndQuery, Uri};

use crate::encoding::{hex_pair, push_escape};

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path (`*`, empty, no leading `/`).
    NotOriginForm,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: an encoded path separator.
    EncodedSeparator,
    /// `%00`–`%1F` or `%7F`.
    EncodedControl,
    /// A raw `\`.
    Backslash,
    /// `;` inside a segment.
    Semicolon,
    /// `..` that would climb above `/`.
    AboveRoot,
    /// A byte that has no place in a URI path.
    InvalidByte,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "path must start with /",
            PathError::BadEscape => "malformed percent-escape",
            PathError::EncodedSeparator => "encoded / or \\ in path",
            PathError::EncodedControl => "encoded control character in path",
            PathError::Backslash => "backslash in path",
            PathError::Semicolon => "; in path segment",
            PathError::AboveRoot => ".. above the root",
            PathError::InvalidByte => "invalid character in path",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalise `raw` (the path of a request target, without the query).
pub fn normalise(raw: &str) -> Result<String, PathError> {
    // Almost every path a client sends is already normal: say so in one pass, one allocation.
    if is_normal(raw) {
        return Ok(raw.to_string());
    }
    rewrite(raw)
}

/// A request's normalised path ([`normalise_target`]); derefs to the path.
#[derive(Debug, Clone)]
pub struct NormalPath(Normal);

#[derive(Debug, Clone)]
enum Normal {
    /// The request's own target, its path normal as sent: shared with the request (a
    /// reference count), not copied.
    Sent(PathAndQuery),
    /// A path normalised elsewhere, or rewritten.
    Owned(String),
}

impl NormalPath {
    /// The request target this path came from, when the path was normal as the client sent
    /// it: what the upstream can receive as it is, query and all.
    pub fn sent(&self) -> Option<&PathAndQuery> {
        match &self.0 {
            Normal::Sent(target) => Some(target),
            Normal::Owned(_) => None,
        }
    }

    /// `/`, for an exchange whose path was never recorded.
    pub fn root() -> &'static NormalPath {
        static ROOT: std::sync::LazyLock<NormalPath> =
            std::sync::LazyLock::new(|| NormalPath::from(String::from("/")));
        &ROOT
    }
}

impl From<String> for NormalPath {
    /// A path already normalised ([`normalise`]'s output).
    fn from(path: String) -> NormalPath {
        NormalPath(Normal::Owned(path))
    }
}

impl std::ops::Deref for NormalPath {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match &self.0 {
            Normal::Sent(target) => target.path(),
            Normal::Owned(path) => path,
        }
    }
}

/// Normalise the path of the request target `uri`, as [`normalise`] does. A path that is
/// normal already (almost every one) is kept as the request's own bytes, where a copy cost an
/// allocation per request.
pub fn normalise_target(uri: &Uri) -> Result<NormalPath, PathError> {
    let raw = uri.path();
    match uri.path_and_query() {
        // The target's path is `raw` (both read `/` for an empty one).
        Some(target) if is_normal(raw) => Ok(NormalPath(Normal::Sent(target.clone()))),
        _ => rewrite(raw).map(NormalPath::from),
    }
}

/// Whether `raw` is its own normal form: origin-form, only plain path bytes (no `%`, `;` or
/// `\`), no empty segment but a trailing one, no `.` or `..` segment. [`rewrite`] returns such
/// a path unchanged (tested below), so it can be taken as it is.
fn is_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // One pass over the bytes, each segment judged at the `/` (or end) that closes it: a
    // `split('/')` paid a char search per segment, more than the checks themselves.
    let mut start = 1;
    for end in 1..=bytes.len() {
        let Some(&b) = bytes.get(end).filter(|&&b| b != b'/') else {
            match &bytes[start..end] {
                // An empty segment is normal only last (a trailing `/`).
                b"" if end < bytes.len() => return false,
                b"." | b".." => return false,
                _ => start = end + 1,
            }
            continue;
        };
        if !is_path_byte(b) {
            return false;
        }
    }
    true
}

/// The general case of [`normalise`]: decode, refuse, collapse, resolve.
fn rewrite(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // Pass 1: decode unreserved escapes, canonicalise the rest, refuse what is ambiguous.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
                let value = hex_pair(hex[0], hex[1]).ok_or(PathError::BadEscape)?;
                match value {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0x00..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                    v if is_unreserved(v) => decoded.push(char::from(v)),
                    v => push_escape(&mut decoded, v),
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b if is_path_byte(b) => decoded.push(char::from(b)),
            _ => return Err(PathError::InvalidByte),
        }
        i += 1;
    }
    // Pass 2: collapse empty segments and resolve dot-segments.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = decoded.ends_with('/');
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." => trailing_slash = true,
            ".." => {
                out.pop().ok_or(PathError::AboveRoot)?;
                trailing_slash = true;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    trailing_slash |= decoded.ends_with('/');
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// RFC 3986 §2.3 unreserved characters.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes RFC 3986 allows raw in a path (`pchar` and `/`), less `%` and `;` handled above.
/// Read from [`PATH_BYTES`]: every byte of every request's path is judged here, and a load
/// costs less than the dozen compares of [`is_path_byte_by_rule`].
fn is_path_byte(b: u8) -> bool {
    PATH_BYTES[usize::from(b)]
}

/// [`is_path_byte_by_rule`] for each byte value, worked out at compile time.
const PATH_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < table.len() {
        table[b] = is_path_byte_by_rule(b as u8);
        b += 1;
    }
    table
};

/// The rule [`PATH_BYTES`] is made from.
const fn is_path_byte_by_rule(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_byte_table_holds_rfc_3986s_path_characters_less_percent_and_semicolon() {
        // 66 unreserved (letters, digits, `-._~`), the sub-delims but `;` (10), `:`, `@`, `/`.
        assert_eq!(PATH_BYTES.iter().filter(|&&allowed| allowed).count(), 79);
        for b in *b"azAZ09-._~/!$&'()*+,=:@" {
            assert!(is_path_byte(b), "{:?} is a path byte", char::from(b));
        }
        for b in [
            b'%', b';', b'\\', b'?', b'#', b' ', b'"', b'<', b'[', 0, 0x7f, 0x80, 0xff,
        ] {
            assert!(!is_path_byte(b), "{:?} is not a path byte", char::from(b));
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_rewrite() {
        let cases = [
            "/",
            "/a",
            "/a/",
            "/a/b",
            "/a//b",
            "//",
            "/a/.",
            "/a/..",
            "/./a",
            "/../a",
            "/.a",
            "/..a",
            "/a..",
            "/a/b/",
            "/%61",
            "/a;b",
            "/a\\b",
            "/a b",
            "/~x-y_z.w",
            "/a/./b/",
            "",
            "a",
            "/\u{e9}",
            "/a//",
            "/:@!$&'()*+,=",
        ];
        for raw in cases {
            if is_normal(raw) {
                assert_eq!(rewrite(raw).as_deref(), Ok(raw), "{raw:?}");
            }
        }
        for raw in ["/", "/a", "/a/", "/public/x/y"] {
            assert!(is_normal(raw), "{raw:?}");
        }
    }

    #[test]
    fn a_target_reads_as_its_path_normalised_and_keeps_the_request_bytes_only_when_normal() {
        for target in [
            "/",
            "/a/b?q=1",
            "/a//b?x=%2F",
            "/%61dmin?",
            "/a/../b",
            "/a;b",
            "http://h.example",
            "http://h.example/a/./b?z",
        ] {
            let uri: Uri = target.parse().unwrap();
            let want = normalise(uri.path());
            let got = normalise_target(&uri);
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                want.as_deref().map_err(|e| *e),
                "{target}"
            );
            if let Ok(got) = got {
                assert_eq!(
                    got.sent().is_some(),
                    is_normal(uri.path()),
                    "{target}: shared with the request exactly when normal as sent"
                );
            }
        }
    }

    #[test]
    fn normal_paths_are_unchanged() {
        for p in [
            "/",
            "/dashboard",
            "/dashboard/",
            "/a/b/c",
            "/a-b_c.d~e",
            "/%C3%A9t%C3%A9",
            "/a:b@c+d,e=f",
        ] {
            assert_eq!(normalise(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn equivalent_spellings_become_one() {
        for (raw, want) in [
            ("//dashboard", "/dashboard"),
            ("/a//b///c", "/a/b/c"),
            ("/./dashboard", "/dashboard"),
            ("/public/../dashboard", "/dashboard"),
            ("/public/%2e%2e/dashboard", "/dashboard"),
            ("/public/.%2E/dashboard", "/dashboard"),
            ("/%64ashboard", "/dashboard"),
            ("/%7euser", "/~user"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/../..", "/"),
            ("/%c3%a9", "/%C3%A9"),
            ("/a%20b", "/a%20b"),
        ] {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/admin%2Fx", PathError::EncodedSeparator),
            ("/admin%2fx", PathError::EncodedSeparator),
            ("/admin%5Cx", PathError::EncodedSeparator),
            ("/admin%00", PathError::EncodedControl),
            ("/admin%0a", PathError::EncodedControl),
            ("/admin%09", PathError::EncodedControl),
            ("/admin%7F", PathError::EncodedControl),
            ("/admin\\x", PathError::Backslash),
            ("/admin;jsessionid=1", PathError::Semicolon),
            ("/admin;/x", PathError::Semicolon),
            ("/%", PathError::BadEscape),
            ("/%4", PathError::BadEscape),
            ("/%zz", PathError::BadEscape),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("*", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
            ("/a b", PathError::InvalidByte),
            ("/a\"b", PathError::InvalidByte),
        ] {
            assert_eq!(normalise(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in [
            "//a/./b/../c/",
            "/%7e/%41",
            "/x/%c3%a9/..",
            "/a/b/c/../../d",
        ] {
            let once = normalise(raw).unwrap();
            assert_eq!(normalise(&once).unwrap(), once, "{raw}");
        }
    }
}
