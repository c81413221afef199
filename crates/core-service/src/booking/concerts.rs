//! The rules of a new concert, checked before anything is written, and
//! its creation.

use std::collections::HashSet;

use super::BookingError;
use crate::{
    api::{ConcertCreated, NewConcert},
    db::Db,
    store::admin,
};

/// Most seats in one performance.
pub const MAX_SEATS_PER_PERFORMANCE: i64 = 100_000;
/// Most performances in one concert request.
pub const MAX_PERFORMANCES: usize = 100;
/// Largest per-fan limit a performance may set.
pub const MAX_TICKETS_PER_FAN: i32 = 1_000;

/// Refuses the concert for the reason `detail` (shown to the client).
fn invalid(detail: impl Into<String>) -> Result<(), BookingError> {
    Err(BookingError::InvalidConcert(detail.into()))
}

fn text(field: &str, value: &str, max: usize) -> Result<(), BookingError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) || value.trim() != value {
        return invalid(format!(
            "{field} must be 1-{max} characters without control characters or surrounding spaces"
        ));
    }
    Ok(())
}

/// Checks every rule of a [`NewConcert`] before touching the database.
///
/// # Errors
/// [`BookingError::InvalidConcert`] naming the first broken rule.
pub fn validate(new: &NewConcert) -> Result<(), BookingError> {
    text("title", &new.title, 200)?;
    text("artist", &new.artist, 200)?;
    text("venue", &new.venue, 200)?;
    if new.performances.is_empty() || new.performances.len() > MAX_PERFORMANCES {
        return invalid("a concert needs 1-100 performances");
    }
    for p in &new.performances {
        if p.sale_opens_at > p.starts_at {
            return invalid("sale_opens_at must not be after starts_at");
        }
        if !(1..=50).contains(&p.max_seats_per_order) {
            return invalid("max_seats_per_order must be 1-50");
        }
        let per_fan = p.tickets_per_fan();
        if !(p.max_seats_per_order..=MAX_TICKETS_PER_FAN).contains(&per_fan) {
            return invalid(format!(
                "max_tickets_per_fan must be from max_seats_per_order to {MAX_TICKETS_PER_FAN}"
            ));
        }
        if p.sections.is_empty() {
            return invalid("a performance needs at least one section");
        }
        let mut places = HashSet::new();
        let mut total: i64 = 0;
        for s in &p.sections {
            text("section", &s.section, 32)?;
            text("grade", &s.grade, 16)?;
            if s.rows.is_empty() || !(1..=1000).contains(&s.seats_per_row) {
                return invalid("a section needs rows and 1-1000 seats per row");
            }
            for row in &s.rows {
                text("row", row, 16)?;
                if !places.insert((s.section.as_str(), row.as_str())) {
                    return invalid("a section lists the same row twice");
                }
            }
            total += s.rows.len() as i64 * i64::from(s.seats_per_row);
            if total > MAX_SEATS_PER_PERFORMANCE {
                return invalid("at most 100000 seats per performance");
            }
        }
    }
    Ok(())
}

/// Validates `new`, then creates the concert, its performances and every
/// seat, all or nothing.
///
/// # Errors
/// [`BookingError::InvalidConcert`] (see [`validate`]); store errors.
pub async fn create(db: &Db, new: &NewConcert) -> Result<ConcertCreated, BookingError> {
    validate(new)?;
    Ok(admin::create_concert(db, new).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{NewPerformance, NewSection},
        domain::Krw,
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
                max_tickets_per_fan: None,
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
    fn a_per_fan_limit_defaults_to_eight_or_the_order_limit_and_never_undercuts_it() {
        let mut c = concert(2, 2);
        assert_eq!(c.performances[0].tickets_per_fan(), 8);
        c.performances[0].max_seats_per_order = 12;
        assert_eq!(c.performances[0].tickets_per_fan(), 12);
        assert!(validate(&c).is_ok());
        c.performances[0].max_tickets_per_fan = Some(11);
        assert!(validate(&c).is_err(), "below max_seats_per_order");
        c.performances[0].max_tickets_per_fan = Some(MAX_TICKETS_PER_FAN + 1);
        assert!(validate(&c).is_err(), "above the cap");
        c.performances[0].max_tickets_per_fan = Some(20);
        assert!(validate(&c).is_ok());
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
