//! Admin: a concert with its performances and seat maps, created in one
//! transaction through sea-orm entities.

use std::collections::HashSet;

use sea_orm::{ActiveModelTrait, ActiveValue::NotSet, EntityTrait, Set, TransactionTrait};

use crate::{
    db::Db,
    entities::{concert, performance, seat},
    error::ApiError,
    model::{ConcertCreated, NewConcert, PerformanceCreated},
};

/// Most seats in one performance.
pub const MAX_SEATS_PER_PERFORMANCE: i64 = 100_000;
/// Most performances in one concert request.
pub const MAX_PERFORMANCES: usize = 100;
/// Rows per multi-row `INSERT` (7 parameters each, far below Postgres's
/// 65 535 bind limit).
const SEAT_BATCH: usize = 2_000;

fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) || value.trim() != value {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!(
                "{field} must be 1-{max} characters without control characters or surrounding spaces"
            ),
        ));
    }
    Ok(())
}

/// Checks every rule of a [`NewConcert`] before touching the database.
///
/// # Errors
/// 422 naming the first broken rule.
pub fn validate(new: &NewConcert) -> Result<(), ApiError> {
    text("title", &new.title, 200)?;
    text("artist", &new.artist, 200)?;
    text("venue", &new.venue, 200)?;
    if new.performances.is_empty() || new.performances.len() > MAX_PERFORMANCES {
        return Err(ApiError::unprocessable(
            "invalid_field",
            "a concert needs 1-100 performances",
        ));
    }
    for p in &new.performances {
        if p.sale_opens_at > p.starts_at {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "sale_opens_at must not be after starts_at",
            ));
        }
        if !(1..=50).contains(&p.max_seats_per_order) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "max_seats_per_order must be 1-50",
            ));
        }
        if p.sections.is_empty() {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "a performance needs at least one section",
            ));
        }
        let mut places = HashSet::new();
        let mut total: i64 = 0;
        for s in &p.sections {
            text("section", &s.section, 32)?;
            text("grade", &s.grade, 16)?;
            if s.rows.is_empty() || !(1..=1000).contains(&s.seats_per_row) {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    "a section needs rows and 1-1000 seats per row",
                ));
            }
            for row in &s.rows {
                text("row", row, 16)?;
                if !places.insert((s.section.as_str(), row.as_str())) {
                    return Err(ApiError::unprocessable(
                        "invalid_field",
                        "a section lists the same row twice",
                    ));
                }
            }
            total += s.rows.len() as i64 * i64::from(s.seats_per_row);
            if total > MAX_SEATS_PER_PERFORMANCE {
                return Err(ApiError::unprocessable(
                    "invalid_field",
                    "at most 100000 seats per performance",
                ));
            }
        }
    }
    Ok(())
}

/// Creates the concert, its performances and every seat, all or nothing.
///
/// # Errors
/// 422 for invalid input (see [`validate`]); database errors.
pub async fn create_concert(db: &Db, new: &NewConcert) -> Result<ConcertCreated, ApiError> {
    validate(new)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::Krw,
        model::{NewPerformance, NewSection},
    };

    fn concert(rows: usize, seats_per_row: i32) -> NewConcert {
        let now = chrono::Utc::now();
        NewConcert {
            title: "Tour".into(),
            artist: "Band".into(),
            venue: "Hall".into(),
            performances: vec![NewPerformance {
                starts_at: now,
                sale_opens_at: now,
                max_seats_per_order: 4,
                sections: vec![NewSection {
                    section: "A".into(),
                    grade: "R".into(),
                    price: Krw::positive(1000).unwrap(),
                    rows: (0..rows).map(|r| r.to_string()).collect(),
                    seats_per_row,
                }],
            }],
        }
    }

    #[test]
    fn a_reasonable_seat_map_is_accepted() {
        assert!(validate(&concert(10, 20)).is_ok());
    }

    #[test]
    fn oversized_or_empty_seat_maps_are_rejected() {
        assert!(validate(&concert(1000, 1000)).is_err());
        assert!(validate(&concert(0, 10)).is_err());
        assert!(validate(&concert(1, 0)).is_err());
    }

    #[test]
    fn duplicate_rows_and_blank_titles_are_rejected() {
        let mut c = concert(2, 2);
        c.performances[0].sections[0].rows = vec!["1".into(), "1".into()];
        assert!(validate(&c).is_err());
        let mut c = concert(2, 2);
        c.title = "  ".into();
        assert!(validate(&c).is_err());
        let mut c = concert(2, 2);
        c.performances[0].sale_opens_at = c.performances[0].starts_at + chrono::Duration::hours(1);
        assert!(validate(&c).is_err());
    }
}
