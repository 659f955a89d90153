//! TEMPORARY interface stub, replaced by the real provider client on merge.
#![allow(missing_docs, dead_code, unused_variables)]
use std::sync::Arc;
pub struct ProviderSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub ca: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
}
pub struct Provider;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct ProviderError;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct OidcError;
impl OidcError {
    pub fn reason(&self) -> &'static str {
        "x"
    }
}
pub enum ProviderStatus {
    Discovered,
}
impl std::fmt::Display for ProviderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
pub struct Metadata {
    pub issuer: String,
    pub iss_parameter_supported: bool,
}
pub struct AuthorizeRequest<'a> {
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}
pub fn pkce() -> (String, String) {
    (String::new(), String::new())
}
impl Provider {
    pub fn new(settings: ProviderSettings) -> Result<Provider, ProviderError> {
        Ok(Provider)
    }
    pub fn spawn_discovery(self: &Arc<Self>) {}
    pub fn status(&self) -> ProviderStatus {
        ProviderStatus::Discovered
    }
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        None
    }
    pub fn authorize_url(&self, meta: &Metadata, req: &AuthorizeRequest<'_>) -> String {
        String::new()
    }
    pub async fn exchange(
        &self,
        meta: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        Err(OidcError)
    }
    pub async fn verify(
        &self,
        meta: &Metadata,
        id_token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        Err(OidcError)
    }
    pub fn end_session_url(
        &self,
        meta: &Metadata,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        None
    }
}
