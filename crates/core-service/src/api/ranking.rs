//! Response bodies of the popular-concert ranking
//! (`GET /v1/rankings/concerts`), and the ranked entry that the Postgres
//! snapshots store as JSON (`ranking_snapshots.items`). Times are RFC 3339
//! UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The span of sales a ranking counts, ending now.
///
/// Sales are counted by the payment's `paid_at` in buckets of
/// `ranking.bucket_seconds` (10 minutes by default); a window is the
/// current, partial bucket and the whole buckets before it, as many in all
/// as fit its length: 6 for `1h` and 144 for `24h` with 10-minute buckets.
/// So `1h` counts the sales of the last 50 to 60 minutes, depending on how
/// far into its bucket "now" is: the price of counting in a few sorted
/// sets rather than one entry per sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum RankingWindow {
    /// The last hour (the default).
    #[serde(rename = "1h")]
    Hour,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    Day,
}

impl RankingWindow {
    /// Both windows, shortest first (the snapshot job takes one of each).
    pub const ALL: [Self; 2] = [Self::Hour, Self::Day];

    /// The query-string and database spelling: `1h` or `24h`
    /// (`ranking_snapshots.window_name`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
        }
    }

    /// The window named `raw` (exactly `1h` or `24h`), if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == raw)
    }

    /// Its length in seconds (3,600 or 86,400).
    pub fn seconds(self) -> u64 {
        match self {
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }
}

impl std::fmt::Display for RankingWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One concert in a ranking. Also the shape of each element of a stored
/// snapshot (`ranking_snapshots.items`), so a snapshot is served as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RankedConcert {
    /// Position, from 1. Concerts with equal `tickets` are ordered by
    /// concert id, lowest (oldest) first, so positions never tie.
    #[schema(minimum = 1)]
    pub rank: u32,
    /// The concert's id.
    pub concert_id: i64,
    /// The concert's title. Empty only while Postgres cannot be read and
    /// the title is not in the service's title cache (the counts are live
    /// all the same).
    pub title: String,
    /// Tickets (seats) sold in the window, by completed payments.
    #[schema(minimum = 1)]
    pub tickets: i64,
}

/// `GET /v1/rankings/concerts`: concerts by tickets sold in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConcertRanking {
    /// The window counted.
    pub window: RankingWindow,
    /// When the counts were read: now for live data (give or take the
    /// answer cache's `ranking.cache_ms`, at most 1 s), the snapshot's time
    /// for a stale answer served from a snapshot.
    pub as_of: DateTime<Utc>,
    /// True when the answer is not live: Redis is unreachable (or was
    /// emptied and is being rebuilt), so the answer is the newest snapshot
    /// of the window (taken every 10 minutes), or an empty list when there
    /// is none or Postgres cannot be read either.
    pub stale: bool,
    /// At most `limit` concerts, best-selling first; concerts without a
    /// sale in the window are not listed.
    pub concerts: Vec<RankedConcert>,
}
