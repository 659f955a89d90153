//! Node.js for the tests that run a real JavaScript peer: the browser (playwright-core) and the
//! OpenID provider (oidc-provider). Both come from npm, pinned by a committed lock file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// Fail with a clear message when `node` (and so `npm`) is not installed; `why` says which
/// test needs it.
pub fn require_node(why: &str) {
    let found = super::installed("node");
    assert!(
        found,
        "`node` not found: {why} and needs Node.js 20+ and npm (scripts/test checks for them)"
    );
}

/// `npm ci` in `dir` (a folder under the repository with a committed package-lock.json) when
/// `dir/node_modules/<package>/package.json` is missing; `env` is added to npm's environment.
/// One install at a time in this process: parallel tests would race on the same folder.
pub fn npm_ci(dir: &Path, package: &str, env: &[(&str, &str)]) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if dir
        .join("node_modules")
        .join(package)
        .join("package.json")
        .exists()
    {
        return;
    }
    eprintln!("{}/node_modules missing: running npm ci", dir.display());
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run npm ci (is npm installed?)");
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node peer's process: its stdin is a pipe from the test, so the peer exits by itself when
/// the test process dies; dropping this closes it (which ends the peer) and then terminates the
/// process, for a peer stuck somewhere else.
pub struct NodeChild {
    stdin: Option<ChildStdin>,
    child: Option<Child>,
}

/// Why a node peer did not become ready.
pub enum NotReady {
    /// `node` could not be run.
    Spawn(String),
    /// It exited first; the other lines it had printed on stdout.
    Exited(ExitStatus, Vec<String>),
    /// It printed this line on stdout before the ready one (only when that is fatal).
    Unexpected(String),
    /// No ready line within the limit (it was killed); the other lines it printed.
    Late(Vec<String>),
}

/// Which stdout lines other than the ready one a peer may print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OtherLines {
    /// Kept, and returned if it never becomes ready.
    Kept,
    /// Fatal: the peer is killed.
    Fatal,
}

/// Start `cmd` (a node peer: its stdin and stdout are piped here, its stderr is what the
/// caller set) and wait up to `limit` for the stdout line `ready`. Stdout is read to its end
/// on a thread of its own, so the peer never blocks on a full pipe.
pub fn start(
    cmd: &mut Command,
    ready: &str,
    limit: Duration,
    other: OtherLines,
) -> Result<NodeChild, NotReady> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| NotReady::Spawn(e.to_string()))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let kill = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    let mut others = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line == ready => {
                return Ok(NodeChild {
                    stdin: Some(stdin),
                    child: Some(child),
                })
            }
            Ok(line) if other == OtherLines::Fatal => {
                kill(&mut child);
                return Err(NotReady::Unexpected(line));
            }
            Ok(line) => others.push(line),
            Err(_) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status, others));
        }
        if Instant::now() > deadline {
            kill(&mut child);
            return Err(NotReady::Late(others));
        }
    }
}

impl Drop for NodeChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            super::terminate(&mut child);
        }
    }
}
