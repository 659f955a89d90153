//! Sessions: the secret id in the cookie, the record in the store, and the store seam.
//!
//! The cookie carries a [`SessionId`]: 32 bytes from the OS CSPRNG, base64url without padding
//! (43 characters). Stores never see it: they key records by its SHA-256, a [`SessionKey`], so
//! a leaked store dump or backup cannot be replayed as cookies. The id's `Debug` is redacted and
//! it has no `Display`, so it cannot end up in a log line by accident.
//!
//! A [`Record`] carries timestamps, and both clocks are checked against them on every lookup:
//! the idle clock slides (each use moves `last_seen`), the absolute expiry never moves. A store's
//! own expiry (a Redis TTL, the embedded sweep) only cleans up; it never decides validity.
//!
//! [`SessionStore`] is the small async seam both backends implement; [`Store`] is the concrete
//! choice made at start-up, so the rest of doorman calls one type without boxing futures.

pub(crate) mod cache;
pub mod embedded;
pub mod express;
pub mod live;
pub mod redis;
mod tracking;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
pub use crate::config::Timeouts;

/// The record format written by this build; readers refuse other versions (treated as absent).
pub const RECORD_VERSION: u8 = 1;

/// The secret session id, as carried in the cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh id: 256 bits straight from the operating system's CSPRNG.
    pub fn generate() -> Result<SessionId, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Random(e.to_string()))?;
        Ok(SessionId(bytes))
    }

    /// The length of a cookie value: 32 bytes in base64url, no padding.
    pub const COOKIE_LEN: usize = 43;

    /// Parse a cookie value: exactly [`Self::COOKIE_LEN`] base64url characters, no padding.
    /// Anything else is a malformed cookie, treated like an unknown one.
    pub fn parse(value: &str) -> Option<SessionId> {
        if value.len() != Self::COOKIE_LEN {
            return None;
        }
        // Into a buffer on the stack: every request with a cookie parses one. 43 characters
        // decode to 32 bytes; the room for a 33rd is what the decoder's size check asks.
        let mut bytes = [0u8; 33];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut bytes) {
            Ok(32) => {
                let mut id = [0u8; 32];
                id.copy_from_slice(&bytes[..32]);
                Some(SessionId(id))
            }
            _ => None,
        }
    }

    /// The cookie value. Only the cookie module should call this.
    pub fn to_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key the stores use: SHA-256 of the id.
    pub fn key(&self) -> SessionKey {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        SessionKey(key)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// SHA-256 of a [`SessionId`]: what stores key records by. Not a secret on its own (it cannot be
/// turned back into a cookie), but not logged whole either: [`SessionKey::tag`] is for logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// Lower-case hex, as used in Redis keys.
    pub fn hex(&self) -> String {
        crate::encoding::hex_lower(&self.0)
    }

    /// Parse [`SessionKey::hex`]'s output back (lower-case only, as written).
    pub fn from_hex(hex: &str) -> Option<SessionKey> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(SessionKey(key))
    }

    /// A short, non-reversible tag for logs (the first 8 hex digits of the key).
    pub fn tag(&self) -> String {
        self.log_tag().as_str().to_string()
    }

    /// [`tag`](Self::tag) without an allocation: what the access log keeps for every request
    /// with a session.
    pub fn log_tag(&self) -> SessionTag {
        let mut tag = [0u8; 8];
        crate::encoding::write_hex_lower(&mut tag, &self.0);
        SessionTag(tag)
    }
}

/// [`SessionKey::tag`] held inline: eight lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionTag([u8; 8]);

impl SessionTag {
    /// The tag's text.
    pub fn as_str(&self) -> &str {
        // Always ASCII hex digits ([`SessionKey::log_tag`]).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({}…)", self.tag())
    }
}

/// How a session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The login form, checked against the users file: the user must still be in it, and groups
    /// are read from it at request time.
    Login,
    /// An upstream login handoff (DESIGN.md §6): not tied to the users file; groups as handed off.
    Handoff,
    /// Not a session: a one-time sign-in code for another host (DESIGN.md §8), whose
    /// [`Link::code`] says for what. Never accepted as a session; a build that does not know
    /// this origin treats the record as unreadable, so it is never one there either.
    Code,
    /// Signed in with the OpenID Connect provider (DESIGN.md §10): not tied to the users file;
    /// groups as the ID token gave them.
    Oidc,
    /// Taken over from an express-session cookie (DESIGN.md §12): not tied to the users file;
    /// groups as the express session's `groups_field` gave them. [`Record::express`] names it.
    Express,
}

impl Origin {
    /// The name stores write.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Login => "login",
            Origin::Handoff => "handoff",
            Origin::Code => "code",
            Origin::Oidc => "oidc",
            Origin::Express => "express",
        }
    }

    /// [`as_str`](Origin::as_str) read back.
    pub fn parse(name: &str) -> Option<Origin> {
        match name {
            "login" => Some(Origin::Login),
            "handoff" => Some(Origin::Handoff),
            "code" => Some(Origin::Code),
            "oidc" => Some(Origin::Oidc),
            "express" => Some(Origin::Express),
            _ => None,
        }
    }
}

/// What ties a session to the login it came from, for signing in once across hosts (DESIGN.md
/// §8): every session made from one login shares its `family`, so a logout on any host ends
/// them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The store key of the login's own session, in hex.
    pub family: String,
    /// Set only on a one-time code ([`Origin::Code`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeFor>,
}

/// What a one-time code lets its host do: make a session of its own, like the login's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeFor {
    /// The host (normalised) the code is bound to: only its callback may use it.
    pub host: String,
    /// Where the callback sends the browser (an absolute URL on `host`, already validated).
    pub next: String,
    /// The origin of the login's session, which the new session takes.
    pub origin: Origin,
    /// The login session's absolute expiry: the new session never outlives it.
    pub session_expiry: u64,
}

impl Link {
    /// The one-field form the Redis store keeps it in: the family, then for a code its origin,
    /// session expiry, host and next, separated by newlines (none of them can hold one).
    pub fn to_field(&self) -> String {
        match &self.code {
            None => self.family.clone(),
            Some(c) => {
                let origin = c.origin.as_str();
                format!(
                    "{}\n{origin}\n{}\n{}\n{}",
                    self.family, c.session_expiry, c.host, c.next
                )
            }
        }
    }

    /// Read [`to_field`](Link::to_field)'s form back.
    pub fn from_field(field: &str) -> Option<Link> {
        let mut parts = field.splitn(5, '\n');
        let family = parts.next()?.to_string();
        let Some(origin) = parts.next() else {
            return Some(Link { family, code: None });
        };
        let origin = match Origin::parse(origin)? {
            Origin::Code => return None,
            origin => origin,
        };
        let session_expiry = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_string();
        let next = parts.next()?.to_string();
        Some(Link {
            family,
            code: Some(CodeFor {
                host,
                next,
                origin,
                session_expiry,
            }),
        })
    }
}

/// One session as stored. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`] when written.
    pub version: u8,
    /// Who the session belongs to. Shared: a cached record is cloned for every request that
    /// uses it, and this makes that clone copy no name.
    pub user: Arc<str>,
    /// Groups granted at creation (handoff sessions; login sessions read the users file).
    pub groups: Vec<String>,
    /// How the session was made.
    pub origin: Origin,
    /// When it was made.
    pub created: u64,
    /// Never extended.
    pub absolute_expiry: u64,
    /// The idle clock: moved forward on use (coalesced, so a crash can only shorten a session).
    pub last_seen: u64,
    /// The login this session (or code) came from, when it was made by signing in across
    /// hosts; `None` for a login's own session.
    /// Boxed: most sessions have none, and every lookup moves a `Record`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Box<Link>>,
    /// An OIDC session's ID token, sealed under the `[oidc]` state key,
    /// for logout's `id_token_hint`. Written with the record; lookups need not return it (the
    /// Redis store leaves it out of the per-request read), so logout reads it with
    /// [`SessionStore::sealed_id_token`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Box<str>>,
    /// For a session taken over from express-session ([`Origin::Express`]), the express
    /// session's id (the `connect.sid` cookie's, unsigned): logout and revoke delete the app's
    /// record by it, and a request whose `connect.sid` names this id is known to be the same
    /// user's without asking Redis. Not a secret: useless without the app's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub express: Option<Box<str>>,
}

impl Record {
    /// A new record for a session starting `now`.
    pub fn new(
        user: impl Into<Arc<str>>,
        groups: Vec<String>,
        origin: Origin,
        now: u64,
        timeouts: &Timeouts,
    ) -> Record {
        Record {
            version: RECORD_VERSION,
            user: user.into(),
            groups,
            origin,
            created: now,
            absolute_expiry: now.saturating_add(millis(timeouts.absolute)),
            last_seen: now,
            link: None,
            id_token: None,
            express: None,
        }
    }

    /// The family this session belongs to: its link's, or its own `key` for a login's own
    /// session.
    pub fn family(&self, key: &SessionKey) -> String {
        match &self.link {
            Some(link) => link.family.clone(),
            None => key.hex(),
        }
    }

    /// Whether the session is still valid at `now`: neither idle past `idle` nor past its
    /// absolute expiry.
    pub fn is_live(&self, now: u64, timeouts: &Timeouts) -> bool {
        self.version == RECORD_VERSION
            && now < self.absolute_expiry
            && now.saturating_sub(self.last_seen) < millis(timeouts.idle)
    }

    /// Whether a lookup at `now` should persist a new `last_seen`: at most once per
    /// `idle / 10`, so reads do not each pay a write.
    pub fn needs_touch(&self, now: u64, timeouts: &Timeouts) -> bool {
        now.saturating_sub(self.last_seen) >= millis(timeouts.idle) / 10
    }

    /// How long the store should keep the record from `now`: the idle clock, capped by the
    /// absolute expiry.
    pub fn ttl(&self, now: u64, timeouts: &Timeouts) -> Duration {
        let idle_left = self
            .last_seen
            .saturating_add(millis(timeouts.idle))
            .saturating_sub(now);
        let absolute_left = self.absolute_expiry.saturating_sub(now);
        Duration::from_millis(idle_left.min(absolute_left))
    }
}

/// Unix time now on the system clock, in milliseconds: for tools and tests. Request handling
/// reads the process's [`Clock`] instead, so tests can advance it.
pub fn now_millis() -> u64 {
    crate::clock::system_millis()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a store could not answer. Every variant fails closed: protected routes answer 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    /// The store could not be reached or refused the operation.
    Unavailable(String),
    #[error("session store timed out")]
    /// The store did not answer in time.
    Timeout,
    #[error("session store data is corrupt: {0}")]
    /// A stored record could not be read.
    Corrupt(String),
    #[error("the operating system's random source failed: {0}")]
    /// No session id could be made.
    Random(String),
}

/// What doorman asks of a session store. `Ok(None)` means "no valid session" (missing,
/// expired, or of another format version); `Err` means the store could not answer, and the
/// caller fails closed.
pub trait SessionStore: Send + Sync {
    /// Store a new session under `key`.
    fn create(
        &self,
        key: &SessionKey,
        record: &Record,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Fetch a live session and slide its idle clock, in one round trip: the record if it is
    /// live at `now` (expired ones are deleted and reported as `None`).
    fn lookup(
        &self,
        key: &SessionKey,
        now: u64,
    ) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;

    /// Delete one session (logout, rotation on login). Deleting a missing one is not an error;
    /// the answer says whether this call removed a record, so exactly one of two racing
    /// deletes of a one-time code learns it was the one.
    fn delete(&self, key: &SessionKey) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Delete every session of `user`; returns how many were deleted.
    fn delete_user(&self, user: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Delete every session and code of `user` in `family` (see [`Record::family`]): a logout
    /// on one host ends the sessions the same login made on the others. Returns how many.
    fn delete_family(
        &self,
        user: &str,
        family: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// The sealed ID token a session keeps for logout ([`Record::id_token`]); `None` when the
    /// session has none or is gone. Does not slide the idle clock.
    fn sealed_id_token(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Count one event under `counter` within a window starting at its first event, and return
    /// the count so far (login throttling). Counters expire with their window.
    fn hit(
        &self,
        counter: &str,
        window: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The current count of `counter` (0 when absent or expired), without counting.
    fn count(&self, counter: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Forget `counter` (a successful login clears its user+client failures). Resetting a
    /// missing counter is not an error.
    fn reset(&self, counter: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Take back one event [`hit`](SessionStore::hit) counted, in one operation: an attempt
    /// counted before it was checked that turned out not to be a failure. Never goes below
    /// zero, never creates a counter, and leaves the window where it is.
    fn unhit(&self, counter: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Open the store `[session]` configures. Redis connects lazily: a Redis that is down now
/// does not stop doorman (protected routes fail closed until it answers).
///
/// `clock` is the time the store judges expiry and counter windows against: the process's one
/// [`Clock`].
pub fn open(config: &crate::config::SessionConfig, clock: &Clock) -> Result<Store, StoreError> {
    use crate::config::StoreKind;
    match &config.store {
        StoreKind::Embedded { path } => embedded::EmbeddedStore::open(path, config.timeouts)
            .map(|store| Store::Embedded(store.with_clock(clock.clone()))),
        StoreKind::Redis(target) => {
            let store = redis::RedisStore::new(target, &config.key_prefix, config.timeouts)?
                .with_clock(clock.clone());
            if config.cache {
                store.with_cache(target).map(Store::Redis)
            } else {
                Ok(Store::Redis(store))
            }
        }
    }
}

/// The store chosen by `[session] store`. One per process, made at start-up: the size
/// difference between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Store {
    /// `store = "embedded"`.
    Embedded(embedded::EmbeddedStore),
    /// `store = "redis"`, `"redis_sentinel"` or `"redis_cluster"`.
    Redis(redis::RedisStore),
}

impl Store {
    /// The record of `key` when the store's in-memory cache answers it as is (the embedded
    /// store's, Redis's with `cache = true`: live, no touch due), with no future made: `None`
    /// means ask [`SessionStore::lookup`], which looks again. Every request whose session the
    /// cache holds fresh is answered here (on those stores, most authenticated requests);
    /// through the lookup's two nested futures (the enum's and the store's), the same hit cost
    /// about 150 instructions more (`benches/callgrind.sh`).
    pub fn fresh(&self, key: &SessionKey, now: u64) -> Option<Record> {
        match self {
            Store::Embedded(s) => s.fresh(key, now),
            Store::Redis(s) => s.fresh(key, now),
        }
    }

    /// The open long-lived exchanges of this store's sessions (DESIGN.md §11): deleting a
    /// session or a user's sessions through the store ends theirs.
    pub fn live(&self) -> &std::sync::Arc<live::Registry> {
        match self {
            Store::Embedded(s) => s.live(),
            Store::Redis(s) => &s.live,
        }
    }

    /// Start the store's background work on the calling runtime (a Redis store's connection
    /// driver and cache tracker), and export its figures on `metrics` (the Redis session
    /// cache's). The embedded store's upkeep (sweeper, control socket) is the server's: it
    /// lives and stops with the listeners.
    pub fn start(&self, metrics: &mut crate::metrics::Metrics) {
        metrics.register_live(self.live().stats());
        if let Store::Redis(redis) = self {
            redis.start_background();
            metrics.register_store_unreachable(redis.unreachable_gauge());
            if let Some(cache) = redis.session_cache() {
                metrics.register_session_cache(cache.stats());
            }
        }
    }
}

impl Store {
    /// The express-session ids of `user`'s sessions taken over from an express app: read
    /// before a revoke, which then deletes the app's records too (DESIGN.md §12).
    pub async fn express_ids(&self, user: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Embedded(s) => s.express_ids(user).await,
            Store::Redis(s) => s.express_ids(user).await,
        }
    }

    /// Look up the sessions of long-lived exchanges for their re-check (DESIGN.md §11), in
    /// one batch: answers in the order of `keys`, `None` for those no longer live. Like a
    /// lookup, it slides their idle clocks, which is how an open WebSocket counts as activity.
    /// The Redis store asks Redis itself in one pipeline (never its cache: this is what catches
    /// a change the cache was not told of); the embedded store answers from its own process.
    pub async fn recheck(
        &self,
        keys: &[SessionKey],
        now: u64,
    ) -> Result<Vec<Option<Record>>, StoreError> {
        match self {
            Store::Embedded(s) => {
                let mut records = Vec::with_capacity(keys.len());
                for key in keys {
                    records.push(s.lookup(key, now).await?);
                }
                Ok(records)
            }
            Store::Redis(s) => s.lookup_many(keys, now).await,
        }
    }
}

impl SessionStore for Store {
    async fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.create(key, record).await,
            Store::Redis(s) => s.create(key, record).await,
        }
    }

    async fn lookup(&self, key: &SessionKey, now: u64) -> Result<Option<Record>, StoreError> {
        match self {
            Store::Embedded(s) => s.lookup(key, now).await,
            Store::Redis(s) => s.lookup(key, now).await,
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted = match self {
            Store::Embedded(s) => s.delete(key).await,
            Store::Redis(s) => s.delete(key).await,
        };
        // Whatever the store answered: a session being deleted has ended.
        self.live().end_session(key, live::Ended::Logout);
        deleted
    }

    async fn delete_family(&self, user: &str, family: &str) -> Result<usize, StoreError> {
        let deleted = match self {
            Store::Embedded(s) => s.delete_family(user, family).await,
            Store::Redis(s) => s.delete_family(user, family).await,
        };
        // The registry does not know families: the re-check finds which sessions went (one
        // batch of lookups, for a logout across hosts).
        self.live().suspect_all();
        deleted
    }

    async fn delete_user(&self, user: &str) -> Result<usize, StoreError> {
        let deleted = match self {
            Store::Embedded(s) => s.delete_user(user).await,
            Store::Redis(s) => s.delete_user(user).await,
        };
        self.live().end_user(user, live::Ended::Revoked);
        deleted
    }

    async fn sealed_id_token(&self, key: &SessionKey) -> Result<Option<String>, StoreError> {
        match self {
            Store::Embedded(s) => s.sealed_id_token(key).await,
            Store::Redis(s) => s.sealed_id_token(key).await,
        }
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => s.hit(counter, window).await,
            Store::Redis(s) => s.hit(counter, window).await,
        }
    }

    async fn count(&self, counter: &str) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => s.count(counter).await,
            Store::Redis(s) => s.count(counter).await,
        }
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.reset(counter).await,
            Store::Redis(s) => s.reset(counter).await,
        }
    }

    async fn unhit(&self, counter: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.unhit(counter).await,
            Store::Redis(s) => s.unhit(counter).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.ping().await,
            Store::Redis(s) => s.ping().await,
        }
    }
}

/// Timeouts for unit tests that do not wait for either clock: 100 s idle, 1,000 s absolute.
#[cfg(test)]
pub(crate) const TEST_TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_secs(100),
    absolute: Duration::from_secs(1000),
};

#[cfg(test)]
mod tests {
    use super::*;

    use crate::session::TEST_TIMEOUTS as T;

    #[test]
    fn ids_round_trip_through_the_cookie_and_never_show_in_debug() {
        let id = SessionId::generate().unwrap();
        let value = id.to_cookie_value();
        assert_eq!(value.len(), 43);
        assert_eq!(SessionId::parse(&value), Some(id.clone()));
        let key = id.key();
        assert_eq!(key.tag(), key.hex()[..8]);
        assert_eq!(key.log_tag().as_str(), &key.hex()[..8]);
        for bad in [
            "",
            "A",
            &"A".repeat(42),
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
        // 43 characters carry 258 bits: the last two must be zero, as the encoder writes them.
        assert_eq!(SessionId::parse(&format!("{}B", "A".repeat(42))), None);
        assert_eq!(format!("{id:?}"), "SessionId(<redacted>)");
        assert!(!format!("{:?}", id.key()).contains(&value));
        assert_ne!(SessionId::generate().unwrap(), id);
    }

    #[test]
    fn malformed_cookie_values_are_not_ids() {
        for bad in [
            "",
            "short",
            &"A".repeat(42),
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
            &"+".repeat(43),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_the_sha256_of_the_id() {
        let id = SessionId([0u8; 32]);
        assert_eq!(
            id.key().hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(id.key().tag(), "66687aad");
        assert_eq!(SessionKey::from_hex(&id.key().hex()), Some(id.key()));
        for bad in ["", "66", &"G".repeat(64), &"A".repeat(64), &"a".repeat(66)] {
            assert_eq!(SessionKey::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn idle_slides_and_absolute_does_not() {
        let mut r = Record::new("alice", vec![], Origin::Login, 0, &T);
        assert!(r.is_live(99_999, &T));
        assert!(!r.is_live(100_000, &T), "idle");
        r.last_seen = 950_000;
        assert!(r.is_live(999_999, &T));
        assert!(!r.is_live(1_000_000, &T), "absolute");
        assert_eq!(
            r.ttl(960_000, &T),
            Duration::from_millis(40_000),
            "capped by absolute"
        );
        r.last_seen = 0;
        assert_eq!(r.ttl(10_000, &T), Duration::from_millis(90_000));
    }

    #[test]
    fn touches_are_coalesced_to_a_tenth_of_idle() {
        let r = Record::new("alice", vec![], Origin::Login, 0, &T);
        assert!(!r.needs_touch(9_999, &T));
        assert!(r.needs_touch(10_000, &T));
    }

    #[test]
    fn links_round_trip_through_their_one_field_form() {
        let family = Link {
            family: "ab".repeat(32),
            code: None,
        };
        assert_eq!(Link::from_field(&family.to_field()), Some(family));
        let code = Link {
            family: "cd".repeat(32),
            code: Some(CodeFor {
                host: "b.test".into(),
                next: "https://b.test/x?y=1#z".into(),
                origin: Origin::Handoff,
                session_expiry: 1_700_000_000_000,
            }),
        };
        assert_eq!(Link::from_field(&code.to_field()), Some(code));
        assert_eq!(Link::from_field("ab\ncode\n1\nh\nn"), None);
        assert_eq!(Link::from_field("ab\nlogin\nsoon\nh\nn"), None);
        assert_eq!(Link::from_field("ab\nlogin\n1\nh"), None);
    }

    #[test]
    fn other_format_versions_are_not_live() {
        let mut r = Record::new("alice", vec![], Origin::Login, 0, &T);
        r.version = 2;
        assert!(!r.is_live(1, &T));
    }
}
