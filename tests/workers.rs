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

/// On a worker, the wait for the upstream's head borrows a timer its worker keeps, and gives it
/// back (`forward::client_body`'s `lend`): reused timers must still time out as new ones do,
/// after quick requests moved them, and after their deadline passed while kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeouts_hold_on_workers_with_timers_lent_again() {
    let upstream = Upstream::start().await;
    let workers = Arc::new(Workers::start(2).expect("workers"));
    let toml = config(&upstream.url(), "", "timeout = \"400ms\"");
    let doorman = Doorman::toml(&toml)
        .workers(Arc::clone(&workers))
        .start()
        .await;
    let addr = doorman.addr;
    let (h1, h2) = (h1_client(), h2_client());
    let timed_out = async |client| {
        let started = std::time::Instant::now();
        let url = format!("http://{addr}/slow/2000");
        let (status, _, _) = send(client, get(&url, &[])).await;
        let took = started.elapsed();
        assert_eq!(status, 504);
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_millis(1900),
            "504 after {took:?}, want about 400ms"
        );
    };
    for round in 0..2 {
        // Quick requests, some side by side: timers lent, moved, given back.
        for client in [&h1, &h2] {
            let mut quick = tokio::task::JoinSet::new();
            for i in 0..10 {
                let (client, url) = (client.clone(), format!("http://{addr}/q/{round}/{i}"));
                quick.spawn(async move { send(&client, get(&url, &[])).await.0 });
            }
            for status in quick.join_all().await {
                assert_eq!(status, 200);
            }
            timed_out(client).await;
            // A request slower than the quick ones but within the timeout is not cut short.
            let (status, _, _) = send(client, get(&format!("http://{addr}/slow/200"), &[])).await;
            assert_eq!(status, 200);
        }
        // Every kept timer's last deadline passes while it rests.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}
