//! Long-lived exchanges that follow their session (DESIGN.md §11): the registry of open
//! WebSocket tunnels and streaming responses by session, so a session's end reaches the
//! connections it opened and not only its next request.
//!
//! An exchange registers when it becomes long-lived (a `101` relayed, an event stream, a
//! response still streaming after `recheck / 2`; ordinary requests never touch the registry)
//! and deregisters when it closes (dropping its [`Registration`]). It is ended three ways:
//!
//! * **Here, at once**: the store ends a session's exchanges when it deletes the session
//!   ([`Registry::end_session`]: logout, a login that replaces it) and a user's when it
//!   revokes them ([`Registry::end_user`]: `sessions revoke`, through the embedded store's
//!   control socket or this process's store).
//! * **By a re-check** of the store: the `follow` task (serve layer) looks up the sessions
//!   this registry names, in batches, and ends those that are gone or whose user the route no
//!   longer lets through. It runs every `recheck`, at once for the sessions marked
//!   [`suspect`](Registry::suspect) (the Redis cache's invalidation pushes mark the sessions
//!   another instance changed: a logout on any replica arrives within milliseconds), and for
//!   all of them after a reload ([`suspect_all`](Registry::suspect_all)).
//! * **By its own timer** at the session's absolute expiry.
//!
//! An exchange waits for its end with [`Registration::ended`] (or polls it, for a body):
//! one small lock and a waker, no channel, so ten thousand idle sockets cost little.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use http::Method;
use tokio::sync::Notify;

use super::SessionKey;
use crate::lock::lock;
use crate::metrics::{EndedLabel, LiveStats};
use crate::path::NormalPath;

/// Why a long-lived exchange was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session was logged out here.
    Logout,
    /// `sessions revoke` ended the user's sessions.
    Revoked,
    /// The session reached its absolute expiry.
    Expired,
    /// A re-check found the session gone from the store: logged out or revoked through
    /// another instance, or idle past its timeout.
    Gone,
    /// After a reload the session's user is no longer one (removed from the users file, or
    /// `[oidc]` removed).
    UserRemoved,
    /// After a reload the exchange's route no longer lets the user through.
    Forbidden,
}

impl Ended {
    /// The reason as logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Logout => "logout",
            Ended::Revoked => "revoked",
            Ended::Expired => "expired",
            Ended::Gone => "gone",
            Ended::UserRemoved => "user_removed",
            Ended::Forbidden => "forbidden",
        }
    }
}

/// What a long-lived exchange asked for, kept so a re-check after a reload can judge it again
/// against the new routes: the same method, host (normalised, when routes match on hosts) and
/// normalised path the gate matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The request's method.
    pub method: Method,
    /// The host routes were matched against, when any route names hosts.
    pub host: Option<String>,
    /// The normalised path.
    pub path: String,
}

/// The end of one exchange, told once: the reason and who to wake.
#[derive(Default)]
struct Signal {
    state: Mutex<(Option<Ended>, Option<Waker>)>,
}

impl Signal {
    /// Set the reason (the first one wins) and wake the exchange.
    fn tell(&self, why: Ended) -> bool {
        let waker = {
            let mut state = lock(&self.state);
            if state.0.is_some() {
                return false;
            }
            state.0 = Some(why);
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

struct Watcher {
    id: u64,
    user: String,
    scope: Arc<Scope>,
    signal: Arc<Signal>,
}

/// Sessions whose exchanges the `follow` task should re-check soon.
#[derive(Default)]
struct Suspects {
    all: bool,
    keys: HashSet<SessionKey>,
}

/// One registered exchange, as the `follow` task sees it.
pub struct Watched {
    /// The registration's id (to end exactly it).
    pub id: u64,
    /// What it asked for.
    pub scope: Arc<Scope>,
}

/// The open long-lived exchanges, by session. One per store (so one per process), kept across
/// reloads.
#[derive(Default)]
pub struct Registry {
    open: Mutex<HashMap<SessionKey, Vec<Watcher>>>,
    next: AtomicU64,
    suspects: Mutex<Suspects>,
    wake: Notify,
    stats: LiveStats,
}

impl Registry {
    /// Follow one exchange of the session `key` (of `user`, asking for `scope`) until the
    /// registration is dropped.
    pub fn register(self: &Arc<Self>, key: SessionKey, user: &str, scope: Scope) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(Signal::default());
        lock(&self.open).entry(key).or_default().push(Watcher {
            id,
            user: user.to_string(),
            scope: Arc::new(scope),
            signal: Arc::clone(&signal),
        });
        self.stats.open.inc();
        Registration {
            registry: Arc::clone(self),
            key,
            id,
            signal,
        }
    }

    /// End every exchange of the session `key`; how many there were.
    pub fn end_session(&self, key: &SessionKey, why: Ended) -> usize {
        let ended = lock(&self.open).remove(key).unwrap_or_default();
        self.told(ended.iter().filter(|w| w.signal.tell(why)).count(), why)
    }

    /// End every exchange of every session of `user`; how many there were.
    pub fn end_user(&self, user: &str, why: Ended) -> usize {
        let mut count = 0;
        lock(&self.open).retain(|_, watchers| {
            watchers.retain(|w| {
                if w.user != user {
                    return true;
                }
                count += usize::from(w.signal.tell(why));
                false
            });
            !watchers.is_empty()
        });
        self.told(count, why)
    }

    /// End the one exchange `id` of the session `key`; whether it was still open.
    pub fn end_one(&self, key: &SessionKey, id: u64, why: Ended) -> bool {
        let mut open = lock(&self.open);
        let Some(watchers) = open.get_mut(key) else {
            return false;
        };
        let Some(at) = watchers.iter().position(|w| w.id == id) else {
            return false;
        };
        let watcher = watchers.swap_remove(at);
        if watchers.is_empty() {
            open.remove(key);
        }
        drop(open);
        let told = watcher.signal.tell(why);
        self.told(usize::from(told), why) == 1
    }

    fn told(&self, count: usize, why: Ended) -> usize {
        if count > 0 {
            self.stats
                .ended
                .get_or_create(&EndedLabel {
                    reason: why.as_str(),
                })
                .inc_by(count as u64);
        }
        count
    }

    /// How many exchanges are open.
    pub fn open(&self) -> usize {
        lock(&self.open).values().map(Vec::len).sum()
    }

    /// The sessions with open exchanges.
    pub fn sessions(&self) -> Vec<SessionKey> {
        lock(&self.open).keys().copied().collect()
    }

    /// The open exchanges of the session `key`, with what each asked for.
    pub fn watched(&self, key: &SessionKey) -> Vec<Watched> {
        lock(&self.open)
            .get(key)
            .map(|watchers| {
                watchers
                    .iter()
                    .map(|w| Watched {
                        id: w.id,
                        scope: Arc::clone(&w.scope),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Something changed the session `key` in the store (another instance's write, heard
    /// through the Redis cache's tracking): re-check it soon, if it has exchanges here.
    /// Cheap for every other key: one lock and a hash lookup.
    pub fn suspect(&self, key: &SessionKey) {
        if !lock(&self.open).contains_key(key) {
            return;
        }
        lock(&self.suspects).keys.insert(*key);
        self.wake.notify_one();
    }

    /// Re-check every session soon: after a reload, or when the store's changes may have
    /// been missed (the cache's tracking connection was lost, the data flushed).
    pub fn suspect_all(&self) {
        lock(&self.suspects).all = true;
        self.wake.notify_one();
    }

    /// Resolves when some session was marked suspect since the last [`take_suspects`]
    /// (at most one waiter: the `follow` task).
    ///
    /// [`take_suspects`]: Registry::take_suspects
    pub async fn suspected(&self) {
        self.wake.notified().await;
    }

    /// The sessions marked suspect, cleared: every session when all were.
    pub fn take_suspects(&self) -> Vec<SessionKey> {
        let suspects = std::mem::take(&mut *lock(&self.suspects));
        if suspects.all {
            self.sessions()
        } else {
            suspects.keys.into_iter().collect()
        }
    }

    /// The figures `/metrics` exports.
    pub fn stats(&self) -> &LiveStats {
        &self.stats
    }

    fn remove(&self, key: &SessionKey, id: u64) {
        let mut open = lock(&self.open);
        if let Some(watchers) = open.get_mut(key) {
            watchers.retain(|w| w.id != id);
            if watchers.is_empty() {
                open.remove(key);
            }
        }
    }
}

/// The session a request is forwarded for, borrowed from the exchange: a tunnel or stream it
/// opens registers with it, through [`Ticket::to_owned`] (only then, or for a response still
/// coming: ordinary requests pay nothing).
#[derive(Clone, Copy)]
pub struct Ticket<'a> {
    /// The store's registry.
    pub registry: &'a Arc<Registry>,
    /// The session.
    pub key: &'a SessionKey,
    /// Its user: the identity's shared name.
    pub user: &'a Arc<str>,
    /// Its absolute expiry, Unix milliseconds.
    pub absolute_expiry: u64,
    /// The process's clock, read only when an exchange registers.
    pub clock: &'a crate::clock::Clock,
    /// The request's method.
    pub method: &'a Method,
    /// The host the routes matched, when they match on hosts.
    pub host: Option<&'a str>,
    /// The normalised path.
    pub path: &'a NormalPath,
    /// `[session] recheck`: a response still streaming after half of it is long-lived.
    pub recheck: std::time::Duration,
}

impl Ticket<'_> {
    /// What an exchange keeps of the ticket to register later (a response that turns out to
    /// stream): owned, since the ticket borrows from the request. Every response of a session
    /// that is still coming makes one, so it shares rather than copies: the user's name and
    /// the path are reference counts (a rewritten path, rare, is copied), and only a host
    /// (with routes that match on hosts) is allocated. The registration's own parts are made
    /// only if it registers.
    pub fn to_owned(&self) -> OwnedTicket {
        OwnedTicket {
            registry: Arc::clone(self.registry),
            key: *self.key,
            absolute_expiry: self.absolute_expiry,
            clock: self.clock.clone(),
            method: self.method.clone(),
            user: Arc::clone(self.user),
            path: self.path.clone(),
            host: self.host.map(Box::from),
        }
    }
}

/// A [`Ticket`] an exchange holds on to (see [`Ticket::to_owned`]).
pub struct OwnedTicket {
    registry: Arc<Registry>,
    key: SessionKey,
    absolute_expiry: u64,
    clock: crate::clock::Clock,
    method: Method,
    user: Arc<str>,
    path: NormalPath,
    host: Option<Box<str>>,
}

impl OwnedTicket {
    /// The session's user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Register the exchange now.
    pub fn register(self) -> Registration {
        let scope = Scope {
            method: self.method,
            host: self.host.map(String::from),
            path: self.path.to_string(),
        };
        self.registry.register(self.key, &self.user, scope)
    }

    /// Time left until the session's absolute expiry.
    pub fn expires_in(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.absolute_expiry.saturating_sub(self.clock.now_millis()),
        )
    }
}

/// One registered exchange; dropping it deregisters.
pub struct Registration {
    registry: Arc<Registry>,
    key: SessionKey,
    id: u64,
    signal: Arc<Signal>,
}

impl Registration {
    /// Resolves when the session ends (never, if the registry is dropped first).
    pub async fn ended(&mut self) -> Ended {
        poll_fn(|cx| self.poll_ended(cx)).await
    }

    /// [`ended`](Registration::ended) as a poll, for a body that follows its session.
    pub fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        let mut state = lock(&self.signal.state);
        match state.0 {
            Some(why) => Poll::Ready(why),
            None => {
                match &mut state.1 {
                    Some(waker) => waker.clone_from(cx.waker()),
                    none => *none = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Count this exchange as ended for `why` by its own doing (its session's absolute
    /// expiry, seen by its timer): the registry ended the others.
    pub fn expired(&self) {
        if self.signal.tell(Ended::Expired) {
            self.registry.told(1, Ended::Expired);
        }
    }

    /// The session's tag, for the audit line.
    pub fn session_tag(&self) -> String {
        self.key.tag()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.key, self.id);
        self.registry.stats.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            method: Method::GET,
            host: None,
            path: "/ws".into(),
        }
    }

    #[tokio::test]
    async fn ending_reaches_exactly_the_sessions_exchanges() {
        let registry = Arc::new(Registry::default());
        let (a, b) = (SessionKey([1; 32]), SessionKey([2; 32]));
        let mut a1 = registry.register(a, "alice", scope());
        let mut a2 = registry.register(a, "alice", scope());
        let b1 = registry.register(b, "bob", scope());
        assert_eq!(registry.open(), 3);
        assert_eq!(registry.stats().open.get(), 3);
        assert_eq!(registry.end_session(&a, Ended::Logout), 2);
        assert_eq!(a1.ended().await, Ended::Logout);
        assert_eq!(a2.ended().await, Ended::Logout);
        assert_eq!(registry.open(), 1);
        drop((a1, a2));
        assert_eq!(registry.open(), 1);
        drop(b1);
        assert_eq!(registry.open(), 0);
        assert_eq!(registry.stats().open.get(), 0);
        let logout = EndedLabel { reason: "logout" };
        assert_eq!(registry.stats().ended.get_or_create(&logout).get(), 2);
    }

    #[tokio::test]
    async fn revoking_a_user_ends_all_their_sessions_and_no_one_elses() {
        let registry = Arc::new(Registry::default());
        let mut a = registry.register(SessionKey([1; 32]), "alice", scope());
        let mut a2 = registry.register(SessionKey([3; 32]), "alice", scope());
        let mut b = registry.register(SessionKey([2; 32]), "bob", scope());
        assert_eq!(registry.end_user("alice", Ended::Revoked), 2);
        assert_eq!(a.ended().await, Ended::Revoked);
        assert_eq!(a2.ended().await, Ended::Revoked);
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), b.ended()).await;
        assert!(still.is_err(), "bob's exchange goes on");
        assert_eq!(registry.open(), 1);
    }

    #[tokio::test]
    async fn one_exchange_can_be_ended_alone_and_only_once() {
        let registry = Arc::new(Registry::default());
        let key = SessionKey([4; 32]);
        let mut one = registry.register(key, "alice", scope());
        let mut other = registry.register(key, "alice", scope());
        let id = registry.watched(&key)[0].id;
        assert!(registry.end_one(&key, id, Ended::Forbidden));
        assert!(
            !registry.end_one(&key, id, Ended::Forbidden),
            "already ended"
        );
        assert_eq!(one.ended().await, Ended::Forbidden);
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), other.ended()).await;
        assert!(still.is_err());
        assert_eq!(registry.watched(&key).len(), 1);
    }

    #[test]
    fn only_sessions_with_exchanges_become_suspects() {
        let registry = Arc::new(Registry::default());
        let (a, b) = (SessionKey([5; 32]), SessionKey([6; 32]));
        let _a = registry.register(a, "alice", scope());
        registry.suspect(&b);
        assert!(registry.take_suspects().is_empty());
        registry.suspect(&a);
        assert_eq!(registry.take_suspects(), vec![a]);
        assert!(registry.take_suspects().is_empty(), "taken once");
        registry.suspect_all();
        assert_eq!(registry.take_suspects(), vec![a]);
    }
}
