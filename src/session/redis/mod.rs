//! The Redis store: sessions shared by every doorman instance pointed at the same Redis.
//!
//! This file is the store's public surface: [`RedisStore`] and its [`SessionStore`] commands.
//! The rest is split by concern, each file depending only on those listed before it:
//!
//! * `keys`: the key schema (record hash, per-user index, throttling counters).
//! * `codec`: a record as the fields of its hash, and back.
//! * `scripts`: the Lua scripts, one atomic single-key step each.
//! * `topology`: standalone / Sentinel / Cluster connections, per-worker slots, and the
//!   bounded exchange ([`COMMAND_TIMEOUT`]) every command runs through.
//! * `replicas`: creation, logout and revoke wait (bounded) for a replica's acknowledgement.
//! * `cached`: `cache = true`, the local session cache in front of lookups and its tracker's
//!   start-up.
//!
//! Why the store is shaped this way:
//!
//! * **One round trip per lookup.** Every authenticated request sends one `HMGET` of two of
//!   the record's fields, its values packed in one and `seen` (`codec` says why); doorman
//!   checks both clocks against the record's own timestamps. Only
//!   when `seen` is due a slide (at most once per `idle / 10` per session, so a vanishing share
//!   of requests) does a second round trip run the touch script, which slides `seen` and sets
//!   the key's TTL atomically, and only if the record is still live. An earlier design ran a
//!   Lua script on every lookup to fold the slide into the same round trip; Redis spent about
//!   5 µs per call on it against under 1 µs for the `HMGET` (`INFO commandstats`), on the hot
//!   path of every authenticated request, to save one round trip per session every
//!   `idle / 10`. A record found expired is deleted by the same touch script (its TTL would
//!   end it anyway; deleting keeps a clock ahead of Redis's from leaving it readable).
//! * **No command touches two keys.** Creating a session is two single-key scripts (the user
//!   index first, then the record), revoking is one command per key. So every command hashes to
//!   one slot, and Redis Cluster works without hash tags.
//! * **TTLs only clean up.** Validity is decided from `exp` and `seen` in the record; the key's
//!   TTL (`min(idle left, absolute left)`) just makes Redis drop dead records on its own. The user
//!   index is trimmed of expired members on every login and expires with its last session.
//!
//! # Failure
//!
//! Redis down at start-up does not stop doorman (connections are lazy), and every command is
//! bounded by [`COMMAND_TIMEOUT`]. Any Redis error is a [`StoreError`], so protected routes
//! fail closed; only a record doorman cannot read (another format version, a damaged field) is
//! reported as "no session".
//!
//! # `cache = true`
//!
//! [`RedisStore::with_cache`] puts a `SessionCache` in front of lookups, kept honest by a
//! tracking connection: a hot session is answered from memory until Redis says its record
//! changed (see `cached`). Standalone and Sentinel only.

mod cached;
mod codec;
mod keys;
mod replicas;
mod scripts;
mod topology;

use crate::clock::Clock;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tracing::debug;

use self::cached::{Answer, Cached};
use self::codec::{decode, decode_lookup, encode, Lookup};
use self::keys::Keys;
use self::replicas::{Replicas, Write};
use self::scripts::SCRIPTS;
use self::topology::{tracking_source, Backend};
use super::cache::SessionCache;
use super::{Link, Record, SessionKey, SessionStore, StoreError, Timeouts, RECORD_VERSION};
use crate::config::RedisTarget;

pub use self::topology::COMMAND_TIMEOUT;
pub use crate::session::cache::TRUST_WINDOW;

/// Sessions in Redis (standalone, Sentinel or Cluster). See `keys` for the layout.
/// Clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    backend: Arc<Backend>,
    /// Whether writes that must survive a failover wait for a replica (see `replicas`).
    replicas: Arc<Replicas>,
    keys: Keys,
    timeouts: Timeouts,
    /// `cache = true`: the local cache and its tracker (started by
    /// [`RedisStore::start_background`], or else by the first lookup).
    cache: Option<Arc<Cached>>,
    /// The time records' TTLs and the cache's trust are judged against.
    clock: Clock,
    /// The open long-lived exchanges of this process's sessions (DESIGN.md §11).
    pub(super) live: Arc<super::live::Registry>,
}

impl RedisStore {
    /// The members (session key hex) of a user's index.
    async fn index_members(&self, user_key: &str) -> Result<Vec<String>, StoreError> {
        self.backend
            .run(|mut c| async move {
                redis::cmd("ZRANGE")
                    .arg(user_key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    /// Delete the record of one index member (one key per command, each bounded on its own:
    /// the same on Cluster); whether it was there.
    async fn delete_member(&self, member: &str) -> Result<bool, StoreError> {
        let record_key = self.keys.record_hex(member);
        let n = self.durable_delete(&record_key).await?;
        // Redis tells every tracking instance; this one need not wait for the echo.
        if let (Some(cache), Some(key)) = (&self.cache, SessionKey::from_hex(member)) {
            cache.invalidate(&key);
        }
        Ok(n > 0)
    }

    /// `DEL` of a record key, waiting (bounded) for a replica: a logout or revoke the next
    /// master must not forget. The number of keys deleted.
    async fn durable_delete(&self, record_key: &str) -> Result<i64, StoreError> {
        let reply = self
            .backend
            .run(|c| async move {
                let mut del = redis::cmd("DEL");
                del.arg(record_key);
                self.replicas
                    .write(c, record_key, &Write::Command(del))
                    .await
            })
            .await?;
        redis::from_redis_value(reply).map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Remove `members` from a user's index (ZREM what was read rather than DEL the index: a
    /// login racing the caller keeps its index entry).
    async fn forget_members(&self, user_key: &str, members: &[String]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        self.backend
            .run(|mut c| async move {
                redis::cmd("ZREM")
                    .arg(user_key)
                    .arg(members)
                    .exec_async(&mut c)
                    .await
            })
            .await
    }

    /// A store for `target`; connects lazily, so a Redis that is down at start-up does not
    /// stop doorman. Fails only on a malformed URL.
    pub fn new(
        target: &RedisTarget,
        key_prefix: &str,
        timeouts: Timeouts,
    ) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            backend: Backend::new(target)?,
            replicas: Arc::default(),
            keys: Keys::new(key_prefix),
            timeouts,
            cache: None,
            clock: Clock::system(),
            live: Arc::default(),
        })
    }

    /// The same store, judging time by `clock` (the system clock unless set). Set it before
    /// [`RedisStore::with_cache`], so the cache's trust runs on the same clock.
    pub fn with_clock(mut self, clock: Clock) -> RedisStore {
        self.clock = clock;
        self
    }

    /// The same store with `[session] cache = true`: see the module docs. `target` must be the
    /// one the store was made for; Cluster is refused.
    pub fn with_cache(mut self, target: &RedisTarget) -> Result<RedisStore, StoreError> {
        self.cache = Some(Arc::new(Cached::new(
            tracking_source(target)?,
            self.clock.clone(),
            Arc::clone(&self.live),
        )));
        Ok(self)
    }

    /// Put the store's background work on the calling runtime, now: the connection driver for
    /// work off the serving workers (standalone: slot 0, the workers make their own on first
    /// use; Cluster: the one connection; a Sentinel master is resolved on first use, wherever
    /// that is) and the session cache's tracker. `server::Server::open` calls this on the main runtime, so
    /// neither lands on whichever serving worker happens to use the store first, and the
    /// tracker's health checks never queue behind a busy worker's requests. Does no I/O; does
    /// nothing outside a runtime (the command line's store stays lazy).
    pub fn start_background(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.backend.prepare();
        if let Some(cache) = &self.cache {
            cache.start(|| self.keys.records());
        }
    }

    /// `1` while Redis is unreachable and lookups fail fast (`doorman_session_store_unreachable`).
    pub fn unreachable_gauge(&self) -> &prometheus_client::metrics::gauge::Gauge {
        self.backend.unreachable_gauge()
    }

    /// The local session cache, when `cache = true` (for tests and diagnostics).
    pub fn session_cache(&self) -> Option<&SessionCache> {
        self.cache.as_deref().map(Cached::sessions)
    }

    /// Revoke every session of `user` (`doorman sessions revoke`): the same as
    /// [`SessionStore::delete_user`], named for the command line.
    pub async fn revoke(&self, user: &str) -> Result<usize, StoreError> {
        self.delete_user(user).await
    }

    fn idle_millis(&self) -> u64 {
        u64::try_from(self.timeouts.idle.as_millis()).unwrap_or(u64::MAX)
    }

    /// The lookup itself: one `HMGET`, and the touch script when the record is due a slide.
    async fn lookup_in_redis(
        &self,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<Record>, StoreError> {
        let record_key = self.keys.record(key);
        let record_key = &record_key;
        let reply = self
            .backend
            .run(|mut c| async move { read_record(record_key).query_async::<Value>(&mut c).await })
            .await?;
        let Some(mut record) = self.present_record(key, record_key, reply).await? else {
            return Ok(None);
        };
        if due_touch(&record, now, &self.timeouts) {
            if !self.touch(key, now).await? {
                return Ok(None);
            }
            record.last_seen = now;
        }
        Ok(Some(record))
    }
}

impl RedisStore {
    /// The record of `key` when the session cache (`cache = true`) answers it as is, without
    /// a future: see [`Store::fresh`](crate::session::Store::fresh). `None` without a cache.
    pub fn fresh(&self, key: &SessionKey, now: u64) -> Option<Record> {
        let cache = self.cache.as_ref()?;
        cache.peek(key, now, &self.timeouts, || self.keys.records())
    }

    /// Look up `keys` in Redis itself (never the cache), sliding their idle clocks: the
    /// re-check of sessions with long-lived exchanges (DESIGN.md §11). One pipeline of `HMGET`s,
    /// then one of touch scripts for the records due a slide, so a batch costs one or two round
    /// trips; on Cluster, where a pipeline must stay on one slot, the lookups are sent together
    /// on the cluster connection instead, which pipelines them per node.
    pub async fn lookup_many(
        &self,
        keys: &[SessionKey],
        now: u64,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        if self.backend.is_cluster() {
            let mut lookups = tokio::task::JoinSet::new();
            for (at, key) in keys.iter().enumerate() {
                let (store, key) = (self.clone(), *key);
                lookups.spawn(async move { (at, store.lookup_in_redis(&key, now).await) });
            }
            let mut records = vec![None; keys.len()];
            while let Some(done) = lookups.join_next().await {
                let (at, record) = done.map_err(|e| StoreError::Unavailable(e.to_string()))?;
                records[at] = record?;
            }
            return Ok(records);
        }
        let record_keys: Vec<String> = keys.iter().map(|k| self.keys.record(k)).collect();
        let record_keys = &record_keys;
        let replies: Vec<Value> = self
            .backend
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                for record_key in record_keys {
                    pipe.add_command(read_record(record_key));
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        let mut records: Vec<Option<Record>> = Vec::with_capacity(keys.len());
        for ((key, record_key), reply) in keys.iter().zip(record_keys).zip(replies) {
            records.push(self.present_record(key, record_key, reply).await?);
        }
        let due: Vec<usize> = (0..records.len())
            .filter(|at| {
                records[*at]
                    .as_ref()
                    .is_some_and(|r| due_touch(r, now, &self.timeouts))
            })
            .collect();
        if due.is_empty() {
            return Ok(records);
        }
        let idle = self.idle_millis();
        let due_keys: Vec<&String> = due.iter().map(|at| &record_keys[*at]).collect();
        let due_keys = &due_keys;
        let slid: Vec<i64> = self
            .backend
            .run(|mut c| async move {
                let mut pipe = redis::pipe();
                for record_key in due_keys {
                    let mut call = SCRIPTS.touch.key(*record_key);
                    call.arg(now).arg(idle).arg(RECORD_VERSION);
                    pipe.invoke_script(&call);
                }
                match pipe.query_async(&mut c).await {
                    // A pipeline does not load scripts by itself (after a Redis restart).
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        SCRIPTS.touch.prepare_invoke().load_async(&mut c).await?;
                        pipe.query_async(&mut c).await
                    }
                    answered => answered,
                }
            })
            .await?;
        for (at, slid) in due.into_iter().zip(slid) {
            records[at] = records[at].take().filter(|_| slid == 1).map(|mut r| {
                r.last_seen = now;
                r
            });
        }
        Ok(records)
    }

    /// The express-session ids of `user`'s sessions taken over from an express app
    /// ([`Record::express`]): what a revoke deletes in the app's Redis (DESIGN.md §12). One
    /// `HGET` per index member (one key per command, as everywhere here).
    pub async fn express_ids(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for member in self.index_members(&self.keys.user(user)).await? {
            ids.extend(self.member_field(&member, codec::EXPRESS_FIELD).await?);
        }
        Ok(ids)
    }

    /// One field of an index member's record (`HGET`), if the record has it.
    async fn member_field(&self, member: &str, field: &str) -> Result<Option<String>, StoreError> {
        let record_key = self.keys.record_hex(member);
        self.backend
            .run(|mut c| {
                let record_key = &record_key;
                async move {
                    redis::cmd("HGET")
                        .arg(record_key)
                        .arg(field)
                        .query_async(&mut c)
                        .await
                }
            })
            .await
    }

    /// `GET key` and its `PTTL`, in one round trip: a key outside doorman's own layout (an
    /// express-session record, DESIGN.md §12). The TTL is `None` for a key without one.
    pub async fn get_foreign(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<u64>)>, StoreError> {
        let (value, ttl): (Option<Vec<u8>>, i64) = self
            .backend
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(key)
                    .cmd("PTTL")
                    .arg(key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(value.map(|v| (v, u64::try_from(ttl).ok())))
    }

    /// `SET key value NX PX ttl`: whether this call set it.
    pub async fn set_foreign_once(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = self
            .backend
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// `DEL key`: whether it was there.
    pub async fn delete_foreign(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .backend
            .run(|mut c| async move { redis::cmd("DEL").arg(key).query_async(&mut c).await })
            .await?;
        Ok(n > 0)
    }

    /// Slide the record's `seen` to `now` (the touch script): whether it was still live.
    async fn touch(&self, key: &SessionKey, now: u64) -> Result<bool, StoreError> {
        let record_key = self.keys.record(key);
        let record_key = &record_key;
        let slid: i64 = self
            .backend
            .run(|mut c| async move {
                SCRIPTS
                    .touch
                    .key(record_key)
                    .arg(now)
                    .arg(self.idle_millis())
                    .arg(RECORD_VERSION)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(slid == 1)
    }

    /// A [`read_record`] reply for the record at `record_key` as the record it names, if there
    /// is one doorman can read (live or not). A record without the packed field (written by a
    /// doorman from before it) costs a second round trip, for all its fields.
    async fn present_record(
        &self,
        key: &SessionKey,
        record_key: &str,
        reply: Value,
    ) -> Result<Option<Record>, StoreError> {
        let read = match decode_lookup(reply) {
            Ok(Lookup::Found(record)) => Ok(Some(record)),
            Ok(Lookup::Absent) => Ok(None),
            Ok(Lookup::Unpacked) => {
                let reply = self
                    .backend
                    .run(|mut c| async move {
                        hmget(record_key, &codec::FIELDS)
                            .query_async::<Value>(&mut c)
                            .await
                    })
                    .await?;
                decode(reply)
            }
            Err(why) => Err(why),
        };
        Ok(read.unwrap_or_else(|why| {
            debug!(session = %key.tag(), why, "unreadable session record treated as absent");
            None
        }))
    }
}

/// A record's hash fields as [`SessionStore::create`] writes them (without the TTL, which
/// `create` sets beside them): `benches/seed.rs` writes these for `redis-cli --pipe`, so seeded
/// sessions are laid out exactly as doorman's own and read the same way.
#[cfg(feature = "bench-seed")]
pub fn hash_fields(record: &Record) -> Vec<(&'static str, String)> {
    encode(record)
}

/// Whether a lookup at `now` must run the touch script on `record`: to slide it (at most once
/// per `idle / 10`), or to delete it, expired. The script checks the clocks again on what Redis
/// holds then, so its answer (1: live, `seen` now) is the lookup's.
fn due_touch(record: &Record, now: u64, timeouts: &Timeouts) -> bool {
    !record.is_live(now, timeouts) || record.needs_touch(now, timeouts)
}

/// The lookup's read: `HMGET` of [`LOOKUP_FIELDS`](codec::LOOKUP_FIELDS), the packed record
/// and `seen` (see `codec` for why not every field).
fn read_record(record_key: &str) -> redis::Cmd {
    hmget(record_key, &codec::LOOKUP_FIELDS)
}

/// `HMGET` of `fields`, in their order: no field names on the wire back, and a missing record
/// is a row of nils.
///
/// Made at its final size: grown argument by argument, its two buffers were reallocated four
/// times (about 2,000 instructions per lookup under callgrind, `benches/callgrind.sh`'s redis
/// path).
fn hmget(record_key: &str, fields: &[&str]) -> redis::Cmd {
    const NAME: &str = "HMGET";
    let field_bytes: usize = fields.iter().map(|f| f.len()).sum();
    let mut cmd = redis::Cmd::with_capacity(
        2 + fields.len(),
        NAME.len() + record_key.len() + field_bytes,
    );
    cmd.arg(NAME).arg(record_key).arg(fields);
    cmd
}

impl SessionStore for RedisStore {
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let now = self.clock.now_millis();
        let ttl = record.ttl(now, &self.timeouts).as_millis().max(1);
        let hex = key.hex();
        let hex = &hex;
        // The index first: a record that exists must be reachable by revoke-all; an index
        // member without a record is harmless (revoke deletes nothing for it, trimming drops it).
        let user_key = self.keys.user(&record.user);
        let user_key = &user_key;
        self.backend
            .run(|mut c| async move {
                SCRIPTS
                    .index
                    .key(user_key)
                    .arg(hex)
                    .arg(record.absolute_expiry)
                    .arg(now)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        let record_key = self.keys.record(key);
        let record_key = &record_key;
        let fields = encode(record);
        let fields = &fields;
        // Waits for a replica (see `replicas`); on standalone and Sentinel that covers the index
        // too, written before on the same connection.
        self.backend
            .run(|c| async move {
                let mut call = SCRIPTS.create.key(record_key);
                call.arg(u64::try_from(ttl).unwrap_or(u64::MAX));
                for (name, value) in fields {
                    call.arg(*name).arg(value);
                }
                self.replicas
                    .write(c, record_key, &Write::Script(call))
                    .await
            })
            .await?;
        Ok(())
    }

    // The exchange with Redis is boxed (3.7 KB of state: the command, the connection's
    // future, the retry): unboxed, `Store`'s lookup future, and with it every request's, is
    // sized for it, also on the embedded store and for cache hits, and moved whole with the
    // request. One allocation per round trip instead.
    async fn lookup(&self, key: &SessionKey, now: u64) -> Result<Option<Record>, StoreError> {
        let Some(cache) = &self.cache else {
            return Box::pin(self.lookup_in_redis(key, now)).await;
        };
        let ticket = match cache.answer(key, now, &self.timeouts, || self.keys.records()) {
            Answer::Hit(record) => return Ok(Some(record)),
            Answer::Miss(ticket) => ticket,
        };
        let record = Box::pin(self.lookup_in_redis(key, now)).await?;
        if let Some(record) = &record {
            cache.fill(key, record, ticket, now);
        }
        Ok(record)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        // The user index is left alone (it would be a second key and a read of the record
        // first); it trims itself, and revoke-all tolerates members without a record.
        let record_key = self.keys.record(key);
        let record_key = &record_key;
        let deleted = self.durable_delete(record_key).await;
        // Forgotten locally whatever Redis said: a logout must not be answered from the cache.
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
        Ok(deleted? > 0)
    }

    async fn delete_family(&self, user: &str, family: &str) -> Result<usize, StoreError> {
        let user_key = self.keys.user(user);
        let members = self.index_members(&user_key).await?;
        let mut removed = Vec::new();
        // One key per command, as for revoke-all: the same on Cluster; a user has few sessions.
        for member in members {
            let in_family = member == family || {
                let link = self.member_field(&member, codec::LINK_FIELD).await?;
                link.and_then(|l| Link::from_field(&l))
                    .is_some_and(|l| l.family == family)
            };
            if !in_family {
                continue;
            }
            if self.delete_member(&member).await? {
                removed.push(member);
            }
        }
        self.forget_members(&user_key, &removed).await?;
        Ok(removed.len())
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let user_key = self.keys.user(user);
        let members = self.index_members(&user_key).await?;
        let mut deleted = 0usize;
        // One key per command, each bounded on its own: this works the same on Cluster, and a
        // user has few sessions.
        for member in &members {
            deleted += usize::from(self.delete_member(member).await?);
        }
        self.forget_members(&user_key, &members).await?;
        Ok(deleted)
    }

    async fn sealed_id_token(&self, key: &SessionKey) -> Result<Option<String>, StoreError> {
        let record_key = self.keys.record(key);
        let record_key = &record_key;
        self.backend
            .run(|mut c| async move {
                redis::cmd("HGET")
                    .arg(record_key)
                    .arg(codec::ID_TOKEN_FIELD)
                    .query_async::<Option<String>>(&mut c)
                    .await
            })
            .await
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<u64, StoreError> {
        let counter_key = self.keys.counter(counter);
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        // Once: a retried increment whose reply was lost would count one attempt twice.
        self.backend
            .run_once(|mut c| async move {
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
        let counter_key = self.keys.counter(counter);
        let counter_key = &counter_key;
        let n: Option<u64> = self
            .backend
            .run(
                |mut c| async move { redis::cmd("GET").arg(counter_key).query_async(&mut c).await },
            )
            .await?;
        Ok(n.unwrap_or(0))
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        let counter_key = self.keys.counter(counter);
        let counter_key = &counter_key;
        self.backend
            .run(|mut c| async move { redis::cmd("DEL").arg(counter_key).exec_async(&mut c).await })
            .await
    }

    async fn unhit(&self, counter: &str) -> Result<(), StoreError> {
        let counter_key = self.keys.counter(counter);
        self.backend
            .run_once(|mut c| async move {
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
        self.backend
            .run(|mut c| async move { redis::cmd("PING").exec_async(&mut c).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::session::TEST_TIMEOUTS as T;

    #[test]
    fn the_lookup_command_made_at_its_size_is_the_plain_hmget() {
        let key = "doorman:s:00ff";
        for fields in [&codec::LOOKUP_FIELDS[..], &codec::FIELDS[..]] {
            let mut plain = redis::cmd("HMGET");
            plain.arg(key).arg(fields);
            let sized = hmget(key, fields);
            assert_eq!(sized.get_packed_command(), plain.get_packed_command());
            assert_eq!(sized.args_iter().count(), 2 + fields.len());
        }
        assert_eq!(
            read_record(key).get_packed_command(),
            hmget(key, &codec::LOOKUP_FIELDS).get_packed_command()
        );
    }

    #[test]
    fn a_malformed_url_is_a_construction_error() {
        let target = RedisTarget::Standalone("http://nope".into());
        assert!(RedisStore::new(&target, "p:", T).is_err());
    }
}
