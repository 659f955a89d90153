//! Bulk insertion, for benchmarks: `benches/seed.rs` fills a store with a million sessions to
//! measure whether lookups slow down as the store grows (issue 7).
//!
//! Inserting through [`SessionStore::create`](super::SessionStore::create) costs one durable
//! transaction (an fsync) per session, hours for a million. This writes many records in one
//! transaction instead, through the same tables and the same record encoding as `create`, so a
//! seeded store has exactly the layout doorman reads. Doorman itself never calls it, so it is
//! compiled only with the `bench-seed` cargo feature (which the seeder requires) and for the
//! unit tests.

use redb::Durability;

use super::{encode, unavailable, EmbeddedStore, SESSIONS, USERS};
use crate::session::{Record, SessionKey, StoreError};

impl EmbeddedStore {
    /// Write `records` (and their user-index entries) in one durable transaction; returns how
    /// many were written. A record already stored under a key is replaced, but unlike `create`
    /// its old user's index entry is left for the sweep: seeding writes fresh keys. Blocking:
    /// call it off the async runtime, and not while a doorman holds the file.
    pub fn insert_many(
        &self,
        records: impl IntoIterator<Item = (SessionKey, Record)>,
    ) -> Result<usize, StoreError> {
        let inner = &self.inner;
        let mut txn = inner.db.begin_write().map_err(unavailable)?;
        txn.set_durability(Durability::Immediate)
            .map_err(unavailable)?;
        let mut written = 0;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
            let mut users = txn.open_multimap_table(USERS).map_err(unavailable)?;
            for (key, record) in records {
                let bytes = encode(&record)?;
                sessions
                    .insert(&key.0, bytes.as_slice())
                    .map_err(unavailable)?;
                users
                    .insert(record.user.as_ref(), &key.0)
                    .map_err(unavailable)?;
                written += 1;
            }
        }
        txn.commit().map_err(unavailable)?;
        // Nothing read before this may be served from memory after it.
        let mut cache = inner.cache();
        cache.map.clear();
        cache.epoch = cache.epoch.wrapping_add(1);
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::session::embedded::EmbeddedStore;
    use crate::session::{now_millis, Origin, Record, SessionId, SessionStore, Timeouts};

    #[tokio::test]
    async fn seeded_sessions_read_back_like_created_ones_and_revoke_reaches_them() {
        let dir = crate::scratch::Scratch::new("emb-seed");
        let t = Timeouts {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(600),
        };
        let store = EmbeddedStore::open(&dir.join("sessions.db"), t).unwrap();
        let now = now_millis();
        let seeded: Vec<_> = (0..50)
            .map(|i| {
                let key = SessionId::generate().unwrap().key();
                let user = format!("user{}", i % 5);
                (key, Record::new(user, vec![], Origin::Handoff, now, &t))
            })
            .collect();
        assert_eq!(store.insert_many(seeded.clone()).unwrap(), 50);

        for (key, record) in &seeded {
            assert_eq!(store.lookup(key, now).await.unwrap().as_ref(), Some(record));
        }
        // The user index was written too: revoke-all finds every seeded session of a user.
        assert_eq!(store.delete_user("user3").await.unwrap(), 10);
        assert_eq!(store.lookup(&seeded[3].0, now).await.unwrap(), None);
        drop(store);
    }
}
