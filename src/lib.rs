//! # doorman
//!
//! A session-aware reverse proxy: it sits in front of an unmodified app, owns the session, and
//! forwards a trusted identity. `../DESIGN.md` (the product contract) says what users can rely
//! on; this crate is how.
//!
//! ## Layers, lowest first
//!
//! A module uses only modules of its own layer or the layers above it in this table (below it
//! in the stack); within a layer, no two modules import each other. `tests/layers.rs` reads
//! this table and the imports of `src/` and fails on any import that points up, so the table
//! is the rule, not a picture of it.
//!
//! ```text
//! base:       lock worker timer clock encoding digest_map accept body metrics audit logging scratch
//! vocabulary: jws seal path host identity routes tls
//! config:     config
//! provider:   oidc
//! store:      session
//! request:    cookie error head exchange
//! access:     access assertion forward_auth
//! login:      login
//! proxy:      forward
//! gate:       access_log gate
//! serve:      reload admin control server
//! fuzz:       fuzzing
//! ```
//!
//! * **base**: no doorman imports outside the layer (`timer` asks `worker`). `lock` (a
//!   poison-tolerant lock), [`worker`] (which serving thread runs the caller), `timer`
//!   (deadline timers a worker keeps and lends to its requests), [`clock`] (the time decisions
//!   are made against),
//!   `encoding` (hex and percent escapes), `digest_map` (maps keyed by a session store
//!   key, without SipHash), `accept` (the accept step every listener shares),
//!   `body` (the response body type), `metrics` (the Prometheus registry), [`audit`],
//!   [`logging`], and `scratch` (unit tests only: a temp folder removed on drop).
//! * **vocabulary**: the types the config is made of: [`jws`] (the signed identity assertion:
//!   keys, tokens, the JWKS), `seal` (authenticated encryption under a 32-byte key), [`path`] (the normaliser), [`host`] (host names as routes and
//!   `allowed_hosts` match them), [`identity`] (identity headers, stripped then set),
//!   [`routes`] (the route table), `tls`.
//! * **config**: `proxy.toml` and the users file → a validated, typed [`config::Config`].
//! * **provider**: `oidc`: the OpenID Connect provider client (discovery, code exchange,
//!   keys, ID-token verification) and the sealed cookie a sign-in's secrets travel in.
//! * **store**: [`session`]: ids, records, the `SessionStore` seam, embedded and Redis.
//! * **request**: what one request is made of: [`cookie`] (doorman's cookie both ways),
//!   `error` (every cause doorman answers itself, mapped to one status in one place),
//!   `head` (heads refused before anything reads them), `exchange` (the per-request value).
//! * **access**: `access`: the session a request carries and whether its route lets it pass;
//!   `assertion`: the signed assertion of that session, for the upstream or a forward-auth
//!   answer; `forward_auth`: the same decision for the original request a gateway describes.
//! * **login**: `login`: doorman's endpoints under `[login] prefix`, throttling, password
//!   checks, the handoff, sign-in with an OpenID Connect provider (`login::openid`).
//! * **proxy**: [`forward`]: the upstream client and the one function that builds upstream
//!   requests.
//! * **gate**: `gate`: one request in and out; `access_log`: its log line.
//! * **serve**: [`server`] (listeners, connections, workers, shutdown), [`reload`] (SIGHUP),
//!   [`admin`] (`/healthz`, `/readyz`, `/metrics`), [`control`] (the embedded store's control
//!   socket, through which the CLI revokes sessions).
//! * **fuzz**: `fuzzing`, only in the fuzz build (`--cfg fuzzing`, `fuzz/`): the entry points
//!   the fuzz targets need into modules private to the crate.
//!
//! ## A request's path through the modules
//!
//! ```text
//! server ── accept (max_connections, per client), TLS handshake (tls), per-connection
//!           deadlines (server::deadlines), h1/h2; the redirect listener answers 308 to https
//!  └─ gate::handle ── opens the request's Exchange, then in order:
//!      head      refuse what no route should judge (CONNECT, lower-case methods, bad Host)
//!      path      normalise once (400 for ambiguous paths)
//!      cookie    read doorman's cookie into the exchange
//!      login     doorman's own endpoints under [login] prefix
//!      routes    first match → public / authenticated / deny
//!      access    look the session up (SessionStore), then 401 / 302 / 403 / 503, or:
//!      assertion the session's signed token, when configured (cached; jws signs)
//!      forward   build the upstream request (hop-by-hop, identity strip-then-set, own cookie
//!                removed, X-Forwarded-*), per-worker pool, timeouts, upgrades; clean the
//!                response; login::handoff acts on X-Doorman-* headers
//!     gate::finish ── Set-Cookie, HSTS, Connection: close, the access log when the body ends
//! ```

#![warn(missing_docs)]
#![recursion_limit = "256"] // the session store futures nest deeply enough to need it

pub(crate) mod accept;
pub(crate) mod access;
pub(crate) mod access_log;
pub mod admin;
pub(crate) mod assertion;
pub mod audit;
pub(crate) mod body;
pub mod clock;
pub mod config;
pub mod control;
pub mod cookie;
pub(crate) mod digest_map;
pub(crate) mod encoding;
pub(crate) mod error;
pub(crate) mod exchange;
pub mod forward;
pub(crate) mod forward_auth;
#[cfg(fuzzing)]
pub mod fuzzing;
pub(crate) mod gate;
pub(crate) mod head;
pub mod host;
pub mod identity;
pub mod jws;
pub(crate) mod lock;
pub mod logging;
pub(crate) mod login;
pub(crate) mod metrics;
pub(crate) mod oidc;
pub mod path;
pub mod reload;
pub mod routes;
#[cfg(test)]
pub(crate) mod scratch;
pub(crate) mod seal;
pub mod server;
pub mod session;
pub(crate) mod timer;
pub(crate) mod tls;
pub mod worker;
