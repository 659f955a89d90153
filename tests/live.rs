//! Long-lived connections follow their session (DESIGN.md §11): a WebSocket opened with a
//! session is closed when that session ends — logout, `sessions revoke`, absolute expiry —
//! with a Close frame (1008, `session ended`) between two of the upstream's frames, or, when
//! no frame boundary comes within a second, by dropping the connection. Real sockets: a raw
//! client through doorman to the test upstream's WebSocket echo.

mod support;

use std::time::{Duration, Instant};

use support::login::{post_logout, Conf, ALICE_PW, COOKIE};
use support::raw::{ws_request, RawConn};
use support::Doorman;
use tokio::io::AsyncWriteExt;

/// What doorman sends the browser when the session ended: Close, 1008, "session ended".
const CLOSE: &[u8] = b"\x88\x0f\x03\xf0session ended";

const PATIENCE: Duration = Duration::from_secs(5);

fn conf(session: &str) -> Conf {
    Conf {
        session: session.into(),
        rest: "[[routes]]\npath = \"/ws\"\naccess = \"authenticated\"\n".into(),
        ..Conf::default()
    }
}

/// A WebSocket to the echo upstream through doorman, opened with session `cookie`; checked
/// with one echoed frame.
async fn open(d: &Doorman, cookie: &str) -> RawConn {
    let mut conn = RawConn::connect(d.addr).await;
    let cookie = format!("Cookie: {COOKIE}={cookie}\r\n");
    conn.send(&ws_request("/ws", &cookie)).await;
    let resp = conn.response(PATIENCE).await.expect("a response");
    assert_eq!(resp.status, 101);
    conn.assert_frame_echoed(b"hello", PATIENCE).await;
    conn
}

/// The tunnel gets the Close and then ends, within `limit` of now.
async fn closed_with_1008(conn: &mut RawConn, limit: Duration) {
    let start = Instant::now();
    assert!(conn.closed_within(limit).await, "the tunnel did not close");
    assert!(start.elapsed() <= limit);
    assert_eq!(conn.pending(), CLOSE, "a Close frame 1008, then nothing");
}

#[tokio::test]
async fn logout_closes_the_sessions_websocket_with_1008() {
    let d = Doorman::conf(&conf("")).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let other = d.log_in("alice", ALICE_PW).await;
    let mut conn = open(&d, &alice).await;
    let mut second = open(&d, &other).await;
    let out = post_logout(&d.client, &d.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    closed_with_1008(&mut conn, Duration::from_millis(1500)).await;
    // Another session of the same user is not this one: its socket goes on.
    assert!(!second.closed_within(Duration::from_millis(300)).await);
    assert!(second.pending().is_empty());
}

#[tokio::test]
async fn revoke_closes_every_websocket_of_the_user() {
    let d = Doorman::conf(&conf("")).start().await;
    let one = d.log_in("alice", ALICE_PW).await;
    let two = d.log_in("alice", ALICE_PW).await;
    let bob = d.log_in("bob", support::login::BOB_PW).await;
    let (mut a, mut b) = (open(&d, &one).await, open(&d, &two).await);
    let mut c = open(&d, &bob).await;
    let (code, out, err) = d.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    closed_with_1008(&mut a, Duration::from_millis(1500)).await;
    closed_with_1008(&mut b, Duration::from_millis(1500)).await;
    assert!(
        !c.closed_within(Duration::from_millis(300)).await,
        "bob's socket goes on"
    );
}

#[tokio::test]
async fn the_absolute_expiry_closes_the_websocket() {
    let d = Doorman::conf(&conf("idle_timeout = \"2s\"\nabsolute_timeout = \"2s\""))
        .start()
        .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut conn = open(&d, &alice).await;
    closed_with_1008(&mut conn, Duration::from_millis(3000)).await;
}

/// The session ends in the middle of an upstream frame that never completes (the rest of it
/// would have to come from the client, whose side stops at once): no boundary comes, so after
/// a second the connection is dropped — never a Close in the middle of a frame.
#[tokio::test]
async fn a_frame_that_never_ends_is_not_torn_by_a_close() {
    let d = Doorman::conf(&conf("")).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut conn = open(&d, &alice).await;
    // Half a frame: the echo sends this half back, and the client never sends the rest.
    let frame = support::ws_frame(&[b'x'; 1000]);
    let half = &frame[..500];
    conn.stream.write_all(half).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = post_logout(&d.client, &d.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    assert!(conn.closed_within(Duration::from_millis(2500)).await);
    assert_eq!(
        conn.pending(),
        half,
        "the half frame, and no Close after it"
    );
}
