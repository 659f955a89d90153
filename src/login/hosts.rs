//! Signing in once for several hosts, with a cookie per host (DESIGN.md §8, Pomerium's model).
//!
//! On when `[forward_auth]` is configured and `[login] public_origin` names the login host.
//! Cookies stay host-only everywhere: a `Domain` cookie would trust every sibling host with
//! every session (a sibling could read, plant or shadow it). Instead:
//!
//! 1. A host without a session sends the browser to the login host's login page, with the
//!    original absolute URL as `next` (forward-auth's redirect does this).
//! 2. The login host, once it has a session (already, or after the form), answers with a
//!    redirect to `https://<host><prefix>/callback?code=…`: a **one-time code**, 32 random
//!    bytes, stored like a session under its SHA-256 (never in the clear), bound to that one
//!    host, valid for [`CODE_TTL`], and usable once. The code's record remembers where to go
//!    next, so nothing in the callback URL but the code can be tampered with.
//! 3. That host's callback takes the code — deleting it first, so of two racing uses exactly
//!    one wins and a code shown to the wrong host is burnt, not left for a retry — checks
//!    the host it was issued for and that the login's session still lives, and makes the host
//!    its own session: same user, groups and origin, never outliving the login's absolute
//!    expiry, in the login's *family*.
//! 4. A logout on any host deletes the whole family (`SessionStore::delete_family`): every
//!    session made from that login, on every host, and any code still unused.
//!
//! A code is a store record of origin [`Origin::Code`]: presented as a cookie it is never a
//! session, and a doorman build that predates codes reads it as unreadable.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::access::Shared;
use crate::audit;
use crate::body::Body;
use crate::config::Config;
use crate::error::ProxyError;
use crate::exchange::{CookieAction, Exchange};
use crate::login::form::Form;
use crate::session::{CodeFor, Link, Origin, Record, SessionId, SessionKey, SessionStore};

/// How long a one-time code is valid.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// Another host an absolute `next` names, where the browser has no session yet.
#[derive(Debug)]
pub struct OtherHost<'a> {
    /// `https` or `http` (as `next` says).
    scheme: &'a str,
    /// The authority as written in `next` (host and port).
    authority: &'a str,
    /// The host, normalised.
    host: String,
}

/// Whether signing in across hosts is on: `[forward_auth]` with `[login] public_origin`.
pub fn enabled(config: &Config) -> bool {
    config.forward_auth.is_some() && config.login.public_origin.is_some()
}

/// The host `next` (a URL [`super::next::safe_next`] already kept) names, when it is an
/// absolute URL on another host than the login host and signing in across hosts is on.
pub fn other_host<'a>(config: &Config, next: &'a str) -> Option<OtherHost<'a>> {
    if !enabled(config) {
        return None;
    }
    let (scheme, authority) = super::next::absolute_parts(next)?;
    let host = crate::host::normalise(authority)?;
    let login_host = config.login.public_host.as_deref()?;
    (host != login_host).then_some(OtherHost {
        scheme,
        authority,
        host,
    })
}

/// Issue a one-time code for `to` from the login's session (`key`, `record`) and return the
/// URL of `to`'s callback that redeems it.
pub async fn issue(
    shared: &Shared,
    key: &SessionKey,
    record: &Record,
    to: &OtherHost<'_>,
    next: &str,
) -> Result<String, ProxyError> {
    let now = shared.clock.now_millis();
    let ttl = u64::try_from(CODE_TTL.as_millis()).unwrap_or(u64::MAX);
    let code = SessionId::generate()?;
    let pending = Record {
        origin: Origin::Code,
        absolute_expiry: now.saturating_add(ttl).min(record.absolute_expiry),
        last_seen: now,
        link: Some(Box::new(Link {
            family: record.family(key),
            code: Some(CodeFor {
                host: to.host.clone(),
                next: next.to_string(),
                origin: record.origin,
                session_expiry: record.absolute_expiry,
            }),
        })),
        ..record.clone()
    };
    shared.store.create(&code.key(), &pending).await?;
    Ok(format!(
        "{}://{}{}/callback?code={}",
        to.scheme,
        to.authority,
        shared.config.login.prefix,
        code.to_cookie_value()
    ))
}

/// `GET <prefix>/callback?code=…`: redeem a one-time code for this host's own session.
pub async fn callback(
    shared: &Shared,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    // Served with [forward_auth] (DESIGN.md §4): codes exist only where `enabled` issues them,
    // and any other code is refused below like a used one.
    if shared.config.forward_auth.is_none() {
        return Err(ProxyError::NotFound);
    }
    let code = Form::query(req.uri().query())
        .get("code")
        .and_then(SessionId::parse)
        .ok_or(ProxyError::BadRequest("callback without a usable code"))?;
    let store = &shared.store;
    let now = shared.clock.now_millis();
    let code_key = code.key();
    // Unknown, used or expired: refused.
    let record = store
        .lookup(&code_key, now)
        .await?
        .ok_or(ProxyError::Forbidden)?;
    let (Origin::Code, Some(link)) = (record.origin, &record.link) else {
        // A session id is not a code (and must not be deleted by presenting it as one).
        return Err(ProxyError::Forbidden);
    };
    let Some(code_for) = &link.code else {
        return Err(ProxyError::Forbidden);
    };
    if !store.delete(&code_key).await? {
        return Err(ProxyError::Forbidden); // another use took it first
    }
    let host = ex
        .client
        .browser_host(req.uri(), req.headers())
        .and_then(crate::host::normalise);
    if host.as_deref() != Some(code_for.host.as_str()) {
        return Err(ProxyError::Forbidden);
    }
    // The login the code came from must still be signed in.
    let family = SessionKey::from_hex(&link.family).ok_or(ProxyError::Forbidden)?;
    match store.lookup(&family, now).await? {
        Some(login) if login.origin != Origin::Code && login.user == record.user => {}
        _ => return Err(ProxyError::Forbidden),
    }
    if let Some(old) = ex.presented_key() {
        store.delete(&old).await?;
    }
    let id = SessionId::generate()?;
    let key = id.key();
    let absolute =
        u64::try_from(shared.config.session.timeouts.absolute.as_millis()).unwrap_or(u64::MAX);
    let session = Record {
        origin: code_for.origin,
        absolute_expiry: code_for.session_expiry.min(now.saturating_add(absolute)),
        last_seen: now,
        link: Some(Box::new(Link {
            family: link.family.clone(),
            code: None,
        })),
        ..record.clone()
    };
    store.create(&key, &session).await?;
    ex.log_session(Some(&session.user), &key);
    audit::login(ex.client.source(), &session.user, &key.tag());
    ex.cookie = CookieAction::Set(id);
    // The next URL was validated (visible ASCII) when the code was issued.
    Ok(super::see_other(&code_for.next))
}
