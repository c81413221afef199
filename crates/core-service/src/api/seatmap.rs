//! Bodies of the seat-map reads: the static layout of a performance and
//! its availability (full or as a delta since a version).
//!
//! A seat's **index** is its place among the performance's seats sorted by
//! id (0-based). The availability bitmap and the layout's runs both use it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/performances/{id}/layout`: where every seat is and what it
/// costs. It never changes for a performance, so it is cached for a day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeatLayout {
    /// Performance id.
    pub performance_id: i64,
    /// Seats in the performance; indices run from 0 to this minus 1.
    pub seats_total: u32,
    /// Sections in the order the concert listed them (nearest the stage
    /// first is the convention best-available holds rely on).
    pub sections: Vec<LayoutSection>,
}

/// One section of one price grade.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayoutSection {
    /// Section, e.g. `A`.
    pub section: String,
    /// Price grade, e.g. `VIP`.
    pub grade: String,
    /// Price of each seat in KRW.
    pub price: i64,
    /// Rows, front to back (the order the concert listed them).
    pub rows: Vec<LayoutRow>,
}

/// One row: its seats as runs of consecutive ids and numbers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LayoutRow {
    /// Row label, e.g. `3`.
    pub row: String,
    /// The row's seats, by number.
    pub runs: Vec<SeatRun>,
}

/// `count` seats whose ids, numbers and indices each rise by one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct SeatRun {
    /// Id of the first seat.
    pub first_id: i64,
    /// Number of the first seat in its row.
    pub first_number: i32,
    /// Index of the first seat (its bit in the availability bitmap).
    pub first_index: u32,
    /// Seats in the run (at least 1).
    pub count: u32,
}

/// `GET /v1/performances/{id}/availability[?since=<version>]`: which seats
/// can be held now, at most `seat_cache_ms` old.
///
/// Without `since`, or when the server no longer knows `since`, the answer
/// is full: `free` is set. With a known `since` it is a delta: `since`,
/// `freed` and `taken` are set and `free` is not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    /// Performance id.
    pub performance_id: i64,
    /// Version of this availability: a hash of the bitmap, the same on
    /// every instance for the same seats (also the `ETag`).
    pub version: String,
    /// Seats that can be held now (free, or held with a lapsed hold).
    pub seats_available: u32,
    /// Full answers: base64 (standard, padded) of the bitmap, one bit per
    /// seat index, least significant bit first in each byte; set = can be
    /// held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<String>,
    /// Deltas: the version this delta starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Deltas: seat ids that became available since `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freed: Option<Vec<i64>>,
    /// Deltas: seat ids that were taken (held or sold) since `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<Vec<i64>>,
}
