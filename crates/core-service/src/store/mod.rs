//! Database access, one module per aggregate. Every function is one
//! transaction (or one statement) and leaves no partial state on error.
//!
//! Functions answer in the store's own terms: an outcome type where a
//! request can end in more than one normal way ([`holds::HoldOutcome`],
//! [`holds::Release`], [`payments::PaymentOutcome`]) and a [`StoreError`]
//! for database faults and for the rules a transaction enforces itself
//! (owner, reservation state, balance). Neither knows about HTTP.
//!
//! The hot-path statements of holds and payments live in `sql/*.sql`, so
//! that `loadtest bench` can run the very same text under pgbench as the
//! raw baseline (`$n` parameters become pgbench variables there).

pub mod admin;
pub mod balance;
pub mod catalog;
pub mod coupons;
mod error;
pub mod holds;
pub mod limits;
pub mod payments;
pub mod sql;

use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

pub use self::error::{DatabaseError, StoreError, sqlstate};
use crate::domain::UserId;

/// Runs `lock` (a `SELECT … FOR UPDATE NOWAIT` on reservation `$1` that
/// returns `user_id`) on `tx` and checks that `user` owns the reservation.
/// Releasing and paying both start this way; each selects its own columns.
///
/// # Errors
/// [`StoreError::NotFound`]; [`StoreError::PaymentInProgress`] when another
/// request holds the row lock (`55P03`, lock not available);
/// [`StoreError::NotOwner`]; database errors.
pub(crate) async fn lock_own_reservation(
    tx: &mut PgConnection,
    lock: &'static str,
    id: Uuid,
    user: &UserId,
) -> Result<PgRow, StoreError> {
    let row = sqlx::query(lock)
        .bind(id)
        .fetch_optional(tx)
        .await
        .map_err(|error| match sqlstate(&error).as_deref() {
            Some("55P03") => StoreError::PaymentInProgress,
            _ => error.into(),
        })?
        .ok_or(StoreError::NotFound("reservation"))?;
    if row.try_get::<String, _>("user_id")? != user.as_str() {
        return Err(StoreError::NotOwner);
    }
    Ok(row)
}
