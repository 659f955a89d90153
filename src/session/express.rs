//! Taking over an express-session app's sessions (DESIGN.md §12), so putting doorman in front of
//! the tutorial's Express app logs nobody out.
//!
//! The app left, per logged-in browser, a `connect.sid` cookie `s:<id>.<sig>` (percent-encoded
//! by the `cookie` package), where `sig` is base64 (no padding) of HMAC-SHA256 of `<id>` under
//! the app's secret, and a JSON record `{prefix}<id>` in Redis (connect-redis). A request that
//! carries no doorman session but exactly one such cookie is served as the record's user:
//!
//! 1. The signature is checked first, against every configured secret (ring's HMAC verify,
//!    constant time). A cookie that does not verify costs no Redis round trip.
//! 2. The take-over record `{key_prefix}x:{hex(sha256(id))}` says whether this express session
//!    was taken over already. It holds the doorman session id, sealed (ChaCha20-Poly1305)
//!    under a key derived (HKDF-SHA256) from the whole `connect.sid` value, so a store dump
//!    reveals no session id, and only the cookie's holder can open it. Taken over and still
//!    live: that session is the answer (concurrent first requests share it). Taken over and
//!    ended (logout, revoke, expiry): nothing — the old cookie never mints a new session.
//! 3. Otherwise the app's record is read (`GET` and `PTTL` in one round trip): its
//!    `user_field` must be a non-empty string or an integer, and its `cookie.expires`, when
//!    present, in the future. A new session is made (origin `express`, groups from
//!    `groups_field` when it is a list of strings, absolute expiry the earlier of the app's
//!    and doorman's), and claimed with `SET NX` on the take-over record (with the app
//!    record's TTL). Losing that race deletes the new session and takes the winner's.
//!
//! Anything unexpected about the old cookie or record is "no session", never an error; only
//! a Redis that does not answer is (the caller fails closed on protected routes).
//!
//! The app's Redis is the store's own (`store = "redis"`) or `[session.express] redis`; the
//! take-over records live there too, under doorman's key prefix.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ring::{hkdf, hmac};
use serde_json::Value;
use tracing::debug;

use super::redis::RedisStore;
use super::{Origin, Record, SessionId, SessionStore, Store, StoreError, Timeouts};
use crate::config::ExpressConfig;
use crate::seal::Sealer;

/// HKDF salt of the take-over record's sealing key (a fixed, versioned label).
const SEAL_SALT: &[u8] = b"doorman express take-over v1";

/// What doorman reads of an express-session record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSession {
    /// `user_field`, as a string.
    pub user: String,
    /// `groups_field`, when it is a list of strings.
    pub groups: Vec<String>,
    /// `cookie.expires`, Unix milliseconds, when the cookie has one.
    pub expires: Option<u64>,
}

/// What [`Bridge::take_over`] made of the app's cookie.
#[derive(Debug)]
pub enum TakeOver {
    /// The doorman session that stands for it (made now, or by an earlier take-over).
    Session(SessionId, Record),
    /// It was taken over, and that session has ended (logout, revoke, expiry): the cookie is
    /// spent, and the browser may as well forget it.
    Ended,
    /// Nothing to take over (see the module docs): the request goes on without a session.
    No,
}

/// `[session.express]` at run time: the secrets as HMAC keys and the app's Redis.
pub struct Bridge {
    keys: Vec<hmac::Key>,
    config: ExpressConfig,
    redis: RedisStore,
    /// Doorman's `key_prefix`: take-over records are `{key_prefix}x:…`.
    key_prefix: String,
    timeouts: Timeouts,
}

impl Bridge {
    /// The bridge for `config`, reading the app's records through `store` when it is Redis and
    /// the config names no Redis of its own (then a connection is made lazily).
    pub fn new(
        config: &ExpressConfig,
        store: &Store,
        key_prefix: &str,
        timeouts: Timeouts,
    ) -> Result<Bridge, StoreError> {
        let redis = match (&config.redis, store) {
            (Some(target), _) => RedisStore::new(target, key_prefix, timeouts)?,
            (None, Store::Redis(redis)) => redis.clone(),
            (None, Store::Embedded(_)) => {
                return Err(StoreError::Unavailable(
                    "[session.express] needs a Redis: store = \"redis\", or redis in the table"
                        .into(),
                ))
            }
        };
        Ok(Bridge {
            keys: config
                .secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes()))
                .collect(),
            config: config.clone(),
            redis,
            key_prefix: key_prefix.to_string(),
            timeouts,
        })
    }

    /// The app's cookie name (`connect.sid`).
    pub fn cookie_name(&self) -> &str {
        &self.config.cookie_name
    }

    /// Whether the app's cookie is passed on to it.
    pub fn forward_cookie(&self) -> bool {
        self.config.forward_cookie
    }

    /// The express session id a cookie value names, if its signature verifies under one of
    /// the secrets. `value` is as the browser sent it (percent-encoded).
    pub fn verify(&self, value: &str) -> Option<String> {
        let decoded = decode_value(value)?;
        let (id, sig) = split_signed(&decoded)?;
        let sig = STANDARD_NO_PAD.decode(sig).ok()?;
        self.keys
            .iter()
            .any(|key| hmac::verify(key, id.as_bytes(), &sig).is_ok())
            .then(|| id.to_string())
    }

    /// Read the app's record of `id`: what it says, and its TTL. `None` when missing,
    /// unreadable, without a user, or expired at `now`.
    async fn app_session(
        &self,
        id: &str,
        now: u64,
    ) -> Result<Option<(AppSession, Option<u64>)>, StoreError> {
        let key = format!("{}{id}", self.config.prefix);
        let Some((json, ttl)) = self.redis.get_foreign(&key).await? else {
            return Ok(None);
        };
        Ok(parse_record(&json, &self.config, now).map(|s| (s, ttl)))
    }

    /// Serve a request that carries no doorman session but the app's cookie `value` (see the
    /// module docs). `Err` only when Redis or the store could not answer.
    pub async fn take_over(
        &self,
        store: &Store,
        value: &str,
        now: u64,
    ) -> Result<TakeOver, StoreError> {
        let Some(id) = self.verify(value) else {
            return Ok(TakeOver::No);
        };
        let x_key = self.take_over_key(&id);
        let Some(sealer) = sealer_for(value, &x_key) else {
            return Ok(TakeOver::No);
        };
        // Twice at most: a lost race reads the winner's record on the second pass.
        for _ in 0..2 {
            if let Some((sealed, _)) = self.redis.get_foreign(&x_key).await? {
                return Ok(
                    match self
                        .taken(store, &sealer, &x_key, &sealed, &id, now)
                        .await?
                    {
                        Some((session, record)) => TakeOver::Session(session, record),
                        None => TakeOver::Ended,
                    },
                );
            }
            let Some((app, ttl)) = self.app_session(&id, now).await? else {
                return Ok(TakeOver::No);
            };
            let new = SessionId::generate()?;
            let mut record =
                Record::new(app.user, app.groups, Origin::Express, now, &self.timeouts);
            if let Some(expires) = app.expires {
                record.absolute_expiry = record.absolute_expiry.min(expires);
            }
            record.express = Some(id.clone().into_boxed_str());
            store.create(&new.key(), &record).await?;
            let Some(sealed) = sealer.seal(&new_bytes(&new), x_key.as_bytes()) else {
                return Ok(TakeOver::No);
            };
            let keep = ttl
                .map(Duration::from_millis)
                .unwrap_or(self.timeouts.absolute);
            if self.redis.set_foreign_once(&x_key, &sealed, keep).await? {
                debug!(session = %new.key().tag(), "express session taken over");
                return Ok(TakeOver::Session(new, record));
            }
            // Another request took it over first: ours goes, theirs is the answer.
            store.delete(&new.key()).await?;
        }
        Ok(TakeOver::No)
    }

    /// An express session taken over before: its doorman session, while it lives.
    async fn taken(
        &self,
        store: &Store,
        sealer: &Sealer,
        x_key: &str,
        sealed: &[u8],
        id: &str,
        now: u64,
    ) -> Result<Option<(SessionId, Record)>, StoreError> {
        let opened = std::str::from_utf8(sealed)
            .ok()
            .and_then(|s| sealer.open(s, x_key.as_bytes()));
        let Some(session) = opened.and_then(|bytes| id_from_bytes(&bytes)) else {
            return Ok(None);
        };
        Ok(store
            .lookup(&session.key(), now)
            .await?
            .filter(|r| r.origin == Origin::Express && r.express.as_deref() == Some(id))
            .map(|record| (session, record)))
    }

    /// Whether the app's cookie `value` may be forwarded beside a session of `record`: it is
    /// the cookie that session was taken over from (no round trip), or it verifies and its
    /// record names the same user. A cookie that names someone else, or no one, is not.
    pub async fn same_user(
        &self,
        value: &str,
        record: &Record,
        now: u64,
    ) -> Result<bool, StoreError> {
        let presented = decode_value(value)
            .as_deref()
            .and_then(split_signed)
            .map(|(id, _)| id.to_string());
        if presented.is_some() && presented.as_deref() == record.express.as_deref() {
            return Ok(true);
        }
        let Some(id) = self.verify(value) else {
            return Ok(false);
        };
        Ok(self
            .app_session(&id, now)
            .await?
            .is_some_and(|(app, _)| *app.user == *record.user))
    }

    /// Add to a response's `headers` the `Set-Cookie` that expires the app's cookie in the
    /// browser (a logout, or a cookie whose session has ended since its take-over).
    pub fn expire_cookie(&self, headers: &mut http::HeaderMap) {
        let expired = format!(
            "{}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly",
            self.config.cookie_name
        );
        if let Ok(value) = http::HeaderValue::from_str(&expired) {
            headers.append(http::header::SET_COOKIE, value);
        }
    }

    /// Delete the app's record of the express session `id` (logout, revoke): the old cookie
    /// then names nothing, whatever happens to the take-over record.
    pub async fn forget(&self, id: &str) -> Result<(), StoreError> {
        self.redis
            .delete_foreign(&format!("{}{id}", self.config.prefix))
            .await
            .map(|_| ())
    }

    /// [`forget`](Bridge::forget) each of `ids` (a revoke's): a failure is logged, not
    /// returned, since the sessions are gone already and the take-over records keep the old
    /// cookies from making new ones.
    pub async fn forget_all(&self, ids: &[String]) {
        for id in ids {
            if let Err(error) = self.forget(id).await {
                tracing::warn!(%error, "revoke: an express-session record could not be deleted; it expires on its own");
            }
        }
    }

    fn take_over_key(&self, id: &str) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        format!(
            "{}x:{}",
            self.key_prefix,
            crate::encoding::hex_lower(digest.as_ref())
        )
    }
}

/// The sealer for one take-over record: its key derived from the whole cookie value (HKDF-
/// SHA256, the record's key as info), so only the cookie's holder can open it.
fn sealer_for(value: &str, x_key: &str) -> Option<Sealer> {
    let info = [x_key.as_bytes()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT).extract(value.as_bytes());
    let okm = prk.expand(&info, hkdf::HKDF_SHA256).ok()?;
    let mut key = [0u8; 32];
    okm.fill(&mut key).ok()?;
    Sealer::new(&key)
}

fn new_bytes(id: &SessionId) -> [u8; 32] {
    id.0
}

fn id_from_bytes(bytes: &[u8]) -> Option<SessionId> {
    <[u8; 32]>::try_from(bytes).ok().map(SessionId)
}

/// The cookie value percent-decoded (the `cookie` package encodes `s:` as `s%3A`).
fn decode_value(value: &str) -> Option<String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}

/// `s:<id>.<sig>` → (`id`, `sig`), split at the last dot as cookie-signature does.
fn split_signed(decoded: &str) -> Option<(&str, &str)> {
    let signed = decoded.strip_prefix("s:")?;
    let (id, sig) = signed.rsplit_once('.')?;
    (!id.is_empty() && !sig.is_empty()).then_some((id, sig))
}

/// An express-session record (JSON) as doorman reads it; `None` for anything it cannot honour.
pub fn parse_record(json: &[u8], config: &ExpressConfig, now: u64) -> Option<AppSession> {
    let record: Value = serde_json::from_slice(json).ok()?;
    let user = match record.get(&config.user_field)? {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    let groups = config
        .groups_field
        .as_ref()
        .and_then(|field| record.get(field))
        .and_then(Value::as_array)
        .filter(|items| items.iter().all(Value::is_string))
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let expires = match record.get("cookie").and_then(|c| c.get("expires")) {
        None | Some(Value::Null) => None,
        Some(Value::String(when)) => Some(iso_millis(when)?),
        Some(_) => return None,
    };
    if expires.is_some_and(|e| e <= now) {
        return None;
    }
    Some(AppSession {
        user,
        groups,
        expires,
    })
}

/// `YYYY-MM-DDTHH:MM:SS(.sss)Z` (what JavaScript's `Date.toJSON` writes, the only form
/// express-session stores) as Unix milliseconds. Anything else is `None`.
fn iso_millis(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let millis = match s.get(19..)? {
        "Z" => 0,
        rest => {
            let frac = rest.strip_prefix('.')?.strip_suffix('Z')?;
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            format!("{frac:0<3}")[..3].parse().ok()?
        }
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExpressConfig {
        ExpressConfig {
            secrets: vec!["keyboard cat".into(), "old secret".into()],
            cookie_name: "connect.sid".into(),
            prefix: "sess:".into(),
            user_field: "userId".into(),
            groups_field: Some("roles".into()),
            forward_cookie: true,
            redis: None,
        }
    }

    /// What cookie-signature's `sign` makes of `id` under `secret`, percent-encoded as the
    /// cookie package writes it.
    fn signed(id: &str, secret: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let sig = STANDARD_NO_PAD.encode(hmac::sign(&key, id.as_bytes()));
        format!("s%3A{id}.{}", sig.replace('+', "%2B").replace('/', "%2F"))
    }

    fn bridge() -> Bridge {
        let c = config();
        Bridge {
            keys: c
                .secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes()))
                .collect(),
            redis: RedisStore::new(
                &crate::config::RedisTarget::Standalone("redis://127.0.0.1:1/0".into()),
                "dm:",
                crate::session::TEST_TIMEOUTS,
            )
            .unwrap(),
            config: c,
            key_prefix: "dm:".into(),
            timeouts: crate::session::TEST_TIMEOUTS,
        }
    }

    #[test]
    fn cookies_verify_under_any_secret_and_nothing_else() {
        let b = bridge();
        let id = "kBz3pA1Xw0E2m7C9yR5tV8uN4qL6hJ0d";
        assert_eq!(b.verify(&signed(id, "keyboard cat")).as_deref(), Some(id));
        assert_eq!(
            b.verify(&signed(id, "old secret")).as_deref(),
            Some(id),
            "rotation"
        );
        assert_eq!(b.verify(&signed(id, "another")), None);
        let good = signed(id, "keyboard cat");
        let tampered = good.replacen("kBz3", "kBz4", 1);
        assert_eq!(b.verify(&tampered), None);
        let flipped = format!("{}A", &good[..good.len() - 1]);
        assert_eq!(b.verify(&flipped), None);
        for bad in ["", "s%3A", &format!("{id}.abc"), "s%3Anodot", "s:.x", "%zz"] {
            assert_eq!(b.verify(bad), None, "{bad:?}");
        }
        // Unencoded (some clients send the colon as is) verifies too.
        assert_eq!(b.verify(&good.replace("%3A", ":")).as_deref(), Some(id));
    }

    #[test]
    fn records_are_honoured_only_with_a_user_and_a_future_expiry() {
        let c = config();
        let now = iso_millis("2026-12-05T00:00:00.000Z").unwrap();
        let parse = |json: &str| parse_record(json.as_bytes(), &c, now);
        let future = r#""cookie":{"originalMaxAge":3600000,"expires":"2026-12-05T01:00:00.000Z","httpOnly":true,"path":"/"}"#;
        assert_eq!(
            parse(&format!(
                r#"{{{future},"userId":42,"roles":["admin","staff"]}}"#
            )),
            Some(AppSession {
                user: "42".into(),
                groups: vec!["admin".into(), "staff".into()],
                expires: Some(now + 3_600_000),
            })
        );
        assert_eq!(
            parse(
                r#"{"cookie":{"originalMaxAge":null,"expires":null},"userId":"alice","roles":[1]}"#
            ),
            Some(AppSession {
                user: "alice".into(),
                groups: vec![],
                expires: None,
            }),
            "a browser-session cookie; roles that are not all strings give no groups"
        );
        for bad in [
            format!(r#"{{{future}}}"#),
            format!(r#"{{{future},"userId":""}}"#),
            format!(r#"{{{future},"userId":1.5}}"#),
            format!(r#"{{{future},"userId":["a"]}}"#),
            r#"{"cookie":{"expires":"2026-12-04T23:59:59.999Z"},"userId":"a"}"#.into(),
            r#"{"cookie":{"expires":"tomorrow"},"userId":"a"}"#.into(),
            "not json".into(),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn iso_dates_are_read_exactly() {
        assert_eq!(iso_millis("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(iso_millis("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(
            iso_millis("2026-12-05T01:02:03.456Z"),
            Some(1_796_432_523_456)
        );
        for bad in [
            "",
            "2026-12-05",
            "2026-13-05T00:00:00Z",
            "2026-12-05T00:00:00+01:00",
            "2026-12-05T00:00:00.Z",
        ] {
            assert_eq!(iso_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_sealing_key_depends_on_the_whole_cookie() {
        let x = "dm:x:00";
        let a = sealer_for("s:id.sigA", x).unwrap();
        let b = sealer_for("s:id.sigB", x).unwrap();
        let sealed = a.seal(&[7u8; 32], x.as_bytes()).unwrap();
        assert_eq!(a.open(&sealed, x.as_bytes()), Some(vec![7u8; 32]));
        assert_eq!(b.open(&sealed, x.as_bytes()), None);
        assert!(!sealed.contains("BwcH"), "no plain id in the record");
    }
}
