//! Raw-socket helpers for framing tests: exact bytes in, whatever comes back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Write `bytes` and read until the peer closes or `wait` passes with nothing new; returns what
/// was read and whether the peer closed the connection.
pub async fn exchange(stream: &mut TcpStream, bytes: &[u8], wait: Duration) -> (String, bool) {
    stream.write_all(bytes).await.expect("write");
    read_for(stream, wait).await
}

/// Read until the peer closes, or until `wait` passes without a byte.
pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// How many HTTP responses (status lines) a raw read contains.
pub fn count_responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}
