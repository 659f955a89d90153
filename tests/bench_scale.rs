//! `benches/scale.sh --quick` runs end to end, so the scale harness cannot rot.
//!
//! It drives this test run's doorman binary (a debug build: the figures mean nothing, and no
//! timing is asserted) and a debug build of the `bench-seed` example (built here with cargo)
//! at tiny sizes: 300 idle connections (plain, and TLS to doorman and to nginx), stores seeded with 100 and 2,000 sessions, a second of
//! wrk per row. The script itself fails when a connection is refused or dropped while held,
//! when seeding reports an error, or when doorman does not accept a seeded session (the seed
//! tool's layout drifted from the store's); this test checks that it succeeded and that its
//! table has every part, without errors. Needs nginx, wrk, redis-server and openssl, like
//! `bench_quick.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

/// The `bench-seed` example, built by the same cargo that runs this test (`cargo test` builds
/// examples only with `--all-targets`, and this one only with its `bench-seed` feature).
fn seed_binary(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "--quiet", "--features", "bench-seed"])
        .args(["--example", "bench-seed"]);
    // Cargo gives this test its package's variables (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...).
    // Build scripts that track them (ring's does) would see a changed environment and rebuild
    // half the graph here, and again at the next plain `cargo build`: build as from a shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                name.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            )
        {
            build.env_remove(name.as_ref());
        }
    }
    let out = build
        .output()
        .expect("run cargo build --features bench-seed --example bench-seed");
    assert!(
        out.status.success(),
        "cargo build --features bench-seed --example bench-seed failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The test binary is target/<profile>/deps/bench_scale-<hash>.
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile_dir.join("examples/bench-seed")
}

#[test]
fn quick_scale_run_holds_idle_connections_and_reads_seeded_stores() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = seed_binary(root);
    let out = support::temp_dir("bench-scale");
    let (printed, stderr) =
        support::run_bench_quick("scale.sh", &["--seed".as_ref(), seed.as_os_str()], &out);

    let table = std::fs::read_to_string(out.join("scale.md")).expect("scale.md written");
    assert_eq!(printed, table);

    // | connections | held | failed | ...
    let idle = table
        .lines()
        .find(|l| l.starts_with("| 300 |"))
        .unwrap_or_else(|| panic!("no idle-connections row in:\n{table}"));
    let cells: Vec<&str> = idle.split('|').map(str::trim).collect();
    assert_eq!((cells[2], cells[3]), ("300", "0"), "{idle}");

    // | server | connections | held | failed | ...
    for server in ["doorman", "nginx"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {server} | 300 |")))
            .unwrap_or_else(|| panic!("no idle TLS row for {server} in:\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!((cells[3], cells[4]), ("300", "0"), "{line}");
    }

    for store in ["redis", "embedded"] {
        for size in ["100", "2,000"] {
            let line = table
                .lines()
                .find(|l| l.starts_with(&format!("| {store} | {size} |")))
                .unwrap_or_else(|| panic!("no {store} {size} row in:\n{table}"));
            // | store | sessions | seeded in s | store MiB | conns | req/s | p50 | p99 | errors |
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cells[5], "64", "{line}");
            assert!(cells[6] != "–" && !cells[6].is_empty(), "no req/s: {line}");
            assert_eq!(cells[9], "0", "errors in {line}\n{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
