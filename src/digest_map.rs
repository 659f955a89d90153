//! Maps keyed by a SHA-256 digest (a session store key), hashed by the digest's first eight
//! bytes instead of SipHash.
//!
//! SipHash is there to stop a client from choosing keys that pile into one bucket. These maps
//! only ever *hold* keys of records the store had (ids doorman drew from the OS's CSPRNG, then
//! hashed); a client can choose what it *looks up*, but a lookup cannot lengthen a probe
//! sequence, and the digests already in the map are uniformly spread. So on the hit path —
//! every authenticated request on the embedded store or the Redis cache — SipHash cost a few
//! hundred instructions for nothing.
//!
//! Only for maps whose keys the client cannot insert: a map filled from request input needs
//! the default hasher.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by a SHA-256 digest (`[u8; 32]` or a newtype deriving `Hash` over one), under
/// the rule of the module docs.
pub type DigestMap<K, V> = HashMap<K, V, BuildHasherDefault<DigestHasher>>;

/// Hashes a digest by its first eight bytes.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Any other input (never given here) would still hash, only not as well spread.
        match bytes.first_chunk::<8>() {
            Some(first) => self.0 ^= u64::from_ne_bytes(*first),
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The array's length prefix: always 32.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    struct Key([u8; 32]);

    #[test]
    fn a_digest_hashes_as_its_first_eight_bytes() {
        use std::hash::BuildHasher;
        let mut key = [7u8; 32];
        key[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
        let build = BuildHasherDefault::<DigestHasher>::default();
        assert_eq!(build.hash_one(Key(key)), 0x0102_0304_0506_0708);
        assert_eq!(build.hash_one(key), 0x0102_0304_0506_0708);
        let mut map: DigestMap<Key, u8> = DigestMap::default();
        map.insert(Key(key), 1);
        key[31] = 0;
        map.insert(Key(key), 2);
        assert_eq!(map.len(), 2, "keys alike in their first bytes stay apart");
        assert_eq!(map[&Key(key)], 2);
    }
}
