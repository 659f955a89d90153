//! Doorman as the real binary (`DoormanProcess`), for what only a process has: signals, exit
//! codes, its log, its memory; and `doorman` subcommands run to completion (`run_cli`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The `doorman` binary built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_doorman"))
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
        Self::spawn_through(toml, &[binary().as_os_str()], args, adjust)
    }

    /// As [`spawn_with`](Self::spawn_with), started by `launcher` (a program and its arguments,
    /// ending with the doorman binary to run, such as `setpriv … PATH`) instead of this test
    /// build's binary; doorman's own `--config FILE` and `args` follow it. The launcher must
    /// become doorman (`exec`), so that the child is the process the tests signal.
    pub fn spawn_through(
        toml: &str,
        launcher: &[&std::ffi::OsStr],
        args: &[&str],
        adjust: impl Fn(&mut Command),
    ) -> DoormanProcess {
        let (program, launcher_args) = launcher.split_first().expect("a launcher program");
        let dir = super::temp_dir("proc");
        for _attempt in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let file = dir.join("proxy.toml");
            std::fs::write(&file, toml.replace("{addr}", &addr.to_string())).expect("write config");
            let log_file = dir.join("doorman.log");
            let log = std::fs::File::create(&log_file).expect("log file");
            let mut cmd = Command::new(program);
            cmd.args(launcher_args)
                .arg("--config")
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
    run_cli_in(None, args)
}

/// As [`run_cli`], from the working directory `cwd` when given (relative paths in ARGS and in
/// the config then resolve against it).
pub fn run_cli_in(cwd: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command.args(args).stdin(Stdio::null());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let out = command.output().expect("run doorman");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
