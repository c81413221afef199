//! Best-available holds on real Postgres and the real waiting room: the
//! server picks adjacent seats nearest the stage and the row's centre,
//! never strands a single seat while it can avoid it, and tells a fan
//! `no_block_available` only when no row has the block, with many fans
//! on two instances at once.

mod common;

use std::collections::HashSet;

use common::{Pass, Reply, TestApp, spawn_app_with};
use core_service::{
    api::{BestAvailable, CreateReservation},
    domain::PerformanceId,
};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

const FRESH: &[(&str, &str)] = &[("ONSALE__CORE__SEAT_CACHE_MS", "0")];

fn best(performance: i64, quantity: u32) -> CreateReservation {
    CreateReservation::best_available(PerformanceId::new(performance).unwrap(), quantity)
}

async fn hold_best(app: &TestApp, base: &str, pass: &Pass, body: &CreateReservation) -> Reply {
    let request = app
        .http
        .post(format!("{base}/v1/reservations"))
        .bearer_auth(&pass.identity)
        .header("onsale-access-token", &pass.access)
        .json(body);
    Reply::send(request).await
}

/// `(row, numbers)` of a reservation body.
fn places(reservation: &Value) -> (String, Vec<i64>) {
    let seats = reservation["seats"].as_array().expect("seats");
    let row = seats[0]["row"].as_str().unwrap().to_owned();
    assert!(seats.iter().all(|s| s["row"] == row.as_str()), "one row");
    let mut numbers: Vec<i64> = seats
        .iter()
        .map(|s| s["number"].as_i64().unwrap())
        .collect();
    numbers.sort_unstable();
    (row, numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_best_available_hold_takes_adjacent_seats_at_the_centre_of_the_front_row() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(3, 10, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "front-fan").await;
    let reply = hold_best(&app, &app.base, &pass, &best(show.performance_id, 2)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(places(&reply.body), ("1".to_owned(), vec![5, 6]));
    assert_eq!(reply.body["amount"], 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_never_strands_a_single_seat_while_another_row_avoids_it() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(2, 4, 10_000, 4).await;
    // Row 1 seat 4 taken: any pair in row 1 would leave one seat alone.
    let other = app.access_token(show.performance_id, "seat-4").await;
    let held = app
        .hold(&other, show.performance_id, &[show.seat_ids[3]])
        .await;
    assert_eq!(held.status, StatusCode::CREATED);
    let pass = app.access_token(show.performance_id, "pair").await;
    let reply = hold_best(&app, &app.base, &pass, &best(show.performance_id, 2)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let (row, numbers) = places(&reply.body);
    assert_eq!(row, "2");
    assert!(numbers == [1, 2] || numbers == [3, 4], "{numbers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_block_available_is_told_only_when_no_row_has_the_block() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(1, 5, 10_000, 4).await;
    let other = app.access_token(show.performance_id, "gaps").await;
    let seats = [show.seat_ids[1], show.seat_ids[3]];
    assert_eq!(
        app.hold(&other, show.performance_id, &seats).await.status,
        StatusCode::CREATED
    );

    let pass = app.access_token(show.performance_id, "wants-two").await;
    let refused = hold_best(&app, &app.base, &pass, &best(show.performance_id, 2)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "no_block_available");
    assert!(refused.is_problem());
    assert_eq!(refused.body["seats_available"], 3);

    let single = hold_best(&app, &app.base, &pass, &best(show.performance_id, 1)).await;
    assert_eq!(single.status, StatusCode::CREATED, "{}", single.body);
    assert_eq!(places(&single.body).1, [3], "the centre seat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_available_requests_are_checked_like_seat_lists() {
    let app = spawn_app_with(FRESH).await;
    let show = app.create_show(1, 10, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "checked").await;
    let performance = PerformanceId::new(show.performance_id).unwrap();
    let cases = [
        (
            best(show.performance_id, 0),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_seats",
        ),
        (
            best(show.performance_id, 5),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            best(show.performance_id, 51),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            CreateReservation {
                seat_ids: vec![core_service::domain::SeatId::new(show.seat_ids[0]).unwrap()],
                ..best(show.performance_id, 1)
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_selection",
        ),
        (
            CreateReservation {
                best_available: Some(BestAvailable {
                    quantity: 1,
                    grade: Some("VIP".into()),
                    section: None,
                }),
                ..CreateReservation::seats(performance, vec![])
            },
            StatusCode::CONFLICT,
            "no_block_available",
        ),
    ];
    for (body, status, code) in cases {
        let reply = hold_best(&app, &app.base, &pass, &body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{}",
            reply.body
        );
    }
    let in_grade = CreateReservation {
        best_available: Some(BestAvailable {
            quantity: 2,
            grade: Some("R".into()),
            section: Some("A".into()),
        }),
        ..CreateReservation::seats(performance, vec![])
    };
    let reply = hold_best(&app, &app.base, &pass, &in_grade).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_fans_on_two_instances_get_adjacent_pairs_no_seat_twice_and_409_only_when_no_pair_is_left()
 {
    // The default refresh interval: picks run on snapshots up to 500 ms
    // old, so the instances do collide and must recover.
    let app = spawn_app_with(&[]).await;
    let twin = app.twin().await;
    let show = app.create_show(5, 10, 10_000, 4).await;
    let performance = show.performance_id;
    let users: Vec<String> = (0..70).map(|i| format!("pair-{i}")).collect();
    let passes = join_all(users.iter().map(|u| app.access_token(performance, u))).await;
    let replies = join_all(passes.iter().enumerate().map(|(i, pass)| {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            twin.clone()
        };
        let app = &app;
        async move {
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                hold_best(app, &base, pass, &best(performance, 2)),
            )
            .await
            .map_err(|_| format!("{} on {base}", pass.user))
        }
    }))
    .await;
    let replies: Vec<Reply> = replies
        .into_iter()
        .map(|r| r.unwrap_or_else(|who| panic!("the hold of {who} got no answer in 20 s")))
        .collect();

    let mut seats = HashSet::new();
    let mut held = 0;
    for reply in &replies {
        match reply.status {
            StatusCode::CREATED => {
                held += 1;
                let (_, numbers) = places(&reply.body);
                assert_eq!(numbers[1], numbers[0] + 1, "side by side");
                for seat in reply.body["seats"].as_array().unwrap() {
                    assert!(seats.insert(seat["id"].as_i64().unwrap()), "no seat twice");
                }
            }
            StatusCode::CONFLICT => assert!(
                ["no_block_available", "seat_taken"].contains(&reply.code()),
                "{}",
                reply.body
            ),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(held >= 20, "most pairs sold: {held} of 25");
    let adjacent_free_pairs = app
        .scalar(&format!(
            "SELECT count(*) FROM seats a JOIN seats b ON b.performance_id = a.performance_id \
             AND b.section = a.section AND b.row_label = a.row_label AND b.number = a.number + 1 \
             WHERE a.performance_id = {performance} AND a.status = 'free' AND b.status = 'free'"
        ))
        .await;
    assert_eq!(
        adjacent_free_pairs, 0,
        "every refusal was true: no pair is left"
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM reservation_seats rs JOIN seats s ON s.id = rs.seat_id \
             WHERE rs.active AND s.performance_id = {performance}"
        ))
        .await,
        i64::from(held) * 2
    );
}
