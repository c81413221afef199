//! Request and response bodies of the HTTP API (JSON). Amounts are whole
//! KRW (`i64`), times RFC 3339 UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{
    ToSchema,
    openapi::{Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, Type},
};
use uuid::Uuid;

use crate::domain::{Krw, PerformanceId, SeatId};

pub mod coupons;
pub mod ranking;
pub mod seatmap;

/// A concert in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Concert {
    /// Concert id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Performing artist.
    pub artist: String,
    /// Venue name.
    pub venue: String,
    /// Its performances, earliest first.
    pub performances: Vec<Performance>,
}

/// One performance (show date) of a concert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    /// Performance id; also the waiting room's event id.
    pub id: i64,
    /// Show start.
    pub starts_at: DateTime<Utc>,
    /// When seats go on sale.
    pub sale_opens_at: DateTime<Utc>,
    /// Most seats one admission session may hold and buy, across all its
    /// holds.
    pub max_seats_per_order: i32,
    /// Most seats one fan may hold and buy for this performance, across
    /// all their admission sessions.
    pub max_tickets_per_fan: i32,
    /// Seats in the performance; present on `GET /v1/concerts/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seats_total: Option<i64>,
    /// Seats free now (lazy expiry applied); present on
    /// `GET /v1/concerts/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seats_available: Option<i64>,
}

/// A page of concerts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConcertPage {
    /// Concerts ordered by id.
    pub concerts: Vec<Concert>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// A seat and whether it can be held now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Seat {
    /// Seat id.
    pub id: i64,
    /// Section, e.g. `A`.
    pub section: String,
    /// Row label, e.g. `3`.
    pub row: String,
    /// Seat number in the row.
    pub number: i32,
    /// Price grade, e.g. `VIP`.
    pub grade: String,
    /// Price in KRW.
    pub price: i64,
    /// Free, or held with an expired hold.
    pub available: bool,
}

/// The seat map of a performance. May be up to 1 s stale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeatMap {
    /// Performance id.
    pub performance_id: i64,
    /// Number of available seats.
    pub seats_available: i64,
    /// Every seat, by id.
    pub seats: Vec<Seat>,
}

/// `POST /v1/reservations` body. The fan comes from the identity token
/// (`Authorization: Bearer`), the admission from `Onsale-Access-Token`.
///
/// Exactly one of `seat_ids` (pick your seats) and `best_available` (the
/// server picks) is given; both or neither is 422 `invalid_selection`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    /// The performance.
    pub performance_id: PerformanceId,
    /// Seats to hold, all or none (1 to the performance's
    /// `max_seats_per_order`, no duplicates). The admission session's live
    /// holds and purchases together stay within `max_seats_per_order`, and
    /// the fan's within `max_tickets_per_fan`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(schema_with = seat_ids)]
    pub seat_ids: Vec<SeatId>,
    /// Let the server pick the best block of adjacent free seats and hold it
    /// in one step, within the same limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_available: Option<BestAvailable>,
}

impl CreateReservation {
    /// A hold of exactly `seat_ids`.
    pub fn seats(performance_id: PerformanceId, seat_ids: Vec<SeatId>) -> Self {
        Self {
            performance_id,
            seat_ids,
            best_available: None,
        }
    }

    /// A best-available hold of `quantity` adjacent seats in any grade or
    /// section.
    pub fn best_available(performance_id: PerformanceId, quantity: u32) -> Self {
        Self {
            performance_id,
            seat_ids: Vec::new(),
            best_available: Some(BestAvailable {
                quantity,
                grade: None,
                section: None,
            }),
        }
    }
}

/// A best-available request: `quantity` seats side by side in one row,
/// optionally within one grade or one section.
///
/// The server takes the first row, in the order the concert listed its
/// sections and rows (front to back), that has such a block, and there the
/// block nearest the row's centre, never leaving a single empty seat
/// between the block and a taken seat or the row's end while another
/// placement avoids it (the rule ticketing sites call "no orphan seats").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BestAvailable {
    /// Seats wanted side by side: 1 to the performance's
    /// `max_seats_per_order`.
    pub quantity: u32,
    /// Only seats of this price grade, e.g. `VIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<String>,
    /// Only seats of this section, e.g. `A`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
}

/// A seat inside a reservation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservedSeat {
    /// Seat id.
    pub id: i64,
    /// Section.
    pub section: String,
    /// Row label.
    pub row: String,
    /// Seat number.
    pub number: i32,
    /// Price grade.
    pub grade: String,
    /// Price in KRW.
    pub price: i64,
}

/// A reservation (hold).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    /// Reservation id (UUID v7).
    pub reservation_id: Uuid,
    /// The performance.
    pub performance_id: i64,
    /// The holder (their identity token's `sub`).
    pub user_id: String,
    /// `held`, `confirmed`, `expired` or `cancelled`. A hold past
    /// `held_until` reads as `expired`.
    pub status: String,
    /// End of the hold: `hold_ttl_seconds` after it was made, but never
    /// after the access token it was made with expires.
    pub held_until: DateTime<Utc>,
    /// The seats.
    pub seats: Vec<ReservedSeat>,
    /// Total price in KRW.
    pub amount: i64,
}

/// `POST /v1/payments` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    /// The held reservation to pay.
    pub reservation_id: Uuid,
    /// A coupon of the payer's to spend on it (`GET /v1/coupons`): its
    /// discount comes off the price, and it is used up. Part of the
    /// `Idempotency-Key`'s binding: the same key with another coupon is 422.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<crate::domain::CouponCode>,
}

/// A completed payment. Replays of the same `Idempotency-Key` return this
/// exact body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    /// Payment id (UUID v7).
    pub payment_id: Uuid,
    /// The confirmed reservation.
    pub reservation_id: Uuid,
    /// The payer.
    pub user_id: String,
    /// `completed`.
    pub status: String,
    /// Amount debited in KRW: `price` less `discount`.
    pub amount: i64,
    /// The reservation's price in KRW.
    #[serde(default)]
    pub price: i64,
    /// The coupon's discount in KRW (0 without one).
    #[serde(default)]
    pub discount: i64,
    /// The coupon spent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
    /// Balance after the debit, in KRW.
    pub balance_after: i64,
    /// Commit time.
    pub paid_at: DateTime<Utc>,
}

/// `POST /v1/users/{id}/balance/charges` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Amount to add in KRW (positive; the balance may not exceed
    /// `i64::MAX`).
    pub amount: Krw,
}

/// One balance change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// `charge`, `spend` or `refund`.
    pub kind: String,
    /// Amount in KRW (`kind` gives the direction); for a `spend`, the
    /// amount paid: `price` less `discount`, 0 when a coupon covered it all.
    pub amount: i64,
    /// Balance after this entry, in KRW.
    pub balance_after: i64,
    /// The payment of a `spend` or `refund`.
    pub payment_id: Option<Uuid>,
    /// A `spend`'s price in KRW (`null` for charges and for spends made
    /// before prices were recorded).
    #[serde(default)]
    pub price: Option<i64>,
    /// A `spend`'s coupon discount in KRW (0 without one).
    #[serde(default)]
    pub discount: i64,
    /// The coupon a `spend` used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon_code: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A user's balance and latest ledger entries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// The user.
    pub user_id: String,
    /// Current balance in KRW.
    pub balance: i64,
    /// Latest entries, newest first.
    pub recent_entries: Vec<LedgerEntry>,
}

/// Admin: a concert with its performances and seat maps, created at once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConcert {
    /// Title (1–200 chars).
    #[schema(schema_with = text_200)]
    pub title: String,
    /// Artist (1–200 chars).
    #[schema(schema_with = text_200)]
    pub artist: String,
    /// Venue (1–200 chars).
    #[schema(schema_with = text_200)]
    pub venue: String,
    /// 1–100 performances.
    #[schema(min_items = 1, max_items = 100)]
    pub performances: Vec<NewPerformance>,
}

/// Admin: one performance and its seat map.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerformance {
    /// Show start.
    pub starts_at: DateTime<Utc>,
    /// Sale start (not after `starts_at`).
    pub sale_opens_at: DateTime<Utc>,
    /// Most seats one admission session may hold and buy in total, 1–50.
    #[schema(minimum = 1, maximum = 50)]
    pub max_seats_per_order: i32,
    /// Most seats one fan may hold and buy for this performance across all
    /// their admission sessions, 1–1000 and at least `max_seats_per_order`.
    /// When absent: [`DEFAULT_MAX_TICKETS_PER_FAN`], or
    /// `max_seats_per_order` when that is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_tickets_per_fan: Option<i32>,
    /// Seat blocks; 1–100 000 seats in total.
    #[schema(min_items = 1)]
    pub sections: Vec<NewSection>,
}

/// The per-fan limit of a performance whose body names none (see
/// [`NewPerformance::max_tickets_per_fan`]).
pub const DEFAULT_MAX_TICKETS_PER_FAN: i32 = 8;

impl NewPerformance {
    /// The per-fan limit this performance gets: the one it names, or
    /// [`DEFAULT_MAX_TICKETS_PER_FAN`] raised to `max_seats_per_order`.
    pub fn tickets_per_fan(&self) -> i32 {
        self.max_tickets_per_fan
            .unwrap_or_else(|| DEFAULT_MAX_TICKETS_PER_FAN.max(self.max_seats_per_order))
    }
}

/// Admin: a block of identical seats: every row in `rows` gets seats
/// numbered `1..=seats_per_row`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSection {
    /// Section name (1–32 chars).
    #[schema(schema_with = text_32)]
    pub section: String,
    /// Price grade (1–16 chars).
    #[schema(schema_with = text_16)]
    pub grade: String,
    /// Price per seat in KRW.
    pub price: Krw,
    /// Row labels (1–16 chars each, unique).
    #[schema(schema_with = row_labels)]
    pub rows: Vec<String>,
    /// Seats per row (1–1000).
    #[schema(minimum = 1, maximum = 1000)]
    pub seats_per_row: i32,
}

/// Admin: what was created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConcertCreated {
    /// The new concert id.
    pub concert_id: i64,
    /// The new performances, in request order.
    pub performances: Vec<PerformanceCreated>,
}

/// Admin: one created performance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PerformanceCreated {
    /// Performance id.
    pub id: i64,
    /// Seat ids created, ascending.
    pub seat_ids: Vec<i64>,
}

/// Readiness report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Whether the database answered.
    pub database: bool,
}

/// An RFC 9457 problem (`application/problem+json`), the body of every
/// 4xx and 5xx answer: the members of every onsale problem, and those some
/// of this service's problems add. Clients branch on `code`, e.g.
/// `seat_taken`, `order_limit`, `token_subject_mismatch`, `rate_limited`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemDetails {
    // `type`, `title`, `status`, `detail` and `code`; undocumented, so
    // that the schema is the platform's own, not wrapped with a
    // description.
    #[serde(flatten)]
    #[schema(inline)]
    pub(crate) problem: platform::openapi::ProblemDetails,
    /// `seat_taken`: seats of the performance that can still be held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seats_available: Option<i64>,
    /// `order_limit`, `fan_limit`: seats still allowed under the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i32>,
    /// `order_limit`, `too_many_seats`: the performance's limit per
    /// admission session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seats_per_order: Option<i32>,
    /// `fan_limit`: the performance's limit per fan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tickets_per_fan: Option<i32>,
    /// `insufficient_balance`: the balance, in KRW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance_krw: Option<i64>,
    /// `insufficient_balance`: the reservation's amount, in KRW.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_krw: Option<i64>,
}

/// What a concert's texts take (see `booking::concerts`), as a JSON Schema
/// pattern: no control character, and no whitespace at either end.
const TEXT_PATTERN: &str = r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$";

/// A text of 1 to `max` characters of [`TEXT_PATTERN`].
fn text(max: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(TEXT_PATTERN))
        .description(Some(format!(
            "1-{max} characters, no control characters, no whitespace at either end"
        )))
        .build()
}

fn text_200() -> Object {
    text(200)
}

fn text_32() -> Object {
    text(32)
}

fn text_16() -> Object {
    text(16)
}

/// [`CreateReservation::seat_ids`]: 1 to 50 different seat ids (50 is the
/// highest `max_seats_per_order` a performance may set).
fn seat_ids() -> Array {
    let seat = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1));
    ArrayBuilder::new()
        .items(seat)
        .min_items(Some(1))
        .max_items(Some(50))
        .unique_items(true)
        .description(Some(
            "Seats to hold, all or none: 1 to the performance's `max_seats_per_order`, no \
             duplicates. The admission session's live holds and purchases together stay within \
             `max_seats_per_order`, and the fan's within `max_tickets_per_fan`.",
        ))
        .build()
}

/// [`NewSection::rows`]: one or more different labels.
fn row_labels() -> Array {
    ArrayBuilder::new()
        .items(text_16())
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Row labels (1-16 characters each, unique)"))
        .build()
}
