//! Long-lived exchanges that follow their session (DESIGN.md §11): the registry of open
//! WebSocket tunnels by session, so a session's end reaches the connections it opened and not
//! only its next request.
//!
//! A tunnel registers when its `101` is relayed (ordinary requests never touch the registry)
//! and deregisters when it closes (dropping its [`Registration`]). Ending a session —
//! [`Registry::end_session`] on logout, [`Registry::end_user`] on `sessions revoke` through the
//! control socket — tells every registration of it why, through a `watch` channel each tunnel
//! waits on beside its copying. The absolute expiry is each tunnel's own timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::SessionKey;
use crate::lock::lock;

/// Why a long-lived exchange was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session was logged out.
    Logout,
    /// `sessions revoke` ended the user's sessions.
    Revoked,
    /// The session reached its absolute expiry.
    Expired,
}

impl Ended {
    /// The reason as logs and metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Logout => "logout",
            Ended::Revoked => "revoked",
            Ended::Expired => "expired",
        }
    }
}

struct Watcher {
    id: u64,
    user: String,
    tell: watch::Sender<Option<Ended>>,
}

/// The open long-lived exchanges, by session. One per process, kept across reloads.
#[derive(Default)]
pub struct Registry {
    open: Mutex<HashMap<SessionKey, Vec<Watcher>>>,
    next: AtomicU64,
}

impl Registry {
    /// Follow one exchange of the session `key` (of `user`) until the registration is dropped.
    pub fn register(self: &Arc<Self>, key: SessionKey, user: &str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tell, ended) = watch::channel(None);
        lock(&self.open).entry(key).or_default().push(Watcher {
            id,
            user: user.to_string(),
            tell,
        });
        Registration {
            registry: Arc::clone(self),
            key,
            id,
            ended,
        }
    }

    /// End every exchange of the session `key`; how many there were.
    pub fn end_session(&self, key: &SessionKey, why: Ended) -> usize {
        let ended = lock(&self.open).remove(key).unwrap_or_default();
        for w in &ended {
            let _ = w.tell.send(Some(why));
        }
        ended.len()
    }

    /// End every exchange of every session of `user`; how many there were.
    pub fn end_user(&self, user: &str, why: Ended) -> usize {
        let mut open = lock(&self.open);
        let mut count = 0;
        open.retain(|_, watchers| {
            watchers.retain(|w| {
                if w.user != user {
                    return true;
                }
                let _ = w.tell.send(Some(why));
                count += 1;
                false
            });
            !watchers.is_empty()
        });
        count
    }

    /// How many exchanges are open.
    pub fn open(&self) -> usize {
        lock(&self.open).values().map(Vec::len).sum()
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

/// The session a request is forwarded for, borrowed from the exchange: a tunnel it opens
/// registers with it (only then: ordinary requests pay nothing).
#[derive(Clone, Copy)]
pub struct Ticket<'a> {
    /// The store's registry.
    pub registry: &'a Arc<Registry>,
    /// The session.
    pub key: &'a SessionKey,
    /// Its user.
    pub user: &'a str,
    /// Its absolute expiry, Unix milliseconds.
    pub absolute_expiry: u64,
    /// The process's clock, read only when a tunnel opens.
    pub clock: &'a crate::clock::Clock,
}

/// One registered exchange; dropping it deregisters.
pub struct Registration {
    registry: Arc<Registry>,
    key: SessionKey,
    id: u64,
    ended: watch::Receiver<Option<Ended>>,
}

impl Registration {
    /// Resolves when the session ends (never, if the registry is dropped first).
    pub async fn ended(&mut self) -> Ended {
        loop {
            if let Some(why) = *self.ended.borrow_and_update() {
                return why;
            }
            if self.ended.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ending_reaches_exactly_the_sessions_exchanges() {
        let registry = Arc::new(Registry::default());
        let (a, b) = (SessionKey([1; 32]), SessionKey([2; 32]));
        let mut a1 = registry.register(a, "alice");
        let mut a2 = registry.register(a, "alice");
        let b1 = registry.register(b, "bob");
        assert_eq!(registry.open(), 3);
        assert_eq!(registry.end_session(&a, Ended::Logout), 2);
        assert_eq!(a1.ended().await, Ended::Logout);
        assert_eq!(a2.ended().await, Ended::Logout);
        assert_eq!(registry.open(), 1);
        drop((a1, a2));
        assert_eq!(registry.open(), 1);
        drop(b1);
        assert_eq!(registry.open(), 0);
    }

    #[tokio::test]
    async fn revoking_a_user_ends_all_their_sessions_and_no_one_elses() {
        let registry = Arc::new(Registry::default());
        let mut a = registry.register(SessionKey([1; 32]), "alice");
        let mut a2 = registry.register(SessionKey([3; 32]), "alice");
        let mut b = registry.register(SessionKey([2; 32]), "bob");
        assert_eq!(registry.end_user("alice", Ended::Revoked), 2);
        assert_eq!(a.ended().await, Ended::Revoked);
        assert_eq!(a2.ended().await, Ended::Revoked);
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), b.ended()).await;
        assert!(still.is_err(), "bob's exchange goes on");
        assert_eq!(registry.open(), 1);
    }
}
