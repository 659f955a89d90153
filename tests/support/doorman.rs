//! Doorman under test, in this process: one builder for every in-process test.
//!
//! ```ignore
//! let d = Doorman::start(&config(&upstream.url(), "", "")).await;      // config text
//! let d = Doorman::toml(&toml).file("ca.pem", pem).admin().start().await;
//! let s = Doorman::conf(&Conf::dashboard()).store(StoreChoice::Redis).start().await;
//! ```
//!
//! It serves as `doorman` does, through the library: `server::Server::open` builds the live
//! state (on a clock the test can advance: [`Doorman::clock`]), `Server::serve` serves the
//! public listener (and the `redirect_http` one) on it, on worker runtimes if asked, `admin::serve` the admin endpoints on their own listener if asked, and
//! [`Doorman::reload`] re-reads the config file through `reload::Reloader`, as SIGHUP does.
//!
//! Built from a [`Conf`], it also owns what the config names: the echo upstream, the users file
//! (alice and bob) and the session store (a fresh redb file, or a Redis server of its own).
//!
//! The real binary, for signals, exit codes and logs, is [`super::process::DoormanProcess`].

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use doorman::clock::Clock;
use doorman::config::Config;
use doorman::reload::Reloader;
use doorman::server::{Listeners, Live, Server, Workers};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::login::{
    get_as, log_in, users_toml, write_users, Answer, Backend, Conf, HttpClient, StoreChoice,
};
use super::ops::{scrape, Exposition};
use super::redis::RedisServer;
use super::Upstream;

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

/// Doorman running in this test process on `127.0.0.1:0` listeners; stopped when dropped.
pub struct Doorman {
    /// The public listener.
    pub addr: SocketAddr,
    /// `http://ADDR` (`https://` with `[listen] tls`).
    pub base: String,
    /// The redirect listener, when the config has `[listen] redirect_http` (bound on a free
    /// loopback port, whatever address the config names).
    pub redirect: Option<SocketAddr>,
    /// The admin listener, when built with [`Builder::admin`] (whatever `[admin] addr` says).
    pub admin: Option<SocketAddr>,
    /// The state every request reads; a reload replaces it.
    pub live: Live,
    /// The clock session expiry, login windows and cache trust are judged by: advance it
    /// instead of sleeping.
    pub clock: Clock,
    /// The config's folder.
    pub dir: PathBuf,
    /// The config file, `DIR/proxy.toml` (rewrite it, then [`Doorman::reload`]).
    pub file: PathBuf,
    /// An HTTP/1.1 client for this doorman.
    pub client: HttpClient,
    /// Built from a [`Conf`] on a Redis server of its own: that server.
    pub redis: Option<RedisServer>,
    upstream: Option<Upstream>,
    backend: Option<Backend>,
    users: Option<PathBuf>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<io::Result<()>>>,
    admin_task: Option<JoinHandle<io::Result<()>>>,
}

/// How to build a [`Doorman`]; [`Builder::start`] starts it.
#[must_use]
pub struct Builder {
    source: Source,
    files: Vec<(String, Vec<u8>)>,
    admin: bool,
    workers: Option<Arc<Workers>>,
    store: StoreChoice,
    redis: Option<RedisServer>,
    backend: Option<Backend>,
    users: Option<PathBuf>,
}

enum Source {
    Toml(String),
    Conf(Conf),
}

impl Doorman {
    /// Serve `toml` (written as `DIR/proxy.toml` and validated).
    pub async fn start(toml: &str) -> Doorman {
        Doorman::toml(toml).start().await
    }

    /// A doorman serving this config text, as is.
    pub fn toml(toml: &str) -> Builder {
        Builder::new(Source::Toml(toml.to_string()))
    }

    /// A doorman serving `conf` in front of an echo upstream of its own, with the standard users
    /// file (alice, bob), on a fresh embedded store unless told otherwise.
    pub fn conf(conf: &Conf) -> Builder {
        Builder::new(Source::Conf(conf.clone()))
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `http://ADMIN` + `path`.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("no admin listener: build with .admin()");
        format!("http://{admin}{path}")
    }

    /// The echo upstream (built from a [`Conf`]).
    pub fn upstream(&self) -> &Upstream {
        self.upstream
            .as_ref()
            .expect("no upstream of its own: built from config text")
    }

    /// The users file (built from a [`Conf`]).
    pub fn users(&self) -> &Path {
        self.users
            .as_deref()
            .expect("no users file of its own: built from config text")
    }

    /// Where the sessions are (built from a [`Conf`]).
    pub fn backend(&self) -> &Backend {
        self.backend
            .as_ref()
            .expect("no store of its own: built from config text")
    }

    /// A reloader for the config file on the live state, as the SIGHUP handler has.
    pub fn reloader(&self) -> Reloader {
        Reloader::new(self.file.clone(), Arc::clone(&self.live))
    }

    /// Re-read the config file, as SIGHUP does; whether the new config was taken.
    pub async fn reload(&self) -> bool {
        self.reloader().reload().await.is_ok()
    }

    /// Scrape the admin listener's `/metrics`.
    pub async fn metrics(&self, client: &HttpClient) -> Exposition {
        scrape(client, &self.admin_url("/metrics")).await
    }

    /// Log in as `user` with `password`; the new cookie's value.
    pub async fn log_in(&self, user: &str, password: &str) -> String {
        log_in(&self.client, &self.base, user, password).await
    }

    /// `GET path` presenting cookie `value`.
    pub async fn get(&self, path: &str, value: Option<&str>) -> Answer {
        get_as(&self.client, &self.url(path), value, &[]).await
    }

    /// `doorman sessions revoke --user USER --config <this doorman's proxy.toml>`, run as its
    /// own process: (exit code, stdout, stderr).
    pub async fn revoke(&self, user: &str) -> (i32, String, String) {
        let config = self.file.to_str().expect("utf-8 path").to_string();
        let user = user.to_string();
        tokio::task::spawn_blocking(move || {
            super::process::run_cli(&["sessions", "revoke", "--user", &user, "--config", &config])
        })
        .await
        .expect("cli")
    }

    /// Begin a graceful shutdown and return the server task, which ends when it is done.
    pub fn shutdown(&mut self) -> JoinHandle<io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        self.task.take().expect("doorman already shut down")
    }
}

impl Drop for Doorman {
    fn drop(&mut self) {
        for task in [self.task.take(), self.admin_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

impl Builder {
    fn new(source: Source) -> Builder {
        Builder {
            source,
            files: Vec::new(),
            admin: false,
            workers: None,
            store: StoreChoice::Embedded,
            redis: None,
            backend: None,
            users: None,
        }
    }

    /// Write a file beside the config first, for keys whose relative paths resolve against the
    /// config's folder (`ca = "ca.pem"`).
    pub fn file(mut self, name: &str, contents: &[u8]) -> Builder {
        self.files.push((name.to_string(), contents.to_vec()));
        self
    }

    /// [`Builder::file`] for each `(name, contents)`.
    pub fn files(self, files: &[(&str, &[u8])]) -> Builder {
        files
            .iter()
            .fold(self, |b, (name, contents)| b.file(name, contents))
    }

    /// Serve the admin endpoints too, on their own `127.0.0.1:0` listener.
    pub fn admin(mut self) -> Builder {
        self.admin = true;
        self
    }

    /// Hand each accepted connection to one of these worker runtimes, as the binary does.
    pub fn workers(mut self, workers: Arc<Workers>) -> Builder {
        self.workers = Some(workers);
        self
    }

    /// ([`Doorman::conf`]) Which store: a fresh redb file (the default), or a Redis server of
    /// its own.
    pub fn store(mut self, store: StoreChoice) -> Builder {
        self.store = store;
        self
    }

    /// ([`Doorman::conf`]) Keep sessions on this Redis server, kept alive with the doorman.
    pub fn redis(mut self, redis: RedisServer) -> Builder {
        self.redis = Some(redis);
        self
    }

    /// ([`Doorman::conf`]) Keep sessions here (another doorman's Redis, a Redis that is down).
    pub fn backend(mut self, backend: Backend) -> Builder {
        self.backend = Some(backend);
        self
    }

    /// ([`Doorman::conf`]) Read users from this file instead of the standard one.
    pub fn users(mut self, users: &Path) -> Builder {
        self.users = Some(users.to_path_buf());
        self
    }

    /// Write the config (and files), validate it, bind the listeners and serve.
    pub async fn start(self) -> Doorman {
        let Builder {
            source,
            files,
            admin,
            workers,
            store,
            redis,
            backend,
            users,
        } = self;
        let (toml, upstream, backend, users, redis) = match source {
            Source::Toml(toml) => {
                assert!(
                    redis.is_none() && backend.is_none() && users.is_none(),
                    "store and users are chosen by the config text: use Doorman::conf"
                );
                (toml, None, None, None, None)
            }
            Source::Conf(conf) => {
                assert!(
                    redis.is_none() || backend.is_none(),
                    "either a Redis server or a backend"
                );
                let redis = match (redis, &backend, store) {
                    (None, None, StoreChoice::Redis) => Some(RedisServer::start()),
                    (redis, _, _) => redis,
                };
                let backend = backend.unwrap_or_else(|| match &redis {
                    Some(redis) => Backend::redis(redis),
                    None => Backend::embedded(),
                });
                let users = users.unwrap_or_else(|| write_users(&users_toml()));
                let upstream = Upstream::start().await;
                let toml = conf.toml(&upstream.url(), &backend, &users);
                (toml, Some(upstream), Some(backend), Some(users), redis)
            }
        };

        let dir = super::temp_dir("doorman");
        for (name, contents) in &files {
            std::fs::write(dir.join(name), contents).expect("write file beside config");
        }
        let file = dir.join("proxy.toml");
        std::fs::write(&file, toml).expect("write config");
        let config =
            Arc::new(Config::load(&file).unwrap_or_else(|e| panic!("test config invalid:\n{e}")));
        let clock = Clock::system();
        let server =
            Server::open_with_clock(Arc::clone(&config), clock.clone()).expect("start doorman");
        let live = Arc::clone(server.live());

        let main = bind("doorman").await;
        let addr = main.local_addr().expect("doorman addr");
        let redirect = match config.listen.redirect_http {
            Some(_) => Some(bind("redirect listener").await),
            None => None,
        };
        let redirect_addr = redirect
            .as_ref()
            .map(|l| l.local_addr().expect("redirect addr"));
        let (stop, stopped) = watch::channel(false);
        let admin_listener = if admin {
            Some(bind("admin listener").await)
        } else {
            None
        };
        let admin_task = admin_listener.map(|listener| {
            let admin_addr = listener.local_addr().expect("admin addr");
            let serving = doorman::admin::serve(listener, Arc::clone(&live), until(&stopped));
            (admin_addr, tokio::spawn(serving))
        });
        let scheme = match config.listen.tls {
            Some(_) => "https",
            None => "http",
        };
        let listeners = Listeners { main, redirect };
        let shutdown = until(&stopped);
        let task = tokio::spawn(async move {
            let workers = workers.as_deref();
            server.serve(listeners, workers, shutdown).await
        });
        Doorman {
            addr,
            base: format!("{scheme}://{addr}"),
            redirect: redirect_addr,
            admin: admin_task.as_ref().map(|(addr, _)| *addr),
            live,
            clock,
            dir,
            file,
            client: super::h1_client(),
            redis,
            upstream,
            backend,
            users,
            stop: Some(stop),
            task: Some(task),
            admin_task: admin_task.map(|(_, task)| task),
        }
    }
}

/// A `127.0.0.1:0` listener.
async fn bind(what: &str) -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what}: {e}"))
}

/// A future that resolves once `stop` says so (or its sender is gone).
fn until(stop: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}
