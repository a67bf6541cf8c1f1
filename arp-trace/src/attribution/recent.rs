//! What the joiner remembers per neighbour until that neighbour fails: most neighbours never
//! fail (they resolve), so nothing would ever take their entries out. [`Recent`] keeps the
//! newest ones within a bound instead, without forgetting the newest at once when it fills.

use std::hash::Hash;

type Map<K, V> = foldhash::HashMap<K, V>;

/// A map of at most `2 × cap` entries in two generations: when the newer fills, the older
/// is let go (handed back to the caller, who counts what it held) and the newer becomes the
/// older. A key used in the last `cap` insertions is always still there; a map cleared when
/// full would forget the entry inserted just before.
pub struct Recent<K, V> {
    new: Map<K, V>,
    old: Map<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    pub fn new(cap: usize) -> Self {
        Recent {
            new: Map::default(),
            old: Map::default(),
            cap,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.new.len() + self.old.len()
    }

    /// Sets `k` to `v`; returns what was let go to make room, if anything was.
    pub fn insert(&mut self, k: K, v: V) -> Option<Map<K, V>> {
        self.old.remove(&k);
        let gone = self.make_room(&k);
        self.new.insert(k, v);
        gone
    }

    /// The value of `k`, inserted with `V::default()` if absent, and what was let go to make
    /// room for it, if anything was.
    pub fn get_or_default(&mut self, k: K) -> (&mut V, Option<Map<K, V>>)
    where
        V: Default,
    {
        let v = self.old.remove(&k);
        let gone = self.make_room(&k);
        let slot = self.new.entry(k).or_insert_with(|| v.unwrap_or_default());
        (slot, gone)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.new.remove(k).or_else(|| self.old.remove(k))
    }

    fn make_room(&mut self, k: &K) -> Option<Map<K, V>> {
        if self.new.len() < self.cap || self.new.contains_key(k) {
            return None;
        }
        let newer = std::mem::take(&mut self.new);
        let gone = std::mem::replace(&mut self.old, newer);
        (!gone.is_empty()).then_some(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_cap_keys_and_hands_back_what_it_lets_go() {
        let mut r = Recent::new(4);
        let mut gone = Vec::new();
        for k in 0..20u32 {
            if let Some(g) = r.insert(k, k * 10) {
                gone.extend(g.into_keys());
            }
            assert!(r.len() <= 8, "{}", r.len());
            // The last 4 inserted are all there, whatever the rotation just did.
            for recent in k.saturating_sub(3)..=k {
                assert_eq!(r.remove(&recent).map(|v| v / 10), Some(recent));
                r.insert(recent, recent * 10);
            }
        }
        gone.sort();
        // Everything inserted is either still held or was handed back, never both or neither.
        let mut held: Vec<u32> = (0..20).filter(|k| r.remove(k).is_some()).collect();
        held.extend(&gone);
        held.sort();
        assert_eq!(held, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_key_of_the_older_generation_moves_up_with_its_value() {
        let mut r: Recent<u32, Vec<u32>> = Recent::new(2);
        r.get_or_default(1).0.push(1);
        r.get_or_default(2).0.push(2);
        // 3 rotates: 1 and 2 become the older generation.
        assert!(r.get_or_default(3).1.is_none());
        r.get_or_default(1).0.push(11);
        // 4 rotates again: {3, 1} older, the old {2} let go.
        let (_, gone) = r.get_or_default(4);
        assert_eq!(
            gone.map(|g| g.into_keys().collect::<Vec<_>>()),
            Some(vec![2])
        );
        assert_eq!(r.remove(&1), Some(vec![1, 11]));
    }
}
