//! Test support: a real upstream, doorman in-process or as its binary, and small clients.
//!
//! What a test binds itself binds `127.0.0.1:0` and keeps its listener; a port handed to a peer
//! process comes from [`free_port`], below the kernel's ephemeral range, so tests run in
//! parallel and never collide with anything on the machine.
#![allow(dead_code, unused_imports)] // each test file uses its own part of the support module

pub mod cache;
pub mod cluster;
pub mod doorman;
pub mod express;
pub mod failover;
pub mod fake_oidc;
pub mod gateway;
pub mod h2c;
pub mod login;
pub mod netns;
pub mod node;
pub mod oidc;
pub mod ops;
pub mod process;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod tls;
pub mod upstream;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

pub use self::doorman::Doorman;
pub use self::process::DoormanProcess;
pub use self::upstream::Upstream;

/// A fresh, empty directory under the system temp dir, unique to this process and call.
///
/// Tests keep their directories (a doorman or redis-server may still be writing there when
/// a test returns, and a failed test's files are evidence). Instead, the first call in each
/// test process removes the directories of test processes that have exited, so they do not
/// pile up from run to run.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_dirs_of_exited_tests);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("doorman-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// End a server process the tests started: SIGCONT (a paused one would never handle the
/// rest), SIGTERM, and SIGKILL if it is still there after five seconds; then reap it.
pub fn terminate(child: &mut std::process::Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One WebSocket frame as a client sends it (RFC 6455 §5.2): final, binary, masked with a
/// fixed key. Doorman checks a tunnel's client side frame by frame; the test upstream's `/ws`
/// echoes the bytes as they came, so the client reads this same frame back.
pub fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x82];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x5a, 0x1e, 0x0f, 0x33];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Whether `program --version` runs and succeeds: the probe behind the tests' `require_*`
/// checks, which fail (never skip) with a clear message when a peer is missing.
pub fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback port nobody listens on right now, for a process the test starts to bind.
///
/// Picked *below* the kernel's ephemeral range, never with `bind(127.0.0.1:0)`: between the
/// pick and the peer's own bind (redis-server, node, doorman's binary) the port is free, and a
/// port from the ephemeral range can be taken in that moment by the local end of any outgoing
/// connection or by any other `bind(0)` on the machine. CI saw exactly that: an OIDC provider
/// exited with EADDRINUSE on the port its doorman had just been told about. The kernel never
/// hands out a port below the range on its own, so only another explicit bind can take one.
///
/// The window is `[low - 20000, low - 10000)` (`low` from `ip_local_port_range`, 32768 by
/// default): a Redis Cluster node's bus port (its port + 10000) then falls in
/// `[low - 10000, low)`, also below the range and never a port this hands out. A process-wide
/// counter walks the window from an offset spread by the pid, so tests of one binary never pick
/// the same port twice and two binaries side by side rarely meet; a port something already
/// listens on is skipped. With a range starting too low for a window, it falls back to
/// `bind(0)`.
pub fn free_port() -> u16 {
    const BUS_OFFSET: u32 = 10_000;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    if low < 2 * BUS_OFFSET + 1024 {
        return ephemeral_port();
    }
    let start = low - 2 * BUS_OFFSET;
    let size = BUS_OFFSET as usize;
    let spread = (std::process::id() as usize).wrapping_mul(7919) % size;
    for _ in 0..size {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = start + ((spread + step) % size) as u32;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    ephemeral_port()
}

/// A port from the kernel's ephemeral range (`bind(0)`): [`free_port`]'s fallback.
fn ephemeral_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Poll `probe` until `check` holds or `limit` passes; the last answer either way.
///
/// This is how a test waits for something to happen (a request to reach the upstream, a log
/// line, a metric to move) instead of sleeping for a guessed while: it returns as soon as the
/// event is there, and a test that needs it asserts on the answer.
pub async fn eventually<T>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> T,
    check: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let got = probe().await;
        if check(&got) || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Build the example `name` with the same cargo, profile and features (`bench-seed`, as
/// scripts/test runs the tests, so the library is not built again) as this test run, and return
/// its path. `cargo test --all-targets` builds examples only as test harnesses, and the
/// benchmark scripts run them as programs.
pub fn build_example(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.current_dir(root).args([
        "build",
        "--quiet",
        "--features",
        "bench-seed",
        "--example",
        name,
    ]);
    as_from_a_shell(&mut build);
    let out = build
        .output()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(
        out.status.success(),
        "cargo build --features bench-seed --example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // This test's binary is target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    profile_dir.join("examples").join(name)
}

/// Cargo gives a test its package's variables (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...). Build
/// scripts that track them (ring's does) would see a changed environment and rebuild half the
/// graph in a `cargo build` the test runs, and again at the next plain `cargo build`: remove
/// them from `command`, so what it builds is built as from a shell.
pub fn as_from_a_shell(command: &mut std::process::Command) {
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_MANIFEST_")
            || var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_BIN_EXE_")
            || matches!(
                var.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            )
        {
            command.env_remove(var.as_ref());
        }
    }
}

/// Run `benches/<script> --quick --no-install --doorman <this build's doorman> --out <out>`
/// plus `extra`, as `cargo test` does to keep the benchmark scripts from rotting; assert it
/// succeeded and return what it printed: stdout (its table) and stderr (its log).
pub fn run_bench_quick(
    script: &str,
    extra: &[&std::ffi::OsStr],
    out: &std::path::Path,
) -> (String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let result = std::process::Command::new("bash")
        .arg(root.join("benches").join(script))
        .args([
            "--quick",
            "--no-install",
            "--doorman",
            env!("CARGO_BIN_EXE_doorman"),
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .env_remove("DOORMAN_BENCH_LOG")
        .output()
        .unwrap_or_else(|e| panic!("run bash benches/{script}: {e}"));
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(
        result.status.success(),
        "benches/{script} --quick failed ({}):\n{stderr}",
        result.status
    );
    (String::from_utf8_lossy(&result.stdout).into_owned(), stderr)
}

/// Remove `doorman-test-{pid}-…` directories whose process is gone (Linux: no `/proc/{pid}`).
fn remove_dirs_of_exited_tests() {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("doorman-test-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An HTTP/1.1 client (pooled, keep-alive).
pub fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (plain TCP).
pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A GET request to `url` with extra headers.
pub fn get(url: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

/// Send `req` and collect the response: status, headers and the whole body.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let resp = client.request(req).await.expect("request through doorman");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    (parts.status, parts.headers, body)
}

/// The echo upstream's view of a request: parse its JSON.
pub fn echoed(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("echo body is not JSON ({e}): {body:?}"))
}

/// All values of `name` (lower case) the upstream received, in order.
pub fn echoed_header(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
        .collect()
}
