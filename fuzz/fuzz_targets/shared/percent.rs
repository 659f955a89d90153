//! Percent-decoding as the targets' reference rules state it, written apart from doorman's own
//! decoders (which the targets check against it): `%XX` with two hex digits is the byte, a
//! malformed escape stays literal, one pass (no double decoding).
#![allow(dead_code)] // each target uses its own part

/// The value of one hex digit.
pub fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `s` decoded once; with `plus_is_space` (form bodies) a `+` is a space.
pub fn decode(s: &[u8], plus_is_space: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' if plus_is_space => out.push(b' '),
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
    out
}
