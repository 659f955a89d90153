//! The upstream keep-alive race (DESIGN.md §14): an upstream closes an idle keep-alive
//! connection just as doorman sends the next request on it (Node closes idle sockets after
//! 5 s). An idempotent request without a body is sent once more on a new connection, as
//! nginx's `proxy_next_upstream` does; anything else gets its 502.
//!
//! The upstream here makes the race certain: on every connection it answers the first request
//! (keep-alive) and closes the connection when the second one arrives, unanswered.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::doorman::config;
use support::login::request;
use support::Doorman;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Read one request head (and nothing else: these requests have no body); false at EOF.
async fn read_head(io: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// The racing upstream; counts the connections it accepted.
async fn racing_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut io, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if read_head(&mut io).await {
                    let _ = io
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
                // The next request arrives as the keep-alive timer fires: closed unanswered.
                let _ = read_head(&mut io).await;
            });
        }
    });
    (url, connections)
}

#[tokio::test]
async fn an_idempotent_request_caught_by_the_race_is_sent_again_and_a_post_is_not() {
    let (url, connections) = racing_upstream().await;
    let d = Doorman::start(&config(&url, "", "")).await;
    let first = request(&d.client, "GET", &d.url("/a"), &[], "").await;
    assert_eq!(first.status, 200);
    // Idle a while, as a pooled connection the upstream is about to close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raced = request(&d.client, "GET", &d.url("/b"), &[], "").await;
    assert_eq!(raced.status, 200, "{}", raced.text());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "sent again on a new connection"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let post = request(&d.client, "POST", &d.url("/c"), &[], "").await;
    assert_eq!(
        post.status, 502,
        "a POST the upstream may have seen is never sent twice"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
