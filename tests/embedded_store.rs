//! The embedded store across processes: the control socket a running doorman answers
//! `sessions revoke` on, and the store file surviving a `kill -9` of a process writing to it.
//!
//! Run with `cargo test --test embedded_store`. The crash test re-runs this test binary as the
//! writing child (`child_writes_sessions_until_killed`, switched on by an environment variable).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doorman::control::{control_socket_path, revoke_via_socket, serve_control, ControlSocket};
use doorman::session::embedded::EmbeddedStore;
use doorman::session::{now_millis, Origin, Record, SessionId, SessionKey, SessionStore, Timeouts};

const T: Timeouts = Timeouts {
    idle: Duration::from_secs(3600),
    absolute: Duration::from_secs(86_400),
};

/// The environment variable that turns `child_writes_sessions_until_killed` into the writer.
const CHILD_STORE: &str = "DOORMAN_TEST_EMBEDDED_CHILD_STORE";

/// A fresh folder under the system temp dir (short, for socket path limits), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dm-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("var/sessions.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn new_session(store: &EmbeddedStore, user: &str) -> SessionKey {
    let key = SessionId::generate().unwrap().key();
    let record = Record::new(user, vec![], Origin::Login, now_millis(), &T);
    store.create(&key, &record).await.unwrap();
    key
}

#[tokio::test]
async fn revoke_through_the_control_socket_of_a_running_store() {
    let dir = TempDir::new("ctl");
    let store = Arc::new(EmbeddedStore::open(&dir.db(), T).unwrap());
    let alice = [
        new_session(&store, "alice").await,
        new_session(&store, "alice").await,
    ];
    let bob = new_session(&store, "bob").await;

    let socket = control_socket_path(&dir.db());
    assert_eq!(socket, dir.0.join("var/sessions.db.sock"));
    // A stale socket file from a previous run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let (store, socket) = (Arc::clone(&store), socket.clone());
        async move { serve_control(store, &socket, stopped).await }
    });
    wait_for_listener(&socket).await;

    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    assert_eq!(revoke_via_socket(&socket, "alice").await.unwrap(), Some(2));
    for key in &alice {
        assert_eq!(store.lookup(key, now_millis()).await.unwrap(), None);
    }
    assert!(store.lookup(&bob, now_millis()).await.unwrap().is_some());
    assert_eq!(revoke_via_socket(&socket, "alice").await.unwrap(), Some(0));
    assert_eq!(revoke_via_socket(&socket, "nobody").await.unwrap(), Some(0));
    // A name that would break the line protocol is refused before it is sent.
    assert!(revoke_via_socket(&socket, "bob\nrevoke alice")
        .await
        .is_err());
    assert!(store.lookup(&bob, now_millis()).await.unwrap().is_some());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file is removed on shutdown");
    assert_eq!(revoke_via_socket(&socket, "bob").await.unwrap(), None);
}

/// DESIGN.md §14: a store so deep that `<path>.sock` is too long for a Unix socket address
/// (108 bytes on Linux) still gets its socket there, which replaces a stale one, refuses a
/// second doorman and answers `revoke_via_socket` as a short one does.
#[tokio::test]
async fn the_control_socket_of_a_store_too_deep_for_a_socket_address_answers() {
    let dir = TempDir::new("deep");
    let mut db = dir.0.clone();
    while db.as_os_str().len() < 150 {
        db.push("a-folder-deep-in-the-tree");
    }
    let db = db.join("sessions.db");
    let store = Arc::new(EmbeddedStore::open(&db, T).unwrap());
    let alice = new_session(&store, "alice").await;
    let bob = new_session(&store, "bob").await;
    let socket = control_socket_path(&db);
    assert!(socket.as_os_str().len() >= 150, "{}", socket.display());
    assert!(std::os::unix::net::UnixListener::bind(&socket).is_err());

    // A stale socket file from a previous run (bound, never served) is replaced.
    drop(ControlSocket::bind(&socket).unwrap());
    assert!(socket.exists());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let (store, socket) = (Arc::clone(&store), socket.clone());
        async move { serve_control(store, &socket, stopped).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while revoke_via_socket(&socket, "nobody")
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "control socket never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let refused = ControlSocket::bind(&socket).err().unwrap().to_string();
    assert!(
        refused.contains("another process is listening"),
        "{refused}"
    );

    assert_eq!(revoke_via_socket(&socket, "alice").await.unwrap(), Some(1));
    assert_eq!(store.lookup(&alice, now_millis()).await.unwrap(), None);
    assert!(store.lookup(&bob, now_millis()).await.unwrap().is_some());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file is removed on shutdown");
    assert_eq!(revoke_via_socket(&socket, "bob").await.unwrap(), None);
}

#[tokio::test]
async fn the_control_socket_answers_errors_on_its_line_protocol() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = TempDir::new("proto");
    let store = Arc::new(EmbeddedStore::open(&dir.db(), T).unwrap());
    new_session(&store, "alice").await;
    let socket = control_socket_path(&dir.db());
    let control = ControlSocket::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(control.serve(Arc::clone(&store), stopped));

    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    for (request, answer) in [
        ("hello\n", "error unknown command"),
        ("revoke \n", "error invalid user name"),
        ("revoke alice\n", "ok 1"),
        ("revoke alice\r\n", "ok 0"),
    ] {
        write.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some(answer));
    }
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn revoke_via_socket_reports_no_running_doorman() {
    let dir = TempDir::new("none");
    let socket = control_socket_path(&dir.db());
    // No socket file at all.
    assert_eq!(revoke_via_socket(&socket, "alice").await.unwrap(), None);
    // A socket file nobody listens on (doorman was killed): connection refused.
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    assert_eq!(revoke_via_socket(&socket, "alice").await.unwrap(), None);
}

#[tokio::test]
async fn a_file_that_is_not_a_socket_is_not_replaced() {
    let dir = TempDir::new("notsock");
    let socket = dir.0.join("precious.sock");
    std::fs::write(&socket, b"data").unwrap();
    assert!(ControlSocket::bind(&socket).is_err());
    assert_eq!(std::fs::read(&socket).unwrap(), b"data");
}

async fn wait_for_listener(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(socket).await.is_err() {
        assert!(Instant::now() < deadline, "control socket never came up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kill a process that is writing sessions with SIGKILL, three times over on one file; after
/// each kill the file opens and holds every session the child reported as created (each report
/// is printed only after `create` returned), and none it reported as deleted.
#[test]
fn sessions_survive_kill_9_of_a_writing_process() {
    let dir = TempDir::new("kill9");
    let db = dir.db();
    let mut created: Vec<SessionKey> = Vec::new();
    let mut deleted: Vec<SessionKey> = Vec::new();
    for (round, after) in [40usize, 150, 300].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writes_sessions_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_STORE, &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        let mut killed = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            // A line cut by the kill fails to parse and is ignored: it was never reported.
            if let Some(key) = line.strip_prefix("created ").and_then(parse_key) {
                created.push(key);
                seen += 1;
            } else if let Some(key) = line.strip_prefix("deleting ").and_then(parse_key) {
                // Killed between the delete and its report, either outcome is right.
                created.retain(|k| *k != key);
            } else if let Some(key) = line.strip_prefix("deleted ").and_then(parse_key) {
                deleted.push(key);
            }
            if !killed && (seen >= after || Instant::now() > deadline) {
                child.kill().unwrap(); // SIGKILL, mid-write: the child never stops writing
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child stopped on its own: {status}"
        );
        assert!(
            seen >= after,
            "round {round}: only {seen} sessions reported"
        );
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}");
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = EmbeddedStore::open(&db, T).expect("the file reopens after kill -9");
            let now = now_millis();
            for key in &created {
                assert!(
                    store.lookup(key, now).await.unwrap().is_some(),
                    "round {round}: a session reported as created is missing"
                );
            }
            for key in &deleted {
                assert_eq!(store.lookup(key, now).await.unwrap(), None, "round {round}");
            }
        });
    }
}

/// The writer for `sessions_survive_kill_9_of_a_writing_process`; does nothing unless that
/// test started it. Creates sessions as fast as it can, touching and deleting some on the way
/// (so non-durable touch commits are in flight too), reporting each after its call returned.
#[test]
fn child_writes_sessions_until_killed() {
    let Some(path) = std::env::var_os(CHILD_STORE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use std::io::Write;
        let store = EmbeddedStore::open(Path::new(&path), T).unwrap();
        let mut out = std::io::stdout().lock();
        let mut i: u64 = 0;
        loop {
            i += 1;
            let key = new_session(&store, "writer").await;
            writeln!(out, "created {}", key.hex()).unwrap();
            out.flush().unwrap();
            // Touch it as if used later (idle/10 = 6 minutes on): a lazy commit.
            let later = now_millis() + 7 * 60 * 1000;
            assert!(store.lookup(&key, later).await.unwrap().is_some());
            if i.is_multiple_of(5) {
                writeln!(out, "deleting {}", key.hex()).unwrap();
                out.flush().unwrap();
                store.delete(&key).await.unwrap();
                writeln!(out, "deleted {}", key.hex()).unwrap();
                out.flush().unwrap();
            }
            if i.is_multiple_of(7) {
                store
                    .hit("writer|127.0.0.1", Duration::from_secs(60))
                    .await
                    .unwrap();
            }
        }
    });
}

fn parse_key(hex: &str) -> Option<SessionKey> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(SessionKey(key))
}
