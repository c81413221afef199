//! The popular-concert ranking against real Postgres, Redis and Kafka:
//! payments rank concerts once each, however often their event arrives;
//! with Redis stopped the ranking serves its Postgres snapshot, keeps the
//! sales made meanwhile and is exact again once Redis returns empty; and
//! the endpoint answers 200 (stale) whatever is down, 400 for bad input.

mod common;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use common::{Reply, Show, TestApp, spawn_app, spawn_app_on, spawn_app_with};
use core_service::{
    api::{
        NewConcert, NewPerformance, NewSection,
        ranking::{RankedConcert, RankingWindow},
    },
    domain::Krw,
    ranking::{Ranking, RankingHandler, SaleOutcome},
};
use devstack::testing::{PrivateRedisNode, eventually};
use events::{
    Envelope, PaymentCompleted,
    consumer::{Handler, Outcome, Record},
};
use reqwest::StatusCode;

/// Settings of a ranking that catches up quickly: replay (and rebuild)
/// every 200 ms, no periodic snapshot (the tests take them by hand).
const QUICK: &[(&str, &str)] = &[
    ("ONSALE__RANKING__REPLAY_INTERVAL_MS", "200"),
    ("ONSALE__RANKING__SNAPSHOT_INTERVAL_SECONDS", "0"),
];

/// Both services with every worker on (the ranking consumer among them),
/// on topics of their own, with `extra` core-service settings.
async fn spawn_ranked(extra: &[(&str, &str)]) -> TestApp {
    let suffix = devstack::testing::isolated_topics().await;
    let brokers = devstack::testing::stack().kafka_brokers.clone();
    let mut all = QUICK.to_vec();
    all.extend_from_slice(extra);
    spawn_app_on(&brokers, &suffix, &all).await
}

/// A concert titled `title` with one performance of 20 seats on sale now,
/// its waiting room open; returns its id and the performance.
async fn concert(app: &TestApp, title: &str) -> (i64, Show) {
    let now = Utc::now();
    let created = app
        .client
        .create_concert(&NewConcert {
            title: title.into(),
            artist: "Artist".into(),
            venue: "Hall".into(),
            performances: vec![NewPerformance {
                starts_at: now + chrono::Duration::days(7),
                sale_opens_at: now - chrono::Duration::minutes(1),
                max_seats_per_order: 4,
                max_tickets_per_fan: Some(common::MAX_TICKETS_PER_FAN),
                sections: vec![NewSection {
                    section: "A".into(),
                    grade: "R".into(),
                    price: Krw::positive(1_000).unwrap(),
                    rows: vec!["1".into(), "2".into()],
                    seats_per_row: 10,
                }],
            }],
        })
        .await
        .unwrap_or_else(|error| panic!("creating {title} failed: {error}"));
    let performance = created.performances.into_iter().next().unwrap();
    app.open_room(performance.id).await;
    let show = Show {
        performance_id: performance.id,
        seat_ids: performance.seat_ids,
    };
    (created.concert_id, show)
}

/// `fan` buys `seats` of `show` (charge, admission, hold, payment); returns
/// the payment id.
async fn buy(app: &TestApp, show: &Show, fan: &str, seats: &[i64]) -> String {
    assert!(app.charge(fan, 100_000).await.status.is_success());
    let pass = app.access_token(show.performance_id, fan).await;
    let hold = app.hold(&pass, show.performance_id, seats).await;
    assert_eq!(hold.status, StatusCode::CREATED, "{fan}: {}", hold.body);
    let reservation = hold.body["reservation_id"].as_str().unwrap();
    let paid = app.pay(&pass, &format!("{fan}-key"), reservation).await;
    assert_eq!(paid.status, StatusCode::CREATED, "{fan}: {}", paid.body);
    paid.body["payment_id"].as_str().unwrap().to_owned()
}

/// `GET /v1/rankings/concerts?<query>`.
async fn ranking(app: &TestApp, query: &str) -> Reply {
    Reply::send(
        app.http
            .get(format!("{}/v1/rankings/concerts?{query}", app.base)),
    )
    .await
}

/// The `(concert_id, title, tickets)` of a ranking answer, checking that
/// ranks run 1, 2, ….
fn entries(reply: &Reply) -> Vec<(i64, String, i64)> {
    let concerts = reply.body["concerts"].as_array().expect("a concerts list");
    concerts
        .iter()
        .zip(1..)
        .map(|(c, rank)| {
            assert_eq!(c["rank"], rank, "{}", reply.body);
            (
                c["concert_id"].as_i64().unwrap(),
                c["title"].as_str().unwrap().to_owned(),
                c["tickets"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Polls the ranking until it is live and lists `expected`.
async fn until_live(app: &TestApp, query: &str, expected: &[(i64, String, i64)]) {
    eventually(Duration::from_secs(60), || async {
        let reply = ranking(app, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        (reply.body["stale"] == false && entries(&reply) == expected).then_some(())
    })
    .await;
}

/// A ranking of its own over the app's database and Redis key prefix, to
/// call what the app's workers call (a snapshot, the handler).
fn ranking_of(app: &TestApp) -> Ranking {
    let settings = &app.settings;
    let db = core_service::db::Db::connect_lazy(&settings.database).unwrap();
    let redis = platform::redis_pool::RedisPool::new(
        &settings.redis,
        core_service::metrics::REDIS_CHECKOUT_SECONDS,
    )
    .unwrap();
    Ranking::new(
        db,
        Arc::new(redis),
        settings.redis.key_prefix.clone(),
        settings.ranking.clone(),
    )
}

/// The `payment.completed` envelope the outbox holds for `payment`.
async fn outbox_event(app: &TestApp, payment: &str) -> Envelope<PaymentCompleted> {
    let payload: serde_json::Value = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE topic = 'payment.completed' AND payload->'data'->>'payment_id' = $1",
    )
    .bind(payment)
    .fetch_one(&app.db)
    .await
    .unwrap();
    Envelope::decode(&serde_json::to_vec(&payload).unwrap()).unwrap()
}

fn record(envelope: &Envelope<PaymentCompleted>) -> Record {
    Record {
        topic: "payment.completed".into(),
        partition: 0,
        offset: 0,
        key: Some(envelope.key.clone().into_bytes()),
        payload: envelope.to_json(),
        headers: Default::default(),
        attempt: 1,
    }
}

fn entry(id: i64, title: &str, tickets: i64) -> (i64, String, i64) {
    (id, title.to_owned(), tickets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completed_payments_rank_concerts_by_tickets_sold_and_a_redelivered_payment_counts_once() {
    let app = spawn_ranked(&[]).await;
    let (alpha, alpha_show) = concert(&app, "Alpha").await;
    let (beta, beta_show) = concert(&app, "Beta").await;
    let (gamma, gamma_show) = concert(&app, "Gamma").await;
    let seats = |show: &Show, range: std::ops::Range<usize>| show.seat_ids[range].to_vec();
    let beta_four = buy(&app, &beta_show, "b1", &seats(&beta_show, 0..4)).await;
    buy(&app, &beta_show, "b2", &seats(&beta_show, 4..5)).await;
    buy(&app, &alpha_show, "a1", &seats(&alpha_show, 0..2)).await;
    buy(&app, &alpha_show, "a2", &seats(&alpha_show, 2..3)).await;
    buy(&app, &gamma_show, "g1", &seats(&gamma_show, 0..1)).await;

    let expected = vec![
        entry(beta, "Beta", 5),
        entry(alpha, "Alpha", 3),
        entry(gamma, "Gamma", 1),
    ];
    until_live(&app, "", &expected).await;
    let day = ranking(&app, "window=24h").await;
    assert_eq!(day.body["window"], "24h");
    assert_eq!(entries(&day), expected);
    let top_two = ranking(&app, "window=1h&limit=2").await;
    assert_eq!(top_two.body["window"], "1h");
    assert_eq!(entries(&top_two), expected[..2]);
    let as_of: DateTime<Utc> = top_two.body["as_of"].as_str().unwrap().parse().unwrap();
    assert!(
        (Utc::now() - as_of).num_seconds().abs() < 5,
        "live: as of now"
    );

    // The same event through Kafka again: the relay republishes it, the
    // consumer finds the payment counted.
    let republished = app
        .scalar(&format!(
            "WITH u AS (UPDATE outbox SET published_at = NULL
               WHERE topic = 'payment.completed' AND payload->'data'->>'payment_id' = '{beta_four}'
               RETURNING 1) SELECT count(*) FROM u"
        ))
        .await;
    assert_eq!(republished, 1);
    eventually(Duration::from_secs(30), || async {
        (app.scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await
            == 0)
            .then_some(())
    })
    .await;
    // And straight into a handler, twice.
    let handler = RankingHandler::new(ranking_of(&app));
    let event = record(&outbox_event(&app, &beta_four).await);
    for _ in 0..2 {
        assert_eq!(handler.handle(&event).await.unwrap(), Outcome::Done);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    until_live(&app, "", &expected).await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM ranking_sales").await,
        5,
        "one row per payment"
    );

    // A payment never seen before counts once, however often it comes.
    let ranking = ranking_of(&app);
    let mut fresh = PaymentCompleted::synthetic(1).data;
    fresh.performance_id = gamma_show.performance_id;
    fresh.seat_ids = vec![1, 2, 3];
    assert_eq!(
        ranking.record_sale(&fresh).await.unwrap(),
        SaleOutcome::Counted
    );
    assert_eq!(
        ranking.record_sale(&fresh).await.unwrap(),
        SaleOutcome::Duplicate
    );
    until_live(
        &app,
        "window=24h",
        &[
            entry(beta, "Beta", 5),
            entry(gamma, "Gamma", 4),
            entry(alpha, "Alpha", 3),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_redis_stopped_the_ranking_serves_its_snapshot_keeps_new_sales_and_is_exact_once_redis_returns()
 {
    let mut node = PrivateRedisNode::new();
    node.start();
    node.assign_slots().await;
    let url = node.url();
    let app = spawn_ranked(&[
        ("ONSALE__REDIS__URLS", url.as_str()),
        ("ONSALE__REDIS__RESPONSE_TIMEOUT_MS", "300"),
        ("ONSALE__REDIS__CONNECT_TIMEOUT_MS", "300"),
    ])
    .await;
    let (alpha, alpha_show) = concert(&app, "Alpha").await;
    let (beta, beta_show) = concert(&app, "Beta").await;
    let (gamma, gamma_show) = concert(&app, "Gamma").await;
    buy(&app, &alpha_show, "a1", &alpha_show.seat_ids[..3]).await;
    buy(&app, &beta_show, "b1", &beta_show.seat_ids[..2]).await;
    let before = vec![entry(alpha, "Alpha", 3), entry(beta, "Beta", 2)];
    until_live(&app, "", &before).await;
    let snapshots = ranking_of(&app).take_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 2, "one per window");
    assert_eq!(snapshots[0].window, RankingWindow::Hour);
    let snapshot = snapshots[0].clone();
    assert_eq!(
        snapshot.concerts[0],
        RankedConcert {
            rank: 1,
            concert_id: alpha,
            title: "Alpha".into(),
            tickets: 3
        }
    );

    node.stop();
    let stale = eventually(Duration::from_secs(30), || async {
        let reply = ranking(&app, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        (reply.body["stale"] == true).then_some(reply)
    })
    .await;
    assert_eq!(entries(&stale), before, "the snapshot's concerts");
    let as_of: DateTime<Utc> = stale.body["as_of"].as_str().unwrap().parse().unwrap();
    assert_eq!(as_of, snapshot.taken_at, "as of the snapshot");
    let truncated = ranking(&app, "limit=1").await;
    assert_eq!(
        (truncated.status, truncated.body["stale"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    assert_eq!(entries(&truncated), before[..1]);

    // Sales while Redis is down are kept in Postgres, not yet applied.
    buy(&app, &beta_show, "b2", &beta_show.seat_ids[2..5]).await;
    buy(&app, &gamma_show, "g1", &gamma_show.seat_ids[..1]).await;
    eventually(Duration::from_secs(60), || async {
        (app.scalar("SELECT count(*) FROM ranking_sales WHERE NOT applied")
            .await
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        entries(&ranking(&app, "").await),
        before,
        "still the snapshot"
    );

    // Redis returns empty (no persistence): the rebuild counts every sale
    // of the day again, the ones before the outage and the ones during it.
    node.start();
    node.assign_slots().await;
    let after = vec![
        entry(beta, "Beta", 5),
        entry(alpha, "Alpha", 3),
        entry(gamma, "Gamma", 1),
    ];
    until_live(&app, "", &after).await;
    until_live(&app, "window=24h", &after).await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM ranking_sales WHERE NOT applied")
            .await,
        0,
        "every pending sale replayed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_and_no_snapshot_the_ranking_is_an_empty_stale_list() {
    // A free port that nothing listens on.
    let nowhere = PrivateRedisNode::new();
    let url = nowhere.url();
    let app = spawn_app_with(&[
        ("ONSALE__REDIS__URLS", url.as_str()),
        ("ONSALE__REDIS__RESPONSE_TIMEOUT_MS", "300"),
        ("ONSALE__REDIS__CONNECT_TIMEOUT_MS", "300"),
    ])
    .await;
    for (query, window) in [("", "1h"), ("window=24h&limit=100", "24h")] {
        let reply = ranking(&app, query).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
        assert_eq!(reply.body["window"], window);
        assert_eq!(reply.body["stale"], true);
        assert_eq!(reply.body["concerts"], serde_json::json!([]));
        assert!(reply.body["as_of"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_postgres_both_down_the_ranking_is_still_an_empty_stale_list() {
    let nowhere = PrivateRedisNode::new();
    let redis = nowhere.url();
    let database = format!(
        "postgres://nobody@127.0.0.1:{}/nothing",
        PrivateRedisNode::new().port
    );
    let settings = common::core_settings(
        &database,
        "http://127.0.0.1:1",
        &[
            ("ONSALE__REDIS__URLS", redis.as_str()),
            ("ONSALE__REDIS__RESPONSE_TIMEOUT_MS", "300"),
            ("ONSALE__REDIS__CONNECT_TIMEOUT_MS", "300"),
            ("ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS", "500"),
        ],
    );
    let ranking = Ranking::new(
        core_service::db::Db::connect_lazy(&settings.database).unwrap(),
        Arc::new(
            platform::redis_pool::RedisPool::new(
                &settings.redis,
                core_service::metrics::REDIS_CHECKOUT_SECONDS,
            )
            .unwrap(),
        ),
        settings.redis.key_prefix.clone(),
        settings.ranking.clone(),
    );
    let answer = ranking.concerts(RankingWindow::Day, 5).await;
    assert!(answer.stale);
    assert!(answer.concerts.is_empty());
    assert_eq!(answer.window, RankingWindow::Day);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_ticket_counts_rank_the_lower_concert_id_first_even_where_the_limit_cuts() {
    let app = spawn_app().await;
    // The app's consumer is off: this test feeds its ranking by hand, and
    // the rebuild of an empty key prefix sets the ready marker.
    let service = ranking_of(&app);
    assert_eq!(service.rebuild_if_lost().await.unwrap(), Some(0));
    assert_eq!(service.rebuild_if_lost().await.unwrap(), None, "ready now");
    let mut ids = Vec::new();
    for i in 0..11 {
        let (id, show) = concert(&app, &format!("Concert {i}")).await;
        let mut sale = PaymentCompleted::synthetic(i).data;
        sale.performance_id = show.performance_id;
        // One ticket each, two for the last (id 11: past 9 and 10, which
        // sort before 2 as unpadded text).
        sale.seat_ids = if i == 10 { vec![1, 2] } else { vec![1] };
        assert_eq!(
            service.record_sale(&sale).await.unwrap(),
            SaleOutcome::Counted
        );
        ids.push(id);
    }
    let tickets = |reply: &Reply| -> Vec<(i64, i64)> {
        entries(reply)
            .into_iter()
            .map(|(id, _, t)| (id, t))
            .collect()
    };
    let top = ranking(&app, "limit=3").await;
    assert_eq!(top.body["stale"], false, "{}", top.body);
    assert_eq!(tickets(&top), [(ids[10], 2), (ids[0], 1), (ids[1], 1)]);
    let all = ranking(&app, "limit=100").await;
    let mut expected = vec![(ids[10], 2)];
    expected.extend(ids[..10].iter().map(|id| (*id, 1)));
    assert_eq!(tickets(&all), expected);
    assert_eq!(entries(&all)[1].1, "Concert 0", "titles from the catalog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_400_problems_with_a_stable_code() {
    let app = spawn_app().await;
    for query in [
        "window=2h",
        "window=",
        "window=1H",
        "limit=0",
        "limit=101",
        "limit=-3",
        "limit=ten",
        "limit=1.5",
        "window=24h&limit=",
    ] {
        let reply = ranking(&app, query).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.is_problem(), "{query}: {:?}", reply.headers);
        assert_eq!(reply.code(), "invalid_request", "{query}");
    }
    let twice = ranking(&app, "limit=1&limit=2").await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::BAD_REQUEST, "malformed_query")
    );
    // The defaults, and unknown parameters ignored.
    let fine = ranking(&app, "other=1").await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.body);
    assert_eq!(fine.body["window"], "1h");
}
