//! Trusted identity headers: strip every client-supplied copy, then set doorman's own, exactly
//! once, last.
//!
//! Upstream apps trust `X-Auth-User` because only doorman can reach them, so a client that
//! could smuggle one through would be whoever it claims. Names are compared after folding case
//! and reading `_` and `.` as `-`: CGI-style stacks (PHP, Python WSGI, Rack) map `X_Auth_User`
//! and `X-Auth-User` to the same variable, and forward-auth proxies have been bypassed exactly
//! that way.
//!
//! Removed from every request before forwarding (DESIGN.md §5): the configured `user_header`
//! and `groups_header`, anything starting with `strip_prefix` or `X-Doorman-`, the names in
//! `strip_headers`, the identity headers other proxies use ([`BUILT_IN`]), and the signed
//! assertion's header (`X-Auth-Assertion` unless configured otherwise; stripped even when no
//! assertion is configured, so an app that verifies one never sees a client's).
//!
//! ## Names that are not safe header values
//! A user or group name is forwarded only if it is 1–256 printable ASCII characters without
//! `,` (the groups list separator), and without leading or trailing spaces. [`Identity::new`]
//! refuses anything else, so such a name can never get a session (login and handoff refuse it)
//! and never reaches a header: no encoding scheme the upstream would have to know about, and no
//! way to split one group into two or to inject a header with CR/LF.

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::jws::{Assertion, DEFAULT_HEADER};

/// Identity headers used by other auth proxies; an app migrating from one may still read them.
pub const BUILT_IN: &[&str] = &[
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

/// Doorman's handoff headers (DESIGN.md §6) share this prefix; always doorman's alone.
pub const DOORMAN_PREFIX: &str = "x-doorman-";

/// A header name as a CGI-style upstream would see it: lower case, `_` and `.` read as `-`.
pub fn canonical(name: &str) -> Cow<'_, str> {
    // `HeaderName`s are already lower case; only fold when something needs rewriting.
    if name.bytes().any(|b| fold(b) != b) {
        // `fold` changes only ASCII bytes, and into ASCII: other characters pass whole.
        Cow::Owned(
            name.chars()
                .map(|c| u8::try_from(c).map_or(c, |b| char::from(fold(b))))
                .collect(),
        )
    } else {
        Cow::Borrowed(name)
    }
}

/// The first bytes, in canonical form, of every name and prefix a [`remove_where`] test can
/// match: a name whose folded first byte is not among them cannot match, so it is neither
/// folded nor compared. Every request and response passes each of its header names through
/// three such tests (identity, forwarding, `X-Doorman-*`); most names (`host`, `accept`,
/// `content-type`, ...) now cost one bit test each instead of a fold and dozens of string
/// comparisons.
///
/// Sound only if every string the test compares with is non-empty and listed here: a name
/// matches one of them only if its canonical form starts with that string's first byte. An
/// empty prefix would match everything, so [`with`](Initials::with) turns it into
/// [`ALL`](Initials::ALL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initials(u128);

impl Initials {
    /// Admits every name: the test decides alone.
    pub const ALL: Initials = Initials(u128::MAX);

    /// Admits no name: for a pass whose test removes nothing.
    pub const NONE: Initials = Initials(0);

    /// The initials of `names` (canonical: lower case, `-` for `_` and `.`).
    pub const fn of(names: &[&str]) -> Initials {
        let mut set = Initials(0);
        let mut i = 0;
        while i < names.len() {
            set = set.with(names[i]);
            i += 1;
        }
        set
    }

    /// These initials and `name`'s (all of them for an empty `name`, a prefix of every name).
    pub const fn with(self, name: &str) -> Initials {
        match name.as_bytes().first() {
            None => Initials::ALL,
            Some(&b) => Initials(self.0 | bit(fold(b))),
        }
    }

    /// These initials and `other`'s: for one pass that removes what either set's test finds.
    pub const fn union(self, other: Initials) -> Initials {
        Initials(self.0 | other.0)
    }

    /// Whether a name with this (not yet folded) first byte may match.
    pub fn admits(self, first: u8) -> bool {
        self.0 & bit(fold(first)) != 0
    }
}

/// One byte as [`canonical`] folds it: `_` and `.` read as `-`, upper case as lower.
const fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// `b`'s bit among the initials; every byte past ASCII shares the top one (header names are
/// ASCII, so none reaches it; if one did, it would be admitted and tested in full).
const fn bit(b: u8) -> u128 {
    1 << if b < 128 { b } else { 127 }
}

/// A header name read in its canonical form without making that form: compared byte by byte,
/// folded as [`canonical`] folds. Folding never changes the length, so most comparisons end
/// there, and nothing is allocated for a name with `_` in it.
#[derive(Debug, Clone, Copy)]
pub struct Folded<'a>(&'a [u8]);

impl<'a> Folded<'a> {
    /// `name`, to be compared as its canonical form.
    pub fn new(name: &'a str) -> Folded<'a> {
        Folded(name.as_bytes())
    }

    /// Whether the canonical form is `canonical` (itself in canonical form).
    pub fn is(self, canonical: &str) -> bool {
        self.0.len() == canonical.len() && self.starts_with(canonical)
    }

    /// Whether the canonical form starts with `prefix` (itself in canonical form).
    pub fn starts_with(self, prefix: &str) -> bool {
        let prefix = prefix.as_bytes();
        self.0.len() >= prefix.len() && self.0.iter().zip(prefix).all(|(&b, &p)| fold(b) == p)
    }
}

/// Remove every header whose canonical name (lower case, `_` and `.` read as `-`) matches;
/// `initials` are those of every string `matches` compares with ([`Initials`]).
pub fn remove_where(
    headers: &mut HeaderMap,
    initials: Initials,
    mut matches: impl FnMut(Folded<'_>) -> bool,
) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let first = name.as_str().as_bytes().first().copied().unwrap_or(0);
            initials.admits(first) && matches(Folded::new(name.as_str()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The `[identity]` settings: which headers carry identity and which are stripped.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    user: HeaderName,
    groups: HeaderName,
    /// Canonical forms, compared against canonical incoming names.
    user_canonical: String,
    groups_canonical: String,
    strip_prefix: String,
    strip_headers: Vec<String>,
    /// `[identity] assertion`, when configured.
    assertion: Option<Arc<Assertion>>,
    /// Its header's canonical name (the default name when none is configured).
    assertion_canonical: String,
    /// The initials of every name and prefix above, for [`remove_where`].
    initials: Initials,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders::new(
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-groups"),
            "x-auth-".to_string(),
            Vec::new(),
        )
    }
}

impl IdentityHeaders {
    /// `strip_prefix` and `strip_headers` in any spelling (kept in canonical form).
    pub fn new(
        user: HeaderName,
        groups: HeaderName,
        strip_prefix: String,
        strip_headers: Vec<String>,
    ) -> Self {
        let mut headers = IdentityHeaders {
            user_canonical: canonical(user.as_str()).into_owned(),
            groups_canonical: canonical(groups.as_str()).into_owned(),
            user,
            groups,
            strip_prefix: canonical(&strip_prefix).into_owned(),
            strip_headers: strip_headers
                .iter()
                .map(|h| canonical(h).into_owned())
                .collect(),
            assertion: None,
            assertion_canonical: DEFAULT_HEADER.to_string(),
            initials: Initials::ALL,
        };
        headers.initials = headers.initials_now();
        headers
    }

    /// The initials of everything [`is_identity`](Self::is_identity) compares with.
    fn initials_now(&self) -> Initials {
        let mut set = Initials::of(BUILT_IN)
            .with(DOORMAN_PREFIX)
            .with(&self.user_canonical)
            .with(&self.groups_canonical)
            .with(&self.assertion_canonical)
            .with(&self.strip_prefix);
        for name in &self.strip_headers {
            set = set.with(name);
        }
        set
    }

    /// These settings with `[identity] assertion`: its header is stripped from every request
    /// too.
    pub fn with_assertion(mut self, assertion: Option<Arc<Assertion>>) -> Self {
        if let Some(a) = &assertion {
            self.assertion_canonical = canonical(a.header().as_str()).into_owned();
        }
        self.assertion = assertion;
        self.initials = self.initials_now();
        self
    }

    /// The signed identity assertion, when configured.
    pub fn assertion(&self) -> Option<&Assertion> {
        self.assertion.as_deref()
    }

    /// Whether an incoming header with this name (in any spelling) is an identity claim only
    /// doorman may make.
    pub fn is_identity(&self, name: Folded<'_>) -> bool {
        name.is(&self.user_canonical)
            || name.is(&self.groups_canonical)
            || name.is(&self.assertion_canonical)
            || name.starts_with(&self.strip_prefix)
            || name.starts_with(DOORMAN_PREFIX)
            || self.strip_headers.iter().any(|h| name.is(h))
            || BUILT_IN.iter().any(|h| name.is(h))
    }

    /// Remove every identity header the client sent, in any spelling.
    pub fn strip(&self, headers: &mut HeaderMap) {
        remove_where(headers, self.initials, |name| self.is_identity(name));
    }

    /// The test [`strip`](Self::strip) applies, or'd with `also`'s, and the initials of both
    /// (`initials`: `also`'s, as for [`remove_where`]): for a pass over the names that removes
    /// other headers as well (`forward::headers::remove_hop_by_hop_and`).
    pub fn claims_and<'a>(
        &'a self,
        initials: Initials,
        mut also: impl FnMut(Folded<'_>) -> bool + 'a,
    ) -> (Initials, impl FnMut(Folded<'_>) -> bool + 'a) {
        let claims = move |name: Folded<'_>| self.is_identity(name) || also(name);
        (self.initials.union(initials), claims)
    }

    /// Set the user and groups headers — once each, replacing anything left. Call after
    /// [`strip`](Self::strip) and after `Connection:` processing, so nothing can remove them.
    pub fn set(&self, headers: &mut HeaderMap, identity: &Identity) {
        headers.insert(self.user.clone(), identity.0.user_value.clone());
        headers.insert(self.groups.clone(), identity.0.groups_value.clone());
    }

    /// Set the user and groups headers — and the assertion header, when one is configured —
    /// for a forward-auth answer: the identity (and its `token`), or empty values for an
    /// anonymous request, so every header is always present. A gateway that copies them then
    /// always overwrites the client's own copy (Caddy 2.6 copies a literal placeholder for an
    /// absent header; later Caddy versions let the client's value through).
    pub fn set_always(
        &self,
        headers: &mut HeaderMap,
        identity: Option<&Identity>,
        token: Option<HeaderValue>,
    ) {
        match identity {
            Some(identity) => self.set(headers, identity),
            None => {
                headers.insert(self.user.clone(), HeaderValue::from_static(""));
                headers.insert(self.groups.clone(), HeaderValue::from_static(""));
            }
        }
        if self.assertion.is_some() {
            let token = match identity {
                Some(_) => token.unwrap_or_else(|| HeaderValue::from_static("")),
                None => HeaderValue::from_static(""),
            };
            self.set_assertion(headers, token);
        }
    }

    /// Set the assertion header to `token` (from [`Assertion::header_value`]), like
    /// [`set`](Self::set): after the strip, replacing anything left. Does nothing when no
    /// assertion is configured.
    pub fn set_assertion(&self, headers: &mut HeaderMap, token: HeaderValue) {
        if let Some(a) = &self.assertion {
            headers.insert(a.header().clone(), token);
        }
    }
}

/// Why a name cannot be an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    /// The name is empty.
    Empty,
    #[error("name longer than 256 characters")]
    /// More than 256 characters.
    TooLong,
    #[error("name contains a character that is not printable ASCII, or a comma")]
    /// A character outside printable ASCII, or a comma (the groups separator).
    Unsafe,
    #[error("name starts or ends with a space")]
    /// Leading or trailing spaces.
    Padded,
}

/// A validated user and groups, safe to put in header values as they are.
///
/// Shared, with its header values made once: a users-file entry's identity is built when the
/// file is loaded (the users file's `User::identity`), so a request on a password
/// session clones one pointer where it used to copy the name, every group and both header
/// values, and validate them again (`benches/callgrind.sh`'s authenticated path). The access
/// log keeps the user by the same pointer ([`Identity::user_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(Arc<Named>);

#[derive(Debug, PartialEq, Eq)]
struct Named {
    user: Arc<str>,
    groups: Vec<String>,
    /// `user` as the user header's value.
    user_value: HeaderValue,
    /// `groups` joined with `,`, as the groups header's value.
    groups_value: HeaderValue,
}

impl Identity {
    /// Validate `user` and every group (see the module docs for the rule). A user already
    /// shared (a session record's) is kept as it is, not copied.
    pub fn new(
        user: impl AsRef<str> + Into<Arc<str>>,
        groups: Vec<String>,
    ) -> Result<Identity, NameError> {
        check_name(user.as_ref())?;
        for g in &groups {
            check_name(g)?;
        }
        Ok(Identity(Arc::new(Named {
            user_value: header_value(user.as_ref()),
            groups_value: header_value(&groups.join(",")),
            user: user.into(),
            groups,
        })))
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.0.user
    }

    /// The user name as the identity shares it: cloned, a reference count, by what outlives
    /// the identity (the access log, a live ticket).
    pub fn user_name(&self) -> &Arc<str> {
        &self.0.user
    }

    /// The user's groups.
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }
}

/// The rule [`Identity::new`] enforces, for validating names elsewhere (users file, handoff).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 256 {
        return Err(NameError::TooLong);
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',') {
        return Err(NameError::Unsafe);
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(NameError::Padded);
    }
    Ok(())
}

fn header_value(s: &str) -> HeaderValue {
    // Validated printable ASCII: always a valid header value.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for name in names {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "mallory".parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn every_spelling_of_an_identity_header_is_removed() {
        let mut h = headers(&[
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
            "x-request-id",
            "x-authorization-hint",
        ]);
        IdentityHeaders::default().strip(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-authorization-hint", "x-request-id"]);
    }

    #[test]
    fn configured_headers_and_extra_names_are_stripped() {
        let ids = IdentityHeaders::new(
            HeaderName::from_static("x-user-name"),
            HeaderName::from_static("x-user-roles"),
            "x-myco-".into(),
            vec!["x-api-user".into()],
        );
        let mut h = headers(&[
            "x_user_name",
            "x-user-roles",
            "x-myco-tenant",
            "x-api-user",
            "x-auth-user",
            "x-keep",
        ]);
        ids.strip(&mut h);
        // x-auth-user is not this config's prefix, nor built in: an app configured for other
        // headers does not read it.
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-auth-user", "x-keep"]);
    }

    #[test]
    fn the_assertion_header_is_stripped_whatever_the_prefix() {
        // A prefix that does not cover X-Auth-Assertion: the default name is still stripped.
        let ids = IdentityHeaders::new(
            HeaderName::from_static("x-user"),
            HeaderName::from_static("x-roles"),
            "x-myco-".into(),
            vec![],
        );
        let mut h = headers(&["x-auth-assertion", "X_Auth_Assertion", "x-keep"]);
        ids.strip(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-keep"]);
        // A configured name is stripped in every spelling.
        let key = crate::jws::keys::tests::rfc8037_key();
        let a = Assertion::new(
            HeaderName::from_static("x-app-token"),
            "iss".into(),
            std::time::Duration::from_secs(60),
            Some("app".into()),
            None,
            key,
            &[],
        );
        let ids = ids.with_assertion(Some(Arc::new(a)));
        let mut h = headers(&["x-app-token", "X.App.Token", "x-keep"]);
        ids.strip(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-keep"]);
        let mut h = HeaderMap::new();
        ids.set_assertion(&mut h, HeaderValue::from_static("t"));
        assert_eq!(h["x-app-token"], "t");
    }

    #[test]
    fn set_replaces_and_joins_groups() {
        let ids = IdentityHeaders::default();
        let mut h = headers(&["x-auth-user"]);
        let who = Identity::new("alice", vec!["admin".into(), "staff".into()]).unwrap();
        ids.set(&mut h, &who);
        assert_eq!(h.get_all("x-auth-user").iter().count(), 1);
        assert_eq!(h["x-auth-user"], "alice");
        assert_eq!(h["x-auth-groups"], "admin,staff");
    }

    #[test]
    fn names_that_are_not_safe_header_values_are_refused() {
        assert_eq!(Identity::new("", vec![]), Err(NameError::Empty));
        assert_eq!(Identity::new("a,b", vec![]), Err(NameError::Unsafe));
        assert_eq!(
            Identity::new("alice\r\nX-Auth-User: root", vec![]),
            Err(NameError::Unsafe)
        );
        assert_eq!(Identity::new("al\tice", vec![]), Err(NameError::Unsafe));
        assert_eq!(Identity::new("zoë", vec![]), Err(NameError::Unsafe));
        assert_eq!(Identity::new(" alice", vec![]), Err(NameError::Padded));
        assert_eq!(
            Identity::new("alice", vec!["a,b".into()]),
            Err(NameError::Unsafe)
        );
        assert_eq!(
            Identity::new("x".repeat(257), vec![]),
            Err(NameError::TooLong)
        );
        assert!(Identity::new("alice@example.com", vec!["team lead".into()]).is_ok());
    }

    /// Every spelling of every name the strips compare with, and names they must keep.
    fn spellings() -> Vec<String> {
        let mut names: Vec<String> = BUILT_IN.iter().map(|n| n.to_string()).collect();
        names.extend(
            [
                "x-auth-user",
                "x-auth-groups",
                "x-auth-assertion",
                "x-auth-anything",
                "x-doorman-login",
                "x-forwarded-for",
                "forwarded",
                "true-client-ip",
                "cf-connecting-ip",
                "my-user",
                "host",
                "accept",
                "content-type",
                "cookie",
                "x-request-id",
                "-x-auth-user",
                "_x_auth_user",
                ".x-auth-user",
            ]
            .map(String::from),
        );
        let mut all = Vec::new();
        for n in names {
            all.push(n.to_ascii_uppercase());
            all.push(n.replace('-', "_"));
            all.push(n.replace('-', "."));
            all.push(n.replacen('x', "X", 1));
            all.push(n);
        }
        all
    }

    #[test]
    fn the_initials_never_keep_a_name_the_test_would_remove() {
        let ids = IdentityHeaders::new(
            HeaderName::from_static("remote_user"),
            HeaderName::from_static("x.team"),
            "my-".into(),
            vec!["X_Tenant".into(), "_secret".into()],
        );
        let forwarding = crate::forward::headers::remove_forwarding;
        for name in spellings() {
            let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
                continue;
            };
            let full = |strip: &dyn Fn(&mut HeaderMap)| {
                let mut map = headers(&[h.as_str()]);
                strip(&mut map);
                map.is_empty()
            };
            // The same strips without their initials: every name tested in full.
            let slow_identity = full(&|m| remove_where(m, Initials::ALL, |n| ids.is_identity(n)));
            assert_eq!(full(&|m| ids.strip(m)), slow_identity, "{name}");
            let slow_forwarding = full(&|m| {
                remove_where(m, Initials::ALL, |n| {
                    crate::forward::headers::is_forwarding(n)
                })
            });
            assert_eq!(full(&|m| forwarding(m)), slow_forwarding, "{name}");
            // The one-pass test of both families, with its initials, removes what either slow
            // strip removes.
            let both = full(&|m| {
                let (initials, claims) = ids.claims_and(
                    crate::forward::headers::FORWARDING_INITIALS,
                    crate::forward::headers::is_forwarding,
                );
                remove_where(m, initials, claims)
            });
            assert_eq!(both, slow_identity || slow_forwarding, "{name}");
        }
        // And the strips do remove what they name, in any spelling.
        let names = [
            "REMOTE.USER",
            "x_team",
            "x-tenant",
            "_secret",
            ".secret",
            "My_Thing",
            "X_Doorman_X",
        ];
        for name in names {
            let mut map = headers(&[name]);
            ids.strip(&mut map);
            assert!(map.is_empty(), "{name}");
        }
    }

    #[test]
    fn a_folded_name_compares_as_its_canonical_form() {
        let targets = [
            "x-auth-user",
            "x-auth-",
            "x-",
            "remote-user",
            "x-auth-user-x",
        ];
        for name in spellings() {
            let folded = Folded::new(&name);
            let canonical = canonical(&name);
            for target in targets {
                assert_eq!(folded.is(target), canonical == target, "{name} is {target}");
                assert_eq!(
                    folded.starts_with(target),
                    canonical.starts_with(target),
                    "{name} starts with {target}"
                );
            }
        }
    }

    #[test]
    fn an_empty_prefix_admits_every_name() {
        assert_eq!(Initials::of(&["x-a", ""]), Initials::ALL);
        assert!(Initials::of(&["x-a"]).admits(b'X'));
        assert!(Initials::of(&["-a"]).admits(b'_'));
        assert!(!Initials::of(&["x-a"]).admits(b'h'));
    }

    #[test]
    fn canonical_folds_case_and_separators() {
        assert_eq!(canonical("X_Auth.User"), "x-auth-user");
        assert!(matches!(canonical("x-auth-user"), Cow::Borrowed(_)));
    }
}
