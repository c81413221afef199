//! Shared request state and the in-process caches.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use axum::http::HeaderMap;
use platform::settings::ExposeSecret;

use crate::{
    db::Db,
    domain::PerformanceId,
    error::ApiError,
    model::SeatMap,
    queue::WaitingRoom,
    settings::CoreSettings,
    store::catalog::{self, SaleRules},
};

/// Everything a handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The Postgres pool.
    pub db: Db,
    /// The waiting room client.
    pub queue: WaitingRoom,
    /// The `[core]` settings.
    pub core: Arc<CoreSettings>,
    /// Seat maps, cached at most `seat_cache_ms`.
    pub seats: Arc<SeatCache>,
    /// Sale rules of performances (immutable once created).
    pub rules: Arc<RulesCache>,
    /// Renders `/metrics`.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl AppState {
    /// Checks `X-Admin-Key` in constant time.
    ///
    /// # Errors
    /// 401 `admin_key_required` when missing or wrong.
    pub fn require_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = headers
            .get("x-admin-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, self.core.admin_key.expose_secret().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized(
                "admin_key_required",
                "a valid X-Admin-Key header is required",
            ))
        }
    }

    /// The sale rules of a performance, from cache or the database.
    ///
    /// # Errors
    /// 404 unknown performance; database errors.
    pub async fn sale_rules(&self, id: PerformanceId) -> Result<SaleRules, ApiError> {
        if let Some(rules) = self.rules.get(id) {
            return Ok(rules);
        }
        let rules = catalog::sale_rules(&self.db, id).await?;
        self.rules.put(id, rules);
        Ok(rules)
    }

    /// The seat map of a performance, at most `seat_cache_ms` old.
    ///
    /// # Errors
    /// 404 unknown performance; database errors.
    pub async fn seat_map(&self, id: PerformanceId) -> Result<Arc<SeatMap>, ApiError> {
        if let Some(map) = self.seats.get(id) {
            return Ok(map);
        }
        let fetched_at = Instant::now();
        let map = Arc::new(catalog::seat_map(&self.db, id).await?);
        self.seats.put(id, fetched_at, map.clone());
        Ok(map)
    }
}

/// Extractor that admits only requests with the right `X-Admin-Key`. It
/// runs before the body is read, so a request without the key is 401
/// whatever its body.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl axum::extract::FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state.require_admin(&parts.headers)?;
        Ok(Self)
    }
}

impl AppState {
    /// Seats of a performance that can be held now, for 409 answers: cached
    /// like the seat map (at most `seat_cache_ms`, dropped on change), so a
    /// storm of conflicts costs one count per performance and period.
    ///
    /// # Errors
    /// Database errors.
    pub async fn seats_available(&self, id: PerformanceId) -> Result<i64, ApiError> {
        if let Some(count) = self.seats.get_count(id) {
            return Ok(count);
        }
        let fetched_at = Instant::now();
        let count = crate::store::holds::available_seats(&self.db, id).await?;
        self.seats.put_count(id, fetched_at, count);
        Ok(count)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// When a seat map was read (or invalidated, with no map).
type CacheEntry = (Instant, Option<Arc<SeatMap>>);

/// Seat maps by performance, each valid for `ttl` after it was read, and
/// dropped whenever this process changes a seat of the performance.
#[derive(Debug)]
pub struct SeatCache {
    ttl: Duration,
    /// A `None` map is a tombstone left by an invalidation, so a read that
    /// started before the change cannot store its stale result.
    entries: Mutex<HashMap<i64, CacheEntry>>,
    /// Available-seat counts, same rules.
    counts: Mutex<HashMap<i64, (Instant, Option<i64>)>>,
}

impl SeatCache {
    /// A cache whose entries live `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, id: PerformanceId) -> Option<Arc<SeatMap>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(&id.get())
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .and_then(|(_, map)| map.clone())
    }

    fn put(&self, id: PerformanceId, fetched_at: Instant, map: Arc<SeatMap>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Keep the map small: drop stale entries when it grows.
        if entries.len() > 1_024 {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        // An invalidation that raced with this read left a newer tombstone;
        // the read started before it must not win.
        match entries.get(&id.get()) {
            Some((at, _)) if *at > fetched_at => {}
            _ => {
                entries.insert(id.get(), (fetched_at, Some(map)));
            }
        }
    }

    fn get_count(&self, id: PerformanceId) -> Option<i64> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts
            .get(&id.get())
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .and_then(|(_, count)| *count)
    }

    fn put_count(&self, id: PerformanceId, fetched_at: Instant, count: i64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() > 1_024 {
            counts.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        match counts.get(&id.get()) {
            Some((at, _)) if *at > fetched_at => {}
            _ => {
                counts.insert(id.get(), (fetched_at, Some(count)));
            }
        }
    }

    /// Drops the cached map and count of `id` after a change.
    pub fn invalidate(&self, id: PerformanceId) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.get(), (now, None));
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.insert(id.get(), (now, None));
    }
}

/// Sale rules by performance. Performances are never edited, so entries do
/// not expire.
#[derive(Debug, Default)]
pub struct RulesCache {
    entries: RwLock<HashMap<i64, SaleRules>>,
}

impl RulesCache {
    fn get(&self, id: PerformanceId) -> Option<SaleRules> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id.get())
            .copied()
    }

    fn put(&self, id: PerformanceId, rules: SaleRules) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    #[test]
    fn admin_keys_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
