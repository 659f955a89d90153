//! Sessions from the browser's side: a users file with real Argon2id hashes, the `[session]`
//! section for either store, logging in over HTTP and reading doorman's cookie back.
//!
//! Cookies are carried by hand (a `Cookie` request header), never by a cookie jar, so a test
//! controls exactly what doorman is shown: an old cookie after rotation, two of them, garbage.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};

use super::redis::RedisServer;

/// Alice's password in [`users_toml`]; she is in groups `admin` and `staff`.
pub const ALICE_PW: &str = "alice-correct-horse";
/// Bob's password in [`users_toml`]; he is in no group.
pub const BOB_PW: &str = "bob-battery-staple";
/// Doorman's default cookie name on plain HTTP.
pub const COOKIE: &str = "doorman_session";

/// `(alice, bob)` Argon2id hashes, made once per test binary (hashing is deliberately slow).
pub fn hashes() -> &'static (String, String) {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    HASHES.get_or_init(|| {
        let hash = |pw| doorman::config::hash_password(pw).expect("hash password");
        (hash(ALICE_PW), hash(BOB_PW))
    })
}

/// An Argon2id hash of `password` with the smallest parameters Argon2 allows (8 KiB, one
/// pass): for tests that log in hundreds of times and are not about what a check costs. Doorman
/// takes any Argon2id PHC string, and checks a wrong or unknown user at the same cost.
pub fn cheap_hash(password: &str) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = Params::new(Params::MIN_M_COST, Params::MIN_T_COST, 1, None).expect("params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .map(|h: argon2::password_hash::phc::PasswordHash| h.to_string())
        .expect("hash password")
}

/// A users file with alice (`admin`, `staff`) and bob (no groups).
pub fn users_toml() -> String {
    let (alice, bob) = hashes();
    format!(
        "[users.alice]\npassword = {alice:?}\ngroups = [\"admin\", \"staff\"]\n\n\
         [users.bob]\npassword = {bob:?}\ngroups = []\n"
    )
}

/// A users file with alice's entry given explicitly (or left out with `None`), and bob.
pub fn users_toml_with_alice(alice_groups: Option<&[&str]>) -> String {
    let (alice, bob) = hashes();
    let mut out = format!("[users.bob]\npassword = {bob:?}\ngroups = []\n");
    if let Some(groups) = alice_groups {
        out.push_str(&format!(
            "\n[users.alice]\npassword = {alice:?}\ngroups = {groups:?}\n"
        ));
    }
    out
}

/// Write `text` as `users.toml` in a fresh directory; the absolute path.
pub fn write_users(text: &str) -> PathBuf {
    let path = super::temp_dir("users").join("users.toml");
    std::fs::write(&path, text).expect("write users file");
    path
}

/// Where sessions live for one test.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A redb file at this absolute path (its folder is created by doorman).
    Embedded(PathBuf),
    /// A Redis server, with the key prefix doorman uses there.
    Redis { url: String, prefix: String },
    /// Redis named by another `[session]` key (`redis_sentinel`, `redis_cluster`) with this
    /// TOML value, with the key prefix doorman uses there.
    RedisBy {
        key: &'static str,
        value: String,
        prefix: String,
    },
}

impl Backend {
    /// A fresh embedded store file in its own directory (survives doorman restarts).
    pub fn embedded() -> Backend {
        Backend::Embedded(super::temp_dir("store").join("var").join("sessions.db"))
    }

    /// The store on `redis`, under the key prefix `dm:`.
    pub fn redis(redis: &RedisServer) -> Backend {
        Backend::Redis {
            url: redis.url(),
            prefix: "dm:".into(),
        }
    }

    /// A Redis Cluster reached through these seed URLs, under the key prefix `dm:`.
    pub fn cluster(seeds: &[String]) -> Backend {
        Backend::RedisBy {
            key: "redis_cluster",
            value: format!("{seeds:?}"),
            prefix: "dm:".into(),
        }
    }

    /// Redis through Sentinels: `table` is the `redis_sentinel` inline table; key prefix `dm:`.
    pub fn sentinel(table: &str) -> Backend {
        Backend::RedisBy {
            key: "redis_sentinel",
            value: table.to_string(),
            prefix: "dm:".into(),
        }
    }

    /// The `[session]` section for this store, with `extra` keys.
    pub fn section(&self, extra: &str) -> String {
        match self {
            Backend::Embedded(path) => {
                format!("[session]\nstore = \"embedded\"\npath = {path:?}\n{extra}\n")
            }
            Backend::Redis { url, prefix } => format!(
                "[session]\nstore = \"redis\"\nredis = {url:?}\nkey_prefix = {prefix:?}\n{extra}\n"
            ),
            Backend::RedisBy { key, value, prefix } => format!(
                "[session]\nstore = \"redis\"\n{key} = {value}\nkey_prefix = {prefix:?}\n{extra}\n"
            ),
        }
    }
}

/// Everything of a test config that is not the upstream or the listener.
#[derive(Debug, Clone, Default)]
pub struct Conf {
    /// Extra `[session]` keys.
    pub session: String,
    /// Extra `[login]` keys.
    pub login: String,
    /// More tables: routes, `[access]`.
    pub rest: String,
    /// Extra `[listen]` keys (`addr = "{addr}"` for the binary).
    pub listen: String,
}

/// The routes most session tests use: `/dashboard` needs a session; everything else is public.
pub const DASHBOARD: &str = "[[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n";

impl Conf {
    /// A config with [`DASHBOARD`] as its routes.
    pub fn dashboard() -> Conf {
        Conf {
            rest: DASHBOARD.into(),
            ..Conf::default()
        }
    }

    /// For the binary: listen on the `{addr}` `DoormanProcess` fills in.
    pub fn for_binary(mut self) -> Conf {
        self.listen = "addr = \"{addr}\"".into();
        self
    }

    /// proxy.toml for doorman in front of `upstream`, with `backend` and the users file `users`.
    pub fn toml(&self, upstream: &str, backend: &Backend, users: &Path) -> String {
        let extra = format!(
            "{}\n[login]\nusers_file = {users:?}\n{}\n\n{}",
            backend.section(&self.session),
            self.login,
            self.rest
        );
        super::doorman::config(upstream, &self.listen, &extra)
    }
}

/// `base` is `http://127.0.0.1:PORT`.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What doorman answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The one `Set-Cookie` for `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        let found: Vec<String> = self
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii Set-Cookie").to_string())
            .filter(|v| v.starts_with(&format!("{name}=")))
            .collect();
        assert!(found.len() <= 1, "several Set-Cookie for {name}: {found:?}");
        found.into_iter().next()
    }

    /// The value of a new session cookie `name` (asserting it is set, not expired).
    pub fn new_cookie(&self, name: &str) -> String {
        let line = self
            .set_cookie(name)
            .unwrap_or_else(|| panic!("no Set-Cookie {name}: {:?}", self.headers));
        let value = cookie_value(&line);
        assert!(!value.is_empty() && !line.contains("Max-Age=0"), "{line}");
        value
    }

    /// Whether the response expires cookie `name` (`Max-Age=0`, empty value).
    pub fn expires_cookie(&self, name: &str) -> bool {
        self.set_cookie(name)
            .is_some_and(|l| cookie_value(&l).is_empty() && l.contains("Max-Age=0"))
    }

    /// A header's value as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The value of a `Set-Cookie` line.
pub fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap_or_default();
    pair.split_once('=').map_or("", |(_, v)| v).to_string()
}

/// Send a request with `method`, extra `headers` and a body.
pub async fn request(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let (status, headers, body) = super::send(client, req).await;
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET url` presenting session cookie `value` (`None`: no cookie), with extra headers.
pub async fn get_as(
    client: &HttpClient,
    url: &str,
    value: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let cookie = value.map(|v| format!("{COOKIE}={v}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(c) = &cookie {
        all.push(("cookie", c));
    }
    request(client, "GET", url, &all, "").await
}

/// Percent-encode everything but unreserved characters (a form field, as a browser would).
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST {base}/_doorman/login` with the form `username`, `password` (and `next`), plus headers.
pub async fn post_login(
    client: &HttpClient,
    base: &str,
    user: &str,
    password: &str,
    next: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut form = format!(
        "username={}&password={}",
        form_encode(user),
        form_encode(password)
    );
    if let Some(next) = next {
        form.push_str(&format!("&next={}", form_encode(next)));
    }
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(
        client,
        "POST",
        &format!("{base}/_doorman/login"),
        &all,
        &form,
    )
    .await
}

/// Log in successfully (asserting the 303) and return the new session cookie's value.
pub async fn log_in(client: &HttpClient, base: &str, user: &str, password: &str) -> String {
    let answer = post_login(client, base, user, password, None, &[]).await;
    assert_eq!(
        answer.status,
        303,
        "login as {user} failed: {}",
        answer.text()
    );
    answer.new_cookie(COOKIE)
}

/// `POST {base}/_doorman/logout` presenting `value`, plus headers.
pub async fn post_logout(
    client: &HttpClient,
    base: &str,
    value: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let cookie = format!("{COOKIE}={value}");
    let mut all = vec![("cookie", cookie.as_str())];
    all.extend_from_slice(headers);
    request(client, "POST", &format!("{base}/_doorman/logout"), &all, "").await
}

/// What the echo upstream reported for one header (lower-case name), from a 200 echo answer.
pub fn upstream_saw(answer: &Answer, name: &str) -> Vec<String> {
    assert_eq!(answer.status, 200, "not an echo: {}", answer.text());
    super::echoed_header(&super::echoed(&answer.body), name)
}

/// A well-formed session id doorman never issued (43 base64url characters).
pub fn unknown_id() -> String {
    doorman::session::SessionId::generate()
        .expect("random")
        .to_cookie_value()
}

/// Which store a parametrised test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChoice {
    Embedded,
    Redis,
}
