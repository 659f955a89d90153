//! `benches/pgo.sh` builds the profile-guided doorman end to end, so the build the benchmark
//! tables measure (docs/BENCHMARKS.md) cannot rot: the instrumented release build, the training
//! run (`benches/run.sh --quick` on every doorman row, which checks each answer), the merge
//! with llvm-profdata (the script fails when the profile has no count for the request path),
//! and the optimised release build. The built binary then serves a request here.
//!
//! It is the slowest test (two release builds with fat LTO, about ten minutes on two cores) and
//! needs what tests/bench_quick.rs needs plus llvm-profdata of rustc's LLVM version, which
//! `scripts/test` installs (Debian's `llvm-N`). No timing is asserted: what the build gains is
//! measured by `benches/callgrind.sh` and `benches/run.sh`, not here.

use std::process::Command;

mod support;

use support::doorman::config;
use support::{echoed, get, h1_client, send, DoormanProcess, Upstream};

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

    // What the run trained on, and that it reached the request path.
    let table = std::fs::read_to_string(out.join("train").join("table.md")).expect("table.md");
    for row in [
        "d", "e", "f", "g", "h", "x", "k", "l", "m", "o", "q", "s", "u", "v",
    ] {
        assert!(
            table.contains(&format!("\n| {row} | doorman"))
                || table.contains(&format!("\n| {row} | nginx auth_request → doorman")),
            "row {row} is not in the training run's table:\n{table}"
        );
    }
    assert!(
        stderr.contains("profile: gate::decide's hottest block ran"),
        "{stderr}"
    );
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
        |_| {},
    );
    let (status, _, body) = send(&h1_client(), get(&doorman.url("/pgo"), &[])).await;
    assert_eq!(status, 200, "log:\n{}", doorman.logs());
    assert_eq!(echoed(&body)["uri"], "/pgo");
}
