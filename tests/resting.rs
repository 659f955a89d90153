//! Idle HTTP/1 connections rest: about a second after its last response, a keep-alive
//! connection's hyper state (and its buffers) is put away and the connection waits on the bare
//! socket; its next request gets a new one (`server::deadlines`, `server::trim`). What must
//! hold is that nothing a client sends is lost or misread across a rest: the next request, a
//! pipelined request that had only half arrived, TLS, and a request body still arriving after
//! its response. `doorman_connection_rests_total` says a rest did happen.
//!
//! Timing bounds are generous on purpose: they tell "rested" from "never rested".

mod support;

use std::time::Duration;

use support::doorman::config;
use support::raw::{get_request, RawConn};
use support::tls::{tls_connect, tls_doorman};
use support::{echoed, eventually, h1_client, Doorman, Upstream};

/// Longer than anything here takes.
const PATIENCE: Duration = Duration::from_secs(6);

async fn doorman(upstream: &Upstream) -> Doorman {
    Doorman::toml(&config(&upstream.url(), "", ""))
        .admin()
        .start()
        .await
}

async fn rests(doorman: &Doorman) -> f64 {
    doorman
        .metrics(&h1_client())
        .await
        .get("doorman_connection_rests_total", &[])
}

/// A rest is due one to two seconds after the last response (`REST_AFTER`, and the clock
/// looking once a second); four is generous, and still tells a rest from one that waited for
/// the ten-second tick of a connection that cannot rest.
const REST_WITHIN: Duration = Duration::from_secs(4);

/// Wait until doorman counts more than `before` rests.
async fn rested(doorman: &Doorman, before: f64) {
    let now = eventually(REST_WITHIN, || rests(doorman), |&n| n > before).await;
    assert!(now > before, "no connection rested within {REST_WITHIN:?}");
}

fn echoed_uri(body: &[u8]) -> String {
    let echo = echoed(&bytes::Bytes::copy_from_slice(body));
    echo["uri"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_rested_connection_serves_its_next_requests() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream).await;
    let mut conn = RawConn::connect(doorman.addr).await;
    for round in 0..2 {
        let before = rests(&doorman).await;
        let path = format!("/round/{round}");
        conn.send(&get_request(&path)).await;
        let resp = conn.response(PATIENCE).await.expect("a response");
        assert_eq!(resp.status, 200);
        assert_eq!(echoed_uri(&resp.body), path);
        rested(&doorman, before).await;
    }
    conn.send(&get_request("/after")).await;
    let resp = conn
        .response(PATIENCE)
        .await
        .expect("a response after two rests");
    assert_eq!(echoed_uri(&resp.body), "/after");
}

/// The second request's first half arrives with the first request: it sits in hyper's read
/// buffer when the connection rests, and must be read again, in order, before the rest of it.
#[tokio::test]
async fn half_a_pipelined_request_survives_the_rest() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream).await;
    let before = rests(&doorman).await;
    let mut conn = RawConn::connect(doorman.addr).await;
    let mut first = get_request("/first");
    first.extend_from_slice(b"GET /sec");
    conn.send(&first).await;
    let resp = conn.response(PATIENCE).await.expect("the first response");
    assert_eq!(echoed_uri(&resp.body), "/first");
    rested(&doorman, before).await;
    conn.send(b"ond HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let resp = conn.response(PATIENCE).await.expect("the second response");
    assert_eq!(resp.status, 200);
    assert_eq!(echoed_uri(&resp.body), "/second");
}

/// The upstream answers before the request body is in (a `204` that never reads it), so the
/// connection is idle by doorman's clock while hyper may still be reading the body. A
/// connection whose last request had a body never rests (`ConnClock`), and today this answer
/// also carries `Connection: close`; either way the body's remaining bytes must never be read
/// as the next request. Here they are a request of their own: never answered as one.
#[tokio::test]
async fn a_body_still_arriving_after_its_response_is_never_read_as_a_request() {
    let upstream = Upstream::start().await;
    let doorman = doorman(&upstream).await;
    let smuggled = get_request("/smuggled");
    let head = format!(
        "POST /status/204 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        2 + smuggled.len()
    );
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(head.as_bytes()).await;
    conn.send(b"ab").await;
    let resp = conn
        .response(PATIENCE)
        .await
        .expect("the upstream's early answer");
    assert_eq!(resp.status, 204);
    // Past the moment the connection would rest.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send(&smuggled).await;
    if let Some(resp) = conn.response(Duration::from_secs(2)).await {
        assert!(
            resp.status != 200 || echoed_uri(&resp.body) != "/smuggled",
            "the rest of a body was answered as a request"
        );
    }
}

#[tokio::test]
async fn over_tls_a_rested_connection_serves_its_next_request() {
    let upstream = Upstream::start().await;
    let (doorman, tls) = tls_doorman(&upstream, "").await;
    let mut conn = RawConn::over(tls_connect(doorman.addr, &tls).await);
    conn.send(&get_request("/one")).await;
    let first = conn.response(PATIENCE).await.expect("the first response");
    assert_eq!(first.status, 200);
    // Rested by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    conn.send(&get_request("/two")).await;
    let second = conn.response(PATIENCE).await.expect("the second response");
    assert_eq!(second.status, 200);
    assert_eq!(echoed_uri(&second.body), "/two");
}

/// A resting connection still ends at `idle_timeout`, counted from its last response.
#[tokio::test]
async fn a_resting_connection_still_closes_at_idle_timeout() {
    let upstream = Upstream::start().await;
    let doorman = Doorman::toml(&config(&upstream.url(), "idle_timeout = \"3s\"", ""))
        .admin()
        .start()
        .await;
    let before = rests(&doorman).await;
    let mut conn = RawConn::connect(doorman.addr).await;
    conn.send(&get_request("/x")).await;
    assert!(conn.response(PATIENCE).await.is_some());
    let answered = tokio::time::Instant::now();
    rested(&doorman, before).await;
    assert!(conn.closed_within(PATIENCE).await, "never closed");
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(2500),
        "closed {after:?} after the response, before idle_timeout"
    );
}
