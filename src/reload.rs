//! Live reload (`SIGHUP`): one mechanism that re-reads everything the config names and swaps
//! it in atomically.
//!
//! [`Reloader::reload`] loads `proxy.toml` and the users file exactly as start-up and
//! `doorman check` do. If that fails, every problem is logged with the message `doorman check`
//! prints, `doorman_config_reloads_total{result="failure"}` counts it, and the running config
//! keeps serving. Otherwise a new `App` is built around the *same* session
//! store (sessions, throttling counters and metrics carry over) and stored in the
//! [`Live`] pointer with one atomic swap: new requests see the new routes, identity headers,
//! upstream (a fresh client and pool), timeouts and users; requests in flight hold an `Arc` of
//! the old `App` and finish under it. A password session whose user left the users file is
//! refused from the next request on, because sessions are checked against the users file at
//! request time.
//!
//! Some settings are bound to resources made once at start-up: the listening sockets, the
//! connection limits and deadlines of the accept loop, and the session store (its kind, location,
//! cache, key prefix and the timeouts it applies). A change to one of those is logged as needing a
//! restart and the running value is kept — never silently ignored, never half-applied.

use std::fmt::Debug;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use crate::config::{Config, ConfigErrors};
use crate::gate::Live;
use crate::metrics::Reload;

/// Re-reads the config file into the live state.
#[derive(Clone)]
pub struct Reloader {
    file: PathBuf,
    live: Live,
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid (every problem, as `doorman check` prints them).
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The new state (upstream client, OpenID Connect runtime) could not be built.
    #[error("{0}")]
    App(#[from] crate::gate::BuildError),
    /// The certificate or key could not be loaded (the old pair stays in service).
    #[error("TLS certificate: {0}")]
    Tls(String),
    /// The reading task failed.
    #[error("reload task failed: {0}")]
    Task(String),
}

impl Reloader {
    /// A reloader for `file` (the path start-up read) feeding `live`.
    pub fn new(file: PathBuf, live: Live) -> Reloader {
        Reloader { file, live }
    }

    /// Reload now; logs the outcome and counts it. Returns the settings that need a restart.
    pub async fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let result = self.try_reload().await;
        let metrics = Arc::clone(&self.live.load().shared.metrics);
        match &result {
            Ok(_) => metrics.reload(Reload::success),
            Err(ReloadError::Invalid(errors)) => {
                metrics.reload(Reload::failure);
                for problem in &errors.0 {
                    warn!(%problem, "config reload refused; the running config keeps serving");
                }
            }
            Err(error) => {
                metrics.reload(Reload::failure);
                warn!(%error, "config reload failed; the running config keeps serving");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let file = self.file.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&file))
            .await
            .map_err(|e| ReloadError::Task(e.to_string()))?;
        let mut config = loaded.map_err(ReloadError::Invalid)?;
        let current = self.live.load_full();
        let restart = keep_restart_only(&current.shared.config, &mut config);
        // The certificate and key in service are re-read too (the new config validated this
        // very pair a moment ago): one SIGHUP, one mechanism, for config, users and TLS.
        if let Some(tls) = &current.shared.config.listen.tls {
            tls.reload().map_err(|e| ReloadError::Tls(e.to_string()))?;
            let certs = tls.certificates();
            info!(cert = %certs.cert_path().display(), key = %certs.key_path().display(), "TLS certificate reloaded; new handshakes use it");
        }
        let app = current.reloaded(Arc::new(config))?;
        let summary = app.shared.config.summary();
        let exchanges = Arc::clone(app.shared.store.live());
        self.live.store(Arc::new(app));
        // The long-lived exchanges are judged again under the new config (DESIGN.md §11).
        exchanges.suspect_all();
        info!(%summary, "config reloaded");
        Ok(restart)
    }
}

/// Copy into `new` the running values of settings that cannot change without a restart, and
/// log (and return) each one the file changed.
pub fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    // One line per setting that only a restart can change: compare, and log the difference.
    fn check<T: PartialEq + Debug>(
        changed: &mut Vec<&'static str>,
        name: &'static str,
        old: &T,
        new: &T,
    ) {
        if old != new {
            warn!(
                setting = name, running = ?old, file = ?new,
                "this setting cannot change while doorman runs; restart to apply it (the running value stays)"
            );
            changed.push(name);
        }
    }
    let (o, n) = (&old.listen, &new.listen);
    check(&mut changed, "listen.addr", &o.addr, &n.addr);
    check(
        &mut changed,
        "listen.shutdown_grace",
        &o.shutdown_grace,
        &n.shutdown_grace,
    );
    check(
        &mut changed,
        "listen.header_timeout",
        &o.header_timeout,
        &n.header_timeout,
    );
    check(
        &mut changed,
        "listen.idle_timeout",
        &o.idle_timeout,
        &n.idle_timeout,
    );
    check(
        &mut changed,
        "listen.max_connections",
        &o.max_connections,
        &n.max_connections,
    );
    check(
        &mut changed,
        "listen.send_timeout",
        &o.send_timeout,
        &n.send_timeout,
    );
    check(
        &mut changed,
        "listen.max_connections_per_client",
        &o.max_connections_per_client,
        &n.max_connections_per_client,
    );
    check(
        &mut changed,
        "listen.max_header_bytes",
        &o.max_header_bytes,
        &n.max_header_bytes,
    );
    let tls_files = |tls: &Option<Arc<crate::tls::Tls>>| {
        tls.as_ref().map(|t| {
            let c = t.certificates();
            (c.cert_path().to_path_buf(), c.key_path().to_path_buf())
        })
    };
    let (old_tls, new_tls) = (tls_files(&o.tls), tls_files(&n.tls));
    check(&mut changed, "listen.tls", &old_tls, &new_tls);
    check(
        &mut changed,
        "listen.redirect_http",
        &o.redirect_http,
        &n.redirect_http,
    );
    check(&mut changed, "admin.addr", &old.admin.addr, &new.admin.addr);
    let (o, n) = (&old.session, &new.session);
    check(&mut changed, "session.store", &o.store, &n.store);
    check(&mut changed, "session.cache", &o.cache, &n.cache);
    check(
        &mut changed,
        "session.key_prefix",
        &o.key_prefix,
        &n.key_prefix,
    );
    check(
        &mut changed,
        "session.idle_timeout",
        &o.timeouts.idle,
        &n.timeouts.idle,
    );
    check(
        &mut changed,
        "session.absolute_timeout",
        &o.timeouts.absolute,
        &n.timeouts.absolute,
    );
    // The listener's settings are the start-up ones (trusted_proxies, hsts and body_timeout are
    // read per request, so they change live; the TLS pair in service is re-read from the
    // running paths); the store's are the opened store's.
    new.listen = crate::config::ListenConfig {
        trusted_proxies: new.listen.trusted_proxies.clone(),
        hsts: new.listen.hsts,
        body_timeout: new.listen.body_timeout,
        ..old.listen.clone()
    };
    new.admin = old.admin.clone();
    new.session.store = old.session.store.clone();
    new.session.cache = old.session.cache;
    new.session.key_prefix = old.session.key_prefix.clone();
    new.session.timeouts = old.session.timeouts;
    changed
}

/// Install the `SIGHUP` handler. Call it before binding: once the port accepts, a supervisor
/// may signal at any time, and SIGHUP's default action would end the process.
pub fn sighup() -> io::Result<Signal> {
    signal(SignalKind::hangup())
}

/// Reload on every `SIGHUP`, one at a time, for as long as the process runs.
pub async fn on_sighup(mut hup: Signal, reloader: Reloader) {
    while hup.recv().await.is_some() {
        info!(file = %reloader.file.display(), "SIGHUP received: reloading the config");
        // The outcome is logged and counted inside.
        let _ = reloader.reload().await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn parse(listen: &str) -> Config {
        Config::parse(&format!("[listen]\n{listen}\n"), Path::new("proxy.toml")).unwrap()
    }

    #[test]
    fn body_timeout_changes_live_and_the_per_connection_limits_need_a_restart() {
        let old = parse("");
        let mut new =
            parse("body_timeout = \"5s\"\nsend_timeout = \"5s\"\nmax_connections_per_client = 3");
        let changed = keep_restart_only(&old, &mut new);
        assert_eq!(
            changed,
            ["listen.send_timeout", "listen.max_connections_per_client"]
        );
        assert_eq!(new.listen.body_timeout, Duration::from_secs(5));
        assert_eq!(new.listen.send_timeout, old.listen.send_timeout);
        assert_eq!(
            new.listen.max_connections_per_client,
            old.listen.max_connections_per_client
        );
    }
}
