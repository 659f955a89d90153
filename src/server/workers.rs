//! Thread-per-core serving: one single-threaded tokio runtime per core, each running the
//! connections the accept loop hands it.
//!
//! On tokio's multi-threaded runtime a proxied request crossed threads several times: the
//! client connection's task, the pooled upstream connection's task (spawned by hyper's client
//! wherever the pool happened to create it) and back, each hop a cross-thread wake-up (a futex
//! and a context switch). Profiles showed those wake-ups as the largest single cost after the
//! TCP work itself. Here a connection lives on one worker for its whole life, and so do the
//! upstream connections it uses: each worker has its own upstream pool
//! (the upstream client picks the pool of the worker it runs on, by
//! [`crate::worker::current`]), and the pool spawns their tasks on the current (that same) runtime. That is
//! nginx's worker model; the accept loop, signals, reload, admin and store upkeep stay on the
//! main runtime.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The blocking-thread ceiling of the whole process, shared by the workers (tokio's default for
/// one runtime).
const BLOCKING_THREADS: usize = 512;

/// The worker runtimes. Dropping it (or [`Workers::shutdown`]) stops them.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    /// Connections this worker serves now, to hand the next one to the least busy.
    load: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A connection counted on its worker until dropped.
pub struct Assigned {
    load: Arc<AtomicUsize>,
}

impl Drop for Assigned {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Start `count` (at least one) worker threads, each with its own single-threaded runtime.
    pub fn start(count: usize) -> io::Result<Workers> {
        crate::worker::set_count(count);
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("doorman-worker-{index}"))
                // Each runtime has its own blocking pool (embedded store transactions, Argon2,
                // DNS): share tokio's usual ceiling of 512 threads between the workers rather
                // than give each worker 512 when a disk stalls.
                .max_blocking_threads((BLOCKING_THREADS / count.max(1)).max(8))
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("doorman-worker-{index}"))
                .spawn(move || {
                    crate::worker::enter(index);
                    // Runs the tasks spawned onto `handle` until told to stop (or the sender is
                    // dropped); dropping the runtime then cancels what is left.
                    let _ = runtime.block_on(stopped);
                })?;
            workers.push(Worker {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The least busy worker for a new connection, counted as serving it while the returned
    /// guard lives.
    pub(super) fn assign(&self) -> Option<(&Handle, Assigned)> {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))?;
        worker.load.fetch_add(1, Ordering::Relaxed);
        let assigned = Assigned {
            load: Arc::clone(&worker.load),
        };
        Some((&worker.handle, assigned))
    }

    /// Stop every worker and wait for its thread. Tasks still running on them are dropped.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_all();
    }
}
