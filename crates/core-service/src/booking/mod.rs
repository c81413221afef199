//! The booking layer: the rules of holding, releasing and paying for seats,
//! over the store and the waiting room, free of any transport. A transport
//! parses its input into domain types, calls a [`Booking`] method, and
//! shapes the answer or maps the [`BookingError`] (HTTP: `crate::error`).
//!
//! - [`Booking::hold`] / [`Booking::release`] (`holds.rs`): the seat
//!   selection rules, the access check (the access token must be the
//!   fan's own), the sale rules, then the store's all-or-nothing claim
//!   within the purchase limits; a release needs only the fan's identity;
//! - [`Booking::pay`] (`payments.rs`): the access check (a completed
//!   session may only replay) and the idempotent payment;
//! - reads of a fan's data (reservations, balances) are the fan's own, or
//!   the operator's ([`Viewer`]);
//! - [`concerts`]: the rules of a new concert, and its creation;
//! - catalog and balance reads, here; sale rules are cached in process
//!   (`cache.rs`); seat maps are [`crate::seatmap`] snapshots, which
//!   best-available holds pick from (`best_hold.rs`).

mod best_hold;
mod cache;
pub mod concerts;
mod error;
mod holds;
mod payments;

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use self::cache::RulesCache;
pub use self::{
    error::BookingError,
    holds::{MAX_SEATS_PER_REQUEST, Selection},
};
use crate::{
    api::{Balance, Concert, ConcertCreated, ConcertPage, LedgerEntry, NewConcert, Reservation},
    db::Db,
    domain::{ConcertId, Krw, PerformanceId, UserId},
    health::Health,
    queue::{Access, QueueClient},
    seatmap::SeatMaps,
    settings::CoreSettings,
    store::{
        self, StoreError,
        catalog::{self, SaleRules},
    },
};

/// How long after its last hold, payment or seat-map read a performance is
/// still reported to its waiting room: longer than a hold lives, so the
/// report that says "sold out" keeps coming after the last payment.
pub const INVENTORY_WINDOW: Duration = Duration::from_secs(3_600);

/// The booking core's operations. Cheap to clone: every clone shares the
/// pool, the waiting-room client and the caches.
#[derive(Debug, Clone)]
pub struct Booking {
    db: Db,
    queue: QueueClient,
    settings: Arc<CoreSettings>,
    maps: Arc<SeatMaps>,
    rules: Arc<RulesCache>,
    health: Arc<Health>,
}

impl Booking {
    /// Operations over `db` that verify access tokens with `queue`, under
    /// the `[core]` settings (hold TTL, seat-map refresh interval, payment
    /// lease, ledger page size).
    pub fn new(db: Db, queue: QueueClient, settings: Arc<CoreSettings>) -> Self {
        let maps = Arc::new(SeatMaps::new(
            db.clone(),
            Duration::from_millis(settings.seat_cache_ms),
        ));
        Self {
            db,
            queue,
            settings,
            maps,
            rules: Arc::new(RulesCache::default()),
            health: Arc::new(Health::new()),
        }
    }

    /// This instance's hold and payment latencies and pool samples of the
    /// current report period.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Samples whether requests wait for a database connection now, with
    /// every connection in use ([`Db::saturated`], [`Health::sample_pool`]).
    pub fn sample_pool(&self) {
        self.health.sample_pool(self.db.saturated());
    }

    /// Reports the seat counts of every performance this instance served in
    /// the last [`INVENTORY_WINDOW`] to its waiting room
    /// ([`QueueClient::report_inventory`]), so that the waiting room admits
    /// no more fans than there are seats and tells the line when the
    /// performance is sold out. Each report carries this instance's health
    /// over the period since the last one ([`Health::take`]), which the
    /// room's admission rate follows. Returns the number of performances
    /// reported.
    ///
    /// # Errors
    /// Store errors (nothing is reported then, and the period goes on).
    pub async fn report_inventory(&self) -> Result<usize, BookingError> {
        let ids = self.maps.recently_used(INVENTORY_WINDOW);
        if ids.is_empty() {
            return Ok(0);
        }
        let counts = catalog::inventory(&self.db, &ids).await?;
        let health = self.health.take();
        for count in &counts {
            self.queue.report_inventory(count, &health);
        }
        Ok(counts.len())
    }

    /// The seat maps (layouts and availability snapshots).
    pub fn seat_maps(&self) -> &SeatMaps {
        &self.maps
    }

    /// The database handle.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The `[core]` settings.
    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    /// Up to `limit` concerts with an id above `after`, by id.
    ///
    /// # Errors
    /// Store errors.
    pub async fn concerts(&self, after: i64, limit: u64) -> Result<ConcertPage, BookingError> {
        Ok(catalog::list(&self.db, after, limit).await?)
    }

    /// One concert with the seat counts of its performances.
    ///
    /// # Errors
    /// [`StoreError::NotFound`]; store errors.
    pub async fn concert(&self, id: ConcertId) -> Result<Concert, BookingError> {
        Ok(catalog::get(&self.db, id).await?)
    }

    /// A reservation by its (unguessable) id, for the operator or its
    /// holder; a hold past `held_until` reads as `expired`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], also for another fan's reservation (whose
    /// existence is not told); store errors.
    pub async fn reservation(
        &self,
        viewer: Viewer<'_>,
        id: Uuid,
    ) -> Result<Reservation, BookingError> {
        let reservation = store::holds::get(&self.db, id).await?;
        match viewer {
            Viewer::Fan(fan) if fan.as_str() != reservation.user_id => {
                Err(StoreError::NotFound("reservation").into())
            }
            _ => Ok(reservation),
        }
    }

    /// Adds `amount` to `user`'s prepaid balance, creating the user on the
    /// first charge.
    ///
    /// # Errors
    /// [`StoreError::BalanceOverflow`]; store errors.
    pub async fn charge(&self, user: &UserId, amount: Krw) -> Result<LedgerEntry, BookingError> {
        Ok(store::balance::charge(&self.db, user, amount).await?)
    }

    /// `user`'s balance and its `recent_ledger_entries` latest entries, for
    /// the operator or `user` themself.
    ///
    /// # Errors
    /// [`BookingError::NotOwner`] for another fan's balance;
    /// [`StoreError::NotFound`] for a user who never charged; store errors.
    pub async fn balance(
        &self,
        viewer: Viewer<'_>,
        user: &UserId,
    ) -> Result<Balance, BookingError> {
        if let Viewer::Fan(fan) = viewer
            && fan != user
        {
            return Err(BookingError::NotOwner { what: "balance" });
        }
        Ok(store::balance::get(&self.db, user, self.settings.recent_ledger_entries).await?)
    }

    /// Creates a concert with its performances and seat maps (see
    /// [`concerts::create`]).
    ///
    /// # Errors
    /// [`BookingError::InvalidConcert`]; store errors.
    pub async fn create_concert(&self, new: &NewConcert) -> Result<ConcertCreated, BookingError> {
        concerts::create(&self.db, new).await
    }

    /// The sale rules of a performance, from cache or the database.
    async fn sale_rules(&self, id: PerformanceId) -> Result<SaleRules, StoreError> {
        if let Some(rules) = self.rules.get(id) {
            return Ok(rules);
        }
        let rules = catalog::sale_rules(&self.db, id).await?;
        self.rules.put(id, rules);
        Ok(rules)
    }

    /// Seats of a performance that can be held now, for refused holds:
    /// the current availability snapshot's count (at most `seat_cache_ms`
    /// old), so a storm of conflicts costs no query of its own.
    async fn seats_available(&self, id: PerformanceId) -> Result<i64, StoreError> {
        let map = self.maps.map(id).await?;
        Ok(i64::from(
            self.maps.snapshot(id, &map, None).await?.seats_available(),
        ))
    }
}

/// Who reads a fan's data: the operator, who may read anyone's, or a
/// verified fan, who may read only their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer<'a> {
    /// A request with the admin key.
    Operator,
    /// A fan, by their identity token's subject.
    Fan(&'a UserId),
}

/// Checks that `access` (a verified access token) was issued to `fan`, the
/// subject of the verified identity token: a fan cannot use another fan's
/// admission.
fn admits(fan: &UserId, access: &Access) -> Result<(), BookingError> {
    if access.user == *fan {
        Ok(())
    } else {
        tracing::warn!(
            token_user = access.user.as_str(),
            "an access token was presented with another fan's identity"
        );
        Err(BookingError::SubjectMismatch)
    }
}

/// Records the verified fan on the caller's span (its `user_id` field),
/// so every later log line of the request names them.
fn record_user(user: &UserId) {
    tracing::Span::current().record("user_id", user.as_str());
}
