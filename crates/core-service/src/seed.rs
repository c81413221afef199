//! `core-service seed`: demo data for a developer's machine. Never runs
//! unless asked for, and refuses in production.

use chrono::{Duration, Utc};
use platform::settings::Environment;

use crate::{
    api::{
        ConcertCreated, NewConcert, NewPerformance, NewSection,
        coupons::{Discount, NewCampaign},
    },
    booking::concerts,
    db::Db,
    domain::ConcertId,
    domain::{Krw, UserId},
    store::{balance, coupons},
};

/// Why seeding did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The environment is production.
    #[error("seed refuses to run in production")]
    Production,
    /// Writing failed.
    #[error("writing demo data failed: {0}")]
    Write(String),
}

/// The demo concert: two performances of 10 rows × 20 seats in three grades,
/// on sale since an hour ago.
pub fn demo_concert() -> NewConcert {
    let now = Utc::now();
    let sections = |price_vip: i64, price_r: i64, price_s: i64| {
        vec![
            NewSection {
                section: "A".into(),
                grade: "VIP".into(),
                price: Krw::positive(price_vip).unwrap_or(Krw::positive(1).expect("1 is positive")),
                rows: (1..=2).map(|r| r.to_string()).collect(),
                seats_per_row: 20,
            },
            NewSection {
                section: "B".into(),
                grade: "R".into(),
                price: Krw::positive(price_r).unwrap_or(Krw::positive(1).expect("1 is positive")),
                rows: (3..=6).map(|r| r.to_string()).collect(),
                seats_per_row: 20,
            },
            NewSection {
                section: "C".into(),
                grade: "S".into(),
                price: Krw::positive(price_s).unwrap_or(Krw::positive(1).expect("1 is positive")),
                rows: (7..=10).map(|r| r.to_string()).collect(),
                seats_per_row: 20,
            },
        ]
    };
    NewConcert {
        title: "onsale Demo Night".into(),
        artist: "The Placeholders".into(),
        venue: "Olympic Hall, Seoul".into(),
        performances: (1..=2)
            .map(|day| NewPerformance {
                starts_at: now + Duration::days(30 + day),
                sale_opens_at: now - Duration::hours(1),
                max_seats_per_order: 4,
                max_tickets_per_fan: None,
                sections: sections(165_000, 132_000, 99_000),
            })
            .collect(),
    }
}

/// The demo coupon campaigns of `concert`: 100 coupons of 10,000 KRW off
/// its shows, and 500 of 10 % off any show (at most 20,000 KRW); both open
/// now for a week, each coupon valid for 30 days.
pub fn demo_campaigns(concert: ConcertId) -> [NewCampaign; 2] {
    let now = Utc::now();
    let krw = |won| Krw::positive(won).unwrap_or(Krw::positive(1).expect("1 is positive"));
    let campaign = |name: &str, concert_id, discount, quantity| NewCampaign {
        name: name.into(),
        concert_id,
        performance_id: None,
        discount,
        quantity,
        starts_at: now - Duration::minutes(1),
        ends_at: now + Duration::days(7),
        valid_for_seconds: 30 * 86_400,
    };
    [
        campaign(
            "Demo Night early bird",
            Some(concert),
            Discount::Amount {
                amount_krw: krw(10_000),
            },
            100,
        ),
        campaign(
            "Welcome 10 %",
            None,
            Discount::Percent {
                percent: 10,
                max_krw: krw(20_000),
            },
            500,
        ),
    ]
}

/// Creates the demo concert and its coupon campaigns, and gives `fan-1` …
/// `fan-5` 1 000 000 KRW each.
///
/// # Errors
/// [`SeedError::Production`] in production; [`SeedError::Write`] when the
/// database refuses.
pub async fn seed(db: &Db, environment: Environment) -> Result<ConcertCreated, SeedError> {
    if environment == Environment::Production {
        return Err(SeedError::Production);
    }
    let created = concerts::create(db, &demo_concert())
        .await
        .map_err(|e| SeedError::Write(e.to_string()))?;
    let concert = ConcertId::new(created.concert_id).map_err(|e| SeedError::Write(e.0))?;
    for campaign in demo_campaigns(concert) {
        coupons::create_campaign(db, &campaign)
            .await
            .map_err(|e| SeedError::Write(e.to_string()))?;
    }
    let amount = Krw::positive(1_000_000).map_err(|e| SeedError::Write(e.0))?;
    for n in 1..=5 {
        let user =
            UserId::parse(&format!("fan-{n}")).map_err(|e| SeedError::Write(e.to_string()))?;
        balance::charge(db, &user, amount)
            .await
            .map_err(|e| SeedError::Write(e.to_string()))?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_concert_is_valid() {
        assert!(concerts::validate(&demo_concert()).is_ok());
    }

    #[tokio::test]
    async fn seed_refuses_in_production_before_touching_the_database() {
        let settings = platform::settings::DatabaseSettings {
            url: "postgres://nobody@127.0.0.1:1/none".to_owned().into(),
            max_connections: 1,
            min_connections: 0,
            acquire_timeout_ms: 100,
            statement_timeout_ms: 100,
            lock_timeout_ms: 100,
            tls: platform::settings::DatabaseTls::default(),
            allow_plaintext: false,
        };
        let db = Db::connect_lazy(&settings).unwrap();
        assert!(matches!(
            seed(&db, Environment::Production).await,
            Err(SeedError::Production)
        ));
    }
}
