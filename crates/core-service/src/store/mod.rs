//! Database access, one module per aggregate. Every function is one
//! transaction (or one statement) and leaves no partial state on error.
//!
//! The hot-path statements of holds and payments live in `sql/*.sql`, so
//! that `devstack bench` can run the very same text under pgbench as the
//! raw baseline (`$n` parameters become pgbench variables there).

pub mod admin;
pub mod balance;
pub mod catalog;
pub mod holds;
pub mod payments;

use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    domain::UserId,
    error::{ApiError, sqlstate},
};

/// Runs `lock` (a `SELECT … FOR UPDATE NOWAIT` on reservation `$1` that
/// returns `user_id`) on `tx` and checks that `user` owns the reservation.
/// Releasing and paying both start this way; each selects its own columns.
///
/// # Errors
/// 404 unknown reservation; 409 `payment_in_progress` when another request
/// holds the row lock (`55P03`, lock not available); 403 `not_owner`;
/// database errors.
pub(crate) async fn lock_own_reservation(
    tx: &mut PgConnection,
    lock: &'static str,
    id: Uuid,
    user: &UserId,
) -> Result<PgRow, ApiError> {
    let row = sqlx::query(lock)
        .bind(id)
        .fetch_optional(tx)
        .await
        .map_err(|error| match sqlstate(&error).as_deref() {
            Some("55P03") => ApiError::PaymentInProgress,
            _ => error.into(),
        })?
        .ok_or(ApiError::NotFound("reservation"))?;
    if row.try_get::<String, _>("user_id")? != user.as_str() {
        return Err(ApiError::forbidden(
            "not_owner",
            "this reservation belongs to another user",
        ));
    }
    Ok(row)
}
