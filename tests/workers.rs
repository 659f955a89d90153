//! Thread-per-core serving (`Server::serve` with `Workers`), as `doorman` runs: connections
//! handed to worker runtimes are proxied, h1 and h2, and a graceful shutdown waits for a
//! request in flight on a worker.

mod support;

use std::sync::Arc;
use std::time::Duration;

use doorman::server::Workers;
use support::doorman::config;
use support::{echoed, eventually, get, h1_client, h2_client, send, Doorman, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_served_by_worker_runtimes_are_proxied() {
    let upstream = Upstream::start().await;
    let workers = Arc::new(Workers::start(2).expect("workers"));
    let mut doorman = Doorman::toml(&config(&upstream.url(), "", ""))
        .workers(Arc::clone(&workers))
        .start()
        .await;
    let addr = doorman.addr;

    // Several connections, so both workers get some; h1 and h2 (prior knowledge).
    for round in 0..4 {
        let client = if round % 2 == 0 {
            h1_client()
        } else {
            h2_client()
        };
        for i in 0..5 {
            let url = format!("http://{addr}/w/{round}/{i}?q=1");
            let (status, _, body) = send(&client, get(&url, &[])).await;
            assert_eq!(status, 200);
            let echo = echoed(&body);
            assert_eq!(echo["uri"], format!("/w/{round}/{i}?q=1"), "{echo}");
        }
    }
    let task = doorman.shutdown();
    task.await.expect("server task").expect("server result");
    if let Ok(workers) = Arc::try_unwrap(workers) {
        workers.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_request_in_flight_on_a_worker() {
    let upstream = Upstream::start().await;
    let workers = Arc::new(Workers::start(2).expect("workers"));
    let toml = config(&upstream.url(), "shutdown_grace = \"10s\"", "");
    let mut doorman = Doorman::toml(&toml)
        .workers(Arc::clone(&workers))
        .start()
        .await;
    let addr = doorman.addr;

    // The echo upstream holds this one for a while (see support/upstream.rs: /slow/<ms>).
    let client = h1_client();
    let slow =
        tokio::spawn(
            async move { send(&client, get(&format!("http://{addr}/slow/500"), &[])).await },
        );
    // In flight once the upstream has it.
    let seen = eventually(
        Duration::from_secs(10),
        async || upstream.seen_paths(),
        |paths| paths.iter().any(|p| p == "/slow/500"),
    )
    .await;
    assert!(seen.iter().any(|p| p == "/slow/500"), "{seen:?}");
    let task = doorman.shutdown();
    let (status, _, _) = slow.await.expect("request task");
    assert_eq!(status, 200, "the request in flight finished");
    task.await.expect("server task").expect("server result");
}
