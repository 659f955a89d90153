//! Waiting on `[session] cache = true`: until a doorman answers a session from its cache, and
//! until a session's answer flips (a logout elsewhere, seen through Redis's invalidation).

use std::time::{Duration, Instant};

use super::redis::RedisServer;
use super::Doorman;

/// Session lookups `redis` has run so far: its `HMGET`s (a lookup's read; a slide's touch
/// script runs one too).
pub fn lookups(redis: &RedisServer) -> u64 {
    redis.command_calls().get("hmget").copied().unwrap_or(0)
}

/// Request `/dashboard` with `cookie` on `d` until one answer (200) costs Redis no lookup by
/// `lookups` (a counter of the master's lookups): the tracking connection is up and the session
/// is cached. Panics after 10 s.
pub async fn until_cached(d: &Doorman, lookups: impl Fn() -> u64, cookie: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = lookups();
        let answer = d.get("/dashboard", Some(cookie)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        if lookups() == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the session never came from the cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Request `/dashboard` with `cookie` on `d` until it answers `status`; how long that took.
/// Panics after `within`.
pub async fn until_status(d: &Doorman, cookie: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answer = d.get("/dashboard", Some(cookie)).await;
        if answer.status == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {} after {within:?}, expected {status}",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
