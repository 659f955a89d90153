//! The way to the upstream: one pooled client, one function that builds every upstream
//! request, and the cleaning of what comes back.
//!
//! Bodies are never buffered: the client's `Incoming` body becomes the upstream request's body
//! and the upstream's `Incoming` becomes the client's, frame by frame, trailers included.

pub mod headers;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{self, Body};
use crate::config::{Config, UpstreamConfig};
use crate::error::ProxyError;
use crate::identity;
use headers::Forwarded;

/// Where a request came from, as far as forwarding cares.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    /// Whether the client reached doorman over TLS.
    pub tls: bool,
}

/// The pooled client for the configured upstream.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    config: UpstreamConfig,
    trusted_proxies: Arc<[crate::config::IpNet]>,
}

impl Upstream {
    /// Build the client: one pool for the process, TCP_NODELAY, the configured connect timeout,
    /// and idle pooled connections dropped before the upstream would drop them.
    pub fn new(config: &Config) -> Result<Upstream, rustls::Error> {
        let up = &config.upstream;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(up.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_client_config(up)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(up.pool_idle_timeout)
            // A request whose pooled connection was found closed before anything was written is
            // sent again on another connection: nothing reached the upstream, so it is safe for
            // every method.
            .retry_canceled_requests(true)
            // Host is set by `upstream_request`, per `preserve_host`.
            .set_host(false)
            .build(https);
        Ok(Upstream {
            client,
            config: up.clone(),
            trusted_proxies: config.listen.trusted_proxies.clone().into(),
        })
    }

    /// Forward `req` to `target` (its normalised path and the query as sent) and return the
    /// upstream's response head with its body streaming.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        client: &ClientInfo,
        target: PathAndQuery,
    ) -> Result<Response<Body>, ProxyError> {
        let upgrade = upgrade::requested(&req);
        let client_side = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let up_req = self.upstream_request(req, client, target, upgrade)?;
        let resp =
            match tokio::time::timeout(self.config.timeout, self.client.request(up_req)).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout(self.config.timeout)),
                Ok(Err(e)) => return Err(self.classify(e)),
                Ok(Ok(resp)) => resp,
            };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return match client_side {
                Some(client_side) => upgrade::tunnel(client_side, resp),
                // hyper would not hand us the connection anyway; never pass a 101 nobody asked for.
                None => Err(ProxyError::UpgradeFailed(
                    "upstream switched protocols unasked",
                )),
            };
        }
        let (mut parts, incoming) = resp.into_parts();
        clean_response_headers(&mut parts.headers);
        Ok(Response::from_parts(parts, body::stream(incoming)))
    }

    /// Build the request the upstream receives. Every forwarded request is made here, so the
    /// order of operations is fixed in one place: remove hop-by-hop headers (including those
    /// `Connection` names), strip every client copy of identity and forwarding headers, then set
    /// doorman's own.
    fn upstream_request(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
        target: PathAndQuery,
        upgrade: Option<HeaderValue>,
    ) -> Result<Request<Incoming>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let host = client_host(&parts.uri, &parts.headers);
        let wants_trailers = headers::has_token(&parts.headers, header::TE, "trailers");

        let h = &mut parts.headers;
        headers::remove_hop_by_hop(h);
        identity::strip(h);
        let trusted = self
            .trusted_proxies
            .iter()
            .any(|net| net.contains(client.peer.ip()));
        let proto = if client.tls { "https" } else { "http" };
        headers::set_forwarded(
            h,
            &Forwarded {
                peer: client.peer.ip(),
                trusted,
                proto,
                host: host.as_deref(),
            },
        );

        let host_value = match (self.config.preserve_host, host) {
            (true, Some(host)) => {
                HeaderValue::from_str(&host).map_err(|_| ProxyError::BadRequest("invalid host"))?
            }
            _ => authority_value(&self.config.authority),
        };
        h.insert(header::HOST, host_value);
        if wants_trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, protocol);
        }

        parts.uri = upstream_uri(&self.config.scheme, &self.config.authority, target)?;
        // The upstream connection is HTTP/1.1 whatever the client spoke; hyper's client refuses
        // an h2-marked request on an HTTP/1 connection.
        parts.version = Version::HTTP_11;
        Ok(Request::from_parts(parts, body))
    }

    /// Sort a client error into the cause the client is answered with.
    fn classify(&self, e: hyper_util::client::legacy::Error) -> ProxyError {
        if e.is_connect() {
            if caused_by_timeout(&e) {
                return ProxyError::UpstreamTimeout(self.config.connect_timeout);
            }
            return ProxyError::UpstreamConnect(Box::new(e));
        }
        ProxyError::UpstreamFailed(Box::new(e))
    }
}

/// Remove what must not reach the client: hop-by-hop headers and doorman's handoff headers
/// (`X-Doorman-*`, DESIGN.md §6), whether or not handoff is configured.
fn clean_response_headers(h: &mut http::HeaderMap) {
    headers::remove_hop_by_hop(h);
    headers::remove_where(h, |name| name.starts_with("x-doorman-"));
}

/// The host the client addressed: the h2 `:authority` / absolute-form authority, else `Host`.
fn client_host(uri: &Uri, headers: &http::HeaderMap) -> Option<String> {
    uri.authority().map(|a| a.as_str().to_string()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
}

fn authority_value(authority: &Authority) -> HeaderValue {
    // An `Authority` is always a valid header value.
    HeaderValue::from_str(authority.as_str())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

fn upstream_uri(
    scheme: &Scheme,
    authority: &Authority,
    path: PathAndQuery,
) -> Result<Uri, ProxyError> {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| ProxyError::BadRequest("unusable request target"))
}

fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

/// rustls client settings for an `https://` upstream: the ring provider, TLS 1.2 and 1.3, and
/// either the configured CA bundle or the system trust store.
fn tls_client_config(up: &UpstreamConfig) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    match &up.ca {
        Some(certs) => {
            // Every certificate parsed as PEM at load; one rustls cannot use is logged and skipped.
            let (_, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
            if ignored > 0 {
                tracing::warn!(ignored, "some upstream CA certificates were not usable");
            }
        }
        None => {
            // The system trust store; unreadable entries are logged, not fatal (an empty store
            // just makes every https upstream fail verification: fail closed).
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "could not load a system trust root");
            }
            let (_, ignored) = roots.add_parsable_certificates(native.certs);
            if ignored > 0 {
                tracing::debug!(ignored, "unusable system trust roots skipped");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
