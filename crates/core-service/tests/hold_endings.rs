//! How holds end, against real Postgres and the real queue-service: they
//! lapse (and are taken over, or expired by the consumer), or their fan
//! releases them; either way the seats are free again and nothing is
//! charged.

mod common;

use std::time::Duration;

use common::spawn_app_with;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_can_be_reheld_by_someone_else_and_the_late_payer_gets_410_without_charge()
{
    let app = spawn_app_with(&[("ONSALE__CORE__HOLD_TTL_SECONDS", "1")]).await;
    let show = app.create_show(1, 4, 30_000, 4).await;
    let late = app.access_token(show.performance_id, "late").await;
    let quick = app.access_token(show.performance_id, "quick").await;
    app.charge("late", 100_000).await;
    app.charge("quick", 100_000).await;

    let first = app
        .hold(&late, show.performance_id, &show.seat_ids[..2])
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let late_reservation = first.body["reservation_id"].as_str().unwrap().to_owned();
    // While the hold lives, nobody else gets the seat.
    let blocked = app
        .hold(&quick, show.performance_id, &show.seat_ids[1..2])
        .await;
    assert_eq!(blocked.status, StatusCode::CONFLICT);

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Lazy expiry: the seat map shows the seats free again…
    // (the map is a snapshot at most `seat_cache_ms` old)
    let path = format!("/v1/performances/{}/seats", show.performance_id);
    devstack::testing::eventually(Duration::from_secs(10), || async {
        (app.get(&path).await.body["seats_available"] == 4).then_some(())
    })
    .await;
    // …and another buyer can hold one of them.
    let second = app
        .hold(&quick, show.performance_id, &show.seat_ids[1..2])
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);

    let paid_late = app.pay(&late, "late-key", &late_reservation).await;
    assert_eq!(paid_late.status, StatusCode::GONE, "{}", paid_late.body);
    assert_eq!(paid_late.code(), "hold_expired");
    assert_eq!(app.balance("late").await, 100_000, "no charge");
    assert_eq!(
        app.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'spend'")
            .await,
        0
    );
    let status = app
        .get(&format!("/v1/reservations/{late_reservation}"))
        .await;
    assert_eq!(status.body["status"], "expired");

    let paid_quick = app
        .pay(
            &quick,
            "quick-key",
            second.body["reservation_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        paid_quick.status,
        StatusCode::CREATED,
        "{}",
        paid_quick.body
    );
    assert_eq!(app.balance("quick").await, 70_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_hold_frees_its_seats_at_once() {
    // Availability read on every request: by default the map shows a
    // change within `seat_cache_ms`.
    let app = spawn_app_with(&[("ONSALE__CORE__SEAT_CACHE_MS", "0")]).await;
    let show = app.create_show(1, 2, 10_000, 2).await;
    let a = app.access_token(show.performance_id, "releaser").await;
    let b = app.access_token(show.performance_id, "next-in-line").await;
    let held = app.hold(&a, show.performance_id, &show.seat_ids).await;
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("/v1/performances/{}/seats", show.performance_id))
            .await
            .body["seats_available"],
        0
    );
    // The hold wrote its expiration event in the same transaction.
    let (key, payload): (String, serde_json::Value) = sqlx::query_as(
        "SELECT aggregate_key, payload FROM outbox WHERE topic = 'reservation.expiration'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(key, id);
    assert_eq!(payload["type"], "reservation.expiration");
    assert_eq!(payload["version"], 1);
    assert_eq!(payload["data"]["reservation_id"], id.as_str());
    assert_eq!(payload["data"]["user_id"], "releaser");
    assert_eq!(payload["data"]["performance_id"], show.performance_id);
    assert_eq!(
        payload["data"]["seat_ids"],
        serde_json::json!(show.seat_ids)
    );
    assert_eq!(payload["data"]["held_until"], held.body["held_until"]);

    let not_mine = app.release(&b.identity, &id).await;
    assert_eq!(not_mine.status, StatusCode::FORBIDDEN);
    assert_eq!(not_mine.code(), "not_owner");
    let released = app.release(&a.identity, &id).await;
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    // The next availability snapshot shows the seats free.
    assert_eq!(
        app.get(&format!("/v1/performances/{}/seats", show.performance_id))
            .await
            .body["seats_available"],
        2
    );
    assert_eq!(
        app.get(&format!("/v1/reservations/{id}")).await.body["status"],
        "cancelled"
    );
    assert_eq!(
        app.hold(&b, show.performance_id, &show.seat_ids)
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiration_consumer_frees_only_lapsed_holds() {
    let app = spawn_app_with(&[("ONSALE__CORE__HOLD_TTL_SECONDS", "1")]).await;
    let show = app.create_show(1, 3, 10_000, 3).await;
    let token = app.access_token(show.performance_id, "sleepy").await;
    let held = app
        .hold(&token, show.performance_id, &show.seat_ids[..2])
        .await;
    let id: uuid::Uuid = held.body["reservation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let settings = common::core_settings(&app.database_url, "http://127.0.0.1:1", &[]);
    let db = core_service::db::Db::connect_lazy(&settings.database).unwrap();

    assert!(
        !core_service::store::holds::expire_if_lapsed(&db, id)
            .await
            .unwrap(),
        "a live hold stays"
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'held'")
            .await,
        2
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        core_service::store::holds::expire_if_lapsed(&db, id)
            .await
            .unwrap()
    );
    assert!(
        !core_service::store::holds::expire_if_lapsed(&db, id)
            .await
            .unwrap(),
        "expiring is idempotent"
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'free'")
            .await,
        3
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM reservation_seats WHERE active")
            .await,
        0
    );
    assert_eq!(
        app.get(&format!("/v1/reservations/{id}")).await.body["status"],
        "expired"
    );
    let unknown = core_service::store::holds::expire_if_lapsed(&db, uuid::Uuid::now_v7()).await;
    assert!(unknown.is_err());
}
