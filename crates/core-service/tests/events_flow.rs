//! The event flows of core-service and queue-service against real Kafka:
//! payments survive a broker outage, their sessions' slots are freed
//! without the broker, and their events arrive afterwards with no second
//! effect; holds expire at their due time even when the expiry
//! consumer dies mid-batch.

mod common;

use std::time::Duration;

use common::{Pass, Reply, Show, TestApp, spawn_app_on};
use devstack::testing::PrivateBroker;
use futures::future::join_all;
use reqwest::StatusCode;

fn topics(suffix: &str) -> Vec<String> {
    ["payment.completed", "reservation.expiration"]
        .iter()
        .flat_map(|t| [format!("{t}{suffix}"), format!("{t}{suffix}.dlq")])
        .collect()
}

/// Admits every user and has each hold one seat (user i gets seat i), all at
/// once; returns the passes and the hold replies in user order.
async fn hold_one_seat_each(
    app: &TestApp,
    show: &Show,
    users: &[String],
) -> (Vec<Pass>, Vec<Reply>) {
    let tokens = join_all(
        users
            .iter()
            .map(|u| app.access_token(show.performance_id, u)),
    )
    .await;
    let holds = join_all(
        tokens
            .iter()
            .zip(&show.seat_ids)
            .map(|(t, seat)| app.hold(t, show.performance_id, std::slice::from_ref(seat))),
    )
    .await;
    (tokens, holds)
}

async fn eventually(what: &str, seconds: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..seconds * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_broker_is_frozen_paid_sessions_free_their_slots_so_admission_keeps_flowing_and_each_is_released_once()
 {
    let suffix = format!(".{}", devstack::testing::unique_suffix());
    let names = topics(&suffix);
    let broker =
        PrivateBroker::start(&names.iter().map(String::as_str).collect::<Vec<_>>(), 3).await;
    let app = spawn_app_on(
        &broker.brokers,
        &suffix,
        &[("ONSALE__CORE__OUTBOX_DELIVERY_TIMEOUT_MS", "1000")],
    )
    .await;
    let show = app.create_show(4, 50, 10_000, 4).await;
    // A room of 50 for 200 buyers: the last 150 get in only as paid
    // sessions free their slots.
    app.open_room_of(show.performance_id, 50).await;
    let users: Vec<String> = (0..200).map(|i| format!("payer-{i}")).collect();
    join_all(users.iter().map(|u| app.charge(u, 10_000))).await;

    broker.pause();
    let bought: Vec<(Pass, Reply, Reply)> = join_all(users.iter().enumerate().map(|(i, user)| {
        let app = &app;
        let seat = show.seat_ids[i];
        async move {
            let pass = app.access_token(show.performance_id, user).await;
            let hold = app.hold(&pass, show.performance_id, &[seat]).await;
            assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
            let reservation = hold.body["reservation_id"].as_str().unwrap().to_owned();
            let paid = app.pay(&pass, &format!("key-{i}"), &reservation).await;
            (pass, hold, paid)
        }
    }))
    .await;
    assert!(
        bought
            .iter()
            .all(|(_, _, paid)| paid.status == StatusCode::CREATED),
        "all 200 buyers got in and paid while Kafka is frozen: {:?}",
        bought.iter().map(|(_, _, p)| p.status).collect::<Vec<_>>()
    );
    let pending = app.scalar("SELECT count(*) FROM outbox WHERE topic = 'payment.completed' AND published_at IS NULL").await;
    assert_eq!(
        pending, 200,
        "each committed payment has its event waiting in the outbox, so the slots were freed without it"
    );
    let stats = eventually_stats(&app, show.performance_id, |s| {
        s["exited"]["completed"] == 200
    })
    .await;
    assert_eq!(stats["admitted_total"], 200);
    assert_eq!(stats["active"], 0);

    broker.resume();
    eventually("every payment.completed published", 120, async || {
        app.scalar("SELECT count(*) FROM outbox WHERE topic = 'payment.completed' AND published_at IS NULL").await == 0
    })
    .await;

    // A client retrying after its slot was released still gets the original
    // answer; a new key or a new hold from the completed session does not.
    let (pass, hold, paid) = &bought[0];
    let reservation = hold.body["reservation_id"].as_str().unwrap();
    let retry = app.pay(pass, "key-0", reservation).await;
    assert_eq!(
        (retry.status, &retry.body),
        (StatusCode::CREATED, &paid.body)
    );
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let fresh = app.pay(pass, "key-new", reservation).await;
    assert_eq!(
        (fresh.status, fresh.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("access_completed"))
    );
    let again = app
        .hold(pass, show.performance_id, &show.seat_ids[199..])
        .await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("access_denied"))
    );

    // Deliver every event once more: the releases already happened, so
    // neither the first delivery nor this one changes anything.
    let requeued = app
        .scalar("WITH u AS (UPDATE outbox SET published_at = NULL WHERE topic = 'payment.completed' RETURNING 1) SELECT count(*) FROM u")
        .await;
    assert_eq!(requeued, 200);
    eventually("the replayed events published", 120, async || {
        app.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await
            == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = app.room_stats(show.performance_id).await;
    assert_eq!(
        stats["exited"]["completed"], 200,
        "neither an event nor its replay releases anybody a second time"
    );
    assert_eq!(stats["active"], 0);
    assert_eq!(app.scalar("SELECT count(*) FROM payments").await, 200);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'spend'")
            .await,
        200,
        "the replay and the refused new key charged nothing"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("queue_releases_total{result=\"released\"} 200"),
        "each paid session was released right after its payment: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("queue_releases_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The room's stats once `done` holds of them, within 30 s.
async fn eventually_stats(
    app: &TestApp,
    performance: i64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    devstack::testing::eventually(Duration::from_secs(30), || async {
        let stats = app.room_stats(performance).await;
        done(&stats).then_some(stats)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_due_hold_expires_exactly_once_even_when_the_expiry_consumer_dies_mid_batch() {
    let suffix = format!(".{}", devstack::testing::unique_suffix());
    let names = topics(&suffix);
    devstack::testing::create_topics(&names.iter().map(String::as_str).collect::<Vec<_>>(), 3)
        .await;
    let brokers = devstack::testing::stack().kafka_brokers.clone();
    // The app's own expiry consumer and sweeper are off: this test plays
    // them by hand to kill one in the middle.
    let app = spawn_app_on(
        &brokers,
        &suffix,
        &[
            ("ONSALE__CORE__HOLD_TTL_SECONDS", "2"),
            ("ONSALE__CORE__EXPIRY_CONSUMER", "false"),
            ("ONSALE__CORE__SWEEPER", "false"),
            // The 40 holders stay admitted after their holds lapse; the room
            // must let the late buyer in on capacity alone.
            ("ONSALE__CORE__INVENTORY_REPORT_MS", "0"),
        ],
    )
    .await;
    let show = app.create_show(1, 40, 10_000, 4).await;
    let users: Vec<String> = (0..40).map(|i| format!("holder-{i}")).collect();
    let (_, holds) = hold_one_seat_each(&app, &show, &users).await;
    assert!(holds.iter().all(|h| h.status == StatusCode::CREATED));
    eventually("expiration events published", 30, async || {
        app.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await
            == 0
    })
    .await;

    // A consumer that is killed after its first expiries.
    let settings = common::core_settings(&app.database_url, "http://127.0.0.1:1", &[]);
    let db = core_service::db::Db::connect_lazy(&settings.database).unwrap();
    let consumer = || {
        let mut settings = events::consumer::ConsumerSettings::new(
            &brokers,
            format!("expiry{suffix}"),
            format!("reservation.expiration{suffix}"),
        );
        settings.max_attempts = 3;
        let dlq = events::producer::Producer::new(
            &platform::settings::KafkaSettings::plaintext_to(brokers.clone(), suffix.clone(), "t"),
            Duration::from_secs(5),
        )
        .unwrap();
        events::consumer::ConsumerRuntime::new(
            settings,
            core_service::workers::ExpiryHandler::new(db.clone()),
            dlq,
        )
    };
    let first = tokio::spawn(consumer().run(platform::shutdown::CancellationToken::new()));
    eventually("some holds expired by the first consumer", 60, async || {
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'expired'")
            .await
            >= 5
    })
    .await;
    first.abort();

    // The sweeper, and a second consumer resuming from the committed
    // offsets once the group has rebalanced, finish the job between them.
    let second_token = platform::shutdown::CancellationToken::new();
    let sweeper = tokio::spawn(core_service::workers::run_sweeper(
        db.clone(),
        Duration::from_millis(500),
        10,
        second_token.clone(),
    ));
    let second = tokio::spawn(consumer().run(second_token.clone()));
    eventually("every hold expired", 60, async || {
        app.scalar("SELECT count(*) FROM reservations WHERE status = 'expired'")
            .await
            == 40
    })
    .await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'free'")
            .await,
        40,
        "every seat is free again"
    );

    // A new buyer takes a seat; a late duplicate expiry of the old hold must
    // not free it.
    let token = app.access_token(show.performance_id, "late-buyer").await;
    let fresh = app
        .hold(&token, show.performance_id, &[show.seat_ids[0]])
        .await;
    assert_eq!(fresh.status, StatusCode::CREATED);
    let old = holds[0].body["reservation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !core_service::store::holds::expire_if_lapsed(&db, old)
            .await
            .unwrap(),
        "an expired hold expires only once"
    );
    let seat_state = app
        .scalar(&format!(
            "SELECT count(*) FROM seats WHERE id = {} AND status = 'held'",
            show.seat_ids[0]
        ))
        .await;
    assert_eq!(seat_state, 1, "the new buyer's hold is untouched");
    second_token.cancel();
    second.await.unwrap().unwrap();
    sweeper.await.unwrap();
}
