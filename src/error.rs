//! Why a request did not get the upstream's answer, and the one place that turns each cause
//! into a status code.
//!
//! Clients get a short, fixed body per status: the cause (an upstream address, an OS error)
//! goes to the log with the request's fields, never to the client.

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};

/// Every way doorman itself answers instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request cannot be forwarded as sent (no host, an unusable URI).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The path is ambiguous (DESIGN.md §5): refused, never forwarded.
    #[error("ambiguous path: {0}")]
    BadPath(#[from] crate::path::PathError),
    /// A protected route and no valid session.
    #[error("authentication required")]
    Unauthenticated(Challenge),
    /// `GET {prefix}/session` without a valid session.
    #[error("no session")]
    NoSession,
    /// The session store could not answer: protected routes fail closed, never open.
    #[error("{0}")]
    StoreUnavailable(#[from] crate::session::StoreError),
    /// Too many failed logins for this user and client (or this client) in the window.
    #[error("too many failed logins")]
    Throttled(Duration),
    /// The OpenID Connect provider has not been discovered yet (it was unreachable at start
    /// and discovery is still being retried): the sign-in button answers 503 until it is.
    #[error("identity provider not available yet")]
    ProviderUnavailable,
    /// Every password-hashing slot stayed busy for the whole wait.
    #[error("login busy")]
    Busy,
    /// The upstream waited for request-body bytes and the client sent none for `body_timeout`
    /// (DESIGN.md §14). The connection is not reused: the rest of the body never came.
    #[error("request body stalled for {0:?}")]
    BodyStalled(Duration),
    /// The request body could not be read (a malformed chunk, DESIGN.md §5): the client's
    /// fault, never the upstream's. The connection's framing is lost with it.
    #[error("malformed request body: {0}")]
    BadRequestBody(#[source] BoxError),
    /// A login form larger than doorman reads.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A request body doorman reads itself (the login form) did not arrive within
    /// `[listen] body_timeout`. The connection is closed: the rest of the body may still come.
    #[error("request body not received in time")]
    RequestBodyTimeout,
    /// A `deny` route, or a session whose user the route does not allow.
    #[error("forbidden")]
    Forbidden,
    /// A path under doorman's own prefix that is no endpoint.
    #[error("not found")]
    NotFound,
    /// `CONNECT`: doorman fronts one app and tunnels nowhere else.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No connection to the upstream could be made (refused, unreachable, TLS failed).
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(#[source] BoxError),
    /// The connection to the upstream broke before a response head arrived.
    #[error("upstream request failed: {0}")]
    UpstreamFailed(#[source] BoxError),
    /// The upstream did not connect, or answer with a complete head, in time.
    #[error("upstream timed out after {0:?}")]
    UpstreamTimeout(Duration),
    /// The upstream agreed to switch protocols but the tunnel could not be set up.
    #[error("upstream upgrade failed: {0}")]
    UpgradeFailed(&'static str),
}

/// How a client without a session is told to log in (`[[routes]] on_unauthenticated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `401` with `WWW-Authenticate` and a short text.
    Plain,
    /// A page load in redirect mode: `302` to the login page.
    Redirect { location: String },
    /// Anything else in redirect mode: `401` JSON naming the login page.
    Json { login_url: String },
}

/// The `WWW-Authenticate` challenge doorman sends with every 401.
pub const WWW_AUTHENTICATE: &str = "Doorman realm=\"doorman\"";

/// Seconds a client is asked to wait when the session store is down.
pub const STORE_RETRY_AFTER: u64 = 5;

/// A boxed error source, as the HTTP client reports them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ProxyError {
    /// The status this cause is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) | ProxyError::BadRequestBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::BodyStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Unauthenticated(Challenge::Redirect { .. }) => StatusCode::FOUND,
            ProxyError::Unauthenticated(_) | ProxyError::NoSession => StatusCode::UNAUTHORIZED,
            ProxyError::StoreUnavailable(_)
            | ProxyError::Busy
            | ProxyError::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UpstreamConnect(_)
            | ProxyError::UpstreamFailed(_)
            | ProxyError::UpgradeFailed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether an HTTP/1 connection must close after this answer: the request body was left
    /// unread or unreadable, so the next bytes cannot be trusted to start a request.
    pub fn ends_connection(&self) -> bool {
        matches!(
            self,
            ProxyError::BodyStalled(_) | ProxyError::BadRequestBody(_)
        )
    }

    /// The response the client sees: the status and a fixed one-line text.
    pub fn to_response(&self) -> Response<Body> {
        let retry_after = match self {
            ProxyError::StoreUnavailable(_) => Some(STORE_RETRY_AFTER),
            ProxyError::Busy => Some(1),
            ProxyError::ProviderUnavailable => Some(5),
            ProxyError::Throttled(window) => Some(window.as_secs().max(1)),
            _ => None,
        };
        if let Some(secs) = retry_after {
            let mut resp = fixed_response(self.status());
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
        if let ProxyError::RequestBodyTimeout = self {
            let mut resp = fixed_response(self.status());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        let challenge = match self {
            ProxyError::Unauthenticated(challenge) => challenge,
            ProxyError::NoSession => &Challenge::Plain,
            _ => return fixed_response(self.status()),
        };
        let mut resp = match challenge {
            Challenge::Plain => fixed_response(StatusCode::UNAUTHORIZED),
            Challenge::Redirect { location } => {
                let mut resp = fixed_response(StatusCode::FOUND);
                if let Ok(v) = HeaderValue::from_str(location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                return resp;
            }
            Challenge::Json { login_url } => {
                let json =
                    serde_json::json!({ "error": "unauthenticated", "login_url": login_url });
                body::own_response(
                    StatusCode::UNAUTHORIZED,
                    "application/json",
                    json.to_string(),
                )
            }
        };
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
        resp
    }
}

/// A short, fixed `text/plain` answer for `status`, never cached.
pub fn fixed_response(status: StatusCode) -> Response<Body> {
    let text = match status {
        StatusCode::BAD_REQUEST => "Bad request\n",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed\n",
        StatusCode::UNAUTHORIZED => "Unauthorized: log in first\n",
        StatusCode::FORBIDDEN => "Forbidden\n",
        StatusCode::NOT_FOUND => "Not found\n",
        StatusCode::FOUND => "Redirecting to the login page\n",
        StatusCode::BAD_GATEWAY => "Bad gateway: the upstream could not be reached\n",
        StatusCode::GATEWAY_TIMEOUT => "Gateway timeout: the upstream did not answer in time\n",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable: try again shortly\n",
        StatusCode::TOO_MANY_REQUESTS => "Too many failed logins: try again later\n",
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large\n",
        StatusCode::REQUEST_TIMEOUT => "Request timeout: the request body did not arrive in time\n",
        _ => "Error\n",
    };
    body::own_response(status, "text/plain; charset=utf-8", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_has_one_status() {
        let io = || -> BoxError { Box::new(std::io::Error::other("x")) };
        assert_eq!(ProxyError::BadRequest("x").status(), 400);
        assert_eq!(ProxyError::MethodNotAllowed.status(), 405);
        assert_eq!(ProxyError::BadRequestBody(io()).status(), 400);
        assert_eq!(
            ProxyError::BodyStalled(Duration::from_secs(1)).status(),
            408
        );
        assert!(ProxyError::BodyStalled(Duration::from_secs(1)).ends_connection());
        assert!(!ProxyError::UpstreamFailed(io()).ends_connection());
        assert_eq!(
            ProxyError::BadPath(crate::path::PathError::AboveRoot).status(),
            400
        );
        assert_eq!(ProxyError::UpstreamConnect(io()).status(), 502);
        assert_eq!(ProxyError::UpstreamFailed(io()).status(), 502);
        assert_eq!(ProxyError::UpgradeFailed("x").status(), 502);
        assert_eq!(
            ProxyError::UpstreamTimeout(Duration::from_secs(1)).status(),
            504
        );
        let timeout = ProxyError::RequestBodyTimeout.to_response();
        assert_eq!(timeout.status(), 408);
        assert_eq!(timeout.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn client_bodies_never_carry_the_cause() {
        let e =
            ProxyError::UpstreamConnect(Box::new(std::io::Error::other("10.1.2.3:5432 refused")));
        let resp = e.to_response();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
