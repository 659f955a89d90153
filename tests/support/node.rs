//! Node.js for the tests that run a real JavaScript peer: the browser (playwright-core) and the
//! OpenID provider (oidc-provider). Both come from npm, pinned by a committed lock file.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// Fail with a clear message when `node` (and so `npm`) is not installed; `why` says which
/// test needs it.
pub fn require_node(why: &str) {
    let found = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
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

impl NodeChild {
    /// Hold `child`, started with its stdin piped, and that pipe.
    pub fn new(child: Child, stdin: ChildStdin) -> NodeChild {
        NodeChild {
            stdin: Some(stdin),
            child: Some(child),
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
