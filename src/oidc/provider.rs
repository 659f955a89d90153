//! doorman's client of one OpenID provider: discovery, the authorization URL, the code
//! exchange, ID-token verification and the logout URL.
//!
//! The protocol pieces are maintained crates: `oauth2` makes PKCE pairs and the token request
//! (client authentication, the form, reading the answer and OAuth errors), jsonwebtoken reads
//! keys and checks signatures (over ring, `crate::jws`). What is doorman's own is policy: which
//! URLs and algorithms are acceptable, the claim checks against doorman's clock, the limits on
//! every call (`http`), and when keys are fetched (`jwks`).
//!
//! A [`Provider`] is built at start-up without I/O; [`Provider::spawn_discovery`] then fetches
//! the discovery document in the background until it succeeds, so a provider that is down
//! does not stop doorman from starting (DESIGN.md §10: the sign-in button answers 503 until
//! then, `/readyz` names the state).

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::claims::{self, Expected};
use super::discovery;
use super::error::printable;
use super::http::{HttpClient, OAuthCall};
use super::jwks::Jwks;
use super::token;
use crate::lock::lock;

pub use super::discovery::{Metadata, TokenAuth};
pub use super::error::{OidcError, ProviderError};

/// The first wait between two discovery attempts; it doubles up to [`DISCOVERY_BACKOFF_MAX`].
const DISCOVERY_BACKOFF: Duration = Duration::from_secs(1);
const DISCOVERY_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What doorman knows of the provider before discovery (from the `[oidc]` table).
#[derive(Clone)]
pub struct ProviderSettings {
    /// Exactly as configured; discovery's `issuer` must equal it byte for byte.
    pub issuer: String,
    /// doorman's client id at the provider.
    pub client_id: String,
    /// doorman's client secret (never shown by `Debug`).
    pub client_secret: String,
    /// Trust roots for the provider's TLS certificate instead of the system store (`[oidc]
    /// ca`).
    pub ca: Option<Vec<CertificateDer<'static>>>,
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .finish()
    }
}

/// Whether the provider was discovered: for `/readyz` and the sign-in button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderStatus {
    /// Discovery succeeded; sign-in works.
    Discovered {
        /// The issuer discovered.
        issuer: String,
    },
    /// Not yet; `error` is why the last attempt failed (`None` before the first one ended).
    Pending {
        /// The last attempt's error, as logged.
        error: Option<String>,
    },
}

impl fmt::Display for ProviderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderStatus::Discovered { issuer } => write!(f, "discovered {issuer}"),
            ProviderStatus::Pending { error: Some(error) } => {
                write!(f, "not discovered yet: {error}")
            }
            ProviderStatus::Pending { error: None } => f.write_str("not discovered yet"),
        }
    }
}

/// The parameters of one authorization request (`response_type=code`,
/// `code_challenge_method=S256` are implied).
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// doorman's callback URL, as registered at the provider.
    pub redirect_uri: &'a str,
    /// `scope`, space-separated in the URL (`openid` must be among them).
    pub scopes: &'a [String],
    /// `state`: names the flow on the callback.
    pub state: &'a str,
    /// `nonce`: must come back in the ID token.
    pub nonce: &'a str,
    /// The PKCE S256 challenge of the flow's verifier ([`pkce`]).
    pub code_challenge: &'a str,
}

/// A fresh PKCE pair: (verifier, S256 challenge). The verifier is 32 random bytes, base64url
/// (43 characters), from oauth2's `PkceCodeChallenge::new_random_sha256` (rand's thread-local
/// CSPRNG, seeded from the OS).
pub fn pkce() -> (String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    (verifier.secret().clone(), challenge.as_str().to_owned())
}

/// One OpenID provider: its settings, what discovery found, its keys. `Send + Sync`; held in
/// an `Arc`.
pub struct Provider {
    issuer: String,
    client_id: ClientId,
    /// oauth2's type: its `Debug` shows no secret.
    client_secret: ClientSecret,
    http: HttpClient,
    discovery: Mutex<Discovery>,
    /// Whether a discovery task runs (so a second `spawn_discovery` starts none).
    discovering: AtomicBool,
    jwks: Jwks,
}

#[derive(Default)]
struct Discovery {
    metadata: Option<Arc<Metadata>>,
    error: Option<String>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id.as_str())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer: OAuth's fields plus OpenID Connect's `id_token`.
#[derive(Debug, Clone, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type TokenAnswer = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An oauth2 client that knows the token endpoint only (doorman builds the authorization URL
/// itself: it needs nothing of oauth2's state there).
type TokenClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

impl Provider {
    /// A provider client for `settings`: checks the issuer and builds the HTTP client. No I/O
    /// and no runtime needed (the system trust store is read here when `ca` is not set).
    pub fn new(settings: ProviderSettings) -> Result<Provider, ProviderError> {
        discovery::check_url(&settings.issuer).map_err(ProviderError::Issuer)?;
        // jsonwebtoken's cryptography (ring); idempotent.
        crate::jws::install();
        let http = HttpClient::new(settings.ca.as_deref())?;
        Ok(Provider {
            issuer: settings.issuer,
            client_id: ClientId::new(settings.client_id),
            client_secret: ClientSecret::new(settings.client_secret),
            http,
            discovery: Mutex::new(Discovery::default()),
            discovering: AtomicBool::new(false),
            jwks: Jwks::default(),
        })
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Fetch discovery in the background until it succeeds (waits of 1 s doubling to 30 s
    /// between attempts, each failure logged). The task holds only a weak reference between
    /// attempts, so it ends when the provider is dropped (a reload that builds a new one).
    /// Once discovered, or while a task runs, does nothing. Must be called inside a tokio
    /// runtime.
    pub fn spawn_discovery(self: &Arc<Self>) {
        if self.metadata().is_some() || self.discovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(discover_until_done(weak));
    }

    /// Fetch and check the discovery document once; on success it is what [`metadata`]
    /// returns from then on. The status records the outcome.
    ///
    /// [`metadata`]: Provider::metadata
    pub async fn discover(&self) -> Result<Arc<Metadata>, OidcError> {
        let result = self.fetch_metadata().await;
        let mut state = lock(&self.discovery);
        match &result {
            Ok(metadata) => {
                state.metadata = Some(Arc::clone(metadata));
                state.error = None;
            }
            Err(error) => state.error = Some(error.to_string()),
        }
        result
    }

    async fn fetch_metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        let url = discovery::url(&self.issuer);
        let body = self.http.get_json(&url).await.map_err(|e| {
            if e.unreachable() {
                OidcError::Unreachable(format!("discovery: {e}"))
            } else {
                OidcError::Discovery(format!("{url}: {e}"))
            }
        })?;
        Ok(Arc::new(discovery::parse(&self.issuer, &body)?))
    }

    /// Discovered, or not yet with the last error.
    pub fn status(&self) -> ProviderStatus {
        let state = lock(&self.discovery);
        match &state.metadata {
            Some(metadata) => ProviderStatus::Discovered {
                issuer: metadata.issuer.clone(),
            },
            None => ProviderStatus::Pending {
                error: state.error.clone(),
            },
        }
    }

    /// What discovery found, once it succeeded.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        lock(&self.discovery).metadata.clone()
    }

    /// The URL to send the browser to: the authorization endpoint with `response_type=code`,
    /// `client_id`, `redirect_uri`, `scope`, `state`, `nonce` and the PKCE S256 challenge.
    pub fn authorize_url(&self, meta: &Metadata, req: &AuthorizeRequest<'_>) -> String {
        let scope = req.scopes.join(" ");
        with_query(
            &meta.authorization_endpoint,
            &[
                ("response_type", "code"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", req.redirect_uri),
                ("scope", &scope),
                ("state", req.state),
                ("nonce", req.nonce),
                ("code_challenge", req.code_challenge),
                ("code_challenge_method", "S256"),
            ],
        )
    }

    /// Exchange `code` (with the flow's PKCE `verifier` and the `redirect_uri` the
    /// authorization request carried) for the ID token, as a compact JWS (not yet verified:
    /// see [`verify`]). The client authenticates with `client_secret_basic`, or
    /// `client_secret_post` when discovery offers only that. The access token is not used.
    ///
    /// [`verify`]: Provider::verify
    pub async fn exchange(
        &self,
        meta: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcError> {
        let token_url = TokenUrl::new(meta.token_endpoint.clone())
            .map_err(|_| OidcError::TokenEndpoint("the token endpoint is not a URL".into()))?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| OidcError::TokenEndpoint("redirect_uri is not a URL".into()))?;
        let auth = match meta.token_auth {
            TokenAuth::ClientSecretBasic => AuthType::BasicAuth,
            TokenAuth::ClientSecretPost => AuthType::RequestBody,
        };
        let client: TokenClient = oauth2::Client::new(self.client_id.clone())
            .set_client_secret(self.client_secret.clone())
            .set_token_uri(token_url)
            .set_auth_type(auth);
        let call = OAuthCall {
            http: &self.http,
            status: Mutex::new(None),
        };
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&call)
            .await;
        let status = *lock(&call.status);
        match answer {
            Ok(answer) => answer
                .extra_fields()
                .id_token
                .clone()
                .ok_or(OidcError::NoIdToken),
            Err(error) => Err(token_error(error, status)),
        }
    }

    /// Verify `id_token` and return its claims: the signature against the provider's keys
    /// (`jwks`: fetched when first needed, refetched on an unknown `kid` at most once a
    /// minute; without `kid`, the one key of the algorithm's family), an algorithm doorman
    /// accepts and discovery announced, then `iss` = the configured issuer, `aud` naming the
    /// client id, `azp` = the client id when present (required with several audiences),
    /// `exp` and `iat` (and `nbf`) against `now` (Unix seconds) with 60 s of skew, and
    /// `nonce` = `nonce`.
    pub async fn verify(
        &self,
        meta: &Metadata,
        id_token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<Map<String, Value>, OidcError> {
        let header = token::header(id_token)?;
        if !meta.id_token_signing_algs.is_empty()
            && !meta
                .id_token_signing_algs
                .iter()
                .any(|a| a == header.alg_name)
        {
            return Err(OidcError::UnsupportedAlgorithm(header.alg_name.into()));
        }
        let key = self
            .jwks
            .key(
                &self.http,
                &meta.jwks_uri,
                header.kid.as_deref(),
                header.alg,
            )
            .await?;
        let claims = token::decode(id_token, &key, header.alg)?;
        claims::check(
            &claims,
            &Expected {
                issuer: &self.issuer,
                client_id: self.client_id.as_str(),
                nonce,
                now,
            },
        )?;
        Ok(claims)
    }

    /// The RP-initiated logout URL (the end-session endpoint with `id_token_hint` when given,
    /// `post_logout_redirect_uri` and `client_id`); `None` when the provider offers none.
    pub fn end_session_url(
        &self,
        meta: &Metadata,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let endpoint = meta.end_session_endpoint.as_deref()?;
        let mut params = Vec::with_capacity(3);
        if let Some(hint) = id_token_hint {
            params.push(("id_token_hint", hint));
        }
        params.push(("post_logout_redirect_uri", post_logout_redirect_uri));
        params.push(("client_id", self.client_id.as_str()));
        Some(with_query(endpoint, &params))
    }

    /// The key cache (for the tests' fetch counts).
    #[cfg(test)]
    pub(super) fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}

async fn discover_until_done(provider: Weak<Provider>) {
    let mut wait = DISCOVERY_BACKOFF;
    loop {
        let Some(p) = provider.upgrade() else {
            return;
        };
        // Discovered meanwhile by a direct call to `discover`.
        if p.metadata().is_some() {
            p.discovering.store(false, Ordering::Release);
            return;
        }
        match p.discover().await {
            Ok(metadata) => {
                tracing::info!(issuer = %metadata.issuer, "OpenID provider discovered");
                p.discovering.store(false, Ordering::Release);
                return;
            }
            Err(error) => {
                tracing::warn!(issuer = %p.issuer, %error, retry_in = ?wait, "OpenID provider discovery failed");
            }
        }
        drop(p);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(DISCOVERY_BACKOFF_MAX);
    }
}

/// `endpoint` with `params` added to its query (an endpoint may have a query of its own:
/// Discovery allows it, and some providers use it).
fn with_query(endpoint: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let sep = match endpoint.rfind('?') {
        None => "?",
        Some(at) if at + 1 == endpoint.len() || endpoint.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{endpoint}{sep}{query}")
}

/// A failed token request as doorman logs it: the status and the provider's OAuth `error`
/// code, never the body (which may echo the code or worse).
fn token_error(
    error: RequestTokenError<super::http::HttpError, BasicErrorResponse>,
    status: Option<http::StatusCode>,
) -> OidcError {
    let answered = match status {
        Some(status) => format!("answered {}", status.as_u16()),
        None => "failed".to_owned(),
    };
    match error {
        RequestTokenError::ServerResponse(response) => OidcError::TokenEndpoint(format!(
            "{answered}: {}",
            printable(response.error().as_ref(), 64)
        )),
        RequestTokenError::Request(e) if e.unreachable() => {
            OidcError::Unreachable(format!("token endpoint: {e}"))
        }
        RequestTokenError::Request(e) => OidcError::TokenEndpoint(e.to_string()),
        // serde's message may quote the body: only where it failed.
        RequestTokenError::Parse(e, _body) => OidcError::TokenEndpoint(format!(
            "{answered}, unreadable answer (at {})",
            printable(&e.path().to_string(), 64)
        )),
        RequestTokenError::Other(text) => {
            OidcError::TokenEndpoint(format!("{answered}: {}", printable(&text, 120)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        Provider::new(ProviderSettings {
            issuer: "https://sso.example.com".into(),
            client_id: "door man".into(),
            client_secret: "hunter2-secret".into(),
            ca: Some(vec![]),
        })
        .unwrap()
    }

    fn meta() -> Metadata {
        Metadata {
            issuer: "https://sso.example.com".into(),
            authorization_endpoint: "https://sso.example.com/auth?tenant=a".into(),
            token_endpoint: "https://sso.example.com/token".into(),
            jwks_uri: "https://sso.example.com/jwks".into(),
            end_session_endpoint: Some("https://sso.example.com/logout".into()),
            iss_parameter_supported: false,
            token_auth: TokenAuth::ClientSecretBasic,
            id_token_signing_algs: vec![],
        }
    }

    #[test]
    fn the_authorize_url_carries_every_parameter_encoded() {
        let scopes = vec!["openid".to_string(), "email".to_string()];
        let url = provider().authorize_url(
            &meta(),
            &AuthorizeRequest {
                redirect_uri: "https://app.example/_doorman/oidc/callback",
                scopes: &scopes,
                state: "st&te",
                nonce: "n0nce",
                code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            },
        );
        assert_eq!(
            url,
            "https://sso.example.com/auth?tenant=a&response_type=code&client_id=door+man\
             &redirect_uri=https%3A%2F%2Fapp.example%2F_doorman%2Foidc%2Fcallback\
             &scope=openid+email&state=st%26te&nonce=n0nce\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256"
        );
    }

    #[test]
    fn the_end_session_url_exists_only_when_the_provider_offers_one() {
        let p = provider();
        assert_eq!(
            p.end_session_url(&meta(), Some("a.b.c"), "https://app.example/")
                .as_deref(),
            Some(
                "https://sso.example.com/logout?id_token_hint=a.b.c\
                 &post_logout_redirect_uri=https%3A%2F%2Fapp.example%2F&client_id=door+man"
            )
        );
        assert_eq!(
            p.end_session_url(&meta(), None, "https://app.example/")
                .as_deref(),
            Some(
                "https://sso.example.com/logout?post_logout_redirect_uri=\
                 https%3A%2F%2Fapp.example%2F&client_id=door+man"
            )
        );
        let none = Metadata {
            end_session_endpoint: None,
            ..meta()
        };
        assert_eq!(p.end_session_url(&none, None, "https://app.example/"), None);
    }

    #[test]
    fn query_parameters_join_an_existing_query() {
        assert_eq!(with_query("https://a/x", &[("k", "v")]), "https://a/x?k=v");
        assert_eq!(with_query("https://a/x?", &[("k", "v")]), "https://a/x?k=v");
        assert_eq!(
            with_query("https://a/x?p=1", &[("k", "v")]),
            "https://a/x?p=1&k=v"
        );
        assert_eq!(
            with_query("https://a/x?p=1&", &[("k", "v")]),
            "https://a/x?p=1&k=v"
        );
    }

    #[test]
    fn pkce_pairs_are_fresh_and_the_challenge_is_the_s256_of_the_verifier() {
        use base64::Engine as _;
        let (verifier, challenge) = pkce();
        assert_eq!(verifier.len(), 43);
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        assert_eq!(
            challenge,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
        );
        assert_ne!(pkce().0, verifier);
    }

    #[test]
    fn the_issuer_must_be_https_unless_loopback() {
        let with = |issuer: &str| {
            Provider::new(ProviderSettings {
                issuer: issuer.into(),
                client_id: "c".into(),
                client_secret: "s".into(),
                ca: Some(vec![]),
            })
        };
        assert!(with("http://127.0.0.1:9000").is_ok());
        assert!(with("https://sso.example.com/realms/x").is_ok());
        let err = with("http://sso.example.com").unwrap_err();
        assert_eq!(err.reason(), "issuer");
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let settings = ProviderSettings {
            issuer: "https://sso.example.com".into(),
            client_id: "c".into(),
            client_secret: "hunter2-secret".into(),
            ca: None,
        };
        let shown = format!("{settings:?} {:?}", provider());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("not discovered yet") || shown.contains("Pending"),
            "{shown}"
        );
    }

    #[test]
    fn the_provider_and_its_futures_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let p = provider();
        send_sync(&p);
        let m = meta();
        send(p.discover());
        send(p.exchange(&m, "code", "verifier", "https://app.example/cb"));
        send(p.verify(&m, "a.b.c", "nonce", 0));
    }

    #[test]
    fn the_status_line_is_short() {
        let discovered = ProviderStatus::Discovered {
            issuer: "https://sso.example.com".into(),
        };
        assert_eq!(discovered.to_string(), "discovered https://sso.example.com");
        let pending = ProviderStatus::Pending {
            error: Some("provider unreachable: no answer within 10 s".into()),
        };
        assert_eq!(
            pending.to_string(),
            "not discovered yet: provider unreachable: no answer within 10 s"
        );
        assert_eq!(
            ProviderStatus::Pending { error: None }.to_string(),
            "not discovered yet"
        );
    }
}
