//! `benches/run.sh --quick` runs end to end, so the benchmark harness cannot rot.
//!
//! It drives this test run's doorman binary (a debug build: the figures mean nothing, and no
//! timing is asserted) against the harness's nginx upstream and nginx proxy, with wrk and
//! redis-server, all on free loopback ports, for about a second per row; row h puts a gateway
//! nginx in front of an auth-only doorman (`auth_request` to `/_doorman/auth`), on Redis, and row
//! x the same on the embedded store. The TLS rows j to
//! v (issue 20: HTTPS keep-alive with wrk, full and resumed handshakes with the tls-load example,
//! HTTP/2 with h2load; nginx and doorman on certificates the run makes with openssl) run too. Rows
//! g and m (`[session] cache = true`) are measured when this build accepts the option, and must be
//! listed as not supported when it does not (the harness runs older builds too). Row w, the
//! hyper-floor example (the stack's floor), runs beside them. `scripts/test`
//! installs nginx, wrk, h2load, openssl and redis-server when they are missing; `--no-install`
//! keeps this test from running apt-get itself.

use std::process::Command;

mod support;

/// Whether this build's `doorman check` accepts `[session] cache = true` (row g needs it).
fn session_cache_supported() -> bool {
    let dir = support::temp_dir("bench-quick-probe");
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[session]\nstore = \"redis\"\n\
         redis = \"redis://127.0.0.1:9/0\"\ncache = true\n",
    )
    .expect("write the probe config");
    let out = Command::new(env!("CARGO_BIN_EXE_doorman"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("run doorman check");
    let _ = std::fs::remove_dir_all(&dir);
    out.status.success()
}

#[test]
fn quick_benchmark_runs_every_doorman_row() {
    let out = support::temp_dir("bench-quick");
    let client = support::build_example("tls-load");
    let floor = support::build_example("hyper-floor");
    let (printed, stderr) = support::run_bench_quick(
        "run.sh",
        &[
            "--tls-client".as_ref(),
            client.as_os_str(),
            "--floor".as_ref(),
            floor.as_os_str(),
        ],
        &out,
    );

    let table = std::fs::read_to_string(out.join("table.md")).expect("table.md written");
    assert_eq!(printed, table, "the table is printed as written");
    let cache = session_cache_supported();
    let mut measured = vec![
        ("a", "upstream direct"),
        ("b", "nginx proxy_pass"),
        ("d", "doorman, public route"),
        ("e", "doorman, authenticated, Redis store"),
        ("f", "doorman, authenticated, embedded store"),
        ("h", "nginx auth_request → doorman /auth (Redis store)"),
        (
            "x",
            "nginx auth_request → doorman /auth (embedded store, doorman's default)",
        ),
        ("j", "nginx TLS proxy, HTTP/1.1 keep-alive"),
        ("k", "doorman TLS, public route"),
        ("l", "doorman TLS, authenticated, embedded store"),
        ("n", "nginx, full TLS handshakes, ECDSA P-256"),
        ("o", "doorman, full TLS handshakes, ECDSA P-256"),
        ("p", "nginx, resumed TLS handshakes, ECDSA P-256"),
        ("q", "doorman, resumed TLS handshakes, ECDSA P-256"),
        ("r", "nginx, full TLS handshakes, RSA 2048"),
        ("s", "doorman, full TLS handshakes, RSA 2048"),
        ("t", "nginx h2 proxy"),
        ("u", "doorman h2, public route"),
        ("v", "doorman h2, authenticated, embedded store"),
        ("w", "hyper-floor: hyper server + client"),
    ];
    if cache {
        measured.push(("g", "doorman, authenticated, Redis store, cache = true"));
        measured.push(("m", "doorman TLS, authenticated, Redis store, cache = true"));
    } else {
        // A build that refuses `cache = true` gets row g listed, not a failed run.
        assert!(
            table.contains(
                "| g | doorman, authenticated, Redis store, cache = true | 64 | \
                 not supported by this doorman build"
            ),
            "row g listed as not supported:\n{table}"
        );
    }
    for (row, what) in measured {
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
    assert!(
        table
            .contains("| i | nginx auth_request → Express session check | 64 | skipped in --quick"),
        "quick mode lists row i (Node) as skipped:\n{table}"
    );
    // Row w, the stack's floor, is set beside nginx's and doorman's public row, never a target.
    assert!(
        table.contains("| w hyper-floor µs/req against nginx's (row b): the stack alone | 64 |")
            && table
                .contains("| d public µs/req over the floor's (row w): doorman's own work | 64 |"),
        "the floor's comparisons are listed:\n{table}"
    );
    // Issue 14's forward-auth target is judged on both stores.
    for row in ["h", "x"] {
        let forward_auth = table
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "| {row} forward-auth ≥ 0.5× nginx proxy_pass req/s"
                ))
            })
            .unwrap_or_else(|| panic!("no forward-auth target line for row {row} in:\n{table}"));
        assert!(forward_auth.contains('×'), "{forward_auth}");
    }
    for ratio_row in ["d", "e", "f", "g"]
        .into_iter()
        .filter(|r| cache || *r != "g")
    {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {ratio_row} | doorman")))
            .expect("doorman row");
        assert!(
            line.contains('×'),
            "row {ratio_row} has its ratio to nginx: {line}"
        );
    }
    // The chart is drawn from the same run's files.
    let chart = std::fs::read_to_string(out.join("chart.svg")).expect("run.sh wrote chart.svg");
    assert!(
        chart.starts_with("<svg") && chart.contains("QUICK SMOKE RUN"),
        "chart.svg is the quick run's SVG"
    );
    let _ = std::fs::remove_dir_all(&out);
}
