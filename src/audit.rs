//! Audit events: who logged in (or failed to, or out) from where, on the `doorman::audit`
//! target, one event per outcome, so a security team can filter them from the request noise
//! (`RUST_LOG=warn,doorman::audit=info`) or route them to their own sink.
//!
//! Every event has `event` (what happened), `user` (when known), `peer` (the TCP peer, or
//! `control-socket` / `cli` for a revoke) and `client` (the browser's address: the peer, or
//! behind a trusted gateway the address its `X-Forwarded-For` gives); failures add `reason`. Session ids never
//! appear: `session` is the short tag of the store key.
//!
//! | `event` | when | extra fields |
//! |---|---|---|
//! | `login` | password login succeeded | `session` |
//! | `login_failure` | password login refused | `reason`: `bad_credentials`, `throttled`, `cross_site` |
//! | `logout` | `POST /_doorman/logout` ended a session | `session` |
//! | `logout_refused` | a cross-site logout | `reason` = `cross_site` |
//! | `handoff_login` | an upstream handed a login over | `session` |
//! | `handoff_logout` | an upstream ended the session | `session` |
//! | `revoke` | `doorman sessions revoke` | `sessions` (how many), `peer` = `control-socket` or `cli` |

use std::net::{IpAddr, SocketAddr};

use tracing::info;

/// Where a request came from: the TCP peer and the client behind it (the same address unless
/// the peer is a trusted gateway).
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client's address.
    pub client: IpAddr,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Unknown user or wrong password.
    BadCredentials,
    /// Over the failure limit: refused before any check.
    Throttled,
    /// A cross-site post: the form was not read.
    CrossSite,
}

impl LoginFailure {
    /// The reason as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginFailure::BadCredentials => "bad_credentials",
            LoginFailure::Throttled => "throttled",
            LoginFailure::CrossSite => "cross_site",
        }
    }
}

/// A successful login with the password form.
pub fn login(from: Source, user: &str, session: &str) {
    info!(target: "doorman::audit", event = "login", user, peer = %from.peer, client = %from.client, session, "login succeeded");
}

/// `user` is `None` when the attempt was refused before its form was read (cross-site).
pub fn login_failure(from: Source, user: Option<&str>, reason: LoginFailure) {
    info!(
        target: "doorman::audit", event = "login_failure", user, peer = %from.peer, client = %from.client,
        reason = reason.as_str(), "login refused"
    );
}

/// A sign-in with the OpenID Connect provider (DESIGN.md §10).
pub fn oidc_login(from: Source, user: &str, session: &str) {
    info!(
        target: "doorman::audit", event = "login", method = "oidc", user, peer = %from.peer,
        client = %from.client, session, "login succeeded"
    );
}

/// An OpenID Connect sign-in refused: `reason` is the metric's label (`wrong_nonce`,
/// `replayed_state`, ...), `detail` a line for the operator (never a token or a secret);
/// `user` once the ID token named one.
pub fn oidc_failure(from: Source, user: Option<&str>, reason: &str, detail: &str) {
    info!(
        target: "doorman::audit", event = "login_failure", method = "oidc", user,
        peer = %from.peer, client = %from.client, reason, detail, "login refused"
    );
}

/// A long-lived exchange (`kind`: a WebSocket or a stream) ended because its session did.
pub fn long_lived_ended(kind: &str, user: &str, session: &str, reason: &str) {
    info!(
        target: "doorman::audit", event = "long_lived_ended", kind, user, session, reason,
        "long-lived exchange ended: its session ended"
    );
}

/// A logout (`user` is unknown when the session had already ended).
pub fn logout(from: Source, user: Option<&str>, session: &str) {
    info!(target: "doorman::audit", event = "logout", user, peer = %from.peer, client = %from.client, session, "logout");
}

/// A cross-site logout, refused.
pub fn logout_refused(from: Source) {
    info!(
        target: "doorman::audit", event = "logout_refused", peer = %from.peer, client = %from.client,
        reason = "cross_site", "logout refused"
    );
}

/// A login the upstream handed over (`X-Doorman-Login`).
pub fn handoff_login(from: Source, user: &str, session: &str) {
    info!(target: "doorman::audit", event = "handoff_login", user, peer = %from.peer, client = %from.client, session, "handoff login");
}

/// A session ended by the upstream (`X-Doorman-Logout`, or the rotation before a handoff login).
pub fn handoff_logout(from: Source, user: Option<&str>, session: &str) {
    info!(target: "doorman::audit", event = "handoff_logout", user, peer = %from.peer, client = %from.client, session, "handoff logout");
}

/// `via`: `control-socket` (a running doorman did it) or `cli` (the command did it itself).
pub fn revoke(via: &str, user: &str, sessions: usize) {
    info!(target: "doorman::audit", event = "revoke", user, peer = via, sessions, "sessions revoked");
}
