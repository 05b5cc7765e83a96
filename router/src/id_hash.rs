//! A cheap hasher for keys the router makes itself or reads from its config (event ids, journal
//! keys, route and destination names), where a keyed hash against flooding (SipHash, the
//! default) would only spend time: no sender chooses them.

use std::hash::{BuildHasherDefault, Hasher};

/// A map or set keyed by router-made ids, hashed by [`IdHasher`].
pub type IdHash = BuildHasherDefault<IdHasher>;

/// Hashes by folding each word in and one multiply per word (Fibonacci hashing, as FxHash
/// does). Event ids are UUIDv7, mostly random bits already; journal ids count up, and the
/// multiply spreads them to the high bits while keeping consecutive ids in distinct buckets.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FIBONACCI);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Names: a word at a time, the last one padded with zeros (`str` hashing appends a
        // 0xff byte, so "a" and "a\0" still differ).
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, word: u8) {
        self.add(u64::from(word));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_u128(&mut self, id: u128) {
        // The two halves (truncations on purpose), folded, then spread to the high bits too.
        let (high, low) = ((id >> 64) as u64, id as u64);
        self.add(low ^ high.rotate_left(32));
    }
}

/// 2^64 divided by the golden ratio, odd: multiplying by it spreads every bit upward.
const FIBONACCI: u64 = 0x9E37_79B9_7F4A_7C15;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;
    use crate::journal::Key;

    #[test]
    fn consecutive_journal_keys_fill_distinct_buckets_and_spread_to_the_high_bits() {
        let hash = |id| IdHash::default().hash_one(Key { space: 3, id });
        let low: HashSet<u64> = (1000..1000 + 4096).map(|id| hash(id) & 4095).collect();
        assert_eq!(low.len(), 4096, "one bucket each in a table of 4096");
        let high: HashSet<u64> = (1000..1000 + 4096).map(|id| hash(id) >> 57).collect();
        assert_eq!(high.len(), 128, "every 7-bit tag used");
        let other_space = IdHash::default().hash_one(Key { space: 4, id: 1000 });
        assert_ne!(other_space, hash(1000));
    }
}
