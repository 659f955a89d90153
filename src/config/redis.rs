//! `[session] redis`, `redis_sentinel` and `redis_cluster`: where the Redis store lives and
//! how doorman proves who it is there.
//!
//! Read here rather than discovered at the first command, so `doorman check` names the key:
//! a URL the redis crate cannot use, a Sentinel table without `master`, Cluster seeds that
//! disagree on their credentials (the crate would take the first seed's and fail later, or,
//! with a password only on a later seed, silently send none), a database other than 0 on a
//! Cluster (which has only database 0).
//!
//! Passwords are secrets: no `Debug` output and no message shows one. URLs are shown through
//! [`redact_url`], which keeps the user name and replaces the password.
//!
//! ```toml
//! redis_sentinel = { master = "mymaster", nodes = ["redis://10.0.0.1:26379"],
//!                    password = "...", sentinel_password = "...", db = 3, tls = false }
//! redis_cluster = ["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"]
//! redis_cluster = { nodes = ["redis://10.0.0.1:7000"], password = "..." }
//! ```
//!
//! `redis_cluster` keeps the list of seed URLs DESIGN.md §3 shows, and also takes a table with
//! `nodes` and `password`, as `redis_sentinel` does: a password then need not be
//! percent-encoded into every seed URL (and repeated, identically, in each of them).

use std::fmt;

use redis::IntoConnectionInfo;

use crate::config::reader::Section;

/// Where the Redis store lives (`[session] redis`, `redis_sentinel` or `redis_cluster`).
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://` or `rediss://` URL of one server (credentials and database in the URL).
    Standalone(String),
    /// `redis_sentinel`: a master found through Sentinels.
    Sentinel(SentinelTarget),
    /// `redis_cluster`: a Redis Cluster, reached through its seeds.
    Cluster(ClusterTarget),
}

/// `redis_sentinel = { master, nodes, password, sentinel_password, db, tls }`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SentinelTarget {
    /// `master`: the name the Sentinels know the master by.
    pub master: String,
    /// `nodes`: `redis://` or `rediss://` URLs of the Sentinels.
    pub nodes: Vec<String>,
    /// `password`: the data nodes' (master's and replicas') `requirepass`.
    pub password: Option<String>,
    /// `sentinel_password`: the Sentinels' own `requirepass`.
    pub sentinel_password: Option<String>,
    /// `db`: the database the sessions live in (default 0).
    pub db: i64,
    /// `tls`: reach the data nodes over TLS. Defaults to whether the Sentinels are reached over
    /// TLS (`rediss://`), which is what doorman did before the key existed.
    pub tls: bool,
}

/// `redis_cluster = [seed URLs]` or `redis_cluster = { nodes, password }`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ClusterTarget {
    /// The seed URLs (all with the same scheme and credentials, database 0).
    pub nodes: Vec<String>,
    /// `password` of the table form: every node's password (the URLs then carry none).
    pub password: Option<String>,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Standalone(url) => {
                f.debug_tuple("Standalone").field(&redact_url(url)).finish()
            }
            RedisTarget::Sentinel(t) => f.debug_tuple("Sentinel").field(t).finish(),
            RedisTarget::Cluster(t) => f.debug_tuple("Cluster").field(t).finish(),
        }
    }
}

impl fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("master", &self.master)
            .field("nodes", &redact_urls(&self.nodes))
            .field("password", &Redacted(&self.password))
            .field("sentinel_password", &Redacted(&self.sentinel_password))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for ClusterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTarget")
            .field("nodes", &redact_urls(&self.nodes))
            .field("password", &Redacted(&self.password))
            .finish()
    }
}

/// An optional secret as `Debug` shows it: whether it is set, never what it is.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

fn redact_urls(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| redact_url(u)).collect()
}

/// `url` with the password of its user info (`scheme://user:PASSWORD@host`) replaced by
/// `<redacted>`: what messages and `Debug` show of a Redis URL. Works on text that is not a
/// valid URL too (it is what a bad-URL message shows).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let user_info = &authority[..at];
    let Some(colon) = user_info.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:<redacted>{}",
        &url[..scheme_end],
        &user_info[..colon],
        &url[scheme_end + at..]
    )
}

/// What doorman needs to know of a Redis URL to compare it with others.
#[derive(Clone, PartialEq, Eq)]
struct Parsed {
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

/// Parse a Redis URL as the config takes it (`redis://` or `rediss://`, as the redis crate
/// reads it), or say what is wrong with it, without showing its password.
fn parse(url: &str) -> Result<Parsed, String> {
    let tls = if url.starts_with("rediss://") {
        true
    } else if url.starts_with("redis://") {
        false
    } else {
        return Err(format!(
            "invalid Redis URL {:?}: expected redis://HOST:PORT/DB or rediss://...",
            redact_url(url)
        ));
    };
    let info = url
        .into_connection_info()
        .map_err(|e| format!("invalid Redis URL {:?}: {e}", redact_url(url)))?;
    let settings = info.redis_settings();
    Ok(Parsed {
        tls,
        username: settings.username().map(str::to_string),
        password: settings.password().map(str::to_string),
        db: settings.db(),
    })
}

/// A Redis URL as the config takes it (`redis://` or `rediss://`, one the redis crate can
/// use), or what is wrong with it.
pub(super) fn redis_url_check(url: &str) -> Result<String, String> {
    parse(url).map(|_| url.to_string())
}

/// The largest `db` doorman takes (Redis's `databases` is an `int`).
const MAX_DB: u64 = i32::MAX as u64;

/// `redis_sentinel = { ... }` of `s`, if present.
pub(super) fn read_sentinel(s: &mut Section<'_>) -> Option<RedisTarget> {
    let mut t = s.sub("redis_sentinel")?;
    let master = t.opt_str("master").map(str::to_string);
    match master.as_deref() {
        None => t.error("master", "required: the name Sentinel knows the master by"),
        Some("") => t.error("master", "must not be empty"),
        Some(_) => {}
    }
    let password = secret(&mut t, "password");
    let sentinel_password = secret(&mut t, "sentinel_password");
    let nodes = t.list("nodes", |url| {
        let parsed = parse(url)?;
        if parsed.db != 0 {
            return Err(format!(
                "a Sentinel has no databases: set db in redis_sentinel instead of the path of {:?}",
                redact_url(url)
            ));
        }
        if sentinel_password.is_some() && (parsed.password.is_some() || parsed.username.is_some()) {
            return Err("credentials here and sentinel_password too: keep one of them".to_string());
        }
        Ok(url.to_string())
    });
    if nodes.is_empty() && !t.has_errors_at("nodes") {
        t.error("nodes", "required: at least one redis:// Sentinel URL");
    }
    let db = t.int("db", 0, 0, MAX_DB);
    let tls_default = nodes.iter().any(|n| n.starts_with("rediss://"));
    let tls = t.bool("tls", tls_default);
    t.finish();
    Some(RedisTarget::Sentinel(SentinelTarget {
        master: master.unwrap_or_default(),
        nodes,
        password,
        sentinel_password,
        db: i64::try_from(db).unwrap_or_default(),
        tls,
    }))
}

/// `redis_cluster` of `s`, in either form, if present.
pub(super) fn read_cluster(s: &mut Section<'_>) -> Option<RedisTarget> {
    if s.is_table("redis_cluster") {
        let mut t = s.sub("redis_cluster")?;
        let password = secret(&mut t, "password");
        let nodes = seeds(&mut t, "nodes", password.is_some());
        if t.has("db") && t.int("db", 0, 0, MAX_DB) != 0 {
            t.error("db", "Redis Cluster has only database 0");
        }
        if nodes.is_empty() && !t.has_errors_at("nodes") {
            t.error("nodes", "required: at least one redis:// seed URL");
        }
        t.finish();
        return Some(RedisTarget::Cluster(ClusterTarget { nodes, password }));
    }
    if !s.has("redis_cluster") {
        return None;
    }
    let nodes = seeds(s, "redis_cluster", false);
    if nodes.is_empty() && !s.has_errors_at("redis_cluster") {
        s.error("redis_cluster", "required: at least one redis:// seed URL");
    }
    Some(RedisTarget::Cluster(ClusterTarget {
        nodes,
        password: None,
    }))
}

/// The Cluster seed URLs at `key` of `s`: each usable, on database 0, and all with the scheme
/// and credentials of the first (the redis crate uses the first seed's for every node).
/// `password_key`: the table form's `password` is set, so the URLs must not carry one.
fn seeds(s: &mut Section<'_>, key: &'static str, password_key: bool) -> Vec<String> {
    let mut first: Option<Parsed> = None;
    s.list(key, |url| {
        let parsed = parse(url)?;
        if parsed.db != 0 {
            return Err(format!(
                "Redis Cluster has only database 0: drop the path of {:?}",
                redact_url(url)
            ));
        }
        if password_key && parsed.password.is_some() {
            return Err(
                "a password here and redis_cluster.password too: keep one of them".to_string(),
            );
        }
        match &first {
            None => first = Some(parsed),
            Some(first) if first.tls != parsed.tls => {
                return Err(
                    "every seed must use the scheme of the first (all redis:// or all rediss://)"
                        .to_string(),
                )
            }
            Some(first)
                if first.username != parsed.username || first.password != parsed.password =>
            {
                return Err("every seed must carry the user and password of the first: \
                     a Cluster's nodes share one set of credentials"
                    .to_string())
            }
            Some(_) => {}
        }
        Ok(url.to_string())
    })
}

/// An optional password at `key`: a non-empty string.
fn secret(t: &mut Section<'_>, key: &'static str) -> Option<String> {
    let value = t.opt_str(key)?;
    if value.is_empty() {
        t.error(key, "must not be empty: leave the key out for no password");
        return None;
    }
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:<redacted>@127.0.0.1:6379/0",
            ),
            (
                "rediss://app:s3cret@redis.test/2?protocol=3",
                "rediss://app:<redacted>@redis.test/2?protocol=3",
            ),
            ("redis://app@h:1", "redis://app@h:1"),
            ("http://u:p@w@h/x@y", "http://u:<redacted>@h/x@y"),
            ("no scheme:pw@h", "no scheme:pw@h"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn debug_never_shows_a_password() {
        let targets = [
            RedisTarget::Standalone("redis://:s3cret@h:1/0".into()),
            RedisTarget::Sentinel(SentinelTarget {
                master: "m".into(),
                nodes: vec!["redis://:s3cret@h:26379".into()],
                password: Some("s3cret".into()),
                sentinel_password: Some("s3cret".into()),
                db: 3,
                tls: false,
            }),
            RedisTarget::Cluster(ClusterTarget {
                nodes: vec!["redis://u:s3cret@h:7000".into()],
                password: Some("s3cret".into()),
            }),
        ];
        for target in targets {
            let shown = format!("{target:?} {target:#?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    #[test]
    fn a_bad_url_is_reported_without_its_password() {
        let e = redis_url_check("http://:s3cret@h:1").unwrap_err();
        assert!(!e.contains("s3cret") && e.contains("<redacted>"), "{e}");
        let e = redis_url_check("redis://:s3cret@0.0.0.0:1").unwrap_err();
        assert!(!e.contains("s3cret") && e.contains("<redacted>"), "{e}");
        assert!(redis_url_check("redis://:s3cret@h:1/2").is_ok());
    }
}
