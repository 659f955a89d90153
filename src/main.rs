//! The `doorman` command: run the proxy, check a config, hash a password, revoke sessions, make
//! a signing key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use doorman::clock::Clock;
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
    /// Read a password from standard input; print an Argon2id hash for the users file.
    HashPassword,
    /// Manage stored sessions.
    Sessions {
        #[command(subcommand)]
        action: SessionsCommand,
    },
    /// Signing keys for the identity assertion ([identity] assertion).
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new Ed25519 private key (PKCS#8 PEM, mode 0600); never overwrites a file.
    Generate {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Delete every session of one user from the configured store.
    Revoke {
        /// The user whose sessions end.
        #[arg(long)]
        user: String,
    },
}

/// Exit status for an invalid config, as `doorman check` documents.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything else runs (no thread, no file, no log yet): the process image is replaced.
    let allocator = match cli.command {
        None => tune_allocator(),
        Some(_) => Tuned::NotServing,
    };
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    if let Some(Command::Keys {
        action: KeysCommand::Generate { out },
    }) = &cli.command
    {
        // No config needed: the key is made before the config that names it.
        return generate_key(out);
    }
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::Check) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{}", config.summary());
            ExitCode::SUCCESS
        }
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Keys {
            action: KeysCommand::Generate { out },
        }) => generate_key(&out),
        Some(Command::Sessions {
            action: SessionsCommand::Revoke { user },
        }) => match revoke(&config, &user, cli.log_format) {
            Ok(n) => {
                println!("revoked {n} session(s) of {user}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("doorman: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => match serve(config, cli.log_format, allocator) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("doorman: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `doorman hash-password`: one line from stdin (without its line ending) → a PHC string.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("doorman: reading the password: {e}");
        return ExitCode::FAILURE;
    }
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        eprintln!("doorman: empty password; type it on standard input");
        return ExitCode::from(EXIT_CONFIG);
    }
    match doorman::config::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("doorman: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `doorman keys generate --out F`: a new Ed25519 key, written to a file that did not exist,
/// readable by its owner only from the moment it exists.
fn generate_key(out: &std::path::Path) -> ExitCode {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = match doorman::jws::keys::generate_pem() {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("doorman: {e}");
            return ExitCode::FAILURE;
        }
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out);
    let written = file.and_then(|mut f| {
        let done = f.write_all(pem.as_bytes()).and_then(|()| f.sync_all());
        if done.is_err() {
            // Never leave a half-written key for a config to name.
            let _ = std::fs::remove_file(out);
        }
        done
    });
    match written {
        Ok(()) => {
            println!("wrote a new Ed25519 signing key to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "doorman: {} already exists; not overwriting a key (tokens it signed would stop \
                 verifying). Choose another --out, or remove the file first.",
                out.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("doorman: writing {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// `doorman sessions revoke`: through Redis, or through the running doorman's control socket,
/// or (no doorman running) in the embedded file itself.
fn revoke(config: &Config, user: &str, log_format: LogFormat) -> anyhow::Result<usize> {
    use doorman::config::StoreKind;
    use doorman::control;
    use doorman::session::{embedded, SessionStore};
    // The audit event of a revoke done here (not by a running doorman) goes to stderr.
    let _log = logging::init(log_format)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match &config.session.store {
            StoreKind::Embedded { path } => {
                let socket = control::control_socket_path(path);
                if let Some(n) = control::revoke_via_socket(&socket, user).await? {
                    return Ok(n); // the running doorman wrote the audit event
                }
                let store = embedded::EmbeddedStore::open(path, config.session.timeouts)
                    .with_context(|| format!("opening {}", path.display()))?;
                let n = store.delete_user(user).await?;
                doorman::audit::revoke("cli", user, n);
                Ok(n)
            }
            StoreKind::Redis(_) => {
                let store = doorman::session::open(&config.session, &Clock::system())?;
                // Sessions taken over from an express app end the app's records too (§12).
                let express = match &config.session.express {
                    Some(express) => Some((
                        doorman::session::express::Bridge::new(
                            express,
                            &store,
                            &config.session.key_prefix,
                            config.session.timeouts,
                        )?,
                        store.express_ids(user).await?,
                    )),
                    None => None,
                };
                let n = store.delete_user(user).await?;
                if let Some((bridge, ids)) = express {
                    bridge.forget_all(&ids).await;
                }
                doorman::audit::revoke("cli", user, n);
                Ok(n)
            }
        }
    })
}

fn serve(config: Config, log_format: LogFormat, allocator: Tuned) -> anyhow::Result<()> {
    let _log = logging::init(log_format)?;
    allocator.log();
    // One process-wide crypto provider, chosen explicitly (ring, not aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match doorman::server::raise_open_file_limit(config.listen.max_connections) {
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!(error = %e, "could not raise the open-file limit"),
    }
    // Connections are served on one single-threaded runtime per core (doorman::server::Workers);
    // this one accepts, and runs signals, reload, the admin listener and store upkeep.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let workers =
        doorman::server::Workers::start(worker_count()?).context("starting the worker threads")?;
    let served = runtime.block_on(async {
        // Handlers first: once the port accepts, a supervisor may signal at any time, and
        // SIGHUP's default action would kill the process.
        let shutdown = shutdown_signal()?;
        let hup = doorman::reload::sighup().context("installing the SIGHUP handler")?;
        let main = bind(config.listen.addr).await?;
        let redirect = match config.listen.redirect_http {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let listeners = doorman::server::Listeners { main, redirect };
        let config = Arc::new(config);
        let server = doorman::server::Server::open(Arc::clone(&config))?;
        operations(&config, server.live(), hup).await?;
        server.serve(listeners, Some(&workers), shutdown).await?;
        Ok(())
    });
    workers.shutdown();
    served
}

/// How many freed chunks of each size glibc's allocator keeps per thread for the next `malloc`
/// of that size (its tunable `glibc.malloc.tcache_count`; glibc's default is 7).
///
/// Why: a worker holds every allocation of each request it has in flight (the request, its
/// future, the exchange, the upstream's request), and at 256 connections over two workers that
/// is about 128 requests per worker. Seven cached chunks run dry within one batch of wake-ups,
/// and the rest go through the arena's bins (`_int_malloc`, `_int_free`, `unlink_chunk`).
/// `benches/callgrind.sh` with 256 connections on one worker counts the allocator's share of a
/// public request: 2,840 instructions with glibc's 7, 1,655 with 128 (1,473 at 8 connections,
/// where 7 suffice); 1,024 saved no more.
///
/// 127, not the 128 measured: glibc 2.26–2.28 keep the count in a `char` without checking the
/// tunable, so 128 would wrap and the cache never stop growing, and 2.29 ignores anything above
/// 127. 2.30 and later take up to 65,535.
///
/// What it costs: a thread keeps up to this many free chunks of each of its 64 sizes (up to
/// 1,032 bytes: at most about 4 MiB per thread, if every size were used that deeply) instead of
/// handing them back to its arena, where other sizes could reuse them, and `malloc_trim` cannot
/// release them. `benches/scale.sh` (10,000 idle connections) read 6.6 → 6.9–7.0 KiB per plain
/// connection, 16.7–16.8 → 17.1–17.3 KiB per TLS connection (nginx: 17.3–17.4), and 60 → 81 MiB
/// held after the TLS connections closed, for 128; 7.7 KiB, 18.2 KiB and 122 MiB for 1,024
/// (docs/BENCHMARKS.md, *glibc's per-thread cache*).
const TCACHE_COUNT: u32 = 127;

/// The tunable [`tune_allocator`] adds to `GLIBC_TUNABLES`.
const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count";

/// What [`tune_allocator`] did, told once logging is up.
enum Tuned {
    /// `GLIBC_TUNABLES` names the per-thread cache's size: doorman set it and started again, or
    /// the operator set it, which doorman keeps. What was asked of glibc: a glibc that does not
    /// know the tunable, or caps it, does so silently.
    Requested(std::ffi::OsString),
    /// Starting again with the tunable failed; glibc's default stays.
    Failed(std::io::Error),
    /// Not started again, for the reason given; glibc's default stays.
    Skipped(&'static str),
    /// A subcommand, or not glibc: nothing to tune.
    NotServing,
}

impl Tuned {
    fn log(&self) {
        match self {
            Tuned::Requested(tunables) => {
                info!(glibc_tunables = %tunables.to_string_lossy(), "allocator")
            }
            Tuned::Failed(error) => warn!(
                %error,
                "could not start again with a larger allocator cache (GLIBC_TUNABLES); serving \
                 with glibc's default"
            ),
            Tuned::Skipped(reason) => info!(
                reason,
                "allocator: glibc's default per-thread cache (doorman did not start again)"
            ),
            Tuned::NotServing => {}
        }
    }
}

/// Raise glibc's per-thread cache to [`TCACHE_COUNT`] chunks per size by starting doorman
/// again with `GLIBC_TUNABLES` naming it: glibc reads its tunables once, from the environment
/// the process was started with, and has no call to change this one later. So the first start
/// replaces itself (`execve`) before it has started a thread or opened anything, and the second
/// finds the tunable and goes on. The new image keeps the process id, the arguments (`argv[0]`
/// too), the environment as it was plus the tunable, and its name: the program is the path the
/// process was started by (`AT_EXECFN`, so a symlink's name stays the name in `ps`), not
/// `/proc/self/exe`, whose own name the kernel would make the process's name (`exe`). The
/// signal mask is cleared, as std's `exec` does. An operator who sets `glibc.malloc.tcache_count`
/// keeps their value (7 is glibc's default), and a failed `execve` only costs the speed-up.
///
/// Not started again ([`Tuned::Skipped`]):
/// - in secure-execution mode (file capabilities such as `cap_net_bind_service` for port 443,
///   or set-user-ID): glibc drops this tunable from such a process's environment, so each start
///   would find it missing and start again, forever;
/// - when the kernel did not start doorman as a program of its own (run by naming the dynamic
///   loader, `ld-linux-x86-64.so.2 doorman`, which has no interpreter: `AT_BASE` is 0): the path
///   the process was started by is then the loader's, which would need its own arguments;
/// - when that path no longer names the file running (replaced by an upgrade since the start):
///   starting again would start another version.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() -> Tuned {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the process; no pointers in.
    let (secure, interpreter, execfn) = unsafe {
        (
            libc::getauxval(libc::AT_SECURE),
            libc::getauxval(libc::AT_BASE),
            libc::getauxval(libc::AT_EXECFN),
        )
    };
    if secure != 0 {
        return Tuned::Skipped(
            "secure-execution mode (file capabilities or set-user-ID): glibc ignores \
             GLIBC_TUNABLES there",
        );
    }
    let current = std::env::var_os("GLIBC_TUNABLES");
    let Some(tunables) = with_tcache_count(current.as_deref()) else {
        return current.map_or(Tuned::NotServing, Tuned::Requested);
    };
    if interpreter == 0 || execfn == 0 {
        return Tuned::Skipped("started through the dynamic loader, or linked statically");
    }
    // SAFETY: AT_EXECFN is the address of the NUL-terminated path the process was started by,
    // which the kernel put on the process's stack, above everything that is ever freed.
    let started = unsafe { std::ffi::CStr::from_ptr(execfn as *const std::ffi::c_char) };
    let started = std::ffi::OsStr::from_bytes(started.to_bytes());
    // A bare name would make `exec` search PATH; it was relative to this directory.
    let program = if started.as_bytes().contains(&b'/') {
        std::path::PathBuf::from(started)
    } else {
        std::path::Path::new(".").join(started)
    };
    // The running file, by the path `/proc/self/exe` reads (ending in " (deleted)" once the file
    // was replaced), not by a `stat` of the link itself, which valgrind does not redirect.
    let running = std::env::current_exe().and_then(std::fs::metadata);
    let same_file = match (std::fs::metadata(&program), running) {
        (Ok(named), Ok(running)) => named.dev() == running.dev() && named.ino() == running.ino(),
        _ => false,
    };
    if !same_file {
        return Tuned::Skipped("the program file changed since doorman started");
    }
    // Not through `Command::env`, which would rebuild the environment from what std can read of
    // it; `setenv` changes this one entry of the environment `exec` then passes on as it is.
    // Sound here: no other thread exists yet to read the environment.
    std::env::set_var("GLIBC_TUNABLES", tunables);
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // Returns only if the process could not be replaced.
    Tuned::Failed(command.args(args).exec())
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() -> Tuned {
    Tuned::NotServing
}

/// `GLIBC_TUNABLES` (`current`) with [`TCACHE_TUNABLE`] added, or `None` when it already names
/// it. Tunables are `name=value` pairs joined by `:`.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn with_tcache_count(current: Option<&std::ffi::OsStr>) -> Option<std::ffi::OsString> {
    let ours = format!("{TCACHE_TUNABLE}={TCACHE_COUNT}");
    let current = match current {
        None => return Some(ours.into()),
        Some(current) if current.is_empty() => return Some(ours.into()),
        Some(current) => current,
    };
    // `name=value`: a bare name sets nothing, so it is not the operator's choice.
    let named = current
        .as_encoded_bytes()
        .split(|&b| b == b':')
        .any(|pair| {
            pair.strip_prefix(TCACHE_TUNABLE.as_bytes())
                .is_some_and(|r| r.starts_with(b"="))
        });
    if named {
        return None;
    }
    let mut tunables = current.to_os_string();
    tunables.push(":");
    tunables.push(ours);
    Some(tunables)
}

/// `DOORMAN_WORKERS`: how many threads serve connections (default: one per core). Fewer than
/// cores leaves cores to what shares the machine (the upstream, a load generator).
fn worker_count() -> anyhow::Result<usize> {
    match std::env::var("DOORMAN_WORKERS") {
        Err(std::env::VarError::NotPresent) => Ok(doorman::worker::default_count()),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => anyhow::bail!("DOORMAN_WORKERS={v:?}: expected a whole number of at least 1"),
        },
        Err(e) => anyhow::bail!("DOORMAN_WORKERS: {e}"),
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// The operator's side: the admin listener (when `[admin] addr` is set) and reload on SIGHUP
/// (`hup`, installed before the public port was bound), both on the live state.
async fn operations(
    config: &Config,
    live: &doorman::server::Live,
    hup: tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    if let Some(addr) = config.admin.addr {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener {addr}"))?;
        // It serves until the process exits, after the public listener drained.
        let serving = doorman::admin::serve(admin, Arc::clone(live), std::future::pending());
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                warn!(%error, "admin listener failed");
            }
        });
    }
    let reloader = doorman::reload::Reloader::new(config.file.clone(), Arc::clone(live));
    tokio::spawn(doorman::reload::on_sighup(hup, reloader));
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. (SIGHUP reloads: see [`operations`].)
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
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

    #[test]
    fn the_benchmarks_give_the_floor_the_allocator_setting_doorman_gives_itself() {
        let lib = include_str!("../benches/lib.sh");
        let ours = format!("GLIBC_TUNABLES={TCACHE_TUNABLE}={TCACHE_COUNT}");
        assert!(
            lib.contains(&ours),
            "benches/lib.sh's FLOOR_ENV must be {ours}"
        );
    }

    #[test]
    fn the_cache_tunable_is_added_to_what_the_operator_set_and_never_replaces_theirs() {
        use std::ffi::OsStr;
        let ours = format!("{TCACHE_TUNABLE}={TCACHE_COUNT}");
        assert_eq!(with_tcache_count(None), Some(ours.clone().into()));
        assert_eq!(
            with_tcache_count(Some(OsStr::new(""))),
            Some(ours.clone().into())
        );
        assert_eq!(
            with_tcache_count(Some(OsStr::new("glibc.malloc.arena_max=2"))),
            Some(format!("glibc.malloc.arena_max=2:{ours}").into())
        );
        for theirs in [
            "glibc.malloc.tcache_count=7",
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0",
            "glibc.malloc.tcache_count=",
            ":glibc.malloc.tcache_count=64:",
        ] {
            assert_eq!(
                with_tcache_count(Some(OsStr::new(theirs))),
                None,
                "{theirs}"
            );
        }
        // A bare name sets nothing; a longer name that starts with ours is another tunable.
        assert_eq!(
            with_tcache_count(Some(OsStr::new("glibc.malloc.tcache_count"))),
            Some(format!("glibc.malloc.tcache_count:{ours}").into())
        );
        assert_eq!(
            with_tcache_count(Some(OsStr::new("glibc.malloc.tcache_count_x=1"))),
            Some(format!("glibc.malloc.tcache_count_x=1:{ours}").into())
        );
    }
}
