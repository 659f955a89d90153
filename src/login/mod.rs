//! Logging in and out: doorman's own endpoints under `[login] prefix` (DESIGN.md §4) — the
//! login form, login (password or OpenID Connect, §10), logout, the session probe, the identity assertion's public keys
//! (`jwks.json`, §9), and the routes to the forward-auth checks (`auth`, `forward-auth`:
//! `crate::forward_auth`, §8) — and the login handoff (§6).
//!
//! The room's files: this one answers the endpoints; [`form`] reads the login form; [`origin`]
//! tells cross-site requests apart; [`throttle`] counts attempts; [`hasher`] checks passwords;
//! [`page`] renders the form; [`next`] keeps the post-login redirect local (or on an allowed
//! host); [`hosts`] signs a login in on other hosts with one-time codes (`callback`);
//! [`openid`] signs in with an OpenID Connect provider (`oidc/start`, `oidc/callback`, and
//! logout's half at the provider); [`handoff`] acts on an upstream's `X-Doorman-*` headers. The users file they check against is part of the
//! config (`config::users`): it is loaded, validated and reloaded with it.
//!
//! * Cross-site protection ([`origin`]): a state-changing request (`POST` login or logout, a
//!   handoff) is refused when the browser says it came from another site.
//! * Throttling ([`throttle`]): every attempt is counted in the session store *before*
//!   its password is checked, per user and client (`max_failures` within `failure_window`)
//!   and per client across user names (`4 × max_failures`); over either limit it is answered
//!   429 without a check. Attempts for one user and client take turns. A success clears the
//!   user+client count and takes its own attempt back from the per-client count.
//! * Password checks run on the [`hasher`] pool, one thread per core, each reusing its
//!   own Argon2 memory (Argon2id is memory-hard; unbounded parallel logins would be a denial of
//!   service, in CPU and in memory). A login that cannot get a thread within [`HASH_WAIT`] is
//!   answered 503. An unknown user is checked against a dummy hash: the same cost, the same
//!   401.
//! * The form is read under one deadline, `[listen] body_timeout` for the whole body (408 when
//!   it passes), and a declared `Content-Length` over [`form::MAX_FORM_BYTES`] is refused (413)
//!   before any of the body is read: a login cannot hold a connection open by dribbling.
//! * Login rotates the session: any session the client presented is destroyed and a new id is
//!   issued, so a session id planted before login (fixation) is worthless after it.

pub mod form;
pub mod handoff;
pub mod hasher;
pub mod hosts;
pub mod next;
pub mod openid;
pub mod origin;
pub mod page;
pub mod throttle;

use crate::session::express::Bridge;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use crate::access::{self, Shared};
use crate::audit::{self, LoginFailure};
use crate::body::{self, Body};
use crate::config::Config;
use crate::cookie::Presented;
use crate::error::ProxyError;
use crate::exchange::{CookieAction, Exchange, SessionState};
use crate::forward_auth::{self, Convention};
use crate::metrics::Login as LoginResult;
use crate::session::{Origin, Record, SessionId, SessionKey, SessionStore};
use form::Form;
use hasher::{HashError, Hasher};
use next::safe_next;
use origin::is_cross_site;
use page::LoginPage;
use throttle::{Admission, Throttle};

/// How long a login waits for a free hashing slot before answering 503.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// What logins share across requests and reloads: the password-check threads and the attempt
/// counters' turns.
#[derive(Clone)]
pub struct Login {
    /// The password-check threads, one per core (Argon2id is memory-hard).
    pub hasher: Arc<Hasher>,
    /// Login attempts counted before their check, one at a time per user and client.
    pub throttle: Arc<Throttle>,
}

impl Login {
    /// One hashing thread per core, waiting at most [`HASH_WAIT`] for one.
    pub fn new() -> Login {
        Login {
            hasher: Arc::new(Hasher::per_core(HASH_WAIT)),
            throttle: Arc::new(Throttle::default()),
        }
    }

    /// A password login: cross-site check, form, throttle, password check, then a new session.
    async fn log_in(
        &self,
        shared: &Shared,
        ex: &mut Exchange,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        let config = &*shared.config;
        let peer = ex.client.peer;
        let from = ex.client.source();
        if is_cross_site(config, &ex.client, &req) {
            // The form of a cross-site post is not read: the user is not known.
            shared.metrics.login(LoginResult::cross_site);
            audit::login_failure(from, None, LoginFailure::CrossSite);
            return Err(ProxyError::Forbidden);
        }
        let form = form::read(req.into_body(), config.listen.body_timeout).await?;
        let username = form.get("username").unwrap_or_default().to_owned();
        let password = form.get("password").unwrap_or_default().to_owned();
        let next = form.get("next");

        let store = &shared.store;
        let window = config.login.failure_window;
        let admission = self
            .throttle
            .admit(
                store,
                &username,
                ex.client.addr,
                config.login.max_failures,
                window,
            )
            .await?;
        let Admission::Go(attempt) = admission else {
            shared.metrics.login(LoginResult::throttled);
            audit::login_failure(from, Some(&username), LoginFailure::Throttled);
            return Err(ProxyError::Throttled(window));
        };

        let (hash, user) = config.users.hash_for(&username);
        let matched = match self.hasher.verify(hash.to_owned(), password).await {
            Ok(matched) => matched,
            Err(e) => {
                // Busy is the expected answer to a flood (logged once, as the 503); a thread that
                // died is not.
                if matches!(e, HashError::Failed) {
                    warn!(peer = %peer, error = %e, "password not checked");
                }
                attempt.unchecked().await;
                return Err(ProxyError::Busy);
            }
        };
        let groups = match user {
            Some(user) if matched => user.groups().to_vec(),
            _ => {
                // The attempt stays counted: dropping it ends this user+client's turn.
                drop(attempt);
                shared.metrics.login(LoginResult::bad_credentials);
                audit::login_failure(from, Some(&username), LoginFailure::BadCredentials);
                let error = Some("Wrong user name or password.");
                return Ok(page(
                    StatusCode::UNAUTHORIZED,
                    config,
                    next,
                    Some(&username),
                    error,
                ));
            }
        };
        attempt.succeeded().await?;

        let record = Record::new(
            username,
            groups,
            Origin::Login,
            shared.clock.now_millis(),
            &config.session.timeouts,
        );
        let next = valid_next(config, ex, next);
        let resp = begin_session(shared, ex, record, &next).await?;
        shared.metrics.login(LoginResult::success);
        let (user, tag) = (ex.user.as_deref(), ex.session_tag.as_ref());
        audit::login(
            from,
            user.unwrap_or_default(),
            tag.map_or("", |t| t.as_str()),
        );
        Ok(resp)
    }
}

/// Where a login sends the browser: `next` if it is local (or, with `[forward_auth]`, an
/// absolute URL on an allowed host), else `/`.
pub(crate) fn valid_next(config: &Config, ex: &Exchange, next: Option<&str>) -> String {
    let absolute = config.forward_auth.as_ref().map(|fa| next::Absolute {
        hosts: &fa.allowed_hosts,
        http: !ex.client.https,
    });
    safe_next(next, absolute)
}

/// Start `record`'s session the way every login does (the password form, OpenID Connect):
/// any session the client presented is destroyed, a fresh id is stored and set as the cookie
/// (so an id planted before login is worthless after it), and the answer is `303` to `next`
/// (already validated by [`valid_next`]) — through a one-time code when `next` is on another
/// host ([`hosts`]).
pub(crate) async fn begin_session(
    shared: &Shared,
    ex: &mut Exchange,
    record: Record,
    next: &str,
) -> Result<Response<Body>, ProxyError> {
    let store = &shared.store;
    if let Some(old) = ex.presented_key() {
        store.delete(&old).await?;
    }
    let id = SessionId::generate()?;
    let key = id.key();
    store.create(&key, &record).await?;
    ex.log_session(Some(&record.user), &key);
    ex.cookie = CookieAction::Set(id);
    if let Some(to) = hosts::other_host(&shared.config, next) {
        // Another host: it gets its own cookie through a one-time code.
        let url = hosts::issue(shared, &key, &record, &to, next).await?;
        return Ok(see_other(&url));
    }
    Ok(see_other(next))
}

impl Default for Login {
    fn default() -> Self {
        Login::new()
    }
}

/// Answer a request for a path under the login prefix (`ex.path`, normalised).
/// The forward-auth convention a request to `path` (normalised, under the login prefix) with
/// `method` calls: `<prefix>/auth` or `<prefix>/forward-auth` (any case), GET or HEAD. Behind a
/// gateway every request of the site is one of these, so the gate answers them without
/// [`endpoint`]'s boxed future (6 KB allocated and copied per request).
pub fn forward_auth_call(config: &Config, path: &str, method: &Method) -> Option<Convention> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let rest = path.get(config.login.prefix.len()..)?;
    if rest.eq_ignore_ascii_case("/auth") {
        Some(Convention::AuthRequest)
    } else if rest.eq_ignore_ascii_case("/forward-auth") {
        Some(Convention::ForwardAuth)
    } else {
        None
    }
}

pub async fn endpoint(
    shared: &Shared,
    login: &Login,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let config = &*shared.config;
    let path = ex.path.as_deref().unwrap_or_default();
    let rest = path
        .get(config.login.prefix.len()..)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match (rest.as_str(), req.method().clone()) {
        ("/login", Method::GET | Method::HEAD) => login_page(shared, ex, &req).await,
        ("/callback", Method::GET | Method::HEAD) => hosts::callback(shared, ex, &req).await,
        ("/login", Method::POST) => login.log_in(shared, ex, req).await,
        ("/logout", Method::POST) => log_out(shared, ex, req).await,
        ("/session", Method::GET | Method::HEAD) => session_info(shared, ex).await,
        ("/auth" | "/forward-auth", Method::GET | Method::HEAD) => {
            // The gate answers these before it gets here (`forward_auth_call`); the same answer.
            let convention =
                forward_auth_call(config, path, req.method()).ok_or(ProxyError::NotFound)?;
            forward_auth::answer(shared, ex, convention, req.headers()).await
        }
        ("/jwks.json", Method::GET | Method::HEAD) => jwks(config),
        ("/oidc/start", Method::GET | Method::HEAD) => openid::start(shared, ex, &req).await,
        ("/oidc/callback", Method::GET | Method::HEAD) => openid::callback(shared, ex, &req).await,
        (
            "/login" | "/logout" | "/session" | "/auth" | "/forward-auth" | "/callback"
            | "/jwks.json" | "/oidc/start" | "/oidc/callback",
            _,
        ) => Err(ProxyError::MethodNotAllowed),
        _ => Err(ProxyError::NotFound),
    }
}

/// The login form; or, on the login host, for a browser that already has a session there and
/// comes from another host (an absolute `next`), straight back to that host with a one-time
/// code ([`hosts`]).
async fn login_page(
    shared: &Shared,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let config = &*shared.config;
    let query = Form::query(req.uri().query());
    let asked = query.get("next");
    if let (Some(fa), Some(_)) = (&config.forward_auth, asked) {
        let absolute = next::Absolute {
            hosts: &fa.allowed_hosts,
            http: !ex.client.https,
        };
        let next = safe_next(asked, Some(absolute));
        if let Some(to) = hosts::other_host(config, &next) {
            access::lookup(shared, ex).await;
            if let SessionState::Valid { key, record, .. } = &ex.session {
                let url = hosts::issue(shared, key, record, &to, &next).await?;
                return Ok(see_other(&url));
            }
        }
    }
    Ok(page(StatusCode::OK, config, asked, None, None))
}

async fn log_out(
    shared: &Shared,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    if is_cross_site(&shared.config, &ex.client, &req) {
        audit::logout_refused(ex.client.source());
        return Err(ProxyError::Forbidden);
    }
    let mut to = None;
    let mut express = None;
    match ex.presented_key() {
        Some(presented) => {
            // Who is logging out, for the audit trail (a stale session has no user; a store
            // error here surfaces on the delete below).
            access::lookup(shared, ex).await;
            // The session found: the presented one, or — a stale cookie beside the express
            // app's (DESIGN.md §12) — the one the lookup just took over, which ends too.
            let key = match &ex.session {
                SessionState::Valid { key, .. } => *key,
                _ => presented,
            };
            let user = ex.identity().map(|who| who.user().to_string());
            if let SessionState::Valid { record, .. } = &ex.session {
                express = record.express.clone();
            }
            if let SessionState::Valid { record, .. } = &ex.session {
                // Signed in with the provider: its session ends too (read before the delete,
                // which removes the ID token it needs). The login's own session keeps it.
                let login_key = SessionKey::from_hex(&record.family(&key)).unwrap_or(key);
                to = openid::end_session_url(shared, ex, &req, record, &login_key).await?;
            }
            match &ex.session {
                // Signed in across hosts: every session of this login ends, on every host.
                SessionState::Valid { record, .. } if hosts::enabled(&shared.config) => {
                    let family = record.family(&key);
                    shared.store.delete_family(&record.user, &family).await?;
                    // The presented session too, should its index entry be missing.
                    shared.store.delete(&key).await?;
                }
                _ => {
                    shared.store.delete(&key).await?;
                }
            }
            if key != presented {
                shared.store.delete(&presented).await?;
            }
            audit::logout(ex.client.source(), user.as_deref(), &key.tag());
            ex.log_session(user.as_deref(), &key);
            ex.cookie = CookieAction::Expire;
        }
        None if ex.presented == Presented::Invalid => ex.cookie = CookieAction::Expire,
        None => {}
    }
    let mut resp = see_other(to.as_deref().unwrap_or("/"));
    if let (Some(bridge), Some(id)) = (&shared.express, express) {
        express_logout(bridge, &id, &mut resp).await;
    }
    Ok(resp)
}

/// A session taken over from express-session ends the app's too (DESIGN.md §12): its record is
/// deleted and its cookie expired in the browser. The doorman session is gone already, and its
/// take-over record keeps the old cookie from making a new one, so a Redis that fails here
/// costs nothing but the app's record lingering until its TTL: logged, not answered 503.
async fn express_logout(bridge: &Bridge, id: &str, resp: &mut Response<Body>) {
    if let Err(error) = bridge.forget(id).await {
        warn!(%error, "logout: the express-session record could not be deleted; it expires on its own");
    }
    bridge.expire_cookie(resp.headers_mut());
}

async fn session_info(shared: &Shared, ex: &mut Exchange) -> Result<Response<Body>, ProxyError> {
    access::lookup(shared, ex).await;
    let (identity, record) = match std::mem::take(&mut ex.session) {
        SessionState::Valid {
            identity, record, ..
        } => (identity, record),
        SessionState::Down(e) => return Err(ProxyError::StoreUnavailable(e)),
        SessionState::Stale { .. } => {
            ex.cookie = CookieAction::Expire;
            return Err(ProxyError::NoSession);
        }
        SessionState::None => return Err(ProxyError::NoSession),
    };
    let json = serde_json::json!({
        "user": identity.user(),
        "groups": identity.groups(),
        "created": record.created / 1000,
        "expires": record.absolute_expiry / 1000,
    });
    Ok(body::own_response(
        StatusCode::OK,
        "application/json",
        json.to_string(),
    ))
}

/// `GET <prefix>/jwks.json` (DESIGN.md §9): the public keys the identity assertion verifies
/// against; 404 when no assertion is configured. Cacheable for five minutes, which is why a
/// rotation publishes a key (`next_keys`) longer than that before it signs.
fn jwks(config: &Config) -> Result<Response<Body>, ProxyError> {
    let assertion = config.identity.assertion().ok_or(ProxyError::NotFound)?;
    let mut resp = body::own_response(StatusCode::OK, "application/json", assertion.jwks().clone());
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    Ok(resp)
}

/// The login page with `status` (200, or 401 after a failed attempt).
pub(crate) fn page(
    status: StatusCode,
    config: &Config,
    next: Option<&str>,
    username: Option<&str>,
    error: Option<&str>,
) -> Response<Body> {
    let action = format!("{}/login", config.login.prefix);
    let start = format!("{}/oidc/start", config.login.prefix);
    let provider = config.oidc.as_ref().map(|oidc| page::ProviderButton {
        name: &oidc.name,
        start: &start,
    });
    let html = page::render(&LoginPage {
        action: &action,
        next,
        username,
        error,
        notice: None,
        provider,
        // With a provider and no local users, the password form could only fail.
        hide_password: provider.is_some() && config.users.is_empty(),
    });
    let mut resp = body::own_response(status, "text/html; charset=utf-8", html);
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Signing in across hosts, the form's redirects go on to the other hosts (§8).
    let hosts: Vec<String> = match &config.forward_auth {
        Some(fa) if hosts::enabled(config) => {
            fa.allowed_hosts.iter().map(ToString::to_string).collect()
        }
        _ => Vec::new(),
    };
    if let Ok(csp) = HeaderValue::from_str(&page::content_security_policy_with(&hosts)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}

fn see_other(location: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    // `safe_next` returns visible ASCII only.
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn forward_auth_calls_are_the_two_endpoints_by_get_or_head_in_any_case() {
        let config = Config::parse("[login]\nprefix = \"/_gate\"\n", Path::new("/x/proxy.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let call = |path: &str, method: Method| forward_auth_call(&config, path, &method);
        assert_eq!(
            call("/_gate/auth", Method::GET),
            Some(Convention::AuthRequest)
        );
        assert_eq!(
            call("/_gate/AUTH", Method::HEAD),
            Some(Convention::AuthRequest)
        );
        assert_eq!(
            call("/_gate/Forward-Auth", Method::GET),
            Some(Convention::ForwardAuth)
        );
        for (path, method) in [
            ("/_gate/auth", Method::POST),
            ("/_gate/auth/", Method::GET),
            ("/_gate/authx", Method::GET),
            ("/_gate/login", Method::GET),
            ("/_gate", Method::GET),
        ] {
            assert_eq!(call(path, method.clone()), None, "{method} {path}");
        }
    }
}
