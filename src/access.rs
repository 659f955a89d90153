//! Access: which session a request carries, and whether its route lets it pass.
//!
//! [`Shared`] is what the decision (and the login endpoints above it) need from the process:
//! the validated config, the session store, the metrics, the clock. [`lookup`] turns the cookie the
//! request presented into a [`SessionState`] on the [`Exchange`]; [`authorise`] applies the
//! route's access rule to it, answering with the cause doorman refuses with (401 with the
//! route's challenge, 403, 503 when the store cannot answer for a protected route).

use std::sync::Arc;

use http::{header, HeaderMap, Method};
use tracing::warn;

use crate::clock::Clock;
use crate::config::Config;
use crate::cookie::{CookiePolicy, Presented};
use crate::encoding::percent_encode_component;
use crate::error::{Challenge, ProxyError};
use crate::exchange::{CookieAction, Exchange, SessionState};
use crate::identity::Identity;
use crate::metrics::{Lookup, Metrics, RouteLabel};
use crate::oidc::Oidc;
use crate::routes::{Access, OnUnauthenticated, RoutePolicy};
use crate::session::express::{Bridge, TakeOver};
use crate::session::live::{Ended, Scope};
use crate::session::{Origin, Record, SessionKey, SessionStore, Store};

/// What every request shares below the proxy: the config, the session store, the metrics, and
/// doorman's cookie as served over plain HTTP and over TLS (built once per config).
pub struct Shared {
    /// The validated config this state was built for.
    pub config: Arc<Config>,
    /// The session store (the same one across reloads).
    pub store: Arc<Store>,
    /// The process's metrics, shared by every state a reload builds.
    pub metrics: Arc<Metrics>,
    /// The time sessions are judged against (the store's clock too).
    pub clock: Clock,
    /// `[oidc]` at run time: the provider and the state key.
    pub oidc: Option<Arc<Oidc>>,
    /// `[session.express]` at run time: the app's secrets and Redis (DESIGN.md §12).
    pub express: Option<Arc<Bridge>>,
    cookies: [CookiePolicy; 2],
}

impl Shared {
    /// The shared state for `config` around an opened store.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        clock: Clock,
        oidc: Option<Arc<Oidc>>,
    ) -> Shared {
        let cookies = [
            CookiePolicy::new(&config.session, false),
            CookiePolicy::new(&config.session, true),
        ];
        Shared {
            config,
            store,
            metrics,
            clock,
            oidc,
            express: None,
            cookies,
        }
    }

    /// The same state, taking over the sessions of an express-session app through `bridge`.
    pub fn with_express(mut self, bridge: Option<Arc<Bridge>>) -> Shared {
        self.express = bridge;
        self
    }

    /// Doorman's cookie as served to a client over TLS (`tls`) or plain HTTP.
    pub fn cookies(&self, tls: bool) -> &CookiePolicy {
        &self.cookies[usize::from(tls)]
    }
}

/// A request as the route table judges it: one doorman proxies, or the original request a
/// gateway describes (forward-auth). Both are decided by [`decide`], so a route means the same
/// thing whichever way a request comes.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The host the browser named, normalised ([`crate::host::normalise`]); `None` when no
    /// route matches on hosts (it is not looked at) or the request named none.
    pub host: Option<&'a str>,
    /// The normalised path.
    pub path: &'a str,
    /// The request's headers (page-load detection for `on_unauthenticated = "redirect"`).
    pub headers: &'a HeaderMap,
    /// Where the login page sends the browser back (and where that login page is).
    pub back: Return<'a>,
}

/// Where a login sends the browser back, made into a URL only when a challenge needs one:
/// most requests pass, and a forward-auth sub-request would otherwise format its original URL
/// every time.
#[derive(Debug, Clone, Copy)]
pub enum Return<'a> {
    /// A proxied request: its path and query, on the request's own origin (the login URL is a
    /// path there).
    Local(&'a str),
    /// A gateway's original request, `scheme://authority` + `target`; the login page is on
    /// `login_origin` (`[login] public_origin`) or, without one, on the original's origin.
    Original {
        /// `http` or `https`, as the browser used.
        scheme: &'static str,
        /// The authority as the browser used it.
        authority: &'a str,
        /// The path and query as sent.
        target: &'a str,
        /// `[login] public_origin`, when set.
        login_origin: Option<&'a str>,
    },
}

/// The decision for one request, the same for every way a request comes: [`route`], the
/// session [`lookup`], then [`authorise`].
///
/// Not an `async fn`: one keeps its arguments twice in its state, and this state is in the
/// request's future (a forward-auth answer's, sized with the gate's).
// Not `async fn` on purpose: see the doc comment (the arguments, held once).
#[allow(clippy::manual_async_fn)]
pub fn decide<'a>(
    shared: &'a Shared,
    ex: &'a mut Exchange,
    req: &'a Judged<'_>,
) -> impl std::future::Future<Output = Result<(), ProxyError>> + Send + 'a {
    async move {
        let policy = route(shared, ex, req)?;
        lookup(shared, ex).await;
        authorise(shared, ex, policy, req)
    }
}

/// The first step of [`decide`]: the first matching route, recorded on the exchange;
/// `deny` → 403.
fn route<'a>(
    shared: &'a Shared,
    ex: &mut Exchange,
    req: &Judged<'_>,
) -> Result<&'a RoutePolicy, ProxyError> {
    let matched = shared.config.routes.find(req.method, req.host, req.path);
    if let Some(route) = matched.route {
        ex.span.record("route", route.name.as_str());
    }
    ex.route = Some(match matched.route {
        Some(route) => route.name.clone(),
        None => RouteLabel::default_route(),
    });
    if matched.policy.access == Access::Deny {
        return Err(ProxyError::Forbidden);
    }
    Ok(matched.policy)
}

/// Look up the session the exchange's cookie presents and record the outcome on it; groups of
/// password sessions come from the users file as it is now.
pub async fn lookup(shared: &Shared, ex: &mut Exchange) {
    let state = match (&shared.express, ex.app_cookie.take()) {
        // Boxed, and a branch of its own: only requests that carry the app's cookie pay for
        // this future, and the others' lookup holds nothing more across its one await.
        (Some(bridge), Some(value)) => {
            Box::pin(async {
                let state = session_state(shared, &ex.presented).await;
                express_state(shared, bridge, ex, &value, state).await
            })
            .await
        }
        _ => session_state(shared, &ex.presented).await,
    };
    shared.metrics.session_lookup(match &state {
        SessionState::Valid { .. } => Lookup::hit,
        SessionState::None => Lookup::miss,
        SessionState::Stale { looked_up: false } => Lookup::miss,
        SessionState::Stale { looked_up: true } => Lookup::expired,
        SessionState::Down(_) => Lookup::store_error,
    });
    if let SessionState::Valid { key, .. } = &state {
        // The log's user is moved out of the session when the gate finishes (`gate::finish`).
        ex.session_tag = Some(key.log_tag());
    }
    ex.session = state;
}

/// The session a request carrying the express app's cookie `value` is served with (DESIGN.md
/// §12): without a doorman session, the one taken over from the app's (its cookie set on the
/// response); with one, the same, and whether the app's cookie may still reach the app.
async fn express_state(
    shared: &Shared,
    bridge: &Bridge,
    ex: &mut Exchange,
    value: &str,
    state: SessionState,
) -> SessionState {
    let now = shared.clock.now_millis();
    match state {
        SessionState::None | SessionState::Stale { .. } => {
            match bridge.take_over(&shared.store, value, now).await {
                Ok(TakeOver::Session(id, record)) => match identity_of(&shared.config, &record) {
                    Some(identity) => {
                        let key = id.key();
                        ex.cookie = CookieAction::Set(id);
                        SessionState::Valid {
                            key,
                            identity,
                            record,
                        }
                    }
                    None => state,
                },
                Ok(TakeOver::Ended) => {
                    // Revoked or logged out since: the browser may forget the app's cookie.
                    ex.expire_app_cookie = true;
                    state
                }
                Ok(TakeOver::No) => state,
                // The store or the app's Redis did not answer: fail closed, as for a lookup.
                Err(error) => SessionState::Down(error),
            }
        }
        SessionState::Valid { ref record, .. } if bridge.forward_cookie() => {
            ex.strip_app_cookie = !bridge.same_user(value, record, now).await.unwrap_or(false);
            state
        }
        other => other,
    }
}

async fn session_state(shared: &Shared, presented: &Presented) -> SessionState {
    let key = match presented {
        Presented::Absent => return SessionState::None,
        Presented::Invalid => return SessionState::Stale { looked_up: false },
        Presented::Key(key) => *key,
    };
    let now = shared.clock.now_millis();
    // The cache's answer, when it has one, returns before the lookup's future is made; it is
    // not kept in this future across the lookup's wait (the gate's future, which holds this
    // one, must stay within glibc's per-thread cache: see `server`).
    if let Some(record) = shared.store.fresh(&key, now) {
        return valid(shared, key, record);
    }
    match shared.store.lookup(&key, now).await {
        Err(error) => SessionState::Down(error),
        Ok(None) => SessionState::Stale { looked_up: true },
        Ok(Some(record)) => valid(shared, key, record),
    }
}

/// The state of a session whose record the store found live.
fn valid(shared: &Shared, key: SessionKey, record: Record) -> SessionState {
    let identity = identity_of(&shared.config, &record);
    match identity {
        Some(identity) => SessionState::Valid {
            key,
            identity,
            record,
        },
        None => SessionState::Stale { looked_up: true },
    }
}

/// Who a live session's record makes its bearer under `config`, if anyone: password sessions
/// must still be in the users file (their groups are read from it now), handoff and OIDC
/// sessions carry their groups.
fn identity_of(config: &Config, record: &Record) -> Option<Identity> {
    match record.origin {
        // The users file's own identity, validated and shared when the file was loaded.
        Origin::Login => config.users.get(&record.user).map(|u| u.identity.clone()),
        Origin::Handoff | Origin::Express => {
            Identity::new(Arc::clone(&record.user), record.groups.clone()).ok()
        }
        // Groups as the ID token gave them; the users file is not consulted, except that a
        // reload that removes `[oidc]`, or forbids a local user's name, ends these sessions.
        Origin::Oidc => match &config.oidc {
            Some(oidc) if oidc.link_local_users || config.users.get(&record.user).is_none() => {
                Identity::new(Arc::clone(&record.user), record.groups.clone()).ok()
            }
            _ => None,
        },
        // A one-time sign-in code presented as a cookie is never a session.
        Origin::Code => None,
    }
}

/// Whether a long-lived exchange of a live session may go on (DESIGN.md §11): the session's
/// record, as the re-check read it, judged under `shared` (the config now, after any reload)
/// like a new request for the same method, host and path. A route that became public keeps
/// it; one that now denies, or no longer admits the user, ends it.
///
/// The host is the one the routes matched when the exchange began; when no route named hosts
/// then, there is none, and host-scoped routes a reload added do not match it.
pub fn still_allowed(shared: &Shared, record: &Record, scope: &Scope) -> Result<(), Ended> {
    let identity = identity_of(&shared.config, record).ok_or(Ended::UserRemoved)?;
    let policy = shared
        .config
        .routes
        .find(&scope.method, scope.host.as_deref(), &scope.path)
        .policy;
    match policy.access {
        Access::Deny => Err(Ended::Forbidden),
        Access::Authenticated if !policy.allows(identity.user(), identity.groups()) => {
            Err(Ended::Forbidden)
        }
        Access::Authenticated | Access::Public => Ok(()),
    }
}

/// Apply `policy` (a route that is not `deny`) to the session looked up on `ex`: `Ok` when
/// the request may be forwarded (with the exchange's identity, if any), else the refusal.
///
/// A stale cookie is expired on the way out. A store outage fails closed on an authenticated
/// route (503); a public route still works, anonymously, and the cookie is kept.
fn authorise(
    shared: &Shared,
    ex: &mut Exchange,
    policy: &RoutePolicy,
    req: &Judged<'_>,
) -> Result<(), ProxyError> {
    let authenticated = policy.access == Access::Authenticated;
    match &ex.session {
        SessionState::Stale { .. } => ex.cookie = CookieAction::Expire,
        SessionState::Down(_) if authenticated => {
            if let SessionState::Down(error) = std::mem::take(&mut ex.session) {
                return Err(ProxyError::StoreUnavailable(error));
            }
        }
        SessionState::Down(error) => {
            shared.metrics.store_error();
            warn!(peer = %ex.client.peer, error = %error, "session store unavailable: forwarding anonymously");
        }
        SessionState::None | SessionState::Valid { .. } => {}
    }
    if !authenticated {
        return Ok(());
    }
    match ex.identity() {
        None => Err(ProxyError::Unauthenticated(challenge(
            &shared.config,
            policy,
            req,
        ))),
        Some(who) if !policy.allows(who.user(), who.groups()) => Err(ProxyError::Forbidden),
        Some(_) => Ok(()),
    }
}

/// How to tell a client without a session to log in.
fn challenge(config: &Config, policy: &RoutePolicy, req: &Judged<'_>) -> Challenge {
    match policy.on_unauthenticated {
        OnUnauthenticated::Status401 => Challenge::Plain,
        OnUnauthenticated::Redirect => {
            let login_url = match req.back {
                Return::Local(next) => format!(
                    "{}/login?next={}",
                    config.login.prefix,
                    percent_encode_component(next)
                ),
                Return::Original {
                    scheme,
                    authority,
                    target,
                    login_origin,
                } => {
                    let own = format!("{scheme}://{authority}");
                    format!(
                        "{}{}/login?next={}",
                        login_origin.unwrap_or(&own),
                        config.login.prefix,
                        percent_encode_component(&format!("{own}{target}"))
                    )
                }
            };
            if is_page_load(req.headers) {
                Challenge::Redirect {
                    location: login_url,
                }
            } else {
                Challenge::Json { login_url }
            }
        }
    }
}

/// A top-level page load: `Sec-Fetch-Mode: navigate`, or — from clients that send no Fetch
/// metadata — an `Accept` that ranks `text/html` at least as high as anything else. Fetches,
/// XHR and API clients get a 401 they can act on instead of a redirect to an HTML form.
fn is_page_load(headers: &HeaderMap) -> bool {
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate");
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = None;
    let mut best_other: f32 = 0.0;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case("text/html") {
            html = Some(q);
        } else {
            best_other = best_other.max(q);
        }
    }
    html.is_some_and(|q| q > 0.0 && q >= best_other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn page_loads_are_told_apart_from_api_calls() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(is_page_load(&headers(&[("sec-fetch-mode", "navigate")])));
        assert!(!is_page_load(&headers(&[
            ("sec-fetch-mode", "cors"),
            ("accept", browser)
        ])));
        assert!(is_page_load(&headers(&[("accept", browser)])));
        assert!(!is_page_load(&headers(&[("accept", "application/json")])));
        assert!(!is_page_load(&headers(&[("accept", "*/*")])));
        assert!(!is_page_load(&headers(&[(
            "accept",
            "application/json, text/html;q=0.5"
        )])));
        assert!(!is_page_load(&headers(&[("accept", "text/html;q=0")])));
        assert!(!is_page_load(&headers(&[])));
    }
}
