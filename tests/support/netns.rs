//! A network namespace of its own, joined to the test's by a veth pair, so a test can take
//! the network away from a peer (a `redis-server` inside) without touching the process:
//! [`NetNs::cut_link`] sets the host end down, [`NetNs::drop_all`] makes it drop every packet
//! it sends, silently (`tc qdisc … netem loss 100%`, or the same silence without netem where
//! the kernel lacks it). Connections that were open stay open and go quiet, which is what a
//! real network fault does and what killing or pausing a process never shows.
//!
//! Each instance has its own namespace `doorman-test-{pid}-{n}`, veth ends `dh{pid}x{n}`
//! (here) / `di{pid}x{n}` (inside) and a /30 of its own in `10.213.0.0/16` (`.1` here, `.2`
//! inside; no default route inside, and here an `unreachable` route for the /30 that takes
//! over while the link is down): traffic only ever goes between this namespace and the
//! test's — never out through the machine's default route — and parallel tests never
//! collide. What a run that was killed left (its pid gone: the namespace, anything still
//! running in it, its route and `ifb` device) is removed before the first namespace of a run
//! is made; a namespace of the same name is removed before it is made again. Dropping a
//! [`NetNs`] kills its `redis-server` and removes the namespace, the veth pair and the route.
//!
//! Making namespaces needs `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (root, on the machines the
//! suite runs on). Where that is not given, [`NetNs::for_test`] prints
//! `SKIPPED: … because …` and the test returns — visibly, never as a silent pass; with
//! `CI=true` it is a failure instead, since CI runs as root and a skip there would hide that
//! the tests no longer run.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The port `redis-server` listens on inside: the namespace is the test's alone, so a fixed
/// port cannot be taken by anything else.
const REDIS_PORT: u16 = 6379;
/// Where the namespaces' /30s come from.
const PREFIX: [u8; 2] = [10, 213];
/// The metric of each /30's `unreachable` route: worse than the link's own (0), so it only
/// counts while the link is down.
const UNREACHABLE_METRIC: &str = "4000";

static N: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth pair to the test's namespace, and optionally a
/// `redis-server` inside.
pub struct NetNs {
    /// The namespace's name (`ip netns exec NAME …`).
    pub name: String,
    /// The veth end in the test's namespace: the one that is cut.
    pub host_if: String,
    /// This side's address (`10.213.A.B+1`).
    pub host_addr: Ipv4Addr,
    /// The address inside (`10.213.A.B+2`), where the server listens.
    pub inside_addr: Ipv4Addr,
    /// The `ifb` device [`NetNs::drop_all`] discards packets into where there is no netem.
    sink_if: String,
    redis: Option<Child>,
    dir: Option<PathBuf>,
}

impl NetNs {
    /// A namespace for a test that needs one, or `None` after printing why the test is
    /// skipped (and panicking instead under `CI=true`).
    pub fn for_test(test: &str) -> Option<NetNs> {
        if let Err(why) = NetNs::available() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: network namespaces are required in CI (CI=true, run as root) and {why}");
            }
            eprintln!("SKIPPED: {test} needs its own network namespace, because {why}");
            return None;
        }
        Some(NetNs::new())
    }

    /// Whether namespaces can be made here: `Err` says why not (no `ip`, not permitted).
    /// Probed once per test process, with a namespace made and removed again.
    pub fn available() -> Result<(), String> {
        static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
        PROBED
            .get_or_init(|| {
                let probe = format!("doorman-probe-{}", std::process::id());
                let _ = run(&["ip", "netns", "del", &probe]);
                let made = run(&["ip", "netns", "add", &probe]);
                let _ = run(&["ip", "netns", "del", &probe]);
                made.map(drop)
                    .map_err(|e| format!("`ip netns add` failed: {e}"))
            })
            .clone()
    }

    /// A fresh namespace with the veth pair up and addressed, `lo` up inside.
    pub fn new() -> NetNs {
        sweep_leftovers();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("doorman-test-{pid}-{n}");
        let host_if = format!("dh{pid}x{n}");
        let inside_if = format!("di{pid}x{n}");
        let sink_if = format!("db{pid}x{n}");
        // A stale namespace of this name (a recycled pid) goes first, with its veth pair.
        remove_namespace(&name);
        let _ = run(&["ip", "link", "del", &host_if]);
        let _ = run(&["ip", "link", "del", &sink_if]);
        let (host_addr, inside_addr) = free_subnet(pid, n);
        let ns = NetNs {
            name,
            host_if,
            host_addr,
            inside_addr,
            sink_if,
            redis: None,
            dir: None,
        };
        let host_cidr = format!("{host_addr}/30");
        let inside_cidr = format!("{inside_addr}/30");
        for args in [
            &["ip", "netns", "add", &ns.name][..],
            &[
                "ip",
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &inside_if,
                "netns",
                &ns.name,
            ],
            &["ip", "addr", "add", &host_cidr, "dev", &ns.host_if],
            &["ip", "link", "set", &ns.host_if, "up"],
            // While the link is down its own route is gone: without this one, traffic for the
            // inside would follow the default route out of the machine.
            &[
                "ip",
                "route",
                "replace",
                "unreachable",
                &ns.subnet(),
                "metric",
                UNREACHABLE_METRIC,
            ],
            &[
                "ip",
                "-n",
                &ns.name,
                "addr",
                "add",
                &inside_cidr,
                "dev",
                &inside_if,
            ],
            &["ip", "-n", &ns.name, "link", "set", &inside_if, "up"],
            &["ip", "-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            run(args).unwrap_or_else(|e| panic!("set up namespace {}: {e}", ns.name));
        }
        ns
    }

    /// Start `redis-server` inside (no persistence, no protected mode: nothing but this test
    /// can reach it) and wait until it answers `PING` across the link; its URL.
    pub fn start_redis(&mut self) -> String {
        super::redis::require_redis_server();
        assert!(
            self.redis.is_none(),
            "redis-server already runs in {}",
            self.name
        );
        let dir = super::temp_dir("netns-redis");
        let log = dir.join("redis.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "redis-server"])
            .args(["--bind", &self.inside_addr.to_string()])
            .args(["--port", &REDIS_PORT.to_string()])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn redis-server in {}: {e}", self.name));
        // `ip netns exec` execs the server in its own process: killing the child kills it.
        self.redis = Some(child);
        self.dir = Some(dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.redis.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("redis-server in {} exited ({status}): {log}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server in {} never answered PING",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.redis_url()
    }

    /// `10.213.A.B/30`.
    fn subnet(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.host_addr) - 1))
    }

    /// `redis://10.213.A.B+2:6379`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}:{REDIS_PORT}", self.inside_addr)
    }

    /// Take the link down (`ip link set HOST_IF down`): the route to the inside goes with it,
    /// so new connections fail at once, while open ones just stop hearing anything.
    pub fn cut_link(&self) {
        self.ip(&["link", "set", &self.host_if, "down"]);
    }

    /// Bring the link back after [`NetNs::cut_link`].
    pub fn restore_link(&self) {
        self.ip(&["link", "set", &self.host_if, "up"]);
    }

    /// Drop everything sent towards the inside, silently: the link stays up, so connecting
    /// hangs and open connections' bytes vanish (TCP sees no error, only silence, and backs
    /// off its retransmissions as on a real lossy path). `tc qdisc add dev HOST_IF root netem
    /// loss 100%` where the kernel has netem; where it does not (`CONFIG_NET_SCH_NETEM` is
    /// off on some VM kernels), the same silence from what every kernel with `tc` has: an
    /// `htb` root whose one `u32` filter matches every packet and redirects it (`mirred`) to
    /// an `ifb` device that is down, so it is discarded — reported to TCP as sent, as netem
    /// does, unlike a `tbf` drop, which TCP hears about and retries at once. Which of the two
    /// was used.
    pub fn drop_all(&self) -> &'static str {
        let netem = run(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &self.host_if,
            "root",
            "netem",
            "loss",
            "100%",
        ]);
        let Err(no_netem) = netem else {
            return "netem loss 100%";
        };
        let redirected = run(&["ip", "link", "add", &self.sink_if, "type", "ifb"])
            .and_then(|_| {
                run(&[
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    &self.host_if,
                    "root",
                    "handle",
                    "1:",
                    "htb",
                ])
            })
            .and_then(|_| {
                run(&[
                    "tc",
                    "filter",
                    "add",
                    "dev",
                    &self.host_if,
                    "parent",
                    "1:",
                    "protocol",
                    "all",
                    "u32",
                    "match",
                    "u32",
                    "0",
                    "0",
                    "action",
                    "mirred",
                    "egress",
                    "redirect",
                    "dev",
                    &self.sink_if,
                ])
            });
        if let Err(e) = redirected {
            panic!(
                "drop all on {}: netem: {no_netem}; redirect to a down ifb: {e}",
                self.host_if
            );
        }
        "redirect to a down ifb (no netem in this kernel)"
    }

    /// Deliver packets again after [`NetNs::drop_all`].
    pub fn stop_dropping(&self) {
        run(&["tc", "qdisc", "del", "dev", &self.host_if, "root"])
            .unwrap_or_else(|e| panic!("stop dropping on {}: {e}", self.host_if));
        let _ = run(&["ip", "link", "del", &self.sink_if]);
    }

    /// Whether the server inside answers `PING` right now (half a second at most).
    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let addr = (self.inside_addr, REDIS_PORT).into();
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        run(&all).unwrap_or_else(|e| panic!("{}: {e}", all.join(" ")));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // The server first: a process inside would keep the namespace, and the veth, alive.
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let subnet = self.subnet();
        let _ = run(&[
            "ip",
            "route",
            "del",
            "unreachable",
            &subnet,
            "metric",
            UNREACHABLE_METRIC,
        ]);
        let _ = run(&["ip", "link", "del", &self.host_if]);
        let _ = run(&["ip", "link", "del", &self.sink_if]);
        remove_namespace(&self.name);
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A /30 in `10.213.0.0/16` no interface here uses yet: (this side, inside). Derived from the
/// pid and the instance number, moving on past any that is taken (a leftover, or another test
/// process whose pid collides).
fn free_subnet(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let taken = run(&["ip", "-o", "-4", "addr", "show"]).unwrap_or_default();
    let start = (pid % 256) * 64 + n % 64;
    for i in 0..(256 * 64) {
        let slot = (start + i) % (256 * 64);
        let (third, fourth) = ((slot / 64) as u8, ((slot % 64) * 4) as u8);
        let host = Ipv4Addr::new(PREFIX[0], PREFIX[1], third, fourth + 1);
        let inside = Ipv4Addr::new(PREFIX[0], PREFIX[1], third, fourth + 2);
        if !taken.contains(&format!(" {host}/")) {
            return (host, inside);
        }
    }
    panic!("no free /30 left in 10.213.0.0/16");
}

/// Remove what test processes that have exited (no `/proc/{pid}`) left: their namespaces
/// (`doorman-test-{pid}-…`), with whatever still runs in them, their `unreachable` routes and
/// their `ifb` devices (`db{pid}x…`); once per test process.
fn sweep_leftovers() {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let exited = |pid: Option<&str>| {
            pid.and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        };
        let namespaces = run(&["ip", "netns", "list"]).unwrap_or_default();
        for name in namespaces
            .lines()
            .filter_map(|l| l.split_whitespace().next())
        {
            let pid = name
                .strip_prefix("doorman-test-")
                .and_then(|rest| rest.split('-').next());
            if exited(pid) {
                remove_namespace(name);
            }
        }
        // An `unreachable` route whose /30 no interface here has an address in any more.
        let addresses = run(&["ip", "-o", "-4", "addr", "show"]).unwrap_or_default();
        let routes = run(&["ip", "-4", "route", "show", "type", "unreachable"]).unwrap_or_default();
        for subnet in routes.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            let Some(net) = subnet
                .strip_suffix("/30")
                .and_then(|net| net.parse::<Ipv4Addr>().ok())
                .filter(|net| net.octets()[..2] == PREFIX)
            else {
                continue;
            };
            let host = Ipv4Addr::from(u32::from(net) + 1);
            if !addresses.contains(&format!(" {host}/")) {
                let _ = run(&[
                    "ip",
                    "route",
                    "del",
                    "unreachable",
                    subnet,
                    "metric",
                    UNREACHABLE_METRIC,
                ]);
            }
        }
        let links = run(&["ip", "-o", "link", "show", "type", "ifb"]).unwrap_or_default();
        for name in links.lines().filter_map(|l| l.split(": ").nth(1)) {
            let pid = name
                .strip_prefix("db")
                .and_then(|rest| rest.split('x').next());
            if exited(pid) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    });
}

/// Kill what runs in namespace `name` (only a test's own `redis-server` ever does), then
/// delete it; nothing if there is no such namespace.
fn remove_namespace(name: &str) {
    if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a process in a namespace only the tests make.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if !pids.trim().is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = run(&["ip", "netns", "del", name]);
}

/// Run a command; its stdout, or its stderr (or the spawn error) as the error.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
