//! The tutorial's Express app as a real peer: Express 5 + express-session, its sessions in Redis
//! through connect-redis and node-redis, pinned by `tests/express/package-lock.json` and run by
//! `tests/express/app.mjs` on a free loopback port.
//!
//! The app signs its `connect.sid` cookie with the first of its secrets and accepts any of them
//! (express-session's secret rotation), keeps `sess:<id>` records (or another prefix) in the
//! given Redis, and answers:
//! - `GET /login?user=ID[&roles=a,b]`: `session.userId = ID` (a JSON number when `ID` is all
//!   digits), `session.roles = ["a", "b"]`; `200 {"ok": true, "userId": ...}`;
//! - `GET /dashboard`: `401 {"error": "unauthorized"}` without `session.userId`, else
//!   `200 {"userId", "xAuthUser", "xAuthGroups", "cookie"}` (the headers as the app saw them,
//!   `null` when absent);
//! - `GET /headers`: public, `200 {"xAuthUser", "xAuthGroups", "cookie"}`;
//! - `GET /logout`: destroys the session, `200 {"ok": true}`.
//!
//! It is stopped when dropped, and exits by itself when the test process dies (its stdin is a
//! pipe from here). A missing `node` is a test failure, never a skip (`scripts/test` checks for
//! it); `tests/express/node_modules` is made with `npm ci` from the committed lock file when
//! missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::node::{self, NodeChild, NotReady, OtherLines};

/// How long the app may take to say `listening on PORT` (it gives Redis about two seconds).
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running `node tests/express/app.mjs`; stopped when dropped.
pub struct ExpressApp {
    pub port: u16,
    /// Its log (`express.log`: everything it wrote to stderr, one line per request).
    pub dir: PathBuf,
    process: NodeChild,
}

impl ExpressApp {
    /// Start the app against the Redis at `redis_url` (`redis://127.0.0.1:PORT`), signing its
    /// cookie with `secrets[0]` and accepting all of `secrets`, keeping sessions under the
    /// connect-redis key `prefix` (e.g. `"sess:"`) with a cookie `maxAge` of `max_age`; wait
    /// until it listens. Runs `npm ci` in tests/express first when its node_modules is missing.
    /// Panics with its log if it cannot start.
    pub fn start(redis_url: &str, secrets: &[&str], prefix: &str, max_age: Duration) -> ExpressApp {
        assert!(
            !secrets.is_empty(),
            "the Express app needs at least one secret"
        );
        let max_age_ms = max_age.as_millis();
        assert!(
            max_age_ms > 0,
            "the Express app's cookie maxAge must be at least 1ms"
        );
        ensure_node_modules();
        let dir = super::temp_dir("express");
        let secrets = serde_json::to_string(secrets).expect("secrets JSON");
        let max_age_ms = max_age_ms.to_string();
        let mut last_error = String::new();
        // A free port may be taken by someone else before node binds it: retry on another (only
        // then: any other failure, such as Redis not there, is reported at once).
        for _ in 0..5 {
            let port = super::free_port();
            let env = [
                ("PORT", port.to_string()),
                ("REDIS_URL", redis_url.to_string()),
                ("SECRETS", secrets.clone()),
                ("PREFIX", prefix.to_string()),
                ("MAX_AGE_MS", max_age_ms.clone()),
            ];
            match spawn(&env, &dir, port) {
                Ok(process) => {
                    return ExpressApp { port, dir, process };
                }
                Err(Failed::PortTaken(e)) => last_error = e,
                Err(Failed::Other(e)) => panic!("could not start the Express app: {e}"),
            }
        }
        panic!("could not start the Express app: {last_error}");
    }

    /// `http://127.0.0.1:PORT`: what doorman's `[upstream] url` names.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the app wrote to stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("express.log")).unwrap_or_default()
    }
}

/// tests/express: the app and its package.
fn express_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/express")
}

/// Node and tests/express/node_modules (express, express-session, connect-redis, redis; pinned
/// by the committed lock file).
fn ensure_node_modules() {
    super::node::require_node(
        "the Express peer tests run the tutorial's app (express-session and connect-redis from npm)",
    );
    super::node::npm_ci(&express_dir(), "express-session", &[]);
}

/// Why the app did not start, with its log.
enum Failed {
    /// Its port was taken meanwhile (it exited with status 2): worth another port.
    PortTaken(String),
    /// Anything else: Redis not there, a bad setting, no `listening` line in time.
    Other(String),
}

/// Run `node tests/express/app.mjs` with `env` (stderr to `express.log`) and wait for its
/// `listening on PORT` line. `Err` with its log when it exits first or does not listen in time.
fn spawn(env: &[(&str, String)], dir: &Path, port: u16) -> Result<NodeChild, Failed> {
    let log_path = dir.join("express.log");
    // Appended to: the log of an attempt on a taken port stays, above the next attempt's.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("create express.log");
    let mut cmd = Command::new("node");
    cmd.arg(express_dir().join("app.mjs"))
        .current_dir(express_dir())
        .env_remove("COOKIE_NAME")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(log);
    let ready = format!("listening on {port}");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    node::start(&mut cmd, &ready, START_LIMIT, OtherLines::Kept).map_err(|why| match why {
        NotReady::Spawn(e) => Failed::Other(format!("spawn node: {e}")),
        NotReady::Exited(status, other) => {
            let message = format!(
                "app exited ({status}); stdout {other:?}; log:\n{}",
                read_log()
            );
            if status.code() == Some(2) {
                Failed::PortTaken(message)
            } else {
                Failed::Other(message)
            }
        }
        NotReady::Late(other) => Failed::Other(format!(
            "app not listening after {START_LIMIT:?}; stdout {other:?}; log:\n{}",
            read_log()
        )),
        NotReady::Unexpected(line) => Failed::Other(format!("unexpected {line:?}")),
    })
}
