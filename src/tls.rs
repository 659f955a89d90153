//! TLS termination: PEM files → a rustls server configuration, and certificate reload; and
//! the client settings of doorman's own https connections ([`client_config`]).
//!
//! Why it looks like this:
//!
//! * **ring, TLS 1.2 and 1.3 only.** The provider is chosen explicitly (not the process default)
//!   so the listener's settings cannot drift with whatever else installs a provider; older
//!   protocol versions are not offered at all, so a TLS 1.0/1.1 client gets a
//!   `protocol_version` alert.
//! * **ALPN `h2`, then `http/1.1`.** Browsers get HTTP/2 when they offer it; the connection's
//!   first bytes still decide the protocol (hyper-util's auto builder), so a client that offers
//!   no ALPN at all is served too.
//! * **Resumption by ticket.** A returning client resumes its session with a stateless
//!   ticket, skipping the certificate signature: rustls's ring `Ticketer`, ChaCha20-Poly1305
//!   under random keys that rotate every 6 hours and are never written anywhere. TLS 1.3
//!   resumption still does a fresh (EC)DHE (rustls accepts only `psk_dhe_ke`), so it keeps
//!   forward secrecy; TLS 1.2's has no fresh key exchange, so its secrecy rests on those
//!   short-lived, in-memory keys. rustls's default is a stateful cache of 256 sessions, which a few
//!   hundred clients evict before they come back (benches/run.sh measured 2,024 of 4,745
//!   handshakes resumed at 256 connections); tickets cost no memory per client. A ticket made
//!   by one doorman is not understood by another (each has its own keys): behind a load
//!   balancer without affinity a client sometimes falls back to a full handshake, as with
//!   nginx's default.
//! * **Reload without dropping anyone.** The [`ServerConfig`] is built once, around a
//!   certificate resolver ([`Certificates`]) whose current pair is swapped atomically on
//!   SIGHUP. Every new handshake asks the resolver, so it presents the new certificate;
//!   established connections finished their handshake with the old one and carry on. A new pair
//!   that does not load (missing file, bad PEM, key not matching the certificate) is reported
//!   and the old pair stays in service: a typo during renewal must not take the site down.
//! * **Errors name the file.** `doorman check` and start-up print them as
//!   `FILE: listen.tls.cert: cannot read certificates from /abs/cert.pem: ...`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The ALPN protocols doorman offers, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A certificate chain or key that could not be used; says which file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The certificate file is unreadable, not PEM, or holds no certificate.
    Cert(String),
    /// The key file is unreadable, holds no usable key, or the key does not match the
    /// certificate.
    Key(String),
}

impl TlsError {
    /// The config key the error belongs to (`cert` or `key`, below `listen.tls`).
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert(_) => "cert",
            TlsError::Key(_) => "key",
        }
    }

    /// The message without the key.
    pub fn message(&self) -> &str {
        match self {
            TlsError::Cert(m) | TlsError::Key(m) => m,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listen.tls.{}: {}", self.key(), self.message())
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider of doorman's listener: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls client settings for doorman's own `https://` connections (the upstream, the OpenID
/// provider): ring, TLS 1.2 and 1.3, and the trust roots `ca` when configured, else the system
/// store. `what` names the connection in the warnings about unusable roots.
pub fn client_config(
    ca: Option<&[CertificateDer<'static>]>,
    what: &'static str,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(certs) => {
            // Every certificate parsed as PEM at load; one rustls cannot use is logged and skipped.
            let (_, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
            if ignored > 0 {
                tracing::warn!(
                    ignored,
                    what,
                    "some configured CA certificates were not usable"
                );
            }
        }
        None => {
            // The system trust store; unreadable entries are logged, not fatal (an empty store
            // just makes every https connection fail verification: fail closed).
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, what, "could not load a system trust root");
            }
            let (_, ignored) = roots.add_parsable_certificates(native.certs);
            if ignored > 0 {
                tracing::debug!(ignored, what, "unusable system trust roots skipped");
            }
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every certificate in a PEM file, in order; an empty or unreadable file is an error naming
/// the file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// Load a certificate chain and its private key (PKCS#8, PKCS#1 RSA or SEC1 EC, PEM) and check
/// that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certificates(cert).map_err(TlsError::Cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError::Key(format!(
            "cannot read a private key from {}: {e}",
            key.display()
        ))
    })?;
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| {
        TlsError::Key(format!(
            "cannot use the private key in {} with the certificate in {}: {e}",
            key.display(),
            cert.display()
        ))
    })
}

/// The certificate doorman presents, reloadable from the files it was first read from.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key itself is never shown.
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Read the pair named by `cert` and `key`.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Certificates, TlsError> {
        let pair = load_pair(&cert, &key)?;
        Ok(Certificates {
            cert,
            key,
            current: ArcSwap::from_pointee(pair),
        })
    }

    /// Read the same files again and present the new pair to new handshakes. On error the
    /// pair in service is kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key)?;
        self.current.store(Arc::new(pair));
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The end-entity certificate in service now.
    pub fn current_leaf(&self) -> Option<CertificateDer<'static>> {
        self.current.load().cert.first().cloned()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the listener needs for TLS: the reloadable certificate and the server settings built
/// around it.
#[derive(Debug)]
pub struct Tls {
    certificates: Arc<Certificates>,
    server: Arc<ServerConfig>,
}

impl Tls {
    /// Load the pair and build the server settings (ring; TLS 1.3 and 1.2; ALPN h2, http/1.1).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Tls, TlsError> {
        let certificates = Arc::new(Certificates::load(cert, key)?);
        let resolver: Arc<dyn ResolvesServerCert> = certificates.clone();
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Cert(format!("cannot build the TLS settings: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        server.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Cert(format!("cannot make a session ticket key: {e}")))?;
        Ok(Tls {
            certificates,
            server: Arc::new(server),
        })
    }

    /// The rustls settings every handshake uses.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server)
    }

    /// The certificate in service, and how to reload it.
    pub fn certificates(&self) -> &Certificates {
        &self.certificates
    }

    /// Re-read the certificate and key files; see [`Certificates::reload`].
    pub fn reload(&self) -> Result<(), TlsError> {
        self.certificates.reload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn temp_dir(tag: &str) -> crate::scratch::Scratch {
        crate::scratch::Scratch::new(&format!("tls-unit-{tag}"))
    }

    #[test]
    fn a_key_from_another_certificate_is_refused_naming_both_files() {
        let dir = temp_dir("mismatch");
        let (a_cert, _) = write_pair(dir.path(), "a");
        let (_, b_key) = write_pair(dir.path(), "b");
        let err = Tls::load(a_cert.clone(), b_key.clone()).unwrap_err();
        assert_eq!(err.key(), "key");
        assert!(err.message().contains(&*b_key.to_string_lossy()), "{err}");
        assert!(err.message().contains(&*a_cert.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_pair_in_service() {
        let dir = temp_dir("reload");
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = Tls::load(cert.clone(), key.clone()).unwrap();
        let before = tls.certificates().current_leaf();
        std::fs::write(&key, "not a key").unwrap();
        assert_eq!(tls.reload().unwrap_err().key(), "key");
        assert_eq!(tls.certificates().current_leaf(), before);
        let (new_cert, new_key) = write_pair(dir.path(), "b");
        std::fs::rename(new_cert, &cert).unwrap();
        std::fs::rename(new_key, &key).unwrap();
        tls.reload().unwrap();
        assert_ne!(tls.certificates().current_leaf(), before);
    }

    #[test]
    fn alpn_offers_h2_then_http11() {
        let dir = temp_dir("alpn");
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = Tls::load(cert, key).unwrap();
        let config = tls.server_config();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let dir = temp_dir("debug");
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = Tls::load(cert, key).unwrap();
        let shown = format!("{:?}", tls.certificates());
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
