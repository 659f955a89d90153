//! Resource limits of the listener: `max_connections`, running out of file descriptors, and the
//! open-file limit doorman raises for itself at start-up.

mod support;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use support::doorman::config;
use support::raw::{get_request, RawConn};
use support::{Doorman, DoormanProcess, Upstream};

/// `setrlimit(RLIMIT_NOFILE, soft/hard)` in the child before it runs doorman.
fn with_open_file_limit(soft: u64, hard: u64) -> impl Fn(&mut std::process::Command) {
    move |cmd| {
        // SAFETY: the hook runs between fork and exec and only calls setrlimit(2), which is
        // async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// The soft and hard "Max open files" of a running process, from `/proc/PID/limits`.
fn open_file_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// `max_connections` caps concurrent connections: beyond it, a new connection waits in the
/// backlog unanswered (not refused, not served) and is served as soon as a slot frees up.
#[tokio::test]
async fn beyond_max_connections_a_new_connection_waits_for_a_free_slot() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::start(&config(
        &upstream.url(),
        "max_connections = 2\nheader_timeout = \"10s\"\nidle_timeout = \"30s\"",
        "",
    ))
    .await;
    let mut held = Vec::new();
    for name in ["/a", "/b"] {
        let mut conn = RawConn::connect(doorman.addr).await;
        conn.send(&get_request(name)).await;
        let resp = conn.response(Duration::from_secs(3)).await;
        assert_eq!(resp.map(|r| r.status), Some(200), "{name}");
        held.push(conn);
    }

    let mut third = RawConn::connect(doorman.addr).await;
    third.send(&get_request("/third")).await;
    assert!(
        third.response(Duration::from_millis(500)).await.is_none(),
        "a third connection was served while max_connections = 2 were held"
    );
    assert_eq!(upstream.seen_paths(), ["/a", "/b"]);

    drop(held.remove(0));
    let resp = third
        .response(Duration::from_secs(3))
        .await
        .expect("the waiting connection was not served after a slot freed");
    assert_eq!(resp.status, 200);
    assert_eq!(upstream.seen_paths(), ["/a", "/b", "/third"]);
    // The connection still held keeps working.
    assert!(held[0].send(&get_request("/b2")).await);
    let resp = held[0].response(Duration::from_secs(3)).await;
    assert_eq!(resp.map(|r| r.status), Some(200));
}

/// When accept fails with EMFILE the listening socket stays readable, so an accept loop that
/// retries at once spins a core at 100% until a descriptor frees up — exactly when the machine
/// is under pressure. Doorman must back off (and say so in its log), and recover by itself
/// once descriptors are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_backs_off_instead_of_spinning() {
    let upstream = Upstream::start().await;
    let toml = config(
        &upstream.url(),
        // Long deadlines: the idle connections below must keep their descriptors.
        "addr = \"{addr}\"\nheader_timeout = \"60s\"\nidle_timeout = \"60s\"",
        "",
    );
    let process = DoormanProcess::spawn_with(&toml, &[], with_open_file_limit(64, 64));
    assert_eq!(open_file_limits(process.pid()), (64, 64));

    // More connections than doorman has descriptors: the kernel completes every handshake,
    // doorman accepts until EMFILE, and the rest stay queued in the backlog, keeping the
    // listener readable for as long as the test holds them.
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(
            tokio::net::TcpStream::connect(process.addr)
                .await
                .expect("connect"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process.logs().contains("backing off") {
        assert!(
            Instant::now() < deadline,
            "no back-off warning after exhausting descriptors; log:\n{}",
            process.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every descriptor number below the limit is taken (descriptors inherited above it, such
    // as a build tool's jobserver pipe, do not count). The start-up readiness probe's connection
    // may close just after the first EMFILE; doorman's next accept after its back-off takes
    // that descriptor again, so wait for the table to fill rather than sample it once.
    let fds_below_limit = || {
        std::fs::read_dir(format!("/proc/{}/fd", process.pid()))
            .expect("proc fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&fd| fd < 64)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while fds_below_limit() < 64 {
        assert!(
            Instant::now() < deadline,
            "doorman is not out of descriptors: {} of 64 used",
            fds_below_limit()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cpu_before = process.cpu_time();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cpu = process.cpu_time() - cpu_before;
    let wall = wall.elapsed();
    assert!(
        cpu < Duration::from_millis(300),
        "doorman used {cpu:?} of CPU in {wall:?} while out of descriptors: the accept loop spins"
    );

    drop(idle);
    let mut conn = RawConn::connect(process.addr).await;
    conn.send(&get_request("/after")).await;
    let resp = conn.response(Duration::from_secs(5)).await;
    assert_eq!(
        resp.map(|r| r.status),
        Some(200),
        "doorman did not recover after descriptors were freed; log:\n{}",
        process.logs()
    );
    assert_eq!(upstream.seen_paths(), ["/after"]);
}

/// With the common default soft limit of 1024 (or less), a proxy allowed 10000 connections
/// would hit EMFILE at a few hundred clients (each costs a client and an upstream socket).
/// Doorman raises its soft limit at start-up to fit `max_connections`, up to the hard limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_at_start_to_fit_max_connections() {
    let upstream = Upstream::start().await;
    // Raising a hard limit needs privilege (CAP_SYS_RESOURCE, which a container's root may
    // lack); lowering it does not. So: 65536, or this process's own hard limit if lower.
    let mut own = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
    let hard = own.rlim_max.min(65_536);
    let max_connections = ((hard.saturating_sub(256)) / 2).min(10_000);
    assert!(
        max_connections >= 1_000,
        "the hard open-file limit ({hard}) is too low to run this test meaningfully"
    );
    let toml = config(
        &upstream.url(),
        &format!("addr = \"{{addr}}\"\nmax_connections = {max_connections}"),
        "",
    );
    let process = DoormanProcess::spawn_with(&toml, &[], with_open_file_limit(256, hard));
    let (soft, now_hard) = open_file_limits(process.pid());
    assert_eq!(now_hard, hard, "the hard limit must be left alone");
    assert!(
        soft >= 2 * max_connections,
        "soft open-file limit {soft} < 2 * max_connections ({max_connections}); log:\n{}",
        process.logs()
    );
}
