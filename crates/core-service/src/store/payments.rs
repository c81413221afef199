//! Payments from the prepaid balance, idempotent per user and
//! `Idempotency-Key`.
//!
//! 1. Claim the key with one autocommit upsert into `idempotency_keys`. If
//!    it exists: a completed key replays the stored response; an in-flight
//!    one is [`StoreError::PaymentInProgress`]; a different reservation
//!    under the same key is [`StoreError::KeyReused`]. An in-flight claim
//!    whose lease ran out (a crash mid-payment) may be taken over.
//! 2. One transaction: lock the reservation (`NOWAIT`), check owner, state
//!    and expiry; mark its seats sold (`SKIP LOCKED`: a seat taken over after
//!    expiry means [`StoreError::HoldExpired`]); debit the balance with a
//!    conditional `UPDATE` ([`StoreError::InsufficientBalance`] when short);
//!    then ledger entry, reservation confirmed, payment,
//!    `payment.completed` outbox row and the stored response, in one
//!    statement; commit. A payment with a coupon spends it in the same
//!    transaction, before the debit ([`sql::COUPON_SPEND`]: unused,
//!    unexpired, the payer's, in scope), and debits the price less the
//!    discount; the ledger and the payment record the price, the discount
//!    and the coupon. A second payment racing for the same coupon waits for
//!    the first's row lock and then finds it used
//!    ([`StoreError::CouponUsed`]); a payment that fails rolls the spend
//!    back with everything else.
//! 3. Any failure rolls the transaction back and frees the key, so nothing
//!    but a success is ever remembered (conflicts and faults are never
//!    cached).

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use super::{StoreError, sql, sqlstate};
use crate::{
    api::Payment,
    db::Db,
    domain::{CouponCode, IdempotencyKey, PaymentId, UserId},
    outbox::{OutboxRow, PaymentCompleted},
};

/// The result of a payment request. Both carry the stored response: a
/// [`Payment`] as JSON, replayed byte for byte under the same key.
#[derive(Debug, Clone)]
pub enum PaymentOutcome {
    /// This request paid; the body is the stored response.
    Completed(serde_json::Value),
    /// An earlier request with the same key paid; its stored response.
    Replayed(serde_json::Value),
}

/// What the payment needs besides the database.
#[derive(Debug, Clone)]
pub struct PaymentRequest<'a> {
    /// The verified payer.
    pub user: &'a UserId,
    /// The admission session paying (the access token's session id),
    /// written into `payment.completed` so that exactly this session is
    /// released.
    pub session_id: &'a str,
    /// The client's key, scoped to `user`.
    pub key: &'a IdempotencyKey,
    /// The reservation to pay.
    pub reservation_id: Uuid,
    /// The coupon to spend, if any; part of the key's fingerprint, so the
    /// same key with another coupon (or none) is [`StoreError::KeyReused`].
    pub coupon: Option<&'a CouponCode>,
    /// Lease of an in-flight key, in seconds.
    pub lease_seconds: u64,
}

/// Pays a held reservation from the user's balance, idempotently.
///
/// # Errors
/// - [`StoreError::PaymentInProgress`]: same key or same reservation being
///   paid right now;
/// - [`StoreError::KeyReused`], [`StoreError::KeyCollision`]: the key was
///   used for another reservation or payment;
/// - [`StoreError::NotFound`]; [`StoreError::NotOwner`];
/// - [`StoreError::AlreadyPaid`], [`StoreError::ReservationCancelled`];
/// - [`StoreError::HoldExpired`], [`StoreError::InsufficientBalance`]:
///   nothing changed;
/// - [`StoreError::UnknownCoupon`], [`StoreError::CouponUsed`],
///   [`StoreError::CouponExpired`], [`StoreError::CouponNotApplicable`]:
///   nothing changed;
/// - database errors.
pub async fn pay(db: &Db, request: PaymentRequest<'_>) -> Result<PaymentOutcome, StoreError> {
    let fingerprint = fingerprint(&request);
    // One checkout for the claim and the transaction: sqlx pings every
    // connection it takes back (a round trip each), and a second checkout
    // also rotates requests over more of the pool's backends.
    let mut conn = db.acquire().await?;
    let claimed = sqlx::query(sql::PAY_CLAIM_KEY)
        .bind(request.user.as_str())
        .bind(request.key.as_str())
        .bind(&fingerprint)
        .bind(request.lease_seconds as f64)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if !claimed {
        // None: freed between our claim and this read, because the other
        // attempt failed; the client may retry.
        return existing_key(&mut conn, &request, &fingerprint)
            .await?
            .ok_or(StoreError::PaymentInProgress);
    }
    match pay_claimed(&mut conn, &request).await {
        Ok(body) => Ok(PaymentOutcome::Completed(body)),
        Err(error) => {
            // The failed transaction's ROLLBACK goes out first.
            let freed = sqlx::query("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND state = 'in_flight'")
                .bind(request.user.as_str())
                .bind(request.key.as_str())
                .execute(&mut *conn)
                .await;
            if let Err(free_error) = freed {
                tracing::warn!(error = %free_error, "freeing an idempotency key failed; its lease will expire");
            }
            Err(error)
        }
    }
}

/// The stored response of an `Idempotency-Key` already used for this
/// reservation, as [`PaymentOutcome::Replayed`], or `None` when the key
/// was never used by this user. No money moves and no key is claimed: for
/// retries that must never start a new payment.
///
/// # Errors
/// [`StoreError::KeyReused`]; [`StoreError::PaymentInProgress`]; database
/// errors.
pub async fn replay(
    db: &Db,
    request: &PaymentRequest<'_>,
) -> Result<Option<PaymentOutcome>, StoreError> {
    let fingerprint = fingerprint(request);
    let mut conn = db.acquire().await?;
    existing_key(&mut conn, request, &fingerprint).await
}

/// What an `Idempotency-Key` is bound to: the reservation, and the coupon
/// when there is one (a payment without a coupon keeps the plain
/// reservation id, as keys stored before coupons existed have).
fn fingerprint(request: &PaymentRequest<'_>) -> String {
    match request.coupon {
        None => request.reservation_id.to_string(),
        Some(code) => format!("{}|coupon={}", request.reservation_id, code.as_str()),
    }
}

/// Spends `code` for payment `payment_id` of `performance_id` by `user`,
/// returning the discount on `price` (KRW).
async fn spend_coupon(
    tx: &mut PgConnection,
    code: &CouponCode,
    user: &UserId,
    payment_id: Uuid,
    performance_id: i64,
    price: i64,
) -> Result<i64, StoreError> {
    let spent = sqlx::query(sql::COUPON_SPEND)
        .bind(code.as_str())
        .bind(user.as_str())
        .bind(payment_id)
        .bind(performance_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|error| match sqlstate(&error).as_deref() {
            // Another payment holds the coupon's row lock past lock_timeout.
            Some("55P03") => StoreError::PaymentInProgress,
            _ => error.into(),
        })?;
    if let Some(row) = spent {
        return Ok(super::coupons::discount_of(&row)?.on(price));
    }
    let why = sqlx::query(
        "SELECT used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM coupons          WHERE code = $1 AND user_id = $2",
    )
    .bind(code.as_str())
    .bind(user.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    Err(match why {
        None => StoreError::UnknownCoupon,
        Some(row) if row.try_get::<bool, _>("used")? => StoreError::CouponUsed,
        Some(row) if row.try_get::<bool, _>("expired")? => StoreError::CouponExpired,
        Some(_) => StoreError::CouponNotApplicable,
    })
}

/// The earlier use of the request's key, if any.
async fn existing_key(
    conn: &mut PgConnection,
    request: &PaymentRequest<'_>,
    fingerprint: &str,
) -> Result<Option<PaymentOutcome>, StoreError> {
    let row = sqlx::query("SELECT fingerprint, state, response_body FROM idempotency_keys WHERE user_id = $1 AND key = $2")
        .bind(request.user.as_str())
        .bind(request.key.as_str())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.try_get::<String, _>("fingerprint")? != fingerprint {
        return Err(StoreError::KeyReused);
    }
    match (
        row.try_get::<String, _>("state")?.as_str(),
        row.try_get::<Option<serde_json::Value>, _>("response_body")?,
    ) {
        ("completed", Some(body)) => Ok(Some(PaymentOutcome::Replayed(body))),
        _ => Err(StoreError::PaymentInProgress),
    }
}

async fn pay_claimed(
    conn: &mut PgConnection,
    request: &PaymentRequest<'_>,
) -> Result<serde_json::Value, StoreError> {
    let mut tx = conn.begin().await?;
    let row = super::lock_own_reservation(
        &mut tx,
        sql::PAY_LOCK_RESERVATION,
        request.reservation_id,
        request.user,
    )
    .await?;
    let status: String = row.try_get("status")?;
    match status.as_str() {
        "confirmed" => return Err(StoreError::AlreadyPaid),
        "cancelled" => return Err(StoreError::ReservationCancelled),
        "expired" => return Err(StoreError::HoldExpired),
        _ => {}
    }
    if row.try_get::<bool, _>("lapsed")? {
        return Err(StoreError::HoldExpired);
    }
    let performance_id: i64 = row.try_get("performance_id")?;
    let amount: i64 = row.try_get("amount_krw")?;
    let now: DateTime<Utc> = row.try_get("now")?;
    let seat_count: i64 = row.try_get("seat_count")?;

    let mut seat_ids: Vec<i64> = sqlx::query_scalar(sql::PAY_SELL_SEATS)
        .bind(request.reservation_id)
        .fetch_all(&mut *tx)
        .await?;
    if seat_ids.len() as i64 != seat_count {
        // A seat was taken over after the hold lapsed (or is being taken
        // over right now): the hold is gone.
        return Err(StoreError::HoldExpired);
    }
    seat_ids.sort_unstable();

    let payment_id = PaymentId::generate();
    let price = amount;
    let discount = match request.coupon {
        None => 0,
        Some(code) => {
            spend_coupon(
                &mut tx,
                code,
                request.user,
                payment_id.0,
                performance_id,
                price,
            )
            .await?
        }
    };
    let amount = price - discount;
    let Some(balance_after) = sqlx::query_scalar::<_, i64>(sql::PAY_DEBIT)
        .bind(request.user.as_str())
        .bind(amount)
        .fetch_optional(&mut *tx)
        .await?
    else {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance_krw FROM users WHERE id = $1")
                .bind(request.user.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        return Err(StoreError::InsufficientBalance {
            balance_krw: balance.unwrap_or(0),
            required_krw: amount,
        });
    };

    let body = serde_json::to_value(Payment {
        payment_id: payment_id.0,
        reservation_id: request.reservation_id,
        user_id: request.user.as_str().to_owned(),
        status: "completed".into(),
        amount,
        price,
        discount,
        coupon_code: request.coupon.map(|code| code.as_str().to_owned()),
        balance_after,
        paid_at: now,
    })
    .map_err(StoreError::Encode)?;
    let event = OutboxRow::new(
        request.reservation_id.to_string(),
        now,
        PaymentCompleted {
            payment_id: payment_id.0,
            reservation_id: request.reservation_id,
            user_id: request.user.as_str().to_owned(),
            session_id: Some(request.session_id.to_owned()),
            performance_id,
            amount_krw: amount,
            seat_ids,
            paid_at: now,
        },
    );
    let recorded = sqlx::query(sql::PAY_RECORD)
        .bind(request.user.as_str())
        .bind(amount)
        .bind(balance_after)
        .bind(payment_id.0)
        .bind(now)
        .bind(request.reservation_id)
        .bind(request.key.as_str())
        .bind(event.event_id)
        .bind(event.topic)
        .bind(&event.aggregate_key)
        .bind(&event.payload)
        .bind(&event.headers)
        .bind(&body)
        .bind(price)
        .bind(discount)
        .bind(request.coupon.map(CouponCode::as_str))
        .execute(&mut *tx)
        .await;
    if let Err(error) = recorded {
        // A key purged after its retention and reused for another
        // reservation collides with the old payment.
        if sqlstate(&error).as_deref() == Some("23505") {
            return Err(StoreError::KeyCollision);
        }
        return Err(error.into());
    }
    tx.commit().await?;
    Ok(body)
}

/// Forgets keys older than `retention`: completed ones (no longer replayed)
/// and abandoned in-flight ones. Deletes at most `batch` rows per call and
/// returns how many it deleted.
///
/// # Errors
/// Database errors.
pub async fn purge_idempotency_keys(
    db: &Db,
    retention: std::time::Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE ctid IN (\
           SELECT ctid FROM idempotency_keys \
           WHERE created_at < now() - make_interval(secs => $1) \
             AND (state = 'completed' OR locked_until < now()) \
           LIMIT $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(batch)
    .execute(db.pool())
    .await?;
    Ok(deleted.rows_affected())
}
