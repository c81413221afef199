//! Why a booking operation was refused or failed. Transport-free: each
//! transport maps it to its own status (HTTP: `crate::error`).

use crate::{
    queue::QueueError,
    store::{StoreError, limits::LimitExceeded},
};

/// Every way a [`super::Booking`] operation can end without its result.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// A hold request named no seats.
    #[error("seat_ids must not be empty")]
    NoSeats,
    /// A hold request named seats and asked for best available at once, or
    /// a best-available filter is too long; the text says which.
    #[error("{0}")]
    InvalidSelection(&'static str),
    /// A hold request named a seat twice.
    #[error("seat_ids must not repeat")]
    DuplicateSeats,
    /// More seats than one reservation may hold: the performance's
    /// `max_seats_per_order`, or the per-request cap of
    /// [`super::MAX_SEATS_PER_REQUEST`], whichever is hit first.
    #[error("at most {max} seats per order")]
    TooManySeats {
        /// The limit that was exceeded.
        max: i32,
    },
    /// The access token was issued to another fan than the identity token
    /// names; nothing was done.
    #[error("the access token was issued to another fan")]
    SubjectMismatch,
    /// The fan asked for what belongs to another fan (`what`: `balance`).
    #[error("this {what} belongs to another fan")]
    NotOwner {
        /// What was asked for.
        what: &'static str,
    },
    /// The seats would take the admission session or the fan past a
    /// purchase limit of the performance; nothing was held.
    #[error("{}", limit_message(.0))]
    OverLimit(LimitExceeded),
    /// The performance's sale has not opened yet.
    #[error("the sale of this performance has not opened yet")]
    SaleNotOpen,
    /// At least one requested seat is held or sold; nothing was held.
    #[error("one or more seats are already taken")]
    SeatTaken {
        /// Seats of the performance that can still be held (lazy expiry
        /// applied; cached like the seat map).
        seats_available: i64,
    },
    /// No row has the block of adjacent seats a best-available hold asked
    /// for (in its grade or section), in a snapshot read after the request
    /// arrived; nothing was held.
    #[error("no block of that many adjacent seats is left")]
    NoBlock {
        /// Seats of the performance that can still be held, adjacent or
        /// not.
        seats_available: i64,
    },
    /// A paid reservation cannot be released; nothing changed.
    #[error("a paid reservation cannot be released")]
    ReleasePaid,
    /// The fan's access session already completed a purchase: only a retry
    /// of an `Idempotency-Key` it already used is answered, never a new
    /// payment.
    #[error(
        "this access session already completed a purchase; only a retry of its Idempotency-Key is answered"
    )]
    AccessCompleted,
    /// A new concert breaks a rule; the text names it and is safe to show.
    #[error("{0}")]
    InvalidConcert(String),
    /// The waiting room refused the access token, or could not check it.
    #[error("access check failed")]
    Access(#[from] QueueError),
    /// The store refused (a rule its transaction enforces) or failed.
    #[error("booking store failed")]
    Store(#[from] StoreError),
}

fn limit_message(exceeded: &LimitExceeded) -> String {
    match exceeded {
        LimitExceeded::Order { max, remaining } => format!(
            "an admission session holds and buys at most {max} seats of this performance; \
             {remaining} left"
        ),
        LimitExceeded::Fan { max, remaining } => format!(
            "a fan holds and buys at most {max} seats of this performance; {remaining} left"
        ),
    }
}
