//! # doorman
//!
//! A session-aware reverse proxy: it sits in front of an unmodified app, owns the session, and
//! forwards a trusted identity. `../DESIGN.md` (the product contract) says what users can rely
//! on; this crate is how.
//!
//! ## Layout: the request's path through the modules
//!
//! ```text
//! server  ── accept (max_connections), per-connection deadlines (clock), h1/h2 (hyper-util auto)
//!   └─ gate    ── one request: [normalise → endpoint → route → session →] decide, log once
//!        └─ forward ── build the upstream request (hop-by-hop, identity strip, X-Forwarded-*),
//!                      pooled client, timeouts, upgrades; clean the response
//!   error  ── every cause doorman answers itself, mapped to one status in one place
//! ```
//!
//! * [`config`]: `proxy.toml` → validated, typed [`config::Config`] (every error, with its key).
//! * [`server`]: listener, accept loop, connection deadlines, graceful shutdown.
//! * [`gate`]: the per-request decision; today it forwards everything.
//! * [`forward`]: the upstream client and the one function that builds upstream requests.
//! * [`identity`]: which incoming headers are identity claims only doorman may make.
//! * [`error`]: causes → status codes; [`body`]: the response body type.
//! * [`logging`]: `tracing` subscriber set-up.

pub mod body;
pub mod config;
pub mod cookie;
pub mod error;
pub mod forward;
pub mod gate;
pub mod identity;
pub mod logging;
pub mod path;
pub mod routes;
pub mod server;
