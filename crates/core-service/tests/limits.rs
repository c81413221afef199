//! Purchase limits and admission sessions against real Postgres and the
//! real queue-service: an admission session holds at most
//! `max_seats_per_order` seats in all, a fan at most `max_tickets_per_fan`
//! across sessions, however the requests race; a hold never outlasts the
//! access token; and a payment names the session that made it.

mod common;

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use common::{Reply, TestApp, spawn_app, spawn_app_with};
use core_service::{
    domain::{PerformanceId, SeatId, UserId},
    store::{
        holds::{self, HoldOutcome, HoldRequest},
        limits::{LimitExceeded, Limits},
    },
};
use futures::future::join_all;
use reqwest::StatusCode;

/// Statuses and codes of `replies`, counted.
fn tally(replies: &[Reply]) -> HashMap<(u16, String), usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts
            .entry((reply.status.as_u16(), reply.code().to_owned()))
            .or_default() += 1;
    }
    counts
}

/// Seats the fan `user` holds (live) or bought, by session.
async fn seats_by_session(app: &TestApp, user: &str) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT r.session_id, count(*) FROM reservations r \
         JOIN reservation_seats rs ON rs.reservation_id = r.id \
         WHERE r.user_id = $1 AND (r.status = 'confirmed' OR (r.status = 'held' AND r.held_until >= now())) \
         GROUP BY r.session_id",
    )
    .bind(user)
    .fetch_all(&app.db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_by_one_admitted_session_never_exceed_max_seats_per_order() {
    let app = spawn_app().await;
    let show = app.create_show(5, 20, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "hoarder").await;

    let replies = join_all(
        show.seat_ids[..50]
            .iter()
            .map(|seat| app.hold(&pass, show.performance_id, std::slice::from_ref(seat))),
    )
    .await;
    let counts = tally(&replies);
    let held = counts.get(&(201, String::new())).copied().unwrap_or(0);
    for ((status, code), n) in &counts {
        assert!(
            matches!(
                (*status, code.as_str()),
                (201, "") | (409, "order_limit" | "hold_in_progress")
            ),
            "{n} × {status} {code}"
        );
    }
    assert!(held <= 4, "{counts:?}");
    for reply in replies.iter().filter(|r| r.code() == "order_limit") {
        assert_eq!(reply.body["max_seats_per_order"], 4);
        assert!(reply.body["remaining"].as_i64().unwrap() < 4);
    }
    // Whatever the race left, the session can fill up to the limit and no
    // further.
    let mut next = show.seat_ids[50..].iter();
    loop {
        let seat = next.next().unwrap();
        let reply = app
            .hold(&pass, show.performance_id, std::slice::from_ref(seat))
            .await;
        if reply.status == StatusCode::CONFLICT {
            assert_eq!(reply.code(), "order_limit", "{}", reply.body);
            assert_eq!(reply.body["remaining"], 0);
            break;
        }
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let sessions = seats_by_session(&app, "hoarder").await;
    assert_eq!(sessions.get(&pass.session_id()), Some(&4), "{sessions:?}");
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'held'")
            .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fans_later_admission_sessions_share_the_fans_limit_and_each_has_its_own() {
    let app = spawn_app().await;
    let show = app.create_show_limited(1, 20, 10_000, (4, 6)).await;
    app.charge("collector", 1_000_000).await;
    let first = app.access_token(show.performance_id, "collector").await;
    let bought = app
        .hold(&first, show.performance_id, &show.seat_ids[..4])
        .await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    let id = bought.body["reservation_id"].as_str().unwrap();
    assert_eq!(
        app.pay(&first, "first-visit", id).await.status,
        StatusCode::CREATED
    );
    app.leave(&first, show.performance_id).await;

    // Back in the waiting room: a new session, with its own order limit but
    // the fan's purchases so far counted.
    let second = app.access_token(show.performance_id, "collector").await;
    assert_ne!(second.session_id(), first.session_id());
    let over = app
        .hold(&second, show.performance_id, &show.seat_ids[4..7])
        .await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{}", over.body);
    assert_eq!(over.code(), "fan_limit");
    assert_eq!(over.body["max_tickets_per_fan"], 6);
    assert_eq!(over.body["remaining"], 2);
    let held = app
        .hold(&second, show.performance_id, &show.seat_ids[4..6])
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let full = app
        .hold(&second, show.performance_id, &show.seat_ids[6..7])
        .await;
    assert_eq!(
        (full.code(), &full.body["remaining"]),
        ("fan_limit", &0.into())
    );

    // Releasing gives the seats back to the fan's allowance.
    let hold_id = held.body["reservation_id"].as_str().unwrap();
    assert_eq!(
        app.release(&second.identity, hold_id).await.status,
        StatusCode::NO_CONTENT
    );
    let again = app
        .hold(&second, show.performance_id, &show.seat_ids[6..8])
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);

    // The payment names the session it was made in, the one to release.
    let id = again.body["reservation_id"].as_str().unwrap();
    assert_eq!(
        app.pay(&second, "second-visit", id).await.status,
        StatusCode::CREATED
    );
    let sessions: Vec<String> = sqlx::query_scalar(
        "SELECT payload->'data'->>'session_id' FROM outbox \
         WHERE topic = 'payment.completed' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(sessions, [first.session_id(), second.session_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_sessions_of_one_fan_racing_never_exceed_max_tickets_per_fan() {
    // queue-service admits a fan once at a time, so three live sessions of
    // one fan race here at the store, the booking layer's last step.
    let app = spawn_app().await;
    let show = app.create_show_limited(2, 20, 10_000, (4, 6)).await;
    let settings = common::core_settings(&app.database_url, "http://127.0.0.1:1", &[]);
    let db = core_service::db::Db::connect_lazy(&settings.database).unwrap();
    let fan = UserId::parse("racer").unwrap();
    let performance = PerformanceId::new(show.performance_id).unwrap();
    let seats: Vec<SeatId> = show
        .seat_ids
        .iter()
        .map(|s| SeatId::new(*s).unwrap())
        .collect();
    let sessions = ["11", "12", "13"];
    let attempts = seats.iter().take(30).enumerate().map(|(i, seat)| {
        let request = HoldRequest {
            user: &fan,
            session_id: sessions[i % 3],
            performance,
            seats: std::slice::from_ref(seat),
            ttl: Duration::from_secs(300),
            access_expires_at: Utc::now() + chrono::Duration::minutes(10),
            limits: Limits {
                per_session: 4,
                per_fan: 6,
            },
        };
        let db = &db;
        async move {
            // A contended lock is the client's to retry.
            loop {
                match holds::hold(db, request).await {
                    Err(core_service::store::StoreError::HoldInProgress) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    outcome => return outcome.unwrap(),
                }
            }
        }
    });
    let outcomes = join_all(attempts).await;
    let held = outcomes
        .iter()
        .filter(|o| matches!(o, HoldOutcome::Held(_)))
        .count();
    assert_eq!(held, 6, "exactly the fan's limit is held");
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome,
                HoldOutcome::Held(_)
                    | HoldOutcome::OverLimit(LimitExceeded::Fan { max: 6, .. })
                    | HoldOutcome::OverLimit(LimitExceeded::Order { max: 4, .. })
            ),
            "{outcome:?}"
        );
    }
    let by_session = seats_by_session(&app, "racer").await;
    assert_eq!(by_session.values().sum::<i64>(), 6, "{by_session:?}");
    assert!(
        by_session.values().all(|seats| *seats <= 4),
        "{by_session:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_never_outlasts_the_access_token_it_was_made_with() {
    // Holds last an hour here, admissions ten minutes (`open_room`).
    let app = spawn_app_with(&[("ONSALE__CORE__HOLD_TTL_SECONDS", "3600")]).await;
    let show = app.create_show(1, 4, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "brief").await;
    let held = app
        .hold(&pass, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let held_until: DateTime<Utc> = held.body["held_until"].as_str().unwrap().parse().unwrap();
    let expires_at = DateTime::from_timestamp(pass.access_expires_at(), 0).unwrap();
    assert!(held_until <= expires_at, "{held_until} > {expires_at}");
    assert!(
        expires_at - held_until < chrono::Duration::seconds(1),
        "cut to the expiry, not shorter"
    );
    let event: String = sqlx::query_scalar(
        "SELECT payload->'data'->>'held_until' FROM outbox WHERE topic = 'reservation.expiration'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        event.parse::<DateTime<Utc>>().unwrap(),
        held_until,
        "the expiry event agrees"
    );

    // With the usual five minutes, the hold's own TTL is the shorter one.
    let app = spawn_app().await;
    let show = app.create_show(1, 4, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "usual").await;
    let held = app
        .hold(&pass, show.performance_id, &show.seat_ids[..1])
        .await;
    let held_until: DateTime<Utc> = held.body["held_until"].as_str().unwrap().parse().unwrap();
    let left = held_until - Utc::now();
    assert!(
        left <= chrono::Duration::seconds(300) && left > chrono::Duration::seconds(290),
        "{left}"
    );
}
