//! jsonwebtoken's cryptography, done by ring.
//!
//! jsonwebtoken 10 leaves its cryptography to a process-wide [`CryptoProvider`]; its own two
//! are aws-lc-rs (which doorman keeps out of its graph: it builds about twice as slowly as ring
//! here) and RustCrypto (which brings the `rsa` crate and its open timing advisory,
//! RUSTSEC-2023-0071, for an algorithm doorman never uses). ring is already in the graph for
//! TLS and session ids, and does Ed25519 and SHA-256, which is all the assertion needs: this
//! provider does EdDSA and nothing else, so a token can never be made, or checked, with any
//! other algorithm through it.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{new_error, Error, ErrorKind};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

static RING_EDDSA: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: |_| Err(new_error(ErrorKind::InvalidAlgorithm)),
        extract_ec_public_key_coordinates: |_, _| Err(new_error(ErrorKind::InvalidAlgorithm)),
        compute_digest,
    },
};

/// Make ring the provider jsonwebtoken uses in this process. Called before any key is loaded;
/// calling it again does nothing.
pub fn install() {
    // Err: already installed (by an earlier call: nothing else in doorman installs one).
    let _ = RING_EDDSA.install_default();
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
    if *alg != Algorithm::EdDSA || key.family() != AlgorithmFamily::Ed {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    Ok(Box::new(Verifier(key.as_bytes().to_vec())))
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

/// A raw 32-byte Ed25519 public key.
struct Verifier(Vec<u8>);

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// The public half of a PKCS#8 Ed25519 key ring accepts (for `keys`).
pub(super) fn public_key(pkcs8: &[u8]) -> Option<[u8; 32]> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
        .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8))
        .ok()?;
    pair.public_key().as_ref().try_into().ok()
}
