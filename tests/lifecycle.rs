//! The process lifecycle: signals, graceful shutdown bounded by `shutdown_grace`, and logs.
//!
//! These run the real binary (`DoormanProcess`), since signals, exit codes and stderr are the
//! contract; the last test covers the library's in-process shutdown handle.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use support::doorman::config;
use support::{
    echoed, eventually, free_port, get, h1_client, send, Doorman, DoormanProcess, Upstream,
};

/// A config for the binary: `{addr}` is filled in by `DoormanProcess::spawn`.
fn process_config(upstream_url: &str, listen_extra: &str) -> String {
    config(
        upstream_url,
        &format!("addr = \"{{addr}}\"\nheader_timeout = \"500ms\"\n{listen_extra}"),
        "",
    )
}

/// A GET through doorman must succeed: proves the accept loop (and so the signal handlers,
/// installed before it starts) is running before a test sends a signal.
async fn assert_serving(doorman: &DoormanProcess, path: &str) {
    let (status, _, body) = send(&h1_client(), get(&doorman.url(path), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["uri"], path);
}

/// Wait until the upstream has received `path` (the request is in flight).
async fn until_upstream_has(upstream: &Upstream, path: &str) {
    let seen = eventually(
        Duration::from_secs(10),
        async || upstream.seen_paths(),
        |paths| paths.iter().any(|p| p == path),
    )
    .await;
    assert!(
        seen.iter().any(|p| p == path),
        "{path} never reached the upstream"
    );
}

/// Try to connect until a connection is refused or `limit` passes; true if one was refused.
fn refused_within(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Deploys and restarts send SIGTERM; a request already being served must finish normally,
/// while new connections are turned away so the load balancer moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish_and_exits_0() {
    let upstream = Upstream::start().await;
    let mut doorman = DoormanProcess::spawn(&process_config(&upstream.url(), ""), &[]);
    assert_serving(&doorman, "/warm").await;

    let url = doorman.url("/slow/1500");
    let in_flight = tokio::spawn(async move { send(&h1_client(), get(&url, &[])).await });
    until_upstream_has(&upstream, "/slow/1500").await;
    assert!(
        !in_flight.is_finished(),
        "the slow request is still in flight"
    );
    doorman.signal(libc::SIGTERM);

    let addr = doorman.addr;
    let refused = tokio::task::spawn_blocking(move || refused_within(addr, Duration::from_secs(1)))
        .await
        .expect("probe task");
    assert!(refused, "new connections are still accepted after SIGTERM");

    let (status, _, body) = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight request completes")
        .expect("request task");
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(echo["uri"], "/slow/1500", "the whole body arrived");

    let status = tokio::task::spawn_blocking(move || {
        let status = doorman.wait_exit(Duration::from_secs(5));
        (status, doorman.logs())
    })
    .await
    .expect("wait task");
    let (status, logs) = status;
    let status = status.unwrap_or_else(|| panic!("doorman did not exit; log:\n{logs}"));
    assert_eq!(status.code(), Some(0), "log:\n{logs}");
}

/// A request that would outlive `shutdown_grace` must not hold the shutdown hostage: doorman
/// closes it once the grace is over and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_how_long_in_flight_requests_may_run() {
    let upstream = Upstream::start().await;
    let mut doorman = DoormanProcess::spawn(
        &process_config(&upstream.url(), "shutdown_grace = \"500ms\""),
        &[],
    );
    assert_serving(&doorman, "/warm").await;

    let url = doorman.url("/slow/10000");
    let in_flight = tokio::spawn(async move {
        let resp = h1_client().request(get(&url, &[])).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    });
    until_upstream_has(&upstream, "/slow/10000").await;
    let sent = Instant::now();
    doorman.signal(libc::SIGTERM);

    let (status, doorman) = tokio::task::spawn_blocking(move || {
        let status = doorman.wait_exit(Duration::from_secs(8));
        (status, doorman)
    })
    .await
    .expect("wait task");
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("doorman did not exit; log:\n{}", doorman.logs()));
    assert_eq!(status.code(), Some(0), "log:\n{}", doorman.logs());
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}, not bounded by shutdown_grace"
    );

    let result = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the client learns its connection closed")
        .expect("request task");
    assert!(
        result.is_err(),
        "the cut request must fail, not look complete: {result:?}"
    );
}

/// Ctrl-C in a terminal (SIGINT) is a normal stop, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_doorman_like_sigterm() {
    let upstream = Upstream::start().await;
    let mut doorman = DoormanProcess::spawn(&process_config(&upstream.url(), ""), &[]);
    assert_serving(&doorman, "/warm").await;
    doorman.signal(libc::SIGINT);
    let (status, logs) = tokio::task::spawn_blocking(move || {
        let status = doorman.wait_exit(Duration::from_secs(5));
        (status, doorman.logs())
    })
    .await
    .expect("wait task");
    let status = status.unwrap_or_else(|| panic!("doorman did not exit; log:\n{logs}"));
    assert_eq!(
        status.code(),
        Some(0),
        "killed rather than stopped; log:\n{logs}"
    );
}

/// SIGHUP means "reload" to operators; its default action (terminate) must never take doorman
/// down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_does_not_stop_doorman() {
    let upstream = Upstream::start().await;
    let mut doorman = DoormanProcess::spawn(&process_config(&upstream.url(), ""), &[]);
    assert_serving(&doorman, "/before").await;
    doorman.signal(libc::SIGHUP);
    // Handled once the reload's outcome is logged ("config reloaded", or "config reload
    // refused/failed"); a process SIGHUP killed never logs it, and the checks below say so.
    eventually(
        Duration::from_secs(10),
        async || doorman.logs(),
        |logs| logs.contains("config reload"),
    )
    .await;
    assert!(
        doorman.child.try_wait().expect("try_wait").is_none(),
        "doorman exited on SIGHUP; log:\n{}",
        doorman.logs()
    );
    assert_serving(&doorman, "/after").await;
    assert!(doorman.child.try_wait().expect("try_wait").is_none());
}

/// Stop doorman with SIGTERM and return its whole log once it exited.
async fn stop_and_collect_logs(mut doorman: DoormanProcess) -> String {
    tokio::task::spawn_blocking(move || {
        doorman.signal(libc::SIGTERM);
        let status = doorman.wait_exit(Duration::from_secs(5));
        let logs = doorman.logs();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{logs}");
        logs
    })
    .await
    .expect("stop task")
}

/// Log pipelines ingest `--log-format json` line by line: every line must be JSON, and each
/// request must be one access record with its method, path and status as fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_an_access_record() {
    let upstream = Upstream::start().await;
    let doorman = DoormanProcess::spawn(
        &process_config(&upstream.url(), ""),
        &["--log-format", "json"],
    );
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/json/probe?q=1"), &[])).await;
    assert_eq!(status, 200);
    let logs = stop_and_collect_logs(doorman).await;

    let records: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}")))
        .collect();
    assert!(records.len() >= 2, "start-up and access lines: {logs}");
    let access: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["target"] == "doorman::access")
        .collect();
    assert_eq!(access.len(), 1, "one access record per request:\n{logs}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["method"], "GET", "{logs}");
    assert_eq!(fields["path"], "/json/probe", "{logs}");
    assert_eq!(fields["status"], 200, "{logs}");
    assert_eq!(access[0]["level"], "INFO", "{logs}");
}

/// Remove ANSI escape sequences (`ESC [ ... letter`), to read a line as a terminal shows it.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The default human-readable format still says which request got which answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_show_each_request_path_and_status() {
    let upstream = Upstream::start().await;
    let doorman = DoormanProcess::spawn(&process_config(&upstream.url(), ""), &[]);
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/status/404"), &[])).await;
    assert_eq!(status, 404);
    let logs = strip_ansi(&stop_and_collect_logs(doorman).await);
    let line = logs
        .lines()
        .find(|l| l.contains("doorman::access"))
        .unwrap_or_else(|| panic!("no access line:\n{logs}"));
    assert!(line.contains("path=/status/404"), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    assert!(
        serde_json::from_str::<serde_json::Value>(line).is_err(),
        "the default format is text, not JSON: {line}"
    );
}

/// Logs redirected to a file or journald are read with grep and log viewers: terminal colour
/// codes would split `status=404` into `status\x1b[0m\x1b[2m=\x1b[0m404` and defeat them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_file_carry_no_terminal_colour_codes() {
    let upstream = Upstream::start().await;
    let doorman = DoormanProcess::spawn(&process_config(&upstream.url(), ""), &[]);
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/status/404"), &[])).await;
    assert_eq!(status, 404);
    let logs = stop_and_collect_logs(doorman).await;
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in a log written to a file:\n{logs:?}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("doorman::access") && l.contains("status=404")),
        "grep-able access line:\n{logs}"
    );
}

/// `RUST_LOG` is how operators quiet doorman: at `warn`, access lines go, warnings stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_warn_suppresses_access_lines_but_keeps_warnings() {
    // Nothing listens upstream: the request fails with 502 and doorman logs a warning about it,
    // which shows the log is written while the info-level access line is filtered out.
    let dead_upstream = format!("http://127.0.0.1:{}", free_port());
    let doorman = DoormanProcess::spawn_with(&process_config(&dead_upstream, ""), &[], |cmd| {
        cmd.env("RUST_LOG", "warn");
    });
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/quiet/probe"), &[])).await;
    assert_eq!(status, 502);
    let logs = strip_ansi(&stop_and_collect_logs(doorman).await);
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("/quiet/probe")),
        "the failed request's warning is logged:\n{logs}"
    );
    assert!(
        !logs.contains("doorman::access"),
        "access lines are info and must be filtered at warn:\n{logs}"
    );
    assert!(
        !logs.contains("INFO"),
        "no info lines at all at warn:\n{logs}"
    );
}

/// Embedders and tests stop the library server through its shutdown future; the task must
/// drain the in-flight request, then end with Ok, and stop listening.
#[tokio::test]
async fn in_process_shutdown_drains_and_resolves_ok() {
    let upstream = Upstream::start().await;
    let mut doorman = Doorman::start(&config(&upstream.url(), "", "")).await;
    let (status, _, _) = send(&h1_client(), get(&doorman.url("/warm"), &[])).await;
    assert_eq!(status, 200);

    let url = doorman.url("/slow/500");
    let in_flight = tokio::spawn(async move { send(&h1_client(), get(&url, &[])).await });
    until_upstream_has(&upstream, "/slow/500").await;
    let task = doorman.shutdown();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server task ends after shutdown")
        .expect("the server task did not panic");
    assert!(result.is_ok(), "run returned an error: {result:?}");

    let (status, _, body) = in_flight.await.expect("request task");
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["uri"], "/slow/500");
    assert!(
        tokio::net::TcpStream::connect(doorman.addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}

/// The serving process's environment, as the kernel holds it (`/proc/<pid>/environ`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn environ_of(doorman: &DoormanProcess) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{}/environ", doorman.pid())).expect("read environ");
    raw.split(|&b| b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// glibc's per-thread allocator cache is raised for serving (main.rs, `TCACHE_COUNT`): doorman
/// starts itself again with `glibc.malloc.tcache_count` in `GLIBC_TUNABLES`, as the same
/// process (the test's child still serves), under its own name and with its own arguments. A
/// value the operator set is kept, and their other tunables stay.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_raises_the_allocator_cache_unless_the_operator_chose_its_size() {
    let upstream = Upstream::start().await;
    let cases: [(Option<&str>, &str); 3] = [
        (None, "glibc.malloc.tcache_count=127"),
        (
            Some("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=127",
        ),
        (
            Some("glibc.malloc.tcache_count=7"),
            "glibc.malloc.tcache_count=7",
        ),
    ];
    for (theirs, want) in cases {
        let doorman = DoormanProcess::spawn_with(
            &process_config(&upstream.url(), ""),
            &["--log-format", "json"],
            |cmd| match theirs {
                Some(v) => {
                    cmd.env("GLIBC_TUNABLES", v);
                }
                None => {
                    cmd.env_remove("GLIBC_TUNABLES");
                }
            },
        );
        assert_serving(&doorman, "/tuned").await;
        if theirs.is_none() {
            // In the environment the kernel started the serving image with: only a second
            // `execve` puts it there. (Not read with several tunables: glibc up to 2.38 cuts
            // the original string at the first `:` as it parses it, so /proc shows the first one
            // only; what the process reads is its copy, which the start-up log below shows.)
            let environ = environ_of(&doorman);
            let tunables: Vec<&String> = environ
                .iter()
                .filter(|v| v.starts_with("GLIBC_TUNABLES="))
                .collect();
            assert_eq!(tunables, [&format!("GLIBC_TUNABLES={want}")]);
        }
        let comm =
            std::fs::read_to_string(format!("/proc/{}/comm", doorman.pid())).expect("read comm");
        assert_eq!(
            comm.trim(),
            "doorman",
            "the process keeps its name for ps and pgrep"
        );
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", doorman.pid())).expect("cmdline");
        let args: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        assert_eq!(
            args.len(),
            5,
            "program, --config FILE, --log-format json: {args:?}"
        );
        assert_eq!(&args[3..], [b"--log-format".as_slice(), b"json".as_slice()]);
        let logs = stop_and_collect_logs(doorman).await;
        assert!(
            logs.lines()
                .any(|l| l.contains("allocator") && l.contains(&format!("\"{want}\""))),
            "the start-up log says which tunables are in force:\n{logs}"
        );
    }
}

/// A binary given a file capability (`setcap cap_net_bind_service+ep`, so that it may bind port
/// 443 without root) runs in glibc's secure-execution mode, where glibc drops the tunable from
/// the new image's environment: doorman must serve with glibc's default cache, not start itself
/// again forever (which it did before `AT_SECURE` was checked). Needs root, to set the capability
/// and to run as `nobody`, `setcap` (scripts/test installs libcap2-bin) and `setpriv`, and a
/// temporary directory `nobody` can reach on a file system that honours file capabilities
/// (not `nosuid`); without them the test says `SKIPPED`, and under `CI=true` it fails instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_with_file_capabilities_serves_without_starting_itself_again() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let test = "a_binary_with_file_capabilities_serves_without_starting_itself_again";
    let dir = support::temp_dir("caps");
    let setcap = ["/usr/sbin/setcap", "/sbin/setcap"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let setpriv = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let nosuid = {
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
        let mut fs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a NUL-terminated path and a buffer of the right type, read only on success.
        let read = unsafe { libc::statvfs(path.as_ptr(), fs.as_mut_ptr()) } == 0;
        // SAFETY: statvfs filled it in (read is true).
        read && unsafe { fs.assume_init() }.f_flag & libc::ST_NOSUID != 0
    };
    let reachable = dir
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.permissions().mode() & 0o001 != 0);
    let missing = [
        (!root, "root"),
        (setcap.is_none(), "setcap (libcap2-bin)"),
        (!setpriv, "setpriv"),
        (nosuid, "a temporary directory not mounted nosuid"),
        (!reachable, "a temporary directory others may enter"),
    ]
    .into_iter()
    .filter_map(|(miss, what)| miss.then_some(what))
    .collect::<Vec<_>>();
    let Some(setcap) = setcap.filter(|_| missing.is_empty()) else {
        let why = format!("it needs {}", missing.join(", "));
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: required in CI (CI=true): {why}"
        );
        eprintln!("SKIPPED: {test}: {why}");
        return;
    };
    let upstream = Upstream::start().await;
    // `nobody` writes the embedded store (and its control socket beside it) here.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let program = dir.join("doorman");
    std::fs::copy(support::process::binary(), &program).expect("copy the binary");
    let status = Command::new(setcap)
        .arg("cap_net_bind_service+ep")
        .arg(&program)
        .status()
        .expect("run setcap");
    assert!(status.success(), "setcap failed");
    let store = format!(
        "[session]\npath = \"{}\"\n",
        dir.join("sessions.db").display()
    );
    let launcher: [&std::ffi::OsStr; 5] = [
        "setpriv".as_ref(),
        "--reuid=65534".as_ref(),
        "--regid=65534".as_ref(),
        "--clear-groups".as_ref(),
        program.as_os_str(),
    ];
    let doorman = DoormanProcess::spawn_through(
        &config(&upstream.url(), "addr = \"{addr}\"\n", &store),
        &launcher,
        &[],
        |cmd| {
            cmd.env_remove("GLIBC_TUNABLES");
        },
    );
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/caps"), &[])).await;
    assert_eq!(status, 200, "log:\n{}", doorman.logs());
    assert_eq!(echoed(&body)["uri"], "/caps");
    let log = stop_and_collect_logs(doorman).await;
    assert!(log.contains("secure-execution mode"), "log:\n{log}");
}
