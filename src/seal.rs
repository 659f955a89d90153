//! Sealing: authenticated encryption under a 32-byte key (ChaCha20-Poly1305, ring).
//!
//! Two users. The `[oidc]` state key: the sign-in flow's secrets travel in a cookie rather than the store (starting a flow writes
//! nothing, two tabs can sign in at once, and a flow started on one replica finishes on
//! another that shares the key), so the cookie must be both unreadable and unforgeable by the
//! browser holding it. The same key seals the ID token a session keeps for logout's
//! `id_token_hint`, so a store dump does not hold it in the clear.
//!
//! And the take-over records of express-session cookies (`session::express`), sealed under a key
//! derived from each cookie, so a store dump does not name the doorman session they stand for.
//!
//! Each sealing binds its purpose as associated data (the flow cookie's name; for an ID token,
//! its session's user): a sealed value moved to another cookie or another user's session does
//! not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

/// The key length, in bytes.
pub const KEY_LEN: usize = 32;

/// A key, ready to seal and open.
pub struct Sealer(LessSafeKey);

impl Sealer {
    /// A sealer for `key` (`None` never happens for a 32-byte key: ChaCha20-Poly1305 takes
    /// any).
    pub fn new(key: &[u8; KEY_LEN]) -> Option<Sealer> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).ok()?;
        Some(Sealer(LessSafeKey::new(unbound)))
    }

    /// `plaintext` sealed for `purpose`: base64url of a random nonce, the ciphertext and its
    /// tag. `None` only when the OS random source fails.
    pub fn seal(&self, plaintext: &[u8], purpose: &[u8]) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose),
                &mut out[NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// What [`seal`](Sealer::seal) sealed for the same `purpose`; `None` for anything else
    /// (another key, another purpose, a changed byte, not base64url).
    pub fn open(&self, sealed: &str, purpose: &[u8]) -> Option<Vec<u8>> {
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + 16 {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&bytes[..NONCE_LEN]).ok()?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(purpose), &mut bytes[NONCE_LEN..])
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_purpose() {
        let sealer = Sealer::new(&[7; 32]).unwrap();
        let sealed = sealer.seal(b"verifier and nonce", b"cookie-a").unwrap();
        assert!(!sealed.contains("verifier"));
        assert_eq!(
            sealer.open(&sealed, b"cookie-a").as_deref(),
            Some(&b"verifier and nonce"[..])
        );
        assert_eq!(sealer.open(&sealed, b"cookie-b"), None);
        assert_eq!(
            Sealer::new(&[8; 32]).unwrap().open(&sealed, b"cookie-a"),
            None
        );
        // Every byte is covered by the tag.
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let changed = URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(sealer.open(&changed, b"cookie-a"), None, "byte {i}");
            raw[i] ^= 1;
        }
        assert_eq!(sealer.open("", b"cookie-a"), None);
        assert_eq!(sealer.open("not base64!", b"cookie-a"), None);
        // Two seals of one value differ (a fresh nonce each time).
        assert_ne!(sealer.seal(b"x", b"p"), sealer.seal(b"x", b"p"));
    }
}
