//! The access-control sections: `[access]`, `[[routes]]` and `[identity]`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use toml::{Table, Value};

use crate::config::reader::{KeyError, Section};
use crate::config::session::LoginConfig;
use crate::config::source::{Document, Step};
use crate::host::HostPattern;
use crate::identity::{canonical, IdentityHeaders};
use crate::jws::{self, Assertion, Key};
use crate::path;
use crate::routes::{Access, OnUnauthenticated, PathMatcher, Route, RoutePolicy, RouteTable};

/// `[identity]`; `base` is the config's folder (key files are relative to it), `login` gives
/// the assertion's default audience (the host of `public_origin`); with `[forward_auth]`, the
/// request's host as validated by `allowed_hosts` is.
pub(super) fn read_identity(
    root: &Document<'_>,
    base: &Path,
    login: &LoginConfig,
    errors: &mut Vec<KeyError>,
) -> IdentityHeaders {
    let mut s = Section::new(root, "identity", errors);
    let header = |s: &mut Section<'_>, key: &'static str, default: &'static str| {
        let name = s.opt_str(key).unwrap_or(default);
        match HeaderName::from_bytes(name.as_bytes()) {
            // The default, as a static name: cloned into every forwarded request, a name
            // read from the file is a reference count (two atomic operations per request),
            // a static one a copy.
            Ok(h) if h.as_str() == default_lower(default) => {
                HeaderName::from_static(default_lower(default))
            }
            Ok(h) if is_forwardable(h.as_str()) => h,
            Ok(_) => {
                s.error(
                    key,
                    format!("{name:?} is a hop-by-hop header and cannot carry identity"),
                );
                HeaderName::from_static(default_lower(default))
            }
            Err(_) => {
                s.error(key, format!("invalid header name {name:?}"));
                HeaderName::from_static(default_lower(default))
            }
        }
    };
    let user = header(&mut s, "user_header", "X-Auth-User");
    let groups = header(&mut s, "groups_header", "X-Auth-Groups");
    if canonical(user.as_str()) == canonical(groups.as_str()) {
        s.error("groups_header", "must differ from user_header");
    }
    let strip_prefix = s.opt_str("strip_prefix").unwrap_or("X-Auth-");
    let strip_prefix = if strip_prefix.is_empty() {
        s.error(
            "strip_prefix",
            "must not be empty: it would strip every header",
        );
        "x-auth-".to_string()
    } else if HeaderName::from_bytes(strip_prefix.as_bytes()).is_err() {
        s.error(
            "strip_prefix",
            format!("invalid header name prefix {strip_prefix:?}"),
        );
        "x-auth-".to_string()
    } else {
        canonical(strip_prefix).into_owned()
    };
    let strip_headers = s.list("strip_headers", |name| {
        HeaderName::from_bytes(name.as_bytes())
            .map(|h| canonical(h.as_str()).into_owned())
            .map_err(|_| format!("invalid header name {name:?}"))
    });
    let validated_hosts = root.values().contains_key("forward_auth");
    let assertion = read_assertion(&mut s, base, login, validated_hosts, &[&user, &groups]);
    s.finish();
    IdentityHeaders::new(user, groups, strip_prefix, strip_headers).with_assertion(assertion)
}

/// `assertion = { key, issuer, header, ttl, audience, previous_keys, next_keys }` (DESIGN.md
/// §9). Every key file is read and checked now: a key that cannot sign is a `check` error, not
/// a request without its assertion.
fn read_assertion(
    s: &mut Section<'_>,
    base: &Path,
    login: &LoginConfig,
    validated_hosts: bool,
    taken: &[&HeaderName],
) -> Option<Arc<Assertion>> {
    let mut t = s.sub("assertion")?;
    let load = |file: &str| Key::load(&base.join(file));
    let signing = match t.opt_str("key") {
        Some(file) => match load(file) {
            Ok(k) => Some(k),
            Err(message) => {
                t.error("key", message);
                None
            }
        },
        None => {
            if !t.has("key") {
                t.error(
                    "key",
                    "required: an Ed25519 private key file (`doorman keys generate --out FILE`)",
                );
            }
            None
        }
    };
    let issuer = t.opt_str("issuer");
    match issuer {
        Some("") => t.error("issuer", "must not be empty"),
        None if !t.has("issuer") => t.error(
            "issuer",
            "required: the `iss` of every token (an app checks it; never taken from a request)",
        ),
        _ => {}
    }
    let name = t.opt_str("header").unwrap_or(jws::DEFAULT_HEADER);
    let header = match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) if !is_forwardable(h.as_str()) => {
            t.error(
                "header",
                format!("{name:?} is a hop-by-hop header and cannot carry the assertion"),
            );
            None
        }
        Ok(h)
            if taken
                .iter()
                .any(|o| canonical(o.as_str()) == canonical(h.as_str())) =>
        {
            t.error("header", "must differ from user_header and groups_header");
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            t.error("header", format!("invalid header name {name:?}"));
            None
        }
    };
    let ttl = t.duration("ttl", Duration::from_secs(60));
    let ttl_ok = (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&ttl)
        && ttl.subsec_nanos() == 0;
    if !ttl_ok {
        t.error(
            "ttl",
            "must be whole seconds from \"10s\" to \"1h\": long enough to be signed rarely, short \
             enough that a copied token soon stops working",
        );
    }
    let audience = match t.opt_str("audience") {
        Some("") => {
            t.error("audience", "must not be empty");
            None
        }
        Some(a) => Some(a.to_string()),
        None => None,
    };
    let public_host = login.public_host.clone();
    if !t.has("audience") && public_host.is_none() && !validated_hosts {
        t.error(
            "audience",
            "required unless [login] public_origin or [forward_auth] allowed_hosts say which \
             hosts are valid (the request's validated host is then the audience): an audience \
             taken from the Host a client sent would let a token made for one app be accepted \
             by another",
        );
    }
    let mut published = Vec::new();
    for list in ["next_keys", "previous_keys"] {
        let files = t.list(list, |f| Ok(f.to_string()));
        for (i, file) in files.iter().enumerate() {
            match load(file) {
                Ok(k) => published.push(k),
                Err(message) => t.error_item(list, i, message),
            }
        }
    }
    t.finish();
    let (signing, issuer, header) = (signing?, issuer.filter(|i| !i.is_empty())?, header?);
    if !ttl_ok {
        return None;
    }
    Some(Arc::new(Assertion::new(
        header,
        issuer.to_string(),
        ttl,
        audience,
        public_host,
        signing,
        &published,
    )))
}

fn default_lower(default: &'static str) -> &'static str {
    match default {
        "X-Auth-User" => "x-auth-user",
        _ => "x-auth-groups",
    }
}

pub(super) fn read_routes(
    root: &Document<'_>,
    login: &LoginConfig,
    errors: &mut Vec<KeyError>,
) -> RouteTable {
    let mut s = Section::new(root, "access", errors);
    let default = match s.opt_str("default") {
        None => Access::Authenticated,
        Some(v) => parse_access(v).unwrap_or_else(|message| {
            s.error("default", message);
            Access::Authenticated
        }),
    };
    let case_sensitive = s.bool("case_sensitive", false);
    s.finish();

    let mut routes = Vec::new();
    match root.values().get("routes") {
        None => {}
        Some(Value::Array(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                let at = vec![Step::key("routes"), Step::Item(i)];
                match entry {
                    Value::Table(t) => {
                        if let Some(route) = read_route(root, t, at, login, errors) {
                            routes.push(route);
                        }
                    }
                    _ => errors.push(KeyError::value(root, &at, "expected a table ([[routes]])")),
                }
            }
        }
        Some(_) => errors.push(KeyError::value(
            root,
            &[Step::key("routes")],
            "expected an array of tables: write each route as [[routes]]",
        )),
    }
    RouteTable::new(routes, RoutePolicy::new(default), case_sensitive)
}

fn read_route(
    root: &Document<'_>,
    t: &Table,
    at: Vec<Step>,
    login: &LoginConfig,
    errors: &mut Vec<KeyError>,
) -> Option<Route> {
    let mut s = Section::entry(root, at, t, errors);
    let matcher = match (s.opt_str("path"), s.opt_str("glob")) {
        (Some(_), Some(_)) => {
            s.error("glob", "a route has either path or glob, not both");
            None
        }
        (None, None) if !s.has("path") && !s.has("glob") => {
            s.error("path", "a route needs a path or a glob");
            None
        }
        (None, None) => None, // a wrong type, already reported
        (Some(p), None) if !route_path(&mut s, "path", login, p, str::to_string) => None,
        (Some(p), None) => Some((p.to_string(), PathMatcher::prefix(p))),
        (None, Some(g)) if !route_path(&mut s, "glob", login, g, |_| glob_literal_prefix(g)) => {
            None
        }
        (None, Some(g)) => match PathMatcher::glob(g) {
            Ok(m) => Some((g.to_string(), m)),
            Err(message) => {
                s.error("glob", message);
                None
            }
        },
    };
    let access = match s.opt_str("access") {
        None => Access::Authenticated,
        Some(v) => parse_access(v).unwrap_or_else(|message| {
            s.error("access", message);
            Access::Authenticated
        }),
    };
    let methods = s.has("methods").then(|| s.list("methods", parse_method));
    if t.get("methods")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        s.error(
            "methods",
            "must list at least one method (leave it out to match any method)",
        );
    }
    let hosts = s.has("hosts").then(|| s.list("hosts", HostPattern::parse));
    if t.get("hosts")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        s.error(
            "hosts",
            "must list at least one host (leave it out to match any host)",
        );
    }
    let users = s.list("users", |u| Ok(u.to_string()));
    let groups = s.list("groups", |g| Ok(g.to_string()));
    let on_unauthenticated = s.choice(
        "on_unauthenticated",
        OnUnauthenticated::Status401,
        &[
            ("401", OnUnauthenticated::Status401),
            ("redirect", OnUnauthenticated::Redirect),
        ],
    );
    if access != Access::Authenticated {
        for key in ["users", "groups", "on_unauthenticated"] {
            if s.has(key) {
                s.error(
                    key,
                    "only applies to a route with access = \"authenticated\"",
                );
            }
        }
    }
    s.finish();
    let (name, matcher) = matcher?;
    Some(Route {
        name: crate::metrics::RouteLabel::new(&name),
        matcher,
        methods,
        hosts,
        policy: RoutePolicy {
            access,
            users,
            groups,
            on_unauthenticated,
        },
    })
}

/// A route's `path` or `glob` (`key`) must already be in normalised form (so what is written
/// is what matches) and must not lie under doorman's own prefix (such a route could never
/// apply): `covered` gives, from the normalised value, the literal path it covers (a glob's
/// segments before its first wildcard). Reports what is wrong under `key` and answers whether the value is usable.
fn route_path(
    s: &mut Section<'_>,
    key: &'static str,
    login: &LoginConfig,
    value: &str,
    covered: impl FnOnce(&str) -> String,
) -> bool {
    match path::normalise(value) {
        Err(e) => s.error(key, format!("invalid {key} {value:?}: {e}")),
        Ok(n) if n.trim_end_matches('/') != value.trim_end_matches('/') => s.error(
            key,
            format!("{value:?} is not a normalised path; write {n:?}"),
        ),
        Ok(n) if login.owns(&covered(&n)) => s.error(
            key,
            format!(
                "{value:?} is under [login] prefix {:?}, which doorman answers itself",
                login.prefix
            ),
        ),
        Ok(_) => return true,
    }
    false
}

/// The segments of a glob before its first wildcard, as a path (`/_doorman/*` → `/_doorman`).
fn glob_literal_prefix(glob: &str) -> String {
    let literal: Vec<&str> = glob
        .split('/')
        .filter(|s| !s.is_empty())
        .take_while(|s| !s.contains('*'))
        .collect();
    format!("/{}", literal.join("/"))
}

fn parse_access(v: &str) -> Result<Access, String> {
    match v {
        "public" => Ok(Access::Public),
        "authenticated" => Ok(Access::Authenticated),
        "deny" => Ok(Access::Deny),
        other => Err(format!(
            "expected \"public\", \"authenticated\" or \"deny\", found {other:?}"
        )),
    }
}

/// Methods are case-sensitive tokens (RFC 9110 §9.1): `get` would never match a `GET`.
fn parse_method(m: &str) -> Result<Method, String> {
    if m.is_empty()
        || !m
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid method {m:?}: methods are upper-case tokens such as \"GET\""
        ));
    }
    Method::from_bytes(m.as_bytes()).map_err(|_| format!("invalid method {m:?}"))
}

/// Identity must survive to the upstream: a hop-by-hop header would be dropped on the way.
fn is_forwardable(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}
