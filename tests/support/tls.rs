//! TLS clients for doorman's `[listen] tls`: a doorman with a fresh self-signed certificate and
//! a connector that trusts exactly it, speaking HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::doorman::config;
use super::{Doorman, Upstream};

/// Doorman with `[listen] tls` (a fresh self-signed certificate for `localhost`) and `listen`
/// keys, and a client connector that trusts exactly that certificate and offers only HTTP/1.1.
pub async fn tls_doorman(upstream: &Upstream, listen: &str) -> (Doorman, TlsConnector) {
    tls_doorman_to(&upstream.url(), listen).await
}

/// [`tls_doorman`] in front of the upstream at `upstream_url` (one a test runs itself).
pub async fn tls_doorman_to(upstream_url: &str, listen: &str) -> (Doorman, TlsConnector) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let toml = config(
        upstream_url,
        &format!("tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n{listen}"),
        "",
    );
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let files: [(&str, &[u8]); 2] = [
        ("cert.pem", cert_pem.as_bytes()),
        ("key.pem", key_pem.as_bytes()),
    ];
    let doorman = Doorman::toml(&toml).files(&files).start().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).expect("trust");
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    (doorman, TlsConnector::from(Arc::new(client)))
}

pub async fn tls_connect(
    addr: SocketAddr,
    tls: &TlsConnector,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tls.connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}
