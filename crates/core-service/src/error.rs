//! The HTTP API's error type. Every failure a handler can return is an
//! [`ApiError`]: handlers make the input errors themselves (malformed ids,
//! missing tokens), and the `From` impls here are the one place where the
//! transport-free errors ([`BookingError`], [`StoreError`],
//! [`QueueError`]) get their problem codes. [`ApiError::into_response`]
//! then maps each variant to an HTTP status and an RFC 9457 problem.
//!
//! A 5xx tells the client only "internal" or "unavailable" and logs the
//! cause chain.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use platform::problem::{ErrorChain, Problem};

use crate::{
    api::coupons::Coupon,
    booking::BookingError,
    coupons::CouponError,
    queue::QueueError,
    store::{DatabaseError, StoreError, limits::LimitExceeded},
};

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
    /// No or malformed `Authorization` header, or a token queue-service
    /// rejects (401).
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
    /// No block of the adjacent seats a best-available hold asked for is
    /// left (409 `no_block_available`, with `seats_available`).
    #[error("no block of that many adjacent seats is left")]
    NoBlock {
        /// Seats still free in the performance, adjacent or not.
        seats_available: i64,
    },
    /// The seats would take the admission session or the fan past a
    /// purchase limit (409 `order_limit` with `max_seats_per_order`, or 409
    /// `fan_limit` with `max_tickets_per_fan`; both with `remaining`, the
    /// seats still allowed).
    #[error("{1}")]
    OverLimit(LimitExceeded, String),
    /// The fan's other hold of the same performance is being made right
    /// now (409 `hold_in_progress`, `Retry-After`).
    #[error("another hold of this fan for this performance is in progress")]
    HoldInProgress,
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
    /// Something the request names has ended for good (410 `code`).
    #[error("{detail}")]
    Gone {
        /// Stable problem code.
        code: &'static str,
        /// Client-facing explanation.
        detail: String,
    },
    /// The hold expired before payment (410 `hold_expired`); no charge.
    #[error("the hold expired")]
    HoldExpired,
    /// The fan already holds a coupon of this campaign (409
    /// `already_claimed`, with `coupon`).
    #[error("you already hold a coupon of this campaign")]
    AlreadyClaimed(Box<Coupon>),
    /// Redis could not answer where nothing else can (503).
    #[error("redis unavailable")]
    RedisUnavailable(#[source] platform::redis_pool::RedisCallError),
    /// queue-service could not answer (503, fail closed).
    #[error("queue-service unavailable")]
    QueueUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Postgres is unreachable or timed out (503).
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] DatabaseError),
    /// No pooled connection within the acquire timeout: load shedding (503
    /// `overloaded`, `Retry-After`).
    #[error("database pool exhausted")]
    Overloaded,
    /// A bug or an unexpected database answer (500, details only in logs).
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
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
            Self::NoBlock { seats_available } => Problem::new(
                StatusCode::CONFLICT,
                "no_block_available",
                "No block of seats left",
            )
            .detail("no row has that many adjacent seats left; nothing was held")
            .with("seats_available", *seats_available),
            Self::Conflict { code, detail } => {
                Problem::new(StatusCode::CONFLICT, code, "Conflict").detail(detail)
            }
            Self::OverLimit(exceeded, detail) => {
                let (code, field, max, remaining) = match *exceeded {
                    LimitExceeded::Order { max, remaining } => {
                        ("order_limit", "max_seats_per_order", max, remaining)
                    }
                    LimitExceeded::Fan { max, remaining } => {
                        ("fan_limit", "max_tickets_per_fan", max, remaining)
                    }
                };
                Problem::new(StatusCode::CONFLICT, code, "Purchase limit reached")
                    .detail(detail)
                    .with(field, max)
                    .with("remaining", remaining)
            }
            Self::HoldInProgress => {
                Problem::new(StatusCode::CONFLICT, "hold_in_progress", "Hold in progress")
                    .detail(self.to_string())
                    .retry_after(1)
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
            Self::Gone { code, detail } => {
                Problem::new(StatusCode::GONE, code, "Gone").detail(detail)
            }
            Self::HoldExpired => Problem::new(StatusCode::GONE, "hold_expired", "Hold expired")
                .detail("the seat hold expired before payment; nothing was charged"),
            Self::AlreadyClaimed(coupon) => Problem::new(
                StatusCode::CONFLICT,
                "already_claimed",
                "Coupon already claimed",
            )
            .detail(self.to_string())
            .with(
                "coupon",
                serde_json::to_value(coupon.as_ref()).unwrap_or_default(),
            ),
            Self::RedisUnavailable(cause) => Problem::unavailable("redis", cause),
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

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let detail = error.to_string();
        match error {
            StoreError::PoolExhausted => Self::Overloaded,
            StoreError::Unavailable(cause) => Self::DatabaseUnavailable(cause),
            StoreError::Database(_) | StoreError::Invariant(_) | StoreError::Encode(_) => {
                Self::Internal(Box::new(error))
            }
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::NotOwner => Self::forbidden("not_owner", detail),
            StoreError::PaymentInProgress => Self::PaymentInProgress,
            StoreError::HoldInProgress => Self::HoldInProgress,
            StoreError::UnknownSeats => Self::unprocessable("unknown_seats", detail),
            StoreError::AmountOverflow => Self::unprocessable("amount_overflow", detail),
            StoreError::BalanceOverflow => Self::unprocessable("balance_overflow", detail),
            StoreError::AlreadyPaid => Self::conflict("already_paid", detail),
            StoreError::ReservationCancelled => Self::conflict("reservation_cancelled", detail),
            StoreError::HoldExpired => Self::HoldExpired,
            StoreError::InsufficientBalance {
                balance_krw,
                required_krw,
            } => Self::InsufficientBalance {
                balance_krw,
                required_krw,
            },
            StoreError::KeyReused | StoreError::KeyCollision => {
                Self::unprocessable("idempotency_key_reused", detail)
            }
            StoreError::UnknownCoupon => Self::unprocessable("unknown_coupon", detail),
            StoreError::CouponUsed => Self::conflict("coupon_used", detail),
            StoreError::CouponExpired => Self::Gone {
                code: "coupon_expired",
                detail,
            },
            StoreError::CouponNotApplicable => Self::unprocessable("coupon_not_applicable", detail),
        }
    }
}

impl From<CouponError> for ApiError {
    fn from(error: CouponError) -> Self {
        let detail = error.to_string();
        match error {
            CouponError::NotFound => Self::NotFound("campaign"),
            CouponError::NotStarted(_) => Self::forbidden("campaign_not_started", detail),
            CouponError::Closed(_) => Self::forbidden("campaign_closed", detail),
            CouponError::SoldOut => Self::conflict("sold_out", detail),
            CouponError::AlreadyClaimed(coupon) => Self::AlreadyClaimed(coupon),
            CouponError::Invalid(detail) => Self::unprocessable("invalid_field", detail),
            CouponError::Store(error) => error.into(),
            CouponError::Redis(error) => Self::RedisUnavailable(error),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let detail = error.to_string();
        match error {
            QueueError::InvalidToken => Self::unauthorized("invalid_access_token", detail),
            QueueError::AccessDenied => Self::forbidden("access_denied", detail),
            QueueError::Malformed => Self::BadRequest(detail),
            QueueError::Unavailable(cause) => Self::QueueUnavailable(cause),
        }
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> Self {
        let detail = error.to_string();
        match error {
            BookingError::NoSeats => Self::unprocessable("no_seats", detail),
            BookingError::DuplicateSeats => Self::unprocessable("duplicate_seats", detail),
            BookingError::TooManySeats { max } => Self::TooManySeats { max },
            BookingError::SaleNotOpen => Self::forbidden("sale_not_open", detail),
            BookingError::SubjectMismatch => Self::forbidden("token_subject_mismatch", detail),
            BookingError::NotOwner { .. } => Self::forbidden("not_owner", detail),
            BookingError::OverLimit(exceeded) => Self::OverLimit(exceeded, detail),
            BookingError::SeatTaken { seats_available } => Self::SeatTaken { seats_available },
            BookingError::NoBlock { seats_available } => Self::NoBlock { seats_available },
            BookingError::InvalidSelection(_) => Self::unprocessable("invalid_selection", detail),
            BookingError::ReleasePaid => Self::conflict("already_paid", detail),
            BookingError::AccessCompleted => Self::forbidden("access_completed", detail),
            BookingError::InvalidConcert(detail) => Self::unprocessable("invalid_field", detail),
            BookingError::Access(error) => error.into(),
            BookingError::Store(error) => error.into(),
        }
    }
}

/// A raw sqlx error, classified by the store's rules (for callers outside
/// the store, such as tests checking that a timeout is a 503).
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::from(error).into()
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
    fn a_purchase_limit_names_its_limit_and_what_is_left() {
        let error = ApiError::from(BookingError::OverLimit(LimitExceeded::Fan {
            max: 8,
            remaining: 2,
        }));
        let problem = error.to_problem();
        assert_eq!(problem.status(), StatusCode::CONFLICT);
        assert_eq!(problem.code(), "fan_limit");
        let order = ApiError::from(BookingError::OverLimit(LimitExceeded::Order {
            max: 4,
            remaining: 0,
        }));
        assert_eq!(order.to_problem().code(), "order_limit");
        assert!(order.to_string().contains("at most 4 seats"));
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
        let response = ApiError::Internal("secret detail".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
