//! Forward-auth: doorman as the auth server of another gateway (DESIGN.md §8).
//!
//! nginx (`auth_request`), Traefik (`ForwardAuth`) and Caddy (`forward_auth`) ask doorman
//! whether a request they are about to proxy may pass, by sending a sub-request that
//! describes the original one in headers. Doorman judges that original request with the same
//! normaliser ([`crate::path::normalise`]), route table, session lookup and decision
//! ([`access::decide`]) as a request it proxies itself: a route means the same thing whichever
//! way a request comes.
//!
//! Decisions, with the reasoning:
//!
//! * **Two header families, never mixed, never defaulted.** `<prefix>/auth` reads only
//!   `X-Original-Method` and the absolute `X-Original-URL`; `<prefix>/forward-auth` reads only
//!   `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. Gateways pass the client's own
//!   headers through to the sub-request (nginx forwards a client's `X-Forwarded-Uri`; Traefik
//!   and Caddy a client's `X-Original-URI`), so reading the other family, or falling back to
//!   it, would let a client describe a public path while the gateway serves a protected one.
//!   A required header that is missing or repeated is a 400, never a guess.
//! * **Only trusted gateways** (`trusted_gateways`) may describe a request (403 otherwise):
//!   anyone else could ask "may I?" about any user's cookie and learn identities.
//! * **Only allowed hosts** (`allowed_hosts`): an original request naming another host is 403.
//!   Routes may match on `hosts`, so the host is part of the decision.
//! * **Answers.** Allowed: 200 with the identity headers always present (empty for an
//!   anonymous request on a public route), so a gateway copying them always overwrites a
//!   client's own copy. Not logged in: 401 on `/auth` (nginx's `auth_request` accepts only
//!   2xx, 401 and 403); on `/forward-auth`, the route's challenge (a page load under
//!   `on_unauthenticated = "redirect"` gets 302 to the login page with the original absolute
//!   URL as `next`). Not permitted or `deny`: 403. Store down: 503 (nginx turns it into 500;
//!   never a pass). Original URIs under the login prefix, spelt exactly as configured, are
//!   200: the login page is not behind itself (another spelling is judged by the routes, since
//!   the gateway may send it to the app). Every answer carries `Cache-Control: no-store`: it is about one user's cookie.
//! * **Browser view.** The cookie is read from the sub-request's `Cookie` under the name the
//!   original scheme implies (`__Host-` only for https under `cookie_secure = "auto"`); the
//!   client address for logs is the gateway's `X-Forwarded-For` (see
//!   [`ClientInfo::behind_gateway`](crate::exchange::ClientInfo::behind_gateway)).

use std::future::Future;

use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::access::{self, Judged, Return, Shared};
use crate::body::{self, Body};
use crate::config::ForwardAuthConfig;
use crate::error::{Challenge, ProxyError};
use crate::exchange::Exchange;
use crate::metrics::ForwardAuth as Result_;

/// Which gateway convention a sub-request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `<prefix>/auth`: nginx `auth_request` (`X-Original-Method`, `X-Original-URL`).
    AuthRequest,
    /// `<prefix>/forward-auth`: Traefik ForwardAuth, Caddy `forward_auth`
    /// (`X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`).
    ForwardAuth,
}

/// The original request, as the gateway describes it.
#[derive(Debug)]
struct Original {
    method: Method,
    https: bool,
    /// The authority as the browser used it (port included), for URLs.
    authority: String,
    /// The host, normalised, for `allowed_hosts` and routes.
    host: String,
    /// The path and query as sent.
    target: String,
}

impl Original {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
}

/// Answer one forward-auth sub-request (`req`'s headers describe the original request).
/// Every answer, refusals included, is returned as a response here, counted, and marked
/// `no-store`.
///
/// Not an `async fn` (nor is [`judge`]): one keeps its arguments twice in its state, and this
/// state is in the request's future, whose size is the largest of the gate's ways (a
/// forward-auth answer's, a forwarded request's).
// Not `async fn` on purpose: see the doc comment (the arguments, held once).
#[allow(clippy::manual_async_fn)]
pub fn answer<'a>(
    shared: &'a Shared,
    ex: &'a mut Exchange,
    convention: Convention,
    headers: &'a HeaderMap,
) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a {
    async move {
        let Some(fa) = &shared.config.forward_auth else {
            return Err(ProxyError::NotFound);
        };
        let result = judge(shared, fa, ex, convention, headers).await;
        let (counted, mut resp) = match result {
            Ok(resp) => (Result_::allowed, resp),
            Err(error) => {
                let counted = match &error {
                    ProxyError::Unauthenticated(Challenge::Redirect { .. }) => Result_::redirect,
                    ProxyError::Unauthenticated(_) => Result_::unauthenticated,
                    ProxyError::StoreUnavailable(_) => {
                        shared.metrics.store_error();
                        Result_::unavailable
                    }
                    ProxyError::BadRequest(_) => Result_::bad_request,
                    _ => Result_::forbidden,
                };
                tracing::debug!(peer = %ex.client.peer, reason = %error, "forward-auth refused");
                (counted, error.to_response())
            }
        };
        shared.metrics.forward_auth(counted);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }
}

// Not `async fn` on purpose: see `answer` (the arguments, held once).
#[allow(clippy::manual_async_fn)]
fn judge<'a>(
    shared: &'a Shared,
    fa: &'a ForwardAuthConfig,
    ex: &'a mut Exchange,
    convention: Convention,
    headers: &'a HeaderMap,
) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send + 'a {
    async move {
        let config = &*shared.config;
        if !ex.client.gateway {
            return Err(ProxyError::Forbidden);
        }
        let original = match convention {
            Convention::AuthRequest => from_original_url(headers)?,
            Convention::ForwardAuth => from_forwarded(headers)?,
        };
        if !fa.allows_host(&original.host) {
            return Err(ProxyError::Forbidden);
        }
        // Byte searches here and below, not `split_once('?')` / `find('/')` / `contains('#')`:
        // on these short strings a char search costs more than the bytes it looks at.
        let path = match original.target.bytes().position(|b| b == b'?') {
            Some(query) => &original.target[..query],
            None => original.target.as_str(),
        };
        let path = crate::path::NormalPath::from(crate::path::normalise(path)?);
        // The browser's view of the original request decides the cookie's name, and the
        // `Set-Cookie` that expires a stale one.
        if ex.client.https != original.https {
            // The gate read the cookie under the sub-request's own view; read it again under the
            // browser's.
            ex.client.https = original.https;
            ex.presented = shared.cookies(original.https).read(headers);
        }
        if owned_exactly(&config.login.prefix, &path) {
            ex.path = Some(path);
            ex.route = Some(crate::metrics::RouteLabel::doorman());
            return Ok(allowed(shared, ex, None));
        }
        let judged = Judged {
            method: &original.method,
            host: Some(&original.host),
            path: &path,
            headers,
            back: Return::Original {
                scheme: original.scheme(),
                authority: &original.authority,
                target: &original.target,
                login_origin: config.login.public_origin.as_deref(),
            },
        };
        let decided = access::decide(shared, ex, &judged).await;
        ex.path = Some(path);
        match decided {
            // nginx's auth_request passes on 2xx, 401 and 403 only: a redirect is its config's job
            // (`error_page 401`), so /auth never answers one.
            Err(ProxyError::Unauthenticated(_)) if convention == Convention::AuthRequest => {
                Err(ProxyError::Unauthenticated(Challenge::Plain))
            }
            Err(error) => Err(error),
            Ok(()) => Ok(allowed(shared, ex, Some(&original.host))),
        }
    }
}

/// Whether `path` is under doorman's prefix exactly as written (case included). Doorman itself
/// answers `/_DOORMAN/x` as its own, but a gateway routes its prefix with its own matching —
/// nginx's `location /_doorman/` is case-sensitive — and would send `/_DOORMAN/x` to the app:
/// a 200 for it would be a bypass. Other spellings are judged by the routes like any path.
fn owned_exactly(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// 200, empty, with the identity headers (and the assertion header, when configured) always
/// present: the session's identity, and its assertion for the original's `host` (validated by
/// `allowed_hosts`), or empty values. `host` is `None` for doorman's own pages (anonymous).
fn allowed(shared: &Shared, ex: &Exchange, host: Option<&str>) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    let identity = host.and(ex.identity());
    let token = host.and_then(|host| crate::assertion::header_value(shared, ex, host));
    shared
        .config
        .identity
        .set_always(resp.headers_mut(), identity, token);
    resp
}

// The headers that describe an original request, as names made once (a lookup by `&str`
// parses the name on every call).
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The one value of a header that must appear exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, ProxyError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(ProxyError::BadRequest(
                "forward-auth header is not visible ASCII",
            )),
        (None, _) => Err(ProxyError::BadRequest("forward-auth header missing")),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("forward-auth header repeated")),
    }
}

/// A method as a request line would carry it: upper-case token (DESIGN.md §5), never
/// `CONNECT`.
fn method(value: &str) -> Result<Method, ProxyError> {
    let bad = ProxyError::BadRequest("invalid original method");
    if value.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(bad);
    }
    let method = Method::from_bytes(value.as_bytes()).map_err(|_| bad)?;
    if method == Method::CONNECT {
        return Err(ProxyError::BadRequest("invalid original method"));
    }
    Ok(method)
}

/// `X-Original-Method` and the absolute `X-Original-URL` (`$scheme://$http_host$request_uri`).
fn from_original_url(headers: &HeaderMap) -> Result<Original, ProxyError> {
    let method = method(single(headers, &X_ORIGINAL_METHOD)?)?;
    let url = single(headers, &X_ORIGINAL_URL)?;
    let bad = ProxyError::BadRequest("X-Original-URL is not an absolute http(s) URL");
    let (https, rest) = if let Some(rest) = strip_prefix_ci(url, "https://") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ci(url, "http://") {
        (false, rest)
    } else {
        return Err(bad);
    };
    let slash = rest.bytes().position(|b| b == b'/').ok_or(bad)?;
    let (authority, target) = rest.split_at(slash);
    original(method, https, authority, target)
}

/// `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri` (origin-form path and query).
fn from_forwarded(headers: &HeaderMap) -> Result<Original, ProxyError> {
    let method = method(single(headers, &X_FORWARDED_METHOD)?)?;
    let https = match single(headers, &X_FORWARDED_PROTO)? {
        p if p.eq_ignore_ascii_case("https") => true,
        p if p.eq_ignore_ascii_case("http") => false,
        _ => {
            return Err(ProxyError::BadRequest(
                "X-Forwarded-Proto is not http or https",
            ))
        }
    };
    let authority = single(headers, &X_FORWARDED_HOST)?;
    let target = single(headers, &X_FORWARDED_URI)?;
    original(method, https, authority, target)
}

fn original(
    method: Method,
    https: bool,
    authority: &str,
    target: &str,
) -> Result<Original, ProxyError> {
    let host = crate::host::normalise(authority).ok_or(ProxyError::BadRequest(
        "original host is not a plain host name",
    ))?;
    if !target.starts_with('/') || target.bytes().any(|b| b == b'#') {
        return Err(ProxyError::BadRequest("original URI is not a path"));
    }
    Ok(Original {
        method,
        https,
        authority: authority.to_ascii_lowercase(),
        host,
        target: target.to_string(),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn nginx_describes_the_original_in_one_url() {
        let o = from_original_url(&headers(&[
            ("x-original-method", "GET"),
            ("x-original-url", "https://App.Example.com:8443/a/b?c=d"),
        ]))
        .unwrap();
        assert_eq!(o.method, Method::GET);
        assert!(o.https);
        assert_eq!(o.host, "app.example.com");
        assert_eq!(o.target, "/a/b?c=d");
        assert_eq!(o.authority, "app.example.com:8443");
        for url in [
            "/a",
            "ftp://x/a",
            "https://x",
            "https://u@x/a",
            "https://x y/a",
            "https://x/a#f",
            "//x/a",
        ] {
            let h = headers(&[("x-original-method", "GET"), ("x-original-url", url)]);
            assert!(from_original_url(&h).is_err(), "{url}");
        }
    }

    #[test]
    fn a_missing_or_repeated_header_is_refused_and_families_do_not_mix() {
        let full = [
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/x"),
        ];
        assert!(from_forwarded(&headers(&full)).is_ok());
        for skip in 0..full.len() {
            let mut h: Vec<_> = full.to_vec();
            h.remove(skip);
            // The other family never fills in.
            h.push(("x-original-url", "https://app.example.com/x"));
            h.push(("x-original-method", "GET"));
            assert!(
                from_forwarded(&headers(&h)).is_err(),
                "without {}",
                full[skip].0
            );
            let mut h: Vec<_> = full.to_vec();
            h.push(full[skip]);
            assert!(
                from_forwarded(&headers(&h)).is_err(),
                "{} twice",
                full[skip].0
            );
        }
        assert!(from_original_url(&headers(&full)).is_err());
        for bad in ["get", "CONNECT", "G ET", ""] {
            let mut h: Vec<_> = full.to_vec();
            h[0] = ("x-forwarded-method", bad);
            assert!(from_forwarded(&headers(&h)).is_err(), "{bad:?}");
        }
    }
}
