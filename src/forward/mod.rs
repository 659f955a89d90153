//! The way to the upstream: one connection pool per worker (`pool`, doorman's own: see
//! there why, and what it guarantees), one function that builds every upstream request, and
//! the cleaning of what comes back.
//!
//! The upstream receives the request-target in origin-form (`/path?query`) and the `Host`
//! doorman chose (`preserve_host`); the connection is HTTP/1.1 whatever the client spoke.
//!
//! Bodies are never buffered: the client's `Incoming` body becomes the upstream request's body
//! and the upstream's `Incoming` becomes the client's, frame by frame, trailers included (a
//! chunked request body's first frames are taken ahead, at most 64 KiB, so a malformed one is
//! refused before the upstream sees it; `client_body` also holds the body deadlines).
//! Request trailers are header fields too, and a client may declare `Trailer: X-Auth-User`: they
//! get the same strip as the request head ([`UpstreamBody`]).

mod client_body;
mod following;
pub mod headers;
mod pool;
mod upgrade;
mod websocket;

use std::future::Future;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{self, Body};
use crate::config::{Config, UpstreamConfig};
use crate::cookie::{self, ForUpstream};
use crate::error::ProxyError;
use crate::exchange::ClientInfo;
use crate::identity::{Identity, DOORMAN_PREFIX};
use crate::login::handoff::Handoff;
use crate::session::live::Ticket;
use client_body::ClientBody;
use headers::{Forwarded, Initials, Scan};
use pool::{Pool, SendError};

/// The connection pools for the configured upstream: one per worker
/// ([`crate::worker`]), so a request and the upstream connection it uses stay on
/// the same thread. A reload builds a new `Upstream`; the old pools drain and their idle
/// connections expire.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool<HttpsConnector<HttpConnector>, UpstreamBody>>,
    /// The config this client was built from: forwarding rules are read from it per request.
    config: Arc<Config>,
    /// Its `[upstream]` table.
    up: Arc<UpstreamConfig>,
    /// The upstream's authority as a `Host` value, made once: cloning it is a reference
    /// count, where making it per request was an allocation and a copy.
    authority: HeaderValue,
}

impl Upstream {
    /// Build the pools: one per worker, TCP_NODELAY, the configured connect timeout, and idle
    /// pooled connections dropped before the upstream would drop them. `None` in auth-only
    /// mode (no `[upstream]`).
    pub fn new(config: Arc<Config>) -> Result<Option<Upstream>, rustls::Error> {
        let Some(up) = config.upstream.clone() else {
            return Ok(None);
        };
        let up = Arc::new(up);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(up.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(up.ca.as_deref(), "upstream")?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // What the connector dials: the scheme picks TLS or not, the authority the address.
        let target = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(up.scheme.clone());
            parts.authority = Some(up.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        .map_err(|e| rustls::Error::General(format!("upstream url: {e}")))?;
        let pool = Pool::new(
            https,
            target,
            crate::worker::count(),
            up.pool_idle_timeout,
            up.pool_max_idle,
        );
        Ok(Some(Upstream {
            pool: Arc::new(pool),
            config,
            authority: authority_value(&up.authority),
            up,
        }))
    }

    /// Forward `req` to `target` (its normalised path and the query as sent) and return the
    /// upstream's response head with its body streaming, and the handoff headers the upstream
    /// sent (already removed from the response). What `vouch` names is set (or removed) after
    /// every client copy was stripped.
    ///
    /// The upstream request is built before the returned future is: the future then holds it
    /// once, boxed, and none of what it was made from (the client's request, the target, what
    /// doorman vouches for), which unbuilt it would keep room for to its end. Not an
    /// `async fn`, for the reason [`Pool::send`] gives.
    // Not `async fn` on purpose: see the doc comment (the arguments, held once).
    #[allow(clippy::manual_async_fn)]
    pub fn forward<'a>(
        &'a self,
        mut req: Box<Request<Incoming>>,
        client: &ClientInfo,
        target: PathAndQuery,
        vouch: Vouch<'_>,
        session: Option<Ticket<'a>>,
    ) -> impl Future<Output = Result<(Response<Body>, Handoff), ProxyError>> + Send + 'a {
        // What goes before the request does: hop-by-hop headers, and the client's claims.
        let trusted = self.trusts(client);
        let scan = self.scan(req.headers(), trusted);
        // Boxed, with the client's side of it: few requests upgrade, and unboxed, their room
        // would be in every request's future.
        let upgrade = upgrade::requested(&req, &scan, &self.up.upgrades)
            .map(|asked| Box::new((asked, hyper::upgrade::on(&mut *req))));
        let offered = upgrade.as_ref().map(|u| u.0.offered().clone());
        // Only a chunked body can be malformed after its head was accepted (client_body).
        let chunked = scan.has_transfer_encoding();
        // Its error boxed: this future keeps what it captured to its end.
        let built = self
            .upstream_request(req, client, (scan, trusted), target, vouch, offered)
            .map_err(Box::new);
        async move {
            let mut up_req = built.map_err(|e| *e)?;
            let progress = match up_req.body_mut().inner.as_deref_mut() {
                Some(body) => {
                    if chunked {
                        body.prefetch().await?;
                    }
                    body.track()
                }
                None => None,
            };
            let up = &self.up;
            // Pinned where it is made, and waited for through a reference: passed by value,
            // the exchange's state was moved three times on its way into the timeout.
            let mut send = std::pin::pin!(self.pool.send(up_req));
            let sent = client_body::head_within(up.timeout, progress, send.as_mut());
            let resp = match sent.await {
                None => return Err(ProxyError::UpstreamTimeout(up.timeout)),
                Some(Err(e)) => return Err(self.classify(e)),
                Some(Ok(resp)) => resp,
            };
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                return match upgrade.map(|u| *u) {
                    Some((asked, client_side)) => {
                        // A WebSocket of a session ends with it (DESIGN.md §11).
                        let follow = session.map(|t| {
                            let t = t.to_owned();
                            upgrade::Follow {
                                expires_in: t.expires_in(),
                                user: t.user().to_string(),
                                registration: t.register(),
                            }
                        });
                        upgrade::tunnel(&asked, client_side, resp, &self.config, follow)
                            .map(|r| (r, Handoff::default()))
                    }
                    // hyper would not hand us the connection anyway; never pass a 101 nobody asked for.
                    None => Err(ProxyError::UpgradeFailed(
                        "upstream switched protocols unasked",
                    )),
                };
            }
            let (mut parts, incoming) = resp.into_parts();
            let handoff = clean_response_headers(&mut parts.headers, &self.config);
            let body = match session {
                // A session's response that is still coming may be long-lived (DESIGN.md §11).
                Some(t) if !http_body::Body::is_end_stream(&incoming) => {
                    let stream = is_event_stream(&parts.headers);
                    // Its errors are already a body's: no `map_err` layer around it, which
                    // each of its frames would pass through.
                    Body::new(following::Following::new(
                        incoming,
                        t.to_owned(),
                        stream,
                        t.recheck / 2,
                    ))
                }
                _ => body::stream(incoming),
            };
            Ok((Response::from_parts(parts, body), handoff))
        }
    }

    /// Build the request the upstream receives. Every forwarded request is made here, so the
    /// order of operations is fixed in one place: remove hop-by-hop headers (including those
    /// `Connection` names), strip every client copy of identity and forwarding headers and
    /// doorman's session cookie, then set doorman's own headers, identity last.
    ///
    /// `scan` is [`Upstream::scan`]'s of this request's headers, `trusted` whether its peer is
    /// a trusted proxy.
    ///
    /// The head is edited where the client's request lies, in its box, and moved once, into
    /// the upstream request's box, when its body is wrapped: each move of a request head copies
    /// about 340 bytes (`benches/callgrind.sh`), and this used to make four.
    fn upstream_request(
        &self,
        mut req: Box<Request<Incoming>>,
        client: &ClientInfo,
        (scan, trusted): (Scan, bool),
        target: PathAndQuery,
        vouch: Vouch<'_>,
        upgrade: Option<HeaderValue>,
    ) -> Result<Box<Request<UpstreamBody>>, ProxyError> {
        let config = &*self.config;
        let up = &self.up;
        let host = host_value(req.uri(), req.headers())?;
        let wants_trailers =
            scan.has_te() && headers::has_token(req.headers(), header::TE, "trailers");

        let h = req.headers_mut();
        let peer = client.peer_value.clone();
        scan.remove(h);
        vouch.cookies.apply(h, &config.session.cookie_name);
        if let Some(name) = vouch.drop_cookie {
            cookie::remove_from_request(h, name);
        }
        let proto = if client.https { "https" } else { "http" };
        let host_value = match (up.preserve_host, &host) {
            (true, Some(host)) => host.clone(),
            _ => self.authority.clone(),
        };
        headers::set_forwarded(
            h,
            Forwarded {
                peer,
                trusted,
                proto,
                host,
            },
        );
        h.insert(header::HOST, host_value);
        if wants_trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        if let Some(protocol) = upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, protocol);
        }
        if let Some(identity) = vouch.identity {
            config.identity.set(h, identity);
        }
        if let Some(token) = vouch.assertion {
            config.identity.set_assertion(h, token);
        }

        // Origin-form: hyper's HTTP/1 client writes the target exactly as given.
        *req.uri_mut() = Uri::from(target);
        // The upstream connection is HTTP/1.1 whatever the client spoke (hyper's HTTP/1
        // encoder would rewrite an h2-marked request, and panics on any other version).
        *req.version_mut() = Version::HTTP_11;
        let (parts, body) = req.into_parts();
        let body = UpstreamBody {
            inner: (!http_body::Body::is_end_stream(&body))
                .then(|| Box::new(ClientBody::new(body, config.listen.body_timeout))),
            config: Arc::clone(&self.config),
        };
        Ok(Box::new(Request::from_parts(parts, body)))
    }

    /// Whether the client is a trusted proxy (`[listen] trusted_proxies`), whose forwarding
    /// headers are kept and extended.
    fn trusts(&self, client: &ClientInfo) -> bool {
        let peer = client.peer.ip();
        self.config
            .listen
            .trusted_proxies
            .iter()
            .any(|net| net.contains(peer))
    }

    /// One pass over a request's names ([`Scan`]): hop-by-hop and identity headers always go,
    /// forwarding headers unless a trusted proxy sent them.
    fn scan(&self, h: &http::HeaderMap, trusted: bool) -> Scan {
        let forwarding = match trusted {
            true => Initials::NONE,
            false => headers::FORWARDING_INITIALS,
        };
        let (initials, claims) = self
            .config
            .identity
            .claims_and(forwarding, |name| !trusted && headers::is_forwarding(name));
        Scan::new(h, initials, claims)
    }

    /// Sort a pool error into the cause the client is answered with.
    fn classify(&self, e: SendError) -> ProxyError {
        match e {
            SendError::Connect(e) if caused_by_timeout(&*e) => {
                ProxyError::UpstreamTimeout(self.up.connect_timeout)
            }
            SendError::Connect(e) => ProxyError::UpstreamConnect(e),
            SendError::Request(e) => client_body::client_fault(e)
                .unwrap_or_else(|e| ProxyError::UpstreamFailed(Box::new(e))),
        }
    }
}

/// What doorman vouches for on a forwarded request, set after every client copy was stripped:
/// the session's identity and its signed assertion (`crate::assertion::for_upstream`); and a
/// cookie of the app's own that must not reach it (express-session's, DESIGN.md §12).
pub struct Vouch<'a> {
    /// The session's identity, if any.
    pub identity: Option<&'a Identity>,
    /// What the request's `Cookie` headers need before they go upstream (doorman's cookies
    /// never do), as the gate's read of them found.
    pub cookies: ForUpstream,
    /// The identity's signed assertion, when configured.
    pub assertion: Option<HeaderValue>,
    /// A cookie name to remove from the request.
    pub drop_cookie: Option<&'a str>,
}

/// Remove what must not reach the client: hop-by-hop headers, doorman's handoff headers
/// (`X-Doorman-*`, DESIGN.md §6, whether or not handoff is configured), and any `Set-Cookie`
/// for doorman's session cookie; and return the handoff those headers carried, read before
/// they go.
///
/// The pass over the names that finds the hop-by-hop and handoff headers also notes whether
/// there is a `Set-Cookie` (in any spelling: a false alarm only takes the long way), so a
/// response without one, most of them, costs no lookup for it; and whether any name has
/// doorman's prefix, so a response without one, nearly all of them, costs no second pass for
/// [`Handoff::read`] (which reads the exact names; the folded prefix this pass compares is
/// the wider test, so nothing it would find is missed).
fn clean_response_headers(h: &mut http::HeaderMap, config: &Config) -> Handoff {
    const ASKED: Initials = Initials::of(&[DOORMAN_PREFIX, "set-cookie"]);
    let mut set_cookie = false;
    let mut prefixed = false;
    let scan = Scan::new(h, ASKED, |name| {
        if name.is("set-cookie") {
            set_cookie = true;
            return false;
        }
        let ours = name.starts_with(DOORMAN_PREFIX);
        prefixed |= ours;
        ours
    });
    let handoff = match prefixed {
        true => Handoff::read(h),
        false => Handoff::default(),
    };
    scan.remove(h);
    if set_cookie {
        cookie::remove_from_response(h, &config.session.cookie_name);
    }
    handoff
}

/// Whether a response is a server-sent event stream (`Content-Type: text/event-stream`, any
/// parameters): long-lived by nature, so it follows its session from its first byte.
/// Compared as bytes: the media type before any `;`, without surrounding whitespace. (A
/// `to_str` and a `split(';')` cost about 370 instructions on every session response.)
fn is_event_stream(h: &http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        let media = v.iter().position(|&b| b == b';').map_or(v, |end| &v[..end]);
        media
            .trim_ascii()
            .eq_ignore_ascii_case(b"text/event-stream")
    })
}

/// The host the client asked for, as a header value: the request target's authority (h2's
/// `:authority`, an absolute-form target), else the `Host` header's own value, cloned (its
/// bytes are shared with hyper's read buffer, not copied). A `Host` that is not visible ASCII
/// counts as none, as `head::request_host` has it.
fn host_value(uri: &Uri, headers: &http::HeaderMap) -> Result<Option<HeaderValue>, ProxyError> {
    match uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| ProxyError::BadRequest("invalid host")),
        None => Ok(headers
            .get(header::HOST)
            .filter(|v| v.to_str().is_ok())
            .cloned()),
    }
}

fn authority_value(authority: &Authority) -> HeaderValue {
    // An `Authority` is always a valid header value.
    HeaderValue::from_str(authority.as_str())
        .unwrap_or_else(|_| HeaderValue::from_static("localhost"))
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

pin_project_lite::pin_project! {
    /// The client's body on its way upstream: data passes untouched; trailer fields are scrubbed
    /// like the head (identity and forwarding headers, doorman's cookie), so a client cannot
    /// deliver an identity claim after the body.
    ///
    /// A request without a body (one whose head said so: no `Content-Length` but 0, no
    /// `Transfer-Encoding`, h2's end of stream on its headers) has none to pass on: `inner` is
    /// `None`, which reads as the empty body, ends at once and says its length is 0, as the
    /// client's would have. A body is boxed: inline, its 112 bytes were in every request
    /// on its way upstream, copied with it and written into the slot of hyper's channel to the
    /// connection; at 256 connections those writes miss the cache (`benches/callgrind.sh`,
    /// `CACHE=1`). Most requests (`GET`s) have none, and one that has pays one allocation.
    pub struct UpstreamBody {
        // `None`: no body (the request's own, or the empty stand-in a bodiless request is sent
        // again with, `pool::Replayable`).
        inner: Option<Box<ClientBody>>,
        config: Arc<Config>,
    }
}

impl pool::Replayable for UpstreamBody {
    fn replay(&self) -> Option<Self> {
        http_body::Body::is_end_stream(self).then(|| UpstreamBody {
            inner: None,
            config: Arc::clone(&self.config),
        })
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = client_body::BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.project();
        let config = &**this.config;
        let Some(inner) = this.inner.as_deref_mut() else {
            return std::task::Poll::Ready(None);
        };
        std::pin::Pin::new(inner).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        config.identity.strip(&mut trailers);
                        headers::remove_forwarding(&mut trailers);
                        trailers.remove(header::COOKIE);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(data) => data,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |inner| inner.size_hint(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stream_is_known_by_its_media_type_with_any_parameters() {
        let with = |value: &'static [u8]| {
            let mut h = http::HeaderMap::new();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_bytes(value).expect("value"),
            );
            is_event_stream(&h)
        };
        for yes in [
            &b"text/event-stream"[..],
            b"Text/Event-Stream",
            b"text/event-stream; charset=utf-8",
            b" text/event-stream ;x=\xe9",
        ] {
            assert!(with(yes), "{yes:?}");
        }
        for no in [
            &b"text/plain"[..],
            b"text/event-streams",
            b"text/event",
            b"x; text/event-stream",
            b"",
        ] {
            assert!(!with(no), "{no:?}");
        }
        assert!(!is_event_stream(&http::HeaderMap::new()));
    }
}
