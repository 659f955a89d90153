//! The admin listener (`[admin] addr`): health, readiness and metrics for operators and
//! orchestrators, on its own socket, never on the public one.
//!
//! * `GET /healthz`: `200 ok` while the process serves (liveness: restart me if this fails).
//! * `GET /readyz`: `200 ready` when a config is loaded and the session store answers a ping
//!   (with `[oidc]`, a second line names the provider's state, which does not decide it)
//!   within [`READY_PING`]; otherwise `503` with a one-line reason. It follows the store:
//!   Redis going away flips it to 503, Redis coming back flips it to 200, without a restart.
//! * `GET /metrics`: Prometheus exposition text (`crate::metrics`).
//!
//! Anything else is `404` (`405` for another method on those paths). The listener speaks
//! HTTP/1.1 only, with a header deadline and a cap on concurrent connections: it is meant for a
//! private network, but a stuck scraper must not pile up sockets.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, Instrument};

use crate::accept;
use crate::body::{self, Body};
use crate::gate::Live;
use crate::session::SessionStore;

/// How long `/readyz` waits for the store's answer before calling it not ready.
pub const READY_PING: Duration = Duration::from_millis(500);

/// Admin connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// How long an admin client may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    info!(addr = %listener.local_addr()?, "admin listening");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let Some((stream, peer)) =
            accept::next("admin", || listener.accept(), shutdown.as_mut()).await
        else {
            return Ok(());
        };
        let live = Arc::clone(&live);
        let span = tracing::debug_span!("admin", peer = %peer);
        tokio::spawn(
            async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let live = Arc::clone(&live);
                    async move { Ok::<_, Infallible>(answer(&live, &req).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    debug!(%error, "admin connection ended with an error");
                }
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// The answer to one admin request.
pub async fn answer<B>(live: &Live, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            // The provider's state is named but never decides readiness: an outage at the
            // provider must not take every replica out of the load balancer (DESIGN.md §10).
            let provider = match &live.load().shared.oidc {
                Some(oidc) => format!("oidc provider: {}\n", oidc.provider.status()),
                None => String::new(),
            };
            match readiness(live).await {
                Ok(()) => text(StatusCode::OK, &format!("ready\n{provider}")),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{reason}\n{provider}"),
                ),
            }
        }
        _ => match live.load().shared.metrics.encode() {
            Ok(exposition) => {
                let mut resp = Response::new(body::full(exposition));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                resp
            }
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            ),
        },
    }
}

/// `Ok` when the process can serve protected routes: a config is loaded (there always is one
/// once `server::Server::open` returned) and the session store answers in time.
async fn readiness(live: &Live) -> Result<(), String> {
    let app = live.load_full();
    match tokio::time::timeout(READY_PING, app.shared.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!(
            "not ready: {}",
            error.to_string().replace(['\r', '\n'], " ")
        )),
        Err(_) => Err(format!(
            "not ready: session store did not answer within {}ms",
            READY_PING.as_millis()
        )),
    }
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    body::own_response(status, "text/plain; charset=utf-8", message.to_string())
}
