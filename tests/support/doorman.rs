//! Doorman under test: in-process through the library (`Doorman`), or as the real binary
//! (`DoormanProcess`) when a test needs signals, exit codes, logs or the process's memory.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorman::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A config that fronts `upstream_url`, with `extra` TOML appended (extra keys for `[listen]`
/// go in `listen_extra`, since a table cannot be opened twice).
///
/// Unless `extra` has its own `[access]` table, every route is public: tests of forwarding
/// behaviour are about the proxy, not the access rules (which default to "authenticated").
pub fn config(upstream_url: &str, listen_extra: &str, extra: &str) -> String {
    let access = if extra.contains("[access]") {
        ""
    } else {
        "[access]\ndefault = \"public\"\n"
    };
    format!("[listen]\n{listen_extra}\n[upstream]\nurl = \"{upstream_url}\"\n{extra}\n{access}")
}

/// Doorman running in this test process on a `127.0.0.1:0` listener.
pub struct Doorman {
    pub addr: SocketAddr,
    /// The redirect listener, when the config has `[listen] redirect_http` (bound on a free
    /// loopback port, whatever address the config names).
    pub redirect: Option<SocketAddr>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl Doorman {
    /// Validate `toml` (as `DIR/proxy.toml`) and serve it.
    pub async fn start(toml: &str) -> Doorman {
        Self::start_with_files(toml, &[]).await
    }

    /// `http://127.0.0.1:PORT` + `path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// As [`start`](Self::start), with more files (`(name, contents)`) written beside the config
    /// first, for keys whose relative paths resolve against the config's folder (`ca = "ca.pem"`).
    pub async fn start_with_files(toml: &str, files: &[(&str, &[u8])]) -> Doorman {
        let dir = super::temp_dir("inproc");
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).expect("write file beside config");
        }
        let file = dir.join("proxy.toml");
        std::fs::write(&file, toml).expect("write config");
        let config = Config::load(&file).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind doorman");
        let addr = listener.local_addr().expect("doorman addr");
        let redirect = match config.listen.redirect_http {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind redirect listener"),
            ),
            None => None,
        };
        let redirect_addr = redirect
            .as_ref()
            .map(|l| l.local_addr().expect("redirect addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let listeners = doorman::server::Listeners {
            main: listener,
            redirect,
        };
        let task = tokio::spawn(doorman::server::run_with(
            listeners,
            Arc::new(config),
            shutdown,
        ));
        Doorman {
            addr,
            redirect: redirect_addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Begin a graceful shutdown and return the server task, which ends when it is done.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<io::Result<()>> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("doorman already shut down")
    }
}

impl Drop for Doorman {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The `doorman` binary built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_doorman"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The real `doorman` binary, serving a config file; killed when dropped.
pub struct DoormanProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log_file: PathBuf,
}

impl DoormanProcess {
    /// Write `toml` with every `{addr}` replaced by a free loopback address, start the binary
    /// with `args` appended, and wait until it accepts connections.
    pub fn spawn(toml: &str, args: &[&str]) -> DoormanProcess {
        Self::spawn_with(toml, args, |_| {})
    }

    /// As [`spawn`](Self::spawn), with a hook to adjust the command (environment, limits).
    pub fn spawn_with(toml: &str, args: &[&str], adjust: impl Fn(&mut Command)) -> DoormanProcess {
        let dir = super::temp_dir("proc");
        for _attempt in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let file = dir.join("proxy.toml");
            std::fs::write(&file, toml.replace("{addr}", &addr.to_string())).expect("write config");
            let log_file = dir.join("doorman.log");
            let log = std::fs::File::create(&log_file).expect("log file");
            let mut cmd = Command::new(binary());
            cmd.arg("--config")
                .arg(&file)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", "info");
            }
            adjust(&mut cmd);
            let mut child = cmd.spawn().expect("spawn doorman");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return DoormanProcess {
                        child,
                        addr,
                        dir,
                        log_file,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // most likely the port was taken in between: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "doorman did not start; log:\n{}",
            std::fs::read_to_string(dir.join("doorman.log")).unwrap_or_default()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal (`libc::SIGTERM`, ...).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the process logged so far (stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.trim_start_matches(':').trim().strip_suffix("kB"))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} not in /proc status"))
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("proc stat");
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (1-based).
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for DoormanProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `doorman ARGS` to completion and return (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run doorman");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
