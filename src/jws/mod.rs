//! The signed identity assertion (DESIGN.md §9): an EdDSA JWS that tells an upstream who the
//! request is from in a form it can verify, so an app that can be reached other than through
//! doorman (or that wants proof, not a header) need not trust a plain `X-Auth-User`.
//!
//! [`Assertion`] is `[identity] assertion` once loaded: the issuer, ttl and audience, the key
//! that signs, the JWKS that publishes it (with `next_keys` and `previous_keys`), and the
//! tokens already signed (`cache`). Tokens are made with jsonwebtoken (header, claims,
//! encoding, RFC 7638 thumbprints) over ring (`provider`); keys are read and made in [`keys`].
//!
//! `provider` is jsonwebtoken's cryptography for the whole process: it signs with EdDSA only
//! (this assertion), and verifies the public-key algorithms OpenID providers sign ID tokens
//! with (RS*, PS*, ES256/384, EdDSA; never HS*), for the OpenID Connect login.
//!
//! The cache belongs to the `Assertion`, and so to the config it was loaded with: a reload
//! (SIGHUP) loads a new one, so tokens of an old key, issuer or ttl are never handed out after
//! it.

mod cache;
pub mod keys;
mod provider;
#[cfg(test)]
pub(crate) mod testing;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

pub use cache::CAPACITY;
pub use keys::Key;
pub(crate) use provider::install;

/// The default `header`.
pub const DEFAULT_HEADER: &str = "x-auth-assertion";

/// `[identity] assertion`, loaded: what tokens say and the key that signs them.
pub struct Assertion {
    header: HeaderName,
    issuer: String,
    ttl: u64,
    /// The configured `audience`.
    audience: Option<String>,
    /// The host of `[login] public_origin`.
    public_host: Option<String>,
    signing: Key,
    jwks: Bytes,
    cache: cache::Cache,
}

/// What a token says about a session (DESIGN.md §9's claims, borrowed from the request).
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The session's store key (the SHA-256 of its id): the cache key, and hashed again into
    /// `sid`.
    pub key: &'a [u8; 32],
    /// When the session was made, Unix milliseconds (`auth_time`).
    pub created_ms: u64,
    /// `sub`.
    pub user: &'a str,
    /// `groups`, as they apply now.
    pub groups: &'a [String],
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    groups: &'a [String],
    iat: u64,
    exp: u64,
    auth_time: u64,
    sid: &'a str,
}

impl Assertion {
    /// An assertion signed by `signing`, publishing it and `published` (next and previous keys,
    /// in that order). `audience`: the configured `audience`; `public_host`: the host of
    /// `[login] public_origin`, the audience of forwarded requests when none is configured.
    pub fn new(
        header: HeaderName,
        issuer: String,
        ttl: Duration,
        audience: Option<String>,
        public_host: Option<String>,
        signing: Key,
        published: &[Key],
    ) -> Assertion {
        let mut seen = vec![signing.kid()];
        let mut jwks = vec![signing.jwk()];
        for key in published {
            // The same file listed twice (or as key and previous) is published once.
            if !seen.contains(&key.kid()) {
                seen.push(key.kid());
                jwks.push(key.jwk());
            }
        }
        let jwks = serde_json::json!({ "keys": jwks }).to_string();
        let ttl = ttl.as_secs();
        Assertion {
            header,
            issuer,
            ttl,
            audience,
            public_host,
            signing,
            jwks: Bytes::from(jwks),
            cache: cache::Cache::new(ttl),
        }
    }

    /// The request header that carries the token (`X-Auth-Assertion`).
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The audience of a token for a request validated for `host` (lower case, no port): the
    /// configured `audience` when there is one, else `host`.
    pub fn audience_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.audience.as_deref().unwrap_or(host)
    }

    /// The configured `audience`, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The audience of tokens on requests doorman forwards itself: the configured `audience`,
    /// else the host of `[login] public_origin` (`check` refuses a config with neither).
    pub fn upstream_audience(&self) -> Option<&str> {
        self.audience.as_deref().or(self.public_host.as_deref())
    }

    /// `{"keys":[...]}`: the public keys tokens verify against (the signing key first).
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    /// The `kid` of the key that signs.
    pub fn kid(&self) -> &str {
        self.signing.kid()
    }

    /// The token for `session` and `audience` at `now` (Unix seconds), as a header value: the
    /// cached one while it has at least half its ttl left, else a newly signed one. `None`
    /// only if signing failed (logged; the request then carries no assertion, which an app
    /// that requires one refuses).
    pub fn header_value(
        &self,
        session: &Session<'_>,
        audience: &str,
        now: u64,
    ) -> Option<HeaderValue> {
        if let Some(token) = self.cache.get(session.key, audience, session.groups, now) {
            return Some(token);
        }
        let exp = now.saturating_add(self.ttl);
        let token = match self.sign(session, audience, now) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, "identity assertion not signed");
                return None;
            }
        };
        // Base64url and dots: always a valid header value. Sensitive: a bearer credential is
        // never shown by `Debug` nor put in an HTTP/2 header table.
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(token)).ok()?;
        value.set_sensitive(true);
        self.cache.put(
            session.key,
            audience,
            session.groups,
            exp,
            value.clone(),
            now,
        );
        Some(value)
    }

    fn sign(
        &self,
        session: &Session<'_>,
        audience: &str,
        now: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing.kid().to_string());
        let sid = sid(session.key);
        let claims = Claims {
            iss: &self.issuer,
            aud: audience,
            sub: session.user,
            groups: session.groups,
            iat: now,
            exp: now.saturating_add(self.ttl),
            auth_time: session.created_ms / 1000,
            sid: &sid,
        };
        jsonwebtoken::encode(&header, &claims, self.encoding())
    }

    fn encoding(&self) -> &EncodingKey {
        &self.signing.encoding
    }
}

/// `sid`: 96 bits of SHA-256 over the session's store key, base64url. Stable for a session,
/// so an app can tie its own state to it, and no part of the key itself: the store key names
/// the session's record (in Redis, `s:{hex(key)}`), and the token travels to every upstream.
fn sid(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"doorman assertion sid\0");
    ctx.update(key);
    let digest = ctx.finish();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("header", &self.header)
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .field("audience", &self.audience)
            .field("public_host", &self.public_host)
            .field("kid", &self.signing.kid())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn assertion(ttl: u64) -> Assertion {
        Assertion::new(
            HeaderName::from_static(DEFAULT_HEADER),
            "https://doorman.example".into(),
            Duration::from_secs(ttl),
            Some("app.example.com".into()),
            None,
            keys::tests::rfc8037_key(),
            &[],
        )
    }

    fn verify(a: &Assertion, token: &HeaderValue, aud: &str) -> serde_json::Value {
        let jwk: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(a.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwk.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&["https://doorman.example"]);
        v.set_audience(&[aud]);
        v.validate_exp = false; // signed at made-up times
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token.to_str().unwrap(), &key, &v).unwrap();
        assert_eq!(data.header.alg, Algorithm::EdDSA);
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            data.header.kid.as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
        data.claims
    }

    #[test]
    fn a_token_carries_the_claims_of_the_contract() {
        let a = assertion(60);
        let groups = vec!["admin".to_string(), "ops".to_string()];
        let key = [7u8; 32];
        let s = Session {
            key: &key,
            created_ms: 1_700_000_000_999,
            user: "alice",
            groups: &groups,
        };
        let token = a
            .header_value(&s, "app.example.com", 1_700_000_100)
            .unwrap();
        let claims = verify(&a, &token, "app.example.com");
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "https://doorman.example",
                "aud": "app.example.com",
                "sub": "alice",
                "groups": ["admin", "ops"],
                "iat": 1_700_000_100u64,
                "exp": 1_700_000_160u64,
                "auth_time": 1_700_000_000u64,
                "sid": sid(&key),
            })
        );
        assert_eq!(sid(&key).len(), 16);
        assert_ne!(sid(&key), sid(&[8u8; 32]));
        // The sid shows nothing of the key.
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!hex.contains(&*sid(&key)));
    }

    #[test]
    fn a_token_is_reused_until_half_its_ttl_is_gone_then_signed_anew() {
        let a = assertion(60);
        let groups: Vec<String> = vec![];
        let key = [1u8; 32];
        let s = Session {
            key: &key,
            created_ms: 0,
            user: "bob",
            groups: &groups,
        };
        let first = a.header_value(&s, "app.example.com", 1000).unwrap();
        assert!(first.is_sensitive());
        assert!(a
            .header_value(&s, "app.example.com", 1000)
            .unwrap()
            .is_sensitive());
        assert_eq!(
            a.header_value(&s, "app.example.com", 1030),
            Some(first.clone())
        );
        let second = a.header_value(&s, "app.example.com", 1031).unwrap();
        assert_ne!(first, second);
        assert_eq!(verify(&a, &second, "app.example.com")["iat"], 1031);
        // Another audience gets its own token, which says so.
        let other = a.header_value(&s, "other.example.com", 1031).unwrap();
        assert_eq!(
            verify(&a, &other, "other.example.com")["aud"],
            "other.example.com"
        );
    }

    #[test]
    fn the_jwks_publishes_each_key_once_signing_key_first() {
        let dir = crate::scratch::Scratch::new("jwks");
        let path = dir.join("next.pem");
        std::fs::write(&path, keys::generate_pem().unwrap()).unwrap();
        let next = Key::load(&path).unwrap();
        let next_kid = next.kid().to_string();
        let a = Assertion::new(
            HeaderName::from_static(DEFAULT_HEADER),
            "iss".into(),
            Duration::from_secs(60),
            None,
            None,
            keys::tests::rfc8037_key(),
            &[next, Key::load(&path).unwrap(), keys::tests::rfc8037_key()],
        );
        let jwks: serde_json::Value = serde_json::from_slice(a.jwks()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [a.kid(), next_kid.as_str()]);
        assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    }
}
