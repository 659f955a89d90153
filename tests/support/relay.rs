//! A TCP relay on a free loopback port that delays every byte by a fixed time in each
//! direction, and can be cut: what is still in flight is dropped, both sides are closed, and no
//! new connection is accepted.
//!
//! On loopback a master's writes reach its replica within microseconds, and the kernel still
//! delivers what a `kill -9`ed process had written, so a test cannot tell a write that waited
//! for its replica from one that did not. Put between a master and its replica, this relay
//! plays a network with latency whose master machine dies with data on the wire: a write
//! acknowledged to the client before the replica had it is lost by [`Relay::cut`], one that
//! waited for the replica's acknowledgement is not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The relay: listening on `127.0.0.1:port`, forwarding to the target port.
pub struct Relay {
    pub port: u16,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Relay {
    /// Relay connections on a free port to `127.0.0.1:target`, each byte held `delay` in each
    /// direction. Runs on the calling runtime.
    pub async fn start(target: u16, delay: Duration) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let registry = Arc::clone(&tasks);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (client_in, client_out) = client.into_split();
                let (server_in, server_out) = server.into_split();
                let mut tasks = registry.lock().unwrap();
                tasks.extend(pipe(client_in, server_out, delay));
                tasks.extend(pipe(server_in, client_out, delay));
            }
        });
        tasks.lock().unwrap().push(acceptor.abort_handle());
        Relay { port, tasks }
    }

    /// Drop everything in flight and close every connection; accept no more.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Carry `from` to `to`, each chunk written `delay` after it was read: a reader task and a
/// writer task joined by a queue, so the delay is a latency, not a throughput limit.
fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) -> [AbortHandle; 2] {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if queue
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    [reader.abort_handle(), writer.abort_handle()]
}
