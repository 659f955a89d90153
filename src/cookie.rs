//! Doorman's session cookie: what the browser gets, what doorman reads back, and what the
//! upstream never sees.
//!
//! The cookie is `HttpOnly; SameSite=<same_site>; Path=/`, without `Domain` unless
//! `cookie_domain` is set, and without `Max-Age` unless `persistent = true` (a browser-session
//! cookie otherwise). When it is `Secure` (doorman terminates TLS, or `cookie_secure =
//! "always"` behind a TLS load balancer) its name carries the `__Host-` prefix (`__Secure-` with
//! a domain), so a sibling subdomain or a plain-HTTP response cannot plant or overwrite it.
//! Exactly one cookie of that name is a session; two or more count as none.
//!
//! The upstream never sees the session cookie (it is a bearer credential, and an app that logs
//! request headers would leak it), and the upstream can never set it (an app compromised or
//! merely careless must not be able to fix a session onto a browser). Every other cookie passes
//! through byte for byte.

use http::header::{Entry, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::config::{CookieSecure, SameSite, SessionConfig};
use crate::session::{SessionId, SessionKey};

/// What the request's `Cookie` headers say about doorman's cookie.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// No cookie of doorman's name.
    Absent,
    /// One, but not a well-formed id; or several (which count as none).
    Invalid,
    /// Exactly one well-formed id, as the key the stores know it by (the id itself is not
    /// kept past reading it).
    Key(SessionKey),
}

/// One connection's last well-formed session cookie and its store key.
///
/// A connection (a browser's keep-alive connection, an HTTP/2 connection, a gateway's pooled
/// connection asking for the same user's page loads) presents the same cookie on request after
/// request, and its key costs a base64 decode and a SHA-256 (about 2,700 instructions under
/// callgrind, the largest single cost of an authenticated request). The memo is owned by the
/// connection and dropped with it, so it holds nothing beyond what that connection's own
/// requests carried, and only for as long as they could. The comparison does not stop at the
/// first differing byte.
#[derive(Default)]
pub struct KeyMemo(std::sync::Mutex<Option<([u8; ID_LEN], SessionKey)>>);

/// The length of a well-formed cookie value.
const ID_LEN: usize = SessionId::COOKIE_LEN;

impl KeyMemo {
    /// The key of the cookie `value`, from the memo when it is the connection's last one;
    /// `None` if it is not a well-formed id.
    fn key(&self, value: &[u8]) -> Option<SessionKey> {
        let value: &[u8; ID_LEN] = value.try_into().ok()?;
        let mut last = crate::lock::lock(&self.0);
        if let Some((seen, key)) = &*last {
            if seen.iter().zip(value).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0 {
                return Some(*key);
            }
        }
        let key = key_of(value)?;
        *last = Some((*value, key));
        Some(key)
    }
}

/// The store key of a cookie value, if it is a well-formed id.
fn key_of(value: &[u8]) -> Option<SessionKey> {
    std::str::from_utf8(value)
        .ok()
        .and_then(SessionId::parse)
        .map(|id| id.key())
}

/// The `;`-separated pieces of one `Cookie` header value, untrimmed.
///
/// Every request with a cookie is split to read it (and split again, to rewrite it for the
/// upstream, when it mixes doorman's cookies with others: [`ForUpstream::Rewrite`]), so the
/// separators are found with `memchr` rather than a byte at a time. With
/// [`is_ours`] comparing bytes, this took the authenticated path from 42,018 to 41,232
/// instructions per request (`benches/callgrind.sh`, a header of doorman's cookie alone).
fn pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let left = rest?;
        Some(match memchr::memchr(b';', left) {
            Some(i) => {
                rest = Some(&left[i + 1..]);
                &left[..i]
            }
            None => {
                rest = None;
                left
            }
        })
    })
}

/// One non-empty piece of a `Cookie` header value, as every reader here sees it: the session's
/// read, the rewrite for the upstream and another app's cookie all split with [`pairs`], so
/// what [`ForUpstream`] decides while reading is what [`remove_from_request`] would find.
struct Pair<'a> {
    /// The piece without its leading whitespace (what a rewrite keeps).
    text: &'a [u8],
    /// The part before the first `=` (the whole piece without one), trimmed of ASCII
    /// whitespace.
    name: &'a [u8],
    /// The part after the first `=`, trimmed; `None` for a piece without `=`.
    value: Option<&'a [u8]>,
}

/// The [`Pair`]s of one `Cookie` header value, empty (or blank) pieces left out.
fn pairs(value: &[u8]) -> impl Iterator<Item = Pair<'_>> {
    pieces(value).filter_map(|piece| {
        let text = piece.trim_ascii_start();
        if text.is_empty() {
            return None;
        }
        let (name, value) = match memchr::memchr(b'=', text) {
            Some(i) => (&text[..i], Some(text[i + 1..].trim_ascii())),
            None => (text, None),
        };
        Some(Pair {
            text,
            name: name.trim_ascii(),
            value,
        })
    })
}

/// How doorman's cookie is named and built for one listener (plain or TLS).
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    name: String,
    /// `[session] cookie_name` as configured, without a prefix: what [`is_ours`] compares
    /// with, as [`remove_from_request`] does.
    base: String,
    domain: Option<String>,
    secure: bool,
    same_site: cookie::SameSite,
    max_age: Option<std::time::Duration>,
}

impl CookiePolicy {
    /// The policy for requests that reached doorman over TLS (`tls`) or not.
    pub fn new(session: &SessionConfig, tls: bool) -> CookiePolicy {
        let secure = session.cookie_secure == CookieSecure::Always || tls;
        let prefix = match (secure, &session.cookie_domain) {
            (false, _) => "",
            (true, None) => "__Host-",
            (true, Some(_)) => "__Secure-",
        };
        CookiePolicy {
            name: format!("{prefix}{}", session.cookie_name),
            base: session.cookie_name.clone(),
            domain: session.cookie_domain.clone(),
            secure,
            same_site: match session.same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            },
            max_age: session.persistent.then_some(session.timeouts.absolute),
        }
    }

    /// The cookie's name as the browser stores it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Find doorman's cookie among the request's cookies.
    pub fn read(&self, headers: &HeaderMap) -> Presented {
        self.read_with(headers, None).0
    }

    /// [`CookiePolicy::read`], with the connection's memo of its last cookie's key; and, from
    /// the same pass over the cookies, what the upstream's copy of them needs.
    pub fn read_remembering(
        &self,
        headers: &HeaderMap,
        memo: &KeyMemo,
    ) -> (Presented, ForUpstream) {
        self.read_with(headers, Some(memo))
    }

    fn read_with(&self, headers: &HeaderMap, memo: Option<&KeyMemo>) -> (Presented, ForUpstream) {
        let mut found = None;
        let mut count = 0;
        // For the upstream: what [`remove_from_request`] would find in the same pairs.
        let (mut values, mut ours, mut others) = (0, false, false);
        for value in headers.get_all(COOKIE) {
            values += 1;
            for pair in pairs(value.as_bytes()) {
                if pair.name == self.name.as_bytes() {
                    if let Some(value) = pair.value {
                        count += 1;
                        found = Some(value);
                    }
                }
                if is_ours(pair.name, &self.base) {
                    ours = true;
                } else {
                    others = true;
                }
            }
        }
        let upstream = match (ours, others) {
            (false, _) if values <= 1 => ForUpstream::Keep,
            (_, false) => ForUpstream::Drop,
            _ => ForUpstream::Rewrite,
        };
        let presented = match (count, found) {
            (0, _) => Presented::Absent,
            (1, Some(value)) => match memo {
                Some(memo) => memo.key(value),
                None => key_of(value),
            }
            .map_or(Presented::Invalid, Presented::Key),
            _ => Presented::Invalid,
        };
        (presented, upstream)
    }

    fn builder(&self, value: String) -> cookie::CookieBuilder<'static> {
        let mut b = cookie::Cookie::build((self.name.clone(), value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site);
        if let Some(domain) = &self.domain {
            b = b.domain(domain.clone());
        }
        b
    }

    /// `Set-Cookie` for a new session.
    pub fn set(&self, id: &SessionId) -> HeaderValue {
        let mut b = self.builder(id.to_cookie_value());
        if let Some(age) = self.max_age {
            let secs = i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
            b = b.max_age(cookie::time::Duration::seconds(secs));
        }
        header_value(b.build().to_string())
    }

    /// `Set-Cookie` that removes the cookie (same name, path and domain; expired).
    pub fn expire(&self) -> HeaderValue {
        header_value(self.builder(String::new()).removal().build().to_string())
    }
}

fn header_value(s: String) -> HeaderValue {
    // Built from a token name, a base64url value and fixed attributes: always a valid value.
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Cookie names doorman answers to for `name`: the plain one and the prefixed forms it uses
/// under TLS (`__Host-`, or `__Secure-` with a cookie domain); and the sign-in flows' cookies.
/// Compared as bytes. A name that is not UTF-8 is never ours (as the `cookie` fuzz target
/// asserts): no such name can equal doorman's, and one with a sign-in flow's prefix is checked,
/// so the UTF-8 check runs only for those rather than for every cookie of every request.
fn is_ours(cookie_name: &[u8], name: &str) -> bool {
    let name = name.as_bytes();
    cookie_name == name
        || cookie_name.strip_prefix(b"__Host-") == Some(name)
        || cookie_name.strip_prefix(b"__Secure-") == Some(name)
        || cookie_name
            .strip_prefix(b"__Host-")
            .unwrap_or(cookie_name)
            .starts_with(crate::oidc::flow::COOKIE_PREFIX.as_bytes())
            && std::str::from_utf8(cookie_name).is_ok()
}

/// What the upstream's copy of a request's `Cookie` headers needs, found while they were read
/// for the session ([`CookiePolicy::read_remembering`]): a request's cookies are then split
/// once, not twice, and the usual cases — no cookie of doorman's, or doorman's alone — cost no
/// second pass (about 500 instructions of an authenticated request, `benches/callgrind.sh`).
/// [`ForUpstream::apply`] leaves exactly what [`remove_from_request`] would (asserted by the
/// `cookie` fuzz target and the tests below).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForUpstream {
    /// No cookie of doorman's, in at most one header: forwarded as sent.
    Keep,
    /// Doorman's cookies alone, or nothing but empty pieces in several headers: no `Cookie`
    /// header goes upstream.
    Drop,
    /// Some of both, or several headers to join: [`remove_from_request`] rewrites them. The
    /// default, for a request whose cookies were not read this way.
    #[default]
    Rewrite,
}

impl ForUpstream {
    /// Do to the request's `headers` what the read found they need; `name` is `[session]
    /// cookie_name`, as for [`remove_from_request`]. The headers must be the ones read, or
    /// those with some headers removed (a `Connection: Cookie` takes them all): each action
    /// leaves a request without `Cookie` headers as it is.
    pub fn apply(self, headers: &mut HeaderMap, name: &str) {
        match self {
            ForUpstream::Keep => {}
            ForUpstream::Drop => {
                headers.remove(COOKIE);
            }
            ForUpstream::Rewrite => remove_from_request(headers, name),
        }
    }
}

/// Remove doorman's cookies (the session's, the sign-in flows') from the `Cookie` header(s) of a request going upstream, keeping the
/// other cookies exactly as sent. Several `Cookie` headers (as HTTP/2 clients send them) are
/// joined with `; `, as RFC 9113 §8.2.3 asks when forwarding to HTTP/1.1.
pub fn remove_from_request(headers: &mut HeaderMap, name: &str) {
    // One hashed lookup for the whole job: the values are read, then replaced or removed,
    // through the entry (a `contains_key`, two `get_all`s and a `remove` cost about 400
    // instructions on every request whose cookies need a rewrite, `benches/callgrind.sh`).
    let Entry::Occupied(mut entry) = headers.entry(COOKIE) else {
        return;
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    let mut values = 0;
    for value in entry.iter() {
        values += 1;
        for pair in pairs(value.as_bytes()) {
            if is_ours(pair.name, name) {
                removed = true;
            } else {
                kept.push(pair.text);
            }
        }
    }
    if !removed && values == 1 {
        return; // nothing of ours, one header: leave it exactly as it came
    }
    let joined = kept.join(&b"; "[..]);
    match HeaderValue::from_bytes(&joined) {
        Ok(v) if !joined.is_empty() => {
            entry.insert(v);
        }
        _ => {
            entry.remove();
        }
    }
}

/// The value of the cookie `name` when the request carries exactly one cookie of that name
/// (one of another app: express-session's `connect.sid`, DESIGN.md §12). Two count as none.
pub fn only_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    let mut count = 0;
    for value in headers.get_all(COOKIE) {
        for pair in pairs(value.as_bytes()) {
            if pair.name == name.as_bytes() {
                if let Some(value) = pair.value {
                    count += 1;
                    found = std::str::from_utf8(value).ok();
                }
            }
        }
    }
    (count == 1).then_some(found).flatten().map(str::to_string)
}

/// Drop every upstream `Set-Cookie` that would set (or clear) one of doorman's cookies, by
/// the name the browser will send it back under ([`name_sent_back`]).
pub fn remove_from_response(headers: &mut HeaderMap, name: &str) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let sent_back = name_sent_back(v.as_bytes());
            !is_ours(sent_back, name)
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

/// The cookie name a browser sends a `Set-Cookie` back under, as doorman reads a `Cookie`
/// pair's name. Browsers store the name-value pair before the first `;` (RFC 6265bis §5.7),
/// and one without `=`, or with an empty name, as a nameless cookie that they send back as its
/// bare value: `Set-Cookie: =doorman_session=x` comes back as `Cookie: doorman_session=x`. So
/// the name is the pair's, or for a nameless cookie the name its value reads as.
fn name_sent_back(set_cookie: &[u8]) -> &[u8] {
    let pair = set_cookie.split(|&b| b == b';').next().unwrap_or_default();
    let (name, value) = match pair.iter().position(|&b| b == b'=') {
        Some(i) => (pair[..i].trim_ascii(), &pair[i + 1..]),
        None => (&b""[..], pair),
    };
    if !name.is_empty() {
        return name;
    }
    value
        .split(|&b| b == b'=')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn our_cookie_is_removed_and_the_rest_kept_byte_for_byte() {
        let mut h = request(&["a=1; doorman_session=secret; b=\"x y\"; c=%41;d"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "a=1; b=\"x y\"; c=%41; d");
    }

    #[test]
    fn prefixed_and_repeated_forms_are_removed_too() {
        let mut h = request(&[
            "__Host-doorman_session=s1",
            "x=1; doorman_session=s2",
            "__Secure-doorman_session=s3",
        ]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["x=1"]);
    }

    #[test]
    fn sign_in_flow_cookies_never_reach_the_upstream() {
        let mut h = request(&[
            "__Host-doorman_oidc_abcdefghijkl=sealed; a=1",
            "doorman_oidc_mnopqrstuvwx=sealed2; doorman_oidcx=kept",
        ]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "a=1; doorman_oidcx=kept");

        // A name that is not UTF-8 is never ours, whatever it starts with: kept, as sent.
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"doorman_oidc_\xff=x; doorman_oidc_a=y").unwrap();
        h.insert(COOKIE, value);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE].as_bytes(), b"doorman_oidc_\xff=x");
    }

    #[test]
    fn a_request_with_only_our_cookie_forwards_no_cookie_header() {
        let mut h = request(&["doorman_session=secret"]);
        remove_from_request(&mut h, "doorman_session");
        assert!(h.get(COOKIE).is_none());
    }

    #[test]
    fn untouched_headers_stay_identical() {
        let mut h = request(&["a=1;b=2"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "a=1;b=2");
    }

    #[test]
    fn a_similar_name_is_not_ours() {
        let mut h = request(&["doorman_session2=x; xdoorman_session=y"]);
        remove_from_request(&mut h, "doorman_session");
        assert_eq!(h[COOKIE], "doorman_session2=x; xdoorman_session=y");
    }

    #[test]
    fn upstream_cannot_set_our_cookie() {
        let mut h = HeaderMap::new();
        for v in [
            "app=1; Path=/",
            "doorman_session=fixated; Path=/",
            " __Host-doorman_session=x; Secure",
            "other=2",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        remove_from_response(&mut h, "doorman_session");
        assert_eq!(
            h.get_all(SET_COOKIE).iter().collect::<Vec<_>>(),
            ["app=1; Path=/", "other=2"]
        );
    }

    /// Found by fuzz/fuzz_targets/cookie.rs: a `Set-Cookie` with an empty name is stored
    /// nameless and sent back as its bare value, so `=doorman_session=x` planted a session
    /// cookie (fixation on a plain-HTTP listener, where the name has no `__Host-` prefix) or
    /// a second one (which logs the user out: two count as none).
    #[test]
    fn upstream_cannot_set_our_cookie_as_a_nameless_one() {
        let mut h = HeaderMap::new();
        for v in [
            "=doorman_session=fixated; Path=/",
            "= \t__Host-doorman_session=x",
            "=doorman_oidc_abcdefghijkl=x",
            "doorman_session; Path=/",
            "=doorman_session",
            "=other=1",
            "=plain; Path=/",
            "==doorman_session=x",
        ] {
            h.append(SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        remove_from_response(&mut h, "doorman_session");
        assert_eq!(
            h.get_all(SET_COOKIE).iter().collect::<Vec<_>>(),
            ["=other=1", "=plain; Path=/", "==doorman_session=x"]
        );
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn policy(session: &str, tls: bool) -> CookiePolicy {
        let config = Config::parse(
            &format!("[session]\n{session}\n"),
            Path::new("/nonexistent/proxy.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        CookiePolicy::new(&config.session, tls)
    }

    fn id() -> SessionId {
        SessionId::parse(&"A".repeat(43)).unwrap()
    }

    #[test]
    fn plain_http_cookies_are_http_only_lax_and_session_scoped() {
        let p = policy("", false);
        assert_eq!(p.name(), "doorman_session");
        let set = p.set(&id()).to_str().unwrap().to_string();
        assert_eq!(
            set,
            format!(
                "doorman_session={}; HttpOnly; SameSite=Lax; Path=/",
                "A".repeat(43)
            )
        );
        let expire = p.expire().to_str().unwrap().to_string();
        assert!(
            expire.starts_with("doorman_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
            "{expire}"
        );
    }

    #[test]
    fn secure_cookies_get_the_host_or_secure_prefix() {
        let p = policy("", true);
        assert_eq!(p.name(), "__Host-doorman_session");
        let set = p.set(&id()).to_str().unwrap().to_string();
        assert!(set.contains("; Secure") && !set.contains("Domain"), "{set}");
        let p = policy(
            "cookie_secure = \"always\"\ncookie_domain = \"Example.com\"",
            false,
        );
        assert_eq!(p.name(), "__Secure-doorman_session");
        let set = p.set(&id()).to_str().unwrap().to_string();
        assert!(
            set.contains("; Secure") && set.contains("Domain=example.com"),
            "{set}"
        );
    }

    #[test]
    fn max_age_only_for_persistent_cookies() {
        let p = policy(
            "persistent = true\nabsolute_timeout = \"12h\"\nsame_site = \"strict\"",
            false,
        );
        let set = p.set(&id()).to_str().unwrap().to_string();
        assert!(
            set.contains("Max-Age=43200") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }

    #[test]
    fn exactly_one_well_formed_cookie_is_a_session() {
        let p = policy("", false);
        let read = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(COOKIE, HeaderValue::from_str(v).unwrap());
            }
            p.read(&h)
        };
        let value = "A".repeat(43);
        assert_eq!(read(&[]), Presented::Absent);
        assert_eq!(read(&["other=1"]), Presented::Absent);
        assert_eq!(
            read(&[&format!("a=1; doorman_session={value}")]),
            Presented::Key(id().key())
        );
        assert_eq!(read(&["doorman_session=short"]), Presented::Invalid);
        assert_eq!(
            read(&[&format!("doorman_session={value}; doorman_session={value}")]),
            Presented::Invalid
        );
        assert_eq!(
            read(&[
                &format!("doorman_session={value}"),
                &format!("doorman_session={value}")
            ]),
            Presented::Invalid
        );
        // Under TLS only the prefixed name counts: a plain-HTTP sibling cannot plant a session.
        let tls = policy("", true);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("doorman_session={value}")).unwrap(),
        );
        assert_eq!(tls.read(&h), Presented::Absent);
    }

    #[test]
    fn the_memo_answers_as_reading_without_it_does() {
        let p = policy("", false);
        let memo = KeyMemo::default();
        let headers = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(COOKIE, HeaderValue::from_str(value).unwrap());
            h
        };
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        let (a_value, b_value) = (a.to_cookie_value(), b.to_cookie_value());
        // The same cookie twice (the second from the memo), another one, then the first again:
        // each read is the key of the cookie sent, never the memo's previous one.
        for (sent, id) in [
            (&a_value, &a),
            (&a_value, &a),
            (&b_value, &b),
            (&a_value, &a),
        ] {
            let h = headers(&format!("x=1; doorman_session={sent}"));
            assert_eq!(p.read_remembering(&h, &memo).0, Presented::Key(id.key()));
            assert_eq!(p.read(&h), Presented::Key(id.key()));
        }
        // A value that differs from the memo's in its last byte only is read afresh.
        let mut near = a_value.clone().into_bytes();
        near[42] = if near[42] == b'A' { b'B' } else { b'A' };
        let near = String::from_utf8(near).unwrap();
        let h = headers(&format!("doorman_session={near}"));
        assert_eq!(p.read_remembering(&h, &memo).0, p.read(&h));
        assert_ne!(p.read_remembering(&h, &memo).0, Presented::Key(a.key()));
        // What is not a session is never one by the memo: two cookies, a malformed value.
        let twice = headers(&format!(
            "doorman_session={a_value}; doorman_session={a_value}"
        ));
        assert_eq!(p.read_remembering(&twice, &memo).0, Presented::Invalid);
        let bad = headers(&format!("doorman_session={}", &a_value[..42]));
        assert_eq!(p.read_remembering(&bad, &memo).0, Presented::Invalid);
        let bad = headers(&format!("doorman_session={}!", &a_value[..42]));
        assert_eq!(p.read_remembering(&bad, &memo).0, Presented::Invalid);
    }

    /// What the read says the upstream's cookies need, applied, leaves exactly what
    /// `remove_from_request` leaves: over generated requests of zero to three `Cookie`
    /// headers, each of pieces doorman's and not, empty and nameless, under both listeners'
    /// names.
    #[test]
    fn the_read_tells_the_upstream_what_removing_would_leave() {
        const PIECES: &[&str] = &[
            "doorman_session=AAAA",
            "__Host-doorman_session=x",
            "__Secure-doorman_session",
            "doorman_oidc_abcdefghijkl=s",
            "a=1",
            " b = \"x y\" ",
            "d",
            "",
            " ",
            "doorman_session2=k",
        ];
        let memo = KeyMemo::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut seen = [0usize; 3];
        for p in [policy("", false), policy("", true)] {
            for _ in 0..4000 {
                let mut h = HeaderMap::new();
                for _ in 0..next(4) {
                    let value: Vec<&str> =
                        (0..next(4)).map(|_| PIECES[next(PIECES.len())]).collect();
                    let sep = if next(2) == 0 { ";" } else { "; " };
                    h.append(COOKIE, HeaderValue::from_str(&value.join(sep)).unwrap());
                }
                let (_, upstream) = p.read_remembering(&h, &memo);
                seen[upstream as usize] += 1;
                let mut applied = h.clone();
                upstream.apply(&mut applied, "doorman_session");
                let mut removed = h.clone();
                remove_from_request(&mut removed, "doorman_session");
                assert_eq!(applied, removed, "{h:?} read as {upstream:?}");
            }
        }
        assert!(
            seen.iter().all(|&n| n > 100),
            "every case was met: {seen:?}"
        );
    }
}
