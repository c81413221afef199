//! Holds and payments against real Postgres and the real queue-service.

mod common;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use common::{Pass, Reply, TestApp, hold_body, spawn_app};
use futures::future::join_all;
use reqwest::StatusCode;

/// Admits every user, concurrently; their passes in user order.
async fn tokens(app: &TestApp, performance: i64, users: &[String]) -> Vec<Pass> {
    join_all(users.iter().map(|user| app.access_token(performance, user))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_holds_with_good_forged_and_foreign_tokens_each_get_their_own_answer() {
    // Token checks of concurrent requests share VerifyAccessBatch calls;
    // no answer may reach the wrong request.
    let app = spawn_app().await;
    let show = app.create_show(10, 20, 10_000, 4).await;
    let elsewhere = app.create_show(1, 1, 10_000, 4).await;
    let fans: Vec<String> = (0..200).map(|i| format!("fan-{i}")).collect();
    let good = tokens(&app, show.performance_id, &fans[..100]).await;
    let forged: Vec<Pass> = tokens(&app, show.performance_id, &fans[100..150])
        .await
        .into_iter()
        .map(|pass| {
            // Another signature byte: the access token no longer verifies.
            let mut bytes = pass.access.clone().into_bytes();
            let last = bytes.len() - 2;
            bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
            pass.with_access(String::from_utf8(bytes).unwrap())
        })
        .collect();
    let foreign = tokens(&app, elsewhere.performance_id, &fans[150..]).await;
    let expected = std::iter::repeat_n(StatusCode::CREATED, 100)
        .chain(std::iter::repeat_n(StatusCode::UNAUTHORIZED, 50))
        .chain(std::iter::repeat_n(StatusCode::FORBIDDEN, 50));

    let attempts = good.iter().chain(&forged).chain(&foreign).enumerate();
    let replies = join_all(attempts.map(|(i, token)| {
        let app = &app;
        let seat = show.seat_ids[i];
        async move { app.hold(token, show.performance_id, &[seat]).await }
    }))
    .await;

    for (i, (reply, status)) in replies.iter().zip(expected).enumerate() {
        assert_eq!(reply.status, status, "fan-{i}: {}", reply.body);
        if status == StatusCode::CREATED {
            assert_eq!(reply.body["user_id"], fans[i], "the hold is the fan's own");
            assert_eq!(reply.body["seats"][0]["id"], show.seat_ids[i]);
        }
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM reservations WHERE performance_id = {}",
            show.performance_id
        ))
        .await,
        100,
        "refused tokens hold nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_buyers_racing_for_one_hundred_seats_get_exactly_one_hundred_holds() {
    let app = spawn_app().await;
    let show = app.create_show(5, 20, 50_000, 4).await;
    assert_eq!(show.seat_ids.len(), 100);
    let users: Vec<String> = (0..500).map(|i| format!("buyer-{i}")).collect();
    let tokens = tokens(&app, show.performance_id, &users).await;

    let mut tasks = Vec::new();
    for (i, pass) in tokens.into_iter().enumerate() {
        let fan = app.client.as_fan(&pass.identity);
        // Five buyers want each seat.
        let hold = hold_body(show.performance_id, &[show.seat_ids[i % 100]]);
        tasks.push(tokio::spawn(async move {
            Reply::send(fan.hold_request(&pass.access, &hold)).await
        }));
    }
    let replies: Vec<Reply> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let held: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    let conflicts: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(
        held.len(),
        100,
        "statuses: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let others: Vec<String> = replies
        .iter()
        .filter(|r| r.status != StatusCode::CREATED && r.status != StatusCode::CONFLICT)
        .map(|r| format!("{} {}", r.status, r.body))
        .collect();
    assert!(
        others.is_empty(),
        "every other buyer gets 409, not: {others:?}"
    );
    assert_eq!(conflicts.len(), 400);
    let seats: HashSet<i64> = held
        .iter()
        .map(|r| r.body["seats"][0]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(seats.len(), 100, "no seat is held twice");
    for conflict in conflicts {
        assert_eq!(conflict.code(), "seat_taken");
        assert!(conflict.is_problem());
        assert!(
            conflict.body["seats_available"].is_i64(),
            "409 carries seats_available"
        );
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'held'")
            .await,
        100
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservation_seats WHERE active")
            .await,
        100
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'held'")
            .await,
        100
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM outbox WHERE topic = 'reservation.expiration'")
            .await,
        100
    );
    // The seat map is a snapshot at most `seat_cache_ms` old, so it shows
    // the sold-out row once its next rebuild has run.
    let path = format!("/v1/performances/{}/seats", show.performance_id);
    devstack::testing::eventually(Duration::from_secs(10), || async {
        (app.get(&path).await.body["seats_available"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_seat_holds_are_all_or_nothing_under_contention() {
    let app = spawn_app().await;
    let show = app.create_show(3, 10, 10_000, 4).await;
    let users: Vec<String> = (0..200).map(|i| format!("group-{i}")).collect();
    let tokens = tokens(&app, show.performance_id, &users).await;

    let mut tasks = Vec::new();
    for (i, pass) in tokens.into_iter().enumerate() {
        let fan = app.client.as_fan(&pass.identity);
        // Overlapping windows of three adjacent seats.
        let start = (i * 7) % (show.seat_ids.len() - 2);
        let wanted: Vec<i64> = show.seat_ids[start..start + 3].to_vec();
        let hold = hold_body(show.performance_id, &wanted);
        tasks.push(tokio::spawn(async move {
            (
                wanted,
                Reply::send(fan.hold_request(&pass.access, &hold)).await,
            )
        }));
    }
    let replies: Vec<(Vec<i64>, Reply)> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let mut owner: HashMap<i64, String> = HashMap::new();
    let mut holds = 0;
    for (wanted, reply) in &replies {
        match reply.status {
            StatusCode::CREATED => {
                holds += 1;
                let got: Vec<i64> = reply.body["seats"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].as_i64().unwrap())
                    .collect();
                assert_eq!(&got, wanted, "a hold has every requested seat");
                let id = reply.body["reservation_id"].as_str().unwrap().to_owned();
                for seat in got {
                    assert!(
                        owner.insert(seat, id.clone()).is_none(),
                        "seat {seat} held twice"
                    );
                }
            }
            StatusCode::CONFLICT => assert_eq!(reply.code(), "seat_taken"),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(holds >= 1);
    // The database agrees: every held seat belongs to a successful hold with
    // all its seats, and no failed request left anything behind.
    let rows: Vec<(i64, Option<uuid::Uuid>)> =
        sqlx::query_as("SELECT id, reservation_id FROM seats WHERE status = 'held'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), owner.len());
    for (seat, reservation) in rows {
        assert_eq!(
            reservation.map(|r| r.to_string()).as_ref(),
            owner.get(&seat)
        );
    }
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, holds);
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservation_seats").await,
        holds * 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_idempotency_key_sent_twenty_times_at_once_debits_once_and_answers_identically() {
    let app = spawn_app().await;
    let show = app.create_show(1, 10, 70_000, 4).await;
    let token = app.access_token(show.performance_id, "payer").await;
    assert_eq!(
        app.charge("payer", 200_000).await.status,
        StatusCode::CREATED
    );
    let held = app
        .hold(&token, show.performance_id, &show.seat_ids[..2])
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();

    let payment = core_service::api::CreatePayment {
        reservation_id: reservation.parse().unwrap(),
        coupon_code: None,
    };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (fan, access, payment) = (
                app.client.as_fan(&token.identity),
                token.access.clone(),
                payment.clone(),
            );
            tokio::spawn(async move {
                let mut in_flight_answers = 0;
                loop {
                    let request = fan.pay_request(&access, "pay-once-7f3a", &payment);
                    let reply = Reply::send(request).await;
                    if reply.status == StatusCode::CONFLICT {
                        assert_eq!(reply.code(), "payment_in_progress");
                        let retry: u64 = reply.headers["retry-after"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        assert!(retry >= 1);
                        in_flight_answers += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    return (reply, in_flight_answers);
                }
            })
        })
        .collect();
    let results: Vec<(Reply, usize)> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let first = &results[0].0;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    for (reply, _) in &results {
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(
            reply.body, first.body,
            "every answer is the original response"
        );
    }
    assert_eq!(first.body["amount"], 140_000);
    assert_eq!(first.body["balance_after"], 60_000);
    assert_eq!(app.balance("payer").await, 60_000);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'spend'")
            .await,
        1
    );
    assert_eq!(app.scalar("SELECT count(*) FROM payments").await, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM outbox WHERE topic = 'payment.completed'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'sold'")
            .await,
        2
    );
    let status = app.get(&format!("/v1/reservations/{reservation}")).await;
    assert_eq!(status.body["status"], "confirmed");

    // The outbox row carries the agreed envelope.
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'payment.completed'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(payload["type"], "payment.completed");
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["key"], reservation.as_str());
    assert_eq!(payload["data"]["amount_krw"], 140_000);
    assert_eq!(payload["data"]["user_id"], "payer");
    assert_eq!(payload["data"]["performance_id"], show.performance_id);
    assert_eq!(payload["data"]["payment_id"], first.body["payment_id"]);
    assert_eq!(
        payload["data"]["session_id"],
        token.session_id(),
        "the event names the admission session that paid, the one to release"
    );

    // A later replay still answers the same, marked as a replay.
    let replay = app.pay(&token, "pay-once-7f3a", &reservation).await;
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    // The paid session's slot is released, so the fan comes back through
    // the waiting room for a new one; the key, scoped to the fan, still
    // cannot be reused for another reservation.
    let token = app.access_token(show.performance_id, "payer").await;
    let other = app
        .hold(&token, show.performance_id, &show.seat_ids[5..6])
        .await;
    let reused = app
        .pay(
            &token,
            "pay-once-7f3a",
            other.body["reservation_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");
    // Paying the same reservation again under a new key is a conflict.
    let again = app.pay(&token, "another-key", &reservation).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "already_paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_balance_changes_nothing() {
    let app = spawn_app().await;
    let show = app.create_show(1, 4, 90_000, 4).await;
    let token = app.access_token(show.performance_id, "short").await;
    assert_eq!(
        app.charge("short", 50_000).await.status,
        StatusCode::CREATED
    );
    let held = app
        .hold(&token, show.performance_id, &show.seat_ids[..1])
        .await;
    let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();

    async fn snapshot(app: &TestApp) -> Vec<i64> {
        vec![
            app.scalar("SELECT balance_krw FROM users WHERE id = 'short'")
                .await,
            app.scalar("SELECT count(*) FROM ledger_entries").await,
            app.scalar("SELECT count(*) FROM payments").await,
            app.scalar("SELECT count(*) FROM idempotency_keys").await,
            app.scalar("SELECT count(*) FROM outbox WHERE topic = 'payment.completed'")
                .await,
            app.scalar("SELECT count(*) FROM reservations WHERE status = 'held'")
                .await,
            app.scalar("SELECT count(*) FROM seats WHERE status = 'held'")
                .await,
        ]
    }
    let before = snapshot(&app).await;
    let reply = app.pay(&token, "k-short-1", &reservation).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{}", reply.body);
    assert_eq!(reply.code(), "insufficient_balance");
    assert_eq!(reply.body["balance_krw"], 50_000);
    assert_eq!(reply.body["required_krw"], 90_000);
    assert_eq!(snapshot(&app).await, before, "nothing changed");

    // Topping up and retrying the same key then succeeds: failures are not
    // remembered.
    assert_eq!(
        app.charge("short", 40_000).await.status,
        StatusCode::CREATED
    );
    let paid = app.pay(&token, "k-short-1", &reservation).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    assert_eq!(app.balance("short").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_another_users_reservation_is_forbidden_and_charges_nobody() {
    let app = spawn_app().await;
    let show = app.create_show(1, 2, 10_000, 2).await;
    let owner = app.access_token(show.performance_id, "owner").await;
    let thief = app.access_token(show.performance_id, "thief").await;
    app.charge("thief", 50_000).await;
    let held = app
        .hold(&owner, show.performance_id, &show.seat_ids[..1])
        .await;
    let reply = app
        .pay(
            &thief,
            "steal",
            held.body["reservation_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.code(), "not_owner");
    assert_eq!(app.balance("thief").await, 50_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_one_reservation_under_ten_different_keys_at_once_debits_once() {
    let app = spawn_app().await;
    let show = app.create_show(1, 2, 25_000, 2).await;
    let token = app.access_token(show.performance_id, "eager").await;
    app.charge("eager", 1_000_000).await;
    let held = app.hold(&token, show.performance_id, &show.seat_ids).await;
    let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();

    let replies = join_all((0..10).map(|i| {
        let (app, token, reservation) = (&app, token.clone(), reservation.clone());
        async move {
            app.pay(&token, &format!("eager-key-{i}"), &reservation)
                .await
        }
    }))
    .await;
    let paid = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    assert_eq!(
        paid,
        1,
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, r.code().to_owned()))
            .collect::<Vec<_>>()
    );
    // The others were refused while it ran, or found its session already
    // completed (its slot is released right after the payment commits).
    for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        assert!(
            [
                (StatusCode::CONFLICT, "payment_in_progress"),
                (StatusCode::CONFLICT, "already_paid"),
                (StatusCode::FORBIDDEN, "access_completed"),
            ]
            .contains(&(reply.status, reply.code())),
            "{}",
            reply.body
        );
    }
    assert_eq!(app.balance("eager").await, 1_000_000 - 50_000);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'spend'")
            .await,
        1
    );
    // Only the successful key is remembered.
    assert_eq!(app.scalar("SELECT count(*) FROM idempotency_keys").await, 1);
}
