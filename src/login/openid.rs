//! `GET <prefix>/oidc/start` and `GET <prefix>/oidc/callback` (DESIGN.md §10), and the
//! provider half of logout.
//!
//! **start** validates `next` as the login form does, makes a [`Flow`] (state, nonce, PKCE
//! verifier), sets it sealed in its own cookie and sends the browser to the provider: `302`.
//! A browser with [`flow::MAX_FLOWS`] flows under way has them all expired first.
//! Before discovery has succeeded it answers `503` with `Retry-After` (the provider may be
//! down; doorman itself is not).
//!
//! **callback**, in order — each refusal is a `401` login page with a plain message, an audit
//! event naming the reason and `doorman_oidc_logins_total{result=<reason>}`, and never a
//! session:
//! 1. the flow cookie named after `state` opens and holds that whole `state`
//!    (`unknown_state`: absent, forged, or another browser's), and has not expired
//!    (`expired_state`);
//! 2. the state is used once: its use is counted in the store until the flow would have
//!    expired (`replayed_state`). A store error here is a `503`, like any other;
//! 3. the provider's `error=` (`provider_error`), RFC 9207's `iss` when the provider
//!    advertises it, or whenever present (`wrong_issuer`), a `code` (`missing_code`);
//! 4. the code exchange and the ID token's verification (`provider::OidcError::reason`);
//! 5. the claims: the user claim present and a safe name (`invalid_user`); with
//!    `user_claim = "email"`, `email_verified = true` (`email_not_verified`) and the part
//!    after the last `@` in `allowed_domains` (`domain_not_allowed`); a users-file name only
//!    with `link_local_users` (`local_user`).
//!
//! Then the session is made by [`crate::login::begin_session`], as the login form makes one,
//! with the groups from `groups_claim` (a list of strings, or one string; entries that are not
//! safe header values are dropped and logged) and the ID token sealed for logout's
//! `id_token_hint`.

use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tracing::warn;

use super::form::Form;
use super::{self as login, origin};
use crate::access::Shared;
use crate::audit;
use crate::body::{self, Body};
use crate::config::{Config, CookieSecure, OidcConfig, Users};
use crate::encoding::hex_lower;
use crate::error::ProxyError;
use crate::exchange::Exchange;
use crate::identity::check_name;
use crate::oidc::flow::{self, Flow};
use crate::oidc::provider::{pkce, AuthorizeRequest, OidcError};
use crate::oidc::Oidc;
use crate::session::{Origin, Record, SessionStore};

/// Why a sign-in was refused: the metric's label and the audit event's reason, and the
/// sentence the person sees.
struct Refusal {
    reason: &'static str,
    detail: String,
    user: Option<String>,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
            user: None,
        }
    }

    /// The plain message on the page: what happened, not how doorman checks it.
    fn message(&self) -> &'static str {
        match self.reason {
            "provider_error" => "The sign-in provider did not sign you in. Please try again.",
            "unknown_state" | "expired_state" | "replayed_state" => {
                "This sign-in link has expired or was already used. Please sign in again."
            }
            "email_not_verified" => {
                "Your email address is not verified with the sign-in provider, so it cannot be used to sign in."
            }
            "domain_not_allowed" => "Accounts from your email domain cannot sign in here.",
            "local_user" | "invalid_user" => "This account cannot sign in here.",
            _ => "Signing in with the provider failed. Please try again.",
        }
    }
}

impl From<OidcError> for Refusal {
    fn from(e: OidcError) -> Refusal {
        Refusal::new(e.reason(), e.to_string())
    }
}

/// The runtime, or 404 when `[oidc]` is not configured.
fn runtime(shared: &Shared) -> Result<(&Oidc, &OidcConfig), ProxyError> {
    match (&shared.oidc, &shared.config.oidc) {
        (Some(oidc), Some(config)) => Ok((oidc, config)),
        _ => Err(ProxyError::NotFound),
    }
}

/// Whether doorman's cookies for this request are `Secure` (and so `__Host-`).
fn secure(config: &Config, ex: &Exchange) -> bool {
    ex.client.https || config.session.cookie_secure == CookieSecure::Always
}

/// The origin the provider sends the browser back to (the redirect URI's, logout's
/// `post_logout_redirect_uri`): `[login] public_origin`, so it is the one registered at the
/// provider whatever `Host` a request came with; else the origin the browser used.
fn return_origin(config: &Config, ex: &Exchange, req: &Request<Incoming>) -> Option<String> {
    config
        .login
        .public_origin
        .clone()
        .or_else(|| origin::public_origin(config, &ex.client, req))
}

/// `GET <prefix>/oidc/start?next=…`.
pub async fn start(
    shared: &Shared,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let (oidc, settings) = runtime(shared)?;
    let config = &*shared.config;
    let meta = oidc
        .provider
        .metadata()
        .ok_or(ProxyError::ProviderUnavailable)?;
    let query = Form::query(req.uri().query());
    let asked = query.get("next").filter(|n| n.len() <= flow::MAX_NEXT);
    let next = login::valid_next(config, ex, asked);
    let origin = return_origin(config, ex, req).ok_or(ProxyError::BadRequest("no host"))?;
    let redirect_uri = format!("{origin}{}/oidc/callback", config.login.prefix);
    let random = || flow::random().ok_or(ProxyError::BadRequest("no random source"));
    let (state, nonce) = (random()?, random()?);
    let (verifier, challenge) = pkce();
    let now = shared.clock.now_millis();
    let lifetime = u64::try_from(flow::LIFETIME.as_millis()).unwrap_or(u64::MAX);
    let secure = secure(config, ex);
    let name = flow::cookie_name(&state, secure).ok_or(ProxyError::BadRequest("state"))?;
    let location = oidc.provider.authorize_url(
        &meta,
        &AuthorizeRequest {
            redirect_uri: &redirect_uri,
            scopes: &settings.scopes,
            state: &state,
            nonce: &nonce,
            code_challenge: &challenge,
        },
    );
    let sealed = Flow {
        state,
        verifier,
        nonce,
        next,
        redirect_uri,
        expires: now.saturating_add(lifetime),
    }
    .seal(oidc.sealer(), &name)
    .ok_or(ProxyError::BadRequest("no random source"))?;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    let under_way = flow::names(req.headers());
    if under_way.len() >= flow::MAX_FLOWS {
        for old in under_way {
            if let Some(v) = flow::expire_cookie(&old, old.starts_with("__Host-")) {
                h.append(header::SET_COOKIE, v);
            }
        }
    }
    if let Some(v) = flow::set_cookie(&name, &sealed, secure) {
        h.append(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET <prefix>/oidc/callback?code=…&state=…[&iss=…]` (or `?error=…`).
pub async fn callback(
    shared: &Shared,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let (oidc, settings) = runtime(shared)?;
    let config = &*shared.config;
    let query = Form::query(req.uri().query());
    let secure = secure(config, ex);
    let state = query.get("state").unwrap_or_default();
    let name = flow::cookie_name(state, secure);
    // The flow cookie named after this state, as this browser sent it.
    let sent = name
        .as_deref()
        .and_then(|name| Some((name, flow::find(req.headers(), name)?)));
    let opened = sent
        .and_then(|(name, value)| Flow::open(oidc.sealer(), name, value))
        .filter(|flow| flow.state == state);
    let outcome = match (&name, opened) {
        (None, _) => Err(Refusal::new(
            "unknown_state",
            "no state, or not one doorman made",
        )),
        (Some(_), None) => Err(Refusal::new(
            "unknown_state",
            "no flow cookie for this state in this browser",
        )),
        (Some(_), Some(flow)) => sign_in(shared, ex, oidc, settings, &query, flow).await?,
    };
    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(refusal) => {
            let from = ex.client.source();
            shared.metrics.oidc_login(refusal.reason);
            let user = refusal.user.as_deref();
            audit::oidc_failure(from, user, refusal.reason, &refusal.detail);
            let mut page = login::page(
                StatusCode::UNAUTHORIZED,
                config,
                None,
                None,
                Some(refusal.message()),
            );
            page.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            page
        }
    };
    // A flow is used once, whatever came of it.
    if let Some((name, _)) = sent {
        if let Some(v) = flow::expire_cookie(name, secure) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// Steps 1 (after the flow opened for its state) to 5, and the session. `Err` only for
/// answers that are not a refusal (a store error).
async fn sign_in(
    shared: &Shared,
    ex: &mut Exchange,
    oidc: &Oidc,
    settings: &OidcConfig,
    query: &Form,
    flow: Flow,
) -> Result<Result<Response<Body>, Refusal>, ProxyError> {
    let state = flow.state.as_str();
    let now = shared.clock.now_millis();
    if now >= flow.expires {
        return Ok(Err(Refusal::new(
            "expired_state",
            "the sign-in flow expired",
        )));
    }
    // Once: the use is counted until the flow would have expired anyway.
    let digest = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    let counter = format!("oidc-state:{}", hex_lower(digest.as_ref()));
    let left = Duration::from_millis(flow.expires - now);
    if shared.store.hit(&counter, left).await? > 1 {
        return Ok(Err(Refusal::new(
            "replayed_state",
            "this state was already used",
        )));
    }
    if let Some(error) = query.get("error") {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return Ok(Err(Refusal::new(
            "provider_error",
            format!("the provider answered error={error}"),
        )));
    }
    let Some(meta) = oidc.provider.metadata() else {
        return Err(ProxyError::ProviderUnavailable);
    };
    match query.get("iss") {
        Some(iss) if iss != meta.issuer => {
            return Ok(Err(Refusal::new(
                "wrong_issuer",
                "the authorization response's iss is not the issuer (RFC 9207)",
            )));
        }
        None if meta.iss_parameter_supported => {
            return Ok(Err(Refusal::new(
                "wrong_issuer",
                "the provider advertises RFC 9207 but sent no iss",
            )));
        }
        _ => {}
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return Ok(Err(Refusal::new("missing_code", "no code in the callback")));
    };
    let id_token = match oidc
        .provider
        .exchange(&meta, code, &flow.verifier, &flow.redirect_uri)
        .await
    {
        Ok(token) => token,
        Err(e) => return Ok(Err(e.into())),
    };
    let claims = match oidc
        .provider
        .verify(&meta, &id_token, &flow.nonce, now / 1000)
        .await
    {
        Ok(claims) => claims,
        Err(e) => return Ok(Err(e.into())),
    };
    let (user, groups) = match map_claims(&shared.config.users, settings, &claims) {
        Ok(mapped) => mapped,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let mut record = Record::new(
        user,
        groups,
        Origin::Oidc,
        now,
        &shared.config.session.timeouts,
    );
    record.id_token = oidc
        .sealer()
        .seal(id_token.as_bytes(), &id_token_purpose(&record.user))
        .map(String::into_boxed_str);
    let next = flow.next;
    let resp = login::begin_session(shared, ex, record, &next).await?;
    shared.metrics.oidc_login("success");
    let (user, tag) = (ex.user.as_deref(), ex.session_tag.as_ref());
    audit::oidc_login(
        ex.client.source(),
        user.unwrap_or_default(),
        tag.map_or("", |t| t.as_str()),
    );
    Ok(Ok(resp))
}

/// What a session's sealed ID token is bound to: its user.
fn id_token_purpose(user: &str) -> Vec<u8> {
    format!("doorman oidc id_token_hint\n{user}").into_bytes()
}

/// Step 5: the user name and groups the claims give, or why they cannot sign in.
fn map_claims(
    users: &Users,
    settings: &OidcConfig,
    claims: &Map<String, Value>,
) -> Result<(String, Vec<String>), Refusal> {
    let user = match claims.get(&settings.user_claim) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(Refusal::new(
                "invalid_user",
                format!("the ID token has no {:?} claim", settings.user_claim),
            ))
        }
    };
    let refuse = |reason, detail: String| Refusal {
        reason,
        detail,
        user: Some(user.clone()).filter(|u| check_name(u).is_ok()),
    };
    if let Err(e) = check_name(&user) {
        return Err(refuse(
            "invalid_user",
            format!(
                "the {:?} claim is not a usable user name: {e}",
                settings.user_claim
            ),
        ));
    }
    if settings.requires_verified_email() {
        // Some providers send the boolean as a string.
        let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(s)) if s == "true");
        if !verified {
            return Err(refuse(
                "email_not_verified",
                "email_verified is not true".into(),
            ));
        }
        if !settings.allowed_domains.is_empty() {
            let domain = user
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            if !settings.allowed_domains.contains(&domain) {
                return Err(refuse(
                    "domain_not_allowed",
                    format!("domain {domain:?} is not in allowed_domains"),
                ));
            }
        }
    }
    if !settings.link_local_users && users.get(&user).is_some() {
        return Err(refuse(
            "local_user",
            "a users-file user has this name and link_local_users is false".into(),
        ));
    }
    let mut groups = Vec::new();
    if let Some(claim) = &settings.groups_claim {
        let values: Vec<&Value> = match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::String(_)) => vec![one],
            _ => Vec::new(),
        };
        for value in values {
            match value.as_str() {
                Some(group) if check_name(group).is_ok() => groups.push(group.to_string()),
                _ => {
                    warn!(user = %user, claim = %claim, "OIDC group dropped: not a safe header value")
                }
            }
        }
    }
    Ok((user, groups))
}

/// Where logout sends the browser to end the provider's session too (RP-initiated logout),
/// for a session made by signing in with the provider; `None` for any other session, or a
/// provider that offers no `end_session_endpoint`. The ID token comes from the login's own
/// session (`family`: the key of the session a sign-in across hosts started from).
pub async fn end_session_url(
    shared: &Shared,
    ex: &Exchange,
    req: &Request<Incoming>,
    record: &Record,
    login_key: &crate::session::SessionKey,
) -> Result<Option<String>, ProxyError> {
    let (Some(oidc), Origin::Oidc) = (&shared.oidc, record.origin) else {
        return Ok(None);
    };
    let Some(meta) = oidc.provider.metadata() else {
        return Ok(None);
    };
    let config = &*shared.config;
    let hint = shared
        .store
        .sealed_id_token(login_key)
        .await?
        .and_then(|sealed| oidc.sealer().open(&sealed, &id_token_purpose(&record.user)))
        .and_then(|token| String::from_utf8(token).ok());
    let Some(origin) = return_origin(config, ex, req) else {
        return Ok(None);
    };
    let back = format!("{origin}/");
    Ok(oidc.provider.end_session_url(&meta, hint.as_deref(), &back))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateKey;
    use serde_json::json;

    fn settings() -> OidcConfig {
        OidcConfig {
            issuer: "https://sso.test".into(),
            client_id: "doorman".into(),
            client_secret: "s".into(),
            scopes: vec!["openid".into()],
            user_claim: "email".into(),
            groups_claim: Some("groups".into()),
            allowed_domains: Vec::new(),
            name: "SSO".into(),
            ca: None,
            state_key: StateKey::File("k".into(), [0; 32]),
            link_local_users: false,
        }
    }

    fn map(
        settings: &OidcConfig,
        users: &Users,
        v: Value,
    ) -> Result<(String, Vec<String>), &'static str> {
        map_claims(users, settings, v.as_object().unwrap()).map_err(|r| r.reason)
    }

    #[test]
    fn claims_map_to_a_user_and_groups() {
        let none = Users::empty();
        let s = settings();
        let claims = json!({"email": "a@x.test", "email_verified": true, "groups": ["staff", "bad,group", 7]});
        assert_eq!(
            map(&s, &none, claims),
            Ok(("a@x.test".into(), vec!["staff".into()]))
        );
        let one = json!({"email": "a@x.test", "email_verified": "true", "groups": "admin"});
        assert_eq!(
            map(&s, &none, one),
            Ok(("a@x.test".into(), vec!["admin".into()]))
        );
        let s = OidcConfig {
            user_claim: "sub".into(),
            groups_claim: None,
            ..settings()
        };
        assert_eq!(
            map(&s, &none, json!({"sub": 42, "groups": ["x"]})),
            Ok(("42".into(), vec![]))
        );
        assert_eq!(
            map(&s, &none, json!({"email": "a@x.test"})),
            Err("invalid_user")
        );
        assert_eq!(map(&s, &none, json!({"sub": "a,b"})), Err("invalid_user"));
        assert_eq!(map(&s, &none, json!({"sub": ""})), Err("invalid_user"));
    }

    #[test]
    fn emails_must_be_verified_and_in_an_allowed_domain() {
        let none = Users::empty();
        let s = OidcConfig {
            allowed_domains: vec!["example.com".into()],
            ..settings()
        };
        let ok = json!({"email": "a@Example.COM", "email_verified": true});
        assert!(map(&s, &none, ok).is_ok());
        let unverified = json!({"email": "a@example.com", "email_verified": false});
        assert_eq!(map(&s, &none, unverified), Err("email_not_verified"));
        let missing = json!({"email": "a@example.com"});
        assert_eq!(map(&s, &none, missing), Err("email_not_verified"));
        // Exactly the part after the last @: no suffix match, no earlier @.
        for email in [
            "a@evil-example.com",
            "a@example.com.evil.test",
            "a@example.com@evil.test",
            "example.com",
        ] {
            let c = json!({"email": email, "email_verified": true});
            assert_eq!(map(&s, &none, c), Err("domain_not_allowed"), "{email}");
        }
    }

    #[test]
    fn a_local_users_name_needs_link_local_users() {
        let users = Users::parse("[users.\"a@x.test\"]\npassword = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n").unwrap();
        let claims = json!({"email": "a@x.test", "email_verified": true});
        assert_eq!(map(&settings(), &users, claims.clone()), Err("local_user"));
        let linked = OidcConfig {
            link_local_users: true,
            ..settings()
        };
        assert!(map(&linked, &users, claims).is_ok());
    }
}
