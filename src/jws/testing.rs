//! Test tokens for the verifier's tests and the OpenID provider's: keys ring makes (RSA: the
//! committed fixture, as ring cannot make RSA keys), and compact JWS signed by hand, so a test
//! can make any header and any algorithm, including the ones doorman's signer refuses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Value};

/// The RSA-2048 test key pair of tests/fixtures (PKCS#8 DER, and its public JWK).
const RSA_PKCS8: &[u8] = include_bytes!("../../tests/fixtures/test-rsa2048-jws.pk8.der");
const RSA_JWK: &str = include_str!("../../tests/fixtures/test-rsa2048-jws.jwk.json");

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn signature::RsaEncoding),
}

/// A private key that signs test tokens with one algorithm.
pub(crate) struct TestKey {
    alg: &'static str,
    kid: String,
    pair: Pair,
}

impl TestKey {
    /// A fresh P-256 key (`ES256`).
    pub(crate) fn es256(kid: &str) -> TestKey {
        TestKey::ec(kid, "ES256", &signature::ECDSA_P256_SHA256_FIXED_SIGNING)
    }

    /// A fresh P-384 key (`ES384`).
    pub(crate) fn es384(kid: &str) -> TestKey {
        TestKey::ec(kid, "ES384", &signature::ECDSA_P384_SHA384_FIXED_SIGNING)
    }

    fn ec(kid: &str, alg: &'static str, how: &'static signature::EcdsaSigningAlgorithm) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(how, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(how, pkcs8.as_ref(), &rng).unwrap();
        TestKey {
            alg,
            kid: kid.into(),
            pair: Pair::Ec(pair),
        }
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub(crate) fn ed25519(kid: &str) -> TestKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        TestKey {
            alg: "EdDSA",
            kid: kid.into(),
            pair: Pair::Ed(pair),
        }
    }

    /// The fixture RSA key, signing with `alg` (`RS256`, `PS384`, ...).
    pub(crate) fn rsa(kid: &str, alg: &'static str) -> TestKey {
        let encoding: &'static dyn signature::RsaEncoding = match alg {
            "RS256" => &signature::RSA_PKCS1_SHA256,
            "RS384" => &signature::RSA_PKCS1_SHA384,
            "RS512" => &signature::RSA_PKCS1_SHA512,
            "PS256" => &signature::RSA_PSS_SHA256,
            "PS384" => &signature::RSA_PSS_SHA384,
            "PS512" => &signature::RSA_PSS_SHA512,
            other => panic!("not an RSA algorithm: {other}"),
        };
        let pair = RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
        TestKey {
            alg,
            kid: kid.into(),
            pair: Pair::Rsa(pair, encoding),
        }
    }

    /// The public half as a JWK with `kid`, `use` and `alg`.
    pub(crate) fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.pair {
            Pair::Ec(pair) => {
                // 0x04 || x || y
                let point = pair.public_key().as_ref();
                let (x, y) = point[1..].split_at((point.len() - 1) / 2);
                let crv = if self.alg == "ES256" {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({ "kty": "EC", "crv": crv, "x": b64(x), "y": b64(y) })
            }
            Pair::Ed(pair) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()) })
            }
            Pair::Rsa(..) => {
                let fixture: Value = serde_json::from_str(RSA_JWK).unwrap();
                json!({ "kty": "RSA", "n": fixture["n"], "e": fixture["e"] })
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg);
        jwk
    }

    /// A token with `claims`, header `{alg, typ: JWT, kid}`.
    pub(crate) fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({ "alg": self.alg, "typ": "JWT", "kid": self.kid }),
            claims,
        )
    }

    /// A token with exactly `header` and `claims`, signed by this key whatever the header says.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", part(header), part(claims));
        let rng = SystemRandom::new();
        let sig = match &self.pair {
            Pair::Ec(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// A JSON value as a compact JWS part.
pub(crate) fn part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn the_fixture_jwk_is_the_public_half_of_the_fixture_key() {
    let pair = RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap();
    let public: signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    let jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
    assert_eq!(jwk["n"], URL_SAFE_NO_PAD.encode(&public.n));
    assert_eq!(jwk["e"], URL_SAFE_NO_PAD.encode(&public.e));
    assert_eq!(public.n.len(), 256, "2048 bits");
}
