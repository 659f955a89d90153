//! Which serving worker runs the caller: the index that per-worker resources (the upstream
//! pools, the Redis store's connections) are picked by.
//!
//! Connections are served on one single-threaded runtime per core (`server::workers` starts
//! them); a request and the resources it uses stay on one thread. This module is only the
//! thread-local index those resources read, kept apart from the server so the layers below it
//! (the stores, the upstream client) need not reach up into the server to ask.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// The index of the worker this thread runs, or 0 off the workers.
    static WORKER: Cell<usize> = const { Cell::new(0) };
    /// Whether this thread is a serving worker at all.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

static COUNT: OnceLock<usize> = OnceLock::new();

/// `Some(index)` on a serving worker, `None` on any other thread (the main runtime, tests
/// serving in-process): for resources kept per worker *and* once for everything else, such as
/// the Redis store's connections.
pub fn on_worker() -> Option<usize> {
    ON_WORKER.with(Cell::get).then(current)
}

/// The index of the worker running the caller (0 on any other thread, so code run outside
/// the workers — tests serving in-process, the main runtime — shares worker 0's resources).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// How many workers a process runs by default: one per core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How many workers this process runs: as fixed by `set_count` when the workers started,
/// else [`default_count`]. The upstream keeps one connection pool per worker.
pub fn count() -> usize {
    COUNT.get().copied().unwrap_or_else(default_count)
}

/// Fix the process's worker count (the first call wins: the pools are sized by it).
pub(crate) fn set_count(count: usize) {
    let _ = COUNT.set(count.max(1));
}

/// Mark the calling thread as serving worker `index`.
pub(crate) fn enter(index: usize) {
    WORKER.with(|w| w.set(index));
    ON_WORKER.with(|w| w.set(true));
}
