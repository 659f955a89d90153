//! Doorman under test, in-process through the library (`Doorman`); the real binary is
//! [`super::process::DoormanProcess`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

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
