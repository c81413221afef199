//! What a store function can fail with: a database fault, classified by
//! whether retrying may help, or a rule the store enforces inside its
//! transaction (ownership, a reservation's state, the balance). The API
//! maps these to statuses in `crate::error`, nowhere else.

use sea_orm::{DbErr, RuntimeErr, error::ConnAcquireErr};

/// Why a store function failed. Nothing was changed in any case: every
/// store function is one transaction (or one statement).
///
/// The message of a rule (every variant but the database faults) is
/// written for the client and safe to show; a fault's message and cause
/// belong in logs only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No pooled connection within the acquire timeout: the pool is
    /// saturated and the request should be shed.
    #[error("database pool exhausted")]
    PoolExhausted,
    /// Postgres is unreachable or refused for a passing reason (statement
    /// or lock timeout, serialization failure, deadlock, restart, too many
    /// connections): retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] DatabaseError),
    /// Any other database failure: a bug or an answer of an unexpected
    /// shape.
    #[error("database error")]
    Database(#[source] DatabaseError),
    /// The database answered something the store's invariants rule out.
    #[error("unexpected database answer: {0}")]
    Invariant(&'static str),
    /// A stored response could not be encoded as JSON.
    #[error("encoding a stored response failed")]
    Encode(#[source] serde_json::Error),
    /// No such row; names what was looked up (`reservation`, `user`,
    /// `concert`, `performance`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The reservation belongs to another user; nothing changed.
    #[error("this reservation belongs to another user")]
    NotOwner,
    /// Another request is paying (or releasing) the same reservation, or
    /// holds the same `Idempotency-Key`, right now: retry shortly.
    #[error("a payment of this reservation or with this key is in progress")]
    PaymentInProgress,
    /// Another hold of the same fan for the same performance kept the
    /// fan's lock past `lock_timeout`: retry shortly. Nothing was held.
    #[error("another hold of yours for this performance is in progress")]
    HoldInProgress,
    /// A requested seat is not part of the performance; nothing was held.
    #[error("one or more seats do not belong to this performance")]
    UnknownSeats,
    /// The seats' prices add up beyond `i64::MAX` KRW; nothing was held.
    #[error("the total price overflows")]
    AmountOverflow,
    /// A charge would take the balance beyond `i64::MAX` KRW; nothing
    /// changed.
    #[error("the balance would exceed the maximum")]
    BalanceOverflow,
    /// The reservation to pay is already paid.
    #[error("this reservation is already paid")]
    AlreadyPaid,
    /// The reservation to pay was released by its holder.
    #[error("this reservation was released")]
    ReservationCancelled,
    /// The hold lapsed before the payment (or a seat was taken over after
    /// it lapsed); nothing was charged.
    #[error("the hold expired")]
    HoldExpired,
    /// The balance does not cover the reservation; nothing changed.
    #[error("balance {balance_krw} KRW does not cover {required_krw} KRW")]
    InsufficientBalance {
        /// The buyer's balance, in KRW (0 for a user who never charged).
        balance_krw: i64,
        /// The reservation's amount, in KRW.
        required_krw: i64,
    },
    /// The `Idempotency-Key` was used for another reservation.
    #[error("this Idempotency-Key was used for another reservation")]
    KeyReused,
    /// The `Idempotency-Key` was purged after its retention and reused, and
    /// collides with the payment it made back then.
    #[error("this Idempotency-Key was used for another payment")]
    KeyCollision,
    /// The payment's coupon does not exist or is another fan's (the two
    /// are not told apart, so codes cannot be probed).
    #[error("no such coupon among yours")]
    UnknownCoupon,
    /// The payment's coupon was spent by another payment.
    #[error("this coupon was already used")]
    CouponUsed,
    /// The payment's coupon is past its `expires_at`.
    #[error("this coupon has expired")]
    CouponExpired,
    /// The payment's coupon is for another concert or performance.
    #[error("this coupon does not apply to this performance")]
    CouponNotApplicable,
}

/// The failing call of either database client: sqlx on the hot paths,
/// sea-orm for the entities.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// A sqlx call failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A sea-orm call failed.
    #[error(transparent)]
    Orm(#[from] DbErr),
}

/// SQLSTATE of a database error, if the error came from Postgres.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// How a database fault should be answered.
enum Fault {
    PoolExhausted,
    Transient,
    Other,
}

fn classify(error: &sqlx::Error) -> Fault {
    match error {
        sqlx::Error::PoolTimedOut => Fault::PoolExhausted,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Fault::Transient,
        sqlx::Error::Database(_) => match sqlstate(error).as_deref() {
            // query_canceled (statement_timeout), lock_not_available
            // (lock_timeout), serialization/deadlock, admin shutdown, too many
            // connections, cannot connect now: transient, retry.
            Some("57014" | "55P03" | "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300") => {
                Fault::Transient
            }
            Some(code) if code.starts_with("08") => Fault::Transient,
            _ => Fault::Other,
        },
        _ => Fault::Other,
    }
}

impl StoreError {
    fn of(fault: Fault, cause: DatabaseError) -> Self {
        match fault {
            Fault::PoolExhausted => Self::PoolExhausted,
            Fault::Transient => Self::Unavailable(cause),
            Fault::Other => Self::Database(cause),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::of(classify(&error), error.into())
    }
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        let fault = match &error {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => Fault::PoolExhausted,
            DbErr::Conn(RuntimeErr::SqlxError(inner))
            | DbErr::Exec(RuntimeErr::SqlxError(inner))
            | DbErr::Query(RuntimeErr::SqlxError(inner)) => classify(inner),
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Fault::Transient,
            _ => Fault::Other,
        };
        Self::of(fault, error.into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn pool_timeouts_are_exhaustion_and_lost_connections_are_transient() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::PoolExhausted
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::Io(std::io::Error::other("refused"))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Database(_)
        ));
    }

    #[test]
    fn sea_orm_errors_are_classified_by_their_sqlx_cause() {
        let wrapped = DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx::Error::PoolTimedOut)));
        assert!(matches!(
            StoreError::from(wrapped),
            StoreError::PoolExhausted
        ));
        assert!(matches!(
            StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(DbErr::RecordNotFound("x".into())),
            StoreError::Database(_)
        ));
    }
}
