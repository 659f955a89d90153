//! `hyper-floor`: the least a reverse proxy built on doorman's stack can do per request, for
//! `benches/run.sh` (row w) and `benches/callgrind.sh` (its `floor` path).
//!
//! # Why it exists
//! Issue 20 asks doorman to match nginx per request on plain HTTP/1.1. Doorman's own code is
//! a small part of its user-space instructions (see docs/BENCHMARKS.md): most are hyper,
//! http, httparse and tokio, which the team chose. This program measures what those crates
//! cost on their own, so a run can say how much of doorman's gap to nginx is doorman and how
//! much is the stack: a proxy with nothing but the parts no HTTP/1.1 proxy on this stack can
//! leave out.
//!
//! # What it does, and nothing more
//! One current-thread tokio runtime per worker (as doorman's), each accepting on the same
//! listener; hyper's HTTP/1.1 server with keep-alive; each request, as parsed, sent to the
//! upstream over hyper's HTTP/1.1 client connection from a per-worker pool (a `Vec`, most
//! recently returned first, as doorman's), the connection handed back when the response body
//! has been read to its end; the response head and body streamed back as hyper parsed them.
//! No routes, no sessions, no header strips, no `X-Forwarded-*`, no hop-by-hop handling, no
//! timeouts, no metrics, no logs: it is not a proxy anyone should run, only a floor to
//! measure against.
//!
//! Usage: `hyper-floor --listen PORT --upstream PORT [--workers N]` (loopback only; default
//! workers: one per core, as doorman).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One worker's idle upstream connections (a `Mutex` never contended: one worker uses it).
type Idle = Arc<Mutex<Vec<SendRequest<Incoming>>>>;
type Reply = Either<PooledBody, Empty<Bytes>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = None;
    let mut upstream = None;
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{arg}: expects a value"))?;
        match arg.as_str() {
            "--listen" => listen = Some(value.parse::<u16>()?),
            "--upstream" => upstream = Some(value.parse::<u16>()?),
            "--workers" => workers = value.parse::<usize>()?.max(1),
            _ => return Err(format!("unknown option {arg}").into()),
        }
    }
    let (listen, upstream) = match (listen, upstream) {
        (Some(l), Some(u)) => (l, u),
        _ => return Err("usage: hyper-floor --listen PORT --upstream PORT [--workers N]".into()),
    };
    // SIGTERM (benches/run.sh stops its servers with it) and SIGINT end the program by
    // returning from `main`, through libc's `exit`: a build instrumented by `benches/pgo.sh`
    // writes its profile there, where the signal's default action would lose it. Registered
    // before the port is bound, so a signal sent as soon as it accepts is never the default's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _context = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, listen))?;
    listener.set_nonblocking(true)?;
    let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream));
    // The workers never return but by failing; the first failure ends the program.
    let (failed, mut failure) = tokio::sync::mpsc::unbounded_channel::<std::io::Error>();
    for _ in 0..workers {
        let listener = listener.try_clone()?;
        let failed = failed.clone();
        std::thread::spawn(move || {
            if let Err(e) = worker(listener, upstream) {
                let _ = failed.send(e);
            }
        });
    }
    runtime.block_on(async move {
        tokio::select! {
            _ = term.recv() => Ok(()),
            _ = int.recv() => Ok(()),
            Some(e) = failure.recv() => Err(e.to_string().into()),
        }
    })
}

/// One worker: its runtime, its accept loop, its pool.
fn worker(listener: std::net::TcpListener, upstream: SocketAddr) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let idle: Idle = Arc::default();
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let idle = Arc::clone(&idle);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let idle = Arc::clone(&idle);
                    async move { Ok::<_, Infallible>(forward(req, idle, upstream).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// Send `req` on a pooled connection (or a new one) and return the upstream's response.
async fn forward(req: Request<Incoming>, idle: Idle, upstream: SocketAddr) -> Response<Reply> {
    let pooled = {
        let mut conns = lock(&idle);
        conns
            .iter()
            .rposition(|sender| sender.is_ready())
            .map(|i| conns.remove(i))
    };
    let mut sender = match pooled {
        Some(sender) => sender,
        None => match connect(upstream).await {
            Some(sender) => sender,
            None => return bad_gateway(),
        },
    };
    match sender.send_request(req).await {
        Ok(resp) => resp.map(|body| {
            Either::Left(PooledBody {
                body,
                lease: Some((sender, idle)),
            })
        }),
        Err(_) => bad_gateway(),
    }
}

async fn connect(upstream: SocketAddr) -> Option<SendRequest<Incoming>> {
    let stream = tokio::net::TcpStream::connect(upstream).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

fn lock(idle: &Idle) -> MutexGuard<'_, Vec<SendRequest<Incoming>>> {
    idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bad_gateway() -> Response<Reply> {
    let mut resp = Response::new(Either::Right(Empty::new()));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// The upstream's body; read to its end, it puts its connection back in the pool.
struct PooledBody {
    body: Incoming,
    lease: Option<(SendRequest<Incoming>, Idle)>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((sender, idle)) = self.lease.take() {
            lock(&idle).push(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
