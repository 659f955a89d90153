//! The handoff header reader, `login::handoff::Handoff` (src/login/handoff.rs): what doorman
//! takes from an upstream response's `X-Doorman-*` headers (DESIGN.md §6).
//!
//! Input: response headers, one `name: value` per line (lines a header cannot carry are
//! skipped). `handoff_groups` is `["staff", "ops"]`. Asserted:
//!
//! * `Handoff::read` takes `X-Doorman-Login` only when the response has exactly one of it and
//!   at most one `X-Doorman-Groups`, takes `X-Doorman-Groups` only when there is exactly one,
//!   and sees a logout only when the response has an `X-Doorman-Logout` whose value trims to
//!   `1`; a response without `x-doorman-` headers holds nothing to act on;
//! * `Handoff::user` is the login value, trimmed, exactly when that is a safe user name: 1 to
//!   256 bytes of printable ASCII, no comma, no leading or trailing space (so it can be carried
//!   in an identity header and a comma-separated list);
//! * `Handoff::groups` splits the groups value on commas, trims each and skips empty ones,
//!   keeps their order, and grants exactly those in `handoff_groups`, dropping the rest.

#![no_main]

use doorman::fuzzing::Handoff;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const ALLOWED: [&str; 2] = ["staff", "ops"];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let handoff = Handoff::read(&headers);
    let values = |name: &str| headers.get_all(name).iter().collect::<Vec<_>>();
    let (logins, groups, logouts) = (
        values("x-doorman-login"),
        values("x-doorman-groups"),
        values("x-doorman-logout"),
    );

    let want_login = (logins.len() == 1 && groups.len() <= 1).then(|| logins[0].clone());
    assert_eq!(handoff.login, want_login, "X-Doorman-Login");
    let want_groups = (groups.len() == 1).then(|| groups[0].clone());
    assert_eq!(handoff.groups, want_groups, "X-Doorman-Groups");
    if handoff.logout {
        assert!(
            logouts.iter().any(|v| v.as_bytes().trim_ascii() == b"1"),
            "a logout from {logouts:?}"
        );
    }
    if !headers.keys().any(|n| n.as_str().starts_with("x-doorman-")) {
        assert!(handoff.is_empty() && handoff.groups.is_none());
    }
    assert_eq!(
        handoff.is_empty(),
        handoff.login.is_none() && !handoff.logout
    );

    let want_user = handoff
        .login
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| is_safe_name(u));
    assert_eq!(handoff.user(), want_user, "user of {:?}", handoff.login);
    if let Some(user) = handoff.user() {
        assert!(HeaderValue::from_str(user).is_ok() && !user.contains(','));
    }

    let allowed: Vec<String> = ALLOWED.iter().map(|g| g.to_string()).collect();
    let (granted, dropped) = handoff.groups(&allowed);
    let listed: Vec<&str> = handoff
        .groups
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    let want_granted: Vec<String> = listed
        .iter()
        .filter(|g| ALLOWED.contains(g))
        .map(|g| g.to_string())
        .collect();
    let want_dropped: Vec<&str> = listed
        .iter()
        .copied()
        .filter(|g| !ALLOWED.contains(g))
        .collect();
    assert_eq!(granted, want_granted, "granted from {:?}", handoff.groups);
    assert_eq!(dropped, want_dropped, "dropped from {:?}", handoff.groups);
});

/// A name identity headers can carry, as DESIGN.md §6 asks of a handoff's user.
fn is_safe_name(u: &str) -> bool {
    (1..=256).contains(&u.len())
        && u.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',')
        && !u.starts_with(' ')
        && !u.ends_with(' ')
}
