//! The re-check of sessions with open long-lived exchanges (DESIGN.md §11).
//!
//! One task per process looks up, in batches of [`BATCH`] (one store round trip each: see
//! `Store::recheck`), the sessions the store's `session::live` registry names, and ends the
//! exchanges of those that are gone (logged out or revoked through another instance, idle
//! past their timeout) or that the config in service no longer lets through (the user removed
//! from the users file, a route tightened). It runs:
//!
//! * every `[session] recheck` (at most a quarter of `idle_timeout`): how a logout on another
//!   instance reaches this one without the Redis cache, and how an open WebSocket counts as
//!   activity — the lookup slides the session's idle clock like a request would;
//! * at once (after [`SETTLE`], to gather a burst into one batch) for the sessions the
//!   registry was told are suspect: the Redis cache's invalidations, and every session after a
//!   reload.
//!
//! A store that cannot answer ends nothing: the exchanges were let through by a store that
//! could, and the next request on any of their sessions fails closed anyway. They are
//! re-checked when it answers again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::gate::Live;
use crate::session::live::{Ended, Registry};
use crate::session::SessionKey;

/// Sessions looked up per round trip.
pub const BATCH: usize = 256;

/// How long suspects are gathered before their batch goes out.
pub const SETTLE: Duration = Duration::from_millis(20);

/// Run the re-check until the task is aborted.
pub async fn run(live: Live) {
    let registry = Arc::clone(live.load().shared.store.live());
    let mut next_full = Instant::now() + every(&live);
    loop {
        let keys = tokio::select! {
            () = tokio::time::sleep_until(next_full) => {
                next_full = Instant::now() + every(&live);
                // Suspects are part of "everything": forget them.
                let _ = registry.take_suspects();
                registry.sessions()
            }
            () = registry.suspected() => {
                tokio::time::sleep(SETTLE).await;
                registry.take_suspects()
            }
        };
        if !keys.is_empty() {
            check(&live, &registry, &keys).await;
        }
    }
}

/// The interval of full re-checks: `recheck`, but often enough that an open exchange keeps
/// its session from idling out.
fn every(live: &Live) -> Duration {
    let session = &live.load().shared.config.session;
    session
        .recheck
        .min(session.timeouts.idle / 4)
        .max(Duration::from_millis(100))
}

/// Look `keys` up in batches and end what may no longer go on.
async fn check(live: &Live, registry: &Registry, keys: &[SessionKey]) {
    for batch in keys.chunks(BATCH) {
        // The config in service now: a reload between two batches applies to the next.
        let app = live.load_full();
        let shared = &app.shared;
        let records = match shared.store.recheck(batch, shared.clock.now_millis()).await {
            Ok(records) => records,
            Err(error) => {
                warn!(%error, sessions = batch.len(), "long-lived exchanges not re-checked: the session store did not answer");
                continue;
            }
        };
        for (key, record) in batch.iter().zip(records) {
            let Some(record) = record else {
                let ended = registry.end_session(key, Ended::Gone);
                debug!(session = %key.tag(), ended, "session gone: its long-lived exchanges ended");
                continue;
            };
            for watched in registry.watched(key) {
                if let Err(why) = crate::access::still_allowed(shared, &record, &watched.scope) {
                    registry.end_one(key, watched.id, why);
                }
            }
        }
    }
}
