//! Header surgery between client and upstream: hop-by-hop headers (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` family.
//!
//! Hop-by-hop headers describe one connection and must not cross the proxy in either
//! direction; `Connection` may name more of them, so its tokens are removed too. This runs
//! before doorman sets anything of its own, so a client cannot use `Connection: X-Auth-User` to
//! make a later hop delete the identity doorman set.

use http::header::{self, Entry, HeaderName};
use http::{HeaderMap, HeaderValue};

pub use crate::identity::{remove_where, Folded, Initials};

/// Hop-by-hop headers removed in both directions, besides those `Connection` names.
/// `Trailer` is not among them: it is end-to-end (RFC 9110 §6.6.2), and hyper's HTTP/1 server
/// only sends the trailer fields it declares. `HTTP2-Settings` is: it belongs to an h2c
/// upgrade (RFC 7540 §3.2.1), which doorman never forwards, so it goes whether or not
/// `Connection` names it. `HeaderName`s, not strings: a lookup by string parses the name again
/// on every call, twice per request.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// `X-Forwarded-For`, `-Proto` and `-Host`, which doorman sets.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the host the client addressed.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe where the request came from. From a peer that is not a trusted proxy
/// they are lies at best and route or auth bypasses at worst (`X-Original-URL` rewrites the
/// path in IIS and Symfony, `X-HTTP-Method-Override` the method in many frameworks), so they
/// are removed before doorman sets its own `X-Forwarded-*`.
const FORWARDING: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "cf-connecting-ip",
    "x-url-scheme",
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-original-host",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether a header name (in any spelling) is one of [`FORWARDING`].
pub fn is_forwarding(name: Folded<'_>) -> bool {
    FORWARDING.iter().any(|f| name.is(f))
}

/// The initials of [`FORWARDING`]'s names, for [`remove_where`].
pub const FORWARDING_INITIALS: Initials = Initials::of(FORWARDING);

/// Remove every forwarding and rewrite header (`FORWARDING`), in any spelling.
pub fn remove_forwarding(headers: &mut HeaderMap) {
    remove_where(headers, FORWARDING_INITIALS, is_forwarding);
}

/// Remove the headers `Connection` names and the standard hop-by-hop set.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    remove_hop_by_hop_and(headers, Initials::NONE, |_| false);
}

/// [`remove_hop_by_hop`], and in the same pass over the names every header `also` matches
/// (`initials`: those of every name `also` compares with, as for [`remove_where`]).
pub fn remove_hop_by_hop_and(
    headers: &mut HeaderMap,
    initials: Initials,
    also: impl FnMut(Folded<'_>) -> bool,
) {
    Scan::new(headers, initials, also).remove(headers);
}

/// One pass over a message's names: which of the hop-by-hop set it has, and the names `also`
/// matched, all removed by [`Scan::remove`]. A request loses the hop-by-hop set and the
/// identity and forwarding claims, a response the hop-by-hop set and doorman's handoff
/// headers, and each pass over a message's names costs about 25 instructions per header
/// (`benches/callgrind.sh`): one pass finds what two did, since removing only ever shrinks the
/// set of names. A hop-by-hop name is never `also`'s, so `Connection` is still there when its
/// tokens are read.
///
/// The checks that read a hop-by-hop header before it goes (an upgrade's `Connection`,
/// `TE: trailers`, a chunked body) ask the scan first, so a request without them costs no
/// hashed lookup for them.
pub struct Scan {
    present: [bool; HOP_BY_HOP.len()],
    doomed: Vec<HeaderName>,
}

impl Scan {
    /// Scan `headers`, which must not change before [`Scan::remove`].
    pub fn new(
        headers: &HeaderMap,
        initials: Initials,
        mut also: impl FnMut(Folded<'_>) -> bool,
    ) -> Scan {
        let mut present = [false; HOP_BY_HOP.len()];
        let mut doomed = Vec::new();
        for name in headers.keys() {
            let text = name.as_str();
            if let Some(i) = hop_by_hop_index(text.as_bytes()) {
                present[i] = true;
            } else if initials.admits(text.as_bytes().first().copied().unwrap_or(0))
                && also(Folded::new(text))
            {
                doomed.push(name.clone());
            }
        }
        Scan { present, doomed }
    }

    /// Whether the message has a `Connection` header.
    pub fn has_connection(&self) -> bool {
        self.present[0]
    }

    /// Whether it has a `TE` header.
    pub fn has_te(&self) -> bool {
        self.present[5]
    }

    /// Whether it has a `Transfer-Encoding` header.
    pub fn has_transfer_encoding(&self) -> bool {
        self.present[6]
    }

    /// Remove what the scan found from `headers`, the map it scanned, and the headers
    /// `Connection` names.
    pub fn remove(self, headers: &mut HeaderMap) {
        let connection = self.has_connection();
        let Scan { present, doomed } = self;
        // Almost always empty: then no iterator is made (and dropped) for it.
        if !doomed.is_empty() {
            for name in doomed {
                headers.remove(name);
            }
        }
        if !present.contains(&true) {
            return; // no Connection header either
        }
        // `Connection` through one hashed lookup: its tokens read, then its values removed,
        // from the same entry (a `get_all` and a `remove` cost about 110 instructions more, on
        // every response of an upstream that says `keep-alive`, `benches/callgrind.sh`).
        if connection {
            if let Entry::Occupied(connection) = headers.entry(header::CONNECTION) {
                // The tokens it names beyond the standard set. Almost always there are none
                // (`keep-alive`, `close`'s absence, `upgrade`), and then nothing is collected
                // or parsed.
                if names_others(connection.iter()) {
                    // A value that is not visible ASCII is ignored whole, as it always was.
                    let named: Vec<HeaderName> = connection
                        .iter()
                        .filter(|v| v.to_str().is_ok())
                        .flat_map(tokens)
                        .filter(|token| !is_listed(token))
                        .filter_map(|token| HeaderName::from_bytes(token).ok())
                        .collect();
                    connection.remove();
                    for name in named {
                        headers.remove(name);
                    }
                } else {
                    connection.remove();
                }
            }
        }
        // The rest of the set (`Connection`, first, is done).
        for (name, &present) in HOP_BY_HOP[1..].iter().zip(&present[1..]) {
            if present {
                headers.remove(name);
            }
        }
    }
}

/// The comma-separated tokens of one `Connection` value, trimmed, empty ones left out. On the
/// raw bytes: no UTF-8 check, no `char` search (for visible ASCII, `trim_ascii` is `trim`).
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Whether `Connection` names a header outside the standard set (which goes anyway). A value
/// that is not visible ASCII counts as naming others, so [`remove_hop_by_hop`] takes the long
/// way, which ignores it.
fn names_others<'a>(connection: impl Iterator<Item = &'a HeaderValue>) -> bool {
    connection.flat_map(tokens).any(|token| !is_listed(token))
}

/// Whether `token` (any case) is one of [`HOP_BY_HOP`]: folded into a stack buffer as long as
/// the longest of them, then matched like a header name.
fn is_listed(token: &[u8]) -> bool {
    const LONGEST: usize = "proxy-authorization".len();
    if token.len() > LONGEST {
        return false;
    }
    let mut folded = [0u8; LONGEST];
    for (to, from) in folded.iter_mut().zip(token) {
        *to = from.to_ascii_lowercase();
    }
    hop_by_hop_index(&folded[..token.len()]).is_some()
}

/// `name`'s index in [`HOP_BY_HOP`]. A `match` on the text: compiled to a switch on the
/// length and one comparison, where comparing `HeaderName`s took nine calls per header.
fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"connection" => 0,
        b"keep-alive" => 1,
        b"proxy-connection" => 2,
        b"proxy-authenticate" => 3,
        b"proxy-authorization" => 4,
        b"te" => 5,
        b"transfer-encoding" => 6,
        b"upgrade" => 7,
        b"http2-settings" => 8,
        _ => return None,
    })
}

/// Whether a comma-separated header carries `token` (case-insensitively).
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// What the `X-Forwarded-*` headers describe about the client side of one request.
pub struct Forwarded {
    /// The client's address, as the value made once per connection
    /// ([`ClientInfo::peer_value`](crate::exchange::ClientInfo::peer_value)).
    pub peer: HeaderValue,
    /// The peer is in `[listen] trusted_proxies`: its forwarding headers are kept and extended.
    pub trusted: bool,
    /// `http` or `https`, as the client reached doorman.
    pub proto: &'static str,
    /// The host the client asked for (`Host` or the h2 `:authority`), as the value to send:
    /// the request's own `Host` value is reference-counted, so passing it on copies nothing.
    pub host: Option<HeaderValue>,
}

/// Replace (or, for a trusted peer, extend) the forwarding headers. For a peer that is not
/// trusted, every [`FORWARDING`] header must be gone already (`remove_forwarding`, or the
/// identity strip's pass with [`is_forwarding`]): what is set here is then all there is.
pub fn set_forwarded(headers: &mut HeaderMap, f: Forwarded) {
    let prior_for = f
        .trusted
        .then(|| join_values(headers, &X_FORWARDED_FOR))
        .flatten();
    let prior_proto = f
        .trusted
        .then(|| headers.get(&X_FORWARDED_PROTO).cloned())
        .flatten();
    let prior_host = f
        .trusted
        .then(|| headers.get(&X_FORWARDED_HOST).cloned())
        .flatten();
    let xff = match prior_for {
        Some(prior) => {
            let mut joined = prior.into_bytes();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(f.peer.as_bytes());
            HeaderValue::from_bytes(&joined)
        }
        None => Ok(f.peer),
    };
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        prior_proto.unwrap_or_else(|| HeaderValue::from_static(f.proto)),
    );
    match prior_host.or(f.host) {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// All values of a header joined with `, ` (a list header may arrive split over lines).
fn join_values(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_hop_by_hop_name_has_its_own_index() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(
                hop_by_hop_index(name.as_str().as_bytes()),
                Some(i),
                "{name}"
            );
        }
        assert_eq!(hop_by_hop_index(b"trailer"), None);
        assert_eq!(hop_by_hop_index(b"host"), None);
    }

    #[test]
    fn connection_named_and_standard_hop_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret , close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "trailer"]);
    }

    #[test]
    fn the_scan_names_the_headers_it_was_asked_about() {
        // (Its indices are HOP_BY_HOP's: each_hop_by_hop_name_has_its_own_index.)
        let scan = Scan::new(&map(&[("accept", "*/*")]), Initials::NONE, |_| false);
        assert!(!scan.has_connection() && !scan.has_te() && !scan.has_transfer_encoding());
        let h = map(&[
            ("connection", "upgrade"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
        ]);
        let scan = Scan::new(&h, Initials::NONE, |_| false);
        assert!(scan.has_connection() && scan.has_te() && scan.has_transfer_encoding());
    }

    #[test]
    fn connection_tokens_are_matched_in_any_case() {
        for name in &HOP_BY_HOP {
            assert!(is_listed(name.as_str().as_bytes()), "{name}");
            assert!(
                is_listed(name.as_str().to_ascii_uppercase().as_bytes()),
                "{name}"
            );
        }
        for other in [
            "close",
            "x-auth-user",
            "trailer",
            "",
            "keep-alive-",
            "proxy-authorization-x",
        ] {
            assert!(!is_listed(other.as_bytes()), "{other:?}");
        }
    }

    #[test]
    fn a_connection_of_standard_tokens_removes_only_the_standard_set() {
        let mut h = map(&[
            ("connection", "Keep-Alive, UPGRADE"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("x-auth-user", "alice"),
            ("accept", "*/*"),
        ]);
        assert!(!names_others(h.get_all(header::CONNECTION).iter()));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-auth-user"]);
    }

    #[test]
    fn a_connection_value_that_is_not_text_takes_the_long_way_and_is_ignored() {
        let mut h = map(&[("x-auth-user", "alice"), ("keep-alive", "timeout=5")]);
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"keep-alive, x-auth-\xffuser").unwrap(),
        );
        assert!(names_others(h.get_all(header::CONNECTION).iter()));
        remove_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-auth-user"]);
    }

    #[test]
    fn a_connection_naming_any_other_header_removes_it_in_any_case() {
        for connection in [
            "X-Auth-User",
            "keep-alive,x-auth-user",
            "close, X-AUTH-USER ,upgrade",
        ] {
            let mut h = map(&[
                ("connection", connection),
                ("x-auth-user", "alice"),
                ("accept", "*/*"),
            ]);
            assert!(
                names_others(h.get_all(header::CONNECTION).iter()),
                "{connection}"
            );
            remove_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["accept"], "{connection}");
        }
    }

    #[test]
    fn one_pass_removes_what_the_hop_by_hop_and_claim_strips_removed_one_after_another() {
        let ids = crate::identity::IdentityHeaders::default();
        let messages: [&[(&str, &str)]; 4] = [
            &[("host", "app.test")],
            &[
                ("connection", "keep-alive, X-Custom, x_auth_user"),
                ("x-custom", "1"),
                ("keep-alive", "timeout=5"),
                ("x-auth-user", "mallory"),
                ("X_Auth_Groups", "admin"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-original-url", "/admin"),
                ("te", "trailers"),
                ("accept", "*/*"),
                ("cookie", "a=1"),
            ],
            &[
                ("x-doorman-user", "root"),
                ("remote-user", "root"),
                ("upgrade", "websocket"),
                ("transfer-encoding", "chunked"),
                ("accept", "*/*"),
            ],
            &[
                ("connection", "x-forwarded-host"),
                ("x-forwarded-host", "evil"),
            ],
        ];
        for pairs in messages {
            for forwarding in [false, true] {
                let mut two = map(pairs);
                remove_hop_by_hop(&mut two);
                ids.strip(&mut two);
                if forwarding {
                    remove_forwarding(&mut two);
                }
                // As `Upstream::scan` builds it.
                let initials = match forwarding {
                    true => FORWARDING_INITIALS,
                    false => Initials::NONE,
                };
                let (initials, claims) =
                    ids.claims_and(initials, |name| forwarding && is_forwarding(name));
                let mut one = map(pairs);
                remove_hop_by_hop_and(&mut one, initials, claims);
                let names = |h: &HeaderMap| {
                    let mut n: Vec<String> = h.keys().map(|k| k.to_string()).collect();
                    n.sort();
                    n
                };
                assert_eq!(
                    names(&one),
                    names(&two),
                    "{pairs:?} forwarding: {forwarding}"
                );
            }
        }
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("forwarded", "for=1.2.3.4"),
            ("x-client-ip", "1.2.3.4"),
            ("x_cluster_client_ip", "1.2.3.4"),
            ("fastly-client-ip", "1.2.3.4"),
            ("CF-Connecting-IP", "1.2.3.4"),
            ("x-original-uri", "/admin"),
            ("x-original-method", "GET"),
            ("x-original-host", "admin.test"),
            ("x-forwarded-method", "GET"),
        ]);
        let f = Forwarded {
            peer: HeaderValue::from_static("127.0.0.9"),
            trusted: false,
            proto: "http",
            host: Some(HeaderValue::from_static("app.test")),
        };
        remove_forwarding(&mut h);
        set_forwarded(&mut h, f);
        let mut keys: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }

    #[test]
    fn a_trusted_peer_is_appended_to_the_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
        ]);
        let f = Forwarded {
            peer: HeaderValue::from_static("10.0.0.2"),
            trusted: true,
            proto: "http",
            host: Some(HeaderValue::from_static("internal")),
        };
        set_forwarded(&mut h, f);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "public.example");
    }
}
