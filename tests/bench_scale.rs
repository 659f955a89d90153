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

mod support;

#[test]
fn quick_scale_run_holds_idle_connections_and_reads_seeded_stores() {
    let seed = support::build_example("bench-seed");
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
