//! `Upgrade` (WebSocket and friends) passthrough.
//!
//! The client's connection is handed over only after the upstream answered `101 Switching
//! Protocols`; until then it is an ordinary request, and any other answer is passed back as
//! is. Then bytes are copied both ways until either side closes.

use http::header::{self, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::{debug, Instrument};

use super::headers;
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::ProxyError;

/// The protocol a client asks to switch to: an HTTP/1.1 request with `Connection: upgrade` and
/// an `Upgrade` header.
pub fn requested(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != http::Version::HTTP_11 {
        return None;
    }
    if !headers::has_token(req.headers(), header::CONNECTION, "upgrade") {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

/// Answer the client with the upstream's 101 and join the two connections once both sides
/// have switched.
pub fn tunnel<B>(
    client_side: OnUpgrade,
    mut resp: Response<B>,
    config: &Config,
) -> Result<Response<Body>, ProxyError> {
    let upstream_side = hyper::upgrade::on(&mut resp);
    let protocol = resp
        .headers()
        .get(header::UPGRADE)
        .cloned()
        .ok_or(ProxyError::UpgradeFailed("101 without an Upgrade header"))?;
    tokio::spawn(
        async move {
            let (client, upstream) = match tokio::try_join!(client_side, upstream_side) {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%error, "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                Ok((up, down)) => debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
                Err(error) => debug!(%error, "tunnel closed with an error"),
            }
        }
        .in_current_span(),
    );
    let (mut parts, _) = resp.into_parts();
    super::clean_response_headers(&mut parts.headers, config);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, protocol);
    Ok(Response::from_parts(parts, body::empty()))
}
