//! # doorman
//!
//! A session-aware reverse proxy: it sits in front of an unmodified app, owns the session, and
//! forwards a trusted identity. `../DESIGN.md` (the product contract) says what users can rely
//! on; this crate is how.
//!
//! ## Layout: the request's path through the modules
//!
//! ```text
//! server ── accept (max_connections), TLS handshake (tls), per-connection deadlines (clock),
//!           h1/h2 (hyper-util auto); the redirect listener answers 308 to https
//!  └─ gate ── one request, in order:
//!      head      refuse what no route should judge (CONNECT, lower-case methods, bad Host)
//!      path      normalise once (400 for ambiguous paths)
//!      login     doorman's own endpoints under [login] prefix (login_page, next, users, handoff,
//!                throttle, hasher)
//!      routes    first match → public / authenticated / deny
//!      cookie    read doorman's cookie → session (SessionStore: embedded redb, or Redis)
//!      decide    401 / 302 / 403 / 503, or:
//!      forward   build the upstream request (hop-by-hop, identity strip-then-set, own cookie
//!                removed, X-Forwarded-*), per-worker pool, timeouts, upgrades; clean the response
//!  error ── every cause doorman answers itself, mapped to one status in one place
//! ```
//!
//! * [`config`]: `proxy.toml` (and the users file) → validated, typed [`config::Config`].
//! * [`server`]: listeners (plain, TLS, and the http→https redirect), accept loop, connection
//!   deadlines, graceful shutdown, store upkeep; [`tls`]: certificates and their reload.
//! * [`gate`]: the per-request decision and the session lookup.
//! * [`path`], [`routes`]: the normaliser and the route table.
//! * [`session`]: ids, records, the `SessionStore` seam and its two backends.
//! * [`cookie`]: doorman's cookie in both directions.
//! * [`login`], [`login_page`], [`next`], [`users`], [`handoff`]: logging in and out;
//!   [`throttle`]: attempts counted before their password is checked; [`hasher`]: the fixed
//!   pool of threads that check passwords.
//! * [`identity`]: which headers carry identity, stripped then set.
//! * [`forward`]: the upstream client and the one function that builds upstream requests.
//! * [`error`]: causes → status codes; [`body`]: the response body type.
//! * [`logging`]: `tracing` subscriber set-up.
//!
//! Operations, beside the request path:
//!
//! * [`access`]: the access log line (target `doorman::access`) and per-request metrics,
//!   written when the response body is done; [`audit`]: logins, logouts, revokes (target
//!   `doorman::audit`).
//! * [`metrics`]: the Prometheus registry; [`admin`]: `/healthz`, `/readyz`, `/metrics` on
//!   `[admin] addr`.
//! * [`control`]: the control socket a running doorman answers `doorman sessions revoke` on,
//!   when its sessions are in the embedded store.
//! * [`reload`]: SIGHUP re-reads the config and users file and swaps the live [`gate::App`].

#![recursion_limit = "256"] // the session store futures nest deeply enough to need it

pub mod access;
pub mod admin;
pub mod audit;
pub mod body;
pub mod config;
pub mod control;
pub mod cookie;
pub mod error;
pub mod forward;
pub mod gate;
pub mod handoff;
pub mod hasher;
pub mod head;
pub mod identity;
pub mod lock;
pub mod logging;
pub mod login;
pub mod login_page;
pub mod metrics;
pub mod next;
pub mod path;
pub mod reload;
pub mod routes;
pub mod server;
pub mod session;
pub mod throttle;
pub mod tls;
pub mod users;
pub mod worker;
