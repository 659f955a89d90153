//! The whole login journey in a real browser: headless Chromium (Debian's `chromium`), driven by
//! `playwright-core` from `tests/browser/*.mjs`, over HTTPS against the doorman binary in front
//! of the demo app (examples/demo/app.rs), the dashboard route in redirect mode.
//!
//! `login.mjs` checks the redirect to the login page, the wrong-password error, the greeting
//! after login, the session cookie's attributes in the browser's own jar, logout, and the login
//! page at phone width. `oidc.mjs` signs in with OpenID Connect at a real provider (Node's
//! oidc-provider, tests/oidc/provider.mjs, on plain loopback HTTP): the button on the login page,
//! the provider's form, the callback back to the dashboard, the cookies left in the jar, and
//! logout ending the provider's session too. `hosts.mjs` signs in once across hosts (DESIGN.md
//! §8) behind a real Caddy (examples/Caddyfile.forward-auth, plain HTTP) serving `app.test`,
//! `b.test` and the login host `login.test`, all mapped to loopback in Chromium: the posted
//! login's redirect on to another host's callback must pass the login page's `form-action`.
//! `live.mjs` holds WebSockets and an EventSource open while their session ends — a logout in
//! another tab, `sessions revoke`, a logout on another doorman sharing Redis (with and without
//! the cache), the absolute expiry — and checks the page sees 1008 `session ended` (or the
//! stream's error, then 401 on its reconnect) within 1.5 s (DESIGN.md §11).
//! Their screenshots land in `target/browser-artifacts/` for people to look at.
//!
//! Needs `node` and `chromium` (and `caddy` for `hosts.mjs`; scripts/test installs both); a missing one fails this test with
//! a message saying so, never a silent skip. `tests/browser/node_modules` (and the provider's
//! `tests/oidc/node_modules`) is made with `npm ci` from the committed lock file when missing.

#[path = "../examples/demo/app.rs"]
#[allow(dead_code)]
mod app;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::gateway::{Gateway, Kind, HOST, MORE_HOSTS};
use support::login::{users_toml, write_users, Backend, ALICE_PW, COOKIE};
use support::oidc::{issuer_for, OidcProvider, ProviderSpec, CLIENT_ID, CLIENT_SECRET, PASSWORD};
use support::DoormanProcess;
use tokio::net::TcpListener;

/// How long the whole browser script may take before it is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// A stable place for the screenshots, with this journey's `shots` removed from the last run
/// (only those: the journeys run in parallel and share the folder).
fn artifacts_dir(shots: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/browser-artifacts");
    for shot in shots {
        let _ = std::fs::remove_file(dir.join(shot));
    }
    dir
}

/// Assert that every one of `shots` was written and is not empty.
fn assert_screenshots(dir: &Path, shots: &[&str]) {
    for shot in shots {
        let len = std::fs::metadata(dir.join(shot)).map_or(0, |m| m.len());
        assert!(len > 0, "screenshot {shot} missing or empty");
    }
}

/// The Chromium binary: `$CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "Chromium not found at {}: the browser test needs Debian's `chromium` package \
         (scripts/test installs it; or `apt-get install --no-install-recommends chromium`, \
         or set CHROMIUM to a Chromium binary)",
        path.display()
    );
    path
}

/// `npm ci` in tests/browser when its node_modules is missing (playwright-core only, pinned by
/// the committed package-lock.json; it never downloads a browser).
fn ensure_node_modules() {
    support::node::require_node("the browser test drives Chromium with playwright-core from npm");
    support::node::npm_ci(
        &browser_dir(),
        "playwright-core",
        &[("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")],
    );
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as `cert.pem`/`key.pem`
/// into a fresh folder; returns the two paths.
fn write_certificate() -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate params");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let dir = support::temp_dir("browser-tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// Doorman with TLS in front of `app`, on a fresh embedded store: `/dashboard` needs a session
/// and sends browsers to the login page; `/` is public; everything else needs a session.
/// `extra`: more tables.
fn doorman_toml(app: &str, cert: &Path, key: &Path, users: &Path, extra: &str) -> String {
    let session = Backend::embedded().section("");
    doorman_toml_on(&session, app, cert, key, users, extra)
}

/// [`doorman_toml`] with this `[session]` table.
fn doorman_toml_on(
    session: &str,
    app: &str,
    cert: &Path,
    key: &Path,
    users: &Path,
    extra: &str,
) -> String {
    let listen = format!(
        "addr = \"{{addr}}\"\ntls = {{ cert = {cert:?}, key = {key:?} }}",
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    let rest = format!(
        "{session}\n[login]\nusers_file = {users:?}\n\n\
         [access]\ndefault = \"authenticated\"\n\n\
         [[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n\
         on_unauthenticated = \"redirect\"\n\n\
         [[routes]]\nglob = \"/\"\naccess = \"public\"\n\n{extra}",
        users = users.display().to_string(),
    );
    support::doorman::config(app, &listen, &rest)
}

/// Run the browser script `script` against Chromium at `chromium`, its screenshots going to
/// `artifacts`, with `env` on top, on a blocking thread; print its output and where the
/// screenshots are. (success, stdout + stderr).
async fn journey(
    script: &'static str,
    chromium: &Path,
    artifacts: &Path,
    mut env: Vec<(&'static str, String)>,
) -> (bool, String) {
    env.push(("ARTIFACTS", artifacts.display().to_string()));
    env.push(("CHROMIUM", chromium.display().to_string()));
    let (ok, output) = tokio::task::spawn_blocking(move || run_script(script, &env))
        .await
        .expect("browser script thread");
    println!("{output}");
    println!("screenshots: {}", artifacts.display());
    (ok, output)
}

/// Run `node <script>` with `env`, killed after [`SCRIPT_LIMIT`]; (success, stdout + stderr).
fn run_script(script: &str, env: &[(&str, String)]) -> (bool, String) {
    let log = support::temp_dir("browser-log").join(format!("{script}.log"));
    let file = std::fs::File::create(&log).expect("script log");
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start node");
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = std::fs::read_to_string(&log).unwrap_or_default();
    if status.is_none() {
        output.push_str(&format!(
            "\nbrowser script killed after {}s\n",
            SCRIPT_LIMIT.as_secs()
        ));
    }
    (status.is_some_and(|s| s.success()), output)
}

/// What `login.mjs` writes to the artifacts folder.
const LOGIN_SHOTS: &[&str] = &[
    "login.png",
    "error.png",
    "dashboard.png",
    "login-phone.png",
    "login-dark.png",
];

/// The demo app (examples/demo/app.rs) on a free loopback port; its base URL.
async fn demo_app() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind demo app");
    let app = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(app::serve(listener));
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_journey_in_headless_chromium_over_https() {
    let chromium = chromium();
    ensure_node_modules();
    let app = demo_app().await;

    let (cert, key) = write_certificate();
    let users = write_users(&users_toml());
    let doorman = DoormanProcess::spawn(&doorman_toml(&app, &cert, &key, &users, ""), &[]);
    let base_url = format!("https://{}", doorman.addr);
    let artifacts = artifacts_dir(LOGIN_SHOTS);

    let env = vec![
        ("BASE_URL", base_url),
        ("LOGIN_USER", "alice".to_string()),
        ("LOGIN_PASSWORD", ALICE_PW.to_string()),
    ];
    let (ok, output) = journey("login.mjs", &chromium, &artifacts, env).await;
    assert!(
        ok,
        "the browser journey failed:\n{output}\ndoorman log:\n{}",
        doorman.logs()
    );
    assert_screenshots(&artifacts, LOGIN_SHOTS);
}

/// What `oidc.mjs` writes to the artifacts folder.
const OIDC_SHOTS: &[&str] = &[
    "oidc-login.png",
    "oidc-provider.png",
    "oidc-dashboard.png",
    "oidc-logout.png",
    "oidc-signed-out.png",
    "oidc-again.png",
];

/// `[oidc]` for the harness's client at `issuer`, the button labelled "Sign in with Test SSO".
/// The user is the `email` claim (the default `user_claim`); the state key is generated beside
/// the embedded store.
fn oidc_table(issuer: &str) -> String {
    format!(
        "[oidc]\nissuer = {issuer:?}\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n\
         groups_claim = \"groups\"\nname = \"Test SSO\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_openid_connect_in_a_real_browser() {
    let chromium = chromium();
    ensure_node_modules();
    let app = demo_app().await;

    // The provider's port first (doorman's config names the issuer), then doorman (the
    // provider's client needs doorman's callback URL, exactly as doorman announces it: the
    // browser's own origin), then the provider. Doorman discovers it once it is up; the script
    // waits for that.
    let port = support::free_port();
    let issuer = issuer_for(port);
    let (cert, key) = write_certificate();
    let users = write_users(&users_toml());
    let toml = doorman_toml(&app, &cert, &key, &users, &oidc_table(&issuer));
    let doorman = DoormanProcess::spawn(&toml, &[]);
    let base_url = format!("https://{}", doorman.addr);
    let provider = OidcProvider::start(
        ProviderSpec::new(
            &[&format!("{base_url}/_doorman/oidc/callback")],
            &[&format!("{base_url}/")],
        )
        .on_port(port),
    );
    let artifacts = artifacts_dir(OIDC_SHOTS);

    let env = vec![
        ("BASE_URL", base_url),
        ("ISSUER", issuer),
        ("PROVIDER_NAME", "Test SSO".to_string()),
        ("OIDC_USER", "alice".to_string()),
        ("OIDC_PASSWORD", PASSWORD.to_string()),
        ("OIDC_EMAIL", "alice@example.com".to_string()),
        ("OIDC_GROUPS", "staff".to_string()),
    ];
    let (ok, output) = journey("oidc.mjs", &chromium, &artifacts, env).await;
    assert!(
        ok,
        "the OIDC browser journey failed:\n{output}\ndoorman log:\n{}\nprovider log:\n{}",
        doorman.logs(),
        provider.log()
    );
    assert_eq!(
        provider.sessions().await,
        0,
        "the provider still holds a session after the journey's logout"
    );
    assert_screenshots(&artifacts, OIDC_SHOTS);
}

/// What `hosts.mjs` writes to the artifacts folder.
const HOSTS_SHOTS: &[&str] = &["hosts-login.png", "hosts-app.png", "hosts-b.png"];

/// Doorman answering a gateway only (no `[upstream]`), for `app.test`, `b.test` and the login
/// host: `/dashboard` needs a session and sends browsers to the login page; `/` is public.
/// `session`: the `[session]` table (the same one on reload: the store cannot change);
/// `public_origin`: the `[login]` line naming the login host (empty: signing in across hosts
/// off).
fn forward_auth_toml(session: &str, users: &Path, public_origin: &str) -> String {
    let [login, other] = MORE_HOSTS;
    format!(
        "[listen]\naddr = \"{{addr}}\"\n\n{session}\n[login]\nusers_file = {users:?}\n\
         {public_origin}\n\n\
         [forward_auth]\ntrusted_gateways = [\"127.0.0.1/32\"]\n\
         allowed_hosts = [\"{login}\", \"{HOST}\", \"{other}\"]\n\n\
         [access]\ndefault = \"authenticated\"\n\n\
         [[routes]]\npath = \"/dashboard\"\naccess = \"authenticated\"\n\
         on_unauthenticated = \"redirect\"\n\n\
         [[routes]]\nglob = \"/\"\naccess = \"public\"\n",
        users = users.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_across_hosts_in_a_real_browser() {
    let chromium = chromium();
    ensure_node_modules();
    let app = demo_app().await;
    let app_addr = app
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .expect("the demo app's address");

    // Doorman first (Caddy's config names it), then Caddy, then doorman again with the login
    // host's origin, which names Caddy's port (known only once Caddy runs): a reload (SIGHUP).
    let users = write_users(&users_toml());
    let session = Backend::embedded().section("");
    let doorman = DoormanProcess::spawn(&forward_auth_toml(&session, &users, ""), &[]);
    let gateway = Gateway::start(Kind::Caddy, doorman.addr, app_addr);
    let [login, other] = MORE_HOSTS;
    let login_origin = format!("http://{login}:{}", gateway.port);
    let toml = forward_auth_toml(
        &session,
        &users,
        &format!("public_origin = \"{login_origin}\""),
    );
    std::fs::write(
        doorman.dir.join("proxy.toml"),
        toml.replace("{addr}", &doorman.addr.to_string()),
    )
    .expect("rewrite the config");
    doorman.signal(libc::SIGHUP);
    // Reloaded once app.test's page load goes to the login host.
    let navigate = [("sec-fetch-mode", "navigate")];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = gateway
            .request_on(HOST, "GET", "/dashboard", &navigate, "")
            .await;
        let location = a.header("location").unwrap_or_default();
        if location.starts_with(&format!("{login_origin}/")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "doorman did not take public_origin on SIGHUP: {} {location}\n{}",
            a.status,
            doorman.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let artifacts = artifacts_dir(HOSTS_SHOTS);

    let env = vec![
        ("APP_ORIGIN", format!("http://{HOST}:{}", gateway.port)),
        ("OTHER_ORIGIN", format!("http://{other}:{}", gateway.port)),
        ("LOGIN_ORIGIN", login_origin),
        ("COOKIE_NAME", COOKIE.to_string()),
        ("LOGIN_USER", "alice".to_string()),
        ("LOGIN_PASSWORD", ALICE_PW.to_string()),
    ];
    let (ok, output) = journey("hosts.mjs", &chromium, &artifacts, env).await;
    assert!(
        ok,
        "the journey across hosts failed:\n{output}\ndoorman log:\n{}\ncaddy log:\n{}",
        doorman.logs(),
        gateway.log()
    );
    assert_screenshots(&artifacts, HOSTS_SHOTS);
}

/// What `live.mjs` writes to the artifacts folder.
const LIVE_SHOTS: &[&str] = &["live.png"];

/// The session's absolute timeout on the expiry doorman of `live.mjs`.
const LIVE_ABSOLUTE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_event_streams_end_with_their_session_in_a_real_browser() {
    let chromium = chromium();
    ensure_node_modules();
    let upstream = support::Upstream::start().await;
    let app = upstream.url();
    let (cert, key) = write_certificate();
    let users = write_users(&users_toml());
    let spawn = |session: String| {
        DoormanProcess::spawn(
            &doorman_toml_on(&session, &app, &cert, &key, &users, ""),
            &[],
        )
    };
    let embedded = spawn(Backend::embedded().section(""));
    let absolute = LIVE_ABSOLUTE.as_secs();
    let expiry = spawn(Backend::embedded().section(&format!(
        "idle_timeout = \"{absolute}s\"\nabsolute_timeout = \"{absolute}s\""
    )));
    let (plain, cached) = (
        support::redis::RedisServer::start(),
        support::redis::RedisServer::start(),
    );
    let recheck = Backend::redis(&plain).section("recheck = \"1s\"");
    let (redis_a, redis_b) = (spawn(recheck.clone()), spawn(recheck));
    let cache = Backend::redis(&cached).section("cache = true");
    let (cache_a, cache_b) = (spawn(cache.clone()), spawn(cache));
    let url = |d: &DoormanProcess| format!("https://{}", d.addr);
    let config = embedded.dir.join("proxy.toml").display().to_string();
    let revoke = [
        support::process::binary().display().to_string(),
        "sessions".into(),
        "revoke".into(),
        "--user".into(),
        "alice".into(),
        "--config".into(),
        config,
    ];
    let artifacts = artifacts_dir(LIVE_SHOTS);
    let env = vec![
        ("EMBEDDED_URL", url(&embedded)),
        (
            "REVOKE",
            serde_json::to_string(&revoke).expect("argv as JSON"),
        ),
        ("EXPIRY_URL", url(&expiry)),
        ("ABSOLUTE_MS", LIVE_ABSOLUTE.as_millis().to_string()),
        ("REDIS_A_URL", url(&redis_a)),
        ("REDIS_B_URL", url(&redis_b)),
        ("CACHE_A_URL", url(&cache_a)),
        ("CACHE_B_URL", url(&cache_b)),
        ("LOGIN_USER", "alice".to_string()),
        ("LOGIN_PASSWORD", ALICE_PW.to_string()),
    ];
    let (ok, output) = journey("live.mjs", &chromium, &artifacts, env).await;
    let logs: Vec<String> = [&embedded, &expiry, &redis_a, &redis_b, &cache_a, &cache_b]
        .iter()
        .map(|d| d.logs())
        .collect();
    assert!(
        ok,
        "the long-lived browser journey failed:\n{output}\ndoorman logs:\n{}",
        logs.join("\n---\n")
    );
    assert_screenshots(&artifacts, LIVE_SHOTS);
}
