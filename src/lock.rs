//! The one way doorman takes a `std::sync::Mutex`.
//!
//! A lock is poisoned when a thread panicked while holding it. Everything doorman guards with a
//! std mutex (connection clocks, connection counts, pools, caches, queues) is plain data whose
//! updates are single statements, or whose readers tolerate any state an interrupted update can
//! leave; none of it needs to be thrown away. So a poisoned lock is taken as it is, instead of
//! turning one panic into a panic on every later request (no `unwrap` on a request path).
//! A mutex whose data could be left half-updated must not use this.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, recovering it if a panic poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
