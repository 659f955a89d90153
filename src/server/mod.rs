//! Listeners, accept loop, TLS handshake, per-connection serving, and graceful shutdown.
//!
//! One way in: [`Server::open`] opens the store and builds the first state, and
//! [`Server::serve`] takes already-bound listeners and a shutdown future (as mini-redis does), so
//! tests bind `127.0.0.1:0` and stop it when they like. Each accepted connection runs in its own task with a
//! `ConnClock` enforcing `header_timeout`, `idle_timeout` and
//! `send_timeout` (a client that stops reading its response is dropped); at most
//! `max_connections` run at once (both listeners together), and accept waits for a free slot
//! rather than failing; but one client (address, IPv6 /64) may hold only
//! `max_connections_per_client` of them, and its connections beyond that are closed at accept
//! (`per_client`), so its slow connections cannot fill every slot and starve other clients.
//!
//! Under `[listen] tls` the handshake runs inside the connection's task, never in the accept
//! loop (a slow or silent client must not hold up everyone else's accept), and it is part of
//! the `header_timeout` window that starts at accept: a client that never finishes its
//! handshake is closed like one that never finishes its request head. The decrypted stream is
//! what the clock watches and what `protocol::sniff` reads, so HTTP/2 is told from HTTP/1
//! the same way with TLS or without. The sniff is under `header_timeout` too.

mod deadlines;
mod follow;
mod per_client;
mod protocol;
mod redirect;
mod trim;
mod woken;
mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::accept;
use crate::body::Body;
use crate::clock::Clock;
use crate::config::{Config, StoreKind, UpstreamConfig};
use crate::control;
use crate::cookie::KeyMemo;
use crate::exchange::ClientInfo;
use crate::gate::{self, App};
use crate::session::Store;
use arc_swap::ArcSwap;
use deadlines::{ConnClock, Expiry, Socket, Watched};
use per_client::PerClient;
use protocol::{ConnService, HttpServer, Served, Version};
use woken::WokenOnly;

pub use deadlines::RequestGuard;
pub use workers::Workers;

pin_project_lite::pin_project! {
    /// What the server's service returns for a request: the gate's answer, or the redirect to
    /// https (made at once). An enum rather than a `dyn Future`, so the gate's future is the
    /// box's content itself.
    #[project = RequestFutureProj]
    enum RequestFuture<G, R> {
        Gate { #[pin] gate: tracing::instrument::Instrumented<G> },
        Ready { answer: Option<R> },
    }
}

impl<G: Future<Output = R>, R> Future for RequestFuture<G, R> {
    type Output = R;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<R> {
        match self.project() {
            RequestFutureProj::Gate { gate } => gate.poll(cx),
            RequestFutureProj::Ready { answer } => match answer.take() {
                Some(answer) => Poll::Ready(answer),
                // Polled again after it was ready: a caller's bug; stay pending rather than
                // panic on a request path.
                None => Poll::Pending,
            },
        }
    }
}

/// How long an idle connection told to close gracefully (HTTP/2 GOAWAY) may take before it is
/// dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The sockets one doorman serves.
pub struct Listeners {
    /// The public listener: HTTPS when `[listen] tls` is set, plain HTTP otherwise.
    pub main: TcpListener,
    /// `[listen] redirect_http`: plain HTTP, every request answered 308 to the https URL.
    pub redirect: Option<TcpListener>,
}

pub use crate::gate::Live;

/// A doorman ready to serve: its session store open and its first `App` built, not yet
/// accepting. The one way in: `main` and the tests open one, hand [`Server::live`] to the admin
/// listener and the reloader, then [`Server::serve`] it.
pub struct Server {
    /// The start-up config: the listeners' settings never change live.
    config: Arc<Config>,
    live: Live,
}

impl Server {
    /// Open the session store `config` names and build the first `App`, with fresh metrics,
    /// on the system clock.
    pub fn open(config: Arc<Config>) -> io::Result<Server> {
        Server::open_with_clock(config, Clock::system())
    }

    /// As [`Server::open`], judging session expiry, login windows and cache trust by `clock`
    /// (tests advance it instead of sleeping).
    pub fn open_with_clock(config: Arc<Config>, clock: Clock) -> io::Result<Server> {
        let store = crate::session::open(&config.session, &clock).map_err(io::Error::other)?;
        let mut metrics = crate::metrics::Metrics::new();
        // On the runtime opening the server (the main one), not on a serving worker.
        store.start(&mut metrics);
        let app = App::new(
            Arc::clone(&config),
            Arc::new(store),
            Arc::new(metrics),
            clock,
        )
        .map_err(io::Error::other)?;
        let live = Arc::new(ArcSwap::from_pointee(app));
        Ok(Server { config, live })
    }

    /// The state every request reads, which the admin listener and the reloader share.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Serve `listeners` until `shutdown` resolves; then stop accepting, let in-flight
    /// requests finish within `shutdown_grace`, and return. TLS follows `[listen] tls`.
    ///
    /// With `workers`, each accepted connection is handed to the least busy worker runtime and
    /// served there for its whole life (see `workers`); without, on the runtime that runs
    /// this future. Accept, `max_connections` and graceful shutdown stay here, across all
    /// workers.
    pub async fn serve(
        self,
        listeners: Listeners,
        workers: Option<&Workers>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        serve(listeners, self.config, self.live, shutdown, workers).await
    }
}

async fn serve(
    listeners: Listeners,
    config: Arc<Config>,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
    workers: Option<&Workers>,
) -> io::Result<()> {
    let Listeners { main, redirect } = listeners;
    let store = Arc::clone(&live.load().shared.store);
    let metrics = Arc::clone(&live.load().shared.metrics);
    let http = Arc::new(HttpServer::new(&config));
    let slots = Arc::new(Semaphore::new(config.listen.max_connections));
    let per_client = PerClient::new(config.listen.max_connections_per_client);
    let (stop_tx, stop_rx) = watch::channel(false);
    let express = live.load().shared.express.clone();
    let mut housekeeping = start_housekeeping(&config, &store, express, stop_rx.clone())?;
    // Long-lived exchanges follow their sessions (DESIGN.md §11).
    housekeeping
        .endless
        .push(tokio::spawn(follow::run(Arc::clone(&live))));
    // Freed memory goes back to the system when the process is quiet.
    housekeeping
        .endless
        .push(tokio::spawn(trim::run(Arc::clone(&metrics))));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let main_addr = main.local_addr()?;
    let main_role = match &config.listen.tls {
        Some(tls) => Role::Https(TlsAcceptor::from(tls.server_config())),
        None => Role::Http,
    };
    let scheme = if config.listen.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let upstream = config.upstream.as_ref().map(UpstreamConfig::url);
    let upstream = upstream.as_deref().unwrap_or("none (auth-only)");
    info!(addr = %main_addr, scheme, upstream, "doorman listening");
    for warning in &config.warnings {
        warn!("{warning}");
    }
    if let Some(redirect) = &redirect {
        info!(addr = %redirect.local_addr()?, to_port = main_addr.port(), "redirecting plain HTTP to https");
    }
    let redirect_role = Role::Redirect {
        https_port: main_addr.port(),
    };

    loop {
        // Reap finished connection tasks so the set does not grow with the process's age.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let accepted = accept::next(
            "public",
            || async {
                tokio::select! {
                    accepted = main.accept() => accepted.map(|pair| (pair, &main_role)),
                    accepted = accept_maybe(redirect.as_ref()) => {
                        accepted.map(|pair| (pair, &redirect_role))
                    }
                }
            },
            shutdown.as_mut(),
        );
        let Some(((stream, peer), role)) = accepted.await else {
            break;
        };
        let Some(client_slot) = per_client.try_acquire(peer.ip()) else {
            // Closed, never queued: waiting would hold a global slot for this client anyway.
            debug!(peer = %peer, "client at max_connections_per_client: connection closed");
            continue;
        };
        let open = metrics.open_connection();
        let conn = Connection {
            live: Arc::clone(&live),
            http: Arc::clone(&http),
            config: Arc::clone(&config),
            stop: stop_rx.clone(),
            role: role.clone(),
        };
        let span = info_span!("conn", peer = %peer);
        match workers.and_then(Workers::assign) {
            None => {
                let serving = async move {
                    conn.serve(stream, peer).await;
                    drop(open);
                    drop(client_slot);
                    drop(slot);
                }
                .instrument(span);
                note_connection_future_size(std::mem::size_of_val(&serving));
                connections.spawn(serving);
            }
            Some((worker, assigned)) => {
                // The socket moves to the worker's reactor: deregistered here, registered
                // there, so its readiness wakes that worker's thread alone.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        debug!(%error, "could not hand the connection to a worker");
                        continue;
                    }
                };
                let serving = async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => conn.serve(stream, peer).await,
                        Err(error) => {
                            debug!(%error, "worker could not register the connection")
                        }
                    }
                    drop(assigned);
                    drop(open);
                    drop(client_slot);
                    drop(slot);
                }
                .instrument(span);
                note_connection_future_size(std::mem::size_of_val(&serving));
                connections.spawn_on(serving, worker);
            }
        }
    }

    drop(main);
    drop(redirect);
    let in_flight = connections.len();
    info!(connections = in_flight, grace = ?config.listen.shutdown_grace, "shutting down");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.listen.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            "shutdown grace expired; closing remaining connections"
        );
        connections.shutdown().await;
    }
    for task in housekeeping.endless {
        task.abort();
    }
    if let Some(control) = housekeeping.control {
        // It has stopped accepting on `stop` and is removing its socket file; aborted at once,
        // it would leave the file behind (harmless, but not what its docs promise).
        if tokio::time::timeout(CONTROL_STOP_GRACE, control)
            .await
            .is_err()
        {
            warn!("control socket task did not stop in time");
        }
    }
    info!("stopped");
    Ok(())
}

/// Accept on `listener`, or wait forever when there is none.
async fn accept_maybe(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// What a listener's connections are for.
#[derive(Clone)]
enum Role {
    /// The proxy over plain HTTP.
    Http,
    /// The proxy over TLS.
    Https(TlsAcceptor),
    /// `redirect_http`: everything is sent to the https listener on this port.
    Redirect { https_port: u16 },
}

/// The largest request glibc's per-thread cache serves (`tcache`: 64 sizes, requests up to
/// 1,032 bytes, chunks up to 1,040, on 64-bit): a request's boxed future must fit in it (see
/// the service in `Connection::serve_http`).
const TCACHE_MAX_REQUEST: usize = 1032;

/// Logs, once per process under the target `doorman::sizes`, how large a request's boxed future
/// is: at debug level when it fits [`TCACHE_MAX_REQUEST`], as a warning when it does not. Why:
/// the size is a property of the release build (debug builds lay futures out differently) that
/// no test of a debug build can see, and one local kept across an await pushed it over the
/// limit once, unnoticed until a profile showed about 230 instructions more in `malloc` on
/// every request. `tests/bench_pgo.rs` reads the line from the release build it
/// makes and fails above the limit; `benches/callgrind.sh` (at `RUST_LOG=warn`, so its counts
/// stay those of a production log level) shows the warning. After the first request the check
/// is one atomic load.
fn note_request_future_size(bytes: usize) {
    static NOTED: std::sync::Once = std::sync::Once::new();
    note_size(
        &NOTED,
        SizeNote {
            what: "a request's boxed future",
            bytes,
            limit: TCACHE_MAX_REQUEST,
            over: "is over glibc's per-thread cache: every request's allocation takes malloc's slow path",
        },
    );
}

/// One size for [`note_size`]: what was measured, its bytes, its limit, and what being over
/// the limit costs (the warning's words after `what`).
struct SizeNote {
    what: &'static str,
    bytes: usize,
    limit: usize,
    over: &'static str,
}

/// Logs `note` once per `noted`, under the target `doorman::sizes`: `"{what} bytes=N limit=L"`
/// at debug level within the limit (the line `tests/bench_pgo.rs` reads), a warning above it.
fn note_size(noted: &'static std::sync::Once, note: SizeNote) {
    noted.call_once(|| {
        let SizeNote {
            what,
            bytes,
            limit,
            over,
        } = note;
        if bytes <= limit {
            debug!(target: "doorman::sizes", bytes, limit, "{what}");
        } else {
            warn!(target: "doorman::sizes", bytes, limit, "{what} {over}");
        }
    });
}

/// The most a connection's task state may take: the spawned future every connection keeps,
/// idle or busy, for its whole life (a task is allocated at its largest state). It took 4,040
/// bytes while an async fn held hyper's connection state twice (`serve_until_rest`), 2,520
/// since (release build). The limit leaves room for a few fields, not for another copy of
/// that state (912 bytes).
const CONNECTION_FUTURE_LIMIT: usize = 3072;

/// As [`note_request_future_size`], for a connection's spawned future against
/// [`CONNECTION_FUTURE_LIMIT`]: logged once, when the first connection is accepted, and read by
/// `tests/bench_pgo.rs` from the release build it makes. The served binary always has workers,
/// so the future measured is the one spawned on a worker; the other (no workers: tests that
/// call `serve` directly) differs only in its few captured values.
fn note_connection_future_size(bytes: usize) {
    static NOTED: std::sync::Once = std::sync::Once::new();
    note_size(
        &NOTED,
        SizeNote {
            what: "a connection's future",
            bytes,
            limit: CONNECTION_FUTURE_LIMIT,
            over: "is over its limit: every connection, idle or not, holds that much",
        },
    );
}

/// How often the embedded store sweeps expired sessions and counters.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long shutdown waits for the control socket task to remove its socket file.
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(1);

/// The tasks that run beside the listeners until shutdown.
struct Housekeeping {
    /// Loops that never end by themselves (the sweep, the re-check of long-lived exchanges):
    /// aborted at shutdown.
    endless: Vec<tokio::task::JoinHandle<()>>,
    /// The control socket's task, which ends by itself once `stop` is sent, removing its
    /// socket file on the way out: awaited (briefly) at shutdown.
    control: Option<tokio::task::JoinHandle<()>>,
}

/// Background work the store needs while doorman serves: for the embedded store, the sweep of
/// expired records and the control socket `doorman sessions revoke` talks to. The socket is
/// bound here, before the first accept, so a failure stops start-up instead of leaving revoke
/// silently unreachable (and no client connection can take its descriptor first).
fn start_housekeeping(
    config: &Config,
    store: &Arc<Store>,
    express: Option<Arc<crate::session::express::Bridge>>,
    stop: watch::Receiver<bool>,
) -> io::Result<Housekeeping> {
    let (Store::Embedded(embedded), StoreKind::Embedded { path }) =
        (&**store, &config.session.store)
    else {
        return Ok(Housekeeping {
            endless: Vec::new(),
            control: None,
        });
    };
    let socket = control::control_socket_path(path);
    let control = control::ControlSocket::bind(&socket)
        .map_err(io::Error::other)?
        .with_express(express);
    let sweeper = embedded.spawn_sweeper(SWEEP_EVERY);
    let store = Arc::new(embedded.clone());
    let control = tokio::spawn(async move {
        let mut stop = stop;
        let stopped = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        control.serve(store, stopped).await;
    });
    Ok(Housekeeping {
        endless: vec![sweeper],
        control: Some(control),
    })
}

/// Everything one connection task needs.
struct Connection {
    live: Live,
    http: Arc<HttpServer>,
    config: Arc<Config>,
    stop: watch::Receiver<bool>,
    role: Role,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "set_nodelay failed");
        }
        let listen = &self.config.listen;
        // From accept: the handshake, if any, spends from the same header_timeout window.
        let clock = ConnClock::new(
            listen.header_timeout,
            listen.idle_timeout,
            listen.send_timeout,
        );
        // This task owns the socket for as long as it polls the clock.
        clock.watch_client(std::os::fd::AsRawFd::as_raw_fd(&stream));
        match self.role.clone() {
            Role::Http => {
                let client = ClientInfo::direct(peer, false);
                self.serve_http(stream, clock, client, None).await;
            }
            Role::Redirect { https_port } => {
                let client = ClientInfo::direct(peer, false);
                self.serve_http(stream, clock, client, Some(https_port))
                    .await;
            }
            Role::Https(acceptor) => {
                // Boxed: the handshake's state is larger than the whole of a plain
                // connection's (2.8 KB), and every connection's task, plain or not, would be
                // sized for it.
                Box::pin(async move {
                    let stream = tokio::select! {
                        handshake = acceptor.accept(stream) => match handshake {
                            Ok(stream) => stream,
                            Err(error) => {
                                debug!(peer = %peer, %error, "tls handshake failed");
                                return;
                            }
                        },
                        _ = clock.expired() => {
                            debug!(peer = %peer, "tls handshake not finished within header_timeout: closing connection");
                            return;
                        }
                    };
                    let client = ClientInfo::direct(peer, true);
                    // Boxed: the TLS session (1.2 KB) would otherwise be copied into every
                    // slot of the connection's state that holds the socket.
                    self.serve_http(Box::new(stream), clock, client, None).await;
                })
                .await;
            }
        }
    }

    /// Serve HTTP/1.1 or HTTP/2 on `stream` (plain TCP or decrypted TLS) until the client
    /// leaves, a deadline passes, or shutdown. `redirect_to`: answer everything with a redirect
    /// to the https listener on that port instead of proxying.
    async fn serve_http<S>(
        mut self,
        stream: S,
        clock: Arc<ConnClock>,
        client: ClientInfo,
        redirect_to: Option<u16>,
    ) where
        S: Socket,
    {
        let mut io = Watched::new(stream, Arc::clone(&clock));
        let version = tokio::select! {
            sniffed = protocol::sniff(&mut io) => match sniffed {
                Ok(Some(version)) => version,
                Ok(None) => return,
                Err(error) => {
                    debug!(%error, "connection failed before its first request");
                    return;
                }
            },
            expiry = clock.expired() => {
                debug!(?expiry, "no request within header_timeout: closing connection");
                return;
            }
            _ = self.stop.wait_for(|stopped| *stopped) => return,
        };
        if version == Version::Http2 {
            clock.serving_http2();
        }
        let live = Arc::clone(&self.live);
        let service_clock = Arc::clone(&clock);
        // HTTP/2 streams run in tasks hyper spawns, outside this task's span: give each request
        // its own span, parented to the connection's, explicitly.
        let conn_span = tracing::Span::current();
        // The connection's last session cookie and its key (see `KeyMemo`): dropped with it.
        let memo = KeyMemo::default();
        let service = service_fn(move |req: Request<Incoming>| {
            let guard = service_clock.start_request(!http_body::Body::is_end_stream(req.body()));
            let span = info_span!(parent: &conn_span, "request", method = %req.method(), path = %req.uri().path(), route = tracing::field::Empty);
            let tracked =
                move |resp: Response<Body>| -> Result<Response<deadlines::Tracked>, Infallible> {
                    Ok(resp.map(|body| deadlines::Tracked::new(body, guard)))
                };
            // Boxed: hyper's HTTP/1 dispatcher allocates a slot for this future when the
            // connection opens and keeps it while the connection idles between requests.
            // Unboxed, the slot is the whole request state machine (about 1 KB now; when it
            // was 7.5 KB, 10,000 idle keep-alive connections measured +77 MiB); boxed, a
            // pointer, and the state lives only while a request does (one allocation per
            // request). Kept under 1,032 bytes, the largest size glibc's per-thread cache
            // serves: above it, that one allocation and its free cost about 300 instructions
            // more per request (callgrind); the levels below box what most requests never
            // use. The gate's own future is the box's content, not awaited inside another
            // one: that one would hold it as a field, and build it by a copy on its first
            // poll. Written into the box (`Box::write`): `Box::pin` made it beside the box and
            // copied it in, about 1 KB (120 instructions) per request, into lines no other
            // request touched lately when many connections take turns. The request is boxed
            // here, once: every level below takes it by value, and a box moves as a pointer.
            match redirect_to {
                None => {
                    let future = Box::into_pin(Box::write(
                        Box::new_uninit(),
                        RequestFuture::Gate {
                            gate: gate::handle(
                                live.load_full(),
                                client.clone(),
                                &memo,
                                Box::new(req),
                                span.clone(),
                                tracked,
                            )
                            .instrument(span),
                        },
                    ));
                    note_request_future_size(std::mem::size_of_val(&*future));
                    future
                }
                Some(https_port) => {
                    let resp = redirect::answer(&req, https_port);
                    span.in_scope(|| {
                        info!(
                            target: "doorman::access",
                            peer = %client.peer, method = %req.method(), path = %req.uri().path(),
                            status = resp.status().as_u16(), "redirect to https"
                        )
                    });
                    Box::pin(RequestFuture::Ready {
                        answer: Some(tracked(resp)),
                    })
                }
            }
        });
        let (mut io, mut service) = (TokioIo::new(io), service);
        // One hyper state per pass; an idle HTTP/1 connection leaves the block below to rest
        // (its hyper state dropped, see `deadlines`) and comes back with its next request.
        // The state lives in the block and `serve_until_rest` borrows it: an async fn holds an owned
        // argument twice (the argument and the local it is moved into, 912 bytes each), and
        // every connection's task is sized for its largest state, resting or not.
        // The block ends the hyper state's storage before the rest's await (a moved-from
        // local keeps its slot in every later state of the task until its scope ends).
        loop {
            (io, service) = {
                let mut conn = self.http.serve(version, io, service);
                if self.serve_until_rest(&mut conn, &clock).await == Pass::Ended {
                    return;
                }
                // hyper let go: the socket, and the bytes it read but did not use (a
                // pipelined request's start).
                let Some(parts) = conn.into_parts() else {
                    return;
                };
                let mut io = parts.io;
                io.inner_mut().unread(parts.read_buf);
                (io, parts.service)
            };
            self.live.load().shared.metrics.connection_rested();
            if !io.inner().has_unread() {
                let close = tokio::select! {
                    ready = io.inner().readable() => match ready {
                        Ok(()) => false,
                        Err(error) => {
                            debug!(%error, "resting connection failed");
                            return;
                        }
                    },
                    expiry = clock.expired_resting() => {
                        debug!(?expiry, "idle timeout: closing resting connection");
                        true
                    }
                    _ = self.stop.wait_for(|stopped| *stopped) => true,
                };
                if close {
                    // As hyper's graceful close: shut the write side (TLS: close_notify).
                    let _ = tokio::time::timeout(CLOSE_GRACE, io.inner_mut().shutdown()).await;
                    return;
                }
            }
        }
    }

    /// Drive one hyper connection state until the connection ends, or, idle, rests
    /// ([`Pass::Rested`]: hyper let go of it, and the caller takes it apart).
    async fn serve_until_rest<S: Socket, Svc: ConnService + Unpin>(
        &mut self,
        conn: &mut Served<TokioIo<Watched<S>>, Svc>,
        clock: &ConnClock,
    ) -> Pass {
        let mut closing = false;
        loop {
            // The clock and the shutdown signal ([`rare`]) are polled only when one of their
            // wakers fired, not on every wake-up of the connection (`woken`). In this order
            // (`biased`): hyper first, as it is the branch almost every wake-up is for, and a
            // poll that ends the race never costs the random start an unbiased `select!` draws
            // on each poll; the rare events cannot starve, as hyper's branch returns as soon as
            // it is ready.
            tokio::select! {
                biased;
                result = &mut *conn => {
                    if let Err(error) = result {
                        debug!(error = %error, "connection ended with an error");
                    }
                    return Pass::Ended;
                }
                rare = WokenOnly::new(rare(clock, &mut self.stop)), if !closing => match rare {
                    Rare::Stop(changed) => {
                        if changed.is_err() || *self.stop.borrow() {
                            conn.graceful_shutdown();
                            closing = true;
                        }
                    }
                    Rare::Expired(Expiry::Header) => {
                        debug!("header timeout: closing connection");
                        return Pass::Ended;
                    }
                    Rare::Expired(Expiry::Send) => {
                        // The client stopped reading; what is queued for it is dropped with it.
                        debug!("send timeout: a write to the client made no progress; dropping connection");
                        return Pass::Ended;
                    }
                    Rare::Expired(Expiry::Left) => {
                        // Nobody to answer: the request and its upstream exchange go with the
                        // connection, as when hyper saw the EOF itself.
                        debug!("the client left mid-request: dropping connection");
                        return Pass::Ended;
                    }
                    Rare::Expired(Expiry::Idle) => {
                        debug!("idle timeout: closing connection");
                        conn.graceful_shutdown();
                        if tokio::time::timeout(CLOSE_GRACE, &mut *conn).await.is_err() {
                            debug!("idle connection did not close in time; dropping it");
                        }
                        return Pass::Ended;
                    }
                    Rare::Expired(Expiry::Rest) => {
                        // Idle by doorman's clock (which never rests a connection whose last
                        // request had a body: hyper may still be reading it); hyper knows
                        // whether it is idle too. Asked to close, hyper closes an idle
                        // connection at once, in the second poll below, and its shutdown leaves
                        // the socket open (`keep_socket`); a busy one finishes its message first
                        // and then closes for good.
                        clock.rested();
                        // First whatever hyper has to do anyway, with its shutdown still a
                        // real one (its branch was polled first in this round, so this finds
                        // work only when a wake-up came in since).
                        if let Poll::Ready(result) = poll_once(conn).await {
                            if let Err(error) = result {
                                debug!(error = %error, "connection ended with an error");
                            }
                            return Pass::Ended;
                        }
                        clock.keep_socket(true);
                        conn.graceful_shutdown();
                        let closed = poll_once(conn).await;
                        clock.keep_socket(false);
                        match closed {
                            Poll::Ready(Ok(())) => return Pass::Rested,
                            Poll::Ready(Err(error)) => {
                                debug!(error = %error, "connection ended with an error");
                                return Pass::Ended;
                            }
                            Poll::Pending => {}
                        }
                    }
                },
            }
        }
    }
}

/// What ended [`rare`]: the connection's clock, or the shutdown signal (`watch::changed`'s
/// result).
enum Rare {
    Expired(Expiry),
    Stop(Result<(), watch::error::RecvError>),
}

/// The two events a connection's task waits for besides hyper, as one future: its clock's
/// deadline and the shutdown signal. One, so that [`WokenOnly`] keeps one flag for both: each
/// wake-up of the task that was for hyper (twice a request) reads that flag, and with 256
/// connections the flag's line is rarely still in the cache (about one last-level miss per
/// read under callgrind's cache model, `benches/callgrind.sh`); two flags were two lines. The
/// clock first, as the two separate branches were polled.
async fn rare(clock: &ConnClock, stop: &mut watch::Receiver<bool>) -> Rare {
    tokio::select! {
        biased;
        expiry = clock.expired() => Rare::Expired(expiry),
        changed = stop.changed() => Rare::Stop(changed),
    }
}

/// How a pass of [`Connection::serve_until_rest`] over one hyper state ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// The connection is over (closed, failed, timed out or shut down).
    Ended,
    /// hyper closed it as idle and let go of the socket, which rests until its next request.
    Rested,
}

/// Poll `fut` once: its result, or `Pending` (it is then woken as any polled future is).
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}

/// Raise the soft open-file limit so `max_connections` client sockets, as many upstream
/// sockets and some headroom fit. Returns the limit now in force; it stays below the wish only
/// when the hard limit is lower, which is logged.
pub fn raise_open_file_limit(max_connections: usize) -> io::Result<u64> {
    let wanted = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= wanted {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if raised.rlim_cur < wanted {
        warn!(
            limit = raised.rlim_cur, wanted,
            "open-file hard limit is below what max_connections needs; accept will back off when it is reached"
        );
    }
    Ok(raised.rlim_cur)
}
