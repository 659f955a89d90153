//! The signed identity assertion of a request's session (DESIGN.md §9), as a header value.
//!
//! Two callers: the gate, for every request it forwards with a valid session
//! ([`for_upstream`]), and the forward-auth endpoints, for their `200`s ([`header_value`],
//! with the host the request was validated for). The tokens themselves (claims, signing, the
//! cache that keeps signing off most requests) are [`crate::jws`]'s.

use http::HeaderValue;

use crate::access::Shared;
use crate::exchange::{Exchange, SessionState};
use crate::jws::Session;

/// The assertion for the session on `ex`, for a request validated for `host`; `None` when no
/// assertion is configured or the request has no valid session (look the session up first:
/// `access::lookup`). The header's name is `config.identity.assertion()`'s `header()`.
///
/// Forward-auth calls this for a `200` with the original request's host as validated by
/// `[forward_auth] allowed_hosts` (lower case, without the port); the token's audience is the
/// configured `audience` when there is one, else that host. Never pass a host that was not
/// validated: the audience is what keeps one app's token from being accepted by another. An
/// anonymous `200` sets the header to the empty value instead (DESIGN.md §8).
pub fn header_value(shared: &Shared, ex: &Exchange, host: &str) -> Option<HeaderValue> {
    let assertion = shared.config.identity.assertion()?;
    let audience = assertion.audience_for(host);
    let SessionState::Valid {
        key,
        identity,
        record,
    } = &ex.session
    else {
        return None;
    };
    let session = Session {
        key: &key.0,
        created_ms: record.created,
        user: identity.user(),
        groups: identity.groups(),
    };
    assertion.header_value(&session, audience, shared.clock.now_millis() / 1000)
}

/// The assertion a request doorman forwards itself carries: [`header_value`] for the
/// configured audience; else, with `[forward_auth]`, the request's host when `allowed_hosts`
/// covers it (`host` gives it, normalised: asked only then, since it allocates); else the host
/// of `[login] public_origin`. A Host no list validates is never the audience.
pub fn for_upstream(
    shared: &Shared,
    ex: &Exchange,
    host: impl FnOnce() -> Option<String>,
) -> Option<HeaderValue> {
    let assertion = shared.config.identity.assertion()?;
    ex.identity()?;
    if let (None, Some(fa)) = (assertion.audience(), &shared.config.forward_auth) {
        if let Some(host) = host().filter(|h| fa.allows_host(h)) {
            return header_value(shared, ex, &host);
        }
    }
    let audience = assertion.upstream_audience()?;
    header_value(shared, ex, audience)
}
