//! `proxy.toml`: read, validate, and turn into typed settings before anything binds.
//!
//! The loader is "parse, don't validate": [`Config::load`] either returns a [`Config`] whose
//! fields are already the types the proxy uses (`Duration`, `SocketAddr`, a split upstream
//! URL), or a [`ConfigErrors`] listing every problem it found, one per line: `FILE:LINE:COL:
//! message` for TOML syntax, `FILE:LINE:COL: key.path: message` for a key or value the file
//! has (a misspelt key adds `did you mean ...?`), and `FILE: key.path: message` where nothing
//! in the file can be pointed at (a required key left out). `doorman check` prints exactly that
//! list; start-up refuses to bind with it.
//!
//! Sections of the contract that this build does not implement yet are refused with a message
//! saying so rather than accepted and ignored: a `[[routes]]` table that silently did nothing
//! would leave paths the operator meant to protect open.

mod admin;
mod express;
mod gateway;
mod net;
mod openid;
mod policy;
mod reader;
mod redis;
mod session;
mod source;
mod spelling;
mod users;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use rustls::pki_types::CertificateDer;

use crate::identity::IdentityHeaders;
use crate::routes::RouteTable;
use crate::tls::Tls;
pub use users::{hash_password, User, Users, UsersError};

pub use self::redis::{redact_url, ClusterTarget, RedisTarget, SentinelTarget};
pub use admin::AdminConfig;
pub use express::ExpressConfig;
pub use gateway::ForwardAuthConfig;
pub use net::{client_group, IpNet};
pub use openid::{read_state_key, OidcConfig, StateKey, STATE_KEY_LEN};
use reader::Section;
pub use reader::{parse_duration, KeyError};
pub use session::{CookieSecure, LoginConfig, SameSite, SessionConfig, StoreKind, Timeouts};
pub use source::Position;
use source::{Document, Step};

/// The validated configuration of one doorman process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, as given (used in messages).
    pub file: PathBuf,
    /// `[listen]`.
    pub listen: ListenConfig,
    /// `[upstream]`: the app doorman forwards to. `None` only in auth-only mode: a
    /// `[forward_auth]` table without an `[upstream]` one (DESIGN.md §8); without
    /// `[forward_auth]`, a missing `[upstream]` means its defaults, as it always did.
    pub upstream: Option<UpstreamConfig>,
    /// `[forward_auth]`: doorman answers a gateway's auth sub-requests.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// `[oidc]`: sign in with an OpenID Connect provider (DESIGN.md §10).
    pub oidc: Option<OidcConfig>,
    /// `[access]` and `[[routes]]`: which rule applies to each request.
    pub routes: RouteTable,
    /// `[identity]`: the headers that carry identity, and what else to strip.
    pub identity: IdentityHeaders,
    /// `[login]`.
    pub login: LoginConfig,
    /// `[session]`.
    pub session: SessionConfig,
    /// The users file's users (none without a users file).
    pub users: Arc<Users>,
    /// `[admin]`: the operations listener.
    pub admin: AdminConfig,
    /// Settings that are valid but risky: `doorman check` prints them, start-up logs them.
    pub warnings: Vec<String>,
}

/// `[listen]`: the public listener and the limits that protect it.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// `addr`: where the main listener binds.
    pub addr: SocketAddr,
    /// How long in-flight requests may run after SIGTERM/SIGINT before connections are dropped.
    pub shutdown_grace: Duration,
    /// From accept to the first complete request head, and from a request's first byte to its
    /// complete head: bounds slowloris without cutting idle keep-alive connections short.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once; beyond it, accept waits.
    pub max_connections: usize,
    /// Request line plus headers; larger heads are answered 431.
    pub max_header_bytes: usize,
    /// A request body that makes no progress for this long, while the upstream could take
    /// more of it, ends the exchange (DESIGN.md §14): `408` before a response started, else
    /// the connection (h1) or stream (h2) is closed. The login form is read under it whole.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long drops the client. A quiet
    /// stream (SSE, long poll) is not a stalled write; upgraded tunnels are exempt.
    pub send_timeout: Duration,
    /// Connections served at once per client address (IPv6: per /64); beyond it, new
    /// connections from that client are closed at accept, so one client's slow connections
    /// cannot take every `max_connections` slot.
    pub max_connections_per_client: usize,
    /// Peers whose `X-Forwarded-*` headers are kept (and appended to) instead of replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// `tls = { cert, key }`: the listener speaks HTTPS with this certificate (reloadable on
    /// SIGHUP). Loaded and checked here, so a broken pair fails `doorman check` and start-up.
    pub tls: Option<Arc<Tls>>,
    /// A plain listener that sends every request to the https URL (308); only with `tls`.
    pub redirect_http: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age` for responses over TLS; only with `tls`.
    pub hsts: Option<Duration>,
}

/// `[upstream]`: the one app doorman fronts.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `http` or `https`, from `url`.
    pub scheme: Scheme,
    /// Host and port, from `url`.
    pub authority: Authority,
    /// Extra trust anchors for an `https://` upstream (`ca = "ca.pem"`); `None` means the
    /// system trust store.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// `connect_timeout`: how long a new upstream connection may take.
    pub connect_timeout: Duration,
    /// From the end of the request body to the whole response head (and, while a request body
    /// is in flight, how long the upstream may leave it untaken); a slow client's upload is
    /// `body_timeout`'s business. Response bodies stream without a deadline.
    pub timeout: Duration,
    /// Pooled connections idle longer than this are closed, so doorman never reuses a socket
    /// the upstream is about to close (Node closes idle sockets after 5s).
    pub pool_idle_timeout: Duration,
    /// `pool_max_idle`: idle pooled connections kept per serving thread (default 64).
    pub pool_max_idle: usize,
    /// Forward the client's `Host` instead of the upstream's authority.
    pub preserve_host: bool,
    /// `upgrades`: the protocols a client may switch to through doorman, lower-cased (default
    /// `["websocket"]`). `h2c` is refused at load: HTTP/2 reaches doorman over TLS ALPN or
    /// prior knowledge, which doorman terminates itself; a tunnelled h2c connection would carry
    /// requests doorman never sees (DESIGN.md §3, §5).
    pub upgrades: Vec<String>,
}

impl UpstreamConfig {
    /// The URL as written back for messages: `http://127.0.0.1:3000`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// Everything wrong with a config file, in the order found.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One problem with a config file.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read at all.
    Io {
        /// The file concerned.
        file: PathBuf,
        /// What reading it failed with.
        error: std::io::Error,
    },
    /// The TOML itself is malformed; the position is 1-based.
    Syntax {
        /// The file concerned.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown, has the wrong type, or a value that cannot be used (placed in the
    /// file by [`KeyError::at`] when it can be).
    Key {
        /// The file concerned.
        file: PathBuf,
        /// The key and what is wrong with it.
        error: KeyError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { file, error } => {
                write!(f, "{}: cannot read config file: {}", file.display(), error)
            }
            ConfigError::Syntax {
                file,
                line,
                col,
                message,
            } => {
                write!(f, "{}:{}:{}: {}", file.display(), line, col, message)
            }
            ConfigError::Key { file, error } => match error.at {
                Some(at) => write!(f, "{}:{at}: {error}", file.display()),
                None => write!(f, "{}: {error}", file.display()),
            },
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Sections this build reads.
const KNOWN: &[&str] = &[
    "listen",
    "upstream",
    "access",
    "routes",
    "identity",
    "login",
    "session",
    "admin",
    "forward_auth",
    "oidc",
];
/// Sections the contract defines that later work adds; refused until they are enforced.
const NOT_YET: &[&str] = &[];

impl Config {
    /// Read and validate `file`. Relative paths inside it resolve against its folder.
    pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
        match std::fs::read_to_string(file) {
            Ok(text) => Config::parse(&text, file),
            Err(error) => Err(ConfigErrors(vec![ConfigError::Io {
                file: file.to_path_buf(),
                error,
            }])),
        }
    }

    /// Validate `text` as if read from `file` (which names it in messages and anchors relative
    /// paths).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let root = Document::parse(text).map_err(|e| {
            let at = e.span().map_or(Position { line: 1, col: 1 }, |s| {
                Position::of(text, s.start)
            });
            let message = e.message().trim().to_string();
            ConfigErrors(vec![ConfigError::Syntax {
                file: file.to_path_buf(),
                line: at.line,
                col: at.col,
                message,
            }])
        })?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut errors = Vec::new();
        let listen = read_listen(&root, &base, &mut errors);
        let forward_auth = gateway::read_forward_auth(&root, &mut errors);
        let upstream = (root.values().contains_key("upstream") || forward_auth.is_none())
            .then(|| read_upstream(&root, &base, &mut errors));
        let login = session::read_login(&root, &base, &mut errors);
        let tls = listen.tls.is_some();
        let session = session::read_session(&root, &base, tls, &mut errors);
        let oidc = openid::read_oidc(&root, &base, &session, &mut errors);
        let identity = policy::read_identity(&root, &base, &login, &mut errors);
        let routes = policy::read_routes(&root, &login, &mut errors);
        let admin = admin::read_admin(&root, listen.addr, &mut errors);
        let mut top = Section::root(&root, &mut errors);
        for key in KNOWN {
            top.known(key);
        }
        for key in NOT_YET {
            top.refuse(key, "not supported by this build of doorman yet");
        }
        top.finish();
        if let (Some(origin), Some(fa)) = (&login.public_origin, &forward_auth) {
            // The login host serves doorman's login behind the same gateway: its requests are
            // judged as any allowed host's (the login form's Origin check among them).
            if !login
                .public_host
                .as_deref()
                .is_some_and(|h| fa.allows_host(h))
            {
                errors.push(KeyError::value(
                    &root,
                    &[Step::key("login"), Step::key("public_origin")],
                    format!(
                        "with [forward_auth], the login host of {origin:?} must be one of \
                         forward_auth.allowed_hosts"
                    ),
                ));
            }
        }
        let file = file.to_path_buf();
        let mut all: Vec<ConfigError> = errors
            .into_iter()
            .map(|error| ConfigError::Key {
                file: file.clone(),
                error,
            })
            .collect();
        let users = match &login.users_file {
            None => Users::empty(),
            Some(path) => match Users::load(path) {
                Ok(users) => users,
                Err(UsersError::Read(message)) => {
                    // At `users_file` when the file names it; the default users.toml has no
                    // position.
                    let at = [Step::key("login"), Step::key("users_file")];
                    let error = KeyError::value(&root, &at, message);
                    all.push(ConfigError::Key {
                        file: file.clone(),
                        error,
                    });
                    Users::empty()
                }
                Err(UsersError::Invalid(errors)) => {
                    all.extend(errors.into_iter().map(|error| ConfigError::Key {
                        file: path.clone(),
                        error,
                    }));
                    Users::empty()
                }
            },
        };
        let mut warnings = Vec::new();
        if let (Some(domain), Some(_)) = (&session.cookie_domain, &forward_auth) {
            warnings.push(format!(
                "{}: session.cookie_domain: every host under {domain:?} is trusted with \
                 sessions (a sibling host can read, plant or shadow the cookie); leave it out \
                 and set [login] public_origin to sign in once with a cookie per host",
                file.display()
            ));
        }
        if all.is_empty() {
            Ok(Config {
                file,
                listen,
                upstream,
                forward_auth,
                oidc,
                routes,
                identity,
                login,
                session,
                users: Arc::new(users),
                admin,
                warnings,
            })
        } else {
            Err(ConfigErrors(all))
        }
    }

    /// The one-line summary `doorman check` prints.
    pub fn summary(&self) -> String {
        let scheme = if self.listen.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mode = match (&self.upstream, &self.forward_auth) {
            (Some(up), None) => format!("forwarding to {}", up.url()),
            (Some(up), Some(_)) => format!("forwarding to {} and answering forward-auth", up.url()),
            (None, _) => "auth-only (forward-auth, no upstream)".to_string(),
        };
        let oidc = match &self.oidc {
            Some(oidc) => format!(", sign-in with {} ({})", oidc.name, oidc.issuer),
            None => String::new(),
        };
        format!(
            "{}: ok: listening on {scheme}://{}, {mode}{oidc}, {} route(s), default access {}, {} user(s)",
            self.file.display(),
            self.listen.addr,
            self.routes.routes().len(),
            self.routes.default_policy().access,
            self.users.len(),
        )
    }
}

fn read_listen(root: &Document<'_>, base: &Path, errors: &mut Vec<KeyError>) -> ListenConfig {
    let mut s = Section::new(root, "listen", errors);
    let defaults_addr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let addr = s.socket_addr("addr", defaults_addr);
    let tls = read_tls(&mut s, base);
    let tls_asked = s.has("tls");
    let redirect_http = s
        .has("redirect_http")
        .then(|| s.socket_addr("redirect_http", addr));
    if redirect_http.is_some() {
        if !tls_asked {
            s.error(
                "redirect_http",
                "only applies with tls: it redirects to the https listener",
            );
        } else if redirect_http == Some(addr) {
            s.error("redirect_http", "must differ from listen.addr");
        }
    }
    let hsts = s
        .has("hsts")
        .then(|| s.duration("hsts", Duration::from_secs(365 * 86_400)));
    if hsts.is_some() && !tls_asked {
        s.error(
            "hsts",
            "only applies with tls: browsers ignore it over plain HTTP",
        );
    }
    let listen = ListenConfig {
        addr,
        shutdown_grace: s.duration("shutdown_grace", Duration::from_secs(10)),
        header_timeout: s.duration("header_timeout", Duration::from_secs(10)),
        idle_timeout: s.duration("idle_timeout", Duration::from_secs(60)),
        max_connections: s.int("max_connections", 10_000, 1, 1_000_000) as usize,
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        max_header_bytes: s.int("max_header_bytes", 32_768, 8_192, 1 << 20) as usize,
        body_timeout: s.duration("body_timeout", Duration::from_secs(30)),
        send_timeout: s.duration("send_timeout", Duration::from_secs(60)),
        max_connections_per_client: s.int("max_connections_per_client", 256, 1, 1_000_000) as usize,
        trusted_proxies: s.list("trusted_proxies", |v| v.parse::<IpNet>()),
        tls,
        redirect_http,
        hsts,
    };
    s.finish();
    listen
}

/// `tls = { cert = "cert.pem", key = "key.pem" }`: both files are read and checked now, so a
/// broken pair is a config error (with the file's absolute path), not a failed handshake later.
fn read_tls(s: &mut Section<'_>, base: &Path) -> Option<Arc<Tls>> {
    let mut t = s.sub("tls")?;
    let mut path = |key: &'static str, what: &str| {
        let given = t.opt_str(key);
        if given.is_none() && !t.has(key) {
            t.error(key, format!("required: the PEM file with the {what}"));
        }
        given.map(|p| {
            let joined = base.join(p);
            std::path::absolute(&joined).unwrap_or(joined)
        })
    };
    let cert = path("cert", "certificate chain");
    let key = path("key", "private key");
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => match Tls::load(cert, key) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                t.error(e.key(), e.message());
                None
            }
        },
        _ => None,
    };
    t.finish();
    tls
}

fn read_upstream(root: &Document<'_>, base: &Path, errors: &mut Vec<KeyError>) -> UpstreamConfig {
    let mut s = Section::new(root, "upstream", errors);
    let url = s.opt_str("url").unwrap_or("http://127.0.0.1:3000");
    let (scheme, authority) = match parse_upstream_url(url) {
        Ok(parts) => parts,
        Err(message) => {
            s.error("url", message);
            (Scheme::HTTP, Authority::from_static("127.0.0.1:3000"))
        }
    };
    let ca = s.opt_str("ca").and_then(|ca| {
        if scheme != Scheme::HTTPS {
            s.error("ca", "only applies to an https:// upstream url");
            return None;
        }
        match crate::tls::load_certificates(&base.join(ca)) {
            Ok(certs) => Some(certs),
            Err(message) => {
                s.error("ca", message);
                None
            }
        }
    });
    let upstream = UpstreamConfig {
        scheme,
        authority,
        ca,
        connect_timeout: s.duration("connect_timeout", Duration::from_secs(3)),
        timeout: s.duration("timeout", Duration::from_secs(60)),
        pool_idle_timeout: s.duration("pool_idle_timeout", Duration::from_secs(4)),
        pool_max_idle: usize::try_from(s.int("pool_max_idle", 64, 1, 100_000)).unwrap_or(64),
        preserve_host: s.bool("preserve_host", false),
        upgrades: read_upgrades(&mut s),
    };
    s.finish();
    upstream
}

/// `[upstream] upgrades`: protocol tokens (RFC 9110 §7.8), lower-cased; never `h2c`.
fn read_upgrades(s: &mut Section<'_>) -> Vec<String> {
    if !s.has("upgrades") {
        return vec!["websocket".to_string()];
    }
    s.list("upgrades", |token| {
        let name = token.split('/').next().unwrap_or_default();
        if name.is_empty() || !token.bytes().all(|b| reader::is_tchar(b) || b == b'/') {
            return Err(format!("{token:?} is not a protocol name"));
        }
        if name.eq_ignore_ascii_case("h2c") || name.eq_ignore_ascii_case("h2") {
            return Err(format!(
                "{token:?} can never be tunnelled: HTTP/2 reaches doorman over TLS (ALPN) or \
                 prior knowledge, and doorman terminates it itself"
            ));
        }
        Ok(token.to_ascii_lowercase())
    })
}

/// `http://host:port` or `https://host:port`, with nothing after the authority: doorman forwards
/// the path it matched exactly, so a base path on the upstream would be a second, silent rewrite.
fn parse_upstream_url(url: &str) -> Result<(Scheme, Authority), String> {
    let bad = |why: &str| format!("invalid upstream url {url:?}: {why}");
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        Some(_) => return Err(bad("the scheme must be http or https")),
        None => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user info is not allowed"));
    }
    if authority.host().is_empty() {
        return Err(bad("missing host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad(
            "must not have a path or query; doorman forwards the request path as is",
        ));
    }
    Ok((scheme, authority))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every error `text` gets, as `doorman check` prints it (none when it is valid).
    pub(super) fn errors(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("proxy.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn an_empty_file_gets_the_contract_defaults() {
        let c = Config::parse("", Path::new("proxy.toml")).unwrap();
        assert_eq!(c.listen.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.listen.header_timeout, Duration::from_secs(10));
        assert_eq!(c.listen.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.listen.max_connections, 10_000);
        assert_eq!(c.listen.max_header_bytes, 32_768);
        let up = c.upstream.as_ref().unwrap();
        assert_eq!(up.url(), "http://127.0.0.1:3000");
        assert_eq!(up.pool_idle_timeout, Duration::from_secs(4));
        assert_eq!(up.pool_max_idle, 64);
        assert!(!up.preserve_host);
        assert_eq!(up.upgrades, ["websocket"]);
        assert!(c.forward_auth.is_none());
        assert_eq!(c.listen.body_timeout, Duration::from_secs(30));
        assert_eq!(c.listen.send_timeout, Duration::from_secs(60));
        assert_eq!(c.listen.max_connections_per_client, 256);
    }

    #[test]
    fn h2c_can_never_be_an_allowed_upgrade() {
        for bad in ["h2c", "H2C", "h2", "h2c/1"] {
            let e = errors(&format!(
                "[upstream]\nupgrades = [\"websocket\", {bad:?}]\n"
            ));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("proxy.toml:2:26: upstream.upgrades[1]: "),
                "{e:?}"
            );
        }
        let e = errors("[upstream]\nupgrades = [\"web socket\"]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        let c = Config::parse("[upstream]\nupgrades = []\n", Path::new("p.toml")).unwrap();
        assert!(c.upstream.unwrap().upgrades.is_empty());
        let c = Config::parse(
            "[upstream]\nupgrades = [\"WebSocket\", \"x-custom/2\"]\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.upstream.unwrap().upgrades, ["websocket", "x-custom/2"]);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = errors("[listen]\naddr = \"127.0.0.1:8080\"\nidle_timeout = \n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("proxy.toml:3:"), "{e:?}");
    }

    #[test]
    fn upstream_urls_are_checked() {
        for (url, why) in [
            ("ftp://x", "the scheme must be http or https"),
            (
                "127.0.0.1:3000",
                "expected http://HOST:PORT or https://HOST:PORT",
            ),
            ("http://a:b@host", "user info is not allowed"),
            (
                "http://host/app",
                "must not have a path or query; doorman forwards the request path as is",
            ),
            (
                "http://host/?q",
                "must not have a path or query; doorman forwards the request path as is",
            ),
        ] {
            let e = errors(&format!("[upstream]\nurl = {url:?}\n"));
            assert_eq!(
                e,
                [format!(
                    "proxy.toml:2:7: upstream.url: invalid upstream url {url:?}: {why}"
                )]
            );
        }
        assert!(errors("[upstream]\nurl = \"https://example.com/\"\n").is_empty());
    }

    #[test]
    fn forward_auth_has_no_defaults() {
        assert_eq!(
            errors("[forward_auth]\n"),
            [
                "proxy.toml: forward_auth.trusted_gateways: required: the addresses of the \
                 gateways that send auth sub-requests, such as [\"127.0.0.1/32\"]",
                "proxy.toml: forward_auth.allowed_hosts: required: the hosts the gateway \
                 serves, such as [\"app.example.com\"]",
            ]
        );
        let e = errors("[forward_auth]\ntrusted_gateways = []\nallowed_hosts = [\"*\"]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("proxy.toml:3:18: forward_auth.allowed_hosts[0]: "),
            "{e:?}"
        );
        assert!(
            e[1].contains("trusted_gateways: must not be empty"),
            "{e:?}"
        );
        let e = errors(
            "[forward_auth]\ntrusted_gateways = [\"10.0.0.0/33\"]\nallowed_hosts = [\"a.test\"]\nx = 1\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("forward_auth.trusted_gateways[0]"), "{e:?}");
        assert!(e[1].contains("forward_auth.x: unknown key"), "{e:?}");
    }

    #[test]
    fn upstream_is_optional_only_with_forward_auth() {
        let fa =
            "[forward_auth]\ntrusted_gateways = [\"127.0.0.1\"]\nallowed_hosts = [\"a.test\"]\n";
        let c = Config::parse(fa, Path::new("p.toml")).unwrap();
        assert!(c.upstream.is_none());
        assert!(
            c.summary()
                .contains("auth-only (forward-auth, no upstream)"),
            "{}",
            c.summary()
        );
        let both = format!("{fa}[upstream]\nurl = \"http://127.0.0.1:3001\"\n");
        let c = Config::parse(&both, Path::new("p.toml")).unwrap();
        assert!(c
            .summary()
            .contains("forwarding to http://127.0.0.1:3001 and answering forward-auth"));
        let c = Config::parse("", Path::new("p.toml")).unwrap();
        assert!(c.summary().contains("forwarding to http://127.0.0.1:3000,"));
        assert!(c.warnings.is_empty());
        let shared = format!("{fa}[session]\ncookie_domain = \"a.test\"\n");
        let c = Config::parse(&shared, Path::new("p.toml")).unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(
            c.warnings[0].contains("session.cookie_domain"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn the_login_host_must_be_an_allowed_host() {
        let fa =
            "[forward_auth]\ntrusted_gateways = [\"127.0.0.1\"]\nallowed_hosts = [\"*.a.test\"]\n";
        let login = |origin: &str| format!("{fa}[login]\npublic_origin = \"{origin}\"\n");
        assert!(errors(&login("https://login.a.test")).is_empty());
        assert!(errors(&login("https://login.a.test:8443")).is_empty());
        assert_eq!(
            errors(&login("https://login.b.test")),
            [
                "proxy.toml:5:17: login.public_origin: with [forward_auth], the login host of \
              \"https://login.b.test\" must be one of forward_auth.allowed_hosts"
            ]
        );
    }

    #[test]
    fn route_hosts_are_checked() {
        let route = |hosts: &str| {
            errors(&format!(
                "[[routes]]\npath = \"/\"\naccess = \"public\"\nhosts = {hosts}\n"
            ))
        };
        assert!(route("[\"Admin.Example.com\", \"*.example.com\"]").is_empty());
        assert_eq!(
            route("[]"),
            ["proxy.toml:4:9: routes[0].hosts: must list at least one host (leave it out to match any host)"]
        );
        let e = route("[\"a.test:8080\", \"*.*.test\"]");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("proxy.toml:4:10: routes[0].hosts[0]: "),
            "{e:?}"
        );
    }

    /// Keys a reader reads only when present (it asks `has` first) are still keys the table
    /// accepts, so their misspellings get a suggestion too.
    #[test]
    fn misspelt_keys_read_only_when_present_are_suggested_too() {
        let text = "[listen]\nredirect_htp = \"127.0.0.1:8081\"\nhst = \"1d\"\n\n\
                    [upstream]\nupgrade = []\n\n[admin]\nadr = \"127.0.0.1:9090\"\n\n\
                    [session]\nredis_clustr = []\n\n\
                    [[routes]]\npath = \"/\"\nmethod = [\"GET\"]\nhost = [\"a.test\"]\n";
        assert_eq!(
            errors(text),
            [
                "proxy.toml:3:1: listen.hst: unknown key; did you mean `hsts`?",
                "proxy.toml:2:1: listen.redirect_htp: unknown key; did you mean `redirect_http`?",
                "proxy.toml:6:1: upstream.upgrade: unknown key; did you mean `upgrades`?",
                "proxy.toml:12:1: session.redis_clustr: unknown key; did you mean `redis_cluster`?",
                "proxy.toml:17:1: routes[0].host: unknown key; did you mean `hosts`?",
                "proxy.toml:16:1: routes[0].method: unknown key; did you mean `methods`?",
                "proxy.toml:9:1: admin.adr: unknown key; did you mean `addr`?",
            ]
        );
    }
}
