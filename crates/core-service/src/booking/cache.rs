//! In-process caches of the booking layer: seat maps and available-seat
//! counts (short-lived, dropped on every change this process makes) and
//! sale rules (performances are never edited).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant},
};

use crate::{api::SeatMap, domain::PerformanceId, store::catalog::SaleRules};

/// Entries kept when a map grows past this many: only fresh ones.
const PRUNE_ABOVE: usize = 1_024;

/// Values by performance with the time each was read. A `None` value is a
/// tombstone left by an invalidation, so a read that started before the
/// change cannot store its stale result.
#[derive(Debug)]
struct Timed<V> {
    entries: Mutex<HashMap<i64, (Instant, Option<V>)>>,
}

impl<V: Clone> Timed<V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, Option<V>)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: PerformanceId, ttl: Duration) -> Option<V> {
        self.lock()
            .get(&id.get())
            .filter(|(at, _)| at.elapsed() < ttl)
            .and_then(|(_, value)| value.clone())
    }

    fn put(&self, id: PerformanceId, fetched_at: Instant, value: V, ttl: Duration) {
        let mut entries = self.lock();
        // Keep the map small: drop stale entries when it grows.
        if entries.len() > PRUNE_ABOVE {
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        // An invalidation that raced with this read left a newer tombstone;
        // the read started before it must not win.
        match entries.get(&id.get()) {
            Some((at, _)) if *at > fetched_at => {}
            _ => {
                entries.insert(id.get(), (fetched_at, Some(value)));
            }
        }
    }

    fn tombstone(&self, id: PerformanceId, at: Instant) {
        self.lock().insert(id.get(), (at, None));
    }
}

/// Seat maps and available-seat counts by performance, each valid for
/// `ttl` after it was read, and dropped whenever this process changes a
/// seat of the performance.
#[derive(Debug)]
pub(super) struct SeatCache {
    ttl: Duration,
    maps: Timed<Arc<SeatMap>>,
    counts: Timed<i64>,
}

impl SeatCache {
    /// A cache whose entries live `ttl` (zero disables caching).
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            maps: Timed::new(),
            counts: Timed::new(),
        }
    }

    pub(super) fn get(&self, id: PerformanceId) -> Option<Arc<SeatMap>> {
        self.maps.get(id, self.ttl)
    }

    pub(super) fn put(&self, id: PerformanceId, fetched_at: Instant, map: Arc<SeatMap>) {
        if !self.ttl.is_zero() {
            self.maps.put(id, fetched_at, map, self.ttl);
        }
    }

    pub(super) fn get_count(&self, id: PerformanceId) -> Option<i64> {
        self.counts.get(id, self.ttl)
    }

    pub(super) fn put_count(&self, id: PerformanceId, fetched_at: Instant, count: i64) {
        if !self.ttl.is_zero() {
            self.counts.put(id, fetched_at, count, self.ttl);
        }
    }

    /// Drops the cached map and count of `id` after a change.
    pub(super) fn invalidate(&self, id: PerformanceId) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        self.counts.tombstone(id, now);
        self.maps.tombstone(id, now);
    }
}

/// Sale rules by performance. Performances are never edited, so entries do
/// not expire.
#[derive(Debug, Default)]
pub(super) struct RulesCache {
    entries: RwLock<HashMap<i64, SaleRules>>,
}

impl RulesCache {
    pub(super) fn get(&self, id: PerformanceId) -> Option<SaleRules> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id.get())
            .copied()
    }

    pub(super) fn put(&self, id: PerformanceId, rules: SaleRules) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > 100_000 {
            entries.clear();
        }
        entries.insert(id.get(), rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(available: i64) -> Arc<SeatMap> {
        Arc::new(SeatMap {
            performance_id: 1,
            seats_available: available,
            seats: vec![],
        })
    }

    #[test]
    fn cached_maps_expire_and_invalidate() {
        let cache = SeatCache::new(Duration::from_millis(50));
        let id = PerformanceId::new(1).unwrap();
        cache.put(id, Instant::now(), map(3));
        assert_eq!(cache.get(id).unwrap().seats_available, 3);
        cache.invalidate(id);
        assert!(cache.get(id).is_none());
        let before_invalidation = Instant::now() - Duration::from_millis(1);
        cache.put(id, before_invalidation, map(9));
        assert!(
            cache.get(id).is_none(),
            "a read older than the invalidation is not stored"
        );
        cache.put(id, Instant::now(), map(2));
        assert_eq!(cache.get(id).unwrap().seats_available, 2);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(id).is_none());
    }

    #[test]
    fn available_counts_follow_the_same_rules() {
        let cache = SeatCache::new(Duration::from_millis(200));
        let id = PerformanceId::new(7).unwrap();
        cache.put_count(id, Instant::now(), 12);
        assert_eq!(cache.get_count(id), Some(12));
        let stale_read = Instant::now() - Duration::from_millis(1);
        cache.invalidate(id);
        cache.put_count(id, stale_read, 12);
        assert_eq!(
            cache.get_count(id),
            None,
            "a count read before a change is not stored"
        );
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = SeatCache::new(Duration::ZERO);
        let id = PerformanceId::new(1).unwrap();
        cache.put(id, Instant::now(), map(3));
        assert!(cache.get(id).is_none());
    }
}
