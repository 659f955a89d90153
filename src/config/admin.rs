//! `[admin]`: the operations listener (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;

use crate::config::reader::{KeyError, Section};
use crate::config::source::Document;

/// `[admin]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin listener binds; `None`: no admin listener. Never the public listener:
    /// metrics and readiness are for the operator's network, not the internet.
    pub addr: Option<SocketAddr>,
}

pub(super) fn read_admin(
    root: &Document<'_>,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::errors;
    use crate::config::Config;

    #[test]
    fn the_admin_listener_is_optional_and_validated() {
        let c = Config::parse("", Path::new("proxy.toml")).unwrap();
        assert_eq!(c.admin.addr, None);
        let c = Config::parse("[admin]\naddr = \"127.0.0.1:9090\"\n", Path::new("p.toml")).unwrap();
        assert_eq!(c.admin.addr, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(
            errors("[admin]\naddr = \"localhost\"\n"),
            [
                r#"proxy.toml:2:8: admin.addr: invalid address "localhost": expected IP:PORT, such as "127.0.0.1:8080" or "[::1]:8080""#
            ]
        );
        assert_eq!(
            errors("[admin]\nport = 9090\n"),
            ["proxy.toml:2:1: admin.port: unknown key"]
        );
        for clash in ["127.0.0.1:8080", "0.0.0.0:8080"] {
            assert_eq!(
                errors(&format!("[admin]\naddr = {clash:?}\n")),
                [format!("proxy.toml:2:8: admin.addr: {clash} is the public listener (127.0.0.1:8080); the admin listener needs its own address")]
            );
        }
        assert!(errors("[admin]\naddr = \"127.0.0.2:8080\"\n").is_empty());
    }
}
