//! Run with: cargo run --example demo
//!
//! Starts the tutorial's app (see `app.rs`) on `127.0.0.1:3000` and doorman in front of it, in one
//! process, configured by `proxy.toml` at the crate root. Then open the URL it prints:
//! `/` is public; `/dashboard` is the page the app protects by reading `X-Auth-User`.
//!
//! The app is an unmodified upstream: it is bound here only so that one command runs the demo.
//! Set `RUST_LOG` (e.g. `RUST_LOG=debug`) for more of doorman's logs; Ctrl-C stops both.

mod app;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

/// Where the demo app listens. Must match `[upstream] url` in `proxy.toml`.
const APP_ADDR: &str = "127.0.0.1:3000";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // rustls needs a process-wide crypto provider; Err only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _log = doorman::logging::init(doorman::logging::LogFormat::Text)?;

    let config_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let config = doorman::config::Config::load(&config_path)
        .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;

    let app_listener = TcpListener::bind(APP_ADDR)
        .await
        .with_context(|| format!("binding the demo app on {APP_ADDR}"))?;
    tokio::spawn(app::serve(app_listener));

    let proxy_addr = config.listen.addr;
    let listener = TcpListener::bind(proxy_addr)
        .await
        .with_context(|| format!("binding doorman on {proxy_addr}"))?;

    println!("demo app (upstream, not for browsers): http://{APP_ADDR}/");
    println!(
        "doorman: open http://{proxy_addr}/ and http://{proxy_addr}/dashboard  (Ctrl-C stops)"
    );

    let listeners = doorman::server::Listeners {
        main: listener,
        redirect: None,
    };
    doorman::server::Server::open(Arc::new(config))
        .context("opening the session store")?
        .serve(listeners, None, shutdown_signal())
        .await
        .context("running doorman")?;
    Ok(())
}

/// Resolves on Ctrl-C. If the handler cannot be installed, never resolves: the demo keeps running
/// rather than shutting down at once.
async fn shutdown_signal() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot listen for Ctrl-C ({error}); stop the demo with kill");
        std::future::pending::<()>().await;
    }
}
