//! Give freed memory back to the operating system once the process goes quiet.
//!
//! glibc's allocator keeps what a thread frees for that thread's later allocations: each worker
//! thread has its own arena, which grows to what the busiest moment needed and stays resident
//! after. Idle connections free most of their memory when they rest (`deadlines`: hyper's
//! state and its buffers), but what they free stays in the arenas until trimmed; with 10,000
//! held connections resting alone took RSS from 12.7 to 11.7 KiB per connection, resting and
//! trimming to 5.2 (`benches/scale.sh --parts idle`). `malloc_trim(0)` releases every free page
//! of every arena.
//!
//! Trimming walks the arenas with their locks held, so it must not run while requests are being
//! served. The quiet signal costs nothing on the request path: once a second this task reads
//! the process's CPU time, and trims when the last second used less than [`QUIET`] of a core,
//! and since the last trim either the process did at least [`WORTH`] of work or [`RESTS`]
//! connections rested (read from `doorman_connection_rests_total`), so that an idle process is
//! not trimmed over and over. A process that never goes quiet keeps its high-water mark, as any
//! allocator does. Other C libraries (musl) return
//! memory on their own; there this task does nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// How often the task looks.
const EVERY: Duration = Duration::from_secs(1);

/// CPU time over the last [`EVERY`] below which the process counts as quiet (2 % of a core).
/// Idle connections cost some (each looks at its deadline every 10 s, or every second until it
/// rests); 10,000 resting ones stay well below it (`benches/scale.sh` sees them trimmed).
const QUIET: Duration = Duration::from_millis(20);

/// CPU time spent since the last trim that makes a new one worth doing: enough work to have
/// grown the arenas (about a thousand requests).
const WORTH: Duration = Duration::from_millis(50);

/// Connections that rested since the last trim that make a new one worth doing (each freed
/// about 16 KiB).
const RESTS: u64 = 64;

/// Run forever (the caller aborts it at shutdown). `metrics` counts the rests.
pub async fn run(metrics: Arc<Metrics>) {
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = cpu_time();
    let mut since_trim = Duration::ZERO;
    let mut rests_at_trim = metrics.connection_rests();
    loop {
        interval.tick().await;
        let now = cpu_time();
        let used = now.saturating_sub(last);
        last = now;
        since_trim += used;
        let rests = metrics.connection_rests();
        if used < QUIET && (since_trim >= WORTH || rests.saturating_sub(rests_at_trim) >= RESTS) {
            rests_at_trim = rests;
            // On the blocking pool: it holds the arenas' locks for some milliseconds, which
            // must not stall the runtime that accepts connections.
            let _ = tokio::task::spawn_blocking(trim).await;
            // The trim's own CPU time is not work that grew the arenas.
            last = cpu_time();
            since_trim = Duration::ZERO;
        }
    }
}

/// User and system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` through a valid pointer and reads nothing from it.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (zeroed before, in any case).
    let usage = unsafe { usage.assume_init() };
    let of = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under their locks.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "quiet: returned free memory to the system"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_moves_forward_with_work() {
        let before = cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_time() > before, "{x}");
    }

    #[test]
    fn trimming_is_safe_to_call() {
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(freed);
        trim();
    }
}
