//! The Postgres side of the ranking: `ranking_sales`, the record of every
//! sale the consumer saw (one row per payment, `applied` once Redis counted
//! it), and the catalog lookups (a performance's concert, concert titles).
//! Each function is one statement.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::buckets::Sale;
use crate::{db::Db, store::StoreError};

/// What recording a sale found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A new row, not applied yet.
    New,
    /// The row was there, not applied yet (an earlier attempt failed, or
    /// another delivery is applying it right now).
    Pending,
    /// The row was there and Redis has counted it: a redelivery.
    Applied,
}

/// The concert of `performance`, if it exists.
pub(crate) async fn concert_of(db: &Db, performance: i64) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT concert_id FROM performances WHERE id = $1")
            .bind(performance)
            .fetch_optional(db.pool())
            .await?,
    )
}

/// Records `sale` once per payment (`ON CONFLICT DO NOTHING`) and says
/// what was there.
pub(crate) async fn record(db: &Db, sale: &Sale) -> Result<Recorded, StoreError> {
    // The second branch reads the snapshot taken before the insert, so it
    // sees only a row committed earlier. No row at all: another delivery
    // inserted the payment concurrently; applying it too is harmless (the
    // Redis script counts a payment once), so it counts as pending.
    let found: Option<String> = sqlx::query_scalar(
        "WITH inserted AS (
           INSERT INTO ranking_sales (payment_id, concert_id, tickets, paid_at)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (payment_id) DO NOTHING
           RETURNING applied
         )
         SELECT 'new'::text FROM inserted
         UNION ALL
         SELECT CASE WHEN applied THEN 'applied' ELSE 'pending' END
           FROM ranking_sales
          WHERE payment_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)",
    )
    .bind(sale.payment_id)
    .bind(sale.concert_id)
    .bind(sale.tickets)
    .bind(sale.paid_at)
    .fetch_optional(db.pool())
    .await?;
    Ok(match found.as_deref() {
        Some("new") => Recorded::New,
        Some("applied") => Recorded::Applied,
        _ => Recorded::Pending,
    })
}

/// Marks the sales of `payments` applied; returns how many were pending.
pub(crate) async fn mark_applied(db: &Db, payments: &[Uuid]) -> Result<u64, StoreError> {
    if payments.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE ranking_sales SET applied = true WHERE payment_id = ANY($1) AND NOT applied",
    )
    .bind(payments)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

type SaleRow = (Uuid, i64, i32, DateTime<Utc>);

fn sale((payment_id, concert_id, tickets, paid_at): SaleRow) -> Sale {
    Sale {
        payment_id,
        concert_id,
        tickets,
        paid_at,
    }
}

/// Up to `limit` sales not applied yet, oldest recorded first (the
/// partial index on `recorded_at WHERE NOT applied`).
pub(crate) async fn pending(db: &Db, limit: i64) -> Result<Vec<Sale>, StoreError> {
    let rows: Vec<SaleRow> = sqlx::query_as(
        "SELECT payment_id, concert_id, tickets, paid_at FROM ranking_sales
          WHERE NOT applied ORDER BY recorded_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(sale).collect())
}

/// Up to `limit` sales paid at or after `from`, applied or not, in
/// `(paid_at, payment_id)` order after `after` (keyset paging for the
/// rebuild; start with `(from, Uuid::nil())`).
pub(crate) async fn paid_since(
    db: &Db,
    from: DateTime<Utc>,
    after: (DateTime<Utc>, Uuid),
    limit: i64,
) -> Result<Vec<Sale>, StoreError> {
    let rows: Vec<SaleRow> = sqlx::query_as(
        "SELECT payment_id, concert_id, tickets, paid_at FROM ranking_sales
          WHERE paid_at >= $1 AND (paid_at, payment_id) > ($2, $3)
          ORDER BY paid_at, payment_id LIMIT $4",
    )
    .bind(from)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(sale).collect())
}

/// Deletes up to `batch` applied sales paid more than `age` ago; returns
/// how many.
pub(crate) async fn purge_applied(db: &Db, age: Duration, batch: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM ranking_sales WHERE payment_id IN (
           SELECT payment_id FROM ranking_sales
            WHERE applied AND paid_at < now() - make_interval(secs => $1)
            LIMIT $2)",
    )
    .bind(age.as_secs_f64())
    .bind(batch)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// The titles of the concerts among `ids` that exist.
pub(crate) async fn titles(db: &Db, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, title FROM concerts WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db.pool())
            .await?,
    )
}
