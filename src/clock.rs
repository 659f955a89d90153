//! The time that session and login decisions are made against, as one handle.
//!
//! Everything that asks "has this session expired", "is this attempt inside the failure
//! window" or "may the cache still be trusted" reads a [`Clock`] rather than the system
//! clock directly. A process has one, made at start-up and handed to the stores and the
//! request state; in production it is the system clock. A test (or a drill) holds a clone and
//! moves it forward with [`Clock::advance`] instead of sleeping until an idle timeout passes:
//! the system clock keeps running underneath, so timers, network timeouts and everything else
//! behave as usual, and only the decisions see the jump.
//!
//! Connection deadlines (`server::deadlines`) and upstream timeouts stay on tokio's timers: they
//! are about real waiting, not about what a stored timestamp means.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A clock handle: the system clock, plus however far it was advanced. Clones share one
/// advance.
#[derive(Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system clock (0 unless advanced).
    ahead: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Unix time now, in milliseconds.
    pub fn now_millis(&self) -> u64 {
        system_millis().saturating_add(self.ahead.load(Ordering::Relaxed))
    }

    /// A monotonic instant now (for durations measured within this process).
    pub fn instant(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.ahead.load(Ordering::Relaxed))
    }

    /// Move this clock, and every clone of it, forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead.fetch_add(by, Ordering::Relaxed);
    }
}

/// Unix time now on the system clock, in milliseconds (0 before 1970).
pub fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("ahead_ms", &self.ahead.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone_and_nothing_else() {
        let clock = Clock::system();
        let other = Clock::system();
        let clone = clock.clone();
        let before = clock.now_millis();
        let started = clock.instant();
        clone.advance(Duration::from_secs(3600));
        assert!(clock.now_millis() >= before + 3_600_000);
        assert!(clock.instant() >= started + Duration::from_secs(3600));
        assert!(other.now_millis() < before + 3_600_000);
    }
}
