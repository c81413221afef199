//! Catalog reads: concerts and performances through sea-orm entities; the
//! seat map through one SQL query that applies lazy expiry.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sqlx::Row;

use super::StoreError;
use crate::{
    api::{Concert, ConcertPage, Performance},
    db::Db,
    domain::{ConcertId, PerformanceId},
    entities::{concert, performance},
    seatmap::SeatRow,
};

/// The sale rules of a performance, read before every hold.
#[derive(Debug, Clone, Copy)]
pub struct SaleRules {
    /// Most seats per admission session (and so per reservation).
    pub max_seats_per_order: i32,
    /// Most seats per fan, across their admission sessions.
    pub max_tickets_per_fan: i32,
    /// When the sale opens.
    pub sale_opens_at: DateTime<Utc>,
}

fn to_view(model: performance::Model) -> Performance {
    Performance {
        id: model.id,
        starts_at: model.starts_at,
        sale_opens_at: model.sale_opens_at,
        max_seats_per_order: model.max_seats_per_order,
        max_tickets_per_fan: model.max_tickets_per_fan,
        seats_total: None,
        seats_available: None,
    }
}

/// Concerts with `id > after`, at most `limit`, by id.
///
/// # Errors
/// Database errors.
pub async fn list(db: &Db, after: i64, limit: u64) -> Result<ConcertPage, StoreError> {
    let concerts = concert::Entity::find()
        .filter(concert::Column::Id.gt(after))
        .order_by_asc(concert::Column::Id)
        .limit(limit)
        .all(db.orm())
        .await?;
    let ids: Vec<i64> = concerts.iter().map(|c| c.id).collect();
    let mut by_concert: HashMap<i64, Vec<Performance>> = HashMap::new();
    if !ids.is_empty() {
        for p in performance::Entity::find()
            .filter(performance::Column::ConcertId.is_in(ids))
            .order_by_asc(performance::Column::StartsAt)
            .all(db.orm())
            .await?
        {
            by_concert.entry(p.concert_id).or_default().push(to_view(p));
        }
    }
    let next_after = if concerts.len() as u64 == limit {
        concerts.last().map(|c| c.id)
    } else {
        None
    };
    let concerts = concerts
        .into_iter()
        .map(|c| Concert {
            performances: by_concert.remove(&c.id).unwrap_or_default(),
            id: c.id,
            title: c.title,
            artist: c.artist,
            venue: c.venue,
        })
        .collect();
    Ok(ConcertPage {
        concerts,
        next_after,
    })
}

/// One concert with its performances and their seat counts.
///
/// # Errors
/// [`StoreError::NotFound`]; database errors.
pub async fn get(db: &Db, id: ConcertId) -> Result<Concert, StoreError> {
    let concert = concert::Entity::find_by_id(id.get())
        .one(db.orm())
        .await?
        .ok_or(StoreError::NotFound("concert"))?;
    let performances = performance::Entity::find()
        .filter(performance::Column::ConcertId.eq(id.get()))
        .order_by_asc(performance::Column::StartsAt)
        .all(db.orm())
        .await?;
    let ids: Vec<i64> = performances.iter().map(|p| p.id).collect();
    let counts: HashMap<i64, (i64, i64)> = sqlx::query(
        "SELECT performance_id, count(*) AS total, \
         count(*) FILTER (WHERE status = 'free' OR (status = 'held' AND held_until < now())) AS available \
         FROM seats WHERE performance_id = ANY($1) GROUP BY performance_id",
    )
    .bind(&ids)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("performance_id")?, (r.try_get("total")?, r.try_get("available")?))))
    .collect::<Result<_, sqlx::Error>>()?;
    let performances = performances
        .into_iter()
        .map(|p| {
            let (total, available) = counts.get(&p.id).copied().unwrap_or((0, 0));
            Performance {
                seats_total: Some(total),
                seats_available: Some(available),
                ..to_view(p)
            }
        })
        .collect();
    Ok(Concert {
        id: concert.id,
        title: concert.title,
        artist: concert.artist,
        venue: concert.venue,
        performances,
    })
}

/// The sale rules of `id`.
///
/// # Errors
/// [`StoreError::NotFound`]; database errors.
pub async fn sale_rules(db: &Db, id: PerformanceId) -> Result<SaleRules, StoreError> {
    let p = performance::Entity::find_by_id(id.get())
        .one(db.orm())
        .await?
        .ok_or(StoreError::NotFound("performance"))?;
    Ok(SaleRules {
        max_seats_per_order: p.max_seats_per_order,
        max_tickets_per_fan: p.max_tickets_per_fan,
        sale_opens_at: p.sale_opens_at,
    })
}

/// Every seat of `id`, by id: the performance's layout.
///
/// # Errors
/// [`StoreError::NotFound`] when the performance does not exist (every
/// performance has seats); database errors.
pub async fn seat_rows(db: &Db, id: PerformanceId) -> Result<Vec<SeatRow>, StoreError> {
    let mut conn = db.acquire().await?;
    let seats = sqlx::query(
        "SELECT id, section, row_label, number, grade, price_krw \
         FROM seats WHERE performance_id = $1 ORDER BY id",
    )
    .bind(id.get())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(SeatRow {
            id: r.try_get("id")?,
            section: r.try_get("section")?,
            row: r.try_get("row_label")?,
            number: r.try_get("number")?,
            grade: r.try_get("grade")?,
            price: r.try_get("price_krw")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if seats.is_empty() {
        return Err(StoreError::NotFound("performance"));
    }
    Ok(seats)
}

/// Ids of the seats of `id` that can be held now: free, or held with a
/// lapsed hold.
///
/// # Errors
/// Database errors.
pub async fn available_seat_ids(db: &Db, id: PerformanceId) -> Result<Vec<i64>, StoreError> {
    // One array instead of a row per seat: a 50,000-seat performance
    // decodes in one value rather than 50,000 rows on the async worker.
    let mut conn = db.acquire().await?;
    Ok(sqlx::query_scalar(
        "SELECT coalesce(array_agg(id), '{}') FROM seats WHERE performance_id = $1 \
         AND (status = 'free' OR (status = 'held' AND held_until < now()))",
    )
    .bind(id.get())
    .fetch_one(&mut *conn)
    .await?)
}

/// One performance's seat counts for the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inventory {
    /// The performance.
    pub performance: PerformanceId,
    /// Seats that can be held now: free, or held with a lapsed hold.
    pub available: u64,
    /// Seats in live holds.
    pub held: u64,
    /// Fans with a live hold.
    pub holders: u64,
}

/// The seat counts of each of `ids` (one query; unknown ids are left out).
///
/// # Errors
/// Database errors.
pub async fn inventory(db: &Db, ids: &[PerformanceId]) -> Result<Vec<Inventory>, StoreError> {
    let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
    let mut conn = db.acquire().await?;
    // Live holds are read through the partial index of held reservations.
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "WITH counts AS ( \
           SELECT performance_id, \
             count(*) FILTER (WHERE status = 'free' OR (status = 'held' AND held_until < now())) AS available, \
             count(*) FILTER (WHERE status = 'held' AND held_until >= now()) AS held \
           FROM seats WHERE performance_id = ANY($1) GROUP BY performance_id), \
         holders AS ( \
           SELECT performance_id, count(DISTINCT user_id) AS holders FROM reservations \
           WHERE status = 'held' AND held_until >= now() AND performance_id = ANY($1) \
           GROUP BY performance_id) \
         SELECT c.performance_id, c.available, c.held, coalesce(h.holders, 0) \
         FROM counts c LEFT JOIN holders h USING (performance_id)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, available, held, holders)| {
            Some(Inventory {
                performance: PerformanceId::new(id).ok()?,
                available: u64::try_from(available).ok()?,
                held: u64::try_from(held).ok()?,
                holders: u64::try_from(holders).ok()?,
            })
        })
        .collect())
}
