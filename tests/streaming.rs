//! Bodies stream through doorman: its memory stays bounded however large a body is.
//!
//! These run the real binary so the peak resident memory (`VmHWM`) measured is doorman's
//! alone, not the test's client and upstream.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use support::{echoed, DoormanProcess, Upstream};

/// 512 MiB: eight times the memory bound, so a buffered body cannot go unnoticed.
const BIG: u64 = 512 * 1024 * 1024;

/// Doorman's peak resident memory must stay below this while `BIG` bytes pass through.
const MEMORY_BOUND_KB: u64 = 64 * 1024;

/// A request body of `left` bytes produced on the fly, one shared 64 KiB chunk at a time, so
/// the client never holds more than that in memory.
struct Generated {
    chunk: Bytes,
    left: u64,
}

impl Generated {
    fn new(len: u64) -> Generated {
        Generated {
            chunk: Bytes::from(vec![b'u'; 64 * 1024]),
            left: len,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let take = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= take as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

fn doorman_for(upstream: &Upstream) -> DoormanProcess {
    DoormanProcess::spawn(
        &format!(
            "[listen]\naddr = \"{{addr}}\"\nheader_timeout = \"500ms\"\n\
             [upstream]\nurl = \"{}\"\n[access]\ndefault = \"public\"\n",
            upstream.url()
        ),
        &[],
    )
}

/// Uploads (files, backups, media) can be far larger than doorman's memory. A proxy that
/// buffers a request body before forwarding it can be run out of memory by one client; doorman
/// must pass it on as it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_streams_through_without_being_buffered() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream);
    let client: Client<_, Generated> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(doorman.url("/upload"))
        .body(Generated::new(BIG))
        .expect("request");
    let resp = client.request(req).await.expect("upload through doorman");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let echo = echoed(&body);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], BIG);
    let hwm = doorman.status_kb("VmHWM");
    assert!(
        hwm < MEMORY_BOUND_KB,
        "doorman's peak RSS was {hwm} kB while a {BIG}-byte upload passed through"
    );
}

/// Downloads likewise: a large response is passed to the client as the upstream produces it,
/// never collected first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_streams_through_without_being_buffered() {
    let upstream = Upstream::start().await;
    let doorman = doorman_for(&upstream);
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(
            doorman
                .url(&format!("/download/{BIG}"))
                .parse()
                .expect("uri"),
        )
        .await
        .expect("download through doorman");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("download body");
        if let Some(data) = frame.data_ref() {
            assert!(data.iter().all(|b| *b == b'x'), "corrupted download data");
            received += data.len() as u64;
        }
    }
    assert_eq!(received, BIG);
    let hwm = doorman.status_kb("VmHWM");
    assert!(
        hwm < MEMORY_BOUND_KB,
        "doorman's peak RSS was {hwm} kB while a {BIG}-byte download passed through"
    );
}
