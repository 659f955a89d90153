//! Why a step with the provider failed, as one label for metrics and audit events and one line
//! for the log.
//!
//! The texts are built only from what doorman chose to put in them: never a token, a code, the
//! client secret or a whole response body (a provider's error page may echo the request).

/// Why a provider step (discovery, code exchange, ID-token verification) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// No answer: the connection failed or the call took longer than its timeout.
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    /// The discovery document could not be used (wrong issuer, missing or unusable endpoints,
    /// not JSON, an HTTP error).
    #[error("discovery: {0}")]
    Discovery(String),
    /// The token endpoint refused the code or answered something unusable. With the
    /// provider's OAuth `error` code when it sent one.
    #[error("token endpoint: {0}")]
    TokenEndpoint(String),
    /// The token endpoint answered without an `id_token` (not an OpenID Connect answer: was
    /// the `openid` scope requested?).
    #[error("token endpoint: the answer has no id_token")]
    NoIdToken,
    /// The provider's key set (JWKS) could not be fetched or read.
    #[error("jwks: {0}")]
    Jwks(String),
    /// The ID token is not a compact JWS doorman can read, or lacks a required claim.
    #[error("malformed ID token: {0}")]
    MalformedToken(&'static str),
    /// The ID token's `alg` is not one doorman verifies (`none`, HS*, ES512…), or not one the
    /// provider said it signs with.
    #[error("ID token algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// No key of the provider's set can verify the token (its `kid` is unknown even after a
    /// refetch, or a token without `kid` matches no single key).
    #[error("ID token key: {0}")]
    UnknownKey(&'static str),
    /// The key the token names is of another family or curve than its `alg`.
    #[error("ID token key does not fit its algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("ID token signature does not verify")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("ID token issuer is not the configured issuer")]
    WrongIssuer,
    /// `aud` does not contain the client id, or `azp` is not the client id (or is missing while
    /// `aud` has several values).
    #[error("ID token audience: {0}")]
    WrongAudience(&'static str),
    /// `exp` is more than the allowed skew in the past.
    #[error("ID token expired")]
    Expired,
    /// `iat` (or `nbf`) is more than the allowed skew in the future.
    #[error("ID token issued in the future")]
    IssuedInFuture,
    /// `nonce` is missing or not the one of this flow.
    #[error("ID token nonce is not the one of this sign-in")]
    WrongNonce,
}

impl OidcError {
    /// A short snake_case label: the metric label and the audit event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Unreachable(_) => "provider_unreachable",
            OidcError::Discovery(_) => "discovery",
            OidcError::TokenEndpoint(_) => "token_endpoint",
            OidcError::NoIdToken => "no_id_token",
            OidcError::Jwks(_) => "jwks",
            OidcError::MalformedToken(_) => "malformed_token",
            OidcError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            OidcError::UnknownKey(_) => "unknown_key",
            OidcError::KeyMismatch => "key_mismatch",
            OidcError::BadSignature => "bad_signature",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::WrongAudience(_) => "wrong_audience",
            OidcError::Expired => "expired",
            OidcError::IssuedInFuture => "issued_in_future",
            OidcError::WrongNonce => "wrong_nonce",
        }
    }
}

/// Why a [`super::provider::Provider`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The issuer is not an absolute `https://` URL (`http://` only for a loopback host).
    #[error("issuer: {0}")]
    Issuer(String),
    /// The TLS client settings could not be built.
    #[error("TLS client settings for the provider: {0}")]
    Tls(#[from] rustls::Error),
}

impl ProviderError {
    /// A short snake_case label, like [`OidcError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Issuer(_) => "issuer",
            ProviderError::Tls(_) => "tls",
        }
    }
}

/// At most `max` characters of a value a provider or a token chose, with anything but
/// printable ASCII replaced: safe to put in a log line.
pub(super) fn printable(value: &str, max: usize) -> String {
    value
        .chars()
        .take(max)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}
