//! One request's exchange: everything doorman learns about a request between its head arriving
//! and its access-log line, in one value.
//!
//! The gate creates an [`Exchange`] per request and hands it down the pipeline by `&mut`: the
//! gate records the normalised path, the route and the cookie the client presented; the
//! session lookup (`access::lookup`) its outcome; the login endpoints and the handoff the
//! session they created or ended, and what to do with the cookie. The finishing step (`gate::finish`) then reads it once to
//! set `Set-Cookie` and write the access log. Nothing is passed back through separate
//! out-parameters, so a new stage (a forward-auth check, a signed assertion) adds a field here
//! instead of a parameter to every function on the way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::cookie::{ForUpstream, Presented};
use crate::identity::Identity;
use crate::path::NormalPath;
use crate::session::{Record, SessionId, SessionKey, SessionTag, StoreError};

/// Who is on the other end of the connection a request arrived on, and — when that is a
/// trusted gateway (`[forward_auth] trusted_gateways`) — who the browser behind it is.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The TCP peer (a front proxy's address when there is one).
    pub peer: SocketAddr,
    /// Whether the connection to doorman is TLS (HSTS is sent only then).
    pub tls: bool,
    /// The client's address, for throttling and logs: the peer, or for a trusted gateway
    /// the last address of its `X-Forwarded-For` (the one the gateway itself appended).
    pub addr: IpAddr,
    /// Whether the browser used https: `tls`, or for a trusted gateway its
    /// `X-Forwarded-Proto`. Doorman's cookie (`Secure`, `__Host-` under `cookie_secure =
    /// "auto"`), origins and redirects follow it.
    pub https: bool,
    /// Whether the peer is a trusted gateway describing the browser in `X-Forwarded-*`
    /// (so the browser's host is its `X-Forwarded-Host`: [`ClientInfo::browser_host`]).
    pub gateway: bool,
    /// The peer's address as the value of the `X-Forwarded-For` doorman sends, made once per
    /// connection: cloning it is a reference count, where making it per request cost an
    /// allocation, a copy and a check of its bytes (about 400 instructions per request with
    /// their inlined callers, `benches/callgrind.sh`).
    pub peer_value: HeaderValue,
}

impl ClientInfo {
    /// A client connected straight to doorman.
    pub fn direct(peer: SocketAddr, tls: bool) -> ClientInfo {
        ClientInfo {
            peer,
            tls,
            addr: peer.ip(),
            https: tls,
            gateway: false,
            peer_value: ip_value(peer.ip()),
        }
    }

    /// This client as a trusted gateway describes the browser behind it: the last address of
    /// `X-Forwarded-For` (the one the gateway appended; earlier ones are the client's own
    /// claims), and the scheme of the last `X-Forwarded-Proto`. What a header leaves out
    /// stays as the connection says.
    pub fn behind_gateway(self, headers: &HeaderMap) -> ClientInfo {
        let addr = last_value(headers, &X_FORWARDED_FOR)
            .and_then(|v| v.parse::<IpAddr>().ok())
            .unwrap_or(self.addr);
        let https = match last_value(headers, &X_FORWARDED_PROTO) {
            Some(proto) => proto.eq_ignore_ascii_case("https"),
            None => self.https,
        };
        ClientInfo {
            addr,
            https,
            gateway: true,
            ..self
        }
    }

    /// Where the request came from, for the audit log.
    pub fn source(&self) -> crate::audit::Source {
        crate::audit::Source {
            peer: self.peer,
            client: self.addr,
        }
    }

    /// The host the browser addressed: for a trusted gateway its last `X-Forwarded-Host`,
    /// else the request's own authority or `Host` ([`crate::head::request_host`]).
    pub fn browser_host<'a>(&self, uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
        if self.gateway {
            if let Some(host) = last_value(headers, &X_FORWARDED_HOST) {
                return Some(host);
            }
        }
        crate::head::request_host(uri, headers)
    }
}

// A trusted gateway's headers, as names made once (a lookup by `&str` parses the name).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// An address as a header value, once per connection. Digits, dots, hex digits and colons are
/// always a valid value; were one refused, the value would be `unknown`, as RFC 7239 names an
/// address not told.
fn ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The last comma-separated element of the last `name` header, trimmed (`None` when absent,
/// empty or not visible ASCII).
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then_some(last)
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
#[derive(Debug, Default)]
pub enum SessionState {
    /// No cookie of doorman's name, or not looked up (yet).
    #[default]
    None,
    /// A cookie that names no valid session (unknown, expired, malformed, duplicated, or its
    /// user left the users file). `looked_up`: whether the store was asked (a well-formed id)
    /// or the value was unusable (malformed, duplicated).
    Stale { looked_up: bool },
    /// A valid session.
    Valid {
        /// The session's store key (the hash of the id in the cookie).
        key: SessionKey,
        /// Who it belongs to, with the groups that apply now.
        identity: Identity,
        /// The stored record.
        record: Record,
    },
    /// The store could not answer.
    Down(StoreError),
}

/// One request, as doorman has understood it so far.
#[derive(Debug)]
pub struct Exchange {
    /// The connection's client.
    pub client: ClientInfo,
    /// The request method.
    pub method: Method,
    /// The request target as received (a reference-counted clone of hyper's buffer, no copy),
    /// for the log when normalisation refuses the path.
    pub raw_target: Uri,
    /// When the request arrived.
    pub started: Instant,
    /// The request's span (made by the server for each request): the route is recorded on
    /// it, and the access line written in it. Carried here rather than asked for with
    /// `Span::current()`, which looks the current span up (about 60 instructions each time,
    /// twice per request, `benches/callgrind.sh`).
    pub span: tracing::Span,
    /// The normalised path (unset until normalised, or when normalisation refused it).
    pub path: Option<NormalPath>,
    /// The route label for logs and metrics (see [`crate::metrics`]).
    pub route: Option<crate::metrics::RouteLabel>,
    /// Doorman's cookie as the request presented it (read once, by the gate).
    pub presented: Presented,
    /// What the upstream's copy of the request's cookies needs, found by the same read.
    pub cookies_upstream: ForUpstream,
    /// The session the presented cookie names, once looked up.
    pub session: SessionState,
    /// What to do with doorman's cookie on the response.
    pub cookie: CookieAction,
    /// The user the access log names: the one who just logged in or out, else the valid
    /// session's (its identity's shared name, taken when the gate finishes the response).
    pub user: Option<Arc<str>>,
    /// [`SessionKey::tag`] of the session in use, created or ended, for the access log.
    pub session_tag: Option<SessionTag>,
    /// Whether the connection must close after this response (HTTP/1 only).
    pub close: bool,
    /// With `[session.express]`: the app's cookie (`connect.sid`), when the request carried
    /// exactly one (DESIGN.md §12).
    pub app_cookie: Option<String>,
    /// Whether the app's cookie must not reach the app: it names another user than the
    /// session (or cannot be shown to name the same one).
    pub strip_app_cookie: bool,
    /// Whether the response expires the app's cookie: it was taken over by a session that has
    /// ended since (a revoke, which could not reach the browser itself).
    pub expire_app_cookie: bool,
}

impl Exchange {
    /// A new exchange for a request with this head.
    pub fn new(
        client: ClientInfo,
        method: Method,
        raw_target: Uri,
        started: Instant,
        span: tracing::Span,
    ) -> Self {
        Exchange {
            client,
            method,
            raw_target,
            started,
            span,
            path: None,
            route: None,
            presented: Presented::Absent,
            cookies_upstream: ForUpstream::Rewrite,
            session: SessionState::None,
            cookie: CookieAction::Keep,
            user: None,
            session_tag: None,
            close: false,
            app_cookie: None,
            strip_app_cookie: false,
            expire_app_cookie: false,
        }
    }

    /// The authenticated identity, when the request carries a valid session.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.session {
            SessionState::Valid { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// The store key of the session the cookie names, valid or not (`None` without a
    /// well-formed cookie).
    pub fn presented_key(&self) -> Option<SessionKey> {
        match &self.presented {
            Presented::Key(key) => Some(*key),
            _ => None,
        }
    }

    /// Record, for the log, that the request acts as `user` in the session `key`.
    pub fn log_session(&mut self, user: Option<&str>, key: &SessionKey) {
        self.user = user.map(Arc::from);
        self.session_tag = Some(key.log_tag());
    }
}
