//! `doorman::path::normalise`, the one path normaliser (src/path.rs), against its documented
//! contract:
//!
//! * it never panics, and it agrees with an independent reading of its rules: the path is
//!   accepted exactly when the rules accept it, and the output is the rules' output (decode
//!   the unreserved escapes only, upper-case the others, collapse `//`, resolve `.` and `..`);
//! * the output is normal: it starts with `/`, has no empty segment but a trailing one, no
//!   `.` or `..` segment, only path bytes and upper-case `%XX` escapes of bytes that are not
//!   unreserved, and normalising it again changes nothing;
//! * percent-decoding the output once yields no `.` or `..` segment, no `\`, no control
//!   character, and no `/` that is not one of the output's own separators (no `%2F`/`%5C`
//!   survives).
//!
//! What the normaliser does not promise, and this target does not assert: a second decoding
//! (`%252F` is kept as `%252F`; once decoded it reads `%2F`). It keeps every escape that is not
//! of an unreserved character, `%25` among them, as RFC 3986 asks; an upstream that decodes a
//! path twice is outside what any normaliser can make unambiguous.

#![no_main]

use libfuzzer_sys::fuzz_target;

// Shared by several targets; not a target itself (scripts/fuzz runs fuzz_targets/*.rs).
#[path = "shared/percent.rs"]
mod percent;
use percent::hex;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let got = doorman::path::normalise(&raw);
    let want = reference(raw.as_bytes());
    match (&got, &want) {
        (Ok(out), Some(expected)) => {
            assert_eq!(out, expected, "normalise({raw:?}) disagrees with its rules");
            check_normal(out);
            let again = doorman::path::normalise(out);
            assert_eq!(
                again.as_ref(),
                Ok(out),
                "normalising {out:?} again changed it"
            );
        }
        (Err(_), None) => {}
        (Ok(out), None) => panic!("normalise({raw:?}) = {out:?}, but the rules refuse it"),
        (Err(e), Some(expected)) => {
            panic!("normalise({raw:?}) refused ({e}), but the rules give {expected:?}")
        }
    }
});

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// `pchar` of RFC 3986 without `%` (escapes are checked apart) and without `;`, plus `/`.
fn is_path_byte(b: u8) -> bool {
    is_unreserved(b) || b"/!$&'()*+,=:@".contains(&b)
}

/// The normaliser's rules as the module documentation states them, written apart from it:
/// `None` where they refuse the path.
fn reference(raw: &[u8]) -> Option<String> {
    if raw.first() != Some(&b'/') {
        return None;
    }
    // Decode: one pass over the bytes.
    let mut decoded = String::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (hi, lo) = (hex(*raw.get(i + 1)?)?, hex(*raw.get(i + 2)?)?);
            let v = hi * 16 + lo;
            if v == b'/' || v == b'\\' || v < 0x20 || v == 0x7f {
                return None;
            }
            if is_unreserved(v) {
                decoded.push(v as char);
            } else {
                decoded.push_str(&format!("%{v:02X}"));
            }
            i += 3;
        } else if is_path_byte(b) {
            decoded.push(b as char);
            i += 1;
        } else {
            return None; // `\`, `;`, and every byte that has no place in a path
        }
    }
    // Resolve: segments after the leading `/`.
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in decoded[1..].split('/') {
        match segment {
            "" | "." => trailing = true,
            ".." => {
                stack.pop()?;
                trailing = true;
            }
            s => {
                stack.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::from("/");
    out.push_str(&stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    Some(out)
}

fn check_normal(out: &str) {
    let bytes = out.as_bytes();
    assert_eq!(bytes.first(), Some(&b'/'), "{out:?} does not start with /");
    let segments: Vec<&str> = out[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!s.is_empty() || last, "{out:?} has an empty segment");
        assert!(*s != "." && *s != "..", "{out:?} has a dot segment");
    }
    // Bytes: path bytes, or `%XX` with upper-case hex naming a byte that is not unreserved.
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = &bytes[i + 1..i + 3];
            assert!(
                pair.iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                "{out:?}: escape not in upper-case hex"
            );
            let v = hex(pair[0]).unwrap() * 16 + hex(pair[1]).unwrap();
            assert!(!is_unreserved(v), "{out:?}: escaped unreserved byte");
            i += 3;
        } else {
            assert!(is_path_byte(bytes[i]), "{out:?}: byte {:#04x}", bytes[i]);
            i += 1;
        }
    }
    // Decoded once, segment by segment (a decoded `/` would show as an extra segment).
    for s in &segments {
        let mut d = Vec::new();
        let sb = s.as_bytes();
        let mut j = 0;
        while j < sb.len() {
            if sb[j] == b'%' {
                d.push(hex(sb[j + 1]).unwrap() * 16 + hex(sb[j + 2]).unwrap());
                j += 3;
            } else {
                d.push(sb[j]);
                j += 1;
            }
        }
        assert!(d != b"." && d != b"..", "{out:?} decodes to a dot segment");
        for b in d {
            assert!(b != b'/' && b != b'\\', "{out:?} decodes to {b:#04x}");
            assert!(b >= 0x20 && b != 0x7f, "{out:?} decodes to a control byte");
        }
    }
}
