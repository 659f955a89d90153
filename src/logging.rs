//! `tracing` set-up: a `RUST_LOG`-style filter (default `info`) and text or JSON lines.
//!
//! Request logs are events on the `doorman::access` target inside a per-connection span, so a
//! filter such as `RUST_LOG=info,doorman::access=off` silences them without losing errors.
//!
//! Lines are formatted on the thread that logs them and written to stderr by one background
//! thread through a buffer that is flushed whenever the queue runs empty: under load many lines
//! share one `write(2)`, and no request thread ever blocks on the log's file descriptor. The
//! queue is lossless (a full queue makes loggers wait rather than drop lines), and the
//! [`LogGuard`] flushes what is left when doorman exits.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Keeps the log writer thread alive; dropping it flushes every line logged so far.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Install the global subscriber. Fails only if one is already installed.
pub fn init(format: LogFormat) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: escape codes in a file or journald break grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result
        .map_err(|e| anyhow::anyhow!(e))
        .context("installing the log subscriber")?;
    Ok(LogGuard(guard))
}
