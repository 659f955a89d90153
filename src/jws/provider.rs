//! jsonwebtoken's cryptography, done by ring.
//!
//! jsonwebtoken 10 leaves its cryptography to a process-wide [`CryptoProvider`]; its own two
//! are aws-lc-rs (which doorman keeps out of its graph: it builds about twice as slowly as ring
//! here) and RustCrypto (which brings the `rsa` crate and its open timing advisory,
//! RUSTSEC-2023-0071). ring is already in the graph for TLS and session ids, so this provider
//! is ring, and does exactly what doorman needs:
//!
//! * **signing: EdDSA only.** Doorman signs one thing, its identity assertion (DESIGN.md §9),
//!   with Ed25519; no other algorithm can make a token through it.
//! * **verifying: the public-key algorithms an OpenID provider signs ID tokens with** (§10):
//!   RS256/384/512 (PKCS#1 v1.5) and PS256/384/512 (PSS) with RSA keys of 2048 to 8192 bits,
//!   ES256 (P-256) and ES384 (P-384), and EdDSA (Ed25519). Each algorithm is accepted only with
//!   a key of its own family (an RS256 header never gets an EC key checked as RSA).
//! * **never HS256/384/512.** An HMAC "signature" is checked with a secret shared with the
//!   provider, here the client secret: anyone holding it (every replica's config, the provider's
//!   admins) could mint ID tokens, and a verifier that accepts HMAC is the classic way to have a
//!   public key used as an HMAC secret. doorman verifies provider tokens with public keys only.
//!   Nor ES512: ring has no P-521.
//!
//! `jwk_utils` extracts public parts from *private* RSA/EC keys (jsonwebtoken's
//! `Jwk::from_encoding_key`); doorman holds no such keys, so those two refuse.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{new_error, Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{
    Ed25519KeyPair, KeyPair as _, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey,
    VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512,
};

static RING: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(new_error(ErrorKind::InvalidAlgorithm)),
        extract_ec_public_key_coordinates: |_, _| Err(new_error(ErrorKind::InvalidAlgorithm)),
        compute_digest,
    },
};

/// Make ring the provider jsonwebtoken uses in this process. Called before any key is loaded
/// or any token verified; calling it again does nothing.
pub fn install() {
    // Err: already installed (by an earlier call: nothing else in doorman installs one).
    let _ = RING.install_default();
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    // The key was checked when the config was loaded (v1 or v2 PKCS#8, see `keys`).
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))?;
    Ok(Box::new(Signer(pair)))
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let refused = || new_error(ErrorKind::InvalidAlgorithm);
    if alg.family() != key.family() {
        return Err(refused());
    }
    let key = match (alg, key.kind()) {
        (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(raw)) => Key::Raw(&ED25519, raw.clone()),
        // The uncompressed point (0x04 || x || y) `DecodingKey::from_ec_components` builds; a
        // point of the other curve's size fails verification.
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
            Key::Raw(&ECDSA_P256_SHA256_FIXED, point.clone())
        }
        (Algorithm::ES384, DecodingKeyKind::SecretOrDer(point)) => {
            Key::Raw(&ECDSA_P384_SHA384_FIXED, point.clone())
        }
        (rsa, kind) => {
            let params = rsa_parameters(*rsa).ok_or_else(refused)?;
            match kind {
                // A JWK's modulus and exponent.
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    Key::Rsa(params, n.clone(), e.clone())
                }
                // `DecodingKey::from_rsa_der`: a PKCS#1 RSAPublicKey, as ring reads it.
                DecodingKeyKind::SecretOrDer(der) => Key::Raw(params, der.clone()),
            }
        }
    };
    Ok(Box::new(Verifier { alg: *alg, key }))
}

/// The ring parameters of an RSA algorithm; `None` for every other algorithm.
fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let alg = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
    };
    ring::digest::digest(alg, data).as_ref().to_vec()
}

struct Signer(Ed25519KeyPair);

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// A public key and the one ring algorithm it is checked with.
enum Key {
    /// In the form `UnparsedPublicKey` takes: raw Ed25519, an EC point, a PKCS#1 RSA key.
    Raw(&'static dyn VerificationAlgorithm, Vec<u8>),
    /// An RSA key as modulus and exponent (big-endian).
    Rsa(&'static RsaParameters, Vec<u8>, Vec<u8>),
}

struct Verifier {
    alg: Algorithm,
    key: Key,
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match &self.key {
            Key::Raw(alg, key) => UnparsedPublicKey::new(*alg, key).verify(msg, sig),
            Key::Rsa(params, n, e) => RsaPublicKeyComponents { n, e }.verify(params, msg, sig),
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The public half of a PKCS#8 Ed25519 key ring accepts (for `keys`).
pub(super) fn public_key(pkcs8: &[u8]) -> Option<[u8; 32]> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8))
        .ok()?;
    pair.public_key().as_ref().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{part, TestKey};
    use super::*;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{decode, Validation};
    use serde_json::{json, Value};

    fn claims() -> Value {
        json!({ "sub": "alice", "iss": "https://sso.example" })
    }

    fn key_of(test: &TestKey) -> DecodingKey {
        let jwk: Jwk = serde_json::from_value(test.jwk()).unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    }

    /// Verify `token` with `key`, pinned to `alg`, checking no claim (these tests are about the
    /// signature).
    fn verify(token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Value, ErrorKind> {
        install();
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        decode::<Value>(token, key, &v)
            .map(|data| data.claims)
            .map_err(|e| e.into_kind())
    }

    #[test]
    fn tokens_of_every_accepted_algorithm_verify_with_their_jwk() {
        let keys = [
            (TestKey::es256("ec"), Algorithm::ES256),
            (TestKey::es384("ec384"), Algorithm::ES384),
            (TestKey::ed25519("ed"), Algorithm::EdDSA),
            (TestKey::rsa("rsa", "RS256"), Algorithm::RS256),
            (TestKey::rsa("rsa", "RS384"), Algorithm::RS384),
            (TestKey::rsa("rsa", "RS512"), Algorithm::RS512),
            (TestKey::rsa("rsa", "PS256"), Algorithm::PS256),
            (TestKey::rsa("rsa", "PS384"), Algorithm::PS384),
            (TestKey::rsa("rsa", "PS512"), Algorithm::PS512),
        ];
        for (test, alg) in keys {
            let token = test.token(&claims());
            assert_eq!(verify(&token, &key_of(&test), alg), Ok(claims()), "{alg:?}");
        }
    }

    #[test]
    fn a_wrong_signature_is_refused() {
        for test in [
            TestKey::es256("ec"),
            TestKey::ed25519("ed"),
            TestKey::rsa("rsa", "RS256"),
        ] {
            let token = test.token(&claims());
            let alg = jsonwebtoken::decode_header(&token).unwrap().alg;
            // Another payload under the same signature.
            let (head, rest) = token.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            let forged = format!("{head}.{}.{sig}", part(&json!({ "sub": "mallory" })));
            assert_eq!(
                verify(&forged, &key_of(&test), alg),
                Err(ErrorKind::InvalidSignature)
            );
            // The right payload, checked against another key of the same kind.
            let other = match alg {
                Algorithm::ES256 => TestKey::es256("ec"),
                Algorithm::EdDSA => TestKey::ed25519("ed"),
                _ => continue, // one RSA fixture
            };
            assert_eq!(
                verify(&token, &key_of(&other), alg),
                Err(ErrorKind::InvalidSignature)
            );
        }
    }

    #[test]
    fn an_algorithm_is_checked_only_with_a_key_of_its_own_family() {
        let ec = TestKey::es256("ec");
        // An RS256 header over an EC key: refused before any signature is checked.
        let token = ec.sign(&json!({ "alg": "RS256", "kid": "ec" }), &claims());
        assert_eq!(
            verify(&token, &key_of(&ec), Algorithm::RS256),
            Err(ErrorKind::InvalidAlgorithm)
        );
        // And the other way round: an RSA key for an ES256 token.
        let rsa = TestKey::rsa("rsa", "RS256");
        let token = ec.token(&claims());
        assert_eq!(
            verify(&token, &key_of(&rsa), Algorithm::ES256),
            Err(ErrorKind::InvalidAlgorithm)
        );
        // ES256 against a P-384 point (same family, other curve): never valid.
        let p384 = TestKey::es384("ec384");
        assert_eq!(
            verify(&token, &key_of(&p384), Algorithm::ES256),
            Err(ErrorKind::InvalidSignature)
        );
    }

    #[test]
    fn hmac_and_none_are_refused() {
        // HS256 "signed" with a key anyone holding the JWK (or the client secret) could use.
        let ec = TestKey::es256("ec");
        let input = format!("{}.{}", part(&json!({ "alg": "HS256" })), part(&claims()));
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"client-secret"),
            input.as_bytes(),
        );
        use base64::Engine as _;
        let token = format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        let secret = DecodingKey::from_secret(b"client-secret");
        assert_eq!(
            verify(&token, &secret, Algorithm::HS256),
            Err(ErrorKind::InvalidAlgorithm)
        );
        assert_eq!(
            verify(&token, &key_of(&ec), Algorithm::HS256),
            Err(ErrorKind::InvalidAlgorithm)
        );
        // `alg: none`, empty signature: not even a header jsonwebtoken reads.
        let none = format!("{}.{}.", part(&json!({ "alg": "none" })), part(&claims()));
        assert!(verify(&none, &key_of(&ec), Algorithm::ES256).is_err());
    }

    #[test]
    fn the_signer_still_signs_eddsa_only() {
        install();
        let header = jsonwebtoken::Header::new(Algorithm::ES256);
        let key = EncodingKey::from_ec_der(b"not used");
        let err = jsonwebtoken::encode(&header, &claims(), &key).unwrap_err();
        assert_eq!(err.into_kind(), ErrorKind::InvalidAlgorithm);
    }
}
