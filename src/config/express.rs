//! `[session.express]`: taking over the sessions of an express-session app (DESIGN.md §12).
//!
//! Checked at load so `doorman check` names the key: at least one secret (inline or one per
//! line of `secrets_file`), a `user_field`, and a Redis to read the app's records from — the
//! store's own (`store = "redis"`), or `redis` here (the app's, when doorman keeps its sessions
//! elsewhere). The secrets verify the app's cookies; their `Debug` never shows them.

use std::fmt;
use std::path::Path;

use crate::config::reader::Section;
use crate::config::{RedisTarget, StoreKind};

/// `[session.express]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct ExpressConfig {
    /// `secrets` or `secrets_file`: every secret the app's cookies may be signed with (the
    /// app signs with the first, express-session verifies with any).
    pub secrets: Vec<String>,
    /// `cookie_name` (default `connect.sid`).
    pub cookie_name: String,
    /// `prefix`: connect-redis's key prefix (default `sess:`).
    pub prefix: String,
    /// `user_field`: the session field holding the user (a string, or a number taken as its
    /// decimal string).
    pub user_field: String,
    /// `groups_field`: a session field holding a list of strings, if any.
    pub groups_field: Option<String>,
    /// `forward_cookie` (default true): keep passing the app's cookie while it still reads it.
    pub forward_cookie: bool,
    /// `redis`: the app's Redis, when it is not the store's.
    pub redis: Option<RedisTarget>,
}

impl fmt::Debug for ExpressConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpressConfig")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("cookie_name", &self.cookie_name)
            .field("prefix", &self.prefix)
            .field("user_field", &self.user_field)
            .field("groups_field", &self.groups_field)
            .field("forward_cookie", &self.forward_cookie)
            .field("redis", &self.redis)
            .finish()
    }
}

/// Read `[session.express]` from the `[session]` section `s`, whose store is `store`.
pub(super) fn read_express(
    s: &mut Section<'_>,
    base: &Path,
    store: &StoreKind,
) -> Option<ExpressConfig> {
    let mut t = s.sub("express")?;
    let mut secrets = t.list("secrets", |v: &str| Ok::<_, String>(v.to_string()));
    if let Some(file) = t.opt_str("secrets_file") {
        if !secrets.is_empty() {
            t.error("secrets_file", "set secrets or secrets_file, not both");
        }
        let path = base.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                secrets = text
                    .lines()
                    .map(str::trim_end)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                if secrets.is_empty() {
                    t.error(
                        "secrets_file",
                        format!("{} holds no secret", path.display()),
                    );
                }
            }
            Err(e) => t.error(
                "secrets_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    } else if secrets.is_empty() {
        t.error(
            "secrets",
            "required: the app's express-session secret(s), or secrets_file",
        );
    }
    if secrets.iter().any(String::is_empty) {
        t.error("secrets", "a secret must not be empty");
    }
    let cookie_name = t
        .opt_str("cookie_name")
        .unwrap_or("connect.sid")
        .to_string();
    if cookie_name.is_empty() || cookie_name.contains([';', '=', ',', ' ']) {
        t.error(
            "cookie_name",
            format!("invalid cookie name {cookie_name:?}"),
        );
    }
    let prefix = t.opt_str("prefix").unwrap_or("sess:").to_string();
    let user_field = t.opt_str("user_field").map(str::to_string);
    if user_field.as_deref().is_none_or(str::is_empty) {
        t.error(
            "user_field",
            "required: the session field that holds the user (the tutorial's userId)",
        );
    }
    let groups_field = t.opt_str("groups_field").map(str::to_string);
    let forward_cookie = t.bool("forward_cookie", true);
    let redis = t
        .opt_str("redis")
        .and_then(|url| match super::redis::redis_url_check(url) {
            Ok(url) => Some(RedisTarget::Standalone(url)),
            Err(message) => {
                t.error("redis", message);
                None
            }
        });
    if redis.is_none() && !t.has("redis") && !matches!(store, StoreKind::Redis(_)) {
        t.error(
            "redis",
            "the app's sessions are in Redis: use store = \"redis\" (the app's Redis), or set redis here",
        );
    }
    t.finish();
    Some(ExpressConfig {
        secrets,
        cookie_name,
        prefix,
        user_field: user_field.unwrap_or_default(),
        groups_field,
        forward_cookie,
        redis,
    })
}
