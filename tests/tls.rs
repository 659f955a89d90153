//! TLS termination (`[listen] tls`, `redirect_http`, `hsts`) over real sockets, with
//! certificates rcgen generates for each test.
//!
//! Clients here are rustls with only the test certificate trusted, so a passing handshake also
//! proves doorman presented the certificate it was configured with. Protocol versions the
//! rustls client cannot speak (TLS 1.1) are sent as raw bytes.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use support::doorman::config;
use support::process::run_cli;
use support::raw::{RawConn, RawResponse};
use support::{echoed, echoed_header, Doorman, DoormanProcess, Upstream};

// ---------------------------------------------------------------------------------------------
// Certificates and clients

/// A self-signed certificate for `localhost` and its key, as PEM, plus the certificate's DER
/// (what a client sees as the peer certificate).
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pair {
    /// ECDSA P-256, key in PKCS#8 (`BEGIN PRIVATE KEY`), as rcgen writes it.
    fn generate() -> Pair {
        let key = rcgen::KeyPair::generate().expect("key");
        Self::sign(key, |k| k.serialize_pem())
    }

    /// The same kind of key, written as SEC1 (`BEGIN EC PRIVATE KEY`, what `openssl ecparam
    /// -genkey` writes).
    fn generate_sec1() -> Pair {
        let key = rcgen::KeyPair::generate().expect("key");
        Self::sign(key, |k| {
            let sec1 = pkcs8_inner_key(&k.serialize_der());
            pem("EC PRIVATE KEY", &sec1)
        })
    }

    /// RSA 2048 (ring cannot generate RSA keys: a fixed test key), written as PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`, what `openssl genrsa -traditional` writes).
    fn rsa_pkcs1() -> Pair {
        let pkcs1_pem = include_str!("fixtures/test-rsa2048.pkcs1.pem");
        let pkcs1 = base64::engine::general_purpose::STANDARD
            .decode(
                pkcs1_pem
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .expect("fixture base64");
        let pkcs8 = rsa_pkcs1_to_pkcs8(&pkcs1);
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_slice().into(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .expect("rsa key");
        Self::sign(key, |_| pkcs1_pem.to_string())
    }

    fn sign(key: rcgen::KeyPair, key_pem: impl Fn(&rcgen::KeyPair) -> String) -> Pair {
        let params =
            rcgen::CertificateParams::new(vec!["localhost".into()]).expect("certificate params");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        Pair {
            cert_pem: cert.pem(),
            key_pem: key_pem(&key),
            der: cert.der().clone(),
        }
    }

    /// Write `cert.pem` and `key.pem` into `dir`.
    fn write(&self, dir: &Path) {
        std::fs::write(dir.join("cert.pem"), &self.cert_pem).expect("write cert");
        std::fs::write(dir.join("key.pem"), &self.key_pem).expect("write key");
    }
}

/// DER: a tag, a length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// Read one DER element at the start of `input`: (tag, contents, rest).
fn der_read(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let tag = input[0];
    let (len, header) = if input[1] < 0x80 {
        (input[1] as usize, 2)
    } else {
        let n = (input[1] & 0x7f) as usize;
        let len = input[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    (tag, &input[header..header + len], &input[header + len..])
}

/// The private key structure inside a PKCS#8 `PrivateKeyInfo` (for EC keys: SEC1's
/// `ECPrivateKey`).
fn pkcs8_inner_key(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der_read(pkcs8);
    let (_, _version, rest) = der_read(info);
    let (_, _algorithm, rest) = der_read(rest);
    let (tag, key, _) = der_read(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}

/// Wrap a PKCS#1 RSA key in PKCS#8 (rsaEncryption, NULL parameters).
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let rsa_encryption = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut info = vec![0x02, 0x01, 0x00];
    info.extend(der(0x30, &rsa_encryption));
    info.extend(der(0x04, pkcs1));
    der(0x30, &info)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A rustls client that trusts exactly `trusted`, speaks `versions` and offers `alpn`.
fn client(
    trusted: &[&Pair],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for pair in trusted {
        roots.add(pair.der.clone()).expect("trust test certificate");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const H1: &[&[u8]] = &[b"http/1.1"];
const H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tls.connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with doorman")
}

/// The certificate doorman presented on `stream`.
fn peer_cert(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a peer certificate")
        .clone()
}

/// An HTTP/1.1 connection over `stream`: send requests on the returned sender.
async fn h1_over(
    stream: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    sender
}

/// `method path` with `Host: localhost` and `body`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

async fn collect(resp: Response<Incoming>) -> (http::response::Parts, Bytes) {
    let (parts, body) = resp.into_parts();
    (parts, body.collect().await.expect("body").to_bytes())
}

/// GET `path` over a fresh HTTP/1.1-over-TLS connection.
async fn get_h1(addr: SocketAddr, pair: &Pair, path: &str) -> (http::response::Parts, Bytes) {
    let mut sender = h1_over(connect(addr, &client(&[pair], BOTH, H1)).await).await;
    let resp = sender
        .send_request(request("GET", path, &[], ""))
        .await
        .expect("response");
    collect(resp).await
}

// ---------------------------------------------------------------------------------------------
// Doorman with TLS

/// Doorman (in-process) in front of a fresh upstream, with `pair` as its certificate and
/// `listen_extra`/`extra` TOML added.
async fn start(pair: &Pair, listen_extra: &str, extra: &str) -> (Doorman, Upstream) {
    let upstream = Upstream::start().await;
    let toml = config(
        &upstream.url(),
        &format!("tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n{listen_extra}"),
        extra,
    );
    let files: [(&str, &[u8]); 2] = [
        ("cert.pem", pair.cert_pem.as_bytes()),
        ("key.pem", pair.key_pem.as_bytes()),
    ];
    (Doorman::toml(&toml).files(&files).start().await, upstream)
}

// ---------------------------------------------------------------------------------------------
// Protocol versions and ALPN

/// TLS 1.3 and 1.2 are both offered (1.2 still matters to older clients and load balancers),
/// each completes a handshake with the configured certificate and serves a request.
#[tokio::test]
async fn tls13_and_tls12_handshakes_succeed() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let stream = connect(doorman.addr, &client(&[&pair], &[version], H1)).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        assert_eq!(peer_cert(&stream), pair.der);
        let mut sender = h1_over(stream).await;
        let resp = sender
            .send_request(request("GET", "/hello", &[], ""))
            .await
            .expect("response");
        let (parts, body) = collect(resp).await;
        assert_eq!(parts.status, StatusCode::OK, "{expected:?}");
        assert_eq!(echoed(&body)["uri"], "/hello");
    }
}

/// A returning client resumes its session (TLS 1.3 and 1.2), and so do a few hundred: doorman
/// issues stateless tickets, where rustls's default, a 256-session cache, would have evicted
/// the first clients' sessions before they came back (issue 20).
#[tokio::test]
async fn returning_clients_resume_their_sessions_by_ticket() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    // One request per connection: a TLS 1.3 ticket arrives after the handshake, with the
    // first bytes the server sends.
    let visit = |tls: TlsConnector| async move {
        let stream = connect(doorman.addr, &tls).await;
        let kind = stream.get_ref().1.handshake_kind();
        let mut sender = h1_over(stream).await;
        let resp = sender
            .send_request(request("GET", "/", &[], ""))
            .await
            .expect("response");
        assert_eq!(collect(resp).await.0.status, StatusCode::OK);
        kind
    };
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let tls = client(&[&pair], &[version], H1);
        assert_eq!(visit(tls.clone()).await, Some(HandshakeKind::Full));
        assert_eq!(
            visit(tls).await,
            Some(HandshakeKind::Resumed),
            "{version:?}"
        );
    }

    const CLIENTS: usize = 300;
    let clients: Vec<TlsConnector> = (0..CLIENTS)
        .map(|_| client(&[&pair], &[&rustls::version::TLS13], H1))
        .collect();
    for tls in &clients {
        assert_eq!(visit(tls.clone()).await, Some(HandshakeKind::Full));
    }
    let mut resumed = 0;
    for tls in clients {
        resumed += usize::from(visit(tls).await == Some(HandshakeKind::Resumed));
    }
    assert_eq!(resumed, CLIENTS, "every returning client resumed");
}

/// A raw TLS 1.1 ClientHello (`client_version` 3.2, no `supported_versions` extension): what
/// an old client sends. rustls cannot speak 1.1 as a client, so the record is built by hand.
/// It carries the extensions a server needs to go on (signature algorithms, groups), so the
/// version is the only thing wrong with it.
fn tls11_client_hello() -> Vec<u8> {
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend((body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
    let mut extensions = Vec::new();
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend(extension(
        0x000d,
        &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ));
    // supported_groups: x25519, secp256r1
    extensions.extend(extension(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]));
    // ec_point_formats: uncompressed
    extensions.extend(extension(0x000b, &[0x01, 0x00]));

    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend([0x42; 32]); // random
    hello.push(0); // no session id
                   // ECDHE-ECDSA-AES128-SHA, ECDHE-RSA-AES128-SHA, AES128-SHA (the TLS 1.1 era)
    hello.extend([0x00, 0x06, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f]);
    hello.extend([0x01, 0x00]); // null compression
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![0x01, 0x00]; // ClientHello, 24-bit length
    handshake.extend((hello.len() as u16).to_be_bytes());
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x02]; // handshake record, TLS 1.1
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// TLS 1.0/1.1 are not offered: a 1.1 ClientHello gets a fatal `protocol_version` alert and
/// the connection is closed, never a ServerHello.
#[tokio::test]
async fn a_tls11_client_hello_is_refused_with_a_protocol_version_alert() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    let mut tcp = TcpStream::connect(doorman.addr).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .expect("doorman closes the connection")
        .ok();
    assert!(reply.len() >= 7, "an alert record came back: {reply:02x?}");
    assert_eq!(
        reply[0], 0x15,
        "an alert record, not a handshake: {reply:02x?}"
    );
    assert_eq!(
        &reply[5..7],
        &[2, 70],
        "fatal protocol_version: {reply:02x?}"
    );
}

/// Browsers offer `h2`; doorman picks it and serves HTTP/2 over TLS, and the upstream learns
/// the client came over https.
#[tokio::test]
async fn alpn_h2_is_negotiated_and_served_as_http2() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    let stream = connect(doorman.addr, &client(&[&pair], BOTH, H2_H1)).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get("https://localhost/over-h2?x=1")
        .version(Version::HTTP_2)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (parts, body) = collect(sender.send_request(req).await.expect("response")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.version, Version::HTTP_2);
    let echo = echoed(&body);
    assert_eq!(echo["uri"], "/over-h2?x=1");
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), ["https"]);
}

/// A client that offers only `http/1.1` gets it, and the upstream sees
/// `X-Forwarded-Proto: https` (whatever the client claimed).
#[tokio::test]
async fn alpn_http11_is_served_and_x_forwarded_proto_is_https() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    let stream = connect(doorman.addr, &client(&[&pair], BOTH, H1)).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = h1_over(stream).await;
    let req = request("GET", "/p", &[("x-forwarded-proto", "http")], "");
    let (parts, body) = collect(sender.send_request(req).await.expect("response")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.version, Version::HTTP_11);
    assert_eq!(
        echoed_header(&echoed(&body), "x-forwarded-proto"),
        ["https"]
    );
}

/// The h2c bypass over TLS: with ALPN `http/1.1`, an `Upgrade: h2c` is served as a plain
/// request, and the HTTP/2 the client speaks next reaches no h2c-capable upstream as a stream.
#[tokio::test]
async fn an_h2c_upgrade_inside_tls_is_never_tunnelled() {
    let pair = Pair::generate();
    let upstream = support::h2c::H2cUpstream::start().await;
    let routes =
        "[[routes]]\npath = \"/admin\"\naccess = \"deny\"\n\n[access]\ndefault = \"public\"\n";
    let toml = config(
        &upstream.url(),
        "tls = { cert = \"cert.pem\", key = \"key.pem\" }\n",
        routes,
    );
    let files: [(&str, &[u8]); 2] = [
        ("cert.pem", pair.cert_pem.as_bytes()),
        ("key.pem", pair.key_pem.as_bytes()),
    ];
    let doorman = Doorman::toml(&toml).files(&files).start().await;
    let stream = connect(doorman.addr, &client(&[&pair], BOTH, H1)).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let outcome = support::h2c::h2c_attack(stream, "/", &["/admin", "/private"]).await;
    assert!(outcome.head.starts_with("HTTP/1.1 200"), "{}", outcome.head);
    assert!(outcome.h2_statuses.is_empty(), "{outcome:?}");
    assert!(upstream.h2_seen().is_empty(), "{:?}", upstream.h2_seen());
    let h1 = upstream.h1_seen();
    assert_eq!(h1.len(), 1, "{h1:?}");
    assert!(h1[0].header("upgrade").is_empty(), "{h1:?}");
    assert!(h1[0].header("http2-settings").is_empty(), "{h1:?}");
}

/// Certificates come with all three common key encodings: PKCS#8, RSA PKCS#1 and EC SEC1.
#[tokio::test]
async fn pkcs8_rsa_and_ec_keys_are_all_served() {
    for (kind, pair) in [
        ("pkcs8", Pair::generate()),
        ("rsa pkcs1", Pair::rsa_pkcs1()),
        ("ec sec1", Pair::generate_sec1()),
    ] {
        let (doorman, _upstream) = start(&pair, "", "").await;
        let (parts, _) = get_h1(doorman.addr, &pair, "/k").await;
        assert_eq!(parts.status, StatusCode::OK, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cookies and headers under TLS

/// Under TLS the session cookie is `Secure` and carries the `__Host-` prefix (so no subdomain
/// and no plain-HTTP response can plant or overwrite it), `HttpOnly` and `SameSite=Lax`.
#[tokio::test]
async fn a_login_under_tls_sets_a_host_prefixed_secure_cookie() {
    let pair = Pair::generate();
    let hash = doorman::config::hash_password("correct horse").expect("hash");
    let users = format!("[users.alice]\npassword = \"{hash}\"\ngroups = []\n");
    let upstream = Upstream::start().await;
    let toml = config(
        &upstream.url(),
        "tls = { cert = \"cert.pem\", key = \"key.pem\" }",
        "[login]\nusers_file = \"users.toml\"\n",
    );
    let files: [(&str, &[u8]); 3] = [
        ("cert.pem", pair.cert_pem.as_bytes()),
        ("key.pem", pair.key_pem.as_bytes()),
        ("users.toml", users.as_bytes()),
    ];
    let doorman = Doorman::toml(&toml).files(&files).start().await;
    let mut sender = h1_over(connect(doorman.addr, &client(&[&pair], BOTH, H1)).await).await;
    let req = request(
        "POST",
        "/_doorman/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "https://localhost"),
        ],
        "username=alice&password=correct+horse&next=%2Fdashboard",
    );
    let (parts, _) = collect(sender.send_request(req).await.expect("response")).await;
    assert_eq!(parts.status, StatusCode::SEE_OTHER);
    assert_eq!(parts.headers["location"], "/dashboard");
    let cookies: Vec<&str> = parts
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = cookies[0];
    assert!(cookie.starts_with("__Host-doorman_session="), "{cookie}");
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    for wanted in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(attributes.contains(&wanted), "{wanted} missing: {cookie}");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "__Host- cookies have no Domain: {cookie}"
    );

    // The cookie works on the next request, and the upstream never sees it.
    let session = cookie.split(';').next().expect("name=value");
    let req = request("GET", "/app", &[("cookie", session)], "");
    let (parts, body) = collect(sender.send_request(req).await.expect("response")).await;
    assert_eq!(parts.status, StatusCode::OK);
    let echo = echoed(&body);
    assert_eq!(echoed_header(&echo, "x-auth-user"), ["alice"]);
    assert!(echoed_header(&echo, "cookie").is_empty(), "{echo}");
}

/// `hsts` adds `Strict-Transport-Security` to everything served over TLS: forwarded responses
/// and doorman's own (login page, refusals).
#[tokio::test]
async fn hsts_is_on_every_response_under_tls() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(
        &pair,
        "hsts = \"365d\"",
        "[access]\ndefault = \"public\"\n[[routes]]\npath = \"/private\"\naccess = \"authenticated\"\n",
    )
    .await;
    for (path, status) in [
        ("/forwarded", StatusCode::OK),
        ("/_doorman/login", StatusCode::OK),
        ("/private", StatusCode::UNAUTHORIZED),
    ] {
        let (parts, _) = get_h1(doorman.addr, &pair, path).await;
        assert_eq!(parts.status, status, "{path}");
        assert_eq!(
            parts
                .headers
                .get("strict-transport-security")
                .map(|v| v.as_bytes()),
            Some(&b"max-age=31536000"[..]),
            "{path}"
        );
    }
}

/// Without `hsts`, no `Strict-Transport-Security` is invented.
#[tokio::test]
async fn without_hsts_no_header_is_sent() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "", "").await;
    let (parts, _) = get_h1(doorman.addr, &pair, "/").await;
    assert!(parts.headers.get("strict-transport-security").is_none());
}

// ---------------------------------------------------------------------------------------------
// The redirect listener

/// The plain listener only sends clients to https: 308 (method kept) to the same host on the
/// https listener's port, path and query intact; no cookie set (even to clear a stale one), no
/// HSTS (browsers ignore it over plain HTTP), and the upstream never hears of it.
#[tokio::test]
async fn the_redirect_listener_answers_308_to_https_and_forwards_nothing() {
    let pair = Pair::generate();
    let (doorman, upstream) = start(
        &pair,
        "redirect_http = \"127.0.0.1:8081\"\nhsts = \"1d\"",
        "",
    )
    .await;
    let redirect = doorman.redirect.expect("redirect listener");
    let https_port = doorman.addr.port();
    let mut conn = RawConn::connect(redirect).await;
    let resp = exchange(
        &mut conn,
        "GET /a/b?x=1&y=%2F HTTP/1.1\r\nHost: LocalHost:8081\r\nCookie: doorman_session=abc\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://localhost:{https_port}/a/b?x=1&y=%2F").as_str())
    );
    assert_eq!(resp.header("set-cookie"), None);
    assert_eq!(resp.header("strict-transport-security"), None);

    // A POST with a body is redirected too (308 keeps the method), not forwarded.
    let resp = exchange(
        &mut conn,
        "POST /_doorman/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nx=1&y",
    )
    .await;
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some(format!("https://localhost:{https_port}/_doorman/login").as_str())
    );

    // No Host, no URL to send the client to.
    let mut conn = RawConn::connect(redirect).await;
    let resp = exchange(&mut conn, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(resp.status, 400);

    assert!(
        upstream.seen_paths().is_empty(),
        "{:?}",
        upstream.seen_paths()
    );
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// Send `text` on `conn` and read one response.
async fn exchange(conn: &mut RawConn, text: &str) -> RawResponse {
    assert!(conn.send(text.as_bytes()).await, "send");
    conn.response(Duration::from_secs(5))
        .await
        .expect("a response")
}

// ---------------------------------------------------------------------------------------------
// Deadlines

/// A client that connects and never starts its handshake is closed once `header_timeout` has
/// passed since accept: the handshake spends from the same window as the request head.
#[tokio::test]
async fn a_handshake_that_never_starts_is_closed_after_header_timeout() {
    let pair = Pair::generate();
    let (doorman, _upstream) = start(&pair, "header_timeout = \"400ms\"", "").await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(doorman.addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed before the test gave up");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, nothing sent: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "closed too early: {waited:?}"
    );

    // A handshake started but stalled half-way is no different.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(doorman.addr).await.expect("connect");
    let hello = tls11_client_hello();
    stalled.write_all(&hello[..10]).await.expect("write");
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("closed before the test gave up");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(350));

    // Meanwhile a prompt client is served.
    let (parts, _) = get_h1(doorman.addr, &pair, "/").await;
    assert_eq!(parts.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Certificate reload (the binary, for SIGHUP)

/// A config for the binary with `dir/cert.pem` and `dir/key.pem` (absolute paths).
fn process_config(upstream: &Upstream, dir: &Path) -> String {
    config(
        &upstream.url(),
        &format!(
            "addr = \"{{addr}}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
        "",
    )
}

/// Replace the files the way renewal tools do: write beside, rename over.
fn replace_files(dir: &Path, cert: &str, key: &str) {
    for (name, contents) in [("cert.pem", cert), ("key.pem", key)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

/// Wait until the process logged `needle` (at most 10s).
fn wait_for_log(doorman: &DoormanProcess, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if doorman.logs().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{needle:?} not logged; log:\n{}", doorman.logs());
}

/// Certificate renewal without a restart: after SIGHUP new handshakes present the new
/// certificate, and a connection opened before it keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_established_connections_continue() {
    let (a, b) = (Pair::generate(), Pair::generate());
    let upstream = Upstream::start().await;
    let certs: PathBuf = support::temp_dir("reload");
    a.write(&certs);
    let doorman = DoormanProcess::spawn(&process_config(&upstream, &certs), &[]);
    let trust_both = client(&[&a, &b], BOTH, H1);

    let old = connect(doorman.addr, &trust_both).await;
    assert_eq!(peer_cert(&old), a.der);
    let mut old = h1_over(old).await;
    let resp = old.send_request(request("GET", "/before", &[], "")).await;
    assert_eq!(resp.expect("response").status(), StatusCode::OK);

    replace_files(&certs, &b.cert_pem, &b.key_pem);
    doorman.signal(libc::SIGHUP);
    wait_for_log(&doorman, "TLS certificate reloaded");

    // A fresh client: one that resumes its earlier TLS session is not shown a certificate at
    // all (the resumed session was authenticated by the first handshake).
    let new = connect(doorman.addr, &client(&[&a, &b], BOTH, H1)).await;
    assert_eq!(
        peer_cert(&new),
        b.der,
        "new handshakes present the new certificate"
    );
    let mut new = h1_over(new).await;
    let resp = new.send_request(request("GET", "/new", &[], "")).await;
    assert_eq!(resp.expect("response").status(), StatusCode::OK);

    let resp = old.send_request(request("GET", "/after", &[], "")).await;
    let (parts, body) = collect(resp.expect("the old connection still works")).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(echoed(&body)["uri"], "/after");
}

/// A renewal gone wrong (a key that does not match, a truncated file) must not take the site
/// down: the reload is refused with a log line naming the file, and the certificate in service
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_new_pair_is_logged_and_the_old_certificate_kept() {
    let (a, b) = (Pair::generate(), Pair::generate());
    let upstream = Upstream::start().await;
    let certs: PathBuf = support::temp_dir("reload-broken");
    a.write(&certs);
    let doorman = DoormanProcess::spawn(&process_config(&upstream, &certs), &[]);
    let trust_both = client(&[&a, &b], BOTH, H1);

    // B's certificate with A's key: they do not belong together. The reload validates the
    // whole config, this pair included, and refuses it as `doorman check` would.
    replace_files(&certs, &b.cert_pem, &a.key_pem);
    doorman.signal(libc::SIGHUP);
    wait_for_log(&doorman, "config reload refused");
    assert!(
        doorman
            .logs()
            .contains(&*certs.join("key.pem").to_string_lossy()),
        "the log names the file:\n{}",
        doorman.logs()
    );
    let stream = connect(doorman.addr, &trust_both).await;
    assert_eq!(
        peer_cert(&stream),
        a.der,
        "the old certificate is still in service"
    );
    let mut sender = h1_over(stream).await;
    let resp = sender.send_request(request("GET", "/still", &[], "")).await;
    assert_eq!(resp.expect("response").status(), StatusCode::OK);

    // A truncated certificate: the same.
    replace_files(&certs, &b.cert_pem[..40], &b.key_pem);
    doorman.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while doorman.logs().matches("config reload refused").count() < 2 {
        assert!(Instant::now() < deadline, "{}", doorman.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stream = connect(doorman.addr, &client(&[&a, &b], BOTH, H1)).await;
    assert_eq!(peer_cert(&stream), a.der);
}

// ---------------------------------------------------------------------------------------------
// doorman check

/// `doorman check` on `toml` (as `dir/proxy.toml`): exit code and stderr.
fn check(dir: &Path, toml: &str) -> (i32, String, String) {
    let file = dir.join("proxy.toml");
    std::fs::write(&file, toml).expect("write config");
    run_cli(&["check", "--config", &file.to_string_lossy()])
}

/// A `doorman check` case: tag, cert file contents, key file contents (None: no file), the
/// message expected (from its position on), and the file it must name.
type CheckCase<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);

const TLS_KEYS: &str = "tls = { cert = \"cert.pem\", key = \"key.pem\" }";

/// A missing or broken certificate or key fails `doorman check` (and so start-up) with a
/// message that names the key and the file, resolved against the config's folder.
#[test]
fn check_names_the_file_when_a_certificate_or_key_is_missing_or_broken() {
    let pair = Pair::generate();
    let other = Pair::generate();
    let toml = config("http://127.0.0.1:3000", TLS_KEYS, "");
    // (tag, certificate file, key file, message, the file it names)
    let cases: [CheckCase; 5] = [
        (
            "missing-cert",
            None,
            Some(&pair.key_pem),
            "2:16: listen.tls.cert: cannot read certificates from ",
            "cert.pem",
        ),
        (
            "garbage-cert",
            Some("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
            Some(&pair.key_pem),
            "2:16: listen.tls.cert: cannot read certificates from ",
            "cert.pem",
        ),
        (
            "missing-key",
            Some(&pair.cert_pem),
            None,
            "2:34: listen.tls.key: cannot read a private key from ",
            "key.pem",
        ),
        (
            "no-key-in-file",
            Some(&pair.cert_pem),
            Some(&pair.cert_pem),
            "2:34: listen.tls.key: cannot read a private key from ",
            "key.pem",
        ),
        (
            "other-key",
            Some(&pair.cert_pem),
            Some(&other.key_pem),
            "2:34: listen.tls.key: cannot use the private key in ",
            "key.pem",
        ),
    ];
    for (tag, cert, key, message, file) in cases {
        let dir = support::temp_dir(tag);
        if let Some(cert) = cert {
            std::fs::write(dir.join("cert.pem"), cert).expect("write");
        }
        if let Some(key) = key {
            std::fs::write(dir.join("key.pem"), key).expect("write");
        }
        let (code, stdout, stderr) = check(&dir, &toml);
        assert_eq!(code, 2, "{tag}: {stderr}");
        assert_eq!(stdout, "", "{tag}");
        let expected = format!(
            "{}:{message}{}",
            dir.join("proxy.toml").display(),
            dir.join(file).display()
        );
        assert!(
            stderr.starts_with(&expected),
            "{tag}:\n{stderr}\nexpected:\n{expected}"
        );
        assert_eq!(stderr.lines().count(), 1, "{tag}: {stderr}");
    }

    // And a good pair passes, with the https listener in the summary.
    let dir = support::temp_dir("good-pair");
    pair.write(&dir);
    let (code, stdout, stderr) = check(&dir, &toml);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("listening on https://127.0.0.1:8080"),
        "{stdout}"
    );
}

/// `hsts` and `redirect_http` mean nothing without TLS and are refused there;
/// `same_site = "none"` needs a Secure cookie, which TLS gives.
#[test]
fn tls_only_settings_are_checked_against_tls() {
    let pair = Pair::generate();
    let dir = support::temp_dir("tls-only");
    pair.write(&dir);
    let file = dir.join("proxy.toml");
    let plain = config(
        "http://127.0.0.1:3000",
        "hsts = \"365d\"\nredirect_http = \"127.0.0.1:8081\"",
        "[session]\nsame_site = \"none\"\n",
    );
    let (code, _, stderr) = check(&dir, &plain);
    assert_eq!(code, 2);
    let lines: Vec<&str> = stderr.lines().collect();
    let f = file.display();
    assert_eq!(
        lines,
        [
            format!("{f}:3:17: listen.redirect_http: only applies with tls: it redirects to the https listener"),
            format!("{f}:2:8: listen.hsts: only applies with tls: browsers ignore it over plain HTTP"),
            format!("{f}:7:13: session.same_site: \"none\" requires TLS: configure [listen] tls, or set cookie_secure = \"always\" behind a TLS load balancer"),
        ]
    );

    let with_tls = config(
        "http://127.0.0.1:3000",
        &format!("{TLS_KEYS}\nhsts = \"365d\"\nredirect_http = \"127.0.0.1:8081\""),
        "[session]\nsame_site = \"none\"\n",
    );
    let (code, _, stderr) = check(&dir, &with_tls);
    assert_eq!(code, 0, "{stderr}");

    let bad = config(
        "http://127.0.0.1:3000",
        "tls = { cert = \"cert.pem\" }\nhsts = \"soon\"\nredirect_http = \"127.0.0.1:8080\"",
        "",
    );
    let (code, _, stderr) = check(&dir, &bad);
    assert_eq!(code, 2);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{f}: listen.tls.key: required: the PEM file with the private key"),
            format!("{f}:4:17: listen.redirect_http: must differ from listen.addr"),
            format!("{f}:3:8: listen.hsts: invalid duration \"soon\": expected a number and a unit (ms, s, m, h, d), such as \"30s\""),
        ]
    );
}
