//! Real gateways in front of doorman, for the forward-auth tests (DESIGN.md §8): Debian's
//! `nginx` (`auth_request`) and `caddy` (`forward_auth`), each started on free loopback ports
//! with the example config the README documents (`examples/nginx-forward-auth.conf`,
//! `examples/Caddyfile.forward-auth`), its addresses replaced, and stopped when dropped.
//!
//! The substitutions are checked: each placeholder must occur in the example exactly as many
//! times as expected, so an edit of the example cannot quietly leave a test running some other
//! config. Whatever a gateway writes (pid, logs, temp files; Caddy's data and config dirs,
//! through `HOME` and `XDG_*`) stays in its own temp dir.
//!
//! A missing `nginx` or `caddy` is a test failure, never a skip (`scripts/test` installs them).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use super::free_port;
use super::login::{form_encode, Answer};

/// The host name the tests' browser uses for the app behind a gateway.
pub const HOST: &str = "app.test";
/// More hosts the Caddy example is served for, for signing in once across hosts: the login
/// host, and another app.
pub const MORE_HOSTS: [&str; 2] = ["login.test", "b.test"];

/// Which gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
}

impl Kind {
    /// The example config the README documents, which the tests run.
    pub fn example(self) -> PathBuf {
        let name = match self {
            Kind::Nginx => "nginx-forward-auth.conf",
            Kind::Caddy => "Caddyfile.forward-auth",
        };
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name)
    }

    /// The status the gateway answers when doorman's check answers 503 (store down): nginx's
    /// `auth_request` turns anything but 2xx/401/403 into 500; Caddy relays the answer.
    pub fn store_down_status(self) -> u16 {
        match self {
            Kind::Nginx => 500,
            Kind::Caddy => 503,
        }
    }
}

/// A certificate for [`HOST`] and its key (PEM), and a client that trusts exactly it.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn generate() -> TestCert {
        let certified =
            rcgen::generate_simple_self_signed(vec![HOST.to_string()]).expect("test certificate");
        TestCert {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().clone(),
        }
    }

    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("trust test certificate");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// A running gateway (its whole process group); stopped when dropped.
pub struct Gateway {
    pub kind: Kind,
    /// The plain HTTP port.
    pub port: u16,
    /// The HTTPS port (nginx started with a certificate).
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
    tls: Option<TlsConnector>,
    child: Option<Child>,
}

impl Gateway {
    /// `kind` in front of the app at `app`, asking doorman at `doorman`.
    pub fn start(kind: Kind, doorman: SocketAddr, app: SocketAddr) -> Gateway {
        Gateway::start_with(kind, doorman, app, None, &[])
    }

    /// [`Gateway::start`], and: with `cert` (nginx only), also serving HTTPS with it (the
    /// browser then uses `https://app.test:TLS_PORT`); every line of the example that contains
    /// one of `drop` removed (to show what those lines protect against).
    pub fn start_with(
        kind: Kind,
        doorman: SocketAddr,
        app: SocketAddr,
        cert: Option<&TestCert>,
        drop: &[&str],
    ) -> Gateway {
        assert!(
            cert.is_none() || kind == Kind::Nginx,
            "only the nginx example terminates TLS"
        );
        let program = require(kind);
        let example = std::fs::read_to_string(kind.example()).expect("read the example config");
        let example: String = example
            .lines()
            .filter(|line| !drop.iter().any(|d| line.contains(d)))
            .map(|line| format!("{line}\n"))
            .collect();
        let dir = super::temp_dir(match kind {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
        });
        let mut last_error = String::new();
        // The ports are free when probed; another process may take one before the gateway
        // binds it, so a failed start is retried on new ports.
        for _ in 0..5 {
            let port = free_port();
            let tls_port = cert.map(|_| free_port());
            let command = match kind {
                Kind::Nginx => nginx(&program, &example, &dir, doorman, app, port, tls_port, cert),
                Kind::Caddy => caddy(&program, &example, &dir, doorman, app, port),
            };
            match spawn(command, &dir, kind, port, tls_port) {
                Ok(child) => {
                    return Gateway {
                        kind,
                        port,
                        tls_port,
                        dir,
                        tls: cert.map(TestCert::connector),
                        child: Some(child),
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start {kind:?}: {last_error}");
    }

    /// `app.test:PORT`: the `Host` a browser sends to the plain port.
    pub fn authority(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// `http://app.test:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// `https://app.test:TLS_PORT`.
    pub fn tls_origin(&self) -> String {
        format!("https://{HOST}:{}", self.tls_port.expect("no TLS port"))
    }

    /// A request to the plain port, as a browser at [`Gateway::origin`] sends it (`Host:
    /// app.test:PORT`), on a connection of its own.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.request_on(HOST, method, path, headers, body).await
    }

    /// A request to the plain port as a browser at `http://HOST:PORT` sends it, for `host`:
    /// `app.test` or another of the hosts the gateway serves ([`MORE_HOSTS`]).
    pub async fn request_on(
        &self,
        host: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let req = build(
            method,
            path,
            &format!("{host}:{}", self.port),
            headers,
            body,
        );
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("connect to {:?} on {}: {e}", self.kind, self.port));
        exchange(tcp, req).await
    }

    /// The same over HTTPS, to the TLS port, with SNI `app.test`.
    pub async fn request_tls(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let port = self.tls_port.expect("no TLS port");
        let tls = self.tls.as_ref().expect("no TLS client");
        let req = build(method, path, &format!("{HOST}:{port}"), headers, body);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to {:?} on {port}: {e}", self.kind));
        let stream = tls
            .connect(ServerName::try_from(HOST).expect("name"), tcp)
            .await
            .expect("TLS handshake with the gateway");
        exchange(stream, req).await
    }

    /// `GET path` on the plain port.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", path, headers, "").await
    }

    /// The login form, posted to `<origin>/_doorman/login` on the plain port (`tls`: the HTTPS
    /// port) with `Origin: origin`.
    pub async fn post_login(
        &self,
        tls: bool,
        origin: &str,
        user: &str,
        password: &str,
        next: Option<&str>,
    ) -> Answer {
        let mut form = format!(
            "username={}&password={}",
            form_encode(user),
            form_encode(password)
        );
        if let Some(next) = next {
            form.push_str(&format!("&next={}", form_encode(next)));
        }
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", origin),
        ];
        if tls {
            self.request_tls("POST", "/_doorman/login", &headers, &form)
                .await
        } else {
            self.request("POST", "/_doorman/login", &headers, &form)
                .await
        }
    }

    /// What the gateway logged so far (nginx's error log, Caddy's output), for failure messages.
    pub fn log(&self) -> String {
        let name = match self.kind {
            Kind::Nginx => "error.log",
            Kind::Caddy => "caddy.log",
        };
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).expect("pid");
            // The gateway leads its own process group (nginx's workers are in it): SIGTERM asks
            // for a fast shutdown, SIGKILL to the group if it lingers.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// `text` with every `from` replaced by `to`, asserting `from` occurs exactly `times` times.
pub fn substitute(text: &str, from: &str, to: &str, times: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, times,
        "the example config has {found} of {from:?}, the test expects {times}"
    );
    text.replace(from, to)
}

#[allow(clippy::too_many_arguments)]
fn nginx(
    program: &Path,
    example: &str,
    dir: &Path,
    doorman: SocketAddr,
    app: SocketAddr,
    port: u16,
    tls_port: Option<u16>,
    cert: Option<&TestCert>,
) -> Command {
    let mut conf = substitute(example, "127.0.0.1:8080", &doorman.to_string(), 1);
    conf = substitute(&conf, "127.0.0.1:3000", &app.to_string(), 1);
    conf = substitute(
        &conf,
        "server_name app.example.com;",
        "server_name app.test;",
        1,
    );
    conf = substitute(&conf, "listen 80;", &format!("listen 127.0.0.1:{port};"), 1);
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    match (tls_port, cert) {
        (Some(tls_port), Some(cert)) => {
            std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
            std::fs::write(&key_path, &cert.key_pem).expect("write key");
            conf = substitute(
                &conf,
                "listen 443 ssl;",
                &format!("listen 127.0.0.1:{tls_port} ssl;"),
                1,
            );
            conf = substitute(
                &conf,
                "/etc/ssl/certs/app.example.com.pem",
                path_str(&cert_path),
                1,
            );
            conf = substitute(
                &conf,
                "/etc/ssl/private/app.example.com.key",
                path_str(&key_path),
                1,
            );
        }
        _ => {
            // Plain HTTP only: without a listen ... ssl, nginx never loads the certificate.
            conf = substitute(&conf, "listen 443 ssl;", "", 1);
            conf = substitute(&conf, "ssl_certificate ", "# ssl_certificate ", 1);
            conf = substitute(&conf, "ssl_certificate_key ", "# ssl_certificate_key ", 1);
        }
    }
    std::fs::write(dir.join("doorman.conf"), conf).expect("write nginx site config");
    // The main config: what /etc/nginx/nginx.conf has, with every path in this dir.
    let d = path_str(dir);
    let main = format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         \x20   access_log {d}/access.log;\n\
         \x20   client_body_temp_path {d}/tmp_body;\n\
         \x20   proxy_temp_path {d}/tmp_proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp_fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp_uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp_scgi;\n\
         \x20   include {d}/doorman.conf;\n\
         }}\n"
    );
    let main_path = dir.join("nginx.conf");
    std::fs::write(&main_path, main).expect("write nginx.conf");
    let mut cmd = Command::new(program);
    cmd.arg("-p")
        .arg(format!("{d}/"))
        .arg("-c")
        .arg(&main_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    cmd
}

fn caddy(
    program: &Path,
    example: &str,
    dir: &Path,
    doorman: SocketAddr,
    app: SocketAddr,
    port: u16,
) -> Command {
    let mut conf = substitute(example, "127.0.0.1:8080", &doorman.to_string(), 2);
    conf = substitute(&conf, "127.0.0.1:3000", &app.to_string(), 1);
    conf = substitute(
        &conf,
        "\napp.example.com {",
        &format!(
            "\nhttp://{HOST}:{port}, http://{}:{port}, http://{}:{port} {{",
            MORE_HOSTS[0], MORE_HOSTS[1]
        ),
        1,
    );
    // Global options first: no admin endpoint (parallel tests would share :2019), no
    // certificates. (What Caddy saves, its autosave.json, goes to XDG_CONFIG_HOME: this dir.)
    let conf = format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{conf}");
    let file = dir.join("Caddyfile");
    std::fs::write(&file, conf).expect("write Caddyfile");
    let mut cmd = Command::new(program);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"));
    cmd
}

/// Start `cmd` in its own process group, output to the gateway's log, and wait until it
/// accepts connections on `port` (and `tls_port`). `Err` if it exits first (typically: a port
/// was taken) or never listens.
fn spawn(
    mut cmd: Command,
    dir: &Path,
    kind: Kind,
    port: u16,
    tls_port: Option<u16>,
) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let out = std::fs::File::create(dir.join(match kind {
        Kind::Nginx => "stderr.log",
        Kind::Caddy => "caddy.log",
    }))
    .expect("create log");
    let err = out.try_clone().expect("log handle");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {kind:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listening = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = ["stderr.log", "error.log", "caddy.log"]
                .iter()
                .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(format!("{kind:?} exited ({status}):\n{log}"));
        }
        if listening(port) && tls_port.is_none_or(listening) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let pid = i32::try_from(child.id()).expect("pid");
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!("{kind:?} never listened on {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The gateway's program, or a clear failure: these tests must fail, never pass silently,
/// without it.
fn require(kind: Kind) -> PathBuf {
    let (name, candidates): (&str, &[&str]) = match kind {
        Kind::Nginx => ("nginx", &["/usr/sbin/nginx", "/usr/bin/nginx"]),
        Kind::Caddy => ("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]),
    };
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(found) = found {
        return found;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} is required in CI (CI=true) and is not installed; scripts/test installs it from Debian's packages");
    }
    panic!("{name} is not installed: these tests need the real gateway (Debian/Ubuntu: apt-get install {name}, or run scripts/test)");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn build(
    method: &str,
    path: &str,
    authority: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

/// One HTTP/1.1 request on `io`; the whole answer.
async fn exchange<IO>(io: IO, req: Request<Full<Bytes>>) -> Answer
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("http/1.1 handshake with the gateway");
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .expect("request through the gateway");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}
