//! A real `redis-server` for the tests, on a free loopback port, killed when dropped.
//!
//! Redis cannot bind port 0, so a free port is found with a std listener and the start is
//! retried on another port if something else took it meanwhile. Outages are simulated for real:
//! [`RedisServer::pause`] / [`RedisServer::resume`] (SIGSTOP / SIGCONT: connections stay open,
//! nothing answers) and [`RedisServer::stop`] / [`RedisServer::start_again`] (the process goes
//! away; with [`RedisServer::start_persistent`] the data survives, through an fsync-always AOF).
//!
//! A missing `redis-server` is a test failure, never a skip (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS material for a `rediss://` server: PEM files.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running `redis-server`.
pub struct RedisServer {
    /// The plain-TCP port (always open, also for a TLS server: the tests inspect through it).
    pub port: u16,
    /// The TLS port, for a server started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
    persistent: bool,
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl RedisServer {
    /// A throw-away server: no persistence.
    pub fn start() -> RedisServer {
        RedisServer::launch(None, false, None)
    }

    /// A server whose data survives [`RedisServer::stop`] + [`RedisServer::start_again`]
    /// (append-only file, fsync on every write).
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(None, true, None)
    }

    /// A server on `port` (e.g. one a store was pointed at while nothing listened there).
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::launch(Some(port), false, None)
    }

    /// A server that also speaks TLS on [`RedisServer::tls_port`], with this certificate.
    pub fn start_tls(tls: TlsFiles) -> RedisServer {
        RedisServer::launch(None, false, Some(tls))
    }

    /// Start a server with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(args: &[&str]) -> RedisServer {
        RedisServer::launch_inner(None, false, None, args)
    }

    /// A Sentinel (quorum 1) watching the master on `master_port` under `name`, with short
    /// failure detection so failover tests stay quick.
    pub fn start_sentinel(master_port: u16, name: &str) -> RedisServer {
        RedisServer::start_sentinel_with(master_port, name, "")
    }

    /// [`RedisServer::start_sentinel`] with more lines for its config file (e.g. `sentinel
    /// auth-pass NAME PW` for a master with a password, `requirepass PW` for its own).
    pub fn start_sentinel_with(master_port: u16, name: &str, conf_extra: &str) -> RedisServer {
        RedisServer::start_sentinel_quorum(master_port, name, 1, conf_extra)
    }

    /// [`RedisServer::start_sentinel_with`] with a quorum: several Sentinels watching one master
    /// find each other through it, and `quorum` of them must agree it is down.
    pub fn start_sentinel_quorum(
        master_port: u16,
        name: &str,
        quorum: u32,
        conf_extra: &str,
    ) -> RedisServer {
        require_redis_server();
        let dir = super::temp_dir("sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n{conf_extra}"
            ),
        )
        .expect("write sentinel.conf");
        let mut last_error = String::new();
        for _ in 0..20 {
            let port = free_port();
            match spawn_with_config(
                Some(&conf),
                port,
                None,
                &dir,
                false,
                None,
                &["--sentinel"],
                ready_when_pong,
            ) {
                Ok((child, _)) => {
                    return RedisServer {
                        port,
                        tls_port: None,
                        dir,
                        persistent: false,
                        tls: None,
                        child: Some(child),
                    }
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server --sentinel: {last_error}");
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:{tls_port}` (TLS servers only).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("not a TLS server");
        format!("rediss://127.0.0.1:{port}")
    }

    /// A connection, or the error (for servers that may be dropping clients right now).
    pub fn try_client(&self) -> ::redis::RedisResult<::redis::Connection> {
        ::redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
    }

    /// A plain synchronous connection for inspecting what the code under test wrote.
    pub fn client(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("connect to test redis on {}: {e}", self.port))
    }

    /// `INFO commandstats` as command name → calls, on a fresh connection (see
    /// [`command_calls`]).
    pub fn command_calls(&self) -> std::collections::HashMap<String, u64> {
        command_calls(&mut self.client())
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("redis-server is not running");
        i32::try_from(child.id()).expect("pid")
    }

    /// `kill -9`, and reap it: no shutdown, no last write to disk or to replicas.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process keeps its sockets and data but answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Stop the process (SIGTERM, SIGKILL if it lingers) and wait for it. The port is freed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::terminate(&mut child);
        }
    }

    /// Start again after [`RedisServer::stop`], on the same port(s) and data directory, and
    /// wait until it answers `PING` (so, with data, until it has loaded it).
    pub fn start_again(&mut self) {
        self.restart(ready_when_pong);
    }

    /// [`RedisServer::start_again`], returning as soon as it answers anything, `-LOADING`
    /// included: a restarted Redis with data accepts connections before it has read its files
    /// back. Whether it still was loading then.
    pub fn start_again_loading(&mut self) -> bool {
        self.restart(ready_when_answering)
    }

    /// Spawn on the same port(s) and directory until `ready` says the first `PING` reply
    /// will do; whether that reply was `-LOADING`.
    fn restart(&mut self, ready: fn(&[u8]) -> bool) -> bool {
        assert!(self.child.is_none(), "redis-server is still running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn_with_config(
                None,
                self.port,
                self.tls_port,
                &self.dir,
                self.persistent,
                self.tls.as_ref(),
                &[],
                ready,
            ) {
                Ok((child, loading)) => {
                    self.child = Some(child);
                    return loading;
                }
                // The port may still be held for a moment; it is ours, so wait for it.
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "redis-server restart on {} failed, retrying: {e}",
                        self.port
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("redis-server did not restart on {}: {e}", self.port),
            }
        }
    }

    fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    fn launch(port: Option<u16>, persistent: bool, tls: Option<TlsFiles>) -> RedisServer {
        RedisServer::launch_inner(port, persistent, tls, &[])
    }

    fn launch_inner(
        fixed_port: Option<u16>,
        persistent: bool,
        tls: Option<TlsFiles>,
        extra: &[&str],
    ) -> RedisServer {
        require_redis_server();
        let dir = super::temp_dir("redis");
        let mut last_error = String::new();
        for _ in 0..20 {
            let port = fixed_port.unwrap_or_else(free_port);
            let tls_port = tls.as_ref().map(|_| free_port());
            match spawn(port, tls_port, &dir, persistent, tls.as_ref(), extra) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        tls_port,
                        dir,
                        persistent,
                        tls,
                        child: Some(child),
                    }
                }
                Err(e) => {
                    // Most likely another process took the port between our probe and the bind.
                    last_error = e;
                    if fixed_port.is_some() {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
        panic!("could not start redis-server: {last_error}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL works on a stopped process too
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use super::free_port;

/// Panic with a clear message when `redis-server` is not installed: these tests must fail,
/// never pass silently, without it.
pub fn require_redis_server() {
    if super::installed("redis-server") {
        return;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("redis-server is required in CI (CI=true) and is not installed; .ci/run installs it from Debian's packages");
    }
    panic!("redis-server is not installed: these tests need a real Redis (Debian/Ubuntu: apt-get install redis-server, or run .ci/run)");
}

/// Start `redis-server` and wait until it answers PING on `port`. `Err` if it exits early
/// (typically: the port is taken) or never answers.
fn spawn(
    port: u16,
    tls_port: Option<u16>,
    dir: &Path,
    persistent: bool,
    tls: Option<&TlsFiles>,
    extra: &[&str],
) -> Result<Child, String> {
    spawn_with_config(
        None,
        port,
        tls_port,
        dir,
        persistent,
        tls,
        extra,
        ready_when_pong,
    )
    .map(|(child, _)| child)
}

/// [`spawn`], with a config file first on the command line (Sentinel needs one it can rewrite),
/// ready when `ready` accepts the first reply to `PING`; the child, and whether that reply was
/// `-LOADING`.
#[allow(clippy::too_many_arguments)]
fn spawn_with_config(
    config: Option<&Path>,
    port: u16,
    tls_port: Option<u16>,
    dir: &Path,
    persistent: bool,
    tls: Option<&TlsFiles>,
    extra: &[&str],
    ready: fn(&[u8]) -> bool,
) -> Result<(Child, bool), String> {
    let log = dir.join(format!("redis-{port}.log"));
    let mut cmd = Command::new("redis-server");
    if let Some(config) = config {
        cmd.arg(config);
    }
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--daemonize", "no", "--save", ""])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log);
    if persistent {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let (Some(tls_port), Some(tls)) = (tls_port, tls) {
        cmd.args([
            "--tls-port",
            &tls_port.to_string(),
            "--tls-auth-clients",
            "no",
        ])
        .arg("--tls-cert-file")
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key);
    }
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "redis-server exited ({status}) on port {port}: {log}"
            ));
        }
        if let Some(reply) = ping_reply(port).filter(|r| ready(r)) {
            return Ok((child, reply.starts_with(b"-LOADING")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server on port {port} never answered PING"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first line `PING` gets on a new connection, if any.
fn ping_reply(port: u16) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    stream.write_all(b"PING\r\n").ok()?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") && reply.len() < 256 {
        stream.read_exact(&mut byte).ok()?;
        reply.push(byte[0]);
    }
    Some(reply)
}

/// Up: `+PONG`, or `-NOAUTH` (a server with `requirepass` is up, it just wants a password
/// first).
fn ready_when_pong(reply: &[u8]) -> bool {
    reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH")
}

/// Up, or still loading its data ([`RedisServer::start_again_loading`]).
fn ready_when_answering(reply: &[u8]) -> bool {
    ready_when_pong(reply) || reply.starts_with(b"-LOADING")
}

/// `dm:s:{hex(sha256(id))}`: the record key, under the tests' `key_prefix` (`dm:`), of the
/// session whose cookie is `cookie`.
pub fn record_key(cookie: &str) -> String {
    use base64::Engine;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cookie)
        .expect("base64url cookie");
    let digest = ring::digest::digest(&ring::digest::SHA256, &id);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("dm:s:{hex}")
}

/// The commands Redis counted between two [`command_calls`] readings, with how many calls
/// each, by name; commands not called in between are left out.
pub fn calls_since(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

/// `INFO commandstats` on `conn` as command name → calls: what Redis itself counted, for tests
/// that prove how many round trips doorman makes. (Commands scripts run inside the server are
/// counted too.)
pub fn command_calls(conn: &mut ::redis::Connection) -> std::collections::HashMap<String, u64> {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .collect()
}

/// One command on `conn`, panicking on an error (a test's own inspection of what doorman wrote).
pub fn query<T: ::redis::FromRedisValue>(conn: &mut ::redis::Connection, args: &[&str]) -> T {
    let mut cmd = ::redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(conn)
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")))
}
