//! `[forward_auth]`: doorman as the auth server of another gateway (DESIGN.md §8).
//!
//! Both keys are required and must not be empty: a gateway that is trusted by default, or a
//! host list that allows any host, would let anyone who can reach doorman describe an
//! "original request" of their choosing.

use crate::config::net::IpNet;
use crate::config::reader::{KeyError, Section};
use crate::config::source::Document;
use crate::host::HostPattern;

/// `[forward_auth]`, validated.
#[derive(Debug, Clone)]
pub struct ForwardAuthConfig {
    /// Peers that may describe an original request, and whose `X-Forwarded-For`,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host` say who the browser is and what it used.
    pub trusted_gateways: Vec<IpNet>,
    /// Hosts an original request (and an absolute login `next`) may name.
    pub allowed_hosts: Vec<HostPattern>,
}

impl ForwardAuthConfig {
    /// Whether `peer` is one of the trusted gateways.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_gateways.iter().any(|net| net.contains(peer))
    }

    /// Whether `host` (normalised by [`crate::host::normalise`]) is an allowed host.
    pub fn allows_host(&self, host: &str) -> bool {
        crate::host::any_matches(&self.allowed_hosts, host)
    }
}

pub(super) fn read_forward_auth(
    root: &Document<'_>,
    errors: &mut Vec<KeyError>,
) -> Option<ForwardAuthConfig> {
    let raw = root.values().get("forward_auth")?;
    let raw_empty = |key: &str| {
        raw.get(key)
            .and_then(toml::Value::as_array)
            .is_some_and(Vec::is_empty)
    };
    let mut s = Section::new(root, "forward_auth", errors);
    let trusted_gateways = s.list("trusted_gateways", |v| v.parse::<IpNet>());
    let allowed_hosts = s.list("allowed_hosts", HostPattern::parse);
    for (key, what) in [
        (
            "trusted_gateways",
            "the addresses of the gateways that send auth sub-requests, such as [\"127.0.0.1/32\"]",
        ),
        (
            "allowed_hosts",
            "the hosts the gateway serves, such as [\"app.example.com\"]",
        ),
    ] {
        if !s.has(key) {
            s.error(key, format!("required: {what}"));
        } else if raw_empty(key) {
            s.error(key, format!("must not be empty: {what}"));
        }
    }
    s.finish();
    Some(ForwardAuthConfig {
        trusted_gateways,
        allowed_hosts,
    })
}
