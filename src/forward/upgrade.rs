//! `Upgrade` (WebSocket and friends) passthrough, limited to what doorman can vouch for.
//!
//! A tunnel is the one place where doorman stops seeing requests: once a connection has
//! switched protocols, its bytes go to the upstream unparsed, unrouted and unstripped. So a
//! switch is allowed only where the tunnel cannot carry requests of its own:
//!
//! * The client must ask for a protocol in `[upstream] upgrades` (default `["websocket"]`).
//!   `h2c` is refused at load whatever the list says: an h2c tunnel is an HTTP/2 connection
//!   whose streams (any path, any `x-auth-user`) reach the app without passing the gate.
//!   Anything else is stripped (`Upgrade`, and `HTTP2-Settings` with the other hop-by-hop
//!   headers) and the request is served as a plain request; the route's decision applies to
//!   it like to any other (an authenticated route needs a session before the upstream sees
//!   the upgrade).
//! * Only an HTTP/1.1 request without a body may switch (RFC 9110 §7.8 lets a body precede
//!   the switch; no protocol doorman tunnels needs it, and a body in front of a tunnel is one
//!   more framing the two sides could read differently). A WebSocket handshake must be a `GET`
//!   with one well-formed `Sec-WebSocket-Key` (RFC 6455 §4.2.1).
//! * The upstream's `101` is relayed only when its `Upgrade` names exactly one protocol the
//!   client offered and doorman forwarded, and, for WebSocket, only with the
//!   `Sec-WebSocket-Accept` that answers the client's key (RFC 6455 §4.2.2). Anything else is
//!   `502` and nothing is tunnelled: the upstream connection is dropped with the response.
//!
//! Until the `101`, an upgrade is an ordinary request, and any other answer is passed back as
//! is. Then bytes are copied both ways until both sides close. A WebSocket's client side is
//! followed frame by frame (`websocket`): the first bytes that are not a masked frame with a
//! defined opcode close the tunnel, so a `101` relayed by a confused app cannot become a raw
//! channel to it. A WebSocket opened with a session follows it (DESIGN.md §11,
//! `session::live`): when the session ends (logout, `sessions revoke`, its absolute expiry,
//! another doorman's logout heard through the Redis cache or the `recheck`, a reload that
//! no longer lets it through), the client's side stops at once and the client gets a Close
//! (1008, `session ended`) at the upstream side's next frame boundary ([`relay_following`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, Instrument};

use super::headers;
use super::websocket::Frames;
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::ProxyError;
use crate::session::live::{Ended, Registration};

static SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// RFC 6455 §1.3: appended to the client's key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An upgrade doorman agreed to forward: the protocols it passes on, and what a `101` must
/// show to be relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The `Upgrade` value sent upstream: the client's offers that are allowed, in its order.
    offered: HeaderValue,
    /// For a WebSocket handshake, the `Sec-WebSocket-Accept` the upstream must answer with.
    websocket_accept: Option<String>,
}

/// The upgrade a client asks for, if doorman will forward it: an HTTP/1.1 request without a
/// body, with `Connection: upgrade` and one `Upgrade` header offering at least one protocol in
/// `allowed` (lower-case names, optionally `name/version`). `None` means the request is served
/// as a plain request; its `Upgrade` header is removed with the other hop-by-hop headers.
///
/// `scan` is of the request's headers: without a `Connection` header, nothing is looked up.
pub fn requested(
    req: &Request<Incoming>,
    scan: &headers::Scan,
    allowed: &[String],
) -> Option<Requested> {
    if allowed.is_empty() || req.version() != http::Version::HTTP_11 || !scan.has_connection() {
        return None;
    }
    let h = req.headers();
    if !headers::has_token(h, header::CONNECTION, "upgrade") {
        return None;
    }
    let mut values = h.get_all(header::UPGRADE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None; // none, or several: not a request doorman can answer for
    };
    if has_body(h) {
        return None;
    }
    let value = value.to_str().ok()?;
    let offers: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|offer| is_allowed(offer, allowed))
        .collect();
    if offers.is_empty() {
        return None;
    }
    let websocket = offers.iter().any(|o| protocol_name(o) == "websocket");
    let websocket_accept = if websocket {
        if req.method() != Method::GET {
            return None;
        }
        Some(accept_for(h)?)
    } else {
        None
    };
    Some(Requested {
        offered: HeaderValue::from_str(&offers.join(", ")).ok()?,
        websocket_accept,
    })
}

impl Requested {
    /// The `Upgrade` header to send upstream.
    pub fn offered(&self) -> &HeaderValue {
        &self.offered
    }

    /// Whether a `101` with these headers answers this request: one protocol, one the client
    /// was offered upstream, and for WebSocket the matching accept value. `Err` says what was
    /// wrong, for the log.
    fn answered_by(&self, h: &http::HeaderMap) -> Result<HeaderValue, &'static str> {
        let mut values = h.get_all(header::UPGRADE).iter();
        let chosen = match (values.next(), values.next()) {
            (Some(v), None) => v,
            (None, _) => return Err("101 without an Upgrade header"),
            _ => return Err("101 with several Upgrade headers"),
        };
        let chosen_str = chosen
            .to_str()
            .map_err(|_| "101 with an unreadable Upgrade header")?
            .trim();
        if chosen_str.contains(',') {
            return Err("101 switching to several protocols");
        }
        let offered = self.offered.to_str().unwrap_or_default();
        let was_offered = offered.split(',').map(str::trim).any(|o| {
            o.eq_ignore_ascii_case(chosen_str) || protocol_name(o).eq_ignore_ascii_case(chosen_str)
        });
        if !was_offered {
            return Err("101 switching to a protocol that was not requested");
        }
        if protocol_name(chosen_str) == "websocket" {
            let Some(expected) = &self.websocket_accept else {
                return Err("101 to websocket that was not requested");
            };
            let mut accepts = h.get_all(&SEC_WEBSOCKET_ACCEPT).iter();
            match (accepts.next(), accepts.next()) {
                (Some(got), None) if got.as_bytes() == expected.as_bytes() => {}
                _ => return Err("101 without the Sec-WebSocket-Accept for the client's key"),
            }
        }
        Ok(chosen.clone())
    }
}

/// The protocol's name, lower-cased, without its version (`WebSocket/13` → `websocket`).
fn protocol_name(offer: &str) -> String {
    offer
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// An offer is allowed when the list names it exactly (`name/version`) or names its protocol.
/// `h2c` never is, whatever the list says (config refuses it; this is the second lock).
fn is_allowed(offer: &str, allowed: &[String]) -> bool {
    let name = protocol_name(offer);
    if name.is_empty() || name == "h2c" || name == "h2" {
        return false;
    }
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(offer) || *a == name)
}

/// Whether the request declares a body: a `Transfer-Encoding`, or a non-zero `Content-Length`.
fn has_body(h: &http::HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0")
}

/// The `Sec-WebSocket-Accept` for the request's one `Sec-WebSocket-Key` (16 bytes, base64),
/// or `None` when the key is missing, repeated or malformed.
fn accept_for(h: &http::HeaderMap) -> Option<String> {
    let mut keys = h.get_all(&SEC_WEBSOCKET_KEY).iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return None;
    };
    let key = key.as_bytes().trim_ascii();
    if STANDARD.decode(key).ok()?.len() != 16 {
        return None;
    }
    Some(websocket_accept(key))
}

/// RFC 6455 §4.2.2: base64(SHA-1(key ++ GUID)).
pub fn websocket_accept(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID);
    STANDARD.encode(ctx.finish())
}

/// Answer the client with the upstream's 101 and join the two connections once both sides
/// have switched, if the 101 answers what was asked; else 502 and no tunnel.
pub fn tunnel<B>(
    requested: &Requested,
    client_side: OnUpgrade,
    mut resp: Response<B>,
    config: &Config,
    follow: Option<Follow>,
) -> Result<Response<Body>, ProxyError> {
    let protocol = requested
        .answered_by(resp.headers())
        .map_err(ProxyError::UpgradeFailed)?;
    let upstream_side = hyper::upgrade::on(&mut resp);
    let websocket = requested.websocket_accept.is_some();
    tokio::spawn(
        async move {
            let (client, upstream) = match tokio::try_join!(client_side, upstream_side) {
                Ok(pair) => pair,
                Err(error) => {
                    debug!(%error, "upgrade did not complete");
                    return;
                }
            };
            let client = TokioIo::new(client);
            let upstream = TokioIo::new(upstream);
            let relayed = match follow {
                Some(follow) if websocket => relay_following(client, upstream, follow).await,
                _ => relay(client, upstream, websocket).await,
            };
            match relayed {
                Ok((up, down)) => debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
                Err(error) => debug!(%error, "tunnel closed with an error"),
            }
        }
        .in_current_span(),
    );
    let (mut parts, _) = resp.into_parts();
    let accept = parts.headers.get(&SEC_WEBSOCKET_ACCEPT).cloned();
    super::clean_response_headers(&mut parts.headers, config);
    let h = &mut parts.headers;
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, protocol);
    if let Some(accept) = accept {
        h.insert(SEC_WEBSOCKET_ACCEPT.clone(), accept);
    }
    Ok(Response::from_parts(parts, body::empty()))
}

/// Copy both ways until both sides have closed, each end's write side shut down when its
/// source ends (as `copy_bidirectional` does). A WebSocket's client side goes through
/// [`Frames`]: at the first byte that is not a valid client frame, both connections are
/// dropped, with nothing of it forwarded. Returns the bytes copied up and down.
async fn relay<C, U>(client: C, upstream: U, websocket: bool) -> std::io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let up = async {
        let copied = if websocket {
            copy_frames(&mut client_read, &mut upstream_write).await
        } else {
            tokio::io::copy(&mut client_read, &mut upstream_write).await
        };
        let _ = upstream_write.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        copied
    };
    // An error on either side (a refused frame among them) ends both at once.
    tokio::try_join!(up, down)
}

/// What a WebSocket tunnel of a session follows (DESIGN.md §11): the session's registration
/// (ended by logout, revoke) and the time left to its absolute expiry.
pub struct Follow {
    /// Ended when the session is.
    pub registration: Registration,
    /// Until the session's absolute expiry.
    pub expires_in: Duration,
    /// The session's user, for the audit line.
    pub user: String,
}

/// The Close frame a tunnel whose session ended sends the browser: code 1008 (policy
/// violation), reason `session ended` (RFC 6455 §5.5.1, §7.4.1).
const CLOSE_SESSION_ENDED: &[u8] = b"\x88\x0f\x03\xf0session ended";

/// How long a tunnel whose session ended waits for the upstream side's next frame boundary
/// before it drops the connection instead of tearing a frame.
const BOUNDARY_WAIT: Duration = Duration::from_secs(1);

/// How long the client may take to close after the Close was sent: the write side is shut
/// and its bytes read and dropped meanwhile, so the Close is not lost to a reset (browsers
/// report 1006, not 1008, when the connection is reset under it).
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// [`relay`] for a WebSocket of a session: the same copying until the session ends; then the
/// client's side stops at once, the upstream's goes on to its next frame boundary (at most
/// [`BOUNDARY_WAIT`]; otherwise the connection is dropped), the client gets
/// [`CLOSE_SESSION_ENDED`] there, the write side is shut and the client drained for at most
/// [`CLOSE_DRAIN`], and the upstream connection is closed.
async fn relay_following<C, U>(
    client: C,
    upstream: U,
    mut follow: Follow,
) -> std::io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, upstream_write) = tokio::io::split(upstream);
    let mut down = Down::new();
    let ended = {
        let mut upstream_write = upstream_write;
        let up = async {
            let copied = copy_frames(&mut client_read, &mut upstream_write).await;
            let _ = upstream_write.shutdown().await;
            copied
        };
        tokio::pin!(up);
        let expiry = tokio::time::sleep(follow.expires_in);
        tokio::pin!(expiry);
        let mut up_done: Option<u64> = None;
        let mut down_done = false;
        loop {
            if let (Some(up), true) = (up_done, down_done) {
                return Ok((up, down.copied));
            }
            tokio::select! {
                why = follow.registration.ended() => break why,
                () = &mut expiry => break Ended::Expired,
                copied = &mut up, if up_done.is_none() => up_done = Some(copied?),
                eof = down.step(&mut upstream_read, &mut client_write), if !down_done => {
                    if eof? {
                        let _ = client_write.shutdown().await;
                        down_done = true;
                    }
                }
            }
        }
        // Leaving this block drops the client→upstream copy: nothing more goes up.
    };
    let session = follow.registration.session_tag();
    crate::audit::long_lived_ended("websocket", &follow.user, &session, ended.as_str());
    let reached = tokio::time::timeout(
        BOUNDARY_WAIT,
        down.copy_to_boundary(&mut upstream_read, &mut client_write),
    )
    .await;
    drop(upstream_read);
    if !matches!(reached, Ok(Ok(()))) {
        // No boundary in time (or a side failed): drop rather than tear a frame.
        return Ok((0, down.copied));
    }
    client_write.write_all(CLOSE_SESSION_ENDED).await?;
    let _ = client_write.shutdown().await;
    // On the heap: an array here would be part of every tunnel's task state from its start
    // (4 KB of the 5 KB each WebSocket's task took), though only a revoked session's tunnel
    // ever gets here.
    let mut sink = vec![0u8; 4096];
    let _ = tokio::time::timeout(CLOSE_DRAIN, async {
        while client_read.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    Ok((0, down.copied))
}

/// The upstream→client side of a session's WebSocket, copied so that the frames reader only
/// ever counts bytes the client was sent: a copy step can be dropped at any await (a read,
/// or one `write`) without losing track of where the client's frames end.
struct Down {
    buf: Growing,
    /// `buf[pos..end]`: read from the upstream, not yet written to the client.
    pos: usize,
    end: usize,
    frames: Frames,
    copied: u64,
}

impl Down {
    fn new() -> Down {
        Down {
            buf: Growing::new(),
            pos: 0,
            end: 0,
            frames: Frames::boundaries(),
            copied: 0,
        }
    }

    /// One read or one write; `true` at the upstream's end.
    async fn step<R, W>(&mut self, from: &mut R, to: &mut W) -> std::io::Result<bool>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.pos == self.end {
            let n = self.buf.read_from(from).await?;
            (self.pos, self.end) = (0, n);
            return Ok(n == 0);
        }
        self.write(to, self.end).await?;
        Ok(false)
    }

    /// Write `buf[pos..upto]` with one `write` (cancel safe), counting what was written.
    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        to: &mut W,
        upto: usize,
    ) -> std::io::Result<()> {
        let n = to.write(&self.buf.0[self.pos..upto]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // A boundaries reader refuses nothing.
        let _ = self.frames.feed(&self.buf.0[self.pos..self.pos + n]);
        self.pos += n;
        self.copied += n as u64;
        Ok(())
    }

    /// Copy on until what the client was sent ends between two frames; what was read past
    /// that point is dropped. `Err` when the upstream ends inside a frame.
    async fn copy_to_boundary<R, W>(&mut self, from: &mut R, to: &mut W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.frames.at_boundary() {
                return Ok(());
            }
            if self.pos == self.end {
                let n = self.buf.read_from(from).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                (self.pos, self.end) = (0, n);
                continue;
            }
            let upto = match self.frames.to_boundary(&self.buf.0[self.pos..self.end]) {
                Some(k) => self.pos + k,
                None => self.end,
            };
            self.write(to, upto).await?;
        }
    }
}

/// A tunnel's copy buffer: it starts at [`Growing::START`] and doubles, up to
/// [`Growing::MAX`], only when a read fills it. Ten thousand idle WebSockets (dashboards,
/// chats: small messages) then hold 2 KiB per direction instead of 16; a busy one grows to
/// copy in large reads.
struct Growing(Vec<u8>);

impl Growing {
    const START: usize = 2 * 1024;
    const MAX: usize = 16 * 1024;

    fn new() -> Growing {
        Growing(vec![0u8; Growing::START])
    }

    /// Read once into the buffer's start; `0` at the end. A read that filled it makes it
    /// grow (keeping what was read) for the next one.
    async fn read_from<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> std::io::Result<usize> {
        let n = from.read(&mut self.0).await?;
        if n == self.0.len() && n < Growing::MAX {
            self.0.resize(n * 2, 0);
        }
        Ok(n)
    }
}

/// `tokio::io::copy` of a WebSocket's client side, each chunk checked by [`Frames`] before
/// it is written on.
async fn copy_frames<R, W>(from: &mut R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = Frames::default();
    let mut buf = Growing::new();
    let mut copied = 0u64;
    loop {
        let n = buf.read_from(from).await?;
        if n == 0 {
            return Ok(copied);
        }
        frames.feed(&buf.0[..n]).map_err(|e| {
            debug!(error = %e, "WebSocket tunnel closed: the client sent something that is not a frame");
            std::io::Error::new(std::io::ErrorKind::InvalidData, e)
        })?;
        to.write_all(&buf.0[..n]).await?;
        copied += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_is_the_rfc_6455_example() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_allowed_offers_pass_and_h2c_never() {
        let allowed = vec!["websocket".to_string(), "x-chat/2".to_string()];
        assert!(is_allowed("websocket", &allowed));
        assert!(is_allowed("WebSocket", &allowed));
        assert!(is_allowed("websocket/13", &allowed));
        assert!(is_allowed("x-chat/2", &allowed));
        assert!(!is_allowed("x-chat/3", &allowed));
        assert!(!is_allowed("h2c", &allowed));
        let everything = vec!["h2c".to_string(), "h2".to_string()];
        assert!(!is_allowed("h2c", &everything));
        assert!(!is_allowed("H2C", &everything));
        assert!(!is_allowed("h2", &everything));
        assert!(!is_allowed("", &allowed));
    }

    fn req(lines: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in lines {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_101_must_answer_the_offer_and_the_key() {
        let asked = Requested {
            offered: HeaderValue::from_static("websocket"),
            websocket_accept: Some(websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ==")),
        };
        let good = [
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ];
        assert!(asked.answered_by(&req(&good)).is_ok());
        for bad in [
            vec![("upgrade", "websocket")],
            vec![("upgrade", "websocket"), ("sec-websocket-accept", "AAAA")],
            vec![("upgrade", "h2c"), good[1]],
            vec![("upgrade", "websocket, h2c"), good[1]],
            vec![good[1]],
            vec![("upgrade", "websocket"), ("upgrade", "websocket"), good[1]],
            vec![good[0], good[1], good[1]],
        ] {
            assert!(asked.answered_by(&req(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_body_rules_an_upgrade_out() {
        assert!(!has_body(&req(&[])));
        assert!(!has_body(&req(&[("content-length", "0")])));
        assert!(has_body(&req(&[("content-length", "5")])));
        assert!(has_body(&req(&[("transfer-encoding", "chunked")])));
    }
}
