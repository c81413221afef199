//! Prepaid balances and their ledger.

use sqlx::Row;

use super::StoreError;
use crate::{
    api::{Balance, LedgerEntry},
    db::Db,
    domain::{Krw, UserId},
};

/// Creates the user on first charge; refuses to overflow `i64::MAX` KRW.
const CHARGE: &str = r#"
WITH u AS (
  INSERT INTO users (id, balance_krw) VALUES ($1, $2)
  ON CONFLICT (id) DO UPDATE
    SET balance_krw = users.balance_krw + EXCLUDED.balance_krw, updated_at = now()
    WHERE users.balance_krw <= 9223372036854775807 - EXCLUDED.balance_krw
  RETURNING balance_krw
)
INSERT INTO ledger_entries (user_id, kind, amount_krw, balance_after_krw)
SELECT $1, 'charge', $2, balance_krw FROM u
RETURNING id, kind, amount_krw, balance_after_krw, payment_id, created_at, price_krw, discount_krw, coupon_code
"#;

fn entry(row: &sqlx::postgres::PgRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        amount: row.try_get("amount_krw")?,
        balance_after: row.try_get("balance_after_krw")?,
        payment_id: row.try_get("payment_id")?,
        price: row.try_get("price_krw")?,
        discount: row.try_get("discount_krw")?,
        coupon_code: row.try_get("coupon_code")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Adds `amount` to `user`'s balance (one statement: balance and ledger
/// entry together).
///
/// # Errors
/// [`StoreError::BalanceOverflow`] when the balance would pass `i64::MAX`
/// KRW (nothing changes); database errors.
pub async fn charge(db: &Db, user: &UserId, amount: Krw) -> Result<LedgerEntry, StoreError> {
    let mut conn = db.acquire().await?;
    let row = sqlx::query(CHARGE)
        .bind(user.as_str())
        .bind(amount.won())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(entry(&row)?),
        None => Err(StoreError::BalanceOverflow),
    }
}

/// The balance and the `limit` latest ledger entries, newest first.
///
/// # Errors
/// [`StoreError::NotFound`] for a user who never charged; database errors.
pub async fn get(db: &Db, user: &UserId, limit: u32) -> Result<Balance, StoreError> {
    let mut conn = db.acquire().await?;
    let balance: i64 = sqlx::query_scalar("SELECT balance_krw FROM users WHERE id = $1")
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    let recent_entries = sqlx::query(
        "SELECT id, kind, amount_krw, balance_after_krw, payment_id, created_at, price_krw, \
         discount_krw, coupon_code FROM ledger_entries \
         WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(user.as_str())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(entry)
    .collect::<Result<Vec<_>, _>>()?;
    Ok(Balance {
        user_id: user.as_str().to_owned(),
        balance,
        recent_entries,
    })
}
