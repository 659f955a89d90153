//! `[oidc]`: signing in with an OpenID Connect provider (DESIGN.md §10).
//!
//! Everything the flow needs from the operator is checked here, at load, so `doorman check`
//! names the key: the issuer is `https` unless it is a loopback address (a provider on the
//! same machine in development and tests; anything else would send codes and tokens in the
//! clear); the client secret and the state key are read now (a file that cannot be read, or a
//! key that is not 32 bytes, fails the check rather than the first sign-in);
//! `user_claim = "email"` turns on the `email_verified` requirement (an address a provider has
//! not verified is anybody's claim); `allowed_domains` only makes sense with it.
//!
//! The state key seals the sign-in flow's cookie. Every replica must use the
//! same one, so with a Redis store it is required; with the embedded store (one process) it
//! defaults to a file beside the store, made at start-up when missing ([`StateKey::Beside`]).
//! `doorman check` never writes it.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use crate::config::reader::{KeyError, Section};
use crate::config::source::Document;
use crate::config::{SessionConfig, StoreKind};

/// The scopes asked for when `scopes` is not set.
pub const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// The length of the state key, in bytes (ChaCha20-Poly1305).
pub const STATE_KEY_LEN: usize = 32;

/// `[oidc]`, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// `issuer`, exactly as configured: discovery's `issuer` must equal it byte for byte.
    pub issuer: String,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret_file`'s contents (trailing newline removed) or `client_secret`.
    pub client_secret: String,
    /// `scopes`; always holds `openid`.
    pub scopes: Vec<String>,
    /// `user_claim`: the ID token claim that becomes the user name.
    pub user_claim: String,
    /// `groups_claim`: a claim holding a list of strings; `None`: OIDC users have no groups.
    pub groups_claim: Option<String>,
    /// `allowed_domains`, lower-cased; empty: any domain.
    pub allowed_domains: Vec<String>,
    /// `name`: the button's label ("Sign in with {name}"); default: the issuer's host.
    pub name: String,
    /// `ca`: trust roots for the provider instead of the system store.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// `state_key_file`, or the default beside the embedded store.
    pub state_key: StateKey,
    /// `link_local_users`: an OIDC user may have the name of a users-file user.
    pub link_local_users: bool,
}

impl OidcConfig {
    /// Whether the user claim is `email`, which requires `email_verified = true`.
    pub fn requires_verified_email(&self) -> bool {
        self.user_claim == "email"
    }

    /// Whether the provider-facing settings (what discovery, the token exchange and the
    /// verification depend on) are those of `other`: a reload that keeps them keeps the
    /// provider's discovered metadata and keys.
    pub fn same_provider(&self, other: &OidcConfig) -> bool {
        self.issuer == other.issuer
            && self.client_id == other.client_id
            && self.client_secret == other.client_secret
            && self.ca == other.ca
    }
}

impl fmt::Debug for OidcConfig {
    /// The secret and the key are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("user_claim", &self.user_claim)
            .field("groups_claim", &self.groups_claim)
            .field("allowed_domains", &self.allowed_domains)
            .field("name", &self.name)
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("state_key", &self.state_key)
            .field("link_local_users", &self.link_local_users)
            .finish()
    }
}

/// Where the key that seals the flow's cookie comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum StateKey {
    /// `state_key_file`, read at load.
    File(PathBuf, [u8; STATE_KEY_LEN]),
    /// No `state_key_file` with the embedded store: this file beside the store, read at load
    /// when it exists (`Some`), else made at start-up.
    Beside(PathBuf, Option<[u8; STATE_KEY_LEN]>),
}

impl StateKey {
    /// The key's file.
    pub fn path(&self) -> &Path {
        match self {
            StateKey::File(path, _) | StateKey::Beside(path, _) => path,
        }
    }

    /// The key, when it has been read.
    pub fn loaded(&self) -> Option<&[u8; STATE_KEY_LEN]> {
        match self {
            StateKey::File(_, key) => Some(key),
            StateKey::Beside(_, key) => key.as_ref(),
        }
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateKey({})", self.path().display())
    }
}

/// The file the embedded store's default state key lives in: beside the store's file.
pub fn default_state_key_path(store: &Path) -> PathBuf {
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".oidc-state.key");
    store.with_file_name(name)
}

/// Read a state key file: exactly [`STATE_KEY_LEN`] bytes.
pub fn read_state_key(path: &Path) -> Result<[u8; STATE_KEY_LEN], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    <[u8; STATE_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{} holds {} bytes; the state key is exactly {STATE_KEY_LEN} random bytes \
             (head -c {STATE_KEY_LEN} /dev/urandom > {})",
            path.display(),
            bytes.len(),
            path.display()
        )
    })
}

pub(super) fn read_oidc(
    root: &Document<'_>,
    base: &Path,
    session: &SessionConfig,
    errors: &mut Vec<KeyError>,
) -> Option<OidcConfig> {
    root.values().get("oidc")?;
    let mut s = Section::new(root, "oidc", errors);
    let issuer = match s.opt_str("issuer") {
        None => {
            s.error(
                "issuer",
                "required: the provider's issuer URL, such as \"https://sso.example.com\"",
            );
            String::new()
        }
        Some(issuer) => {
            if let Err(message) = check_issuer(issuer) {
                s.error("issuer", message);
            }
            issuer.to_string()
        }
    };
    let client_id = match s.opt_str("client_id") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => {
            s.error(
                "client_id",
                "required: the client id registered at the provider",
            );
            String::new()
        }
    };
    let client_secret = match (s.opt_str("client_secret_file"), s.opt_str("client_secret")) {
        (Some(_), Some(_)) => {
            s.error(
                "client_secret",
                "set client_secret_file or client_secret, not both",
            );
            String::new()
        }
        (Some(file), None) => {
            let path = base.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => text.trim_end_matches(['\r', '\n']).into(),
                Ok(_) => {
                    s.error("client_secret_file", format!("{} is empty", path.display()));
                    String::new()
                }
                Err(e) => {
                    let message = format!("cannot read {}: {e}", path.display());
                    s.error("client_secret_file", message);
                    String::new()
                }
            }
        }
        (None, Some(secret)) if !secret.is_empty() => secret.to_string(),
        _ => {
            s.error(
                "client_secret_file",
                "required: a file holding the client secret (or client_secret inline)",
            );
            String::new()
        }
    };
    let scopes = if s.has("scopes") {
        s.list("scopes", |scope| {
            if !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                Ok(scope.to_string())
            } else {
                Err(format!("{scope:?} is not a scope (RFC 6749 §3.3)"))
            }
        })
    } else {
        DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
    };
    if !scopes.iter().any(|scope| scope == "openid") {
        s.error("scopes", "must include \"openid\"");
    }
    let user_claim = s.opt_str("user_claim").unwrap_or("email").to_string();
    if user_claim.is_empty() {
        s.error(
            "user_claim",
            "must name a claim, such as \"email\" or \"sub\"",
        );
    }
    let groups_claim = s.opt_str("groups_claim").map(str::to_string);
    let allowed_domains = s.list("allowed_domains", |d| {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.contains('@') || d.starts_with('.') {
            Err(format!("{d:?} is not a domain (write \"example.com\")"))
        } else {
            Ok(d)
        }
    });
    if !allowed_domains.is_empty() && user_claim != "email" {
        s.error(
            "allowed_domains",
            "only applies with user_claim = \"email\" (it compares the part after the last @)",
        );
    }
    let name = s
        .opt_str("name")
        .map(str::to_string)
        .unwrap_or_else(|| issuer_host(&issuer).unwrap_or("your provider").to_string());
    let ca = s
        .opt_str("ca")
        .and_then(|ca| match crate::tls::load_certificates(&base.join(ca)) {
            Ok(certs) => Some(certs),
            Err(message) => {
                s.error("ca", message);
                None
            }
        });
    let state_key = match (s.opt_str("state_key_file"), &session.store) {
        (Some(file), _) => {
            let path = base.join(file);
            match read_state_key(&path) {
                Ok(key) => Some(StateKey::File(path, key)),
                Err(message) => {
                    s.error("state_key_file", message);
                    None
                }
            }
        }
        (None, StoreKind::Embedded { path }) => {
            let path = default_state_key_path(path);
            if path.exists() {
                match read_state_key(&path) {
                    Ok(key) => Some(StateKey::Beside(path, Some(key))),
                    Err(message) => {
                        s.error("state_key_file", message);
                        None
                    }
                }
            } else {
                Some(StateKey::Beside(path, None))
            }
        }
        (None, _) => {
            s.error(
                "state_key_file",
                "required with a Redis store: every replica must seal and open the sign-in \
                 flow's cookie with the same 32-byte key",
            );
            None
        }
    };
    let link_local_users = s.bool("link_local_users", false);
    s.finish();
    Some(OidcConfig {
        issuer,
        client_id,
        client_secret,
        scopes,
        user_claim,
        groups_claim,
        allowed_domains,
        name,
        ca,
        state_key: state_key?,
        link_local_users,
    })
}

/// An issuer is an absolute `https` URL without query or fragment (OIDC Discovery §2); plain
/// `http` only on a loopback host.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let uri: http::Uri = issuer
        .parse()
        .map_err(|_| format!("{issuer:?} is not a URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{issuer:?} is not an absolute URL"))?;
    if uri.query().is_some() || issuer.contains('#') {
        return Err(format!("{issuer:?}: an issuer has no query or fragment"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(format!(
            "{issuer:?}: the issuer must be https (plain http only on a loopback address)"
        )),
        _ => Err(format!("{issuer:?}: the issuer must be an https URL")),
    }
}

/// `localhost`, or an address in 127.0.0.0/8 or `::1`.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn issuer_host(issuer: &str) -> Option<&str> {
    let rest = issuer.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(authority).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_unless_loopback() {
        assert!(check_issuer("https://sso.example.com").is_ok());
        assert!(check_issuer("https://login.microsoftonline.com/abc/v2.0").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer("http://[::1]:8080/realms/x").is_ok());
        assert!(check_issuer("http://localhost:9000").is_ok());
        assert!(check_issuer("http://sso.example.com").is_err());
        assert!(check_issuer("https://sso.example.com?x=1").is_err());
        assert!(check_issuer("sso.example.com").is_err());
        assert!(check_issuer("ftp://sso.example.com").is_err());
    }

    fn errors(text: &str) -> Vec<String> {
        crate::config::tests::errors(text)
    }

    /// A config with `[oidc]` keys `keys` (and a readable 32-byte state key unless given).
    fn oidc(keys: &str) -> String {
        format!("[oidc]\n{keys}\n")
    }

    #[test]
    fn every_oidc_problem_names_its_key() {
        let dir = crate::scratch::Scratch::new("oidc-config");
        let short = dir.join("short.key");
        std::fs::write(&short, [1u8; 16]).unwrap();
        let e = errors(&oidc(""));
        assert!(
            e.iter().any(|e| e.contains("oidc.issuer: required")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.contains("oidc.client_id: required")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("oidc.client_secret_file: required")),
            "{e:?}"
        );
        let base = "issuer = \"http://sso.example.com\"\nclient_id = \"d\"\n";
        let e = errors(&oidc(&format!(
            "{base}client_secret_file = \"/nonexistent/secret\"\nscopes = [\"email\"]\n\
             user_claim = \"sub\"\nallowed_domains = [\"example.com\"]\n\
             state_key_file = {short:?}\nextra = 1"
        )));
        for want in [
            "oidc.issuer: \"http://sso.example.com\": the issuer must be https",
            "oidc.client_secret_file: cannot read /nonexistent/secret",
            "oidc.scopes: must include \"openid\"",
            "oidc.allowed_domains: only applies with user_claim = \"email\"",
            "holds 16 bytes; the state key is exactly 32 random bytes",
            "oidc.extra: unknown key",
        ] {
            assert!(e.iter().any(|e| e.contains(want)), "{want}: {e:?}");
        }
        // With Redis, the key must be shared: no default.
        let e = errors(&format!(
            "[session]\nstore = \"redis\"\nredis = \"redis://127.0.0.1:1\"\n{}",
            oidc("issuer = \"https://sso.test\"\nclient_id = \"d\"\nclient_secret = \"s\"")
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("oidc.state_key_file: required with a Redis store")),
            "{e:?}"
        );
    }

    #[test]
    fn a_valid_table_loads_with_its_defaults() {
        let dir = crate::scratch::Scratch::new("oidc-ok");
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text = format!(
            "[session]\npath = {:?}\n[oidc]\nissuer = \"https://sso.example.com/realms/x\"\n\
             client_id = \"doorman\"\nclient_secret_file = {secret:?}\n",
            dir.join("sessions.db")
        );
        let c = crate::config::Config::parse(&text, Path::new("proxy.toml")).unwrap();
        let o = c.oidc.as_ref().unwrap();
        assert_eq!(o.client_secret, "s3cret");
        assert_eq!(o.scopes, ["openid", "email", "profile"]);
        assert!(o.requires_verified_email());
        assert_eq!(o.name, "sso.example.com");
        assert!(!o.link_local_users);
        assert_eq!(
            o.state_key,
            StateKey::Beside(dir.join("sessions.db.oidc-state.key"), None),
            "made at start-up, never by check"
        );
        assert!(!format!("{o:?}").contains("s3cret"));
        assert!(c
            .summary()
            .contains("sign-in with sso.example.com (https://sso.example.com/realms/x)"));
    }

    #[test]
    fn the_default_state_key_sits_beside_the_store() {
        assert_eq!(
            default_state_key_path(Path::new("/var/lib/doorman/sessions.db")),
            Path::new("/var/lib/doorman/sessions.db.oidc-state.key")
        );
    }
}
