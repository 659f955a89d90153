//! The ID token's claims checked (OpenID Connect Core §3.1.3.7), after its signature.
//!
//! Times are checked against the `now` doorman passes (its injectable clock), with
//! [`SKEW`] of tolerance both ways: a provider's clock a little ahead or behind doorman's must
//! not refuse every login, and a minute is what the contract allows.

use serde_json::{Map, Value};

use super::error::OidcError;

/// How far apart doorman's clock and the provider's may be.
pub(super) const SKEW: u64 = 60;

/// What the claims must say.
pub(super) struct Expected<'a> {
    /// The configured issuer (`iss`, byte for byte).
    pub(super) issuer: &'a str,
    /// doorman's client id (`aud`, `azp`).
    pub(super) client_id: &'a str,
    /// The nonce this flow sent (`nonce`).
    pub(super) nonce: &'a str,
    /// Unix seconds.
    pub(super) now: u64,
}

/// Check `claims` against `expected`, in the order of Core §3.1.3.7.
pub(super) fn check(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<(), OidcError> {
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(OidcError::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => return Err(OidcError::WrongAudience("no aud")),
    };
    if !audiences.contains(&expected.client_id) {
        return Err(OidcError::WrongAudience("aud does not name this client"));
    }
    match claims.get("azp") {
        Some(azp) if azp.as_str() != Some(expected.client_id) => {
            return Err(OidcError::WrongAudience("azp is another client"));
        }
        // Several audiences: the token may have been issued to another of them; azp says it
        // was issued to doorman.
        None if audiences.len() > 1 => {
            return Err(OidcError::WrongAudience("several audiences and no azp"));
        }
        _ => {}
    }
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(OidcError::MalformedToken("no sub claim"));
    }
    let exp = time(claims, "exp")?.ok_or(OidcError::MalformedToken("no exp claim"))?;
    if exp.saturating_add(SKEW) <= expected.now {
        return Err(OidcError::Expired);
    }
    let iat = time(claims, "iat")?.ok_or(OidcError::MalformedToken("no iat claim"))?;
    let nbf = time(claims, "nbf")?;
    let latest = expected.now.saturating_add(SKEW);
    if iat > latest || nbf.is_some_and(|nbf| nbf > latest) {
        return Err(OidcError::IssuedInFuture);
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(OidcError::WrongNonce);
    }
    Ok(())
}

/// A NumericDate claim in whole seconds (fractions dropped), `None` when absent.
fn time(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, OidcError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|t| t.is_finite() && *t >= 0.0)
                // In range after the filter; `as` saturates at u64::MAX anyway.
                .map(|t| t as u64)
        })
        .map(Some)
        .ok_or(OidcError::MalformedToken(
            "a time claim is not a number of seconds",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://sso.example",
            client_id: "doorman",
            nonce: "n-1",
            now: NOW,
        }
    }

    fn good() -> Value {
        json!({
            "iss": "https://sso.example",
            "aud": "doorman",
            "sub": "u-42",
            "exp": NOW + 300,
            "iat": NOW,
            "nonce": "n-1",
        })
    }

    fn with(changes: Value) -> Result<(), OidcError> {
        let mut claims = good();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        check(claims.as_object().unwrap(), &expected())
    }

    fn reason(changes: Value) -> &'static str {
        with(changes).map(|()| "ok").unwrap_or_else(|e| e.reason())
    }

    #[test]
    fn a_token_for_this_client_and_flow_passes() {
        assert_eq!(with(json!({})), Ok(()));
        assert_eq!(reason(json!({ "aud": ["doorman"] })), "ok");
        assert_eq!(
            reason(json!({ "aud": ["doorman", "api"], "azp": "doorman" })),
            "ok"
        );
        assert_eq!(reason(json!({ "azp": "doorman" })), "ok");
        assert_eq!(reason(json!({ "exp": 1.7e9 + 300.5, "iat": 1.7e9 })), "ok");
    }

    #[test]
    fn the_issuer_must_be_the_configured_one() {
        assert_eq!(
            reason(json!({ "iss": "https://sso.example/" })),
            "wrong_issuer"
        );
        assert_eq!(
            reason(json!({ "iss": ["https://sso.example"] })),
            "wrong_issuer"
        );
        assert_eq!(reason(json!({ "iss": null })), "wrong_issuer");
    }

    #[test]
    fn the_audience_must_name_this_client_and_azp_too_when_present() {
        assert_eq!(reason(json!({ "aud": "other" })), "wrong_audience");
        assert_eq!(reason(json!({ "aud": ["other", "api"] })), "wrong_audience");
        assert_eq!(reason(json!({ "aud": null })), "wrong_audience");
        assert_eq!(reason(json!({ "azp": "other" })), "wrong_audience");
        assert_eq!(
            reason(json!({ "aud": ["doorman", "api"] })),
            "wrong_audience"
        );
        assert_eq!(
            reason(json!({ "aud": ["doorman", "api"], "azp": "api" })),
            "wrong_audience"
        );
    }

    #[test]
    fn times_are_checked_against_now_with_a_minute_of_skew() {
        // exp: still accepted up to a minute after it.
        assert_eq!(reason(json!({ "exp": NOW - SKEW + 1 })), "ok");
        assert_eq!(reason(json!({ "exp": NOW - SKEW })), "expired");
        assert_eq!(reason(json!({ "exp": NOW - 3600 })), "expired");
        // iat and nbf: at most a minute ahead.
        assert_eq!(reason(json!({ "iat": NOW + SKEW })), "ok");
        assert_eq!(reason(json!({ "iat": NOW + SKEW + 1 })), "issued_in_future");
        assert_eq!(reason(json!({ "nbf": NOW + SKEW + 1 })), "issued_in_future");
        assert_eq!(reason(json!({ "nbf": NOW })), "ok");
    }

    #[test]
    fn the_nonce_must_be_this_flows() {
        assert_eq!(reason(json!({ "nonce": "n-2" })), "wrong_nonce");
        assert_eq!(reason(json!({ "nonce": null })), "wrong_nonce");
    }

    #[test]
    fn required_claims_must_be_there_and_well_formed() {
        for changes in [
            json!({ "sub": null }),
            json!({ "sub": 42 }),
            json!({ "exp": null }),
            json!({ "iat": null }),
            json!({ "exp": "soon" }),
            json!({ "iat": -5 }),
        ] {
            assert_eq!(reason(changes.clone()), "malformed_token", "{changes}");
        }
    }
}
