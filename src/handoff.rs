//! Login handoff (DESIGN.md §6): an existing app that keeps its own login form tells doorman who
//! logged in, with response headers doorman consumes.
//!
//! An upstream response to a request on one of `[login] handoff_paths` carrying
//! `X-Doorman-Login: <user>` (and optionally `X-Doorman-Groups: a,b`) makes doorman create a
//! fresh session for that user and set the cookie on that very response; `X-Doorman-Logout: 1`
//! on any response destroys the session the request presented. Handoff is off unless
//! `handoff_paths` is set, and the headers are removed from every response either way (and from
//! every request, as identity headers).
//!
//! The rules keep an app bug from becoming a log-in-as-anyone hole: an endpoint that reflects a
//! query parameter into a response header is only dangerous on a handoff path; a login is only
//! honoured for requests that were not cross-site (so another site cannot make a browser log in
//! as the attacker); the user name must be a safe header value; and the groups a handoff may
//! grant are limited to `handoff_groups`, others are dropped.

use http::Request;
use tracing::warn;

use crate::access::Seen;
use crate::audit;
use crate::config::Config;
use crate::forward::{ClientInfo, Handoff};
use crate::gate::{App, CookieAction};
use crate::identity::check_name;
use crate::login::{is_cross_site, public_origin};
use crate::session::{now_millis, Origin, Record, SessionId, SessionKey, SessionStore};

/// What the request allows a handoff in its response to do, decided before forwarding (the
/// request is consumed by then).
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    enabled: bool,
    on_handoff_path: bool,
    cross_site: bool,
}

/// Work out what a handoff on the response to `req` (for normalised `path`) may do.
pub fn applies<B>(config: &Config, client: &ClientInfo, req: &Request<B>, path: &str) -> Permit {
    let paths = &config.login.handoff_paths;
    if paths.is_empty() {
        return Permit {
            enabled: false,
            on_handoff_path: false,
            cross_site: true,
        };
    }
    let case_sensitive = config.routes.case_sensitive();
    let on_handoff_path = paths.iter().any(|p| {
        if case_sensitive {
            p == path
        } else {
            p.eq_ignore_ascii_case(path)
        }
    });
    let cross_site = is_cross_site(req.headers(), public_origin(config, client, req).as_deref());
    Permit {
        enabled: true,
        on_handoff_path,
        cross_site,
    }
}

/// Act on the handoff headers of one upstream response. `user` is who the presented session
/// belongs to, when it is valid (for the audit trail).
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    app: &App,
    client: &ClientInfo,
    handoff: Handoff,
    permit: Permit,
    presented: Option<SessionKey>,
    user: Option<&str>,
    cookie: &mut CookieAction,
    seen: &mut Seen,
) {
    if handoff.is_empty() {
        return;
    }
    if !permit.enabled {
        warn!(peer = %client.peer, "upstream sent X-Doorman-* handoff headers, but handoff is off: ignored");
        return;
    }
    if permit.cross_site {
        warn!(peer = %client.peer, "handoff on a cross-site request refused");
        return;
    }
    let store = &app.store;
    if handoff.logout || handoff.login.is_some() {
        // Logout, and rotation before a handoff login: the presented session ends either way.
        if let Some(key) = presented {
            if let Err(error) = store.delete(&key).await {
                app.metrics.store_error();
                warn!(peer = %client.peer, %error, "handoff could not end the presented session");
                return;
            }
            audit::handoff_logout(client.peer, user, &key.tag());
            *cookie = CookieAction::Expire;
        }
    }
    let Some(login) = handoff.login else { return };
    if !permit.on_handoff_path {
        warn!(peer = %client.peer, "X-Doorman-Login on a path not in handoff_paths: ignored");
        return;
    }
    let Some(user) = login
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|u| check_name(u).is_ok())
    else {
        warn!(peer = %client.peer, "X-Doorman-Login with an unsafe user name: ignored");
        return;
    };
    let allowed = &app.config.login.handoff_groups;
    let mut groups = Vec::new();
    for g in handoff
        .groups
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let g = g.trim();
        if g.is_empty() {
            continue;
        }
        if allowed.iter().any(|a| a == g) {
            groups.push(g.to_string());
        } else {
            warn!(peer = %client.peer, user, group = g, "handoff group not in handoff_groups: dropped");
        }
    }
    let id = match SessionId::generate() {
        Ok(id) => id,
        Err(error) => {
            warn!(%error, "handoff login failed");
            return;
        }
    };
    let record = Record::new(
        user.to_string(),
        groups,
        Origin::Handoff,
        now_millis(),
        &app.config.session.timeouts,
    );
    match store.create(&id.key(), &record).await {
        Ok(()) => {
            let tag = id.key().tag();
            audit::handoff_login(client.peer, user, &tag);
            seen.user = Some(user.to_string());
            seen.session = Some(tag);
            *cookie = CookieAction::Set(id);
        }
        Err(error) => {
            app.metrics.store_error();
            warn!(peer = %client.peer, user, %error, "handoff login failed: session store")
        }
    }
}
