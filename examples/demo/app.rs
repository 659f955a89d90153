//! The demo upstream: the tutorial's "log in, then see your dashboard" app, rewritten so that it
//! knows nothing about sessions.
//!
//! The tutorial version (Express + express-session + Redis) checks `req.session.userId` on every
//! protected handler. This one does no session work at all: it reads the user name from the
//! `X-Auth-User` request header. That is safe only because of how it is deployed — it listens on
//! loopback, doorman is the only client that can reach it, and doorman removes any `X-Auth-User`
//! a browser sends before setting its own. Exposed directly, anyone could claim to be anyone.
//!
//! Routes:
//! - `GET /`: a public page.
//! - `GET /dashboard`: `200` with the user's name when `X-Auth-User` is present, else `401`.
//! - anything else: `404`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The header the app trusts for the user's name. Doorman's `[identity] user_header` default.
const USER_HEADER: &str = "x-auth-user";

const HOME_PAGE: &str = "<!doctype html>\n<title>Home</title>\n\
<h1>Home — public page</h1>\n\
<p>Anyone can see this page. The <a href=\"/dashboard\">dashboard</a> needs a logged-in user.</p>\n";

/// Serves the app on `listener` until the process ends.
///
/// One task per connection, HTTP/1.1 only: doorman talks HTTP/1.1 to its upstream, like most
/// reverse proxies, so this is all an app behind it needs.
pub async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Usually EMFILE: wait for connections to close instead of spinning.
                eprintln!("demo app: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            if let Err(error) = http1::Builder::new()
                .serve_connection(io, service_fn(handle))
                .await
            {
                eprintln!("demo app: connection error: {error}");
            }
        });
    }
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => html(StatusCode::OK, HOME_PAGE.to_owned()),
        (&Method::GET, "/dashboard") => dashboard(&request),
        _ => text(StatusCode::NOT_FOUND, "Not found\n"),
    };
    Ok(response)
}

/// The tutorial's protected page. Where the tutorial asked its session store "who is this?",
/// this app reads the answer doorman already put in the request.
fn dashboard(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let user = request
        .headers()
        .get(USER_HEADER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .filter(|user| !user.is_empty());
    match user {
        Some(user) => html(
            StatusCode::OK,
            format!(
                "<!doctype html>\n<title>Dashboard</title>\n<h1>Welcome, user {}</h1>\n",
                escape_html(&user)
            ),
        ),
        None => text(StatusCode::UNAUTHORIZED, "Unauthorized — please log in\n"),
    }
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/html; charset=utf-8", Bytes::from(body))
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Escapes text for an HTML element body or a quoted attribute. The header is trusted to name the
/// user, not to be markup: a user name like `<script>` must show as text.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
