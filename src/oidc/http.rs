//! The HTTP client doorman talks to its OpenID provider with: hyper-util's pooled client over
//! the hyper-rustls connector doorman's upstream uses (ring; the `[oidc] ca` roots or the
//! system store), and the same limits on every call.
//!
//! A provider is a peer doorman trusts with its users' identity, not with its resources: every
//! call has a deadline ([`TIMEOUT`], for the whole call, body included), a body cap
//! ([`MAX_BODY`]), and follows no redirect (a 3xx is an error: a discovery document, key set or
//! token answer is served where it was announced, and following a redirect would carry the
//! client secret elsewhere).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

/// The deadline of one call, from the first byte sent to the last byte of the body.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest body doorman reads from the provider. Discovery documents and key sets are a
/// few KiB; a token answer less.
pub(super) const MAX_BODY: usize = 256 * 1024;

const AGENT: &str = concat!("doorman/", env!("CARGO_PKG_VERSION"));

/// Idle connections are kept a little (a callback's token call and a key fetch come close
/// together), then closed: calls to the provider are rare.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// A call that gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum HttpError {
    /// The URL is not one hyper can send to.
    #[error("not a usable URL")]
    Url,
    /// No connection, or it broke before the whole answer came.
    #[error("{0}")]
    Connect(String),
    /// No whole answer within [`TIMEOUT`].
    #[error("no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    /// A redirect, which is not followed.
    #[error("answered {0} (redirects are not followed)")]
    Redirect(StatusCode),
    /// A status other than `200` where only a `200` is usable.
    #[error("answered {0}")]
    Status(StatusCode),
    /// A body larger than [`MAX_BODY`].
    #[error("answer larger than {} KiB", MAX_BODY / 1024)]
    TooLarge,
}

impl HttpError {
    /// Whether the provider could not be reached at all (as opposed to answering badly).
    pub(super) fn unreachable(&self) -> bool {
        matches!(self, HttpError::Connect(_) | HttpError::Timeout)
    }
}

/// The client to one provider. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub(super) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting `ca` (else the system store). No I/O, no runtime needed: connections
    /// are made on the runtime of the first call.
    pub(super) fn new(ca: Option<&[CertificateDer<'static>]>) -> Result<HttpClient, rustls::Error> {
        let tls = crate::tls::client_config(ca, "oidc")?;
        let mut tcp = HttpConnector::new();
        // The https connector below checks the scheme; `http://` is allowed only for loopback
        // issuers, which `discovery` enforces for every URL it accepts.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(HttpClient { client })
    }

    /// `GET url` for a JSON document: the body of a `200`.
    pub(super) async fn get_json(&self, url: &str) -> Result<Bytes, HttpError> {
        let uri: Uri = url.parse().map_err(|_| HttpError::Url)?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::new()))
            .map_err(|_| HttpError::Url)?;
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::OK {
            return Err(HttpError::Status(resp.status()));
        }
        Ok(resp.into_body())
    }

    /// Send `req` (with doorman's `User-Agent`, and `Accept: application/json` unless set)
    /// and read the whole answer, within [`TIMEOUT`] and [`MAX_BODY`]. A 3xx is an error.
    pub(super) async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, HttpError> {
        let h = req.headers_mut();
        h.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        if !h.contains_key(ACCEPT) {
            h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        match tokio::time::timeout(TIMEOUT, self.call(req)).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout),
        }
    }

    async fn call(&self, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, HttpError> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| HttpError::Connect(chain(&e)))?;
        if resp.status().is_redirection() {
            return Err(HttpError::Redirect(resp.status()));
        }
        let announced = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(HttpError::TooLarge);
        }
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                HttpError::TooLarge
            } else {
                HttpError::Connect(chain(&*e))
            }
        })?;
        Ok(Response::from_parts(parts, body.to_bytes()))
    }
}

/// The token call as oauth2 makes it. oauth2 reads the answer (its status, JSON error or
/// token); this adds doorman's limits, and `status` keeps the status for the error message.
pub(super) struct OAuthCall<'a> {
    pub(super) http: &'a HttpClient,
    pub(super) status: std::sync::Mutex<Option<StatusCode>>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthCall<'_> {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let resp = self
                .http
                .send(request.map(|b| Full::new(Bytes::from(b))))
                .await?;
            *crate::lock::lock(&self.status) = Some(resp.status());
            Ok(resp.map(|b| b.to_vec()))
        })
    }
}

/// An error and its sources, `: `-separated (hyper-util's own text is only "client error
/// (Connect)"; the cause is below it).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
