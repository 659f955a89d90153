//! The control socket beside the embedded store's file (`<path>.sock`, mode 0600): how
//! `doorman sessions revoke` reaches the running doorman that holds the redb file's lock.
//!
//! An operations endpoint, like the `admin` listener: it listens, checks its peer, parses a
//! line protocol and writes audit events. So it sits beside `admin`, above the storage layer,
//! and uses the embedded store only through its public API ([`SessionStore::delete_user`]);
//! the store knows nothing of it. `server` binds and serves it when the embedded store is in
//! use; the command line calls [`revoke_via_socket`].
//!
//! The protocol is one request per line, `revoke <user>`, answered `ok <count>` or
//! `error <message>`. Only doorman's own user, or root, is served; other peers are refused.
//!
//! # Paths too long for a socket address
//!
//! A Unix socket address holds a path of fewer than `sun_path` bytes (108 on Linux, the NUL
//! included), far less than a file path may be; yet a store deep in a directory tree must not
//! stop start-up for it (DESIGN.md §14). So the socket stays at `<store path>.sock`, and only
//! the name handed to `bind(2)` and `connect(2)` is shortened, through a file descriptor and
//! Linux's `/proc/self/fd/<n>` (which reaches the file `<n>` is open on):
//!
//! - binding opens the socket's directory and binds a short temporary name in it,
//!   `/proc/self/fd/<dir>/.doorman-ctl-<random>.tmp`, then restricts and renames it to its
//!   public name through the same descriptor (renaming has no such limit);
//! - connecting (`sessions revoke`, and `bind`'s check for a doorman still listening) opens
//!   the socket file itself with `O_PATH`, which a socket allows, and connects to
//!   `/proc/self/fd/<file>`.
//!
//! Both names are short however deep the directory and however long the file name, and both
//! reach the very file the long path names, so the command line, a separate process, finds
//! the socket from the config alone, and the checks above (mode 0600 before the public name
//! exists, never replacing a non-socket or a live socket, the peer's uid) are unchanged: the
//! kernel checks the socket file's mode however it is reached. A path that fits is used as it
//! is, so nothing changes there; without /proc (or off Linux) a long one fails as it did.
//! Not chosen: a short name in a private runtime directory with its location recorded beside
//! the store. That is two more files to create, protect and keep in step, and one more thing
//! to go stale, where a descriptor needs none.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::session::express::Bridge;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::accept;
use crate::session::embedded::EmbeddedStore;
use crate::session::{SessionStore, StoreError};

/// A control-socket request line longer than this is refused.
const CONTROL_LINE_MAX: usize = 4096;
/// How long a control connection (either side) may take for one request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The room for a path in a Unix socket address, its terminating NUL included (108 bytes on
/// Linux): a longer path cannot be bound or connected to as it is.
const SUN_PATH_LEN: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// The control socket of the store at `store_path`: `<store path>.sock`.
pub fn control_socket_path(store_path: &Path) -> PathBuf {
    let mut s = OsString::from(store_path.as_os_str());
    s.push(".sock");
    PathBuf::from(s)
}

/// A bound control socket, not yet answering. Binding separately from serving lets start-up
/// fail before doorman takes traffic.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// `[session.express]`: a revoke deletes the app's records of the sessions it ends.
    express: Option<Arc<Bridge>>,
}

impl ControlSocket {
    /// Bind `socket_path` with mode 0600, replacing a stale socket file. Refuses to replace a
    /// file that is not a socket, or a socket something still answers on. A path too long for
    /// a socket address is bound through its directory's descriptor (see the module docs).
    pub fn bind(socket_path: &Path) -> Result<ControlSocket, StoreError> {
        let fail = |what: &str, e: io::Error| {
            StoreError::Unavailable(format!(
                "control socket {}: {what}: {e}",
                socket_path.display()
            ))
        };
        let Some(name) = socket_path.file_name() else {
            return Err(StoreError::Unavailable(format!(
                "control socket {}: names no file",
                socket_path.display()
            )));
        };
        // Bind under a temporary name, restrict it, then move it into place: the socket is
        // never reachable at its public name with looser permissions. The name is random (no
        // other process's temporary socket is ever taken over, even one with the same pid in
        // another container sharing the folder) and short, so that it fits a socket address
        // once the folder is reached through its descriptor.
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|e| fail("no random temporary name", io::Error::other(e)))?;
        let tmp_name = format!(".doorman-ctl-{:016x}.tmp", u64::from_ne_bytes(random));
        let dir = match socket_path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir = ShortPath::dir(dir, OsStr::new(&tmp_name))
            .map_err(|e| fail("cannot open its folder", e))?;
        let public = dir.path.join(name);
        let tmp = dir.path.join(&tmp_name);
        match fs::symlink_metadata(&public) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(StoreError::Unavailable(format!(
                    "control socket {}: exists and is not a socket",
                    socket_path.display()
                )));
            }
            Ok(_) => {
                let answered = ShortPath::file(&public).and_then(|short| {
                    std::os::unix::net::UnixStream::connect(&short.path).map(drop)
                });
                if answered.is_ok() {
                    return Err(StoreError::Unavailable(format!(
                        "control socket {}: another process is listening on it",
                        socket_path.display()
                    )));
                }
                fs::remove_file(&public).map_err(|e| fail("cannot remove the stale one", e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("cannot inspect", e)),
        }
        let listener = UnixListener::bind(&tmp).map_err(|e| fail("cannot bind", e))?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, &public));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(fail("cannot set up", e));
        }
        Ok(ControlSocket {
            listener,
            path: socket_path.to_owned(),
            express: None,
        })
    }

    /// The same socket, whose revokes also delete the express app's records of the sessions
    /// they end (DESIGN.md §12).
    pub fn with_express(mut self, express: Option<Arc<Bridge>>) -> ControlSocket {
        self.express = express;
        self
    }

    /// Answer `revoke <user>` requests until `shutdown` completes, then remove the socket file.
    pub async fn serve(self, store: Arc<EmbeddedStore>, shutdown: impl Future) {
        tokio::pin!(shutdown);
        while let Some((stream, _)) =
            accept::next("control", || self.listener.accept(), shutdown.as_mut()).await
        {
            let store = Arc::clone(&store);
            let express = self.express.clone();
            tokio::spawn(async move {
                let served = tokio::time::timeout(
                    CONTROL_TIMEOUT,
                    serve_connection(&store, express.as_deref(), stream),
                );
                match served.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "control connection failed"),
                    Err(_) => tracing::warn!("control connection timed out"),
                }
            });
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Bind the control socket at `socket_path` and serve it until `shutdown` (see
/// [`ControlSocket`]); returns early only if binding fails.
pub async fn serve_control(
    store: Arc<EmbeddedStore>,
    socket_path: &Path,
    shutdown: impl Future,
) -> Result<(), StoreError> {
    ControlSocket::bind(socket_path)?
        .serve(store, shutdown)
        .await;
    Ok(())
}

async fn serve_connection(
    store: &EmbeddedStore,
    express: Option<&Bridge>,
    stream: UnixStream,
) -> io::Result<()> {
    // The socket's mode already limits who can connect; check the peer too, in case the file's
    // permissions were loosened: only doorman's own user, or root.
    let peer = stream.peer_cred()?.uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let (read, mut write) = stream.into_split();
    if peer != me && peer != 0 {
        write.write_all(b"error permission denied\n").await?;
        return Ok(());
    }
    let mut lines = BufReader::new(read.take(CONTROL_LINE_MAX as u64 * 16));
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(CONTROL_LINE_MAX as u64)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            write.write_all(b"error request too long\n").await?;
            return Ok(());
        }
        let answer = answer(store, express, line.trim_end_matches(['\n', '\r'])).await;
        write.write_all(answer.as_bytes()).await?;
    }
}

async fn answer(store: &EmbeddedStore, express: Option<&Bridge>, request: &str) -> String {
    let Some(user) = request.strip_prefix("revoke ") else {
        return "error unknown command\n".to_owned();
    };
    if !valid_user(user) {
        return "error invalid user name\n".to_owned();
    }
    let app_sessions = match express {
        Some(_) => store.express_ids(user).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let deleted = store.delete_user(user).await;
    if let Some(bridge) = express {
        bridge.forget_all(&app_sessions).await;
    }
    // The user's open WebSockets end with the sessions (DESIGN.md §11).
    store
        .live()
        .end_user(user, crate::session::live::Ended::Revoked);
    match deleted {
        Ok(n) => {
            crate::audit::revoke("control-socket", user, n);
            format!("ok {n}\n")
        }
        Err(e) => format!("error {}\n", e.to_string().replace(['\n', '\r'], " ")),
    }
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.chars().any(char::is_control)
}

/// Ask a running doorman to revoke every session of `user` through its control socket.
/// `Ok(None)` when none listens (no socket file, or a stale one): the caller may then open the
/// store file itself.
pub async fn revoke_via_socket(
    socket_path: &Path,
    user: &str,
) -> Result<Option<usize>, StoreError> {
    if !valid_user(user) {
        return Err(StoreError::Unavailable(format!(
            "invalid user name {user:?}"
        )));
    }
    let connected = match ShortPath::file(socket_path) {
        Ok(short) => UnixStream::connect(&short.path).await,
        Err(e) => Err(e),
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "control socket {}: {e}",
                socket_path.display()
            )));
        }
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("revoke {user}\n").as_bytes())
            .await?;
        write.shutdown().await?;
        let mut line = String::new();
        BufReader::new(read.take(CONTROL_LINE_MAX as u64))
            .read_line(&mut line)
            .await?;
        Ok::<_, io::Error>(line)
    };
    let line = tokio::time::timeout(CONTROL_TIMEOUT, exchange)
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| StoreError::Unavailable(format!("control socket: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']);
    if let Some(n) = line.strip_prefix("ok ") {
        return n
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("control socket answered {line:?}")));
    }
    if let Some(message) = line.strip_prefix("error ") {
        return Err(StoreError::Unavailable(format!(
            "doorman refused: {message}"
        )));
    }
    Err(StoreError::Corrupt(format!(
        "control socket answered {line:?}"
    )))
}

/// A name for a file that fits in a socket address (with `then` appended, for a folder), and
/// the descriptor it goes through, which must stay open while the name is used.
struct ShortPath {
    path: PathBuf,
    _through: Option<fs::File>,
}

impl ShortPath {
    /// A name for the folder `dir` under which `dir/<then>` fits in a socket address: `dir`
    /// itself when it already does, else `/proc/self/fd/<n>` of `dir` opened.
    fn dir(dir: &Path, then: &OsStr) -> io::Result<ShortPath> {
        ShortPath::new(dir, fits(&dir.join(then)), libc::O_DIRECTORY)
    }

    /// A name for the existing file `file` that `connect(2)` takes: `file` itself when it fits,
    /// else `/proc/self/fd/<n>` of `file` opened. An absent file is `NotFound`, as connecting
    /// to it would be.
    fn file(file: &Path) -> io::Result<ShortPath> {
        ShortPath::new(file, fits(file), 0)
    }

    fn new(path: &Path, fits: bool, flags: libc::c_int) -> io::Result<ShortPath> {
        if fits {
            return Ok(ShortPath {
                path: path.to_owned(),
                _through: None,
            });
        }
        Ok(match through_proc(path, flags)? {
            Some((file, short)) => ShortPath {
                path: short,
                _through: Some(file),
            },
            // No /proc to go through: the long name, which fails as it always did.
            None => ShortPath {
                path: path.to_owned(),
                _through: None,
            },
        })
    }
}

/// Whether `path` fits in a socket address as it is.
fn fits(path: &Path) -> bool {
    path.as_os_str().len() < SUN_PATH_LEN
}

/// `path` opened with `O_PATH` (`flags` added), and `/proc/self/fd/<n>`, a name at most 24
/// bytes long that reaches the same file while the descriptor is open. `O_PATH` reads nothing,
/// so it opens a socket file, and a folder doorman may search but not list.
#[cfg(target_os = "linux")]
fn through_proc(path: &Path, flags: libc::c_int) -> io::Result<Option<(fs::File, PathBuf)>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | flags)
        .open(path)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok(Some((file, short)))
}

/// Only Linux has `/proc/self/fd` (and `O_PATH`): elsewhere a long path stays as it is.
#[cfg(not(target_os = "linux"))]
fn through_proc(_: &Path, _: libc::c_int) -> io::Result<Option<(fs::File, PathBuf)>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_socket_sits_beside_the_store() {
        assert_eq!(
            control_socket_path(Path::new("var/sessions.db")),
            PathBuf::from("var/sessions.db.sock")
        );
    }

    /// A fresh folder whose path is at least `len` bytes long (nested: no one name may pass
    /// 255 bytes), removed on drop.
    struct LongDir {
        root: PathBuf,
        path: PathBuf,
    }

    impl LongDir {
        fn new(tag: &str, len: usize) -> LongDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let root =
                std::env::temp_dir().join(format!("dm-ctl-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            let mut path = root.clone();
            while path.as_os_str().len() < len {
                path.push("a-folder-name-long-enough-to-make-the-store-path-deep");
            }
            fs::create_dir_all(&path).unwrap();
            LongDir { root, path }
        }
    }

    impl Drop for LongDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_address_holds_107_bytes_of_path_on_linux() {
        assert_eq!(SUN_PATH_LEN, 108);
        // `fits` draws the line where binding does.
        let dir = LongDir::new("edge", 0);
        if dir.path.as_os_str().len() > 100 {
            return; // no room below the limit under this temp dir
        }
        let at = |len: usize| {
            let name = "s".repeat(len - dir.path.as_os_str().len() - 1);
            dir.path.join(name)
        };
        assert!(fits(&at(107)));
        assert!(std::os::unix::net::UnixListener::bind(at(107)).is_ok());
        assert!(!fits(&at(108)));
        assert!(std::os::unix::net::UnixListener::bind(at(108)).is_err());
    }

    #[test]
    fn a_path_that_fits_is_used_as_it_is() {
        // Nothing is opened, so the path need not exist.
        let socket = Path::new("/run/doorman/sessions.db.sock");
        let short = ShortPath::file(socket).unwrap();
        assert_eq!(short.path, socket);
        assert!(short._through.is_none());
        let tmp = OsStr::new(".doorman-ctl-0123456789abcdef.tmp");
        let short = ShortPath::dir(Path::new("/run/doorman"), tmp).unwrap();
        assert_eq!(short.path, Path::new("/run/doorman"));
        assert!(short._through.is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_long_path_is_bound_and_reached_through_proc_self_fd() {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = LongDir::new("long", 200);
        let socket = dir.path.join("sessions.db.sock");
        assert!(!fits(&socket));
        assert!(UnixListener::bind(&socket).is_err(), "too long as it is");

        let via = ShortPath::dir(&dir.path, OsStr::new("sessions.db.sock")).unwrap();
        assert!(
            via.path.starts_with("/proc/self/fd/"),
            "{}",
            via.path.display()
        );
        let listener = UnixListener::bind(via.path.join("sessions.db.sock")).unwrap();
        drop(via);
        // The socket is at its long path, not somewhere under /proc.
        assert!(fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket());

        let to = ShortPath::file(&socket).unwrap();
        assert!(fits(&to.path) && to.path.starts_with("/proc/self/fd/"));
        let _client = UnixStream::connect(&to.path).unwrap();
        listener.accept().unwrap();

        let absent = ShortPath::file(&dir.path.join("absent.sock")).err();
        assert_eq!(absent.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_control_socket_too_long_for_an_address_keeps_its_safeguards() {
        let dir = LongDir::new("bind", 200);
        // So long a file name that even `/proc/self/fd/<n>/<name>` would not fit.
        let socket = dir.path.join(format!("{}.db.sock", "s".repeat(120)));
        let control = ControlSocket::bind(&socket).unwrap();
        let meta = fs::symlink_metadata(&socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(&dir.path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [socket.file_name().unwrap()], "no temporary left");

        let refused = ControlSocket::bind(&socket).err().unwrap().to_string();
        assert!(
            refused.contains("another process is listening"),
            "{refused}"
        );
        drop(control);
        // Nothing listens any more: a stale socket, replaced.
        drop(ControlSocket::bind(&socket).unwrap());

        fs::remove_file(&socket).unwrap();
        fs::write(&socket, b"data").unwrap();
        let refused = ControlSocket::bind(&socket).err().unwrap().to_string();
        assert!(refused.contains("is not a socket"), "{refused}");
        assert_eq!(fs::read(&socket).unwrap(), b"data");
    }
}
