//! Login throttling: how many password checks one client may have per window.
//!
//! Two counters in the session store (so replicas share them, and they expire with
//! `failure_window`): per user and client, at most `max_failures`; and per client across user
//! names, at most [`CLIENT_FAILURE_FACTOR`] × `max_failures`, so one client cannot spray
//! guesses over many names.
//!
//! * **Counted before the check.** An attempt is counted with one atomic store operation
//!   ([`SessionStore::hit`], which increments and returns the count) *before* its password is
//!   checked, and checked only if the count it got is within the limit. Every attempt gets its
//!   own count, so however many arrive at once, on one doorman or several, at most the limit
//!   are ever checked per window; the rest get 429, whatever their password.
//! * **One at a time per user and client.** In this process, attempts for one user and client
//!   also wait for each other ([`Throttle::admit`] holds a per-key async lock until the attempt
//!   is settled), so a burst is answered in order: the first `max_failures` checked, the rest
//!   refused. The lock map holds an entry only while someone holds or waits for it.
//! * **What the counts mean.** Both count failures (plus the attempts being checked right now).
//!   A success [`resets`](SessionStore::reset) the user+client counter (the user proved the
//!   password) and takes its own attempt back from the per-client counter
//!   ([`SessionStore::unhit`]), without clearing it: logging in to one's own account must not
//!   wipe a spray over other names. An attempt that was counted but never checked (every
//!   hashing thread busy) is taken back from both. An attempt refused by the per-client limit
//!   is taken back from its user+client counter (nothing was checked); one refused by the
//!   user+client limit stays counted there, which changes nothing: that counter is already over
//!   its limit, and hits never move its window.
//! * **Fail closed.** A store error ends the attempt (503) before any password is checked; a
//!   password is never checked without its count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

use crate::session::{SessionStore, Store, StoreError};

/// Per client, failures across all user names allowed per window, as a multiple of
/// `max_failures`.
pub const CLIENT_FAILURE_FACTOR: u64 = 4;

/// The limits, and the per-key locks that serialise attempts for one user and client.
#[derive(Default)]
pub struct Throttle {
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Whether an attempt may have its password checked.
pub enum Admission<'a> {
    /// Counted and within both limits: check the password, then settle the attempt.
    Go(Attempt<'a>),
    /// Over a limit: 429, no check.
    Throttled,
}

/// A counted attempt, holding its user+client turn until it is settled or dropped. Dropped
/// without [`succeeded`](Attempt::succeeded) or [`unchecked`](Attempt::unchecked), it stays
/// counted as a failure (a wrong password, or a client that hung up mid-check).
pub struct Attempt<'a> {
    store: &'a Store,
    pair: String,
    per_client: String,
    _turn: Turn<'a>,
}

impl Throttle {
    /// Count an attempt by `username` from `client` (after waiting for that pair's earlier
    /// attempts to settle) and decide whether its password may be checked.
    pub async fn admit<'a>(
        &'a self,
        store: &'a Store,
        username: &str,
        client: IpAddr,
        max_failures: u64,
        window: Duration,
    ) -> Result<Admission<'a>, StoreError> {
        let (pair, per_client) = counter_names(username, client);
        let turn = self.turn(&pair).await;
        if store.hit(&pair, window).await? > max_failures {
            return Ok(Admission::Throttled);
        }
        let client_limit = max_failures.saturating_mul(CLIENT_FAILURE_FACTOR);
        if store.hit(&per_client, window).await? > client_limit {
            store.unhit(&pair).await?;
            return Ok(Admission::Throttled);
        }
        Ok(Admission::Go(Attempt {
            store,
            pair,
            per_client,
            _turn: turn,
        }))
    }

    /// Wait for, and take, the lock of `key`.
    async fn turn(&self, key: &str) -> Turn<'_> {
        let lock = Arc::clone(self.map().entry(key.to_owned()).or_default());
        // Made before the wait, so a login cancelled while waiting still cleans up.
        let ticket = Ticket {
            throttle: self,
            key: key.to_owned(),
            lock: Some(Arc::clone(&lock)),
        };
        let held = lock.lock_owned().await;
        Turn {
            _held: held,
            _ticket: ticket,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // Recovered: the map is consistent after every statement that changes it.
        crate::lock::lock(&self.turns)
    }

    /// How many keys have a lock right now (the map must not grow without bound).
    #[cfg(test)]
    fn locks_in_use(&self) -> usize {
        self.map().len()
    }
}

impl Attempt<'_> {
    /// The password was right: clear the user+client failures and take this attempt back from
    /// the per-client count.
    pub async fn succeeded(self) -> Result<(), StoreError> {
        self.store.reset(&self.pair).await?;
        self.store.unhit(&self.per_client).await
    }

    /// The password was never checked (no hashing thread in time): take the attempt back from
    /// both counters. Best effort: the answer is a 503 anyway, and a count left behind errs on
    /// the safe side.
    pub async fn unchecked(self) {
        let _ = self.store.unhit(&self.pair).await;
        let _ = self.store.unhit(&self.per_client).await;
    }
}

/// The lock of one key, held. Field order matters: the guard (and its reference to the lock)
/// goes first, then the ticket checks whether anyone else still needs the entry.
struct Turn<'a> {
    _held: OwnedMutexGuard<()>,
    _ticket: Ticket<'a>,
}

/// A claim on one key's entry in the lock map, held while waiting and while holding the lock.
struct Ticket<'a> {
    throttle: &'a Throttle,
    key: String,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for Ticket<'_> {
    /// Remove the entry when the map holds the only reference left. Every reference is taken
    /// under the map's lock and this check runs under it too, after this claim's own references
    /// are gone, so the last claim to leave removes the entry and no one can be handed a lock
    /// that was just removed.
    fn drop(&mut self) {
        let mut map = self.throttle.map();
        drop(self.lock.take());
        if map
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Counter names for one attempt: per user and client, and per client. Hashed, so names and
/// addresses of any length make fixed-size keys.
///
/// A client is [`crate::config::client_group`]: an IPv6 /64 counts as one client, or a
/// client could rotate through its prefix's addresses to get fresh attempts.
fn counter_names(username: &str, client: IpAddr) -> (String, String) {
    let ip = crate::config::client_group(client).to_string();
    let pair = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{username}\0{ip}").as_bytes(),
    );
    let pair = crate::encoding::hex_lower(&pair.as_ref()[..16]);
    (format!("login:{pair}"), format!("login-client:{ip}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_for_one_key_take_turns_and_the_map_empties() {
        let throttle = Arc::new(Throttle::default());
        let first = throttle.turn("a").await;
        let waiting = {
            let throttle = Arc::clone(&throttle);
            tokio::spawn(async move {
                let _turn = throttle.turn("a").await;
            })
        };
        let other = throttle.turn("b").await; // another key does not wait
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the second attempt did not wait");
        assert_eq!(throttle.locks_in_use(), 2);
        drop(first);
        waiting.await.unwrap();
        drop(other);
        assert_eq!(throttle.locks_in_use(), 0);

        // A waiter that gives up (client gone) leaves nothing behind either.
        let held = throttle.turn("c").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), throttle.turn("c")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(throttle.locks_in_use(), 0);
    }
}
