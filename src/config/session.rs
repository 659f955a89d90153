//! `[session]` and `[login]`: where sessions live, how the cookie looks, and the login rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::reader::is_token;
use crate::config::reader::{KeyError, Section};
use crate::config::redis::{read_cluster, read_sentinel, redis_url_check, RedisTarget};
use crate::config::source::Document;
use crate::path;

/// Where sessions are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A local redb file (resolved against the config's folder).
    Embedded {
        /// `path`: the store's file.
        path: PathBuf,
    },
    /// `redis`, `redis_sentinel` or `redis_cluster`.
    Redis(RedisTarget),
}

/// The two session clocks (`[session] idle_timeout`, `absolute_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `idle_timeout`: how long a session lives unused (slides with use).
    pub idle: Duration,
    /// `absolute_timeout`: how long a session lives at most (never moves).
    pub absolute: Duration,
}

/// When the cookie gets `Secure` (and the `__Host-`/`__Secure-` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    /// When doorman itself terminates TLS.
    Auto,
    /// Always: doorman runs behind a TLS-terminating load balancer.
    Always,
}

/// The cookie's `SameSite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (the default).
    Lax,
    /// `SameSite=None` (needs `Secure`).
    None,
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `store`: where sessions live.
    pub store: StoreKind,
    /// `cache = true`: hot sessions served from memory, invalidated by Redis (RESP3 client
    /// tracking). Redis standalone or Sentinel only.
    pub cache: bool,
    /// Prefix of every Redis key doorman writes.
    pub key_prefix: String,
    /// `idle_timeout` and `absolute_timeout`.
    pub timeouts: Timeouts,
    /// The configured base name; the cookie actually used may carry a `__Host-`/`__Secure-`
    /// prefix (see `cookie::CookiePolicy`).
    pub cookie_name: String,
    /// `cookie_domain`: the cookie's `Domain`, if any (never with `__Host-`).
    pub cookie_domain: Option<String>,
    /// `cookie_secure`: when the cookie is `Secure`.
    pub cookie_secure: CookieSecure,
    /// `same_site`.
    pub same_site: SameSite,
    /// `Max-Age = absolute_timeout` instead of a browser-session cookie.
    pub persistent: bool,
    /// `recheck`: how often the sessions of open WebSockets and streams are looked up again
    /// (DESIGN.md §11). With the embedded store or the Redis cache their ends arrive at once
    /// anyway; the re-check is then what slides their idle clocks. Changes with a reload.
    pub recheck: Duration,
    /// `[session.express]`: the sessions of an express-session app, taken over (DESIGN.md §12).
    pub express: Option<super::ExpressConfig>,
}

/// `[login]`.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Doorman's own endpoints live below this (`/_doorman`); never forwarded.
    pub prefix: String,
    /// The users file, resolved; `None` when `users_file` is not set and the default
    /// `users.toml` does not exist (no local users: only handoff can log anyone in).
    pub users_file: Option<PathBuf>,
    /// The origin browsers see (`https://app.example.com`); `None`: scheme + Host.
    pub public_origin: Option<String>,
    /// `public_origin`'s host as routes and `allowed_hosts` compare hosts (lower-case, no port
    /// or trailing dot: [`crate::host::normalise`]), derived once at load: the login host of
    /// sign-in across hosts, and the assertion's default audience.
    pub public_host: Option<String>,
    /// Normalised paths whose upstream responses may carry `X-Doorman-Login`.
    pub handoff_paths: Vec<String>,
    /// Groups a handoff may grant.
    pub handoff_groups: Vec<String>,
    /// Failed logins per user and client within `failure_window` before 429.
    pub max_failures: u64,
    /// `failure_window`: the window `max_failures` is counted in.
    pub failure_window: Duration,
}

impl LoginConfig {
    /// Whether a normalised path is one of doorman's own (`/_doorman` or below).
    ///
    /// ASCII case-insensitive whatever `[access] case_sensitive` says: `/_DOORMAN/x` must not
    /// reach an upstream that routes case-insensitively.
    pub fn owns(&self, path: &str) -> bool {
        let n = self.prefix.len();
        path.len() >= n
            && path.as_bytes()[..n].eq_ignore_ascii_case(self.prefix.as_bytes())
            && (path.len() == n || path.as_bytes()[n] == b'/')
    }
}

/// `tls`: whether `[listen]` terminates TLS (which makes the cookie `Secure` under `auto`).
pub(super) fn read_session(
    root: &Document<'_>,
    base: &Path,
    tls: bool,
    errors: &mut Vec<KeyError>,
) -> SessionConfig {
    let mut s = Section::new(root, "session", errors);
    let kind = s.opt_str("store").unwrap_or("embedded");
    let path = s.opt_str("path");
    let redis_url = s.opt_str("redis").map(str::to_string);
    let sentinel = read_sentinel(&mut s);
    let cluster = read_cluster(&mut s);
    let store = match kind {
        "embedded" => {
            for key in ["redis", "redis_sentinel", "redis_cluster"] {
                if s.has(key) {
                    s.error(key, "only applies with store = \"redis\"");
                }
            }
            StoreKind::Embedded {
                path: base.join(path.unwrap_or("var/sessions.db")),
            }
        }
        "redis" => {
            if path.is_some() {
                s.error("path", "only applies with store = \"embedded\"");
            }
            let standalone = redis_url.and_then(|url| match redis_url_check(&url) {
                Ok(url) => Some(RedisTarget::Standalone(url)),
                Err(message) => {
                    s.error("redis", message);
                    None
                }
            });
            let given = [standalone.is_some(), sentinel.is_some(), cluster.is_some()];
            match given.iter().filter(|g| **g).count() {
                1 => {}
                0 if !s.has("redis") => s.error(
                    "store",
                    "store = \"redis\" needs one of redis, redis_sentinel or redis_cluster",
                ),
                0 => {}
                _ => s.error(
                    "store",
                    "set only one of redis, redis_sentinel and redis_cluster",
                ),
            }
            StoreKind::Redis(
                standalone
                    .or(sentinel)
                    .or(cluster)
                    .unwrap_or(RedisTarget::Standalone("redis://127.0.0.1:6379/0".into())),
            )
        }
        other => {
            s.error(
                "store",
                format!("expected \"embedded\" or \"redis\", found {other:?}"),
            );
            StoreKind::Embedded {
                path: base.join("var/sessions.db"),
            }
        }
    };
    let cache = s.bool("cache", false);
    if cache {
        match &store {
            StoreKind::Embedded { .. } => {
                s.error("cache", "only applies with store = \"redis\"");
            }
            StoreKind::Redis(RedisTarget::Cluster(_)) => s.error(
                "cache",
                "not supported with redis_cluster: use redis or redis_sentinel, or cache = false",
            ),
            StoreKind::Redis(_) => {}
        }
    }
    let key_prefix = s.opt_str("key_prefix").unwrap_or("doorman:").to_string();
    let idle = s.duration("idle_timeout", Duration::from_secs(30 * 60));
    let absolute = s.duration("absolute_timeout", Duration::from_secs(12 * 3600));
    if idle > absolute {
        s.error("idle_timeout", "must not be longer than absolute_timeout");
    }
    let cookie_name = s.opt_str("cookie_name").unwrap_or("doorman_session");
    let cookie_name = if !is_token(cookie_name) {
        s.error(
            "cookie_name",
            format!("invalid cookie name {cookie_name:?}: use letters, digits and !#$%&'*+-.^_`|~"),
        );
        "doorman_session".to_string()
    } else if cookie_name.starts_with("__Host-") || cookie_name.starts_with("__Secure-") {
        s.error("cookie_name", "leave out the __Host-/__Secure- prefix: doorman adds the right one when the cookie is Secure");
        "doorman_session".to_string()
    } else {
        cookie_name.to_string()
    };
    let cookie_domain = s.opt_str("cookie_domain").and_then(|d| {
        let ok = !d.is_empty()
            && d.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Some(d.to_ascii_lowercase())
        } else {
            s.error("cookie_domain", format!("invalid domain {d:?}"));
            None
        }
    });
    let cookie_secure = s.choice(
        "cookie_secure",
        CookieSecure::Auto,
        &[
            ("auto", CookieSecure::Auto),
            ("always", CookieSecure::Always),
        ],
    );
    let same_site = s.choice(
        "same_site",
        SameSite::Lax,
        &[
            ("strict", SameSite::Strict),
            ("lax", SameSite::Lax),
            ("none", SameSite::None),
        ],
    );
    // Browsers drop SameSite=None cookies without Secure, and the cookie is Secure only when
    // doorman terminates TLS or is told a load balancer in front does.
    if same_site == SameSite::None && !tls && cookie_secure != CookieSecure::Always {
        s.error(
            "same_site",
            "\"none\" requires TLS: configure [listen] tls, or set cookie_secure = \"always\" behind a TLS load balancer",
        );
    }
    let persistent = s.bool("persistent", false);
    let express = super::express::read_express(&mut s, base, &store);
    let recheck = s.duration("recheck", Duration::from_secs(30));
    if recheck < Duration::from_millis(100) {
        s.error("recheck", "must be at least 100ms");
    }
    s.finish();
    SessionConfig {
        store,
        cache,
        key_prefix,
        timeouts: Timeouts { idle, absolute },
        cookie_name,
        cookie_domain,
        cookie_secure,
        same_site,
        persistent,
        recheck,
        express,
    }
}

pub(super) fn read_login(
    root: &Document<'_>,
    base: &Path,
    errors: &mut Vec<KeyError>,
) -> LoginConfig {
    let mut s = Section::new(root, "login", errors);
    let prefix = s.opt_str("prefix").unwrap_or("/_doorman");
    let prefix = match path::normalise(prefix) {
        Ok(p) if p == "/" => {
            s.error(
                "prefix",
                "must not be \"/\": doorman's endpoints would hide the whole app",
            );
            "/_doorman".to_string()
        }
        Ok(p) if p.trim_end_matches('/') == prefix.trim_end_matches('/') => {
            p.trim_end_matches('/').to_string()
        }
        Ok(p) => {
            s.error(
                "prefix",
                format!("{prefix:?} is not a normalised path; write {p:?}"),
            );
            "/_doorman".to_string()
        }
        Err(e) => {
            s.error("prefix", format!("invalid path {prefix:?}: {e}"));
            "/_doorman".to_string()
        }
    };
    let users_file = match s.opt_str("users_file") {
        Some(f) => Some(base.join(f)),
        None => Some(base.join("users.toml")).filter(|p| p.exists()),
    };
    let public_origin = s
        .opt_str("public_origin")
        .and_then(|o| match parse_origin(o) {
            Ok(o) => Some(o),
            Err(message) => {
                s.error("public_origin", message);
                None
            }
        });
    let public_host = public_origin.as_deref().map(origin_host);
    let handoff_paths = s.list("handoff_paths", |p| match path::normalise(p) {
        Ok(n) if n == p => Ok(n),
        Ok(n) => Err(format!("{p:?} is not a normalised path; write {n:?}")),
        Err(e) => Err(format!("invalid path {p:?}: {e}")),
    });
    let handoff_groups = s.list("handoff_groups", |g| {
        crate::identity::check_name(g)
            .map(|()| g.to_string())
            .map_err(|e| format!("invalid group {g:?}: {e}"))
    });
    let max_failures = s.int("max_failures", 5, 1, 1000);
    let failure_window = s.duration("failure_window", Duration::from_secs(15 * 60));
    s.finish();
    LoginConfig {
        prefix,
        users_file,
        public_origin,
        public_host,
        handoff_paths,
        handoff_groups,
        max_failures,
        failure_window,
    }
}

/// The host of a validated origin (`https://app.example.com:8443` → `app.example.com`): the
/// port does not tell apps apart, as in `allowed_hosts`. An origin host that is not a plain
/// host name (the URI grammar allows `~` or `!`) is kept as the URI parser reads it.
fn origin_host(origin: &str) -> String {
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    crate::host::normalise(authority).unwrap_or_else(|| {
        match authority.parse::<http::uri::Authority>() {
            Ok(a) => a.host().to_string(),
            Err(_) => authority.to_string(),
        }
    })
}

/// `scheme://host[:port]`, lower-cased, without a path: what browsers send as `Origin`.
fn parse_origin(o: &str) -> Result<String, String> {
    let bad = || {
        format!("invalid origin {o:?}: expected https://HOST or https://HOST:PORT, without a path")
    };
    let uri: http::Uri = o.parse().map_err(|_| bad())?;
    let scheme = uri
        .scheme_str()
        .filter(|s| *s == "http" || *s == "https")
        .ok_or_else(bad)?;
    let authority = uri.authority().ok_or_else(bad)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || authority.as_str().contains('@')
    {
        return Err(bad());
    }
    Ok(format!(
        "{scheme}://{}",
        authority.as_str().to_ascii_lowercase()
    ))
}
