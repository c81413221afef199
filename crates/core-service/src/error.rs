//! The API's error type. Every failure a handler can return is an
//! [`ApiError`] variant, and [`ApiError::into_response`] is the one place
//! that maps them to HTTP statuses and RFC 9457 problems.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use platform::problem::{ErrorChain, Problem};

/// Everything that can go wrong at the API boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A syntactically valid request breaks a rule (400 `invalid_request`).
    #[error("{0}")]
    BadRequest(String),
    /// A value parses but is not acceptable (422 `code`).
    #[error("{detail}")]
    Unprocessable {
        /// Stable problem code.
        code: &'static str,
        /// Client-facing explanation.
        detail: String,
    },
    /// More seats than the performance's `max_seats_per_order` (422
    /// `too_many_seats`).
    #[error("at most {max} seats per order")]
    TooManySeats {
        /// The performance's limit.
        max: i32,
    },
    /// No or malformed `Authorization` / `X-Admin-Key` header, or a token
    /// queue-service rejects (401).
    #[error("{detail}")]
    Unauthorized {
        /// Stable problem code.
        code: &'static str,
        /// Client-facing explanation.
        detail: String,
    },
    /// Authenticated but not allowed (403 `code`): another user's
    /// reservation, a token of another event, a sale not open yet.
    #[error("{detail}")]
    Forbidden {
        /// Stable problem code.
        code: &'static str,
        /// Client-facing explanation.
        detail: String,
    },
    /// An unknown id (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// At least one requested seat is held or sold (409 `seat_taken`, with
    /// `seats_available` for the performance).
    #[error("one or more seats are already taken")]
    SeatTaken {
        /// Seats still free in the performance (lazy expiry applied).
        seats_available: i64,
    },
    /// A state conflict that retrying will not fix (409 `code`), such as
    /// paying a cancelled or already paid reservation.
    #[error("{detail}")]
    Conflict {
        /// Stable problem code.
        code: &'static str,
        /// Client-facing explanation.
        detail: String,
    },
    /// The same `Idempotency-Key` (or the same reservation) is being paid by
    /// another request right now (409 `payment_in_progress`, `Retry-After`).
    #[error("a payment with this Idempotency-Key is in progress")]
    PaymentInProgress,
    /// The balance does not cover the reservation (402
    /// `insufficient_balance`); nothing changed.
    #[error("balance {balance_krw} KRW does not cover {required_krw} KRW")]
    InsufficientBalance {
        /// Current balance in KRW.
        balance_krw: i64,
        /// The reservation's amount in KRW.
        required_krw: i64,
    },
    /// The hold expired before payment (410 `hold_expired`); no charge.
    #[error("the hold expired")]
    HoldExpired,
    /// queue-service could not answer (503, fail closed).
    #[error("queue-service unavailable")]
    QueueUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Postgres is unreachable or timed out (503).
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// No pooled connection within the acquire timeout: load shedding (503
    /// `overloaded`, `Retry-After`).
    #[error("database pool exhausted")]
    Overloaded,
    /// A bug or an unexpected database answer (500, details only in logs).
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            detail: detail.into(),
        }
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    /// 401 with `code`.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    /// 409 with `code`.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        self.to_problem().status()
    }

    fn to_problem(&self) -> Problem {
        match self {
            Self::BadRequest(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
            )
            .detail(detail),
            Self::Unprocessable { code, detail } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Unprocessable request",
            )
            .detail(detail),
            Self::TooManySeats { max } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_seats",
                "Too many seats",
            )
            .detail(self.to_string())
            .with("max_seats_per_order", *max),
            Self::Unauthorized { code, detail } => {
                Problem::new(StatusCode::UNAUTHORIZED, code, "Unauthorized").detail(detail)
            }
            Self::Forbidden { code, detail } => {
                Problem::new(StatusCode::FORBIDDEN, code, "Forbidden").detail(detail)
            }
            Self::NotFound(what) => Problem::not_found(format!("{what} not found")),
            Self::SeatTaken { seats_available } => {
                Problem::new(StatusCode::CONFLICT, "seat_taken", "Seat already taken")
                    .detail("one or more requested seats are held or sold; nothing was held")
                    .with("seats_available", *seats_available)
            }
            Self::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict").detail(detail)
            }
            Self::PaymentInProgress => Problem::new(
                StatusCode::CONFLICT,
                "payment_in_progress",
                "Payment in progress",
            )
            .detail(self.to_string())
            .retry_after(1),
            Self::InsufficientBalance {
                balance_krw,
                required_krw,
            } => Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_balance",
                "Insufficient balance",
            )
            .detail(self.to_string())
            .with("balance_krw", *balance_krw)
            .with("required_krw", *required_krw),
            Self::HoldExpired => Problem::new(StatusCode::GONE, "hold_expired", "Hold expired")
                .detail("the seat hold expired before payment; nothing was charged"),
            Self::QueueUnavailable(cause) => Problem::unavailable("queue-service", cause.as_ref()),
            Self::DatabaseUnavailable(cause) => Problem::unavailable("database", cause),
            Self::Overloaded => {
                tracing::warn!("database pool exhausted; shedding request");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Service overloaded",
                )
                .detail("too many requests in flight; try again shortly")
                .retry_after(1)
            }
            Self::Internal(cause) => {
                tracing::error!(error = %ErrorChain(cause.as_ref()), "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                )
                .detail("an unexpected error occurred")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.to_problem().into_response();
        if let Self::Unauthorized {
            code: "missing_access_token" | "invalid_access_token",
            ..
        } = self
        {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        classify_sqlx(error)
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        use sea_orm::{DbErr, RuntimeErr};
        match error {
            DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout) => Self::Overloaded,
            DbErr::Conn(RuntimeErr::SqlxError(inner))
            | DbErr::Exec(RuntimeErr::SqlxError(inner))
            | DbErr::Query(RuntimeErr::SqlxError(inner)) => match std::sync::Arc::try_unwrap(inner)
            {
                Ok(inner) => classify_sqlx(inner),
                Err(shared) => Self::Internal(anyhow::anyhow!("database error: {shared}")),
            },
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                Self::DatabaseUnavailable(sqlx::Error::PoolClosed)
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

/// SQLSTATE of a database error, if the error came from Postgres.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

fn classify_sqlx(error: sqlx::Error) -> ApiError {
    match &error {
        sqlx::Error::PoolTimedOut => ApiError::Overloaded,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ApiError::DatabaseUnavailable(error),
        sqlx::Error::Database(_) => match sqlstate(&error).as_deref() {
            // query_canceled (statement_timeout), lock_not_available
            // (lock_timeout), serialization/deadlock, admin shutdown, too many
            // connections, cannot connect now: transient, retry.
            Some("57014" | "55P03" | "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300") => {
                ApiError::DatabaseUnavailable(error)
            }
            Some(code) if code.starts_with("08") => ApiError::DatabaseUnavailable(error),
            _ => ApiError::Internal(anyhow::Error::new(error)),
        },
        _ => ApiError::Internal(anyhow::Error::new(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_business_outcome_has_its_own_status() {
        assert_eq!(
            ApiError::SeatTaken { seats_available: 3 }.status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::TooManySeats { max: 4 }.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::InsufficientBalance {
                balance_krw: 1,
                required_krw: 2
            }
            .status(),
            StatusCode::PAYMENT_REQUIRED
        );
        assert_eq!(ApiError::HoldExpired.status(), StatusCode::GONE);
        assert_eq!(ApiError::PaymentInProgress.status(), StatusCode::CONFLICT);
        assert_eq!(ApiError::NotFound("seat").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn pool_exhaustion_sheds_load_with_retry_after() {
        let error = ApiError::from(sqlx::Error::PoolTimedOut);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }

    #[test]
    fn a_lost_connection_is_503_not_500() {
        let error = ApiError::from(sqlx::Error::Io(std::io::Error::other("connection refused")));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_missing_token_asks_for_bearer_authentication() {
        let response = ApiError::unauthorized("missing_access_token", "no token").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let response = ApiError::Internal(anyhow::anyhow!("secret detail")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
