//! The provider's discovery document (OpenID Connect Discovery 1.0), read into [`Metadata`].
//!
//! Checked before anything uses it, because everything after trusts it: its `issuer` must be
//! the configured issuer byte for byte (§4.3: otherwise a document served for one tenant or
//! provider could make doorman accept another's tokens), and every endpoint must be an
//! absolute `https://` URL, `http://` only on a loopback host (the same rule as the configured
//! issuer: a token call over plain HTTP across a network would show the code and the client
//! secret to anyone on the path).

use std::net::IpAddr;

use oauth2::url::{Host, Url};
use serde::Deserialize;

use super::error::{printable, OidcError};

/// What doorman uses of the provider's discovery document, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// `issuer`: equal to the configured issuer.
    pub issuer: String,
    /// `authorization_endpoint`: where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// `token_endpoint`: where the code is exchanged.
    pub token_endpoint: String,
    /// `jwks_uri`: the provider's public keys.
    pub jwks_uri: String,
    /// `end_session_endpoint` (RP-initiated logout), when the provider offers it.
    pub end_session_endpoint: Option<String>,
    /// `authorization_response_iss_parameter_supported` (RFC 9207): the callback then carries
    /// `iss`, which must be the issuer.
    pub iss_parameter_supported: bool,
    /// How the client authenticates at the token endpoint.
    pub token_auth: TokenAuth,
    /// `id_token_signing_alg_values_supported`: a token signed with another algorithm is
    /// refused (empty: not announced, every algorithm doorman verifies is accepted).
    pub id_token_signing_algs: Vec<String>,
}

/// How doorman sends its client secret to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuth {
    /// `client_secret_basic`: an `Authorization: Basic` header (the default of RFC 6749 and
    /// of Discovery when the provider lists nothing).
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form, for providers that
    /// offer only that.
    ClientSecretPost,
}

/// The discovery document's URL for `issuer` (§4: a trailing `/` of the issuer is not doubled).
pub(super) fn url(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}/.well-known/openid-configuration")
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
}

/// Read and check the discovery document `body`, fetched for the configured `issuer`.
pub(super) fn parse(issuer: &str, body: &[u8]) -> Result<Metadata, OidcError> {
    // The document is public: serde's message (which may quote it) may be logged.
    let doc: Document = serde_json::from_slice(body).map_err(|e| {
        OidcError::Discovery(format!(
            "not a usable discovery document: {}",
            printable(&e.to_string(), 200)
        ))
    })?;
    if doc.issuer != issuer {
        return Err(OidcError::Discovery(format!(
            "the document's issuer {:?} is not the configured issuer {issuer:?}",
            printable(&doc.issuer, 200)
        )));
    }
    let endpoint = |name: &str, value: String| -> Result<String, OidcError> {
        check_url(&value)
            .map(|()| value)
            .map_err(|why| OidcError::Discovery(format!("{name}: {why}")))
    };
    // Basic unless the provider lists client_secret_post and not basic (absent list: basic,
    // Discovery §3's default).
    let methods = doc
        .token_endpoint_auth_methods_supported
        .unwrap_or_default();
    let lists = |m: &str| methods.iter().any(|x| x == m);
    let token_auth = if lists("client_secret_post") && !lists("client_secret_basic") {
        TokenAuth::ClientSecretPost
    } else {
        TokenAuth::ClientSecretBasic
    };
    Ok(Metadata {
        issuer: doc.issuer,
        authorization_endpoint: endpoint("authorization_endpoint", doc.authorization_endpoint)?,
        token_endpoint: endpoint("token_endpoint", doc.token_endpoint)?,
        jwks_uri: endpoint("jwks_uri", doc.jwks_uri)?,
        end_session_endpoint: doc
            .end_session_endpoint
            .map(|v| endpoint("end_session_endpoint", v))
            .transpose()?,
        iss_parameter_supported: doc.authorization_response_iss_parameter_supported,
        token_auth,
        id_token_signing_algs: doc.id_token_signing_alg_values_supported,
    })
}

/// An absolute URL doorman may call or send a browser to: `https://`, or `http://` on a
/// loopback host; no fragment, no user info. The error says why not.
pub(super) fn check_url(value: &str) -> Result<(), String> {
    let url = Url::parse(value).map_err(|e| format!("not an absolute URL ({e})"))?;
    let host = url.host().ok_or("a URL without a host")?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => return Err("http:// is only allowed on a loopback host; use https://".into()),
        _ => return Err("not an http(s) URL".into()),
    }
    if url.fragment().is_some() {
        return Err("a URL with a #fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("a URL with user info".into());
    }
    Ok(())
}

/// 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://sso.example.com/realms/main";

    fn doc() -> serde_json::Value {
        json!({
            "issuer": ISSUER,
            "authorization_endpoint": "https://sso.example.com/auth",
            "token_endpoint": "https://sso.example.com/token",
            "jwks_uri": "https://keys.example.net/jwks",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })
    }

    fn parse_doc(doc: &serde_json::Value) -> Result<Metadata, OidcError> {
        parse(ISSUER, doc.to_string().as_bytes())
    }

    #[test]
    fn the_document_url_does_not_double_a_trailing_slash() {
        assert_eq!(
            url("https://sso.example.com"),
            "https://sso.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            url("https://sso.example.com/"),
            "https://sso.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            url("https://sso.example.com/realms/main"),
            "https://sso.example.com/realms/main/.well-known/openid-configuration"
        );
    }

    #[test]
    fn a_document_is_read_with_the_spec_defaults() {
        let meta = parse_doc(&doc()).unwrap();
        assert_eq!(
            meta,
            Metadata {
                issuer: ISSUER.into(),
                authorization_endpoint: "https://sso.example.com/auth".into(),
                token_endpoint: "https://sso.example.com/token".into(),
                jwks_uri: "https://keys.example.net/jwks".into(),
                end_session_endpoint: None,
                iss_parameter_supported: false,
                token_auth: TokenAuth::ClientSecretBasic,
                id_token_signing_algs: vec!["RS256".into(), "ES256".into()],
            }
        );
        let mut full = doc();
        full["end_session_endpoint"] = json!("https://sso.example.com/logout");
        full["authorization_response_iss_parameter_supported"] = json!(true);
        let meta = parse_doc(&full).unwrap();
        assert_eq!(
            meta.end_session_endpoint.as_deref(),
            Some("https://sso.example.com/logout")
        );
        assert!(meta.iss_parameter_supported);
    }

    #[test]
    fn client_secret_post_only_when_the_provider_does_not_offer_basic() {
        let auth = |methods: serde_json::Value| {
            let mut d = doc();
            d["token_endpoint_auth_methods_supported"] = methods;
            parse_doc(&d).unwrap().token_auth
        };
        assert_eq!(
            auth(json!(["client_secret_post"])),
            TokenAuth::ClientSecretPost
        );
        assert_eq!(
            auth(json!(["private_key_jwt", "client_secret_post"])),
            TokenAuth::ClientSecretPost
        );
        assert_eq!(
            auth(json!(["client_secret_post", "client_secret_basic"])),
            TokenAuth::ClientSecretBasic
        );
        assert_eq!(
            auth(json!(["client_secret_basic"])),
            TokenAuth::ClientSecretBasic
        );
        assert_eq!(auth(json!([])), TokenAuth::ClientSecretBasic);
    }

    #[test]
    fn the_issuer_must_be_the_configured_one_byte_for_byte() {
        for other in [
            "https://sso.example.com/realms/main/",
            "https://SSO.example.com/realms/main",
            "https://sso.example.com/realms/other",
        ] {
            let mut d = doc();
            d["issuer"] = json!(other);
            let err = parse_doc(&d).unwrap_err();
            assert_eq!(err.reason(), "discovery");
            let text = err.to_string();
            assert!(text.contains(other) && text.contains(ISSUER), "{text}");
        }
    }

    #[test]
    fn endpoints_must_be_https_unless_on_a_loopback_host() {
        for (value, ok) in [
            ("https://sso.example.com/token", true),
            ("http://127.0.0.1:8080/token", true),
            ("http://127.9.9.9/token", true),
            ("http://[::1]:9000/token", true),
            ("http://localhost:9000/token", true),
            ("http://sso.example.com/token", false),
            ("http://localhost.example.com/token", false),
            ("http://10.0.0.1/token", false),
            ("/token", false),
            ("ftp://sso.example.com/token", false),
            ("https://sso.example.com/token#frag", false),
            ("https://user:pw@sso.example.com/token", false),
        ] {
            let mut d = doc();
            d["token_endpoint"] = json!(value);
            assert_eq!(parse_doc(&d).is_ok(), ok, "{value}");
        }
        let mut d = doc();
        d["end_session_endpoint"] = json!("http://sso.example.com/logout");
        let err = parse_doc(&d).unwrap_err().to_string();
        assert!(err.contains("end_session_endpoint"), "{err}");
    }

    #[test]
    fn a_document_without_a_required_endpoint_or_not_json_is_refused() {
        let mut d = doc();
        d.as_object_mut().unwrap().remove("jwks_uri");
        assert_eq!(parse_doc(&d).unwrap_err().reason(), "discovery");
        assert!(parse(ISSUER, b"<html>").is_err());
    }
}
