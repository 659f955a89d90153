//! OpenID Connect login (DESIGN.md §10).
//!
//! [`provider`] is doorman's side of the conversation with the identity provider: discovery,
//! the authorization URL, the code exchange, the provider's keys and ID-token verification.

mod claims;
mod discovery;
mod error;
mod http;
mod jwks;
pub mod provider;
mod token;

#[cfg(test)]
mod tests;
