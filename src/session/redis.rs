//! The Redis store: sessions shared by every doorman instance pointed at the same Redis.
//!
//! # Layout
//!
//! | key | type | contents |
//! |---|---|---|
//! | `{prefix}s:{hex sha256(id)}` | hash | `v` (format version), `user`, `groups` (comma-joined), `origin`, `created`, `exp` (absolute expiry), `seen` (last seen); times in Unix ms |
//! | `{prefix}u:{user}` | sorted set | member: a session's key hex, score: its absolute expiry |
//! | `{prefix}c:{counter}` | string | a login-throttling counter; its TTL is the window |
//!
//! Why this shape:
//!
//! * **A hash, not JSON.** The lookup script reads and updates single fields (`seen`) in place,
//!   without a JSON library in Lua or a read-modify-write race between instances.
//! * **One round trip per lookup.** Every authenticated request runs one `EVALSHA` of
//!   [`LOOKUP`] on the record key: it reads the record, checks both clocks against the record's
//!   own timestamps, deletes an expired record, slides `seen` (at most once per `idle / 10`, so
//!   most requests write nothing) and sets the key's TTL. [`redis::Script`] falls back to loading
//!   the script when the server does not know it yet (after a restart), once.
//! * **No command touches two keys.** Creating a session is two single-key scripts (the user
//!   index first, then the record), revoking is one command per key. So every command hashes to
//!   one slot, and Redis Cluster works without hash tags.
//! * **TTLs only clean up.** Validity is decided from `exp` and `seen` in the record; the key's
//!   TTL (`min(idle left, absolute left)`) just makes Redis drop dead records on its own. The user
//!   index is trimmed of expired members on every login and expires with its last session.
//!
//! # Failure
//!
//! Connections are made lazily (Redis down at start-up does not stop doorman), reconnect on
//! their own, and every command is bounded by [`COMMAND_TIMEOUT`]. Any Redis error is a
//! [`StoreError`], so protected routes fail closed; only a record doorman cannot read (another
//! format version, a damaged field) is reported as "no session".
//!
//! Standalone (`redis://`, `rediss://`) uses a [`ConnectionManager`] per serving worker (and
//! one for the main runtime), each driven on its own thread, so a lookup never crosses threads
//! (one connection per worker, as with the upstream pools). Sentinel resolves the
//! master through the Sentinels and re-resolves after a connection error or a `READONLY` reply,
//! because a `ConnectionManager` keeps reconnecting to the old address after a failover.
//! Cluster uses the crate's async cluster connection, which follows slot moves itself.
//!
//! # `cache = true`
//!
//! [`RedisStore::with_cache`] puts a [`SessionCache`] in front of lookups, kept honest by a
//! tracking connection ([`super::tracking`]): a hot session is answered from memory, with no
//! round trip, until Redis says its record changed, the record needs its idle clock slid, or
//! the tracking connection is in doubt. A miss runs the ordinary [`LOOKUP`] and fills the cache.
//! This instance's own deletes invalidate its cache at once; other instances hear of them
//! through Redis within milliseconds. Standalone and Sentinel only: under Cluster the tracking
//! would need a connection per master that follows resharding, which this build does not do
//! (the config refuses the combination).

use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, Once, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value};
use tracing::debug;

use super::cache::SessionCache;
use super::tracking;
use super::{Origin, Record, SessionKey, SessionStore, StoreError, Timeouts, RECORD_VERSION};
use crate::config::RedisTarget;
use crate::lock::lock;

/// Upper bound on one store operation's wait for Redis: connecting (or resolving a Sentinel
/// master) included. An operation that takes longer fails with [`StoreError::Timeout`].
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long one TCP (and TLS) connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its reply on an established connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Read a record, check both clocks against its timestamps, slide `seen` (coalesced) and set
/// the key's TTL, in one step.
///
/// KEYS[1] the record; ARGV[1] now (ms), ARGV[2] idle timeout (ms), ARGV[3] the format version
/// this build reads. Returns nil for a missing or expired record (an expired one is deleted), the
/// values untouched for a record of another version or with unreadable times (doorman treats it
/// as absent and leaves it to its TTL: a newer doorman sharing this Redis may own it), and
/// otherwise the values with `seen` as stored now.
///
/// The values are those of [`FIELDS`], in its order (`HMGET`): no field names on the wire and
/// no table built in Lua, which halves what both Redis and doorman parse per lookup.
///
/// The TTL is only set when `seen` moves: it is `min(seen + idle, exp) - now`, a deadline that
/// does not change while `seen` does not, so untouched lookups write nothing at all.
const LOOKUP: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'v', 'user', 'groups', 'origin', 'created', 'exp', 'seen')
if not r[1] then return false end
if r[1] ~= ARGV[3] then return r end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local exp = tonumber(r[6])
local seen = tonumber(r[7])
if seen == nil or exp == nil or now == nil or idle == nil then return r end
local elapsed = math.max(0, now - seen)
if elapsed >= idle or now >= exp then
  redis.call('DEL', KEYS[1])
  return false
end
if elapsed >= math.floor(idle / 10) then
  redis.call('HSET', KEYS[1], 'seen', ARGV[1])
  r[7] = ARGV[1]
  redis.call('PEXPIRE', KEYS[1], math.min(idle, exp - now))
end
return r
"#;

/// A record's hash fields, in the order [`encode`] writes them and [`LOOKUP`] reads them.
const FIELDS: [&str; 7] = ["v", "user", "groups", "origin", "created", "exp", "seen"];

/// Write a new record and its TTL atomically (a record must never outlive its TTL by accident).
/// KEYS[1] the record; ARGV[1] the TTL (ms), then field/value pairs.
const CREATE: &str = r#"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Add a session to its user's index, drop members whose absolute expiry has passed, and let
/// the index expire with its last session. KEYS[1] the index; ARGV[1] the member (key hex),
/// ARGV[2] its absolute expiry (ms), ARGV[3] now (ms).
const INDEX: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return 1
"#;

/// Count one event; the first event of a window starts its expiry. KEYS[1] the counter;
/// ARGV[1] the window (ms). A counter somehow left without a TTL gets one here too.
const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"#;

/// Take back one counted event: decrement, or delete at the last one, so a counter never goes
/// below zero and a missing one is not created (a bare `DECR` would make a `-1` without a TTL).
/// `DECR` keeps the key's TTL, so the window does not move. KEYS[1] the counter.
const UNHIT: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 1 then
  return redis.call('DECR', KEYS[1])
end
if n == 1 then
  redis.call('DEL', KEYS[1])
end
return 0
"#;

/// The scripts, with their SHA1s computed once per process.
struct Scripts {
    lookup: Script,
    create: Script,
    index: Script,
    hit: Script,
    unhit: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    lookup: Script::new(LOOKUP),
    create: Script::new(CREATE),
    index: Script::new(INDEX),
    hit: Script::new(HIT),
    unhit: Script::new(UNHIT),
});

/// Sessions in Redis (standalone, Sentinel or Cluster). See the module docs for the layout.
/// Clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    backend: Arc<Backend>,
    prefix: String,
    timeouts: Timeouts,
    /// `cache = true`: the local cache and its tracker (started by
    /// [`RedisStore::start_background`], or else by the first lookup).
    cache: Option<Arc<Cached>>,
}

/// The session cache and what its tracker needs to start.
struct Cached {
    sessions: Arc<SessionCache>,
    source: Mutex<Option<tracking::Source>>,
    started: Once,
}

impl Cached {
    /// Start the tracker, once; the first lookup calls this from inside the runtime. Later
    /// calls cost one atomic load.
    fn start(&self, record_prefix: impl FnOnce() -> String) {
        self.started.call_once(|| {
            if let Some(source) = lock(&self.source).take() {
                tracking::spawn(source, record_prefix(), &self.sessions);
            }
        });
    }
}

impl RedisStore {
    /// A store for `target`; connects lazily, so a Redis that is down at start-up does not
    /// stop doorman. Fails only on a malformed URL.
    pub fn new(
        target: &RedisTarget,
        key_prefix: &str,
        timeouts: Timeouts,
    ) -> Result<RedisStore, StoreError> {
        let backend = match target {
            RedisTarget::Standalone(url) => Backend::Standalone {
                client: Client::open(url.as_str()).map_err(config_error)?,
                managers: (0..=crate::worker::count())
                    .map(|_| OnceLock::new())
                    .collect(),
            },
            RedisTarget::Sentinel { master, nodes } => Backend::Sentinel {
                resolver: tokio::sync::Mutex::new(sentinel_client(master, nodes)?),
                master: Mutex::new(None),
            },
            RedisTarget::Cluster(nodes) => Backend::Cluster {
                client: ClusterClient::new(nodes.clone()).map_err(config_error)?,
                connection: OnceLock::new(),
            },
        };
        Ok(RedisStore {
            backend: Arc::new(backend),
            prefix: key_prefix.to_string(),
            timeouts,
            cache: None,
        })
    }

    /// The same store with `[session] cache = true`: see the module docs. `target` must be the
    /// one the store was made for; Cluster is refused.
    pub fn with_cache(mut self, target: &RedisTarget) -> Result<RedisStore, StoreError> {
        let source = match target {
            RedisTarget::Standalone(url) => {
                tracking::Source::Standalone(Client::open(url.as_str()).map_err(config_error)?)
            }
            RedisTarget::Sentinel { master, nodes } => {
                tracking::Source::Sentinel(sentinel_client(master, nodes)?)
            }
            RedisTarget::Cluster(_) => {
                return Err(StoreError::Unavailable(
                    "the session cache does not support Redis Cluster".into(),
                ))
            }
        };
        self.cache = Some(Arc::new(Cached {
            sessions: Arc::new(SessionCache::new()),
            source: Mutex::new(Some(source)),
            started: Once::new(),
        }));
        Ok(self)
    }

    /// Put the store's background work on the calling runtime, now: the connection driver for
    /// work off the serving workers (standalone: slot 0, the workers make their own on first
    /// use; Cluster: the one connection; a Sentinel master is resolved on first use, wherever
    /// that is) and the session cache's tracker. `server::start` calls this on the main runtime, so
    /// neither lands on whichever serving worker happens to use the store first, and the
    /// tracker's health checks never queue behind a busy worker's requests. Does no I/O; does
    /// nothing outside a runtime (the command line's store stays lazy).
    pub fn start_background(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.backend.prepare();
        if let Some(cache) = &self.cache {
            cache.start(|| format!("{}s:", self.prefix));
        }
    }

    /// The local session cache, when `cache = true` (for tests and diagnostics).
    pub fn session_cache(&self) -> Option<&SessionCache> {
        self.cache.as_deref().map(|c| &*c.sessions)
    }

    /// Revoke every session of `user` (`doorman sessions revoke`): the same as
    /// [`SessionStore::delete_user`], named for the command line.
    pub async fn revoke(&self, user: &str) -> Result<usize, StoreError> {
        self.delete_user(user).await
    }

    fn record_key(&self, key: &SessionKey) -> String {
        format!("{}s:{}", self.prefix, key.hex())
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}u:{}", self.prefix, user)
    }

    fn counter_key(&self, counter: &str) -> String {
        format!("{}c:{}", self.prefix, counter)
    }

    fn idle_millis(&self) -> u64 {
        u64::try_from(self.timeouts.idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// The lookup itself: one `EVALSHA` of [`LOOKUP`].
    async fn lookup_in_redis(
        &self,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<Record>, StoreError> {
        let record_key = self.record_key(key);
        let reply = self
            .run(|mut c| async move {
                SCRIPTS
                    .lookup
                    .key(&record_key)
                    .arg(now)
                    .arg(self.idle_millis())
                    .arg(RECORD_VERSION)
                    .invoke_async::<Value>(&mut c)
                    .await
            })
            .await?;
        let record = match decode(reply) {
            Ok(record) => record,
            Err(why) => {
                debug!(session = %key.tag(), why, "unreadable session record treated as absent");
                return Ok(None);
            }
        };
        // The script already checked the clocks; checking again here keeps the two definitions
        // of "live" from drifting apart silently.
        Ok(record.filter(|r| r.is_live(now, &self.timeouts)))
    }

    /// Run one Redis exchange against a connection, bounded by [`COMMAND_TIMEOUT`] (getting
    /// the connection included), mapping errors and telling the backend about broken ones.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let exchange = async {
            let conn = self.backend.connection().await?;
            op(conn).await.map_err(|e| {
                self.backend.failed(&e);
                store_error(e)
            })
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => {
                self.backend.timed_out();
                Err(StoreError::Timeout)
            }
        }
    }
}

impl SessionStore for RedisStore {
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let now = super::now_millis();
        let ttl = record.ttl(now, &self.timeouts).as_millis().max(1);
        let hex = key.hex();
        // The index first: a record that exists must be reachable by revoke-all; an index
        // member without a record is harmless (revoke deletes nothing for it, trimming drops it).
        let user_key = self.user_key(&record.user);
        self.run(|mut c| async move {
            SCRIPTS
                .index
                .key(&user_key)
                .arg(&hex)
                .arg(record.absolute_expiry)
                .arg(now)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await?;
        let record_key = self.record_key(key);
        let fields = encode(record);
        self.run(|mut c| async move {
            let mut call = SCRIPTS.create.key(&record_key);
            call.arg(u64::try_from(ttl).unwrap_or(u64::MAX));
            for (name, value) in &fields {
                call.arg(*name).arg(value);
            }
            call.invoke_async::<i64>(&mut c).await
        })
        .await?;
        Ok(())
    }

    async fn lookup(&self, key: &SessionKey, now: u64) -> Result<Option<Record>, StoreError> {
        let Some(cache) = &self.cache else {
            return self.lookup_in_redis(key, now).await;
        };
        cache.start(|| format!("{}s:", self.prefix));
        if let Some(record) = cache.sessions.get(key, now, &self.timeouts) {
            return Ok(Some(record));
        }
        let ticket = cache.sessions.ticket(key);
        let record = self.lookup_in_redis(key, now).await?;
        if let Some(record) = &record {
            cache.sessions.fill(key, record, ticket, now);
        }
        Ok(record)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        // The user index is left alone (it would be a second key and a read of the record
        // first); it trims itself, and revoke-all tolerates members without a record.
        let record_key = self.record_key(key);
        let deleted = self
            .run(|mut c| async move { redis::cmd("DEL").arg(&record_key).exec_async(&mut c).await })
            .await;
        // Forgotten locally whatever Redis said: a logout must not be answered from the cache.
        if let Some(cache) = &self.cache {
            cache.sessions.invalidate(key);
        }
        deleted
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let user_key = self.user_key(user);
        let members: Vec<String> = self
            .run(|mut c| {
                let user_key = &user_key;
                async move {
                    redis::cmd("ZRANGE")
                        .arg(user_key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let mut deleted = 0usize;
        // One key per command, each bounded on its own: this works the same on Cluster, and a
        // user has few sessions.
        for member in &members {
            let record_key = format!("{}s:{}", self.prefix, member);
            let n: i64 =
                self.run(|mut c| async move {
                    redis::cmd("DEL").arg(&record_key).query_async(&mut c).await
                })
                .await?;
            deleted += usize::try_from(n).unwrap_or(0);
            // Redis tells every tracking instance; this one need not wait for the echo.
            if let (Some(cache), Some(key)) = (&self.cache, SessionKey::from_hex(member)) {
                cache.sessions.invalidate(&key);
            }
        }
        if !members.is_empty() {
            // ZREM what was read rather than DEL the index: a login racing this revoke keeps
            // its index entry.
            self.run(|mut c| {
                let user_key = &user_key;
                let members = &members;
                async move {
                    redis::cmd("ZREM")
                        .arg(user_key)
                        .arg(members)
                        .exec_async(&mut c)
                        .await
                }
            })
            .await?;
        }
        Ok(deleted)
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<u64, StoreError> {
        let counter_key = self.counter_key(counter);
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(|mut c| async move {
            SCRIPTS
                .hit
                .key(&counter_key)
                .arg(window)
                .invoke_async::<u64>(&mut c)
                .await
        })
        .await
    }

    async fn count(&self, counter: &str) -> Result<u64, StoreError> {
        let counter_key = self.counter_key(counter);
        let n: Option<u64> = self
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(&counter_key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        let counter_key = self.counter_key(counter);
        self.run(
            |mut c| async move { redis::cmd("DEL").arg(&counter_key).exec_async(&mut c).await },
        )
        .await
    }

    async fn unhit(&self, counter: &str) -> Result<(), StoreError> {
        let counter_key = self.counter_key(counter);
        self.run(|mut c| async move {
            SCRIPTS
                .unhit
                .key(&counter_key)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").exec_async(&mut c).await })
            .await
    }
}

/// The record as hash fields, in the layout the module docs describe, in [`FIELDS`] order.
fn encode(record: &Record) -> Vec<(&'static str, String)> {
    let origin = match record.origin {
        Origin::Login => "login",
        Origin::Handoff => "handoff",
    };
    let values = [
        record.version.to_string(),
        record.user.clone(),
        record.groups.join(","),
        origin.to_string(),
        record.created.to_string(),
        record.absolute_expiry.to_string(),
        record.last_seen.to_string(),
    ];
    FIELDS.into_iter().zip(values).collect()
}

/// The lookup script's reply: nil, or the values of [`FIELDS`] in order. `Err` says why a
/// present record could not be read (it is then treated as absent).
fn decode(reply: Value) -> Result<Option<Record>, &'static str> {
    let values: [Value; FIELDS.len()] = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items
            .try_into()
            .map_err(|_| "unexpected number of values")?,
        _ => return Err("unexpected reply shape"),
    };
    let [v, user, groups, origin, created, exp, seen] = values;
    let version: u8 = text(v)?.parse().map_err(|_| "malformed version")?;
    if version != RECORD_VERSION {
        return Err("another format version");
    }
    let number = |value: Value| -> Result<u64, &'static str> {
        text(value)?.parse().map_err(|_| "malformed number")
    };
    let groups = text(groups)?;
    let origin = match text(origin)?.as_str() {
        "login" => Origin::Login,
        "handoff" => Origin::Handoff,
        _ => return Err("unknown origin"),
    };
    Ok(Some(Record {
        version,
        user: text(user)?,
        groups: if groups.is_empty() {
            Vec::new()
        } else {
            groups.split(',').map(str::to_string).collect()
        },
        origin,
        created: number(created)?,
        absolute_expiry: number(exp)?,
        last_seen: number(seen)?,
    }))
}

/// A field's value; a missing field (nil) is an unreadable record.
fn text(value: Value) -> Result<String, &'static str> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| "field is not UTF-8"),
        Value::SimpleString(s) => Ok(s),
        Value::Nil => Err("missing field"),
        _ => Err("field is not a string"),
    }
}

/// A client that finds `master` through the Sentinels `nodes` (TLS if any node is rediss://).
fn sentinel_client(master: &str, nodes: &[String]) -> Result<SentinelClient, StoreError> {
    let mut node_info = SentinelNodeConnectionInfo::default();
    if nodes.iter().any(|n| n.starts_with("rediss://")) {
        node_info = node_info.set_tls_mode(redis::TlsMode::Secure);
    }
    SentinelClient::build(
        nodes.to_vec(),
        master,
        Some(node_info),
        SentinelServerType::Master,
    )
    .map_err(config_error)
}

fn config_error(e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("invalid Redis address: {e}"))
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::Timeout
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn cluster_config() -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
}

fn manager_config() -> ConnectionManagerConfig {
    // Few, quick retries inside the manager: a request is better served by failing within
    // COMMAND_TIMEOUT than by waiting out a long backoff; the next request reconnects again.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

/// The three ways to reach Redis. Connections are created on first use: that needs a Tokio
/// runtime, which `RedisStore::new` then does not.
enum Backend {
    Standalone {
        client: Client,
        /// Slot 0 for the main runtime (readiness, housekeeping, in-process use), then one per
        /// serving worker ([`Backend::slot`]).
        managers: Box<[OnceLock<ConnectionManager>]>,
    },
    Sentinel {
        /// Asks the Sentinels for the master; one resolution at a time.
        resolver: tokio::sync::Mutex<SentinelClient>,
        /// The current master's connection; `None` after an error, so the next use resolves
        /// the master again.
        master: Mutex<Option<ConnectionManager>>,
    },
    Cluster {
        client: ClusterClient,
        connection: OnceLock<ClusterConnection>,
    },
}

impl Backend {
    /// Which of `len` per-thread connections the caller uses: one per serving worker, created
    /// on that worker's runtime by its first use, so a lookup and its reply never change
    /// thread (as the upstream pools, see `crate::worker`); slot 0 for everything else.
    fn slot(len: usize) -> usize {
        match crate::worker::on_worker() {
            Some(index) if len > 1 => 1 + index % (len - 1),
            _ => 0,
        }
    }

    /// Create the connection object now, on the calling runtime (no I/O: it connects on first
    /// use). A failure is left for the first use to report.
    fn prepare(&self) {
        match self {
            Backend::Standalone { client, managers } => {
                let manager = &managers[Backend::slot(managers.len())];
                if manager.get().is_none() {
                    if let Ok(fresh) =
                        ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                    {
                        let _ = manager.set(fresh);
                    }
                }
            }
            Backend::Cluster { client, connection } => {
                connection.get_or_init(|| {
                    client.get_pending_async_connection_with_config(cluster_config())
                });
            }
            Backend::Sentinel { .. } => {}
        }
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        match self {
            Backend::Standalone { client, managers } => {
                let manager = &managers[Backend::slot(managers.len())];
                if let Some(m) = manager.get() {
                    return Ok(Conn::Manager(m.clone()));
                }
                let fresh =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
                        .map_err(store_error)?;
                // A racing first use may have won; either manager is fine, keep one.
                Ok(Conn::Manager(manager.get_or_init(|| fresh).clone()))
            }
            Backend::Sentinel { resolver, master } => {
                if let Some(m) = lock(master).as_ref() {
                    return Ok(Conn::Manager(m.clone()));
                }
                let mut sentinels = resolver.lock().await;
                if let Some(m) = lock(master).as_ref() {
                    return Ok(Conn::Manager(m.clone()));
                }
                let client = sentinels.async_get_client().await.map_err(store_error)?;
                let fresh = ConnectionManager::new_lazy_with_config(client, manager_config())
                    .map_err(store_error)?;
                *lock(master) = Some(fresh.clone());
                Ok(Conn::Manager(fresh))
            }
            Backend::Cluster { client, connection } => {
                if let Some(c) = connection.get() {
                    return Ok(Conn::Cluster(c.clone()));
                }
                let fresh = client.get_pending_async_connection_with_config(cluster_config());
                Ok(Conn::Cluster(connection.get_or_init(|| fresh).clone()))
            }
        }
    }

    /// A command failed: a Sentinel-resolved master is dropped on anything that suggests it
    /// moved (connection trouble, or it became a read-only replica).
    fn failed(&self, e: &RedisError) {
        if let Backend::Sentinel { master, .. } = self {
            let moved = e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || matches!(
                    e.kind(),
                    redis::ErrorKind::Server(
                        redis::ServerErrorKind::ReadOnly | redis::ServerErrorKind::MasterDown
                    )
                );
            if moved {
                *lock(master) = None;
            }
        }
    }

    fn timed_out(&self) {
        if let Backend::Sentinel { master, .. } = self {
            *lock(master) = None;
        }
    }
}

/// A connection of either kind, so the store's commands are written once.
#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(100),
        absolute: Duration::from_secs(1000),
    };

    /// What LOOKUP returns for `record` (HMGET of FIELDS).
    fn reply(record: &Record) -> Value {
        Value::Array(
            encode(record)
                .into_iter()
                .map(|(_, v)| Value::BulkString(v.into_bytes()))
                .collect(),
        )
    }

    #[test]
    fn the_lookup_script_reads_the_fields_encode_writes_in_order() {
        let quoted: Vec<String> = FIELDS.iter().map(|f| format!("'{f}'")).collect();
        let hmget = format!("redis.call('HMGET', KEYS[1], {})", quoted.join(", "));
        assert!(LOOKUP.contains(&hmget), "LOOKUP must read {hmget}");
        let written: Vec<&str> = encode(&Record::new("a".into(), vec![], Origin::Login, 1, &T))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(written, FIELDS);
    }

    #[test]
    fn records_round_trip_through_hash_fields() {
        for groups in [
            vec![],
            vec!["admin".to_string()],
            vec!["a".into(), "b".into()],
        ] {
            let mut r = Record::new("alice".into(), groups, Origin::Handoff, 5, &T);
            r.last_seen = 7;
            assert_eq!(decode(reply(&r)), Ok(Some(r)));
        }
        assert_eq!(decode(Value::Nil), Ok(None));
    }

    #[test]
    fn unreadable_records_are_reported_not_decoded() {
        let mut r = Record::new("alice".into(), vec![], Origin::Login, 5, &T);
        r.version = RECORD_VERSION + 1;
        assert!(decode(reply(&r)).is_err());
        assert!(decode(Value::Array(vec![Value::BulkString(b"1".to_vec())])).is_err());
        assert!(decode(Value::Int(1)).is_err());
        r.version = RECORD_VERSION;
        let Value::Array(mut values) = reply(&r) else {
            unreachable!()
        };
        values[1] = Value::Nil;
        assert!(decode(Value::Array(values)).is_err(), "missing user");
    }

    #[test]
    fn a_malformed_url_is_a_construction_error() {
        let target = RedisTarget::Standalone("http://nope".into());
        assert!(RedisStore::new(&target, "p:", T).is_err());
    }
}
