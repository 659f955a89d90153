//! Fill a session store with N sessions, for `benches/scale.sh` (throughput with 1,000 vs
//! 1,000,000 sessions in the store, issue 7).
//!
//! Run with:
//!
//! ```sh
//! cargo run --release --features bench-seed --example bench-seed -- \
//!     embedded --path sessions.db --count 1000000
//! cargo run --release --features bench-seed --example bench-seed -- \
//!     redis --prefix doorman: --count 1000000 | redis-cli -p 6379 --pipe
//! cargo run --release --features bench-seed --example bench-seed -- \
//!     cookie --index 7   # seeded session 7's cookie
//! ```
//!
//! The `bench-seed` feature turns on [`EmbeddedStore::insert_many`], which the library leaves
//! out of its default build.
//!
//! * `embedded` writes every record in one transaction with
//!   [`EmbeddedStore::insert_many`], the store's own tables and encoding (no doorman may hold
//!   the file meanwhile).
//! * `redis` writes, on stdout, the Redis protocol stream of one `HSET` (the record's fields as
//!   the Redis store's codec writes them, [`hash_fields`], under its key schema's record key)
//!   and one `PEXPIRE` (the TTL the store would set) per session, for `redis-cli --pipe`.
//!
//! Sessions are deterministic: session `i`'s id is `SHA-256("doorman-bench-seed/" + i)`, so
//! `cookie --index i` can print a cookie for it and the harness can check that doorman accepts
//! a seeded session, i.e. that the layout written here is the one doorman reads. Users are
//! `seed-{i % users}` with origin `handoff`, which is not tied to a users file; every session
//! is fresh (created now, the default `idle_timeout` and `absolute_timeout` unless given).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::{Parser, Subcommand};
use doorman::config::parse_duration;
use doorman::session::embedded::EmbeddedStore;
use doorman::session::redis::hash_fields;
use doorman::session::{now_millis, Origin, Record, SessionId, SessionKey, Timeouts};

#[derive(Parser)]
#[command(about = "Fill a doorman session store with N sessions, for benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write N sessions into an embedded store file (created if missing).
    Embedded {
        #[arg(long)]
        path: PathBuf,
        #[command(flatten)]
        seed: Seed,
    },
    /// Print the Redis protocol stream that writes N sessions, for `redis-cli --pipe`.
    Redis {
        /// `[session] key_prefix` of the doorman that will read them.
        #[arg(long)]
        prefix: String,
        #[command(flatten)]
        seed: Seed,
    },
    /// Print the cookie value of seeded session INDEX.
    Cookie {
        #[arg(long)]
        index: u64,
    },
}

#[derive(clap::Args)]
struct Seed {
    #[arg(long)]
    count: u64,
    /// Distinct users the sessions are spread over.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// `[session] idle_timeout` of the doorman that will read them.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    idle: Duration,
    /// `[session] absolute_timeout` of the doorman that will read them.
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    absolute: Duration,
}

impl Seed {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle,
            absolute: self.absolute,
        }
    }

    /// Session `i`'s key and record, created at `now`.
    fn session(&self, i: u64, now: u64, t: &Timeouts) -> anyhow::Result<(SessionKey, Record)> {
        let key = seeded_id(i)?.key();
        let user = format!("seed-{}", i % self.users.max(1));
        Ok((key, Record::new(user, vec![], Origin::Handoff, now, t)))
    }
}

fn seeded_id(i: u64) -> anyhow::Result<SessionId> {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("doorman-bench-seed/{i}").as_bytes(),
    );
    SessionId::parse(&URL_SAFE_NO_PAD.encode(digest.as_ref()))
        .ok_or_else(|| anyhow!("a 32-byte digest is not a session id"))
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    match Cli::parse().command {
        Command::Cookie { index } => println!("{}", seeded_id(index)?.to_cookie_value()),
        Command::Embedded { path, seed } => {
            let t = seed.timeouts();
            let now = now_millis();
            // Sorted by key, the B-tree is filled in order: several times faster than random.
            let mut sessions = (0..seed.count)
                .map(|i| seed.session(i, now, &t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            sessions.sort_unstable_by_key(|(key, _)| key.0);
            let store = EmbeddedStore::open(&path, t)
                .with_context(|| format!("open {}", path.display()))?;
            let n = store.insert_many(sessions)?;
            eprintln!(
                "bench-seed: {n} sessions written to {} in {:.1} s",
                path.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Command::Redis { prefix, seed } => {
            let t = seed.timeouts();
            let now = now_millis();
            let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            for i in 0..seed.count {
                let (key, r) = seed.session(i, now, &t)?;
                let record_key = format!("{prefix}s:{}", key.hex());
                let ttl = r.ttl(now, &t).as_millis().max(1).to_string();
                let fields = hash_fields(&r);
                let mut hset = vec!["HSET", record_key.as_str()];
                for (name, value) in &fields {
                    hset.extend([*name, value.as_str()]);
                }
                command(&mut out, &hset)?;
                command(&mut out, &["PEXPIRE", &record_key, &ttl])?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// One command in the Redis protocol (an array of bulk strings).
fn command(out: &mut impl Write, args: &[&str]) -> io::Result<()> {
    write!(out, "*{}\r\n", args.len())?;
    for a in args {
        write!(out, "${}\r\n{a}\r\n", a.len())?;
    }
    Ok(())
}
