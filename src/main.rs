//! The `doorman` command: run the proxy, or check a config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorman::config::Config;
use doorman::logging::{self, LogFormat};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

/// A session-aware reverse proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "proxy.toml",
        env = "DOORMAN_CONFIG"
    )]
    config: PathBuf,
    /// How log lines are written (filter with RUST_LOG, default "info").
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and print a one-line summary (exit 0), or every error found (exit 2).
    Check,
}

/// Exit status for an invalid config, as `doorman check` documents.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::Check) => {
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        None => match serve(config, cli.log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("doorman: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config: Config, log_format: LogFormat) -> anyhow::Result<()> {
    logging::init(log_format)?;
    // One process-wide crypto provider, chosen explicitly (ring, not aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match doorman::server::raise_open_file_limit(config.listen.max_connections) {
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!(error = %e, "could not raise the open-file limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Handlers first: once the port accepts, a supervisor may signal at any time, and
        // SIGHUP's default action would kill the process.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(config.listen.addr)
            .await
            .with_context(|| format!("binding {}", config.listen.addr))?;
        doorman::server::run(listener, Arc::new(config), shutdown).await?;
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT. SIGHUP is caught here too so that it never kills doorman
/// (its default action); what it reloads grows with later work, and for now it is logged.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM received"); return; }
                _ = int.recv() => { info!("SIGINT received"); return; }
                _ = hup.recv() => {
                    warn!("SIGHUP received: live reload is not implemented yet; restart doorman to apply config changes");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
