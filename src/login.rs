//! Doorman's own endpoints under `[login] prefix` (DESIGN.md §4): the login form, login,
//! logout and the session probe; and the rules they share with the login handoff (§6).
//!
//! * Cross-site protection: a state-changing request (`POST` login or logout, a handoff) is
//!   refused when the browser says it came from another site: `Sec-Fetch-Site: cross-site`, or
//!   an `Origin` that is not the public origin (`[login] public_origin`, else the scheme and
//!   `Host`/`:authority` the request arrived with). Requests without either header (old
//!   browsers, scripts) are same-site by default: they carry no ambient cookie to abuse.
//! * Throttling ([`crate::throttle`]): every attempt is counted in the session store *before*
//!   its password is checked, per user and client (`max_failures` within `failure_window`)
//!   and per client across user names (`4 × max_failures`); over either limit it is answered
//!   429 without a check. Attempts for one user and client take turns. A success clears the
//!   user+client count and takes its own attempt back from the per-client count.
//! * Password checks run on the [`crate::hasher`] pool, one thread per core, each reusing its
//!   own Argon2 memory (Argon2id is memory-hard; unbounded parallel logins would be a denial of
//!   service, in CPU and in memory). A login that cannot get a thread within [`HASH_WAIT`] is
//!   answered 503. An unknown user is checked against a dummy hash: the same cost, the same
//!   401.
//! * The form is read under one deadline, `[listen] body_timeout` for the whole body (408 when
//!   it passes), and a declared `Content-Length` over [`MAX_FORM_BYTES`] is refused (413)
//!   before any of the body is read: a login cannot hold a connection open by dribbling.
//! * Login rotates the session: any session the client presented is destroyed and a new id is
//!   issued, so a session id planted before login (fixation) is worthless after it.

use std::time::Duration;

use crate::access::Seen;
use crate::audit::{self, LoginFailure};
use crate::metrics::Login;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use tracing::warn;

use crate::body::{self, Body};
use crate::config::{Config, CookieSecure};
use crate::cookie::{CookiePolicy, Presented};
use crate::error::ProxyError;
use crate::forward::ClientInfo;
use crate::gate::{App, CookieAction, SessionState};
use crate::hasher::HashError;
use crate::login_page::{self, LoginPage};
use crate::next::safe_next;
use crate::session::{now_millis, Origin, Record, SessionId, SessionStore};
use crate::throttle::Admission;

/// How long a login waits for a free hashing slot before answering 503.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// The largest login form accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Answer a request for a path under the login prefix.
pub async fn endpoint(
    app: &App,
    client: ClientInfo,
    req: Request<Incoming>,
    path: &str,
    cookies: &CookiePolicy,
    cookie: &mut CookieAction,
    seen: &mut Seen,
) -> Result<Response<Body>, ProxyError> {
    let config = &*app.config;
    let rest = path[config.login.prefix.len()..].to_ascii_lowercase();
    let method = req.method().clone();
    match (rest.as_str(), method) {
        ("/login", Method::GET | Method::HEAD) => {
            let next = query_param(req.uri().query(), "next");
            Ok(page(StatusCode::OK, config, next.as_deref(), None, None))
        }
        ("/login", Method::POST) => login(app, client, req, cookies, cookie, seen).await,
        ("/logout", Method::POST) => logout(app, client, req, cookies, cookie, seen).await,
        ("/session", Method::GET | Method::HEAD) => session_info(app, &req, cookies, cookie).await,
        ("/login" | "/logout" | "/session", _) => Err(ProxyError::MethodNotAllowed),
        _ => Err(ProxyError::NotFound),
    }
}

async fn login(
    app: &App,
    client: ClientInfo,
    req: Request<Incoming>,
    cookies: &CookiePolicy,
    cookie: &mut CookieAction,
    seen: &mut Seen,
) -> Result<Response<Body>, ProxyError> {
    let config = &*app.config;
    if is_cross_site(
        req.headers(),
        public_origin(config, &client, &req).as_deref(),
    ) {
        // The form of a cross-site post is not read: the user is not known.
        app.metrics.login(Login::cross_site);
        audit::login_failure(client.peer, None, LoginFailure::CrossSite);
        return Err(ProxyError::Forbidden);
    }
    let presented = cookies.read(req.headers());
    let form = read_form(req, config.listen.body_timeout).await?;
    let username = form_value(&form, "username").unwrap_or_default();
    let password = form_value(&form, "password").unwrap_or_default();
    let next = form_value(&form, "next");

    let store = &app.store;
    let window = config.login.failure_window;
    let admission = app
        .throttle
        .admit(
            store,
            &username,
            client.peer.ip(),
            config.login.max_failures,
            window,
        )
        .await?;
    let Admission::Go(attempt) = admission else {
        app.metrics.login(Login::throttled);
        audit::login_failure(client.peer, Some(&username), LoginFailure::Throttled);
        return Err(ProxyError::Throttled(window));
    };

    let (hash, user) = config.users.hash_for(&username);
    let matched = match app.hasher.verify(hash.to_owned(), password).await {
        Ok(matched) => matched,
        Err(e) => {
            // Busy is the expected answer to a flood (logged once, as the 503); a thread that
            // died is not.
            if matches!(e, HashError::Failed) {
                warn!(peer = %client.peer, error = %e, "password not checked");
            }
            attempt.unchecked().await;
            return Err(ProxyError::Busy);
        }
    };
    let groups = match user {
        Some(user) if matched => user.groups.clone(),
        _ => {
            // The attempt stays counted: dropping it ends this user+client's turn.
            drop(attempt);
            app.metrics.login(Login::bad_credentials);
            audit::login_failure(client.peer, Some(&username), LoginFailure::BadCredentials);
            let error = Some("Wrong user name or password.");
            return Ok(page(
                StatusCode::UNAUTHORIZED,
                config,
                next.as_deref(),
                Some(&username),
                error,
            ));
        }
    };
    attempt.succeeded().await?;

    if let Presented::Id(old) = presented {
        store.delete(&old.key()).await?;
    }
    let id = SessionId::generate()?;
    let record = Record::new(
        username.clone(),
        groups,
        Origin::Login,
        now_millis(),
        &config.session.timeouts,
    );
    store.create(&id.key(), &record).await?;
    let tag = id.key().tag();
    app.metrics.login(Login::success);
    audit::login(client.peer, &username, &tag);
    seen.user = Some(username);
    seen.session = Some(tag);
    *cookie = CookieAction::Set(id);
    Ok(see_other(&safe_next(next.as_deref())))
}

async fn logout(
    app: &App,
    client: ClientInfo,
    req: Request<Incoming>,
    cookies: &CookiePolicy,
    cookie: &mut CookieAction,
    seen: &mut Seen,
) -> Result<Response<Body>, ProxyError> {
    if is_cross_site(
        req.headers(),
        public_origin(&app.config, &client, &req).as_deref(),
    ) {
        audit::logout_refused(client.peer);
        return Err(ProxyError::Forbidden);
    }
    match cookies.read(req.headers()) {
        Presented::Id(id) => {
            let key = id.key();
            // Who is logging out, for the audit trail (a stale session has no user; a store
            // error here surfaces on the delete below).
            let user = match crate::gate::session_state(app, Presented::Id(id)).await {
                SessionState::Valid { identity, .. } => Some(identity.user().to_string()),
                _ => None,
            };
            app.store.delete(&key).await?;
            let tag = key.tag();
            audit::logout(client.peer, user.as_deref(), &tag);
            seen.user = user;
            seen.session = Some(tag);
            *cookie = CookieAction::Expire;
        }
        Presented::Invalid => *cookie = CookieAction::Expire,
        Presented::Absent => {}
    }
    Ok(see_other("/"))
}

async fn session_info(
    app: &App,
    req: &Request<Incoming>,
    cookies: &CookiePolicy,
    cookie: &mut CookieAction,
) -> Result<Response<Body>, ProxyError> {
    let state = crate::gate::session_state(app, cookies.read(req.headers())).await;
    let (identity, record) = match state {
        SessionState::Valid {
            identity, record, ..
        } => (identity, record),
        SessionState::Down(e) => return Err(ProxyError::StoreUnavailable(e)),
        SessionState::Stale { .. } => {
            *cookie = CookieAction::Expire;
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

/// The login page with `status` (200, or 401 after a failed attempt).
fn page(
    status: StatusCode,
    config: &Config,
    next: Option<&str>,
    username: Option<&str>,
    error: Option<&str>,
) -> Response<Body> {
    let action = format!("{}/login", config.login.prefix);
    let html = login_page::render(&LoginPage {
        action: &action,
        next,
        username,
        error,
        notice: None,
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
    if let Ok(csp) = HeaderValue::from_str(login_page::content_security_policy()) {
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

/// The origin browsers see: `[login] public_origin`, else the request's scheme and host.
pub fn public_origin<B>(config: &Config, client: &ClientInfo, req: &Request<B>) -> Option<String> {
    if let Some(origin) = &config.login.public_origin {
        return Some(origin.clone());
    }
    let scheme = if client.tls || config.session.cookie_secure == CookieSecure::Always {
        "https"
    } else {
        "http"
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })?;
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Whether a browser marked this request as coming from another site.
pub fn is_cross_site(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => false,
        Some(origin) => match (origin.to_str(), public_origin) {
            (Ok(origin), Some(public)) => !origin.eq_ignore_ascii_case(public),
            _ => true,
        },
    }
}

/// Read an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`], all of it
/// within `deadline`.
///
/// A declared length over the limit (`Content-Length`, on h1 and h2 alike, as the body's size
/// hint) is refused before a byte is read, so a client is not kept waiting to send what
/// would be refused anyway. The deadline covers the whole body, not each read: a form is a few
/// hundred bytes, and a per-read timeout would let one byte every few seconds hold the
/// connection (and a turn in the throttle's queue) for minutes.
async fn read_form(
    req: Request<Incoming>,
    deadline: Duration,
) -> Result<Vec<(String, String)>, ProxyError> {
    let declared = hyper::body::Body::size_hint(req.body()).lower();
    if declared > MAX_FORM_BYTES as u64 {
        return Err(ProxyError::PayloadTooLarge);
    }
    let read = Limited::new(req.into_body(), MAX_FORM_BYTES).collect();
    let body: Bytes = match tokio::time::timeout(deadline, read).await {
        Err(_) => return Err(ProxyError::RequestBodyTimeout),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(ProxyError::PayloadTooLarge),
        Ok(Err(_)) => return Err(ProxyError::BadRequest("the login form could not be read")),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(parse_urlencoded(&body))
}

fn form_value(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_value(&parse_urlencoded(query?.as_bytes()), name)
}

/// `a=1&b=x+y%21` → `[("a","1"), ("b","x y!")]`. Invalid escapes are kept literally and
/// invalid UTF-8 is replaced, as browsers do.
pub fn parse_urlencoded(input: &[u8]) -> Vec<(String, String)> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let k = decode(kv.next().unwrap_or_default());
            let v = decode(kv.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode() {
        assert_eq!(
            parse_urlencoded(
                b"username=al+ice&password=p%40ss%26w%3Drd&next=%2Fdash%3Fx%3D1&empty=&flag"
            ),
            [
                ("username".into(), "al ice".into()),
                ("password".into(), "p@ss&w=rd".into()),
                ("next".into(), "/dash?x=1".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(
            parse_urlencoded(b"a=%zz%4"),
            [("a".to_string(), "%zz%4".to_string())]
        );
        assert_eq!(
            parse_urlencoded(b"a=%E2%82%AC"),
            [("a".to_string(), "\u{20ac}".to_string())]
        );
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_cross_site(&h, Some("http://app.test")));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://app.test"));
        assert!(!is_cross_site(&h, Some("http://app.test")));
        assert!(!is_cross_site(&h, Some("HTTP://APP.TEST")));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(is_cross_site(&h, Some("http://app.test")));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(is_cross_site(&h, Some("http://app.test")));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(is_cross_site(&h, Some("http://app.test")));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!is_cross_site(&h, Some("http://app.test")));
    }
}
