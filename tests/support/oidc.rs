//! A real OpenID Connect provider for the tests, and a small browser to sign in through it.
//!
//! The provider is panva's `oidc-provider` for Node (OpenID-certified), pinned by
//! `tests/oidc/package-lock.json` and run by `tests/oidc/provider.mjs` on a free loopback port
//! with the clients and accounts of a [`ProviderSpec`]; it is stopped when dropped (and exits by
//! itself when the test process dies: its stdin is a pipe from here). A doorman OIDC test talks
//! to it as a relying party would, over plain HTTP, so what doorman is tested against is a real
//! provider's discovery document, keys, ID tokens and logout, not a mock of our own reading of
//! the specs.
//!
//! [`Browser`] keeps cookies per `host:port`, so the provider's cookies and doorman's (another
//! port on the same 127.0.0.1) never mix, and follows redirects only when asked: [`sign_in`]
//! and [`confirm_logout`] stop at the first redirect that leaves the provider, so a test sees the
//! `code`, `state` and `iss` sent back and decides itself whether to follow it to doorman.
//!
//! A missing `node` is a test failure, never a skip (`scripts/test` checks for it);
//! `tests/oidc/node_modules` is made with `npm ci` from the committed lock file when missing.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::node::{self, NodeChild, NotReady, OtherLines};
use base64::Engine as _;
use serde_json::{json, Value};

use super::login::{form_encode, request, Answer, HttpClient};

/// The default client's id, as doorman's config names it.
pub const CLIENT_ID: &str = "doorman";
/// The default client's secret (`client_secret_basic`).
pub const CLIENT_SECRET: &str = "doorman-oidc-client-secret";
/// The password of every default account.
pub const PASSWORD: &str = "oidc-correct-horse";
/// The text of the provider's logout confirmation button (oidc-provider's default page).
pub const LOGOUT_BUTTON: &str = "Yes, sign me out";
/// The text of the provider's sign-in button (tests/oidc/provider.mjs).
pub const SIGN_IN_BUTTON: &str = "Sign in";

/// How long the provider may take to say `ready`.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How many redirects (and auto-submitted forms) [`sign_in`] / [`confirm_logout`] follow at most.
const MAX_HOPS: usize = 10;

/// One account of the provider: its password and the claims it releases (`sub` included).
#[derive(Debug, Clone)]
pub struct Account {
    pub password: String,
    pub claims: Value,
}

/// What the provider is started with: its clients (oidc-provider client metadata, as JSON),
/// accounts by login name, the ID token signing algorithm, and optionally a fixed port.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub clients: Vec<Value>,
    pub accounts: BTreeMap<String, Account>,
    /// `RS256` (default) or `ES256`: the key the provider generates at start, and the default
    /// `id_token_signed_response_alg` of its clients.
    pub signing_alg: String,
    /// The provider's signing keys (a JWKS of private JWKs); `None`: one key of
    /// [`ProviderSpec::signing_alg`], generated at each start.
    pub jwks: Option<Value>,
    /// A port chosen by the test (when doorman's config must name the issuer before the
    /// provider starts); `None`: a free one.
    pub port: Option<u16>,
}

impl ProviderSpec {
    /// The default client [`CLIENT_ID`] / [`CLIENT_SECRET`] with these redirect URIs, and the
    /// default accounts, all with [`PASSWORD`]:
    /// - `alice`: alice@example.com, verified, groups `["staff"]`;
    /// - `carol`: carol@example.com, verified, groups `["admin", "staff"]`;
    /// - `mallory`: mallory@example.com, NOT verified, groups `["staff"]`;
    /// - `bob`: bob@other.test (another domain), verified, groups `["staff"]`.
    ///
    /// Each has `sub` = its login name, `name` and `preferred_username`.
    pub fn new(redirect_uris: &[&str], post_logout_redirect_uris: &[&str]) -> ProviderSpec {
        let account = |login: &str, name: &str, email: &str, verified: bool, groups: &[&str]| {
            let claims = json!({
                "sub": login,
                "email": email,
                "email_verified": verified,
                "preferred_username": login,
                "name": name,
                "groups": groups,
            });
            (
                login.to_string(),
                Account {
                    password: PASSWORD.to_string(),
                    claims,
                },
            )
        };
        ProviderSpec {
            clients: vec![json!({
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": post_logout_redirect_uris,
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            })],
            accounts: BTreeMap::from([
                account(
                    "alice",
                    "Alice Example",
                    "alice@example.com",
                    true,
                    &["staff"],
                ),
                account(
                    "carol",
                    "Carol Example",
                    "carol@example.com",
                    true,
                    &["admin", "staff"],
                ),
                account(
                    "mallory",
                    "Mallory Example",
                    "mallory@example.com",
                    false,
                    &["staff"],
                ),
                account("bob", "Bob Other", "bob@other.test", true, &["staff"]),
            ]),
            signing_alg: "RS256".into(),
            jwks: None,
            port: None,
        }
    }

    /// Another client (full oidc-provider metadata: `client_id`, `client_secret`,
    /// `redirect_uris`, ...).
    pub fn client(mut self, metadata: Value) -> ProviderSpec {
        self.clients.push(metadata);
        self
    }

    /// Set one metadata field of the client `client_id` (e.g. `token_endpoint_auth_method`,
    /// `id_token_signed_response_alg`); `Value::Null` removes it.
    pub fn client_field(mut self, client_id: &str, key: &str, value: Value) -> ProviderSpec {
        let client = self
            .clients
            .iter_mut()
            .find(|c| c["client_id"] == client_id)
            .unwrap_or_else(|| panic!("no client {client_id:?} in the spec"));
        let fields = client
            .as_object_mut()
            .expect("client metadata is an object");
        if value.is_null() {
            fields.remove(key);
        } else {
            fields.insert(key.to_string(), value);
        }
        self
    }

    /// Add or replace the account `login` (`claims` should hold `sub`; without it the login
    /// name is the `sub`).
    pub fn account(mut self, login: &str, password: &str, claims: Value) -> ProviderSpec {
        self.accounts.insert(
            login.to_string(),
            Account {
                password: password.to_string(),
                claims,
            },
        );
        self
    }

    /// Sign ID tokens with `alg` (`RS256` or `ES256`).
    pub fn signing_alg(mut self, alg: &str) -> ProviderSpec {
        assert!(matches!(alg, "RS256" | "ES256"), "unsupported alg {alg}");
        self.signing_alg = alg.to_string();
        self
    }

    /// Sign with these keys (a JWKS of private JWKs, e.g. to keep one key across restarts).
    pub fn jwks(mut self, jwks: Value) -> ProviderSpec {
        self.jwks = Some(jwks);
        self
    }

    /// Listen on `port` (pick it with `support::free_port()`), so the issuer is known before
    /// the provider starts. A start on a fixed port is not retried elsewhere.
    pub fn on_port(mut self, port: u16) -> ProviderSpec {
        self.port = Some(port);
        self
    }

    /// The JSON config `provider.mjs` reads, for a provider on `port`.
    pub fn config(&self, port: u16) -> Value {
        let accounts: serde_json::Map<String, Value> = self
            .accounts
            .iter()
            .map(|(login, a)| {
                (
                    login.clone(),
                    json!({ "password": a.password, "claims": a.claims }),
                )
            })
            .collect();
        let mut config = json!({
            "port": port,
            "issuer": issuer_for(port),
            "clients": self.clients,
            "accounts": accounts,
            "signing_alg": self.signing_alg,
        });
        if let Some(jwks) = &self.jwks {
            config["jwks"] = jwks.clone();
        }
        config
    }
}

/// The issuer of a provider on `port`: `http://127.0.0.1:PORT` (no trailing slash).
pub fn issuer_for(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A running provider (`node tests/oidc/provider.mjs`); stopped when dropped.
pub struct OidcProvider {
    pub port: u16,
    /// Its config and its log (`provider.log`: everything it wrote to stderr).
    pub dir: PathBuf,
    pub spec: ProviderSpec,
    client: HttpClient,
    process: NodeChild,
}

impl OidcProvider {
    /// Start the provider of `spec` and wait until it listens; panics with its log if it
    /// cannot start.
    pub fn start(spec: ProviderSpec) -> OidcProvider {
        ensure_node_modules();
        let dir = super::temp_dir("oidc");
        let mut last_error = String::new();
        // A free port may be taken by someone else before node binds it: retry on another.
        // A start that is only late (CI once saw one pass 30 s, while three Chromium journeys
        // shared the two cores) is tried again even on a fixed port: that port is still ours.
        let tries = if spec.port.is_some() { 3 } else { 5 };
        for _ in 0..tries {
            let port = spec.port.unwrap_or_else(super::free_port);
            let config = dir.join("provider.json");
            std::fs::write(
                &config,
                serde_json::to_vec_pretty(&spec.config(port)).expect("config JSON"),
            )
            .expect("write provider.json");
            match spawn(&config, &dir, port) {
                Ok(process) => {
                    return OidcProvider {
                        port,
                        dir,
                        spec,
                        client: super::h1_client(),
                        process,
                    }
                }
                Err((late, e)) => {
                    last_error = format!("port {port}: {e}");
                    if spec.port.is_some() && !late {
                        break;
                    }
                }
            }
        }
        panic!("could not start the OIDC provider: {last_error}");
    }

    /// `http://127.0.0.1:PORT`: what doorman's config names as the issuer.
    pub fn issuer(&self) -> String {
        issuer_for(self.port)
    }

    /// `{issuer}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// The discovery document, fetched (asserting a 200 JSON answer).
    pub async fn discovery(&self) -> Value {
        let answer = request(&self.client, "GET", &self.discovery_url(), &[], "").await;
        assert_eq!(answer.status, 200, "discovery: {}", answer.text());
        serde_json::from_slice(&answer.body).expect("discovery is JSON")
    }

    /// The authorization endpoint (oidc-provider's `/auth`) with these query parameters.
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        with_query(&self.url("/auth"), params)
    }

    /// The end-session endpoint (oidc-provider's `/session/end`) with these query parameters.
    pub fn end_session_url(&self, params: &[(&str, &str)]) -> String {
        with_query(&self.url("/session/end"), params)
    }

    /// The token endpoint (oidc-provider's `/token`).
    pub fn token_url(&self) -> String {
        self.url("/token")
    }

    /// How many signed-in sessions the provider holds (its test-only `/test/sessions`).
    pub async fn sessions(&self) -> usize {
        let answer = request(&self.client, "GET", &self.url("/test/sessions"), &[], "").await;
        assert_eq!(answer.status, 200, "/test/sessions: {}", answer.text());
        let body: Value = serde_json::from_slice(&answer.body).expect("sessions JSON");
        let n = body["sessions"].as_u64().expect("sessions count");
        usize::try_from(n).expect("count")
    }

    /// What the provider wrote to stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("provider.log")).unwrap_or_default()
    }
}

/// `url?k=v&...`, form-encoded as a browser would.
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", query.join("&"))
}

/// The (first) query parameter `name` of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The payload of a compact JWS (an ID token), decoded but NOT verified: for asserting what
/// the provider put in it.
pub fn jwt_payload(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWS: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWS payload is base64url");
    serde_json::from_slice(&bytes).expect("JWS payload is JSON")
}

/// The header of a compact JWS, decoded.
pub fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("JWS header is base64url");
    serde_json::from_slice(&bytes).expect("JWS header is JSON")
}

/// A fresh random base64url string of `bytes` random bytes (state, nonce, PKCE verifier).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("random bytes");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A PKCE pair (RFC 7636): the verifier kept by the client and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let verifier = random_token(32);
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// Drive the provider's sign-in from `authorize_url`: follow it to the login form, post
/// `login` and `password`, and follow the provider's redirects. Returns the first redirect
/// that leaves the provider (to the client's redirect_uri, with `code`, `state`, `iss`)
/// WITHOUT following it; or, when there is none, the page it stopped on (the form again after a
/// wrong password, an error page). With a provider session already there, no form is shown
/// and the redirect comes straight back.
pub async fn sign_in(
    browser: &mut Browser,
    authorize_url: &str,
    login: &str,
    password: &str,
) -> Page {
    let provider = site(authorize_url);
    let page = browser.get(authorize_url).await;
    let page = browser.follow_within(page, &provider, MAX_HOPS).await;
    if page.is_redirect() {
        return page;
    }
    let Some(form) = page.form_with_button(SIGN_IN_BUTTON) else {
        return page;
    };
    let page = browser
        .submit(
            &form,
            &[("login", login), ("password", password)],
            Some(SIGN_IN_BUTTON),
        )
        .await;
    browser.follow_within(page, &provider, MAX_HOPS).await
}

/// Drive the provider's RP-initiated logout from `end_session_url`: get its confirmation page,
/// press [`LOGOUT_BUTTON`], and follow the provider's redirects. Returns the first redirect
/// that leaves the provider (to the `post_logout_redirect_uri`, with `state`) without following
/// it; or the page it stopped on (oidc-provider's own "signed out" page when no
/// post_logout_redirect_uri was given, an error page). Without a provider session there is no
/// confirmation page (the provider submits its form itself), and this goes straight through.
pub async fn confirm_logout(browser: &mut Browser, end_session_url: &str) -> Page {
    let provider = site(end_session_url);
    let page = browser.get(end_session_url).await;
    let page = browser.follow_within(page, &provider, MAX_HOPS).await;
    if page.is_redirect() {
        return page;
    }
    let Some(form) = page.form_with_button(LOGOUT_BUTTON) else {
        return page;
    };
    let page = browser.submit(&form, &[], Some(LOGOUT_BUTTON)).await;
    browser.follow_within(page, &provider, MAX_HOPS).await
}

/// A browser without scripts: a cookie jar per `host:port`, redirects followed only when asked.
/// Plain HTTP only.
pub struct Browser {
    client: HttpClient,
    jar: HashMap<String, Vec<StoredCookie>>,
}

#[derive(Debug, Clone)]
struct StoredCookie {
    name: String,
    value: String,
    path: String,
    secure: bool,
    expires: Option<cookie::time::OffsetDateTime>,
}

impl StoredCookie {
    fn expired(&self) -> bool {
        self.expires
            .is_some_and(|at| at <= cookie::time::OffsetDateTime::now_utc())
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: super::h1_client(),
            jar: HashMap::new(),
        }
    }

    /// `GET url` with this browser's cookies for it; the answer's cookies are kept.
    pub async fn get(&mut self, url: &str) -> Page {
        self.request("GET", url, &[], "").await
    }

    /// `POST url` with a form body (`application/x-www-form-urlencoded`) and `Origin:` the
    /// target's own origin (a same-origin form, as the provider's are; use
    /// [`Browser::request`] for a cross-origin one).
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let origin = origin_of(url);
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", origin.as_str()),
        ];
        self.request("POST", url, &headers, &body.join("&")).await
    }

    /// Any request, with extra headers (`cookie` ones are joined with the jar's into the one
    /// `Cookie` header a browser sends).
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Page {
        assert!(
            url.starts_with("http://"),
            "the test browser speaks plain HTTP only: {url}"
        );
        let is_cookie = |name: &str| name.eq_ignore_ascii_case("cookie");
        let mut all: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(name, _)| !is_cookie(name))
            .copied()
            .collect();
        let cookies: Vec<String> = headers
            .iter()
            .filter(|(name, _)| is_cookie(name))
            .map(|(_, v)| v.to_string())
            .chain(self.cookie_header(url))
            .collect();
        let cookies = cookies.join("; ");
        if !cookies.is_empty() {
            all.push(("cookie", &cookies));
        }
        let answer = request(&self.client, method, url, &all, body).await;
        self.store_cookies(url, &answer);
        Page {
            url: url.to_string(),
            answer,
        }
    }

    /// Follow redirects from `page` (always with GET, as browsers do after a 303) at most `max`
    /// times; the first answer that is not a redirect.
    pub async fn follow(&mut self, mut page: Page, max: usize) -> Page {
        for _ in 0..max {
            let Some(next) = page.location() else {
                return page;
            };
            page = self.get(&next).await;
        }
        assert!(
            !page.is_redirect(),
            "more than {max} redirects, last to {:?}",
            page.location()
        );
        page
    }

    /// Follow redirects from `page` while they stay on `stay_on`'s `host:port` (`stay_on` is a
    /// URL there, or the bare `host:port`), and submit the forms a page there submits by script
    /// (oidc-provider's auto-posting pages), at most `max` hops. Returns the first redirect that
    /// leaves, unfollowed, or the first page there that is neither.
    pub async fn follow_within(&mut self, mut page: Page, stay_on: &str, max: usize) -> Page {
        let here = site(stay_on);
        for _ in 0..max {
            if let Some(next) = page.location() {
                if site(&next) != here {
                    return page;
                }
                page = self.get(&next).await;
            } else if let Some(form) = page.auto_submit_form().filter(|f| site(&f.action) == here) {
                page = self.submit(&form, &[], None).await;
            } else {
                return page;
            }
        }
        panic!(
            "more than {max} hops on {here}, last at {} ({})",
            page.url, page.status
        );
    }

    /// Submit `form` as a browser would: its fields, `values` filled in over them, and the
    /// button whose text is `button` (its name=value, if it has one).
    pub async fn submit(
        &mut self,
        form: &Form,
        values: &[(&str, &str)],
        button: Option<&str>,
    ) -> Page {
        let fields = form.fill(values, button);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if form.method.eq_ignore_ascii_case("get") {
            let url = with_query(form.action.split('?').next().unwrap_or_default(), &fields);
            self.get(&url).await
        } else {
            self.post_form(&form.action, &fields).await
        }
    }

    /// The value of cookie `name` kept for `at`'s `host:port` (`at`: a URL there, or the bare
    /// `host:port`).
    pub fn cookie(&self, at: &str, name: &str) -> Option<String> {
        self.cookies(at)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every live cookie kept for `at`'s `host:port`, as (name, value).
    pub fn cookies(&self, at: &str) -> Vec<(String, String)> {
        self.jar
            .get(&site(at))
            .map(|cookies| {
                cookies
                    .iter()
                    .filter(|c| !c.expired())
                    .map(|c| (c.name.clone(), c.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Put cookie `name=value` (path `/`) in the jar for `at`, replacing one of that name:
    /// for a test that shows doorman a forged or stale cookie.
    pub fn set_cookie(&mut self, at: &str, name: &str, value: &str) {
        let cookies = self.jar.entry(site(at)).or_default();
        cookies.retain(|c| c.name != name);
        cookies.push(StoredCookie {
            name: name.to_string(),
            value: value.to_string(),
            path: "/".into(),
            secure: false,
            expires: None,
        });
    }

    /// Forget cookie `name` (every path) for `at`.
    pub fn remove_cookie(&mut self, at: &str, name: &str) {
        if let Some(cookies) = self.jar.get_mut(&site(at)) {
            cookies.retain(|c| c.name != name);
        }
    }

    /// The `Cookie` header for `url`: live cookies of its `host:port` whose path matches,
    /// longest path first (RFC 6265 §5.4); Secure ones never (plain HTTP).
    fn cookie_header(&self, url: &str) -> Option<String> {
        let path = url_path(url);
        let mut matching: Vec<&StoredCookie> = self
            .jar
            .get(&site(url))?
            .iter()
            .filter(|c| !c.expired() && !c.secure && path_matches(&path, &c.path))
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        Some(pairs.join("; "))
    }

    /// Keep the `Set-Cookie`s of an answer from `url` (host-only; `Domain` is ignored: every
    /// host here is an IP or a single test name). Max-Age ≤ 0 or a past Expires deletes;
    /// a Secure or `__Secure-`/`__Host-` cookie is refused, as browsers refuse it over HTTP.
    fn store_cookies(&mut self, url: &str, answer: &Answer) {
        let cookies = self.jar.entry(site(url)).or_default();
        for line in answer.headers.get_all(http::header::SET_COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            let Ok(parsed) = cookie::Cookie::parse(line.to_string()) else {
                continue;
            };
            let name = parsed.name().to_string();
            if parsed.secure() == Some(true)
                || name.starts_with("__Secure-")
                || name.starts_with("__Host-")
            {
                continue;
            }
            let path = match parsed.path() {
                Some(p) if p.starts_with('/') => p.to_string(),
                _ => default_path(&url_path(url)),
            };
            let now = cookie::time::OffsetDateTime::now_utc();
            let expires = match parsed.max_age() {
                Some(age) => Some(now + age),
                None => parsed.expires_datetime(),
            };
            cookies.retain(|c| !(c.name == name && c.path == path));
            let cookie = StoredCookie {
                name,
                value: parsed.value().to_string(),
                path,
                secure: false,
                expires,
            };
            if !cookie.expired() {
                cookies.push(cookie);
            }
        }
    }
}

/// One answer the browser got, and the URL it asked.
pub struct Page {
    pub url: String,
    pub answer: Answer,
}

impl Deref for Page {
    type Target = Answer;

    fn deref(&self) -> &Answer {
        &self.answer
    }
}

impl Page {
    /// Whether this is a redirect (3xx with a `Location`).
    pub fn is_redirect(&self) -> bool {
        self.status.is_redirection() && self.headers.contains_key(http::header::LOCATION)
    }

    /// Where a redirect points, made absolute against [`Page::url`].
    pub fn location(&self) -> Option<String> {
        if !self.status.is_redirection() {
            return None;
        }
        let location = self.header("location")?;
        Some(resolve(&self.url, location))
    }

    /// Query parameter `name` of the redirect's target (`code`, `state`, `iss`, `error`).
    pub fn location_param(&self, name: &str) -> Option<String> {
        query_param(&self.location()?, name)
    }

    /// The forms on the page.
    pub fn forms(&self) -> Vec<Form> {
        forms(&self.text(), &self.url)
    }

    /// The form that has a button reading `text`.
    pub fn form_with_button(&self, text: &str) -> Option<Form> {
        self.forms()
            .into_iter()
            .find(|f| f.buttons.iter().any(|b| b.text == text))
    }

    /// The form the page submits by script as soon as it loads (oidc-provider's
    /// `form_post`-style pages: logout without a session, re-login as someone else).
    pub fn auto_submit_form(&self) -> Option<Form> {
        if self.status != 200 || !self.text().contains("document.forms[0].submit()") {
            return None;
        }
        self.forms().into_iter().next()
    }
}

/// An HTML form: where it goes, its fields with their initial values, its buttons.
#[derive(Debug, Clone)]
pub struct Form {
    /// Absolute URL.
    pub action: String,
    pub method: String,
    pub id: Option<String>,
    pub fields: Vec<(String, String)>,
    pub buttons: Vec<Button>,
}

/// A submit button: `<button>` or `<input type=submit>`.
#[derive(Debug, Clone)]
pub struct Button {
    pub name: Option<String>,
    pub value: String,
    pub text: String,
}

impl Form {
    /// What a browser sends: the fields, `values` replacing (or adding) fields by name, then
    /// the pressed button's name=value (`button` is its text; a button without a name adds
    /// nothing).
    pub fn fill(&self, values: &[(&str, &str)], button: Option<&str>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .fields
            .iter()
            .filter(|(k, _)| !values.iter().any(|(name, _)| name == k))
            .cloned()
            .collect();
        out.extend(values.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if let Some(text) = button {
            let pressed = self
                .buttons
                .iter()
                .find(|b| b.text == text)
                .unwrap_or_else(|| panic!("no button {text:?} in {self:?}"));
            if let Some(name) = &pressed.name {
                out.push((name.clone(), pressed.value.clone()));
            }
        }
        out
    }
}

/// The forms of `html` (from `url`): enough HTML for the provider's pages and doorman's, not
/// a parser for the web. Inputs and buttons belong to the form they are in, or the one their
/// `form="ID"` attribute names (oidc-provider's logout buttons sit outside their form).
pub fn forms(html: &str, url: &str) -> Vec<Form> {
    let mut forms: Vec<Form> = Vec::new();
    let mut open: Option<usize> = None;
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let Some((name, attrs, after)) = tag(rest) else {
            continue;
        };
        rest = after;
        // The form a control belongs to: the one its `form` attribute names, or the open one.
        let owner = match attrs.get("form") {
            Some(id) => forms.iter().position(|f| f.id.as_deref() == Some(id)),
            None => open,
        };
        match name.as_str() {
            "form" => {
                forms.push(Form {
                    action: resolve(url, attrs.get("action").map_or(url, String::as_str)),
                    method: attrs.get("method").cloned().unwrap_or_else(|| "get".into()),
                    id: attrs.get("id").cloned(),
                    fields: Vec::new(),
                    buttons: Vec::new(),
                });
                open = Some(forms.len() - 1);
            }
            "/form" => open = None,
            "input" => {
                let Some(i) = owner else {
                    continue;
                };
                let kind = attrs
                    .get("type")
                    .map_or("text".to_string(), |t| t.to_ascii_lowercase());
                let value = attrs.get("value").cloned().unwrap_or_default();
                match kind.as_str() {
                    "submit" => forms[i].buttons.push(Button {
                        name: attrs.get("name").cloned(),
                        text: value.clone(),
                        value,
                    }),
                    "button" | "image" | "reset" | "file" => {}
                    "checkbox" | "radio" if !attrs.contains_key("checked") => {}
                    _ => {
                        if let Some(name) = attrs.get("name") {
                            forms[i].fields.push((name.clone(), value));
                        }
                    }
                }
            }
            "button" => {
                let end = rest.find("</button>").unwrap_or(rest.len());
                let text = decode_entities(strip_tags(&rest[..end]).trim());
                let kind = attrs.get("type").map_or("submit", String::as_str);
                if let (Some(i), true) = (owner, kind == "submit") {
                    forms[i].buttons.push(Button {
                        name: attrs.get("name").cloned(),
                        value: attrs.get("value").cloned().unwrap_or_default(),
                        text,
                    });
                }
            }
            _ => {}
        }
    }
    forms
}

/// One tag at the start of `s` (just past its `<`): lower-case name (`/form` for a closing
/// tag), attributes (names lower-cased, values entity-decoded) and what follows its `>`.
fn tag(s: &str) -> Option<(String, HashMap<String, String>, &str)> {
    let (closing, body) = match s.strip_prefix('/') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let name_len = body
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .unwrap_or(body.len());
    let name = body[..name_len].to_ascii_lowercase();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name = if closing { format!("/{name}") } else { name };
    let mut attrs = HashMap::new();
    let mut rest = &body[name_len..];
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if rest.is_empty() {
            return None;
        }
        if let Some(after) = rest.strip_prefix('>') {
            return Some((name, attrs, after));
        }
        let key_len = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let key = rest[..key_len].to_ascii_lowercase();
        rest = rest[key_len..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let (raw, remaining) = match after.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let end = after[1..].find(q)? + 1;
                    (&after[1..end], &after[end + 1..])
                }
                _ => {
                    let end = after
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            value = decode_entities(raw);
            rest = remaining;
        }
        if key.is_empty() {
            return None;
        }
        attrs.entry(key).or_insert(value);
    }
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The character references HTML escapers write (named: the five; numeric: any).
fn decode_entities(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&n| n <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `scheme://authority` of an absolute URL, as an `Origin` header carries it.
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// `host:port` of a URL (port 80 when absent), or of a bare `host:port`: the jar's key.
pub fn site(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']');
    let authority = authority.to_ascii_lowercase();
    if has_port {
        authority
    } else if url.starts_with("https://") {
        format!("{authority}:443")
    } else {
        format!("{authority}:80")
    }
}

/// The path of an absolute URL (`/` when empty), without query or fragment.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest
        .find('/')
        .map_or("/", |i| &rest[i..])
        .split(['?', '#'])
        .next()
        .unwrap_or("/");
    if path.is_empty() {
        "/".into()
    } else {
        path.to_string()
    }
}

/// RFC 6265 §5.1.4: the default cookie path of a request path.
fn default_path(path: &str) -> String {
    match path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].to_string(),
    }
}

/// RFC 6265 §5.1.4: whether `cookie_path` matches `request_path`.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/'))
}

/// `reference` made absolute against `base` (absolute, scheme-relative, absolute-path, or
/// relative-path references; no `..` folding).
pub fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_string();
    }
    let scheme = base.split_once("://").map_or("http", |(s, _)| s);
    if let Some(r) = reference.strip_prefix("//") {
        return format!("{scheme}://{r}");
    }
    let origin = origin_of(base);
    if reference.starts_with('/') {
        return format!("{origin}{reference}");
    }
    let path = url_path(base);
    if reference.is_empty() {
        return base.split('#').next().unwrap_or(base).to_string();
    }
    if reference.starts_with('?') {
        return format!("{origin}{path}{reference}");
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{origin}{dir}{reference}")
}

/// tests/oidc: the provider script and its package.
fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// Node and tests/oidc/node_modules (oidc-provider, pinned by the committed lock file).
fn ensure_node_modules() {
    super::node::require_node("the OIDC tests run a real provider (oidc-provider from npm)");
    super::node::npm_ci(&oidc_dir(), "oidc-provider", &[]);
}

/// Run `node tests/oidc/provider.mjs CONFIG` (stderr to `provider.log`) and wait for its
/// `ready PORT` line. `Err` with its log when it exits first (typically: the port was taken)
/// or is not ready in time (then with `true`: it was only late, and was killed).
fn spawn(config: &Path, dir: &Path, port: u16) -> Result<NodeChild, (bool, String)> {
    let log_path = dir.join("provider.log");
    let log = std::fs::File::create(&log_path).expect("create provider.log");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("node");
    cmd.arg(oidc_dir().join("provider.mjs"))
        .arg(config)
        .current_dir(root)
        .stderr(log);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = format!("ready {port}");
    node::start(&mut cmd, &ready, START_LIMIT, OtherLines::Fatal).map_err(|why| match why {
        NotReady::Spawn(e) => (false, format!("spawn node: {e}")),
        NotReady::Unexpected(line) => (
            false,
            format!("unexpected line {line:?} on stdout:\n{}", read_log()),
        ),
        NotReady::Exited(status, _) => (
            false,
            format!("provider exited ({status}):\n{}", read_log()),
        ),
        NotReady::Late(_) => (
            true,
            format!("provider not ready after {START_LIMIT:?}:\n{}", read_log()),
        ),
    })
}
