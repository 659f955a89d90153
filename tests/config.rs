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
use support::doorman::{binary, free_port, run_cli};
use support::temp_dir;

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

/// Each message prefixed with `FILE: `, as doorman prints validation errors.
fn prefixed(file: &Path, messages: &[&str]) -> Vec<String> {
    messages
        .iter()
        .map(|m| format!("{}: {m}", file.display()))
        .collect()
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
            r#"listen.addr: invalid address "localhost:80": expected IP:PORT, such as "127.0.0.1:8080" or "[::1]:8080""#,
            "listen.shutdown_grace: must be greater than zero",
            r#"listen.header_timeout: expected a duration string such as "30s", found an integer"#,
            r#"listen.idle_timeout: invalid duration "soon": expected a number and a unit (ms, s, m, h, d), such as "30s""#,
            "listen.max_connections: expected an integer, found a string",
            "listen.max_header_bytes: must be between 8192 and 1048576, found 4096",
            r#"listen.trusted_proxies[1]: invalid address block "10.0.0.0/33": expected an IP or CIDR such as "10.0.0.0/8""#,
            "listen.trusted_proxies[2]: expected a string, found an integer",
            "listen.bogus: unknown key",
            r#"upstream.url: invalid upstream url "ftp://example.com": the scheme must be http or https"#,
            "upstream.ca: only applies to an https:// upstream url",
            r#"upstream.connect_timeout: invalid duration "3 s": expected a number and a unit (ms, s, m, h, d), such as "30s""#,
            "upstream.timeout: must be greater than zero",
            "upstream.preserve_host: expected true or false, found a string",
            "upstream.extra: unknown key",
            "mystery: unknown key",
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
    assert_eq!(c.upstream.url(), "https://example.com:8443");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(86_400));
    assert!(c.upstream.preserve_host);
    assert!(c.upstream.ca.is_none());
}

/// Wrong shapes at the top level are errors too, not silently replaced by defaults.
#[test]
fn a_section_that_is_not_a_table_is_an_error() {
    assert_eq!(
        parse_errors("listen = 5\nupstream = \"http://127.0.0.1:3000\"\n"),
        [
            "proxy.toml: listen: expected a table, found an integer",
            "proxy.toml: upstream: expected a table, found a string",
        ]
    );
}

/// Limits that would make doorman useless or unsafe are refused with their range.
#[test]
fn integer_limits_are_range_checked() {
    assert_eq!(
        parse_errors("[listen]\nmax_connections = 0\nmax_header_bytes = 2000000\n"),
        [
            "proxy.toml: listen.max_connections: must be between 1 and 1000000, found 0",
            "proxy.toml: listen.max_header_bytes: must be between 8192 and 1048576, found 2000000",
        ]
    );
    assert_eq!(
        parse_errors("[listen]\nmax_connections = -3\n"),
        ["proxy.toml: listen.max_connections: must be between 1 and 1000000, found -3"]
    );
}

/// Contract sections this build does not enforce must be refused: a config whose `[[routes]]`
/// were silently ignored would leave the paths it meant to protect open.
#[test]
fn unimplemented_sections_are_refused_not_ignored() {
    let text = r#"
[listen]
addr = "127.0.0.1:8080"
tls = { cert = "cert.pem", key = "key.pem" }
redirect_http = "127.0.0.1:8081"
hsts = "365d"

[session]
store = "embedded"

[login]
prefix = "/_doorman"

[identity]
user_header = "X-Auth-User"

[admin]
addr = "127.0.0.1:9090"

[access]
default = "authenticated"

[[routes]]
path = "/dashboard"
access = "authenticated"
"#;
    let file = write_config("notyet", text);
    let (code, stdout, stderr) = check(&file);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    let not_yet = "not supported by this build of doorman yet";
    let tls = "TLS is not supported by this build of doorman yet";
    let expected = prefixed(
        &file,
        &[
            &format!("listen.tls: {tls}"),
            &format!("listen.redirect_http: {tls}"),
            &format!("listen.hsts: {tls}"),
            // Top-level keys are reported in the order the TOML table keeps them (sorted).
            &format!("access: {not_yet}"),
            &format!("admin: {not_yet}"),
            &format!("identity: {not_yet}"),
            &format!("login: {not_yet}"),
            &format!("routes: {not_yet}"),
            &format!("session: {not_yet}"),
        ],
    );
    assert_eq!(lines(&stderr), expected, "full stderr:\n{stderr}");

    // A lone [[routes]] is enough to refuse the whole config.
    assert_eq!(
        parse_errors("[[routes]]\npath = \"/admin\"\naccess = \"deny\"\n"),
        [format!("proxy.toml: routes: {not_yet}")]
    );
}

/// Run `doorman ARGS` from `cwd` and return (exit code, stdout, stderr).
fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run doorman");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    let (code, stdout, stderr) = run_in(
        &elsewhere,
        &["check", "--config", abs_config.to_str().unwrap()],
    );
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    let err = lines(&stderr);
    assert_eq!(err.len(), 1, "{stderr:?}");
    let prefix = format!(
        "{}: upstream.ca: cannot read certificates from {}: ",
        abs_config.display(),
        conf_dir.join("ca.pem").display()
    );
    assert!(err[0].starts_with(&prefix), "{stderr:?}");

    // Present beside the config, and absent from the working directory: accepted.
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("generate CA");
    std::fs::write(conf_dir.join("ca.pem"), ca.cert.pem()).expect("write ca.pem");
    assert!(!elsewhere.join("ca.pem").exists());
    let (code, stdout, stderr) = run_in(
        &elsewhere,
        &["check", "--config", abs_config.to_str().unwrap()],
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(lines(&stdout).len(), 1, "{stdout:?}");
    assert!(stdout.contains("https://localhost:8443"), "{stdout:?}");

    // A relative --config from a cwd other than its folder resolves the same way.
    let (code, stdout, stderr) = run_in(&root, &["check", "--config", "conf/proxy.toml"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("conf/proxy.toml: "), "{stdout:?}");

    // A file that is not PEM is refused, naming the resolved path.
    std::fs::write(conf_dir.join("ca.pem"), "not a certificate\n").expect("write bad ca");
    let (code, _, stderr) = run_in(&root, &["check", "--config", "conf/proxy.toml"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr.trim_end(),
        "conf/proxy.toml: upstream.ca: no PEM certificate found in conf/ca.pem"
    );
}

/// Start-up runs the same validation as `check` and refuses to bind with a bad config: a
/// half-valid doorman must never be serving.
#[test]
fn start_up_with_an_invalid_config_exits_2_before_binding() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The listen address itself is valid; the errors are elsewhere.
    let text = format!(
        "[listen]\naddr = \"{addr}\"\nidle_timeout = \"soon\"\n\n[upstream]\nurl = \"http://127.0.0.1:1/app\"\n\n[[routes]]\npath = \"/admin\"\n"
    );
    let file = write_config("startup", &text);
    let (check_code, _, check_stderr) = check(&file);
    assert_eq!(check_code, 2);
    assert_eq!(lines(&check_stderr).len(), 3, "{check_stderr:?}");

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
