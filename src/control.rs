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

use std::ffi::OsString;
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
    /// file that is not a socket, or a socket something still answers on.
    pub fn bind(socket_path: &Path) -> Result<ControlSocket, StoreError> {
        let fail = |what: &str, e: io::Error| {
            StoreError::Unavailable(format!(
                "control socket {}: {what}: {e}",
                socket_path.display()
            ))
        };
        match fs::symlink_metadata(socket_path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(StoreError::Unavailable(format!(
                    "control socket {}: exists and is not a socket",
                    socket_path.display()
                )));
            }
            Ok(_) => {
                if std::os::unix::net::UnixStream::connect(socket_path).is_ok() {
                    return Err(StoreError::Unavailable(format!(
                        "control socket {}: another process is listening on it",
                        socket_path.display()
                    )));
                }
                fs::remove_file(socket_path).map_err(|e| fail("cannot remove the stale one", e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("cannot inspect", e)),
        }
        // Bind under a temporary name, restrict it, then move it into place: the socket is
        // never reachable at its public name with looser permissions.
        let mut tmp = OsString::from(socket_path.as_os_str());
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| fail("cannot bind", e))?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, socket_path));
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
    let stream = match UnixStream::connect(socket_path).await {
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
}
