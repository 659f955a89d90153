//! Signing in with an OpenID Connect provider (DESIGN.md §10).

pub mod flow;
pub mod seal;
