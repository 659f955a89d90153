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
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex_lower(&mut s, bytes);
    s
}

/// Append `bytes` as lower-case hex. Every Redis lookup writes a session key's 64 digits: they
/// are written into a stack buffer and appended a chunk at a time, not pushed one `char` (a
/// UTF-8 encode and a capacity check) at a time, which cost ~700 instructions a key.
pub fn push_hex_lower(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    if bytes.len() < 16 {
        // A log tag's 4 bytes: a char at a time costs less than validating a chunk.
        for &b in bytes {
            let [hi, lo] = PAIRS[usize::from(b)];
            out.push(char::from(hi));
            out.push(char::from(lo));
        }
        return;
    }
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        write_hex_lower(&mut buf, chunk);
        // Only ASCII digits and letters were written: this never fails.
        if let Ok(digits) = std::str::from_utf8(&buf[..chunk.len() * 2]) {
            out.push_str(digits);
        }
    }
}

/// Each byte's two lower-case hex digits.
const PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// Write `bytes` as lower-case hex digits into the start of `out` (as many bytes as fit:
/// two digits each), for callers that keep the digits inline.
pub fn write_hex_lower(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_across_chunks() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_lower(&bytes), expected);
        assert_eq!(hex_lower(&[]), "");
        assert_eq!(hex_lower(&[0x0f, 0xa0, 0x00, 0xff]), "0fa000ff");
        let mut s = String::from("p:");
        push_hex_lower(&mut s, &[0xab; 33]);
        assert_eq!(s, format!("p:{}", "ab".repeat(33)));
    }

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
