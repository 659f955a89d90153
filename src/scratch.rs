//! A scratch folder for unit tests: fresh under the system temp dir, removed on drop, so a
//! test run leaves nothing behind in `/tmp` (before it existed, every run left a folder per
//! test that wrote a key or a secret). Tests in `tests/` have their own helpers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A folder named after its test, the process and a counter (tests run in parallel threads of
/// one process), removed with everything in it when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Creates `doorman-<name>-<pid>-<n>` under the temp dir, empty.
    pub(crate) fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("doorman-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        Scratch(dir)
    }

    /// The folder itself.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the folder.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_exists_while_held_and_is_gone_after() {
        let (a, b) = (Scratch::new("scratch"), Scratch::new("scratch"));
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), "x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }
}
