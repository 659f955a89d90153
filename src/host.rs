//! Host names as routes and `[forward_auth] allowed_hosts` match them.
//!
//! A host is compared without its port and ASCII case-insensitively (DNS names are), and a
//! trailing dot is the same name (`app.example.com.` is `app.example.com`). A pattern is an
//! exact name or `*.` followed by a name: the `*` stands for exactly one label, so
//! `*.example.com` covers `app.example.com` but neither `example.com` nor `a.b.example.com`
//! (a wildcard that reached any depth would hand every future sub-sub-domain the same rule,
//! which is the TLS wildcard rule too).
//!
//! Only names made of letters, digits, `-`, `_` and `.`, and bracketed IPv6 literals, are
//! hosts at all: a `Host` with `%`, `@`, `\` or spaces never matches a pattern, so no
//! encoding trick can make a request look like it names an allowed host.

use std::fmt;

/// One entry of `hosts` or `allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower-case, no port, no trailing dot).
    Exact(String),
    /// `*.suffix`: one label, then `.suffix` (stored lower-case, without the `*.`).
    OneLabel(String),
}

impl HostPattern {
    /// Parse a pattern as written in `proxy.toml`.
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("invalid host {pattern:?}: {why}");
        let (wild, name) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if name.contains('*') {
            return Err(bad(
                "`*` is allowed only as the whole first label, as in \"*.example.com\"",
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(bad("write the host without a port: ports are ignored"));
        }
        let Some(host) = normalise(name) else {
            return Err(bad("not a host name"));
        };
        if wild && !host.contains('.') {
            return Err(bad(
                "a wildcard needs at least two labels after it, as in \"*.example.com\"",
            ));
        }
        Ok(if wild {
            HostPattern::OneLabel(host)
        } else {
            HostPattern::Exact(host)
        })
    }

    /// Whether `host` (as [`normalise`] returns it) is covered.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::OneLabel(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::OneLabel(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Whether any of `patterns` covers `host` (already normalised).
pub fn any_matches(patterns: &[HostPattern], host: &str) -> bool {
    patterns.iter().any(|p| p.matches(host))
}

/// The host of an authority (`Host` header, `:authority`, a URL's authority) as patterns
/// compare it: lower-case, without port or trailing dot. `None` when it is not a plain host
/// name or bracketed IPv6 literal (user info, `%`, spaces, an empty name, a bad port).
pub fn normalise(authority: &str) -> Option<String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let literal = &rest[..end];
        literal.parse::<std::net::Ipv6Addr>().ok()?;
        (&authority[..end + 2], &rest[end + 1..])
    } else {
        // Bytes, not `find(':')`: a char search costs more than these few bytes do.
        match authority.bytes().position(|b| b == b':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if host.starts_with('[') {
        return Some(host.to_ascii_lowercase());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty() && host.len() <= 253 && labels_are_valid(host.as_bytes());
    valid.then(|| host.to_ascii_lowercase())
}

/// Whether every `.`-separated label of `host` is 1 to 63 letters, digits, `-` or `_`. One
/// pass over the bytes: `split('.')` paid a char search per label, on every request's `Host`.
fn labels_are_valid(host: &[u8]) -> bool {
    let mut label = 0;
    for &b in host {
        if b == b'.' {
            if label == 0 {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
    }
    label > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_or_refused() {
        assert_eq!(
            normalise("App.Example.COM:8443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(
            normalise("app.example.com.").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(normalise("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalise("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        for bad in [
            "",
            ":80",
            "a b",
            "user@host",
            "host%2ecom",
            "host\\x",
            "host:",
            "host:8x",
            "host:123456",
            "[::1",
            "[zz]",
            "a..b",
            "*.example.com",
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_wildcard_is_exactly_one_label() {
        let p = HostPattern::parse("*.Example.com").unwrap();
        assert!(p.matches("app.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("a.b.example.com"));
        assert!(!p.matches(".example.com"));
        assert!(!p.matches("appexample.com"));
        assert!(!p.matches("app.example.com.evil"));
        let exact = HostPattern::parse("app.example.com").unwrap();
        assert!(exact.matches("app.example.com"));
        assert!(!exact.matches("app.example.com.evil"));
        assert!(!exact.matches("x.app.example.com"));
        assert_eq!(p.to_string(), "*.example.com");
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "*",
            "*.com",
            "a.*.com",
            "**.example.com",
            "app.example.com:443",
            "",
            "a b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
