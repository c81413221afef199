//! Admin: a concert with its performances and seat maps, created in one
//! transaction through sea-orm entities.

use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, EntityTrait, Set, TransactionTrait};

use super::StoreError;
use crate::{
    api::{ConcertCreated, NewConcert, PerformanceCreated},
    db::Db,
    entities::{concert, performance, seat},
};

/// Rows per multi-row `INSERT` (7 parameters each, far below Postgres's
/// 65 535 bind limit).
const SEAT_BATCH: usize = 2_000;

/// Creates the concert, its performances and every seat, all or nothing.
/// `new` must have passed [`crate::booking::concerts::validate`]; the
/// schema's `CHECK` constraints refuse what slips through as a database
/// error.
///
/// # Errors
/// Database errors.
pub async fn create_concert(db: &Db, new: &NewConcert) -> Result<ConcertCreated, StoreError> {
    let txn = db.orm().begin().await?;
    let concert = concert::ActiveModel {
        id: NotSet,
        title: Set(new.title.clone()),
        artist: Set(new.artist.clone()),
        venue: Set(new.venue.clone()),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&txn)
    .await?;
    let mut performances = Vec::with_capacity(new.performances.len());
    for p in &new.performances {
        let created = performance::ActiveModel {
            id: NotSet,
            concert_id: Set(concert.id),
            starts_at: Set(p.starts_at),
            sale_opens_at: Set(p.sale_opens_at),
            max_seats_per_order: Set(p.max_seats_per_order),
            max_tickets_per_fan: Set(p.tickets_per_fan()),
        }
        .insert(&txn)
        .await?;
        let seats: Vec<seat::ActiveModel> = p
            .sections
            .iter()
            .flat_map(|s| {
                s.rows.iter().flat_map(move |row| {
                    (1..=s.seats_per_row).map(move |number| seat::ActiveModel {
                        id: NotSet,
                        performance_id: Set(created.id),
                        section: Set(s.section.clone()),
                        row_label: Set(row.clone()),
                        number: Set(number),
                        grade: Set(s.grade.clone()),
                        price_krw: Set(s.price.won()),
                        status: Set("free".to_owned()),
                        reservation_id: Set(None),
                        held_until: Set(None),
                    })
                })
            })
            .collect();
        let mut seat_ids = Vec::with_capacity(seats.len());
        for batch in seats.chunks(SEAT_BATCH) {
            let inserted = seat::Entity::insert_many(batch.to_vec())
                .exec_with_returning(&txn)
                .await?;
            seat_ids.extend(inserted.into_iter().map(|s| s.id));
        }
        seat_ids.sort_unstable();
        performances.push(PerformanceCreated {
            id: created.id,
            seat_ids,
        });
    }
    txn.commit().await?;
    Ok(ConcertCreated {
        concert_id: concert.id,
        performances,
    })
}
