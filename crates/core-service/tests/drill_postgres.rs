//! Drill: Postgres crashes in the middle of a sale.
//!
//! Fans hold and pay on a private Postgres server while the drill runs
//! `pg_ctl restart -m immediate` on it: every backend dies without a
//! checkpoint and the server replays its WAL before it accepts connections
//! again. The fans act as real clients do: a 503 is retried after a pause,
//! a payment always with its own Idempotency-Key, so an answer the crash
//! cut off is asked for again rather than paid twice.
//!
//! What must hold afterwards, with the services never restarted:
//! - while the database is down the answers are 503 problem+json with
//!   Retry-After, never another 5xx;
//! - the services serve again by themselves;
//! - every payment the database holds was acknowledged to its fan, and
//!   asking again with the same key returns the same payment;
//! - each fan's balance is their charge less what they were told they paid;
//! - the on-sale audit passes: no seat sold twice, one payment and one
//!   debit per paid reservation, every payment's `payment.completed`
//!   published and applied once, and the waiting room consistent.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    drill::{self, CHARGE, FANS, ORDERS_PER_FAN, PRICE, SEATS_PER_FAN, Shared},
    spawn_app_on_database,
};
use devstack::testing::{PrivatePostgres, isolated_topics, stack, unique_suffix};
use futures::future::join_all;
use loadtest::audit::Options;
use reqwest::StatusCode;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_crash_mid_sale_costs_a_moment_of_503_and_loses_and_doubles_nothing() {
    let server = PrivatePostgres::start()
        .await
        .expect("a private Postgres starts");
    let suffix = isolated_topics().await;
    let room_prefix = format!("{}:", unique_suffix());
    let app = Arc::new(
        spawn_app_on_database(
            &stack().kafka_brokers,
            &suffix,
            server.url(),
            // Fail fast while the server is down rather than queue for 10 s.
            &[("ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS", "2000")],
            &[("ONSALE__REDIS__KEY_PREFIX".to_owned(), room_prefix.clone())],
        )
        .await,
    );
    let show = app.create_show(FANS, SEATS_PER_FAN, PRICE, 4).await;
    let users: Vec<String> = (0..FANS).map(|i| format!("drill-fan-{i}")).collect();
    for user in &users {
        assert_eq!(app.charge(user, CHARGE).await.status, StatusCode::CREATED);
    }

    let tally: Shared = Arc::default();
    let sale = (show.performance_id, show.seat_ids.as_slice());
    let fans = drill::start_fans(&app, &app.client, sale, &users, ORDERS_PER_FAN, &tally);

    // The crash, once a third of the orders are paid.
    let target = FANS * ORDERS_PER_FAN;
    devstack::testing::eventually(Duration::from_secs(120), || async {
        (tally.lock().unwrap().paid.len() >= target / 3).then_some(())
    })
    .await;
    let crashed = Instant::now();
    let paid_before = tally.lock().unwrap().paid.len();
    // pg_ctl waits for the server: the fans go on on the other workers.
    tokio::task::block_in_place(|| server.restart_immediate()).expect("pg_ctl restarts");
    let restart = crashed.elapsed();
    for fan in join_all(fans).await {
        fan.expect("a fan finishes");
    }

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    assert_eq!(tally.paid.len(), target, "every fan paid for their orders");
    let after: Vec<_> = tally
        .unavailable
        .iter()
        .filter(|t| **t >= crashed)
        .collect();
    assert!(
        !after.is_empty(),
        "the crash was felt: some request met a 503"
    );
    let (first, last) = (*after[0], *after[after.len() - 1]);
    assert!(
        tally.paid.iter().any(|p| p.at > last),
        "payments succeed again after the crash without a service restart"
    );
    let options = Options {
        grace_seconds: 0,
        retention_seconds: loadtest::audit::DEFAULT_RETENTION_SECONDS,
        key_prefix: room_prefix,
    };
    drill::assert_nothing_lost_or_doubled(&app, &tally, (CHARGE, PRICE), &options).await;

    eprintln!(
        "drill postgres: pg_ctl restart took {restart:?}; 503s from {:?} to {:?} after the crash \
         ({} of {} requests, {} in progress); {paid_before} orders paid before, {} after; lost 0, doubled 0",
        first.duration_since(crashed),
        last.duration_since(crashed),
        tally.unavailable.len(),
        tally.requests,
        tally.in_progress,
        tally.paid.len() - paid_before
    );
}
