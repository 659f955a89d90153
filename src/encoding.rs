//! Hex and percent-encoding, written once for every module that needs them.
//!
//! Percent-encoding itself is the `percent-encoding` crate's (the url ecosystem's); this module
//! holds doorman's choices: which bytes a `next=` value keeps raw, and hex digits as the path
//! normaliser, the `next` check and session keys read and write them.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986 unreserved characters (`ALPHA DIGIT - . _ ~`) is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode everything but RFC 3986 unreserved characters, with upper-case hex: safe as
/// a query parameter's value whatever it holds (a `next=` value).
pub fn percent_encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The value of one hex digit, either case.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte a `%XX` escape's two digits name, if both are hex digits.
pub fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    Some(hex_digit(hi)? << 4 | hex_digit(lo)?)
}

/// Append `b` as a `%XX` escape with upper-case hex (RFC 3986 §2.1's recommended form).
#[inline]
pub fn push_escape(out: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(DIGITS[usize::from(b >> 4)]));
    out.push(char::from(DIGITS[usize::from(b & 0xf)]));
}

/// `bytes` as lower-case hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_values_are_fully_encoded() {
        assert_eq!(
            percent_encode_component("/a b/c?x=1&y=/"),
            "%2Fa%20b%2Fc%3Fx%3D1%26y%3D%2F"
        );
        assert_eq!(percent_encode_component("a-b.c_d~é"), "a-b.c_d~%C3%A9");
    }

    #[test]
    fn hex_reads_both_cases_and_writes_lower() {
        assert_eq!(hex_pair(b'2', b'f'), Some(0x2f));
        assert_eq!(hex_pair(b'2', b'F'), Some(0x2f));
        assert_eq!(hex_pair(b'g', b'0'), None);
        assert_eq!(hex_lower(&[0x00, 0xab, 0xff]), "00abff");
    }
}
