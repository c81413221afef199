//! Seat holds: claim, read, release.
//!
//! A hold is one transaction around one conditional write:
//! 0. take the fan's lock for the performance and check the purchase
//!    limits ([`limits`]); over one → roll back, [`HoldOutcome::OverLimit`];
//! 1. `UPDATE seats … FROM (SELECT … WHERE status = 'free' OR the hold
//!    expired … FOR UPDATE SKIP LOCKED)` claims every requested seat that is
//!    available and not being claimed by a concurrent buyer right now. Rows
//!    another buyer has locked are skipped, never waited on;
//! 2. fewer rows than requested → roll back, [`HoldOutcome::Taken`]
//!    (all-or-nothing);
//! 3. otherwise deactivate the claims of the expired holds we took over,
//!    insert the reservation, its `reservation_seats` (the partial unique
//!    index there is the backstop) and the `reservation.expiration` outbox
//!    row, and commit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{
    StoreError,
    limits::{self, Checked, LimitExceeded, Limits},
    sql, sqlstate,
};
use crate::{
    api::{Reservation, ReservedSeat},
    db::Db,
    domain::{PerformanceId, ReservationId, SeatId, UserId},
    outbox::{OutboxRow, ReservationExpiration},
};

/// Outcome of a hold attempt that did not fail.
#[derive(Debug, Clone)]
pub enum HoldOutcome {
    /// Every seat is now held by the new reservation.
    Held(Reservation),
    /// At least one seat is held, sold or being claimed right now; nothing
    /// was held. The caller reports it with the availability snapshot's
    /// count ([`crate::seatmap::Snapshot::seats_available`]).
    Taken,
    /// The seats would take the session or the fan past a purchase limit;
    /// nothing was held.
    OverLimit(LimitExceeded),
    /// The access token expired before the hold could start; nothing was
    /// held.
    AccessExpired,
}

/// What a hold needs: who, in which admission session and until when,
/// which seats, and the limits they must stay within.
#[derive(Debug, Clone, Copy)]
pub struct HoldRequest<'a> {
    /// The verified fan.
    pub user: &'a UserId,
    /// Their admission session (the access token's session id).
    pub session_id: &'a str,
    /// The performance.
    pub performance: PerformanceId,
    /// The seats: sorted, unique, non-empty.
    pub seats: &'a [SeatId],
    /// How long the hold lasts at most.
    pub ttl: Duration,
    /// When the access token expires: the hold never outlasts it.
    pub access_expires_at: DateTime<Utc>,
    /// The performance's purchase limits.
    pub limits: Limits,
}

/// Holds the request's seats for its fan, all or nothing, until `ttl` from
/// now or the access token's expiry, whichever comes first.
///
/// Returns [`HoldOutcome::OverLimit`] when the seats would take the session
/// or the fan past a purchase limit, [`HoldOutcome::AccessExpired`] when
/// the access token has expired by the database's clock, and
/// [`HoldOutcome::Taken`] when any seat is held, sold or being claimed
/// concurrently; nothing is held then.
///
/// # Errors
/// - [`StoreError::UnknownSeats`] when a seat is not part of the
///   performance; [`StoreError::AmountOverflow`];
/// - [`StoreError::HoldInProgress`] when the fan's other holds of the
///   performance keep the lock past `lock_timeout`;
/// - database errors.
pub async fn hold(db: &Db, request: HoldRequest<'_>) -> Result<HoldOutcome, StoreError> {
    let HoldRequest {
        user,
        session_id,
        performance,
        seats,
        ..
    } = request;
    let reservation_id = ReservationId::generate();
    let seat_ids: Vec<i64> = seats.iter().map(|s| s.get()).collect();
    let mut tx = db.begin_with(sql::HOLD_BEGIN).await?;
    let ttl = match limits::check(&mut tx, &request).await? {
        Checked::Within { seconds } => seconds,
        Checked::Exceeded(exceeded) => return refuse(tx, HoldOutcome::OverLimit(exceeded)).await,
        Checked::AccessExpired => return refuse(tx, HoldOutcome::AccessExpired).await,
    };
    let rows = sqlx::query(sql::HOLD_CLAIM)
        .bind(&seat_ids)
        .bind(performance.get())
        .bind(reservation_id.0)
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await?;
    if rows.len() != seat_ids.len() {
        // Primary-key lookups only: a 409 storm must stay cheap.
        let known: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM seats WHERE id = ANY($1) AND performance_id = $2",
        )
        .bind(&seat_ids)
        .bind(performance.get())
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        if known != seat_ids.len() as i64 {
            return Err(StoreError::UnknownSeats);
        }
        return Ok(HoldOutcome::Taken);
    }

    let mut reserved = Vec::with_capacity(rows.len());
    let mut took_over_expired = false;
    let mut held_until: Option<DateTime<Utc>> = None;
    for row in &rows {
        took_over_expired |= row.try_get::<Option<Uuid>, _>("previous")?.is_some();
        held_until = Some(row.try_get("held_until")?);
        reserved.push(ReservedSeat {
            id: row.try_get("id")?,
            section: row.try_get("section")?,
            row: row.try_get("row_label")?,
            number: row.try_get("number")?,
            grade: row.try_get("grade")?,
            price: row.try_get("price_krw")?,
        });
    }
    reserved.sort_by_key(|seat| seat.id);
    let held_until = held_until.ok_or(StoreError::Invariant("the claim returned no rows"))?;
    let amount = reserved
        .iter()
        .try_fold(0i64, |sum, seat| sum.checked_add(seat.price))
        .ok_or(StoreError::AmountOverflow)?;

    if took_over_expired {
        sqlx::query(sql::HOLD_RELEASE_EXPIRED_CLAIMS)
            .bind(&seat_ids)
            .execute(&mut *tx)
            .await?;
    }
    let ids: Vec<i64> = reserved.iter().map(|s| s.id).collect();
    let prices: Vec<i64> = reserved.iter().map(|s| s.price).collect();
    let event = OutboxRow::new(
        reservation_id.to_string(),
        Utc::now(),
        ReservationExpiration {
            reservation_id: reservation_id.0,
            performance_id: performance.get(),
            user_id: user.as_str().to_owned(),
            seat_ids: ids.clone(),
            held_until,
        },
    );
    let inserted = sqlx::query(sql::HOLD_INSERT_RESERVATION)
        .bind(reservation_id.0)
        .bind(user.as_str())
        .bind(performance.get())
        .bind(amount)
        .bind(held_until)
        .bind(&ids)
        .bind(&prices)
        .bind(event.event_id)
        .bind(event.topic)
        .bind(&event.aggregate_key)
        .bind(&event.payload)
        .bind(&event.headers)
        .bind(session_id)
        .execute(&mut *tx)
        .await;
    if let Err(error) = inserted {
        if sqlstate(&error).as_deref() == Some("23505") {
            // The backstop fired: a seat already has a live claim. This is a
            // bug in the claim above, never a normal outcome.
            tracing::error!(%error, "reservation_seats backstop rejected a hold");
            return Ok(HoldOutcome::Taken);
        }
        return Err(error.into());
    }
    tx.commit().await?;
    Ok(HoldOutcome::Held(Reservation {
        reservation_id: reservation_id.0,
        performance_id: performance.get(),
        user_id: user.as_str().to_owned(),
        status: "held".into(),
        held_until,
        seats: reserved,
        amount,
    }))
}

/// Rolls `tx` back and answers `outcome`: the hold is refused.
async fn refuse(
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    outcome: HoldOutcome,
) -> Result<HoldOutcome, StoreError> {
    tx.rollback().await?;
    Ok(outcome)
}

/// The stored facts of a reservation needed to authorise an action on it.
#[derive(Debug, Clone)]
pub struct ReservationHeader {
    /// The holder.
    pub user_id: String,
    /// The performance.
    pub performance_id: PerformanceId,
}

/// Who holds a reservation and for which performance.
///
/// # Errors
/// [`StoreError::NotFound`]; database errors.
pub async fn header(db: &Db, id: Uuid) -> Result<ReservationHeader, StoreError> {
    let row = sqlx::query(sql::RESERVATION_HEADER)
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(StoreError::NotFound("reservation"))?;
    Ok(ReservationHeader {
        user_id: row.try_get("user_id")?,
        performance_id: PerformanceId::new(row.try_get("performance_id")?)
            .map_err(|_| StoreError::Invariant("a reservation's performance id is not positive"))?,
    })
}

/// Reads a reservation. A hold past `held_until` reads as `expired`.
///
/// # Errors
/// [`StoreError::NotFound`]; database errors.
pub async fn get(db: &Db, id: Uuid) -> Result<Reservation, StoreError> {
    let mut conn = db.acquire().await?;
    let row = sqlx::query(
        "SELECT user_id, performance_id, amount_krw, held_until, \
         CASE WHEN status = 'held' AND held_until < now() THEN 'expired' ELSE status END AS status \
         FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("reservation"))?;
    let seats = sqlx::query(
        "SELECT s.id, s.section, s.row_label, s.number, s.grade, rs.price_krw \
         FROM reservation_seats rs JOIN seats s ON s.id = rs.seat_id \
         WHERE rs.reservation_id = $1 ORDER BY s.id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(ReservedSeat {
            id: r.try_get("id")?,
            section: r.try_get("section")?,
            row: r.try_get("row_label")?,
            number: r.try_get("number")?,
            grade: r.try_get("grade")?,
            price: r.try_get("price_krw")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Reservation {
        reservation_id: id,
        performance_id: row.try_get("performance_id")?,
        user_id: row.try_get("user_id")?,
        status: row.try_get("status")?,
        held_until: row.try_get("held_until")?,
        seats,
        amount: row.try_get("amount_krw")?,
    })
}

/// What releasing a hold did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The hold ended now (`cancelled`, or `expired` when it had lapsed);
    /// its seats are free.
    Ended,
    /// The hold had already ended (cancelled or expired); nothing changed.
    AlreadyEnded,
    /// The reservation is paid; nothing changed (a sale is never undone
    /// by a release).
    Paid,
}

/// Releases `user`'s hold `id`: its seats become free at once.
///
/// # Errors
/// - [`StoreError::NotFound`]; [`StoreError::NotOwner`] for another user's;
/// - [`StoreError::PaymentInProgress`] while it is being paid;
/// - database errors.
pub async fn release(db: &Db, user: &UserId, id: Uuid) -> Result<Release, StoreError> {
    let mut tx = db.begin().await?;
    let row = super::lock_own_reservation(
        &mut tx,
        "SELECT user_id, status, held_until < now() AS lapsed FROM reservations WHERE id = $1 FOR UPDATE NOWAIT",
        id,
        user,
    )
    .await?;
    let status: String = row.try_get("status")?;
    match status.as_str() {
        "confirmed" => return Ok(Release::Paid),
        "held" => {}
        _ => return Ok(Release::AlreadyEnded),
    }
    let lapsed: bool = row.try_get("lapsed")?;
    end_hold(&mut tx, id, if lapsed { "expired" } else { "cancelled" }).await?;
    tx.commit().await?;
    Ok(Release::Ended)
}

/// Frees the seats of hold `id` that still belong to it, deactivates its
/// claims and sets its final `status`, inside `tx`.
async fn end_hold(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    status: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE seats SET status = 'free', reservation_id = NULL, held_until = NULL \
         WHERE reservation_id = $1 AND status = 'held'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE reservation_seats SET active = false WHERE reservation_id = $1 AND active")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE reservations SET status = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Expires hold `id` if it is still `held` and past `held_until`: for the
/// `reservation.expiration` consumer and the sweeper. Holds also expire lazily,
/// so calling this is an optimisation (seat rows become `free` again), never
/// needed for correctness. A hold being paid right now is left alone.
///
/// Returns whether the hold was expired by this call.
///
/// # Errors
/// [`StoreError::NotFound`]; database errors.
pub async fn expire_if_lapsed(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "SELECT status = 'held' AND held_until < now() AS lapsed FROM reservations WHERE id = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let lapsed = match row {
        Some(row) => row.try_get::<bool, _>("lapsed")?,
        None => {
            // Either unknown, or locked by a payment or release in flight.
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1::int8 FROM reservations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(db.pool())
                    .await?;
            return if exists.is_some() {
                Ok(false)
            } else {
                Err(StoreError::NotFound("reservation"))
            };
        }
    };
    if !lapsed {
        return Ok(false);
    }
    end_hold(&mut tx, id, "expired").await?;
    tx.commit().await?;
    Ok(true)
}
