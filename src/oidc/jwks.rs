//! The provider's signing keys (its JWKS), fetched when first needed and kept.
//!
//! * **Fetched lazily**, on the first verification, so a provider down at start-up does not
//!   matter until someone signs in.
//! * **Refetched on an unknown `kid`** (the provider rotated its keys), at most once per
//!   [`REFETCH_INTERVAL`] whatever the number of callbacks: a burst of tokens naming keys that
//!   do not exist must not turn doorman into a load generator against the provider.
//!   Concurrent callers that find a key missing wait for one fetch and then all use its result.
//! * **Refreshed after [`MAX_AGE`]**, so a key the provider withdrew (compromised) stops being
//!   accepted within that time. If that refresh fails, the keys already held stay in use (an
//!   outage of the provider's key endpoint must not refuse logins it could not tamper with),
//!   and the next attempt waits a [`REFETCH_INTERVAL`].
//! * **Only keys that can verify an ID token are kept**: public signature keys of the families
//!   doorman verifies (RSA, EC P-256/P-384, Ed25519); `use: enc`, symmetric (`oct`) keys, other
//!   curves and keys jsonwebtoken cannot read are skipped, so one odd key does not make the
//!   whole set unusable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::error::OidcError;
use super::http::HttpClient;
use crate::lock::lock;

/// The least time between two fetches caused by unknown keys.
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a fetched set is used before it is fetched again.
pub(super) const MAX_AGE: Duration = Duration::from_secs(3600);

/// The key family and curve a key belongs to; an algorithm verifies only with its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Kind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Kind::P256 => alg == ES256,
            Kind::P384 => alg == ES384,
            Kind::Ed25519 => alg == EdDSA,
        }
    }
}

struct Key {
    kid: Option<String>,
    kind: Kind,
    /// The JWK's `alg`, when it names a signature algorithm: the key verifies that one only.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// A fetched key set.
pub(super) struct KeySet {
    keys: Vec<Key>,
}

/// What a key set says about a token's `kid` and `alg`.
enum Lookup {
    Found(DecodingKey),
    /// No key of that `kid` (or, without `kid`, no key of the algorithm's family): a refetch
    /// may find it.
    Missing,
    /// Keys of that `kid`, none fitting the algorithm.
    Mismatch,
    /// No `kid`, and several keys could verify the token: which one is not doorman's guess.
    Ambiguous,
}

impl KeySet {
    /// Read a JWKS document, keeping the keys that can verify ID tokens.
    pub(super) fn parse(body: &[u8]) -> Result<KeySet, OidcError> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|_| OidcError::Jwks("not a JWK set (no \"keys\" list)".into()))?;
        let keys = raw.keys.into_iter().filter_map(usable).collect();
        Ok(KeySet { keys })
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let pick = |mut keys: Vec<&Key>| match keys.len() {
            0 => Lookup::Missing,
            1 => Lookup::Found(keys.remove(0).decoding.clone()),
            _ => Lookup::Ambiguous,
        };
        match kid {
            Some(kid) => {
                let named: Vec<&Key> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Lookup::Missing;
                }
                match named.into_iter().find(|k| k.fits(alg)) {
                    Some(key) => Lookup::Found(key.decoding.clone()),
                    None => Lookup::Mismatch,
                }
            }
            None => pick(self.keys.iter().filter(|k| k.fits(alg)).collect()),
        }
    }
}

/// One JWK, if it is a public signature key doorman can verify with.
fn usable(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = match serde_json::from_value(value) {
        Ok(jwk) => jwk,
        Err(error) => {
            tracing::debug!(%error, "provider JWK skipped: unreadable");
            return None;
        }
    };
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Kind::Ed25519
        }
        // Symmetric keys never verify a provider's token; other OKP curves are not signature
        // curves doorman verifies.
        _ => return None,
    };
    let alg = match common.key_algorithm {
        None => None,
        Some(named) => Some(signature_algorithm(named)?),
    };
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: common.key_id.clone(),
        kind,
        alg,
        decoding,
    })
}

/// The signature algorithm a JWK's `alg` names; `None` for encryption and HMAC algorithms
/// (such a key is not for verifying ID tokens).
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The cached key set of one provider.
#[derive(Default)]
pub(super) struct Jwks {
    cached: Mutex<Cached>,
    /// Bumped by every fetch, successful or not: a caller that waited for `fetching` and finds
    /// it moved knows a fetch happened meanwhile and uses its result instead of fetching again.
    generation: AtomicU64,
    /// Held while fetching; holds when the last fetch for an unknown key started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Cached {
    set: Option<Arc<KeySet>>,
    /// When the set must be fetched again before use.
    refresh_at: Option<Instant>,
}

impl Jwks {
    /// The key that verifies a token with `kid` and `alg`, from the cached set, fetching it
    /// from `uri` first when needed (see the module docs for when).
    pub(super) async fn key(
        &self,
        http: &HttpClient,
        uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let generation = self.generation.load(Ordering::Acquire);
        let (set, fresh) = self.current();
        if let (Some(set), true) = (&set, fresh) {
            match set.find(kid, alg) {
                Lookup::Missing => {}
                found => return answer(found),
            }
        }
        self.fetch(http, uri, generation, set.is_some() && fresh)
            .await?;
        match self.current().0 {
            Some(set) => answer(set.find(kid, alg)),
            None => Err(OidcError::Jwks("no key set (its fetch failed)".into())),
        }
    }

    /// The cached set and whether it may be used without a refresh.
    fn current(&self) -> (Option<Arc<KeySet>>, bool) {
        let cached = lock(&self.cached);
        let fresh = cached.refresh_at.is_some_and(|at| Instant::now() < at);
        (cached.set.clone(), fresh)
    }

    /// Fetch the set unless another caller did since `seen` (the generation this caller
    /// looked at), or, for an unknown key (`unknown_key`: a fresh set is cached), unless
    /// the last such fetch was less than [`REFETCH_INTERVAL`] ago. An error only when there
    /// is no set at all to fall back on.
    async fn fetch(
        &self,
        http: &HttpClient,
        uri: &str,
        seen: u64,
        unknown_key: bool,
    ) -> Result<(), OidcError> {
        let mut last_refetch = self.fetching.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        if unknown_key {
            if last_refetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return Ok(());
            }
            *last_refetch = Some(Instant::now());
        }
        let fetched = match http.get_json(uri).await {
            Ok(body) => KeySet::parse(&body),
            Err(e) if e.unreachable() => Err(OidcError::Unreachable(format!("jwks: {e}"))),
            Err(e) => Err(OidcError::Jwks(e.to_string())),
        };
        let now = Instant::now();
        let result = {
            let mut cached = lock(&self.cached);
            match fetched {
                Ok(set) => {
                    cached.set = Some(Arc::new(set));
                    cached.refresh_at = Some(now + MAX_AGE);
                    Ok(())
                }
                Err(error) if cached.set.is_some() => {
                    tracing::warn!(%error, "provider keys not refreshed; the keys held stay in use");
                    cached.refresh_at = Some(now + REFETCH_INTERVAL);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// Forget when the last refetch for an unknown key was (a test's minute passing).
    #[cfg(test)]
    pub(super) async fn forget_last_refetch(&self) {
        *self.fetching.lock().await = None;
    }
}

fn answer(lookup: Lookup) -> Result<DecodingKey, OidcError> {
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::Missing => Err(OidcError::UnknownKey("no key of the provider has this kid")),
        Lookup::Mismatch => Err(OidcError::KeyMismatch),
        Lookup::Ambiguous => Err(OidcError::UnknownKey(
            "no kid, and several keys of the provider fit the algorithm",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::testing::TestKey;
    use serde_json::json;

    fn set(keys: serde_json::Value) -> KeySet {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn found(lookup: Lookup) -> &'static str {
        match lookup {
            Lookup::Found(_) => "found",
            Lookup::Missing => "missing",
            Lookup::Mismatch => "mismatch",
            Lookup::Ambiguous => "ambiguous",
        }
    }

    #[test]
    fn keys_that_cannot_verify_id_tokens_are_skipped_not_fatal() {
        let ec = TestKey::es256("ec");
        let mut enc = TestKey::rsa("enc", "RS256").jwk();
        enc["use"] = json!("enc");
        let mut oaep = TestKey::rsa("oaep", "RS256").jwk();
        oaep["alg"] = json!("RSA-OAEP");
        let mut wrap_only = TestKey::es256("wrap").jwk();
        wrap_only["key_ops"] = json!(["wrapKey"]);
        let keys = set(json!([
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA" },
            { "kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA" },
            { "kty": "weird" },
            enc,
            oaep,
            wrap_only,
            ec.jwk(),
        ]));
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].kid.as_deref(), Some("ec"));
        assert!(KeySet::parse(b"{\"no\":[]}").is_err());
    }

    #[test]
    fn a_key_is_found_by_kid_and_must_fit_the_algorithm() {
        let keys = set(json!([
            TestKey::es256("ec").jwk(),
            TestKey::rsa("rsa", "RS256").jwk(),
            TestKey::es384("p384").jwk(),
        ]));
        assert_eq!(found(keys.find(Some("ec"), Algorithm::ES256)), "found");
        assert_eq!(found(keys.find(Some("rsa"), Algorithm::RS256)), "found");
        assert_eq!(found(keys.find(Some("nope"), Algorithm::ES256)), "missing");
        // An RS256 header naming the EC key; ES256 naming the P-384 key.
        assert_eq!(found(keys.find(Some("ec"), Algorithm::RS256)), "mismatch");
        assert_eq!(found(keys.find(Some("p384"), Algorithm::ES256)), "mismatch");
        // The JWK says RS256: the same key is not used for PS256.
        assert_eq!(found(keys.find(Some("rsa"), Algorithm::PS256)), "mismatch");
    }

    #[test]
    fn a_token_without_kid_uses_the_one_key_of_its_family() {
        let keys = set(json!([
            TestKey::es256("ec").jwk(),
            TestKey::rsa("rsa", "RS256").jwk()
        ]));
        assert_eq!(found(keys.find(None, Algorithm::ES256)), "found");
        assert_eq!(found(keys.find(None, Algorithm::RS256)), "found");
        assert_eq!(found(keys.find(None, Algorithm::EdDSA)), "missing");
        let two = set(json!([
            TestKey::es256("a").jwk(),
            TestKey::es256("b").jwk()
        ]));
        assert_eq!(found(two.find(None, Algorithm::ES256)), "ambiguous");
        let unnamed = TestKey::ed25519("x").jwk();
        let mut unnamed = unnamed.as_object().unwrap().clone();
        unnamed.remove("kid");
        let keys = set(json!([unnamed]));
        assert_eq!(found(keys.find(None, Algorithm::EdDSA)), "found");
        assert_eq!(found(keys.find(Some("x"), Algorithm::EdDSA)), "missing");
    }
}
