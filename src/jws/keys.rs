//! Ed25519 key files: read (PKCS#8 PEM, v1 as `openssl genpkey -algorithm ed25519` writes it or
//! v2 as ring and `doorman keys generate` write it), made, and described as JWKs.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::EncodingKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;

/// One Ed25519 key from a key file: what signs (the current key) or what is published (all).
pub struct Key {
    /// The private key, as jsonwebtoken signs with it.
    pub(super) encoding: EncodingKey,
    /// The public half, raw (32 bytes).
    public: [u8; 32],
    /// RFC 7638 thumbprint of the public JWK: the `kid` of tokens this key signs.
    kid: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        f.debug_struct("Key").field("kid", &self.kid).finish()
    }
}

impl Key {
    /// Read a PKCS#8 PEM Ed25519 private key file; the message says what is wrong with it.
    pub fn load(path: &Path) -> Result<Key, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| {
            format!(
                "{}: no unencrypted PKCS#8 private key (\"BEGIN PRIVATE KEY\"); make one with \
                 `doorman keys generate --out FILE`",
                path.display()
            )
        })?;
        Key::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<Key, String> {
        super::provider::install();
        let public = super::provider::public_key(der)
            .ok_or("not an Ed25519 private key (doorman signs with Ed25519 only)")?;
        let mut key = Key {
            encoding: EncodingKey::from_ed_der(der),
            public,
            kid: String::new(),
        };
        key.kid = key.jwk().thumbprint(ThumbprintHash::SHA256);
        Ok(key)
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK, with `kid`, `alg` and `use` once the kid is known.
    pub fn jwk(&self) -> Jwk {
        let known = !self.kid.is_empty();
        Jwk {
            common: CommonParameters {
                public_key_use: known.then_some(PublicKeyUse::Signature),
                key_algorithm: known.then_some(KeyAlgorithm::EdDSA),
                key_id: known.then(|| self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(self.public),
            }),
        }
    }
}

/// PKCS#8 v1 (RFC 8410 §7) of an Ed25519 key, up to its 32-byte seed: `SEQUENCE { INTEGER 0,
/// AlgorithmIdentifier { id-Ed25519 }, OCTET STRING { OCTET STRING (32 bytes) } }`.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A new Ed25519 private key from the OS's CSPRNG, as PKCS#8 PEM.
///
/// Written as v1, the form `openssl genpkey -algorithm ed25519` writes, rather than the v2 ring
/// makes (`Ed25519KeyPair::generate_pkcs8`): OpenSSL 3.0, and so Python's `cryptography`,
/// cannot read ring's v2, and an operator should be able to inspect the key with them
/// (`openssl pkey -in F -pubout`). An Ed25519 private key is its 32-byte seed; the public half
/// is derived from it.
pub fn generate_pem() -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "the system random number generator failed".to_string())?;
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    // What doorman writes, it must read.
    Key::from_pkcs8(&der)?;
    let b64 = STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

#[cfg(test)]
pub mod tests {
    //! Key tests, and RFC 8037's key for the other tests of `jws` and `identity`.

    use super::*;

    /// RFC 8037 Appendix A.1's private key, as PKCS#8 v1 DER (the RFC's `d`, wrapped).
    pub(crate) fn rfc8037_key() -> Key {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let mut der = PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&d);
        Key::from_pkcs8(&der).unwrap()
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint_of_rfc_8037s_key() {
        let key = rfc8037_key();
        // RFC 8037 A.2's public key, and A.3's thumbprint of it.
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        assert_eq!(jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(jwk["kid"], key.kid());
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
    }

    #[test]
    fn generated_keys_load_back_and_differ() {
        let dir = crate::scratch::Scratch::new("keys");
        let (a, b) = (dir.join("a.pem"), dir.join("b.pem"));
        std::fs::write(&a, generate_pem().unwrap()).unwrap();
        std::fs::write(&b, generate_pem().unwrap()).unwrap();
        let (a, b) = (Key::load(&a).unwrap(), Key::load(&b).unwrap());
        assert_ne!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 43);
    }

    #[test]
    fn ring_pkcs8_v2_keys_load_too() {
        let rng = ring::rand::SystemRandom::new();
        let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        assert_eq!(v2.as_ref()[4], 1, "version 1 means PKCS#8 v2");
        let key = Key::from_pkcs8(v2.as_ref()).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
        use ring::signature::KeyPair as _;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        assert_eq!(serde_json::to_value(key.jwk()).unwrap()["x"], x);
    }

    #[test]
    fn files_that_are_not_ed25519_keys_are_refused_with_a_reason() {
        let dir = crate::scratch::Scratch::new("badkeys");
        let missing = Key::load(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let e = Key::load(&garbage).unwrap_err();
        assert!(e.contains("no unencrypted PKCS#8 private key"), "{e}");
        // A PKCS#8 PEM of another algorithm (a P-256 key from rcgen).
        let p256 = dir.join("p256.pem");
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&p256, other.serialize_pem()).unwrap();
        let e = Key::load(&p256).unwrap_err();
        assert!(e.contains("not an Ed25519 private key"), "{e}");
    }
}
