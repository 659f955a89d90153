//! The tracking connection behind `[session] cache = true`: Redis server-assisted client-side
//! caching (RESP3 `CLIENT TRACKING`), feeding invalidations to a [`SessionCache`].
//!
//! One dedicated RESP3 connection per doorman process turns on
//! `CLIENT TRACKING ON BCAST PREFIX {key_prefix}s:`. In broadcast mode Redis sends this
//! connection an `invalidate` push for *every* change to a session record, by any client:
//! another doorman's logout or revoke, an expiry, a touch, `FLUSHALL`. Broadcast mode is chosen
//! over default (per-key) tracking because it does not depend on which connection read a key,
//! so the lookups keep running on the ordinary store connection (scripts included), and
//! because sessions are small and their writes rare (touches are coalesced to one per
//! `idle / 10`), so the broadcast traffic is small too.
//!
//! The connection's health decides whether the cache may serve at all (see
//! [`SessionCache`]'s trust): it is trusted once tracking is on, renewed by a health check every
//! [`CHECK_EVERY`], and dropped — cache emptied, lookups back to Redis — when the connection
//! closes, a check fails or times out, or (under Sentinel) the server it reaches is no longer
//! the master. Then the tracker reconnects with a backoff; trust comes back with a flushed
//! cache, because invalidations sent while it was away are lost.
//!
//! The tracker runs as one task, started on the main runtime when doorman starts (or on the
//! first lookup, for a store used without `server::Server::open`; a store built outside a runtime,
//! such as the command line's, never starts one), and ends when its cache is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tracing::{debug, info, warn};

use super::cache::{Generation, SessionCache};
use super::live::Registry;
use super::SessionKey;

/// How often the tracking connection's health is checked (and the cache's trust renewed).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one connection attempt or one health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the tracking connection goes: the store's own Redis, found the same way.
pub enum Source {
    Standalone(Client),
    /// The master, resolved through the Sentinels on every (re)connect.
    Sentinel(SentinelClient),
}

/// Start the tracker for `cache`: a task that keeps a tracking connection up for as long as the
/// cache lives. `record_prefix` is the prefix of session record keys (`{key_prefix}s:`).
///
/// Every change Redis reports is passed on to `live` as well: the long-lived exchanges of a
/// session another instance logged out or revoked are re-checked at once, and all of them when
/// changes may have been missed (a flush, a lost connection).
pub fn spawn(
    source: Source,
    record_prefix: String,
    cache: &Arc<SessionCache>,
    live: &Arc<Registry>,
) {
    let cache = Arc::downgrade(cache);
    let live = Arc::downgrade(live);
    tokio::spawn(async move { track(source, record_prefix, cache, live).await });
}

async fn track(
    mut source: Source,
    record_prefix: String,
    cache: Weak<SessionCache>,
    live: Weak<Registry>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(generation) = cache.upgrade().map(|c| c.current()) else {
            return;
        };
        let connected = tokio::time::timeout(
            CHECK_TIMEOUT * 3,
            connect(&mut source, &record_prefix, &cache, &live, generation),
        )
        .await
        .unwrap_or_else(|_| Err("timed out".to_string()));
        match connected {
            Ok(mut conn) => {
                match cache.upgrade().map(|c| c.trust(generation)) {
                    None => return,
                    Some(true) => {
                        info!("session cache on: Redis tracks session records for this instance");
                        backoff = MIN_BACKOFF;
                    }
                    // Lost again before trust was given: try anew after the backoff.
                    Some(false) => {}
                }
                loop {
                    let Some(strong) = cache.upgrade() else {
                        return;
                    };
                    if !strong.trusted() {
                        break;
                    }
                    drop(strong);
                    tokio::time::sleep(CHECK_EVERY).await;
                    let Some(strong) = cache.upgrade() else {
                        return;
                    };
                    match healthy(&source, &mut conn).await {
                        Ok(()) => strong.renew(generation),
                        Err(why) => {
                            strong.distrust();
                            if let Some(live) = live.upgrade() {
                                live.suspect_all();
                            }
                            warn!(why, "session cache off: tracking connection unhealthy");
                            break;
                        }
                    }
                }
            }
            Err(why) => debug!(%why, "session cache: no tracking connection"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Open a RESP3 connection whose pushes go to `cache`, turn broadcast tracking on, and pass
/// one health check before the connection is trusted: under Sentinel, a master address from a
/// Sentinel that has not caught up with a failover is refused here.
async fn connect(
    source: &mut Source,
    record_prefix: &str,
    cache: &Weak<SessionCache>,
    live: &Weak<Registry>,
    generation: Generation,
) -> Result<MultiplexedConnection, String> {
    let mut conn = open(source, record_prefix, cache, live, generation)
        .await
        .map_err(|e| e.to_string())?;
    healthy(source, &mut conn).await?;
    Ok(conn)
}

async fn open(
    source: &mut Source,
    record_prefix: &str,
    cache: &Weak<SessionCache>,
    live: &Weak<Registry>,
    generation: Generation,
) -> redis::RedisResult<MultiplexedConnection> {
    let client = match source {
        Source::Standalone(client) => client.clone(),
        Source::Sentinel(sentinels) => sentinels.async_get_client().await?,
    };
    let info = client.get_connection_info().clone();
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(info.set_redis_settings(resp3))?;
    let sink = Sink {
        cache: cache.clone(),
        live: live.clone(),
        record_prefix: record_prefix.to_string(),
        generation,
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CHECK_TIMEOUT))
        .set_response_timeout(Some(CHECK_TIMEOUT))
        .set_push_sender(move |push: PushInfo| sink.receive(push));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(record_prefix)
        .exec_async(&mut conn)
        .await?;
    Ok(conn)
}

/// [`check`], bounded by [`CHECK_TIMEOUT`].
async fn healthy(source: &Source, conn: &mut MultiplexedConnection) -> Result<(), &'static str> {
    tokio::time::timeout(CHECK_TIMEOUT, check(source, conn))
        .await
        .unwrap_or(Err("timed out"))
}

/// The health check: the connection answers, and under Sentinel the server is still the
/// master (a demoted master stays reachable but no longer sees the writes).
async fn check(source: &Source, conn: &mut MultiplexedConnection) -> Result<(), &'static str> {
    match source {
        Source::Standalone(_) => redis::cmd("PING")
            .exec_async(conn)
            .await
            .map_err(|_| "PING failed"),
        Source::Sentinel(_) => {
            let role: Value = redis::cmd("ROLE")
                .query_async(conn)
                .await
                .map_err(|_| "ROLE failed")?;
            match role {
                Value::Array(items) if matches!(items.first(), Some(Value::BulkString(r)) if r == b"master") => {
                    Ok(())
                }
                _ => Err("the server is no longer the master"),
            }
        }
    }
}

/// Where the connection's pushes land. Runs on the connection's reader, so it only takes the
/// cache's short locks.
struct Sink {
    cache: Weak<SessionCache>,
    /// The long-lived exchanges, told of the same changes.
    live: Weak<Registry>,
    record_prefix: String,
    /// The connection this sink belongs to: its closing ends only its own trust.
    generation: Generation,
}

impl Sink {
    fn receive(&self, push: PushInfo) -> Result<(), ()> {
        // A dropped cache: refuse, and the connection stops sending here.
        let cache = self.cache.upgrade().ok_or(())?;
        let live = self.live.upgrade();
        let flush = || {
            cache.flush();
            if let Some(live) = &live {
                live.suspect_all();
            }
        };
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match self.session_key(key) {
                            Some(key) => {
                                cache.invalidate(&key);
                                if let Some(live) = &live {
                                    live.suspect(&key);
                                }
                            }
                            // Under the prefix but not a key doorman wrote: play safe.
                            None => flush(),
                        }
                    }
                }
                // A null key list: the server flushed its data (FLUSHALL, FLUSHDB).
                _ => flush(),
            },
            PushKind::Disconnection => {
                cache.distrust_if(self.generation);
                if let Some(live) = &live {
                    live.suspect_all();
                }
                warn!("session cache off: tracking connection closed");
            }
            _ => {}
        }
        Ok(())
    }

    fn session_key(&self, key: &Value) -> Option<SessionKey> {
        let Value::BulkString(bytes) = key else {
            return None;
        };
        let hex = bytes.strip_prefix(self.record_prefix.as_bytes())?;
        SessionKey::from_hex(std::str::from_utf8(hex).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(cache: &Arc<SessionCache>) -> Sink {
        Sink {
            cache: Arc::downgrade(cache),
            live: Weak::new(),
            record_prefix: "p:s:".into(),
            generation: cache.current(),
        }
    }

    fn invalidate(keys: Value) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![keys],
        }
    }

    #[test]
    fn invalidations_name_session_keys_by_their_hex() {
        let cache = Arc::new(SessionCache::new());
        let key = SessionKey([7; 32]);
        let sink = sink(&cache);
        assert_eq!(
            sink.session_key(&Value::BulkString(
                format!("p:s:{}", key.hex()).into_bytes()
            )),
            Some(key)
        );
        assert_eq!(
            sink.session_key(&Value::BulkString(b"p:s:zz".to_vec())),
            None
        );
        assert_eq!(
            sink.session_key(&Value::BulkString(
                format!("q:s:{}", key.hex()).into_bytes()
            )),
            None
        );
        let before = cache.ticket(&key);
        sink.receive(invalidate(Value::Array(vec![Value::BulkString(
            format!("p:s:{}", key.hex()).into_bytes(),
        )])))
        .unwrap();
        assert_ne!(cache.ticket(&key), before, "the key's shard moved on");
    }

    #[test]
    fn a_flush_or_a_lost_connection_empties_the_cache() {
        let cache = Arc::new(SessionCache::new());
        let key = SessionKey([9; 32]);
        let sink = sink(&cache);
        let before = cache.ticket(&key);
        sink.receive(invalidate(Value::Nil)).unwrap();
        assert_ne!(cache.ticket(&key), before);
        assert!(cache.trust(cache.current()));
        sink.receive(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        })
        .unwrap();
        assert!(!cache.trusted());
    }
}
