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

use http::{HeaderName, HeaderValue, Request};
use tracing::warn;

use crate::access::Shared;
use crate::audit;
use crate::config::Config;
use crate::exchange::{CookieAction, Exchange};
use crate::identity::{check_name, DOORMAN_PREFIX};
use crate::session::{Origin, Record, SessionId, SessionStore};

use super::origin::is_cross_site;

/// Doorman's handoff headers (DESIGN.md §6) as the upstream sent them. They are removed from
/// every response whatever is done with them; the gate decides whether to honour them.
#[derive(Debug, Default)]
pub struct Handoff {
    /// `X-Doorman-Login`: the user to log in.
    pub login: Option<HeaderValue>,
    /// `X-Doorman-Groups`: comma-separated groups for that user.
    pub groups: Option<HeaderValue>,
    /// `X-Doorman-Logout: 1`.
    pub logout: bool,
}

static X_DOORMAN_LOGIN: HeaderName = HeaderName::from_static("x-doorman-login");
static X_DOORMAN_GROUPS: HeaderName = HeaderName::from_static("x-doorman-groups");
static X_DOORMAN_LOGOUT: HeaderName = HeaderName::from_static("x-doorman-logout");

impl Handoff {
    /// Nothing to act on: no login, no logout (`X-Doorman-Groups` alone means nothing).
    pub fn is_empty(&self) -> bool {
        self.login.is_none() && !self.logout
    }

    /// Read the handoff headers of an upstream response (the caller removes them). The
    /// forwarding path calls it only when its own pass over the names saw doorman's prefix
    /// (`forward::clean_response_headers`); called alone, it makes that pass itself.
    pub fn read(h: &http::HeaderMap) -> Handoff {
        // Nearly every response has none: one pass over its few names instead of three lookups.
        if !h
            .keys()
            .any(|name| name.as_str().starts_with(DOORMAN_PREFIX))
        {
            return Handoff::default();
        }
        // Exactly one of each, or none: two logins in one response are ambiguous, and two
        // groups headers could smuggle a group past a check made on one of them.
        let only = |name: &HeaderName| {
            let mut values = h.get_all(name).iter();
            match (values.next(), values.next()) {
                (Some(v), None) => Some(v.clone()),
                _ => None,
            }
        };
        let login = only(&X_DOORMAN_LOGIN);
        let groups_ok = h.get_all(&X_DOORMAN_GROUPS).iter().count() <= 1;
        Handoff {
            login: login.filter(|_| groups_ok),
            groups: only(&X_DOORMAN_GROUPS),
            logout: h
                .get(&X_DOORMAN_LOGOUT)
                .is_some_and(|v| v.as_bytes().trim_ascii() == b"1"),
        }
    }

    /// The user `X-Doorman-Login` names, trimmed, when it is a name identity headers can carry
    /// safely ([`check_name`]); `None` without the header or for any other value.
    pub fn user(&self) -> Option<&str> {
        self.login
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|u| check_name(u).is_ok())
    }

    /// The groups `X-Doorman-Groups` lists (comma-separated, each trimmed, empty ones skipped),
    /// split into those `allowed` (`handoff_groups`) grants and those it drops, each in the
    /// header's order.
    pub fn groups(&self, allowed: &[String]) -> (Vec<String>, Vec<&str>) {
        let mut granted = Vec::new();
        let mut dropped = Vec::new();
        let listed = self
            .groups
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty());
        for g in listed {
            if allowed.iter().any(|a| a == g) {
                granted.push(g.to_string());
            } else {
                dropped.push(g);
            }
        }
        (granted, dropped)
    }
}

/// What the request allows a handoff in its response to do, decided before forwarding (the
/// request is consumed by then).
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    enabled: bool,
    on_handoff_path: bool,
    cross_site: bool,
}

/// Work out what a handoff on the response to `req` (for the exchange's normalised path) may
/// do.
pub fn permit<B>(config: &Config, ex: &Exchange, req: &Request<B>) -> Permit {
    let paths = &config.login.handoff_paths;
    if paths.is_empty() {
        return Permit {
            enabled: false,
            on_handoff_path: false,
            cross_site: true,
        };
    }
    let path = ex.path.as_deref().unwrap_or_default();
    let case_sensitive = config.routes.case_sensitive();
    let on_handoff_path = paths.iter().any(|p| {
        if case_sensitive {
            p == path
        } else {
            p.eq_ignore_ascii_case(path)
        }
    });
    Permit {
        enabled: true,
        on_handoff_path,
        cross_site: is_cross_site(config, &ex.client, req),
    }
}

/// Act on the handoff headers of one upstream response: end the session the request presented
/// (a logout, or the rotation before a login) and start the handed-off user's.
pub async fn apply(shared: &Shared, ex: &mut Exchange, handoff: Handoff, permit: Permit) {
    if handoff.is_empty() {
        return;
    }
    let peer = ex.client.peer;
    if !permit.enabled {
        warn!(peer = %peer, "upstream sent X-Doorman-* handoff headers, but handoff is off: ignored");
        return;
    }
    if permit.cross_site {
        warn!(peer = %peer, "handoff on a cross-site request refused");
        return;
    }
    let store = &shared.store;
    if handoff.logout || handoff.login.is_some() {
        // Logout, and rotation before a handoff login: the presented session ends either way.
        if let Some(key) = ex.presented_key() {
            if let Err(error) = store.delete(&key).await {
                shared.metrics.store_error();
                warn!(peer = %peer, %error, "handoff could not end the presented session");
                return;
            }
            let user = ex.identity().map(|who| who.user());
            audit::handoff_logout(ex.client.source(), user, &key.tag());
            ex.cookie = CookieAction::Expire;
        }
    }
    if handoff.login.is_none() {
        return;
    }
    if !permit.on_handoff_path {
        warn!(peer = %peer, "X-Doorman-Login on a path not in handoff_paths: ignored");
        return;
    }
    let Some(user) = handoff.user() else {
        warn!(peer = %peer, "X-Doorman-Login with an unsafe user name: ignored");
        return;
    };
    let (groups, dropped) = handoff.groups(&shared.config.login.handoff_groups);
    for group in dropped {
        warn!(peer = %peer, user, group, "handoff group not in handoff_groups: dropped");
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
        shared.clock.now_millis(),
        &shared.config.session.timeouts,
    );
    let key = id.key();
    match store.create(&key, &record).await {
        Ok(()) => {
            audit::handoff_login(ex.client.source(), user, &key.tag());
            ex.log_session(Some(user), &key);
            ex.cookie = CookieAction::Set(id);
        }
        Err(error) => {
            shared.metrics.store_error();
            warn!(peer = %peer, user, %error, "handoff login failed: session store")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(headers: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in headers {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn exactly_one_login_and_at_most_one_groups_header_count() {
        let one = Handoff::read(&response(&[("x-doorman-login", " alice ")]));
        assert_eq!(one.user(), Some("alice"));
        assert!(!one.logout);
        let two = Handoff::read(&response(&[
            ("x-doorman-login", "alice"),
            ("x-doorman-login", "bob"),
        ]));
        assert!(two.login.is_none() && two.is_empty());
        let smuggled = Handoff::read(&response(&[
            ("x-doorman-login", "alice"),
            ("x-doorman-groups", "staff"),
            ("x-doorman-groups", "admin"),
        ]));
        assert!(smuggled.login.is_none() && smuggled.groups.is_none());
        let logout = Handoff::read(&response(&[("x-doorman-logout", " 1 ")]));
        assert!(logout.logout && !logout.is_empty());
        assert!(!Handoff::read(&response(&[("x-doorman-logout", "yes")])).logout);
        assert!(Handoff::read(&response(&[("x-other", "1")])).is_empty());
    }

    #[test]
    fn unsafe_user_names_are_refused() {
        for name in ["", "  ", "a,b", "caf\u{e9}", "a\tb", &"x".repeat(257)] {
            let mut h = http::HeaderMap::new();
            h.insert(
                &X_DOORMAN_LOGIN,
                HeaderValue::from_bytes(name.as_bytes()).unwrap(),
            );
            assert_eq!(Handoff::read(&h).user(), None, "{name:?}");
        }
    }

    #[test]
    fn only_allowed_groups_are_granted() {
        let h = Handoff::read(&response(&[
            ("x-doorman-login", "carol"),
            ("x-doorman-groups", " staff, admin,,staff2 ,staff"),
        ]));
        let allowed = ["staff".to_string()];
        assert_eq!(
            h.groups(&allowed),
            (
                vec!["staff".to_string(), "staff".to_string()],
                vec!["admin", "staff2"]
            )
        );
        assert_eq!(Handoff::default().groups(&allowed), (vec![], vec![]));
    }
}
