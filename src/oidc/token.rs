//! An ID token's JOSE header read before any key is chosen, and its signature checked by
//! jsonwebtoken (over doorman's ring provider, `crate::jws`).
//!
//! The header is read here rather than by jsonwebtoken so that an algorithm doorman refuses
//! (`none`, HS*, ES512, anything unknown) is named as such instead of failing as unreadable
//! JSON, and so that a `crit` header (RFC 7515 §4.1.11: extensions the verifier must
//! understand; doorman understands none) is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::error::{printable, OidcError};

/// The longest ID token doorman reads. Real ones are 1–4 KiB; the cap bounds the work an
/// oversized answer can cause.
const MAX_TOKEN: usize = 64 * 1024;

/// The algorithms doorman verifies ID tokens with: public-key ones only (see
/// `crate::jws::provider` for why not HS*).
const ACCEPTED: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// What the header says about how to verify the token.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Header {
    /// `alg`, one of the accepted ones.
    pub(super) alg: Algorithm,
    /// The name the header gives it, as the provider's metadata lists algorithms.
    pub(super) alg_name: &'static str,
    /// `kid`, when given.
    pub(super) kid: Option<String>,
}

/// Read the header of compact JWS `token`.
pub(super) fn header(token: &str) -> Result<Header, OidcError> {
    if token.len() > MAX_TOKEN {
        return Err(OidcError::MalformedToken("longer than 64 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::MalformedToken("not a compact JWS (three parts)"));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| OidcError::MalformedToken("header is not base64url"))?;
    let fields: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|_| OidcError::MalformedToken("header is not a JSON object"))?;
    if fields.contains_key("crit") {
        return Err(OidcError::MalformedToken(
            "header has critical extensions (crit)",
        ));
    }
    let name = fields
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(OidcError::MalformedToken("header has no alg"))?;
    let (alg_name, alg) = ACCEPTED
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| OidcError::UnsupportedAlgorithm(printable(name, 20)))?;
    let kid = match fields.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(OidcError::MalformedToken("kid is not a string")),
    };
    Ok(Header { alg_name, alg, kid })
}

/// Check `token`'s signature with `key` for `alg` (the header's, already accepted) and return
/// its claims. No claim is checked here (`claims` does that, against doorman's clock).
pub(super) fn decode(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
) -> Result<Map<String, Value>, OidcError> {
    let mut validation = Validation::new(alg);
    // jsonwebtoken would check exp against the system clock; `claims` checks it against the
    // `now` doorman passes (its injectable clock), with every other claim.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => OidcError::BadSignature,
            // The key is of another family than the algorithm (the provider refuses it).
            ErrorKind::InvalidAlgorithm => OidcError::KeyMismatch,
            ErrorKind::Base64(_) => OidcError::MalformedToken("a part is not base64url"),
            _ => OidcError::MalformedToken("claims are not a JSON object"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::testing::{part, TestKey};
    use jsonwebtoken::jwk::Jwk;
    use serde_json::json;

    fn key_of(test: &TestKey) -> DecodingKey {
        let jwk: Jwk = serde_json::from_value(test.jwk()).unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    }

    #[test]
    fn the_header_gives_the_algorithm_and_the_kid() {
        let key = TestKey::es256("k1");
        let token = key.token(&json!({}));
        assert_eq!(
            header(&token).unwrap(),
            Header {
                alg: Algorithm::ES256,
                alg_name: "ES256",
                kid: Some("k1".into())
            }
        );
        let token = key.sign(&json!({ "alg": "ES256" }), &json!({}));
        assert_eq!(header(&token).unwrap().kid, None);
    }

    #[test]
    fn none_hmac_and_unknown_algorithms_are_named_and_refused() {
        for alg in ["none", "HS256", "HS512", "ES512", "RSA-OAEP", "rs256"] {
            let token = format!("{}.{}.", part(&json!({ "alg": alg })), part(&json!({})));
            assert_eq!(
                header(&token),
                Err(OidcError::UnsupportedAlgorithm(alg.into())),
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let claims = part(&json!({}));
        for token in [
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!("%%%.{claims}.sig"),
            format!("{}.{claims}.sig", URL_SAFE_NO_PAD.encode("[1]")),
            format!("{}.{claims}.sig", part(&json!({ "typ": "JWT" }))),
            format!(
                "{}.{claims}.sig",
                part(&json!({ "alg": "ES256", "kid": 7 }))
            ),
            format!(
                "{}.{claims}.sig",
                part(&json!({ "alg": "ES256", "crit": ["exp"], "exp": 1 }))
            ),
            "x".repeat(MAX_TOKEN + 1),
        ] {
            assert_eq!(
                header(&token).unwrap_err().reason(),
                "malformed_token",
                "{token:.80}"
            );
        }
    }

    #[test]
    fn decode_maps_jsonwebtoken_errors_to_reasons() {
        crate::jws::install();
        let ec = TestKey::es256("ec");
        let claims = json!({ "sub": "alice", "exp": 1 });
        let token = ec.token(&claims);
        // exp in 1970: no claim is checked here.
        assert_eq!(
            decode(&token, &key_of(&ec), Algorithm::ES256).unwrap(),
            *claims.as_object().unwrap()
        );
        let other = TestKey::es256("ec");
        assert_eq!(
            decode(&token, &key_of(&other), Algorithm::ES256),
            Err(OidcError::BadSignature)
        );
        let rsa = TestKey::rsa("rsa", "RS256");
        assert_eq!(
            decode(&token, &key_of(&rsa), Algorithm::ES256),
            Err(OidcError::KeyMismatch)
        );
        let not_json = ec.sign(&json!({ "alg": "ES256" }), &json!([1, 2]));
        assert_eq!(
            decode(&not_json, &key_of(&ec), Algorithm::ES256)
                .unwrap_err()
                .reason(),
            "malformed_token"
        );
    }
}
