//! `[admin]`: the operations listener (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;

use toml::Table;

use super::reader::{KeyError, Section};

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin listener binds; `None`: no admin listener. Never the public listener:
    /// metrics and readiness are for the operator's network, not the internet.
    pub addr: Option<SocketAddr>,
}

pub(super) fn read_admin(
    root: &Table,
    listen: SocketAddr,
    errors: &mut Vec<KeyError>,
) -> AdminConfig {
    let mut s = Section::new(root, "admin", errors);
    let addr = s
        .has("addr")
        .then(|| s.socket_addr("addr", SocketAddr::from(([127, 0, 0, 1], 9090))));
    if let Some(addr) = addr {
        let same_port = addr.port() == listen.port() && addr.port() != 0;
        let overlapping =
            addr.ip() == listen.ip() || addr.ip().is_unspecified() || listen.ip().is_unspecified();
        if same_port && overlapping {
            s.error(
                "addr",
                format!("{addr} is the public listener ({listen}); the admin listener needs its own address"),
            );
        }
    }
    s.finish();
    AdminConfig { addr }
}
