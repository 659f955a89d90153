//! One request's way through doorman.
//!
//! [`handle`] is the thin outer function: it runs [`decide_and_forward`], turns an error into
//! its fixed response ([`ProxyError::to_response`]), and logs the outcome once with the
//! request's fields. The inner function is the happy path; later stages (path normalisation,
//! doorman's own endpoints, the route table, the session lookup) slot in before the forward.

use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{header, HeaderValue, Method, Request, Response, Version};
use hyper::body::Incoming;
use tracing::{info, warn};

use crate::body::Body;
use crate::config::Config;
use crate::error::ProxyError;
use crate::forward::{ClientInfo, Upstream};

/// What every request shares: the validated config and the upstream client built from it.
pub struct App {
    pub config: Arc<Config>,
    pub upstream: Upstream,
}

impl App {
    /// Build the shared state; fails only if the upstream TLS client cannot be set up.
    pub fn new(config: Arc<Config>) -> Result<App, rustls::Error> {
        let upstream = Upstream::new(&config)?;
        Ok(App { config, upstream })
    }
}

/// Answer one request: forward it, or answer with doorman's own error response.
pub async fn handle(app: &App, client: ClientInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // RFC 9112 §6.1: a request with Transfer-Encoding may also have carried a Content-Length
    // (hyper drops it and reads the body as chunked). A front proxy that read it differently
    // may see the rest of the bytes as a second request, so the connection is not reused.
    let close_after =
        req.version() <= Version::HTTP_11 && req.headers().contains_key(header::TRANSFER_ENCODING);

    let mut resp = match decide_and_forward(app, client, req).await {
        Ok(resp) => resp,
        Err(error) => {
            warn!(
                peer = %client.peer, %method, %path, status = error.status().as_u16(),
                error = %error_chain(&error), "request failed"
            );
            error.to_response()
        }
    };
    if close_after {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    info!(
        target: "doorman::access",
        peer = %client.peer, %method, %path, status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64, "request"
    );
    resp
}

async fn decide_and_forward(
    app: &App,
    client: ClientInfo,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    // A reverse proxy is not a tunnel to arbitrary hosts.
    if req.method() == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed);
    }
    // Normalised once: what later stages match is exactly what the upstream receives.
    let target = forward_target(req.uri())?;
    app.upstream.forward(req, &client, target).await
}

/// The normalised path with the query string as the client sent it (never matched, never
/// rewritten).
fn forward_target(uri: &http::Uri) -> Result<PathAndQuery, ProxyError> {
    let path = crate::path::normalise(uri.path())?;
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
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
