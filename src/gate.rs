//! One request's way through doorman: normalise → doorman endpoint? → route → session → decide.
//!
//! [`handle`] is the thin outer function: it runs [`decide`], turns an error into its response
//! ([`ProxyError::to_response`]), and logs the outcome once. The inner function is the happy
//! path with `?`. The path is normalised exactly once, here; the route table matches that
//! value and the upstream receives that value.

use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use tracing::{debug, warn};

use crate::access::{Entry, Logged, Seen};
use crate::body::Body;
use crate::config::Config;
use crate::cookie::{CookiePolicy, Presented};
use crate::error::{Challenge, ProxyError};
use crate::forward::{ClientInfo, Upstream};
use crate::hasher::Hasher;
use crate::identity::Identity;
use crate::metrics::{Lookup, Metrics};
use crate::routes::{Access, OnUnauthenticated, RoutePolicy};
use crate::session::{
    now_millis, Origin, Record, SessionId, SessionKey, SessionStore, Store, StoreError,
};
use crate::throttle::Throttle;

/// What every request shares: the validated config, the upstream client, the session store.
pub struct App {
    pub config: Arc<Config>,
    pub upstream: Upstream,
    pub store: Arc<Store>,
    /// The password-check threads, one per core (Argon2id is memory-hard).
    pub hasher: Arc<Hasher>,
    /// Login attempts counted before their check, one at a time per user and client.
    pub throttle: Arc<Throttle>,
    /// The process's metrics, shared by every `App` a reload builds.
    pub metrics: Arc<Metrics>,
    /// The cookie as served over plain HTTP and over TLS, built once.
    cookies: [CookiePolicy; 2],
}

impl App {
    /// Build the shared state around an opened store.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<App, rustls::Error> {
        let hasher = Arc::new(Hasher::per_core(crate::login::HASH_WAIT));
        let login = (hasher, Arc::new(Throttle::default()));
        Self::build(config, store, login, metrics)
    }

    /// The state for a reloaded `config`: a new upstream client and cookie policy, the same
    /// store, hashing threads, login locks and metrics (sessions, throttling counters and
    /// counts survive).
    pub fn reloaded(&self, config: Arc<Config>) -> Result<App, rustls::Error> {
        Self::build(
            config,
            Arc::clone(&self.store),
            (Arc::clone(&self.hasher), Arc::clone(&self.throttle)),
            Arc::clone(&self.metrics),
        )
    }

    fn build(
        config: Arc<Config>,
        store: Arc<Store>,
        (hasher, throttle): (Arc<Hasher>, Arc<Throttle>),
        metrics: Arc<Metrics>,
    ) -> Result<App, rustls::Error> {
        let upstream = Upstream::new(Arc::clone(&config))?;
        let cookies = [
            CookiePolicy::new(&config.session, false),
            CookiePolicy::new(&config.session, true),
        ];
        Ok(App {
            config,
            upstream,
            store,
            hasher,
            throttle,
            metrics,
            cookies,
        })
    }
}

/// What to do with doorman's cookie on the way out.
#[derive(Debug, Default)]
pub enum CookieAction {
    /// Leave the browser's cookie as it is (including on store errors: an outage must not log
    /// everyone out).
    #[default]
    Keep,
    /// Set a new session cookie.
    Set(SessionId),
    /// Expire a stale, unknown or malformed cookie.
    Expire,
}

/// What the request's cookie amounts to.
#[derive(Debug)]
pub enum SessionState {
    /// No cookie of doorman's name.
    None,
    /// A cookie that names no valid session (unknown, expired, malformed, duplicated, or its
    /// user left the users file). `looked_up`: whether the store was asked (a well-formed id)
    /// or the value was unusable (malformed, duplicated).
    Stale { looked_up: bool },
    /// A valid session.
    Valid {
        key: SessionKey,
        identity: Identity,
        record: Record,
    },
    /// The store could not answer.
    Down(StoreError),
}

/// Answer one request: forward it, or answer with doorman's own response.
pub async fn handle(app: &App, client: ClientInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    // The target as received (a reference-counted clone of hyper's buffer, no copy), for the
    // log when normalisation refuses the path.
    let uri = req.uri().clone();
    // RFC 9112 §6.1: a request with Transfer-Encoding may also have carried a Content-Length
    // (hyper drops it and reads the body as chunked). A front proxy that read it differently
    // may see the rest of the bytes as a second request, so the connection is not reused.
    let h1 = req.version() <= Version::HTTP_11;
    let mut close_after = h1 && req.headers().contains_key(header::TRANSFER_ENCODING);
    let cookies = &app.cookies[usize::from(client.tls)];
    let mut cookie = CookieAction::Keep;
    let mut seen = Seen::default();

    let mut resp = match decide(app, client, req, cookies, &mut cookie, &mut seen).await {
        Ok(resp) => resp,
        Err(error) => {
            if matches!(error, ProxyError::StoreUnavailable(_)) {
                app.metrics.store_error();
            }
            // (HTTP/2 has no `Connection`: there the unread body's stream is reset instead.)
            close_after |= h1 && error.ends_connection();
            let status = error.status().as_u16();
            if error.status().is_server_error() {
                warn!(peer = %client.peer, %method, path = uri.path(), status, error = %error_chain(&error), "request failed");
            } else {
                debug!(peer = %client.peer, %method, path = uri.path(), status, reason = %error, "request refused");
            }
            error.to_response()
        }
    };
    let set_cookie = match cookie {
        CookieAction::Keep => None,
        CookieAction::Set(id) => Some(cookies.set(&id)),
        CookieAction::Expire => Some(cookies.expire()),
    };
    if let Some(value) = set_cookie {
        let h = resp.headers_mut();
        h.append(header::SET_COOKIE, value);
        // A response that sets a session cookie must never be stored by a shared cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if client.tls {
        if let Some(max_age) = app.config.listen.hsts {
            // Doorman's policy replaces any the upstream sent: two headers would leave the
            // browser to pick one. (Digits only: the value is always a valid header.)
            if let Ok(value) = HeaderValue::try_from(format!("max-age={}", max_age.as_secs())) {
                resp.headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, value);
            }
        }
    }
    if close_after {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if method == http::Method::HEAD && !http_body::Body::is_end_stream(resp.body()) {
        // Doorman's own answers (401, the login page, ...) carry a body; a HEAD response must
        // not (RFC 9110 §9.3.2). hyper drops it on HTTP/1, but sends it on HTTP/2, where the
        // client then resets the stream. The headers (Content-Length included) stay.
        resp = resp.map(|_| crate::body::empty());
    }
    let entry = Entry {
        peer: client.peer,
        method,
        raw_target: uri,
        seen,
        status: resp.status().as_u16(),
        started,
        metrics: Arc::clone(&app.metrics),
        span: tracing::Span::current(),
    };
    resp.map(|body| Logged::wrap(body, entry))
}

/// The decision, in the order of DESIGN.md §1.
async fn decide(
    app: &App,
    client: ClientInfo,
    req: Request<Incoming>,
    cookies: &CookiePolicy,
    cookie: &mut CookieAction,
    seen: &mut Seen,
) -> Result<Response<Body>, ProxyError> {
    let config = &*app.config;
    // Heads a route must never be asked to judge: CONNECT, lower-case methods, bad Host.
    crate::head::check(&req)?;
    // Normalised once: what the routes match is exactly what the upstream receives.
    let path = crate::path::normalise(req.uri().path())?;
    seen.path = Some(path.clone());
    if config.login.owns(&path) {
        // Doorman's own endpoints; nothing under the prefix is ever forwarded.
        seen.route = Some(crate::metrics::ROUTE_DOORMAN.to_string());
        // Boxed, like the handoff below: a large future that most requests never need.
        return Box::pin(crate::login::endpoint(
            app, client, req, &path, cookies, cookie, seen,
        ))
        .await;
    }
    let target = forward_target(&path, req.uri().query())?;
    let matched = config.routes.find(req.method(), &path);
    if let Some(route) = matched.route {
        tracing::Span::current().record("route", route.name.as_str());
    }
    seen.route = Some(match matched.route {
        Some(route) => route.name.clone(),
        None => crate::metrics::ROUTE_DEFAULT.to_string(),
    });
    let access = matched.policy.access;
    if access == Access::Deny {
        return Err(ProxyError::Forbidden);
    }
    let presented = cookies.read(req.headers());
    let presented_key = match &presented {
        Presented::Id(id) => Some(id.key()),
        _ => None,
    };
    let state = session_state(app, presented).await;
    let identity = match state {
        SessionState::Valid { identity, key, .. } => {
            seen.user = Some(identity.user().to_string());
            seen.session = Some(key.tag());
            Some(identity)
        }
        SessionState::None => None,
        SessionState::Stale { .. } => {
            *cookie = CookieAction::Expire;
            None
        }
        SessionState::Down(error) if access == Access::Authenticated => {
            return Err(ProxyError::StoreUnavailable(error));
        }
        SessionState::Down(error) => {
            // A public route still works during an outage, anonymously; the cookie is kept.
            app.metrics.store_error();
            warn!(peer = %client.peer, error = %error, "session store unavailable: forwarding anonymously");
            None
        }
    };
    if access == Access::Authenticated {
        match &identity {
            None => {
                return Err(ProxyError::Unauthenticated(challenge(
                    config,
                    matched.policy,
                    req.headers(),
                    &target,
                )))
            }
            Some(who) if !matched.policy.allows(who.user(), who.groups()) => {
                return Err(ProxyError::Forbidden)
            }
            Some(_) => {}
        }
    }
    let handoff_allowed = crate::handoff::applies(config, &client, &req, &path);
    let asked = Instant::now();
    let forwarded = app
        .upstream
        .forward(req, &client, target, identity.as_ref())
        .await;
    app.metrics.upstream(asked.elapsed());
    let (resp, handoff) = forwarded?;
    if !handoff.is_empty() {
        // Boxed: the handoff's store calls make a large future (4.2 KB), and every request's
        // future would be sized for it (and copied whole into its box) although few responses
        // carry a handoff. With the login endpoint's (5.4 KB) boxed too, a request's future
        // went from 7.7 to 6.1 KB.
        Box::pin(crate::handoff::apply(
            app,
            &client,
            handoff,
            handoff_allowed,
            presented_key,
            identity.as_ref().map(Identity::user),
            cookie,
            seen,
        ))
        .await;
    }
    Ok(resp)
}

/// Look up the session a request presents; groups of password sessions come from the users file
/// as it is now.
pub async fn session_state(app: &App, presented: Presented) -> SessionState {
    let state = lookup(app, presented).await;
    app.metrics.session_lookup(match &state {
        SessionState::Valid { .. } => Lookup::hit,
        SessionState::None => Lookup::miss,
        SessionState::Stale { looked_up: false } => Lookup::miss,
        SessionState::Stale { looked_up: true } => Lookup::expired,
        SessionState::Down(_) => Lookup::store_error,
    });
    state
}

async fn lookup(app: &App, presented: Presented) -> SessionState {
    let id = match presented {
        Presented::Absent => return SessionState::None,
        Presented::Invalid => return SessionState::Stale { looked_up: false },
        Presented::Id(id) => id,
    };
    let key = id.key();
    let record = match app.store.lookup(&key, now_millis()).await {
        Err(error) => return SessionState::Down(error),
        Ok(None) => return SessionState::Stale { looked_up: true },
        Ok(Some(record)) => record,
    };
    let identity = match record.origin {
        Origin::Login => app
            .config
            .users
            .get(&record.user)
            .and_then(|u| Identity::new(record.user.clone(), u.groups.clone()).ok()),
        Origin::Handoff => Identity::new(record.user.clone(), record.groups.clone()).ok(),
    };
    match identity {
        Some(identity) => SessionState::Valid {
            key,
            identity,
            record,
        },
        None => SessionState::Stale { looked_up: true },
    }
}

/// How to tell a client without a session to log in.
fn challenge(
    config: &Config,
    policy: &RoutePolicy,
    headers: &HeaderMap,
    target: &PathAndQuery,
) -> Challenge {
    match policy.on_unauthenticated {
        OnUnauthenticated::Status401 => Challenge::Plain,
        OnUnauthenticated::Redirect => {
            let login_url = format!(
                "{}/login?next={}",
                config.login.prefix,
                percent_encode(target.as_str())
            );
            if is_page_load(headers) {
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

/// The normalised path with the query as the client sent it (never matched, never rewritten).
fn forward_target(path: &str, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    PathAndQuery::try_from(target).map_err(|_| ProxyError::BadRequest("unusable request target"))
}

/// Percent-encode everything but RFC 3986 unreserved characters (for a `next=` value).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `error: cause: cause` on one line, for the log.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
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

    #[test]
    fn next_is_fully_encoded() {
        assert_eq!(
            percent_encode("/a b/c?x=1&y=/"),
            "%2Fa%20b%2Fc%3Fx%3D1%26y%3D%2F"
        );
    }
}
