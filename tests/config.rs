//! `proxy.toml` is validated completely, with exact messages, before anything binds.
//!
//! Most tests go through the real binary (`doorman check`, `doorman` itself), because the exit
//! code and what is printed are the contract; finer cases use `Config::parse` directly.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use doorman::config::Config;
use support::process::{binary, run_cli, run_cli_in};
use support::{free_port, temp_dir};

/// Write `text` as `proxy.toml` in a fresh temp dir and return its path.
fn write_config(tag: &str, text: &str) -> PathBuf {
    let file = temp_dir(tag).join("proxy.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

/// `doorman check --config FILE`.
fn check(file: &Path) -> (i32, String, String) {
    run_cli(&["check", "--config", file.to_str().expect("utf-8 path")])
}

/// The lines of `text`, without a trailing empty one.
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// Each message prefixed with `FILE`, as doorman prints validation errors: a message that
/// starts with its position (`3:8: listen.addr: ...`) becomes `FILE:3:8: listen.addr: ...`, one
/// without (a required key left out) `FILE: key.path: ...`.
fn prefixed(file: &Path, messages: &[&str]) -> Vec<String> {
    messages
        .iter()
        .map(|m| placed(&file.display().to_string(), m))
        .collect()
}

/// `m` as printed for `file` (see [`prefixed`]).
fn placed(file: &str, m: &str) -> String {
    if m.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{file}:{m}")
    } else {
        format!("{file}: {m}")
    }
}

/// The validation messages `Config::parse` returns for `text` (empty when valid).
fn parse_errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("proxy.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// The sample config in the repository is what operators copy; it must always pass `check`.
#[test]
fn the_shipped_proxy_toml_passes_check_with_a_one_line_summary() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let out = lines(&stdout);
    assert_eq!(out.len(), 1, "exactly one summary line: {stdout:?}");
    assert!(
        out[0].starts_with(&format!("{}: ", file.display())),
        "the summary names the file: {stdout:?}"
    );
    assert!(out[0].contains("ok"), "{stdout:?}");
    assert!(
        out[0].contains("127.0.0.1:8080") && out[0].contains("http://127.0.0.1:3000"),
        "the summary says where doorman listens and forwards: {stdout:?}"
    );
    assert_eq!(stderr, "", "nothing on stderr for a valid config");
}

/// A typo in `--config` must be reported as such, naming the file, not as an empty config.
#[test]
fn a_missing_config_file_exits_2_naming_the_file() {
    let file = temp_dir("missing").join("nope.toml");
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let err = lines(&stderr);
    assert_eq!(err.len(), 1, "{stderr:?}");
    let prefix = format!("{}: cannot read config file: ", file.display());
    assert!(err[0].starts_with(&prefix), "{stderr:?}");
    assert!(err[0].contains("No such file"), "{stderr:?}");
}

/// Operators fix syntax errors from the position, so LINE:COL must point at the offending spot.
#[test]
fn a_toml_syntax_error_is_reported_with_its_line_and_column() {
    let file = write_config(
        "syntax",
        "[listen]\naddr = \"127.0.0.1:8080\"\n  header_timeout = \"1s\" x\n",
    );
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let err = lines(&stderr);
    assert_eq!(err.len(), 1, "{stderr:?}");
    // The stray `x` is on line 3, column 25.
    let prefix = format!("{}:3:25: ", file.display());
    assert!(err[0].starts_with(&prefix), "{stderr:?}");
    assert!(
        err[0].len() > prefix.len(),
        "a message follows the position"
    );

    // A value missing at the end of a line points just past the `=`.
    let file = write_config(
        "syntax2",
        "[listen]\naddr = \"127.0.0.1:8080\"\nidle_timeout = \n",
    );
    let (code, _, stderr) = check(&file);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!("{}:3:16: ", file.display())),
        "{stderr:?}"
    );
}

/// One `check` run must list every problem, so fixing a config is not one round trip per error.
#[test]
fn every_validation_error_is_printed_one_per_line_in_order() {
    let text = r#"
[listen]
addr = "localhost:80"
shutdown_grace = "0s"
header_timeout = 5
idle_timeout = "soon"
max_connections = "many"
max_header_bytes = 4096
trusted_proxies = ["10.0.0.0/8", "10.0.0.0/33", 7]
bogus = true

[upstream]
url = "ftp://example.com"
ca = "ca.pem"
connect_timeout = "3 s"
timeout = "0ms"
preserve_host = "yes"
extra = 1

[mystery]
x = 1
"#;
    let file = write_config("many", text);
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let expected = prefixed(
        &file,
        &[
            r#"3:8: listen.addr: invalid address "localhost:80": expected IP:PORT, such as "127.0.0.1:8080" or "[::1]:8080""#,
            "4:18: listen.shutdown_grace: must be greater than zero",
            r#"5:18: listen.header_timeout: expected a duration string such as "30s", found an integer"#,
            r#"6:16: listen.idle_timeout: invalid duration "soon": expected a number and a unit (ms, s, m, h, d), such as "30s""#,
            "7:19: listen.max_connections: expected an integer, found a string",
            "8:20: listen.max_header_bytes: must be between 8192 and 1048576, found 4096",
            r#"9:34: listen.trusted_proxies[1]: invalid address block "10.0.0.0/33": expected an IP or CIDR such as "10.0.0.0/8""#,
            "9:49: listen.trusted_proxies[2]: expected a string, found an integer",
            "10:1: listen.bogus: unknown key",
            r#"13:7: upstream.url: invalid upstream url "ftp://example.com": the scheme must be http or https"#,
            "14:6: upstream.ca: only applies to an https:// upstream url",
            r#"15:19: upstream.connect_timeout: invalid duration "3 s": expected a number and a unit (ms, s, m, h, d), such as "30s""#,
            "16:11: upstream.timeout: must be greater than zero",
            "17:17: upstream.preserve_host: expected true or false, found a string",
            "18:1: upstream.extra: unknown key",
            "20:2: mystery: unknown key",
        ],
    );
    assert_eq!(lines(&stderr), expected, "full stderr:\n{stderr}");
}

/// Values of the right shape in unusual spellings are accepted and mean what they say.
#[test]
fn valid_values_are_converted_to_their_typed_settings() {
    let c = Config::parse(
        r#"
[listen]
addr = "[::1]:9000"
shutdown_grace = "1500ms"
header_timeout = "2m"
idle_timeout = "1h"
max_connections = 1
max_header_bytes = 8192
trusted_proxies = ["10.0.0.0/8", "::1"]

[upstream]
url = "https://example.com:8443/"
connect_timeout = "1d"
preserve_host = true
"#,
        Path::new("proxy.toml"),
    )
    .unwrap_or_else(|e| panic!("valid config refused:\n{e}"));
    assert_eq!(c.listen.addr, "[::1]:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(c.listen.shutdown_grace, Duration::from_millis(1500));
    assert_eq!(c.listen.header_timeout, Duration::from_secs(120));
    assert_eq!(c.listen.idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.listen.max_connections, 1);
    assert_eq!(c.listen.max_header_bytes, 8192);
    let proxies: Vec<String> = c
        .listen
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
    let up = c.upstream.as_ref().expect("[upstream] given");
    assert_eq!(up.url(), "https://example.com:8443");
    assert_eq!(up.connect_timeout, Duration::from_secs(86_400));
    assert!(up.preserve_host);
    assert!(up.ca.is_none());
}

/// Wrong shapes at the top level are errors too, not silently replaced by defaults.
#[test]
fn a_section_that_is_not_a_table_is_an_error() {
    assert_eq!(
        parse_errors("listen = 5\nupstream = \"http://127.0.0.1:3000\"\n"),
        [
            "proxy.toml:1:10: listen: expected a table, found an integer",
            "proxy.toml:2:12: upstream: expected a table, found a string",
        ]
    );
}

/// Limits that would make doorman useless or unsafe are refused with their range.
#[test]
fn integer_limits_are_range_checked() {
    assert_eq!(
        parse_errors("[listen]\nmax_connections = 0\nmax_header_bytes = 2000000\n"),
        [
            "proxy.toml:2:19: listen.max_connections: must be between 1 and 1000000, found 0",
            "proxy.toml:3:20: listen.max_header_bytes: must be between 8192 and 1048576, found 2000000",
        ]
    );
    assert_eq!(
        parse_errors("[listen]\nmax_connections = -3\n"),
        ["proxy.toml:2:19: listen.max_connections: must be between 1 and 1000000, found -3"]
    );
}

/// `[identity] assertion` is checked whole at load: a key file that cannot sign, no issuer, and
/// no audience (with no `[login] public_origin` to take one from) are each an error naming its
/// key, all reported at once.
#[test]
fn an_assertion_without_a_usable_key_an_issuer_or_an_audience_is_refused() {
    let text = r#"
[listen]
addr = "127.0.0.1:8080"

[identity]
user_header = "X-Auth-User"
assertion = { key = "assertion.key", header = "X-Auth-Assertion", ttl = "60s" }

[access]
default = "authenticated"
"#;
    let file = write_config("assertion", text);
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let lines = lines(&stderr);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "identity.assertion.key",
            "identity.assertion.issuer",
            "identity.assertion.audience"
        ],
        "full stderr:\n{stderr}"
    );
    assert!(lines[0].contains("assertion.key: cannot read"), "{stderr}");
}

/// `cache = true` is Redis's server-assisted client-side caching: meaningless for the embedded
/// store (already in this process), and not built for Cluster. Both are refused by name.
#[test]
fn the_session_cache_needs_redis_standalone_or_sentinel() {
    let with = |store: &str| format!("[session]\n{store}\ncache = true\n");
    assert_eq!(
        parse_errors(&with("store = \"embedded\"")),
        ["proxy.toml:3:9: session.cache: only applies with store = \"redis\""]
    );
    assert_eq!(
        parse_errors(&with(
            "store = \"redis\"\nredis_cluster = [\"redis://127.0.0.1:7000\"]"
        )),
        ["proxy.toml:4:9: session.cache: not supported with redis_cluster: use redis or redis_sentinel, or cache = false"]
    );
    assert_eq!(
        parse_errors(&with(
            "store = \"redis\"\nredis = \"redis://127.0.0.1:6379\""
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        parse_errors(&with(
            "store = \"redis\"\nredis_sentinel = { master = \"m\", nodes = [\"redis://127.0.0.1:26379\"] }"
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        parse_errors("[session]\ncache = \"yes\"\n"),
        ["proxy.toml:2:9: session.cache: expected true or false, found a string"]
    );
}

/// `redis_sentinel` takes the data nodes' `password`, the Sentinels' `sentinel_password`, a
/// `db` and `tls`; each is checked by name, and no message shows a password.
#[test]
fn redis_sentinel_keys_are_checked_by_name() {
    let with = |table: &str| {
        parse_errors(&format!(
            "[session]\nstore = \"redis\"\nredis_sentinel = {table}\n"
        ))
    };
    let full = r#"{ master = "m", nodes = ["redis://127.0.0.1:26379", "rediss://h:26380"], password = "pw1", sentinel_password = "pw2", db = 3, tls = true }"#;
    assert_eq!(with(full), Vec::<String>::new());
    assert_eq!(
        with(r#"{ nodes = [], password = "", db = -1, tls = "yes", username = "u" }"#),
        [
            "proxy.toml: session.redis_sentinel.master: required: the name Sentinel knows the master by",
            "proxy.toml:3:43: session.redis_sentinel.password: must not be empty: leave the key out for no password",
            "proxy.toml:3:28: session.redis_sentinel.nodes: required: at least one redis:// Sentinel URL",
            "proxy.toml:3:52: session.redis_sentinel.db: must be between 0 and 2147483647, found -1",
            "proxy.toml:3:62: session.redis_sentinel.tls: expected true or false, found a string",
            "proxy.toml:3:69: session.redis_sentinel.username: unknown key",
        ]
    );
    // A Sentinel URL with a database, or with credentials beside sentinel_password; a URL the
    // redis crate cannot use: each named by its element, the password never shown.
    assert_eq!(
        with(r#"{ master = "m", sentinel_password = "pw", nodes = ["redis://h:26379/2", "redis://:s3cret@h:26380", "http://:s3cret@h", "redis://:s3cret@0.0.0.0:1"] }"#),
        [
            r#"proxy.toml:3:69: session.redis_sentinel.nodes[0]: a Sentinel has no databases: set db in redis_sentinel instead of the path of "redis://h:26379/2""#,
            "proxy.toml:3:90: session.redis_sentinel.nodes[1]: credentials here and sentinel_password too: keep one of them",
            r#"proxy.toml:3:117: session.redis_sentinel.nodes[2]: invalid Redis URL "http://:<redacted>@h": expected redis://HOST:PORT/DB or rediss://..."#,
            r#"proxy.toml:3:137: session.redis_sentinel.nodes[3]: invalid Redis URL "redis://:<redacted>@0.0.0.0:1": Cannot connect to a wildcard address (0.0.0.0 or ::) - InvalidClientConfig"#,
        ]
    );
}

/// `redis_cluster` is the list of seed URLs DESIGN.md shows, or a table with `nodes` and a
/// `password`. The seeds must agree on scheme and credentials (the redis crate uses the
/// first's for every node), a Cluster has only database 0, and a password is given once.
#[test]
fn redis_cluster_seeds_must_agree_and_use_database_0() {
    let with = |value: &str| {
        parse_errors(&format!(
            "[session]\nstore = \"redis\"\nredis_cluster = {value}\n"
        ))
    };
    assert_eq!(
        with(r#"["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]"#),
        Vec::<String>::new()
    );
    assert_eq!(
        with(r#"["redis://u:pw@h:7000", "redis://u:pw@h:7001/0"]"#),
        Vec::<String>::new()
    );
    assert_eq!(
        with(r#"{ nodes = ["redis://h:7000", "redis://h:7001"], password = "pw" }"#),
        Vec::<String>::new()
    );
    assert_eq!(
        with(r#"{ nodes = ["redis://h:7000"], db = 0 }"#),
        Vec::<String>::new()
    );
    assert_eq!(
        with(r#"["redis://:s3cret@h:7000", "redis://:other@h:7001", "redis://h:7002", "rediss://:s3cret@h:7003", "redis://:s3cret@h:7004/3"]"#),
        [
            "proxy.toml:3:44: session.redis_cluster[1]: every seed must carry the user and password of the first: a Cluster's nodes share one set of credentials",
            "proxy.toml:3:69: session.redis_cluster[2]: every seed must carry the user and password of the first: a Cluster's nodes share one set of credentials",
            "proxy.toml:3:87: session.redis_cluster[3]: every seed must use the scheme of the first (all redis:// or all rediss://)",
            r#"proxy.toml:3:114: session.redis_cluster[4]: Redis Cluster has only database 0: drop the path of "redis://:<redacted>@h:7004/3""#,
        ]
    );
    assert_eq!(
        with(r#"{ nodes = ["redis://:s3cret@h:7000"], password = "pw", db = 2 }"#),
        [
            "proxy.toml:3:28: session.redis_cluster.nodes[0]: a password here and redis_cluster.password too: keep one of them",
            "proxy.toml:3:77: session.redis_cluster.db: Redis Cluster has only database 0",
        ]
    );
    assert_eq!(
        with("[]"),
        ["proxy.toml:3:17: session.redis_cluster: required: at least one redis:// seed URL"]
    );
    assert_eq!(
        with(r#"{ password = "pw", nodse = [] }"#),
        [
            "proxy.toml: session.redis_cluster.nodes: required: at least one redis:// seed URL",
            "proxy.toml:3:36: session.redis_cluster.nodse: unknown key; did you mean `nodes`?",
        ]
    );
}

/// `doorman check` on a config whose Redis passwords are wrong in other ways still never
/// prints them: not in an error, not in the summary of a valid config.
#[test]
fn check_never_prints_a_redis_password() {
    let bad = r#"[session]
store = "redis"
redis_cluster = ["redis://:s3cret-a@127.0.0.1:7000", "redis://:s3cret-b@127.0.0.1:7001", "redis://:s3cret-a@127.0.0.1:7002/4", "http://:s3cret-c@h"]
"#;
    let (code, stdout, stderr) = check(&write_config("redis-secret", bad));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(lines(&stderr).len(), 3, "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let good = r#"[session]
store = "redis"
redis_sentinel = { master = "m", nodes = ["redis://:s3cret-a@127.0.0.1:26379"], password = "s3cret-b", db = 1 }
"#;
    let (code, stdout, stderr) = check(&write_config("redis-secret-ok", good));
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Nor does the validated config's Debug (what a log line with `?config` would show).
    let config = Config::parse(good, Path::new("proxy.toml")).expect("valid");
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout}{stderr}"
    );
}

/// Relative paths in proxy.toml resolve against the config file's folder, so doorman started by
/// a service manager (whose working directory is `/`) reads the same files `check` did.
#[test]
fn relative_paths_resolve_against_the_config_folder_not_the_cwd() {
    let root = temp_dir("relpath");
    let conf_dir = root.join("conf");
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&conf_dir).expect("mkdir conf");
    std::fs::create_dir_all(&elsewhere).expect("mkdir elsewhere");
    let text = "[upstream]\nurl = \"https://localhost:8443\"\nca = \"ca.pem\"\n";
    std::fs::write(conf_dir.join("proxy.toml"), text).expect("write config");

    // Missing: the message names the path resolved under the config folder.
    let abs_config = conf_dir.join("proxy.toml");
    let (code, stdout, stderr) = run_cli_in(
        Some(&elsewhere),
        &["check", "--config", abs_config.to_str().unwrap()],
    );
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    let err = lines(&stderr);
    assert_eq!(err.len(), 1, "{stderr:?}");
    let prefix = format!(
        "{}:3:6: upstream.ca: cannot read certificates from {}: ",
        abs_config.display(),
        conf_dir.join("ca.pem").display()
    );
    assert!(err[0].starts_with(&prefix), "{stderr:?}");

    // Present beside the config, and absent from the working directory: accepted.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("generate CA");
    std::fs::write(conf_dir.join("ca.pem"), ca.cert.pem()).expect("write ca.pem");
    assert!(!elsewhere.join("ca.pem").exists());
    let (code, stdout, stderr) = run_cli_in(
        Some(&elsewhere),
        &["check", "--config", abs_config.to_str().unwrap()],
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(lines(&stdout).len(), 1, "{stdout:?}");
    assert!(stdout.contains("https://localhost:8443"), "{stdout:?}");

    // A relative --config from a cwd other than its folder resolves the same way.
    let (code, stdout, stderr) = run_cli_in(Some(&root), &["check", "--config", "conf/proxy.toml"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("conf/proxy.toml: "), "{stdout:?}");

    // A file that is not PEM is refused, naming the resolved path.
    std::fs::write(conf_dir.join("ca.pem"), "not a certificate\n").expect("write bad ca");
    let (code, _, stderr) = run_cli_in(Some(&root), &["check", "--config", "conf/proxy.toml"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        "conf/proxy.toml:3:6: upstream.ca: no PEM certificate found in conf/ca.pem"
    );
}

/// Start-up runs the same validation as `check` and refuses to bind with a bad config: a
/// half-valid doorman must never be serving.
#[test]
fn start_up_with_an_invalid_config_exits_2_before_binding() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The listen address itself is valid; the errors are elsewhere.
    let text = format!(
        "[listen]\naddr = \"{addr}\"\nidle_timeout = \"soon\"\n\n[upstream]\nurl = \"http://127.0.0.1:1/app\"\n\n[[routes]]\npath = \"/admin\"\naccess = \"nobody\"\n"
    );
    let file = write_config("startup", &text);
    let (check_code, _, check_stderr) = check(&file);
    assert_eq!(check_code, 2);
    assert_eq!(lines(&check_stderr).len(), 3, "{check_stderr:?}");
    assert!(
        check_stderr.starts_with(&format!("{}:3:16: listen.idle_timeout: ", file.display())),
        "placed at the value: {check_stderr:?}"
    );

    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn doorman");
    // Probe the port for as long as the process lives (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut accepted = false;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            accepted = true;
        }
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("doorman output");
    assert!(
        !accepted,
        "something accepted on the configured port while doorman ran"
    );
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the configured port accepts after doorman exited"
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        check_stderr,
        "start-up prints exactly what check prints, and nothing else (no log line, no listening)"
    );
}

// ---- [access], [[routes]], [identity], [login] prefix, [session] cookie_name ----------------

/// `parse_errors` for a config of just `text` (one route table, identity, ...).
fn policy_errors(text: &str) -> Vec<String> {
    parse_errors(text)
}

/// The expected `parse_errors` lines: each message prefixed with `proxy.toml` (as
/// [`prefixed`] does).
fn at_proxy_toml(messages: &[&str]) -> Vec<String> {
    messages.iter().map(|m| placed("proxy.toml", m)).collect()
}

/// A route with both `path` and `glob` is ambiguous about what it covers: refused, not
/// resolved by a silent preference for one of them.
#[test]
fn a_route_with_both_path_and_glob_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\npath = \"/a\"\nglob = \"/b/*\"\naccess = \"public\"\n"),
        at_proxy_toml(&["3:8: routes[0].glob: a route has either path or glob, not both"])
    );
}

/// A route with neither would match nothing (or everything); the operator meant something.
#[test]
fn a_route_with_neither_path_nor_glob_is_refused() {
    assert_eq!(
        policy_errors(
            "[[routes]]\npath = \"/ok\"\naccess = \"public\"\n\n[[routes]]\naccess = \"deny\"\n"
        ),
        at_proxy_toml(&["routes[1].path: a route needs a path or a glob"])
    );
}

/// A misspelt access value must not fall back to anything: the operator learns which values
/// exist.
#[test]
fn an_unknown_access_value_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\npath = \"/a\"\naccess = \"private\"\n"),
        at_proxy_toml(&[
            r#"3:10: routes[0].access: expected "public", "authenticated" or "deny", found "private""#
        ])
    );
}

/// Methods are case-sensitive tokens: `"get"` would never match a `GET` request, so the route
/// would silently not apply.
#[test]
fn an_invalid_method_is_refused() {
    assert_eq!(
        policy_errors(
            "[[routes]]\npath = \"/a\"\naccess = \"public\"\nmethods = [\"GET\", \"get\", \"PO ST\"]\n"
        ),
        at_proxy_toml(&[
            r#"4:19: routes[0].methods[1]: invalid method "get": methods are upper-case tokens such as "GET""#,
            r#"4:26: routes[0].methods[2]: invalid method "PO ST": methods are upper-case tokens such as "GET""#,
        ])
    );
}

/// `methods = []` would match no request at all: a route that can never apply is a mistake.
#[test]
fn an_empty_methods_list_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\npath = \"/a\"\naccess = \"public\"\nmethods = []\n"),
        at_proxy_toml(&[
            "4:11: routes[0].methods: must list at least one method (leave it out to match any method)"
        ])
    );
}

/// `users`, `groups` and `on_unauthenticated` only mean something on an authenticated route;
/// on a public route an operator would believe the route is restricted when it is not.
#[test]
fn user_and_group_restrictions_on_a_public_or_deny_route_are_refused() {
    let text = r#"
[[routes]]
path = "/a"
access = "public"
users = ["alice"]
groups = ["admin"]
on_unauthenticated = "redirect"

[[routes]]
path = "/b"
access = "deny"
groups = ["admin"]
"#;
    assert_eq!(
        policy_errors(text),
        at_proxy_toml(&[
            r#"5:9: routes[0].users: only applies to a route with access = "authenticated""#,
            r#"6:10: routes[0].groups: only applies to a route with access = "authenticated""#,
            r#"7:22: routes[0].on_unauthenticated: only applies to a route with access = "authenticated""#,
            r#"12:10: routes[1].groups: only applies to a route with access = "authenticated""#,
        ])
    );
}

/// `on_unauthenticated` has two values; anything else is refused with both named.
#[test]
fn a_bad_on_unauthenticated_value_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\npath = \"/a\"\non_unauthenticated = \"302\"\n"),
        at_proxy_toml(&[
            r#"3:22: routes[0].on_unauthenticated: expected "401" or "redirect", found "302""#
        ])
    );
}

/// Routes match normalised paths, so a route written in another spelling could never match
/// what it says; the error gives the spelling to write.
#[test]
fn a_route_path_that_is_not_normalised_is_refused_with_the_normal_form() {
    assert_eq!(
        policy_errors(
            "[[routes]]\npath = \"/a/../b\"\n\n[[routes]]\npath = \"//c/./d\"\n\n[[routes]]\npath = \"/%61dmin\"\n"
        ),
        at_proxy_toml(&[
            r#"2:8: routes[0].path: "/a/../b" is not a normalised path; write "/b""#,
            r#"5:8: routes[1].path: "//c/./d" is not a normalised path; write "/c/d""#,
            r#"8:8: routes[2].path: "/%61dmin" is not a normalised path; write "/admin""#,
        ])
    );
}

/// A route path doorman would answer 400 to (here `;`) can never match a forwarded request.
#[test]
fn a_route_path_doorman_would_refuse_is_refused() {
    assert_eq!(
        policy_errors(
            "[[routes]]\npath = \"/a;b\"\n\n[[routes]]\npath = \"admin\"\n\n[[routes]]\nglob = \"/x/%2F/*\"\n"
        ),
        at_proxy_toml(&[
            r#"2:8: routes[0].path: invalid path "/a;b": ; in path segment"#,
            r#"5:8: routes[1].path: invalid path "admin": path must start with /"#,
            r#"8:8: routes[2].glob: invalid glob "/x/%2F/*": encoded / or \ in path"#,
        ])
    );
}

/// `*` is a whole segment; `v*` looks like a wildcard but would be matched literally (or not at
/// all), so it is refused.
#[test]
fn a_glob_with_a_star_inside_a_segment_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\nglob = \"/api/v*/admin\"\naccess = \"deny\"\n"),
        at_proxy_toml(&[
            r#"2:8: routes[0].glob: glob "/api/v*/admin": `*` and `**` must be whole segments, found "v*""#
        ])
    );
}

/// Paths under `[login] prefix` are answered by doorman and never forwarded, so a route there
/// could never apply; the default prefix and a custom one are both checked.
#[test]
fn a_route_under_the_login_prefix_is_refused() {
    assert_eq!(
        policy_errors("[[routes]]\npath = \"/_doorman/login\"\naccess = \"public\"\n"),
        at_proxy_toml(&[
            r#"2:8: routes[0].path: "/_doorman/login" is under [login] prefix "/_doorman", which doorman answers itself"#
        ])
    );
    assert_eq!(
        policy_errors(
            "[login]\nprefix = \"/auth\"\n\n[[routes]]\npath = \"/auth\"\naccess = \"public\"\n\n[[routes]]\npath = \"/_doorman\"\naccess = \"public\"\n"
        ),
        at_proxy_toml(&[
            r#"5:8: routes[0].path: "/auth" is under [login] prefix "/auth", which doorman answers itself"#
        ])
    );
    // Globs whose literal part lies under the prefix, in any case, can never apply either.
    assert_eq!(
        policy_errors("[[routes]]\nglob = \"/_DOORMAN/*\"\naccess = \"public\"\n\n[[routes]]\nglob = \"/**\"\naccess = \"public\"\n"),
        at_proxy_toml(&[
            r#"2:8: routes[0].glob: "/_DOORMAN/*" is under [login] prefix "/_doorman", which doorman answers itself"#
        ])
    );
}

/// An unknown `[access] default` must not fall back silently (to either answer).
#[test]
fn an_unknown_access_default_is_refused() {
    assert_eq!(
        policy_errors("[access]\ndefault = \"maybe\"\n"),
        at_proxy_toml(&[
            r#"2:11: access.default: expected "public", "authenticated" or "deny", found "maybe""#
        ])
    );
}

/// `[login] prefix = "/"` would make doorman answer every path itself, hiding the app.
#[test]
fn a_login_prefix_of_the_root_or_not_normalised_is_refused() {
    assert_eq!(
        policy_errors("[login]\nprefix = \"/\"\n"),
        at_proxy_toml(&[
            r#"2:10: login.prefix: must not be "/": doorman's endpoints would hide the whole app"#
        ])
    );
    assert_eq!(
        policy_errors("[login]\nprefix = \"/a/../auth\"\n"),
        at_proxy_toml(&[
            r#"2:10: login.prefix: "/a/../auth" is not a normalised path; write "/auth""#
        ])
    );
    assert_eq!(
        policy_errors("[login]\nprefix = \"auth\"\n"),
        at_proxy_toml(&[r#"2:10: login.prefix: invalid path "auth": path must start with /"#])
    );
}

/// A cookie name outside the token characters cannot be set or read reliably; refused.
#[test]
fn a_bad_cookie_name_is_refused() {
    for name in ["my session", "a=b", "sid;", ""] {
        assert_eq!(
            policy_errors(&format!("[session]\ncookie_name = {name:?}\n")),
            at_proxy_toml(&[&format!(
                "2:15: session.cookie_name: invalid cookie name {name:?}: use letters, digits and !#$%&'*+-.^_`|~"
            )]),
            "{name:?}"
        );
    }
}

/// One header cannot carry both the user and the groups; equal after case and `_`/`.`
/// folding counts as equal, since the upstream reads them that way.
#[test]
fn identity_user_header_equal_to_groups_header_is_refused() {
    for (user, groups) in [("X-Who", "X-Who"), ("X-Who", "x_who"), ("X-Who", "X.WHO")] {
        assert_eq!(
            policy_errors(&format!(
                "[identity]\nuser_header = {user:?}\ngroups_header = {groups:?}\n"
            )),
            at_proxy_toml(&["3:17: identity.groups_header: must differ from user_header"]),
            "{user} / {groups}"
        );
    }
}

/// An empty strip prefix would strip every request header.
#[test]
fn an_empty_strip_prefix_is_refused() {
    assert_eq!(
        policy_errors("[identity]\nstrip_prefix = \"\"\n"),
        at_proxy_toml(&[
            "2:16: identity.strip_prefix: must not be empty: it would strip every header"
        ])
    );
}

/// Identity header names must be valid header names (and not hop-by-hop, which would be
/// dropped on the way); each bad one is named.
#[test]
fn invalid_identity_header_names_are_refused() {
    let text = r#"
[identity]
user_header = "X User"
groups_header = "Connection"
strip_prefix = "X Auth-"
strip_headers = ["X-Api-User", "bad header", ""]
"#;
    assert_eq!(
        policy_errors(text),
        at_proxy_toml(&[
            r#"3:15: identity.user_header: invalid header name "X User""#,
            r#"4:17: identity.groups_header: "Connection" is a hop-by-hop header and cannot carry identity"#,
            r#"5:16: identity.strip_prefix: invalid header name prefix "X Auth-""#,
            r#"6:32: identity.strip_headers[1]: invalid header name "bad header""#,
            r#"6:46: identity.strip_headers[2]: invalid header name """#,
        ])
    );
}

/// A complete, valid access config loads into the table the gate uses: routes in file order,
/// the default, and unknown keys inside a route are still reported.
#[test]
fn a_valid_access_config_loads_and_unknown_route_keys_are_reported() {
    let text = r#"
[login]
prefix = "/auth/"

[session]
cookie_name = "sid"

[identity]
user_header = "X-User-Name"
groups_header = "X-User-Roles"
strip_prefix = "X-MyCo-"
strip_headers = ["X-Api-User"]

[access]
default = "deny"
case_sensitive = true

[[routes]]
path = "/dashboard/"
access = "authenticated"
groups = ["staff"]
on_unauthenticated = "redirect"

[[routes]]
glob = "/api/*/admin/**"
methods = ["GET", "POST"]
access = "public"
"#;
    let c = Config::parse(text, Path::new("proxy.toml"))
        .unwrap_or_else(|e| panic!("valid config refused:\n{e}"));
    assert_eq!(c.login.prefix, "/auth");
    assert_eq!(c.session.cookie_name, "sid");
    assert_eq!(
        c.routes.default_policy().access,
        doorman::routes::Access::Deny
    );
    let names: Vec<&str> = c.routes.routes().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["/dashboard/", "/api/*/admin/**"]);
    assert_eq!(c.routes.routes()[0].policy.groups, ["staff"]);
    // A route listing GET also matches HEAD (DESIGN §3): the table carries it.
    assert_eq!(
        c.routes.routes()[1].methods,
        Some(vec![
            http::Method::GET,
            http::Method::POST,
            http::Method::HEAD
        ])
    );

    assert_eq!(
        policy_errors("[[routes]]\npath = \"/a\"\nacess = \"public\"\n"),
        at_proxy_toml(&["3:1: routes[0].acess: unknown key; did you mean `access`?"])
    );
    assert_eq!(
        policy_errors("routes = 5\n"),
        at_proxy_toml(&[
            "1:10: routes: expected an array of tables: write each route as [[routes]]"
        ])
    );
}

// ---- where an error is: FILE:LINE:COL: key.path: message (DESIGN.md §14) --------------------

/// `doorman check --config proxy.toml` run in a fresh folder holding `files` (name, text), so
/// messages name the file exactly as an operator who typed that would see them.
fn check_in_folder(tag: &str, files: &[(&str, &str)]) -> (i32, String, String) {
    let dir = temp_dir(tag);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write file");
    }
    run_cli_in(Some(&dir), &["check", "--config", "proxy.toml"])
}

/// A misspelt key is placed at the key itself (column counted from the line's start, indented
/// here) and named with the key that table accepts that it was probably meant to be.
#[test]
fn a_misspelt_key_is_placed_at_the_key_with_the_key_it_was_meant_to_be() {
    let text = "[listen]\naddr = \"127.0.0.1:8080\"\n\n[session]\n  idle_timout = \"45m\"\n";
    let (code, stdout, stderr) = check_in_folder("misspelt", &[("proxy.toml", text)]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        "proxy.toml:5:3: session.idle_timout: unknown key; did you mean `idle_timeout`?\n"
    );

    // Section names too; a key close to nothing accepted gets no guess.
    let text = "[upstream]\nurl = \"http://127.0.0.1:3000\"\nconect_timeout = \"1s\"\n\n[sesion]\nfoo = 1\n";
    let (code, _, stderr) = check_in_folder("misspelt-section", &[("proxy.toml", text)]);
    assert_eq!(code, 2);
    assert_eq!(
        lines(&stderr),
        [
            "proxy.toml:3:1: upstream.conect_timeout: unknown key; did you mean `connect_timeout`?",
            "proxy.toml:5:2: sesion: unknown key; did you mean `session`?",
        ]
    );
}

/// A bad value (an unusable duration, a wrong type, a value out of range) is placed where the
/// value starts, not at its key.
#[test]
fn a_bad_value_is_placed_at_the_value() {
    let text = r#"[upstream]
url = "http://127.0.0.1:3000"
timeout = "5 fortnights"
preserve_host = "yes"

[listen]
max_connections =    0
"#;
    let (code, stdout, stderr) = check_in_folder("bad-value", &[("proxy.toml", text)]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        lines(&stderr),
        [
            "proxy.toml:7:22: listen.max_connections: must be between 1 and 1000000, found 0",
            r#"proxy.toml:3:11: upstream.timeout: invalid duration "5 fortnights": expected a number and a unit (ms, s, m, h, d), such as "30s""#,
            "proxy.toml:4:17: upstream.preserve_host: expected true or false, found a string",
        ]
    );
}

/// In an array of tables, the error names the entry (`routes[1]`, the second `[[routes]]`) and
/// points into it; keys of inline tables and of `[a.b]` tables are placed the same way.
#[test]
fn errors_in_arrays_of_tables_and_nested_tables_are_placed_too() {
    let text = r#"[[routes]]
path = "/public"
access = "public"

[[routes]]
path = "/admin"
acces = "deny"
methods = ["GET", "delete"]

[session]
store = "redis"
redis_sentinel = { master = "m", nodes = ["redis://127.0.0.1:26379"], tsl = true }

[session.express]
secrets = ["s3cret"]
user_field = "userId"
forward_cookie = "no"
"#;
    let (code, _, stderr) = check_in_folder("nested", &[("proxy.toml", text)]);
    assert_eq!(code, 2);
    assert_eq!(
        lines(&stderr),
        [
            "proxy.toml:12:71: session.redis_sentinel.tsl: unknown key; did you mean `tls`?",
            "proxy.toml:17:18: session.express.forward_cookie: expected true or false, found a string",
            r#"proxy.toml:8:19: routes[1].methods[1]: invalid method "delete": methods are upper-case tokens such as "GET""#,
            "proxy.toml:7:1: routes[1].acces: unknown key; did you mean `access`?",
        ]
    );
}

/// A required key the file leaves out has nowhere to point: the message keeps `FILE: key.path`.
#[test]
fn an_error_about_a_key_the_file_does_not_have_has_no_position() {
    let text = "[[routes]]\npath = \"/a\"\n\n[[routes]]\naccess = \"deny\"\n\n[forward_auth]\nallowed_hosts = [\"a.test\"]\n";
    let (code, _, stderr) = check_in_folder("no-position", &[("proxy.toml", text)]);
    assert_eq!(code, 2);
    assert_eq!(
        lines(&stderr),
        [
            "proxy.toml: forward_auth.trusted_gateways: required: the addresses of the gateways that send auth sub-requests, such as [\"127.0.0.1/32\"]",
            "proxy.toml: routes[1].path: a route needs a path or a glob",
        ]
    );
}

/// The users file is read with the same machinery: its errors are placed in the users file.
#[test]
fn users_file_errors_are_placed_in_the_users_file() {
    let config = "[login]\nusers_file = \"users.toml\"\n";
    let users = "[users.alice]\npasword = \"hunter2\"\ngroups = [\"ops\", 7]\n";
    let (code, _, stderr) = check_in_folder(
        "users-placed",
        &[("proxy.toml", config), ("users.toml", users)],
    );
    assert_eq!(code, 2);
    assert_eq!(
        lines(&stderr),
        [
            "users.toml: users.alice.password: required: an argon2id hash from `doorman hash-password`",
            "users.toml:3:18: users.alice.groups[1]: expected a string, found an integer",
            "users.toml:2:1: users.alice.pasword: unknown key; did you mean `password`?",
        ]
    );
    // A users file that cannot be read is reported at `users_file` in proxy.toml.
    let (code, _, stderr) = check_in_folder("users-missing", &[("proxy.toml", config)]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("proxy.toml:2:14: login.users_file: cannot read users.toml: "),
        "{stderr:?}"
    );
}
