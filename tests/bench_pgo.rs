//! `benches/pgo.sh` builds the profile-guided doorman end to end, so the build the benchmark
//! tables measure (docs/BENCHMARKS.md) cannot rot: the instrumented release build, the training
//! run (`benches/run.sh --quick` on every doorman row, which checks each answer), the merge
//! with llvm-profdata (the script fails when a row errored or the profile barely counts the
//! request path), and the optimised release build, with the harness's floor (hyper-floor, row
//! w) trained and built beside doorman. The test checks the training's table and counts itself
//! too, and both built binaries then serve a request here.
//!
//! It is the slowest test (two release builds with fat LTO, about ten minutes on two cores) and
//! needs what tests/bench_quick.rs needs plus llvm-profdata of rustc's LLVM version, which
//! `scripts/test` installs (Debian's `llvm-N`). No timing is asserted: what the build gains is
//! measured by `benches/callgrind.sh` and `benches/run.sh`, not here.

use std::process::Command;
use std::time::Duration;

mod support;

use support::doorman::config;
use support::{echoed, eventually, get, h1_client, send, DoormanProcess, Upstream};

#[tokio::test]
async fn the_profile_guided_build_is_trained_on_every_doorman_row_and_serves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = support::temp_dir("bench-pgo");
    let mut pgo = Command::new("bash");
    pgo.arg(root.join("benches").join("pgo.sh"))
        .args(["--no-install", "--out"])
        .arg(&out)
        .env_remove("DOORMAN_BENCH_LOG");
    support::as_from_a_shell(&mut pgo);
    let result = pgo.output().expect("run bash benches/pgo.sh");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "benches/pgo.sh failed ({}):\n{stderr}",
        result.status
    );

    // What the run trained on: each doorman row measured (a rate, not "not supported" or
    // "skipped"), without errors; and the profile reached the request path.
    let table = std::fs::read_to_string(out.join("train").join("table.md")).expect("table.md");
    let main_table = table
        .split("\n| row | what | conns | req/s | p50")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the training run's main table");
    for row in [
        "d", "e", "f", "g", "h", "x", "k", "l", "m", "o", "q", "s", "u", "v", "w",
    ] {
        let line = main_table
            .lines()
            .find(|l| l.starts_with(&format!("| {row} | ")))
            .unwrap_or_else(|| panic!("row {row} is not in the training run's table:\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells[4].starts_with(|c: char| c.is_ascii_digit()) && cells[7] == "0",
            "row {row} was not measured without errors: {line}"
        );
    }
    // The profile reached the request path of both binaries (the floor writes its own only if
    // it exits through `exit` on run.sh's SIGTERM).
    for function in ["gate::decide", "hyper-floor's PooledBody::give_back"] {
        let marker = format!("{function}'s hottest block ran ");
        let hot: u64 = stderr
            .lines()
            .find_map(|l| l.split(&marker).nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count for {function} in the log:\n{stderr}"));
        assert!(hot >= 10_000, "the training passed {function} {hot} times");
    }
    let profile = std::fs::metadata(out.join("doorman.profdata")).expect("the merged profile");
    assert!(profile.len() > 0);

    // The optimised binary (its path is all the script prints) serves.
    let printed = String::from_utf8_lossy(&result.stdout);
    let binary = std::path::PathBuf::from(printed.trim());
    assert!(
        binary.is_file() && binary.to_string_lossy().contains("/pgo-use/"),
        "benches/pgo.sh printed {printed:?}"
    );
    let upstream = Upstream::start().await;
    let doorman = DoormanProcess::spawn_through(
        &config(&upstream.url(), "addr = \"{addr}\"\n", ""),
        &[binary.as_os_str()],
        &[],
        |cmd| {
            cmd.env("RUST_LOG", "info,doorman::sizes=debug");
        },
    );
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/pgo"), &[])).await;
    assert_eq!(status, 200, "log:\n{}", doorman.logs());
    assert_eq!(echoed(&body)["uri"], "/pgo");

    // A request's boxed future fits glibc's per-thread cache (requests of at most 1,032 bytes),
    // as it must for the allocation to stay on malloc's fast path (src/server/mod.rs,
    // `note_request_future_size`). Only a release build lays the future out as shipped, and
    // this is the one the tests make; the line (debug when it fits, a warning when not) comes
    // after the first request, and a missing or reworded line fails here too.
    let logs = eventually(
        Duration::from_secs(5),
        async || doorman.logs(),
        |logs| logs.contains("a request's boxed future"),
    )
    .await;
    // The `bytes=` of the first `doorman::sizes` line naming `what`.
    let logged_bytes = |what: &str| -> usize {
        logs.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split(" bytes=").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no size of {what} in the log:\n{logs}"))
    };
    let bytes = logged_bytes("a request's boxed future");
    assert!(
        bytes <= 1032,
        "a request's boxed future is {bytes} bytes, over the 1,032 glibc's per-thread cache \
         serves: every request's allocation now takes malloc's slow path (about 230 \
         instructions); see src/server/mod.rs on what to box"
    );
    // A connection's spawned future, which every connection keeps for its life, stays under
    // its limit (src/server/mod.rs, `note_connection_future_size`): 4,040 bytes while hyper's
    // state was held twice, 2,520 since.
    let bytes = logged_bytes("a connection's future");
    assert!(
        bytes <= 3072,
        "a connection's future is {bytes} bytes, over its 3,072: every connection, idle or \
         not, now holds that much; see src/server/mod.rs, CONNECTION_FUTURE_LIMIT"
    );

    // The floor built beside it (for run.sh's --floor) proxies to the same upstream.
    let floor = binary.with_file_name("examples").join("hyper-floor");
    let port = support::free_port();
    let upstream_port: u16 = upstream
        .url()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the upstream's port");
    let child = Command::new(&floor)
        .args(["--listen", &port.to_string()])
        .args(["--upstream", &upstream_port.to_string()])
        .args(["--workers", "1"])
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", floor.display()));
    let mut floor = Stopped(child);
    let listening = eventually(
        Duration::from_secs(10),
        async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        |up| *up,
    )
    .await;
    assert!(listening, "hyper-floor did not listen on {port}");
    let url = format!("http://127.0.0.1:{port}/floor");
    let (status, _, body) = send(&h1_client(), get(&url, &[])).await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["uri"], "/floor");
    // SIGTERM, as run.sh stops it: the floor exits through `exit`, where an instrumented
    // build writes its profile.
    support::terminate(&mut floor.0);
    let exit = floor.0.wait().expect("the floor's exit status");
    assert!(exit.success(), "hyper-floor on SIGTERM: {exit}");
}

/// A child process stopped (`support::terminate`) when the test ends, if it still runs.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            support::terminate(&mut self.0);
        }
    }
}
