//! One request's way through doorman: head checks → normalise → doorman endpoint? → route →
//! session → decide → forward, then one finishing step on the way out.
//!
//! [`handle`] is the thin outer function: it opens the request's [`Exchange`], runs
//! [`decide`], turns an error into its response ([`ProxyError::to_response`]), and finishes
//! the response once ([`finish`]: `Set-Cookie`, HSTS, `Connection: close`, the access log).
//! The inner function is the happy path with `?`. The path is normalised exactly once, here;
//! the route table matches that value and the upstream receives that value.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tracing::{debug, warn};

use crate::access::{self, Shared};
use crate::access_log::Opened;
use crate::body::Body;
use crate::clock::Clock;
use crate::config::{Config, OidcConfig};
use crate::cookie::{KeyMemo, Presented};
use crate::error::ProxyError;
use crate::exchange::{ClientInfo, CookieAction, Exchange, SessionState};
use crate::forward::{Upstream, Vouch};
use crate::login::{self, handoff, Login};
use crate::metrics::{Metrics, RouteLabel};
use crate::oidc::Oidc;
use crate::path::NormalPath;
use crate::session::express::Bridge;
use crate::session::live::Ticket;
use crate::session::Store;

/// What every request shares: the state below the proxy, the login machinery, the upstream.
pub struct App {
    /// Config, store, metrics and cookie policies.
    pub shared: Shared,
    /// Password checks and login throttling (kept across reloads).
    pub login: Login,
    /// The upstream client (one connection pool per worker); `None` in auth-only mode.
    pub upstream: Option<Upstream>,
}

/// The state every request reads: the current `App`, replaced whole by a reload
/// (SIGHUP). Each request loads it once and keeps its `Arc` to the end, so a request
/// in flight finishes under the config it started with.
pub type Live = Arc<ArcSwap<App>>;

impl App {
    /// Build the shared state around an opened store.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<App, BuildError> {
        Self::build(config, store, Login::new(), metrics, clock, None)
    }

    /// The state for a reloaded `config`: a new upstream client and cookie policy, the same
    /// store, hashing threads, login locks, metrics and clock (sessions, throttling counters
    /// and counts survive).
    pub fn reloaded(&self, config: Arc<Config>) -> Result<App, BuildError> {
        let previous = match (&self.shared.config.oidc, &self.shared.oidc) {
            (Some(config), Some(oidc)) => Some((config, &**oidc)),
            _ => None,
        };
        Self::build(
            config,
            Arc::clone(&self.shared.store),
            self.login.clone(),
            Arc::clone(&self.shared.metrics),
            self.shared.clock.clone(),
            previous,
        )
    }

    fn build(
        config: Arc<Config>,
        store: Arc<Store>,
        login: Login,
        metrics: Arc<Metrics>,
        clock: Clock,
        previous: Option<(&OidcConfig, &Oidc)>,
    ) -> Result<App, BuildError> {
        let upstream = Upstream::new(Arc::clone(&config))?;
        let oidc = match &config.oidc {
            Some(oidc) => Some(Arc::new(
                Oidc::new(oidc, previous).map_err(BuildError::Oidc)?,
            )),
            None => None,
        };
        let express = match &config.session.express {
            Some(express) => Some(Arc::new(
                Bridge::new(
                    express,
                    &store,
                    &config.session.key_prefix,
                    config.session.timeouts,
                )
                .map_err(|e| BuildError::Express(e.to_string()))?,
            )),
            None => None,
        };
        Ok(App {
            shared: Shared::new(config, store, metrics, clock, oidc).with_express(express),
            login,
            upstream,
        })
    }
}

/// Why the state for a config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The upstream client (its TLS settings).
    #[error("upstream client: {0}")]
    Upstream(#[from] rustls::Error),
    /// The OpenID Connect runtime (the state key file, the provider's client).
    #[error("{0}")]
    Oidc(String),
    /// `[session.express]`'s Redis client.
    #[error("[session.express]: {0}")]
    Express(String),
}

/// Answer one request: forward it, or answer with doorman's own response; the result is
/// what `wrap` makes of the response (the server's: its body tracked by the connection).
/// `span` is the request's own (the server instruments the returned future with it): the
/// exchange keeps it for the route and the access line.
///
/// What needs no waiting is done before the future is made: the returned future then holds
/// the request once, boxed (by the server, as hyper hands it over), and the exchange it
/// opened, not the parts they were made from.
/// Not an `async fn` (nor is [`decide`]): one keeps its arguments twice in its state (as
/// captured, and moved into a local on the first poll), and this state is in every request's
/// future, moved with it. The `async move` block uses what it captured where it lies. It owns
/// the config's state (`app`) and finishes with `wrap`, so the server's future can be this one
/// itself rather than one that awaits it.
// Not `async fn` on purpose: see the doc comment (the arguments, held once).
#[allow(clippy::manual_async_fn)]
pub fn handle<R>(
    app: Arc<App>,
    client: ClientInfo,
    memo: &KeyMemo,
    req: Box<Request<Incoming>>,
    span: tracing::Span,
    wrap: impl FnOnce(Response<Body>) -> R + Send + 'static,
) -> impl Future<Output = R> + 'static {
    // A trusted gateway says who the browser is and what it used (DESIGN.md §8).
    let client = match &app.shared.config.forward_auth {
        Some(fa) if fa.trusts(client.peer.ip()) => client.behind_gateway(req.headers()),
        _ => client,
    };
    // The access log's entry, boxed: it lives until the response body ends, in the box that
    // becomes the body's wrapper (`Opened`); until then it moves as a pointer.
    let mut ex = Opened::open(
        client,
        req.method().clone(),
        req.uri().clone(),
        Instant::now(),
        span,
    );
    // RFC 9112 §6.1: a request with Transfer-Encoding may also have carried a Content-Length
    // (hyper drops it and reads the body as chunked). A front proxy that read it differently
    // may see the rest of the bytes as a second request, so the connection is not reused.
    // A body hyper knows to be empty at the head (no Transfer-Encoding, no Content-Length or
    // `Content-Length: 0`: Transfer-Encoding makes hyper read it chunked, never empty) needs
    // no lookup: most requests, where the lookup cost about 85 instructions.
    let h1 = req.version() <= Version::HTTP_11;
    ex.close = h1
        && !http_body::Body::is_end_stream(req.body())
        && req.headers().contains_key(header::TRANSFER_ENCODING);
    // Read here, where the connection's memo of its last cookie is at hand (`memo`).
    (ex.presented, ex.cookies_upstream) = app
        .shared
        .cookies(ex.client.https)
        .read_remembering(req.headers(), memo);
    async move {
        let app = &*app;
        let resp = match decide(app, &mut ex, req).await {
            Ok(resp) => resp,
            Err(error) => {
                if matches!(error, ProxyError::StoreUnavailable(_)) {
                    app.shared.metrics.store_error();
                }
                // (HTTP/2 has no `Connection`: there the unread body's stream is reset instead.)
                ex.close |= h1 && error.ends_connection();
                let status = error.status().as_u16();
                let (peer, method, path) = (ex.client.peer, &ex.method, ex.raw_target.path());
                if error.status().is_server_error() {
                    warn!(%peer, %method, path, status, error = %error_chain(&error), "request failed");
                } else {
                    debug!(%peer, %method, path, status, reason = %error, "request refused");
                }
                error.to_response()
            }
        };
        wrap(finish(app, ex, resp))
    }
}

/// The decision, in the order of DESIGN.md §1.
// Not `async fn` on purpose: see the doc comment (the arguments, held once).
#[allow(clippy::manual_async_fn)]
fn decide<'a>(
    app: &'a App,
    ex: &'a mut Exchange,
    req: Box<Request<Incoming>>,
) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a {
    async move {
        let shared = &app.shared;
        let config = &*shared.config;
        // Heads a route must never be asked to judge: CONNECT, lower-case methods, bad Host.
        crate::head::check(&req)?;
        // In a block, as is the making of the forward below: what only the decision needs
        // (the normalised path, the target as borrowed for the login's return address) is not
        // kept in this future while it waits for the upstream, as a local of its scope would be.
        let (upstream, target, host) = {
            // Normalised once: what the routes match is exactly what the upstream receives.
            let path = crate::path::normalise_target(req.uri())?;
            if let Some(bridge) = &shared.express {
                ex.app_cookie = crate::cookie::only_value(req.headers(), bridge.cookie_name());
            }
            if config.login.owns(&path) {
                // Doorman's own endpoints; nothing under the prefix is ever forwarded.
                let forward_auth = login::forward_auth_call(config, &path, req.method());
                ex.path = Some(path);
                ex.route = Some(RouteLabel::doorman());
                if let Some(convention) = forward_auth {
                    // A gateway's sub-request, as every request behind it: not through the box
                    // below.
                    return crate::forward_auth::answer(shared, ex, convention, req.headers())
                        .await;
                }
                // Boxed, like the handoff below: a large future that most requests never need.
                return Box::pin(login::endpoint(shared, &app.login, ex, *req)).await;
            }
            let (upstream, target, host) = match prepare(app, &ex.client, &req, &path) {
                Ok(prepared) => prepared,
                Err(error) => {
                    ex.path = Some(path);
                    return Err(error);
                }
            };
            let judged = access::Judged {
                method: req.method(),
                host: host.as_deref(),
                path: &path,
                headers: req.headers(),
                back: access::Return::Local(target.as_str()),
            };
            let decided = access::decide(shared, ex, &judged).await;
            // Recorded before the decision is acted on, so a refusal's log line has the path too.
            ex.path = Some(path);
            decided?;
            (upstream, target, host)
        };

        let permit = handoff::permit(config, ex, &req);
        let asked = Instant::now();
        let forwarded = {
            let assertion = crate::assertion::for_upstream(shared, ex, || {
                host.clone().or_else(|| route_host(&ex.client, &req))
            });
            let ticket = match &ex.session {
                SessionState::Valid {
                    key,
                    record,
                    identity,
                } => Some(Ticket {
                    registry: shared.store.live(),
                    key,
                    // The record's user, as the identity made from it shares it.
                    user: identity.user_name(),
                    absolute_expiry: record.absolute_expiry,
                    clock: &shared.clock,
                    method: &ex.method,
                    host: host.as_deref(),
                    path: ex.path.as_ref().unwrap_or(NormalPath::root()),
                    recheck: config.session.recheck,
                }),
                _ => None,
            };
            // The express app's cookie (DESIGN.md §12): kept unless told otherwise, or it names
            // someone other than the session's user.
            let drop_cookie = shared
                .express
                .as_deref()
                .filter(|b| !b.forward_cookie() || ex.strip_app_cookie)
                .map(Bridge::cookie_name);
            let vouch = Vouch {
                identity: ex.identity(),
                cookies: ex.cookies_upstream,
                assertion,
                drop_cookie,
            };
            upstream.forward(req, &ex.client, target, vouch, ticket)
        }
        .await;
        shared.metrics.upstream(asked.elapsed());
        let (resp, handoff) = forwarded?;
        if !handoff.is_empty() {
            // Boxed: the handoff's store calls make a large future, and every request's future
            // would be sized for it (and copied whole into its box) although few responses carry a
            // handoff.
            Box::pin(handoff::apply(shared, ex, handoff, permit)).await;
        }
        Ok(resp)
    }
}

/// The one finishing step every response takes: doorman's cookie, HSTS, `Connection: close`,
/// no body on a `HEAD`, and the access log (written when the body is done).
fn finish(app: &App, mut ex: Opened, mut resp: Response<Body>) -> Response<Body> {
    let shared = &app.shared;
    let cookies = shared.cookies(ex.client.https);
    let set_cookie = match &ex.cookie {
        CookieAction::Keep => None,
        CookieAction::Set(id) => Some(cookies.set(id)),
        CookieAction::Expire => Some(cookies.expire()),
    };
    if let Some(value) = set_cookie {
        let h = resp.headers_mut();
        h.append(header::SET_COOKIE, value);
        // A response that sets a session cookie must never be stored by a shared cache.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if ex.expire_app_cookie {
        if let Some(bridge) = &shared.express {
            bridge.expire_cookie(resp.headers_mut());
        }
    }
    if ex.client.tls {
        if let Some(max_age) = shared.config.listen.hsts {
            // Doorman's policy replaces any the upstream sent: two headers would leave the
            // browser to pick one. (Digits only: the value is always a valid header.)
            if let Ok(value) = HeaderValue::try_from(format!("max-age={}", max_age.as_secs())) {
                resp.headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, value);
            }
        }
    }
    if ex.close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if ex.method == http::Method::HEAD && !http_body::Body::is_end_stream(resp.body()) {
        // Doorman's own answers (401, the login page, ...) carry a body; a HEAD response must
        // not (RFC 9110 §9.3.2). hyper drops it on HTTP/1, but sends it on HTTP/2, where the
        // client then resets the stream. The headers (Content-Length included) stay.
        resp = resp.map(|_| crate::body::empty());
    }
    // What the log does not need is released now, not when a long body ends; of the session,
    // the log keeps its user (the identity's shared name: a pointer, not a copy).
    if let SessionState::Valid { identity, .. } = std::mem::take(&mut ex.session) {
        ex.user
            .get_or_insert_with(|| Arc::clone(identity.user_name()));
    }
    ex.presented = Presented::Absent;
    let status = resp.status().as_u16();
    let metrics = Arc::clone(&shared.metrics);
    resp.map(|body| ex.finish(body, status, metrics))
}

/// What a proxied request needs before its decision: the upstream (none in auth-only mode:
/// 404), the target it will receive, and — only when some route matches on hosts, since
/// normalising the host allocates — the host routes match.
fn prepare<'a>(
    app: &'a App,
    client: &ClientInfo,
    req: &Request<Incoming>,
    path: &NormalPath,
) -> Result<(&'a Upstream, PathAndQuery, Option<String>), ProxyError> {
    // Auth-only mode: doorman serves its own endpoints and nothing else.
    let upstream = app.upstream.as_ref().ok_or(ProxyError::NotFound)?;
    let target = forward_target(path, req.uri())?;
    let host = match app.shared.config.routes.matches_hosts() {
        false => None,
        true => Some(
            route_host(client, req)
                .ok_or(ProxyError::BadRequest("host is not a plain host name"))?,
        ),
    };
    Ok((upstream, target, host))
}

/// The host host-scoped routes are matched against. A request whose host is not a plain
/// host name is refused rather than matched against no host: falling through to a laxer route
/// with a host the app may still read as a protected one would be a bypass.
fn route_host(client: &ClientInfo, req: &Request<Incoming>) -> Option<String> {
    client
        .browser_host(req.uri(), req.headers())
        .and_then(crate::host::normalise)
}

/// The normalised path with the query as the client sent it (never matched, never rewritten).
/// When normalising changed nothing — almost always — that is the request's own target,
/// shared rather than copied and parsed again.
fn forward_target(path: &NormalPath, uri: &Uri) -> Result<PathAndQuery, ProxyError> {
    if let Some(sent) = path.sent() {
        return Ok(sent.clone());
    }
    let path: &str = path;
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    PathAndQuery::try_from(target).map_err(|_| ProxyError::BadRequest("unusable request target"))
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

    #[test]
    fn the_forward_target_is_the_normalised_path_with_the_query_as_sent() {
        let uri: Uri = "/a/b?x=%2F..&y".parse().unwrap();
        let normal = crate::path::normalise_target(&uri).unwrap();
        assert!(
            normal.sent().is_some(),
            "normal as sent: the request's own target"
        );
        assert_eq!(
            forward_target(&normal, &uri).unwrap().as_str(),
            "/a/b?x=%2F..&y"
        );

        let uri: Uri = "/a/./c/../%62?q=1".parse().unwrap();
        let normal = crate::path::normalise_target(&uri).unwrap();
        assert_eq!(forward_target(&normal, &uri).unwrap().as_str(), "/a/b?q=1");

        let uri: Uri = "http://app.example/a//b".parse().unwrap();
        let normal = crate::path::normalise_target(&uri).unwrap();
        assert_eq!(&*normal, "/a/b");
        assert_eq!(forward_target(&normal, &uri).unwrap().as_str(), "/a/b");

        // An absolute-form target without a path: `/`, forwarded as the target it was.
        let uri: Uri = "http://app.example".parse().unwrap();
        let normal = crate::path::normalise_target(&uri).unwrap();
        assert_eq!(&*normal, "/");
        assert_eq!(forward_target(&normal, &uri).unwrap().path(), "/");
    }
}
