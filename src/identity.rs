//! Trusted identity headers: strip every client-supplied copy, then (once sessions exist) set
//! doorman's own, exactly once, last.
//!
//! Upstream apps trust `X-Auth-User` because only doorman can reach them, so a client that
//! could smuggle one through would be whoever it claims. Names are compared after folding case
//! and reading `_` and `.` as `-`: CGI-style stacks (PHP, Python WSGI, Rack) map
//! `X_Auth_User` and `X-Auth-User` to the same variable, and nginx-era proxies have been
//! bypassed exactly that way.
//!
//! This build strips with the contract's defaults (`[identity]` is not configurable yet):
//! `X-Auth-User`, `X-Auth-Groups`, anything starting with `X-Auth-` or `X-Doorman-`, and the
//! identity headers other proxies use (DESIGN.md §5).

use std::borrow::Cow;

use http::HeaderMap;

/// Identity headers used by other auth proxies; an app migrating from one may still read them.
const BUILT_IN: &[&str] = &[
    "x-auth-user",
    "x-auth-groups",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-remote-user",
    "x-user",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
];

/// Prefixes whose every header is doorman's to set (`[identity] strip_prefix`, and the handoff
/// headers of DESIGN.md §6).
const PREFIXES: &[&str] = &["x-auth-", "x-doorman-"];

/// A header name as a CGI-style upstream would see it: lower case, `_` and `.` read as `-`.
pub fn canonical(name: &str) -> Cow<'_, str> {
    // `HeaderName`s are already lower case; only fold when a separator needs rewriting.
    if name
        .bytes()
        .any(|b| b == b'_' || b == b'.' || b.is_ascii_uppercase())
    {
        Cow::Owned(
            name.chars()
                .map(|c| match c {
                    '_' | '.' => '-',
                    c => c.to_ascii_lowercase(),
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

/// Whether a header with this (canonical) name is an identity claim only doorman may make.
pub fn is_identity(canonical_name: &str) -> bool {
    BUILT_IN.contains(&canonical_name) || PREFIXES.iter().any(|p| canonical_name.starts_with(p))
}

/// Remove every identity header the client sent, in any spelling.
pub fn strip(headers: &mut HeaderMap) {
    crate::forward::headers::remove_where(headers, is_identity);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_an_identity_header_is_removed() {
        let mut h = HeaderMap::new();
        for name in [
            "x-auth-user",
            "X_Auth_User",
            "x.auth.user",
            "x-auth-groups",
            "x-auth-anything",
            "x-doorman-login",
            "remote-user",
            "remote_user",
            "x-forwarded-user",
            "x-user",
        ] {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "mallory".parse().unwrap(),
            );
        }
        h.insert("x-request-id", "keep".parse().unwrap());
        h.insert("x-authorization-hint", "keep".parse().unwrap());
        strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-authorization-hint", "x-request-id"]);
    }

    #[test]
    fn canonical_folds_case_and_separators() {
        assert_eq!(canonical("X_Auth.User"), "x-auth-user");
        assert!(matches!(canonical("x-auth-user"), Cow::Borrowed(_)));
    }
}
