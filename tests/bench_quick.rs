//! `benches/run.sh --quick` runs end to end, so the benchmark harness cannot rot.
//!
//! It drives this test run's doorman binary (a debug build: the figures mean nothing, and no
//! timing is asserted) against the harness's nginx upstream and nginx proxy, with wrk and
//! redis-server, all on free loopback ports, for about a second per row. `scripts/test`
//! installs nginx, wrk and redis-server when they are missing; `--no-install` keeps this test
//! from running apt-get itself.

use std::path::Path;
use std::process::Command;

mod support;

#[test]
fn quick_benchmark_runs_every_doorman_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = support::temp_dir("bench-quick");
    let result = Command::new("bash")
        .arg(root.join("benches/run.sh"))
        .args([
            "--quick",
            "--no-install",
            "--doorman",
            env!("CARGO_BIN_EXE_doorman"),
        ])
        .arg("--out")
        .arg(&out)
        .env_remove("DOORMAN_BENCH_LOG")
        .output()
        .expect("run bash benches/run.sh");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "benches/run.sh --quick failed ({}):\n{stderr}",
        result.status
    );

    let table = std::fs::read_to_string(out.join("table.md")).expect("table.md written");
    assert_eq!(
        String::from_utf8_lossy(&result.stdout),
        table,
        "the table is printed as written"
    );
    for (row, what) in [
        ("a", "upstream direct"),
        ("b", "nginx proxy_pass"),
        ("d", "doorman, public route"),
        ("e", "doorman, authenticated, Redis store"),
        ("f", "doorman, authenticated, embedded store"),
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {row} | {what}")))
            .unwrap_or_else(|| panic!("no row {row} in:\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | row | what | conns | req/s | p50 | p99 | errors | ...
        assert_eq!(cells[3], "64", "{line}");
        assert!(
            cells[4] != "–" && !cells[4].is_empty(),
            "row {row} has no req/s: {line}"
        );
        assert_eq!(cells[7], "0", "row {row} had errors: {line}\n{stderr}");
    }
    assert!(
        table.contains("| c | Express + express-session + connect-redis | 64 | skipped in --quick"),
        "quick mode lists row c as skipped:\n{table}"
    );
    for ratio_row in ["d", "e", "f"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {ratio_row} | doorman")))
            .expect("doorman row");
        assert!(
            line.contains('×'),
            "row {ratio_row} has its ratio to nginx: {line}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
