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

/// Routes for the streams below: the event stream and the drip need a session.
fn stream_conf(session: &str) -> Conf {
    Conf {
        session: session.into(),
        rest: "[[routes]]\npath = \"/ws\"\naccess = \"authenticated\"\n\n\
               [[routes]]\npath = \"/quiet\"\naccess = \"authenticated\"\n\n\
               [[routes]]\npath = \"/drip\"\naccess = \"authenticated\"\n"
            .into(),
        ..Conf::default()
    }
}

/// `GET path` with session `cookie` over a raw HTTP/1.1 connection, read until `want` has
/// arrived (a `200` head, then the body's first bytes; kept as pending).
async fn stream(d: &Doorman, path: &str, cookie: &str, want: &[u8]) -> RawConn {
    let mut conn = RawConn::connect(d.addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nCookie: {COOKIE}={cookie}\r\n\r\n");
    conn.send(req.as_bytes()).await;
    let start = Instant::now();
    while !conn.pending().windows(want.len()).any(|w| w == want) {
        assert!(start.elapsed() < PATIENCE, "no {want:?} in the body");
        assert!(!conn.closed_within(Duration::from_millis(100)).await);
    }
    assert!(
        conn.pending().starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(conn.pending())
    );
    conn
}

/// The upstream's connections all closed within `limit` (its side of an ended exchange).
async fn upstream_closed(d: &Doorman, limit: Duration) {
    use std::sync::atomic::Ordering;
    let up = d.upstream();
    let start = Instant::now();
    while up.closed.load(Ordering::SeqCst) < up.connections.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < limit,
            "the upstream connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logout_ends_an_event_stream_over_http1_and_closes_its_upstream_connection() {
    let d = Doorman::conf(&stream_conf("")).admin().start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut conn = stream(&d, "/quiet/60000", &alice, b"data: first").await;
    let open = d.metrics(&d.client).await;
    assert_eq!(open.get("doorman_long_lived_open", &[]), 1.0);
    let out = post_logout(&d.client, &d.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    assert!(
        conn.closed_within(Duration::from_millis(1500)).await,
        "the stream's connection was not closed"
    );
    upstream_closed(&d, Duration::from_secs(2)).await;
    let after = d.metrics(&d.client).await;
    assert_eq!(after.get("doorman_long_lived_open", &[]), 0.0);
    assert_eq!(
        after.get("doorman_long_lived_ended_total", &[("reason", "logout")]),
        1.0
    );
}

/// A response that is not an event stream but still streams after `recheck / 2` follows its
/// session too.
#[tokio::test]
async fn a_response_still_streaming_after_half_the_recheck_follows_its_session() {
    let d = Doorman::conf(&stream_conf("recheck = \"1s\""))
        .start()
        .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut conn = stream(&d, "/drip/50", &alice, b"tick\n").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, out, err) = d.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(conn.closed_within(Duration::from_millis(1500)).await);
}

/// Over HTTP/2 the stream is reset with CANCEL; the connection and its other streams go on.
#[tokio::test]
async fn over_h2_logout_resets_the_event_stream_with_cancel() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let d = Doorman::conf(&stream_conf("")).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let bob = d.log_in("bob", support::login::BOB_PW).await;
    let tcp = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let get = |cookie: &str| {
        http::Request::get(format!("http://{}/quiet/60000", d.addr))
            .header("cookie", format!("{COOKIE}={cookie}"))
            .body(Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let mut alices = sender
        .send_request(get(&alice))
        .await
        .expect("alice's stream")
        .into_body();
    let mut bobs = sender
        .send_request(get(&bob))
        .await
        .expect("bob's stream")
        .into_body();
    for body in [&mut alices, &mut bobs] {
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(
            first.data_ref().map(|d| &d[..]),
            Some(&b"data: first\n\n"[..])
        );
    }
    let out = post_logout(&d.client, &d.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    let ended = tokio::time::timeout(Duration::from_millis(1500), alices.frame())
        .await
        .expect("alice's stream ended in time");
    let error = match ended {
        Some(Err(error)) => error,
        other => panic!("expected a reset, got {other:?}"),
    };
    let reason = std::error::Error::source(&error)
        .and_then(|e| e.downcast_ref::<h2::Error>())
        .and_then(h2::Error::reason);
    assert_eq!(reason, Some(h2::Reason::CANCEL), "{error:?}");
    // Bob's stream on the same connection is untouched.
    let still = tokio::time::timeout(Duration::from_millis(300), bobs.frame()).await;
    assert!(still.is_err(), "bob's stream goes on");
}

/// Two doormen on one Redis: a logout through A ends the WebSocket B holds — within `recheck`
/// without the cache, at once with it (its invalidation push names the session).
async fn logout_elsewhere(session: &str, limit: Duration) {
    let a = Doorman::conf(&conf(session))
        .store(support::login::StoreChoice::Redis)
        .start()
        .await;
    let b = Doorman::conf(&conf(session))
        .backend(a.backend().clone())
        .start()
        .await;
    let alice = a.log_in("alice", ALICE_PW).await;
    let mut conn = open(&b, &alice).await;
    // Let the cache's tracking connection come up first, where there is one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = post_logout(&a.client, &a.base, &alice, &[]).await;
    assert_eq!(out.status, 303);
    closed_with_1008(&mut conn, limit).await;
}

#[tokio::test]
async fn a_logout_on_another_doorman_ends_the_websocket_within_recheck() {
    logout_elsewhere("recheck = \"1s\"", Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn with_the_redis_cache_a_logout_on_another_doorman_ends_the_websocket_at_once() {
    // The default recheck (30 s) could not do it: the invalidation push does.
    logout_elsewhere("cache = true", Duration::from_millis(1000)).await;
}

#[tokio::test]
async fn a_reload_that_removes_the_user_ends_their_websocket_only() {
    let d = Doorman::conf(&conf("")).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let bob = d.log_in("bob", support::login::BOB_PW).await;
    let (mut a, mut b) = (open(&d, &alice).await, open(&d, &bob).await);
    std::fs::write(d.users(), support::login::users_toml_with_alice(None)).expect("users");
    assert!(d.reload().await);
    closed_with_1008(&mut a, Duration::from_millis(1000)).await;
    assert!(
        !b.closed_within(Duration::from_millis(300)).await,
        "bob stays"
    );
}

#[tokio::test]
async fn a_reload_that_tightens_the_route_ends_the_websockets_it_no_longer_admits() {
    let d = Doorman::conf(&conf("")).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let bob = d.log_in("bob", support::login::BOB_PW).await;
    let (mut a, mut b) = (open(&d, &alice).await, open(&d, &bob).await);
    let tighter = Conf {
        rest: "[[routes]]\npath = \"/ws\"\naccess = \"authenticated\"\nusers = [\"bob\"]\n".into(),
        ..Conf::default()
    };
    let toml = tighter.toml(&d.upstream().url(), d.backend(), d.users());
    std::fs::write(&d.file, toml).expect("config");
    assert!(d.reload().await);
    closed_with_1008(&mut a, Duration::from_millis(1000)).await;
    assert!(
        !b.closed_within(Duration::from_millis(300)).await,
        "bob may stay"
    );
}

/// An open WebSocket is activity: its session outlives an idle timeout it spans.
#[tokio::test]
async fn an_open_websocket_keeps_its_session_from_idling_out() {
    let d = Doorman::conf(&Conf {
        rest: format!("{}{}", conf("").rest, support::login::DASHBOARD),
        ..conf("idle_timeout = \"2s\"")
    })
    .start()
    .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let mut conn = open(&d, &alice).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(conn.pending().is_empty() && !conn.closed_within(Duration::from_millis(10)).await);
    assert_eq!(d.get("/dashboard", Some(&alice)).await.status, 200);
}

/// A WebSocket upstream that is not ours (tokio-tungstenite): on every connection it sends
/// 1 MiB binary messages, each in four 256 KiB fragments, until the connection goes.
async fn fragmenting_upstream() -> std::net::SocketAddr {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                use futures_util::SinkExt;
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                for n in 0u8.. {
                    for part in 0..4 {
                        let opcode = if part == 0 {
                            Data::Binary
                        } else {
                            Data::Continue
                        };
                        let payload = vec![n; 256 * 1024];
                        let frame = Frame::message(payload, OpCode::Data(opcode), part == 3);
                        if ws.feed(Message::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The session ends while the upstream streams large fragmented messages: a real WebSocket
/// client through doorman reads whole, well-formed messages and then the Close (1008), never a
/// torn frame (which its parser would refuse).
#[tokio::test]
async fn large_fragmented_frames_are_never_torn_by_the_close() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let upstream = fragmenting_upstream().await;
    let users = support::login::write_users(&support::login::users_toml());
    let toml = conf("").toml(
        &format!("http://{upstream}"),
        &support::login::Backend::embedded(),
        &users,
    );
    let d = Doorman::toml(&toml).start().await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let tcp = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connect");
    let mut req = format!("ws://{}/ws", d.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "cookie",
        format!("{COOKIE}={alice}").parse().expect("cookie"),
    );
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("handshake through doorman");
    assert_eq!(resp.status(), 101);
    let mut whole = 0;
    let mut logged_out = false;
    let close = loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time")
            .expect("the stream goes on to the Close")
            .expect("well-formed frames only");
        match message {
            Message::Binary(data) => {
                assert_eq!(data.len(), 1024 * 1024, "a whole message");
                assert!(data.iter().all(|b| *b == data[0]));
                whole += 1;
            }
            Message::Close(frame) => break frame,
            other => panic!("unexpected {other:?}"),
        }
        if whole == 3 && !logged_out {
            let out = post_logout(&d.client, &d.base, &alice, &[]).await;
            assert_eq!(out.status, 303);
            logged_out = true;
        }
    };
    assert!(logged_out && whole >= 3);
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(close.reason.as_str(), "session ended");
}

/// `sessions revoke` on the command line against Redis reaches a doorman it never talks to:
/// the re-check (without the cache) finds the sessions gone.
#[tokio::test]
async fn a_revoke_on_redis_ends_the_websockets_of_every_doorman_within_recheck() {
    let d = Doorman::conf(&conf("recheck = \"1s\""))
        .store(support::login::StoreChoice::Redis)
        .start()
        .await;
    let alice = d.log_in("alice", ALICE_PW).await;
    let bob = d.log_in("bob", support::login::BOB_PW).await;
    let (mut a, mut b) = (open(&d, &alice).await, open(&d, &bob).await);
    let (code, out, err) = d.revoke("alice").await;
    assert_eq!(code, 0, "{out}{err}");
    closed_with_1008(&mut a, Duration::from_millis(1500)).await;
    assert!(
        !b.closed_within(Duration::from_millis(300)).await,
        "bob stays"
    );
}
