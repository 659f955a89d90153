//! `benches/soak.sh --quick` runs end to end: 30 s of mixed traffic against two doormen on a
//! persistent Redis (one with the session cache), with a Redis restart halfway, and every
//! answer right (DESIGN.md §14; issue 18).
//!
//! It drives this test run's doorman binary (a debug build) with benches/soak.py on free
//! loopback ports. `--quick` checks answers only: soak.py's rules (no 200 without a live
//! session; 200 or 503 for a live one; logged-out WebSockets closed, live ones never; slow
//! clients served, unfinished heads cut), every kind of traffic ran, and sessions made before
//! the restart were served after it. The growth check needs the ten-minute run
//! (`benches/soak.sh`), whose figures are in docs/BENCHMARKS.md; no timing is asserted here.

mod support;

#[test]
fn quick_soak_answers_every_request_right_across_a_redis_restart() {
    let out = support::temp_dir("bench-soak");
    let (printed, stderr) = support::run_bench_quick("soak.sh", &[], &out);

    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary.md written");
    assert!(
        printed.contains(&summary),
        "the summary is printed:\n{printed}"
    );
    let verdict: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("verdict.json")).expect("verdict.json written"),
    )
    .expect("verdict.json is JSON");
    let counts = &verdict["counts"];
    assert_eq!(
        counts["wrong"].as_u64().unwrap_or(0),
        0,
        "{summary}\n{stderr}"
    );
    for kind in [
        "public",
        "auth live",
        "auth dead",
        "auth made-up",
        "auth none",
        "login",
        "logout",
        "ws",
        "ws ended",
        "slow",
        "slowloris cut",
    ] {
        assert!(
            counts[kind].as_u64().unwrap_or(0) > 0,
            "no {kind} traffic ran:\n{summary}"
        );
    }
    assert!(
        verdict["restart"].is_array(),
        "redis-server was restarted halfway:\n{summary}"
    );
    assert!(
        verdict["survivors"].as_u64().unwrap_or(0) > 0,
        "sessions made before the restart were served after it:\n{summary}"
    );
    let svg = std::fs::read_to_string(out.join("rss.svg")).expect("rss.svg written");
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
