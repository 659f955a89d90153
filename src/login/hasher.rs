//! Password checks on a fixed pool of threads, each reusing its own Argon2 memory.
//!
//! Argon2id is memory-hard: one check of a default hash fills 19 MiB. Run on tokio's blocking
//! pool, a burst of logins spread over up to 512 short-lived threads, each with its own malloc
//! arena and a fresh block per check, and glibc keeps what it once handed out: resident memory
//! grew by gigabytes and never came back. So checks run here instead:
//!
//! * **A fixed pool.** One thread per core ([`std::thread::available_parallelism`]); more would
//!   only time-share the cores and multiply the memory.
//! * **One block per thread, reused.** Each thread allocates its Argon2 memory on its first
//!   check and keeps it ([`Argon2::hash_password_into_with_memory`]), so the process holds at
//!   most `threads × m_cost` for hashing, whatever the load. A hash whose `m_cost` is larger
//!   (a users file reloaded with stronger parameters) grows that thread's block to fit; the
//!   users file bounds it. The block is zeroed after each check: its first blocks are derived
//!   from the password cheaply, so a core dump or swapped page must not keep them.
//! * **Admission with a deadline.** One slot per thread; a check waits at most `wait`
//!   (the login's `HASH_WAIT`) for one, then fails with [`HashError::Busy`] (503 with
//!   `Retry-After`). The slot travels with the job and is released by the thread when the work
//!   is done, so a client that hangs up cannot queue more work behind the threads' backs.
//! * **No hang on a dead thread.** A thread that panics drops the job's reply, so its caller
//!   gets [`HashError::Failed`] at once, and a replacement thread is started. If no thread is
//!   left at all, the queue is closed and every check fails at once.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{error, warn};

/// Why a password could not be checked (never "wrong password": that is `Ok(false)`).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every thread stayed busy for the whole wait.
    #[error("every password-hashing thread stayed busy")]
    Busy,
    /// The thread checking it died, or no thread is left.
    #[error("the password-hashing thread failed")]
    Failed,
}

/// The pool: a queue of jobs, the threads taking them, and the slots that bound the queue.
pub struct Hasher {
    /// One permit per thread: a job is queued only with one, so the queue never outgrows the
    /// threads.
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    wait: Duration,
}

/// One check, with the slot it holds and where its answer goes.
struct Job {
    work: Work,
    reply: oneshot::Sender<bool>,
    _slot: OwnedSemaphorePermit,
}

enum Work {
    /// Check `password` against the PHC string `hash`.
    Verify { hash: String, password: String },
    /// Kill the thread that takes it (tests of the dead-thread path).
    #[cfg(test)]
    Panic,
}

/// The receiving end the threads share (one `recv` at a time; the work runs unlocked).
type Queue = Arc<Mutex<mpsc::Receiver<Job>>>;

impl Hasher {
    /// A pool of one thread per core, waiting at most `wait` for a free one.
    pub fn per_core(wait: Duration) -> Hasher {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher::new(cores, wait)
    }

    /// A pool of `threads` threads. A thread that cannot be started is logged and left out: with
    /// none, every check fails (503) and the rest of doorman works.
    pub fn new(threads: usize, wait: Duration) -> Hasher {
        let (jobs, queue) = mpsc::channel();
        let queue: Queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for _ in 0..threads {
            match start_thread(Arc::clone(&queue)) {
                Ok(()) => started += 1,
                Err(e) => error!(error = %e, "cannot start a password-hashing thread"),
            }
        }
        let slots = Arc::new(Semaphore::new(started));
        if started == 0 {
            slots.close(); // nobody will ever free a slot: fail at once rather than after `wait`
        }
        Hasher { slots, jobs, wait }
    }

    /// Whether `password` matches the Argon2 PHC string `hash`. An unparsable hash matches
    /// nothing.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, HashError> {
        self.run(Work::Verify { hash, password }).await
    }

    async fn run(&self, work: Work) -> Result<bool, HashError> {
        let slot = tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Failed)?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                work,
                reply,
                _slot: slot,
            })
            .map_err(|_| HashError::Failed)?;
        answer.await.map_err(|_| HashError::Failed)
    }
}

fn start_thread(queue: Queue) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("doorman-hash".into())
        .spawn(move || work(queue))
        .map(drop)
}

/// A thread's life: take a job, check it in this thread's memory, answer; until the pool is
/// dropped.
fn work(queue: Queue) {
    let _respawn = Respawn(Arc::clone(&queue));
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for a job, never while hashing.
        let job = lock(&queue).recv();
        let Ok(job) = job else {
            return; // the pool is gone
        };
        if job.reply.is_closed() {
            continue; // the login gave up (client gone): nobody reads the answer
        }
        let ok = match job.work {
            Work::Verify { hash, password } => check(&mut memory, &hash, &password),
            #[cfg(test)]
            Work::Panic => panic!("hashing thread killed by a test"),
        };
        let _ = job.reply.send(ok);
    }
}

/// Starts a replacement when its thread unwinds, so a panic costs one check, not a core.
struct Respawn(Queue);

impl Drop for Respawn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            warn!("a password-hashing thread panicked; starting a new one");
            if let Err(e) = start_thread(Arc::clone(&self.0)) {
                error!(error = %e, "cannot restart a password-hashing thread");
            }
        }
    }
}

/// The queue: a thread can only panic outside the lock, and the receiver has no state a panic
/// could leave half-changed.
fn lock(queue: &Queue) -> MutexGuard<'_, mpsc::Receiver<Job>> {
    crate::lock::lock(queue)
}

/// Check `password` against the PHC string `hash`, computing in `memory` (grown to fit, zeroed
/// afterwards). Any hash that cannot be used (unparsable, no salt or output, bad parameters,
/// memory that cannot be had) matches nothing.
pub fn check(memory: &mut Vec<Block>, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let need = params.block_count();
    if memory.len() < need {
        if memory.try_reserve_exact(need - memory.len()).is_err() {
            return false;
        }
        memory.resize(need, Block::new());
    }
    let mut computed = [0u8; Output::MAX_LENGTH];
    let Some(out) = computed.get_mut(..expected.len()) else {
        return false;
    };
    let blocks = &mut memory[..need];
    let hashed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut *out, &mut *blocks)
        .is_ok();
    blocks.fill(Block::new());
    std::hint::black_box(&blocks);
    // `Output`'s equality is constant-time: the comparison does not tell how much matched.
    hashed && Output::new(out).is_ok_and(|o| o == *expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::hash_password;

    #[tokio::test]
    async fn the_pool_tells_right_from_wrong_passwords() {
        let hasher = Arc::new(Hasher::new(2, Duration::from_secs(60)));
        let hash = hash_password("correct horse").unwrap();
        assert!(hasher
            .verify(hash.clone(), "correct horse".into())
            .await
            .unwrap());
        assert!(!hasher.verify(hash.clone(), "wrong".into()).await.unwrap());
        assert!(!hasher
            .verify("not a hash".into(), "correct horse".into())
            .await
            .unwrap());
        // Checks in parallel, more than there are threads: each gets its own answer.
        let checks: Vec<_> = (0..5)
            .map(|i| {
                let password = if i % 2 == 0 { "correct horse" } else { "nope" };
                let (hasher, hash) = (Arc::clone(&hasher), hash.clone());
                tokio::spawn(async move { hasher.verify(hash, password.into()).await })
            })
            .collect();
        let mut answers = Vec::new();
        for check in checks {
            answers.push(check.await.unwrap().unwrap());
        }
        assert_eq!(answers, [true, false, true, false, true]);
    }

    #[test]
    fn memory_is_reused_grown_for_larger_hashes_and_zeroed() {
        let small = hash_password("pw").unwrap();
        let params = Params::new(2 * 19 * 1024, 1, 1, None).unwrap();
        let big = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let big = argon2::PasswordHasher::hash_password(&big, b"pw")
            .unwrap()
            .to_string();
        let mut memory = Vec::new();
        assert!(check(&mut memory, &small, "pw"));
        assert_eq!(memory.len(), 19 * 1024);
        let first = memory.as_ptr();
        assert!(!check(&mut memory, &small, "other"));
        assert_eq!(memory.as_ptr(), first, "the block was reallocated");
        assert!(check(&mut memory, &big, "pw"));
        assert_eq!(memory.len(), 2 * 19 * 1024);
        assert!(
            check(&mut memory, &small, "pw"),
            "a larger block still fits"
        );
        let zero = Block::new();
        assert!(memory.iter().all(|b| b.as_ref() == zero.as_ref()));
    }

    #[tokio::test]
    async fn a_thread_that_dies_answers_an_error_not_a_hang() {
        let hasher = Hasher::new(1, Duration::from_secs(5));
        let died = tokio::time::timeout(Duration::from_secs(10), hasher.run(Work::Panic)).await;
        assert!(matches!(died, Ok(Err(HashError::Failed))), "{died:?}");
        // The thread was replaced: checks go on.
        let hash = hash_password("pw").unwrap();
        let again =
            tokio::time::timeout(Duration::from_secs(30), hasher.verify(hash, "pw".into())).await;
        assert!(matches!(again, Ok(Ok(true))), "{again:?}");
    }

    #[tokio::test]
    async fn a_pool_without_threads_fails_at_once() {
        let hasher = Hasher::new(0, Duration::from_millis(100));
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            hasher.verify("x".into(), "pw".into()),
        )
        .await;
        assert!(matches!(answer, Ok(Err(HashError::Failed))), "{answer:?}");
    }

    #[tokio::test]
    async fn a_check_that_cannot_get_a_thread_in_time_is_busy() {
        let hasher = Arc::new(Hasher::new(1, Duration::from_millis(20)));
        // Slow enough (t = 8) that the second check's wait ends first, even on a fast core.
        let params = Params::new(19 * 1024, 8, 1, None).unwrap();
        let slow = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let hash = argon2::PasswordHasher::hash_password(&slow, b"pw")
            .unwrap()
            .to_string();
        let slow = {
            let hasher = Arc::clone(&hasher);
            let hash = hash.clone();
            tokio::spawn(async move { hasher.verify(hash, "pw".into()).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let busy = hasher.verify(hash, "pw".into()).await;
        assert!(matches!(busy, Err(HashError::Busy)), "{busy:?}");
        assert!(slow.await.unwrap().unwrap());
    }
}
