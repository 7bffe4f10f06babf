//! Provider event ids, as the store keeps them.
//!
//! A key is kept as two 64-bit integers from its SHA-256 (channel and key
//! together): `slot`, the table's primary key, and `check`, compared when
//! `slot` is taken. Integers keep the table small (a retention window of
//! millions of keys is tens of MB) and a batch's keys sorted by `slot` touch
//! the table's pages in order. Two different keys sharing `slot` but not
//! `check` are both delivered (the second is simply not remembered); two
//! sharing all 128 bits would need about 2^64 keys.
//!
//! SHA-256 rather than a faster hash: the values are stored, so the function
//! must never change between versions or platforms.

use sha2::{Digest, Sha256};

/// A dedupe key's stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyHash {
    /// The table's primary key.
    pub slot: i64,
    /// Told apart from another key with the same slot.
    pub check: i64,
}

impl KeyHash {
    /// The stored form of `key` received on `channel`.
    pub fn of(channel: &str, key: &str) -> KeyHash {
        let digest = Sha256::new()
            .chain_update(channel.as_bytes())
            .chain_update([0x1f])
            .chain_update(key.as_bytes())
            .finalize();
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[i..i + 8]);
            i64::from_be_bytes(bytes)
        };
        KeyHash {
            slot: word(0),
            check: word(8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyHash;

    #[test]
    fn the_channel_is_part_of_the_key() {
        assert_eq!(KeyHash::of("slack", "Ev1"), KeyHash::of("slack", "Ev1"));
        assert_ne!(KeyHash::of("slack", "Ev1"), KeyHash::of("teams", "Ev1"));
        assert_ne!(KeyHash::of("sl", "ackEv1"), KeyHash::of("slack", "Ev1"));
    }

    #[test]
    fn the_stored_form_never_changes() {
        // Stored in databases: a change here would let redeliveries through.
        // (The first and second big-endian words of SHA-256("web\x1fevt-1").)
        assert_eq!(
            KeyHash::of("web", "evt-1"),
            KeyHash {
                slot: -2_457_246_472_280_801_388,
                check: -6_139_132_509_506_209_051,
            }
        );
    }
}
