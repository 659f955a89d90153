//! Cross-site protection for state-changing requests (a login or logout `POST`, a handoff).
//!
//! A request is refused when the browser says it came from another site: `Sec-Fetch-Site:
//! cross-site`, or an `Origin` that is not the public origin (`[login] public_origin`, else the
//! scheme and `Host`/`:authority` the request arrived with — behind a trusted gateway, the
//! scheme and host its `X-Forwarded-Proto` / `X-Forwarded-Host` say the browser used). Requests without either header
//! (old browsers, scripts) are same-site by default: they carry no ambient cookie to abuse.

use http::{header, HeaderMap, Request};

use crate::config::{Config, CookieSecure};
use crate::exchange::ClientInfo;

/// Whether `req` is a cross-site request by the rules above.
pub fn is_cross_site<B>(config: &Config, client: &ClientInfo, req: &Request<B>) -> bool {
    cross_site(req.headers(), public_origin(config, client, req).as_deref())
}

/// The origin browsers see: `[login] public_origin`, else the request's scheme and host.
///
/// With `[forward_auth]`, doorman's endpoints are served on every host the gateway fronts (a
/// logout on any of them, the callback of a sign-in across hosts), so the origin is the one
/// the request was sent to — but only on an `allowed_hosts` host; any other host has no
/// same-site origin at all.
pub(crate) fn public_origin<B>(
    config: &Config,
    client: &ClientInfo,
    req: &Request<B>,
) -> Option<String> {
    if let Some(fa) = &config.forward_auth {
        let host = client.browser_host(req.uri(), req.headers())?;
        if !crate::host::normalise(host).is_some_and(|h| fa.allows_host(&h)) {
            return None;
        }
    } else if let Some(origin) = &config.login.public_origin {
        return Some(origin.clone());
    }
    let scheme = if client.https || config.session.cookie_secure == CookieSecure::Always {
        "https"
    } else {
        "http"
    };
    let host = client.browser_host(req.uri(), req.headers())?;
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Whether a browser marked a request with these headers as coming from another site than
/// `public_origin`.
fn cross_site(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn cross_site_requests_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!cross_site(&h, Some("http://app.test")));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://app.test"));
        assert!(!cross_site(&h, Some("http://app.test")));
        assert!(!cross_site(&h, Some("HTTP://APP.TEST")));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(cross_site(&h, Some("http://app.test")));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h, Some("http://app.test")));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h, Some("http://app.test")));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h, Some("http://app.test")));
    }
}
