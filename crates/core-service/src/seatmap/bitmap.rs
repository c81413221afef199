//! Seat availability as a bitmap over seat indices, its version, and the
//! difference between two versions.

use base64::Engine as _;

/// One bit per seat index; set = the seat can be held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    bytes: Vec<u8>,
    len: u32,
}

impl Bitmap {
    /// `len` seats, none available.
    pub fn empty(len: u32) -> Self {
        Self {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
        }
    }

    /// Seats covered.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it covers no seat.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks seat `index` available; an index past the end is ignored.
    pub fn set(&mut self, index: u32) {
        if index < self.len {
            self.bytes[(index / 8) as usize] |= 1 << (index % 8);
        }
    }

    /// Whether seat `index` is available (false past the end).
    pub fn get(&self, index: u32) -> bool {
        index < self.len && self.bytes[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Available seats.
    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// The version: 64 bits of XXH3 over the length and the bytes, as 16
    /// hex digits. The same seats give the same version on every instance.
    pub fn version(&self) -> String {
        let mut input = Vec::with_capacity(self.bytes.len() + 4);
        input.extend_from_slice(&self.len.to_le_bytes());
        input.extend_from_slice(&self.bytes);
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&input))
    }

    /// Base64 (standard, padded) of the bytes, least significant bit first.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// Indices available here but not in `older` (freed), and available in
    /// `older` but not here (taken). `None` when the lengths differ.
    pub fn changes_since(&self, older: &Self) -> Option<(Vec<u32>, Vec<u32>)> {
        if self.len != older.len {
            return None;
        }
        let (mut freed, mut taken) = (Vec::new(), Vec::new());
        for (i, (now, then)) in self.bytes.iter().zip(&older.bytes).enumerate() {
            let changed = now ^ then;
            if changed == 0 {
                continue;
            }
            for bit in 0..8u32 {
                if changed & (1 << bit) != 0 {
                    let index = i as u32 * 8 + bit;
                    if now & (1 << bit) != 0 {
                        freed.push(index);
                    } else {
                        taken.push(index);
                    }
                }
            }
        }
        Some((freed, taken))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bitmap(len: u32, set: &[u32]) -> Bitmap {
        let mut b = Bitmap::empty(len);
        for i in set {
            b.set(*i);
        }
        b
    }

    #[test]
    fn bits_are_least_significant_first_and_past_the_end_is_ignored() {
        let b = bitmap(10, &[0, 9, 10, 99]);
        assert!(b.get(0) && b.get(9) && !b.get(1) && !b.get(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.to_base64(), "AQI=");
    }

    #[test]
    fn the_version_depends_on_the_seats_only() {
        assert_eq!(bitmap(10, &[1]).version(), bitmap(10, &[1]).version());
        assert_ne!(bitmap(10, &[1]).version(), bitmap(10, &[2]).version());
        assert_ne!(bitmap(8, &[]).version(), bitmap(9, &[]).version());
    }

    proptest! {
        #[test]
        fn applying_the_changes_to_the_older_map_gives_the_newer(
            len in 1u32..300,
            old in proptest::collection::vec(0u32..300, 0..100),
            new in proptest::collection::vec(0u32..300, 0..100),
        ) {
            let (older, newer) = (bitmap(len, &old), bitmap(len, &new));
            let (freed, taken) = newer.changes_since(&older).unwrap();
            let mut rebuilt = older.clone();
            for i in &freed {
                prop_assert!(!older.get(*i));
                rebuilt.set(*i);
            }
            for i in &taken {
                prop_assert!(older.get(*i) && !newer.get(*i));
                rebuilt.bytes[(*i / 8) as usize] &= !(1 << (*i % 8));
            }
            prop_assert_eq!(rebuilt, newer);
        }
    }
}
