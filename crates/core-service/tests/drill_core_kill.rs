//! Drill: a core-service process killed with `kill -9` in the middle of a
//! sale, then started again.
//!
//! Two core-service instances share the database, the waiting room and the
//! topics: one in this test's process for the setup, and the real
//! `core-service` binary that the fans buy through and that alone relays,
//! consumes and sweeps. The drill kills the binary (SIGKILL: no drain, no
//! rollback but Postgres's own), leaves it down, and starts it again on the
//! same port. The fans retry what found nothing listening, their payments
//! under the same Idempotency-Keys; a claim the dead process left in
//! flight answers `409 payment_in_progress` until its lease runs out, and
//! is then taken over.
//!
//! Two downtimes: longer than the consumers' session timeout (10 s), so
//! the broker has dropped the dead consumer-group member when the new
//! process joins; and one second, which on the devstack broker (Tansu 0.6)
//! leaves the restarted process with no partition (ignored, the
//! reproduction of that finding; docs/reliability.md).
//!
//! What must hold afterwards: nothing answered but what a client can act
//! on; every stored payment acknowledged to its fan under its key, none
//! twice; balances right; holds the dead process made and never answered
//! expire; and the on-sale audit passes.

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{
    CORE_ADMIN_KEY, QUEUE_ADMIN_KEY, TestApp, core_vars,
    drill::{self, CHARGE, FANS, ORDERS_PER_FAN, PRICE, SEATS_PER_FAN, Shared},
    spawn_app_on_database,
};
use devstack::testing::{fresh_database, isolated_topics, stack, unique_suffix};
use futures::future::join_all;
use loadtest::audit::Options;
use onsale_client::Client;
use reqwest::StatusCode;
use tokio::time::Instant;

/// Settings of both instances: a short idempotency lease (it must outlast
/// the statement timeout) so a claim of the dead process is taken over
/// within seconds, and a short hold so its unanswered holds expire within
/// the test.
const DRILL_SETTINGS: &[(&str, &str)] = &[
    ("ONSALE__CORE__IDEMPOTENCY_LEASE_SECONDS", "5"),
    ("ONSALE__DATABASE__STATEMENT_TIMEOUT_MS", "4000"),
    ("ONSALE__CORE__HOLD_TTL_SECONDS", "30"),
];

/// The in-process instance serves the test's setup only: the binary is the
/// one instance that relays, consumes and sweeps, as a single-task
/// deployment would. (Two relays at once on Tansu 0.6 lost records in the
/// broker's log; docs/reliability.md has the figures.)
const IN_PROCESS_WORKERS_OFF: &[(&str, &str)] = &[
    ("ONSALE__CORE__OUTBOX_RELAY", "false"),
    ("ONSALE__CORE__EXPIRY_CONSUMER", "false"),
    ("ONSALE__CORE__SWEEPER", "false"),
    ("ONSALE__RANKING__CONSUMER", "false"),
];

/// The `core-service` binary with `vars`, its output in `log`.
fn start_core(vars: &[(String, String)], log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_core-service"))
        .envs(vars.iter().cloned())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("core-service starts")
}

/// Waits until the process at `base` answers `/readyz` with 200.
async fn ready(app: &TestApp, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = app.http.get(format!("{base}/readyz")).send().await;
        if answer.is_ok_and(|a| a.status() == StatusCode::OK) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "core-service at {base} never got ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_core_service_killed_mid_sale_and_restarted_after_its_session_timed_out_loses_and_doubles_nothing()
 {
    kill_and_restart(Duration::from_secs(12)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "fails on the devstack broker: Tansu 0.6 keeps the killed process's consumer-group member, so the process restarted a second later is assigned no partition and no payment.completed is applied (docs/reliability.md)"]
async fn a_core_service_killed_mid_sale_and_restarted_at_once_loses_and_doubles_nothing() {
    kill_and_restart(Duration::from_secs(1)).await;
}

/// The drill: the binary is killed once a third of the orders are paid and
/// started again after `down`.
async fn kill_and_restart(down: Duration) {
    let suffix = isolated_topics().await;
    let mut in_process = DRILL_SETTINGS.to_vec();
    in_process.extend_from_slice(IN_PROCESS_WORKERS_OFF);
    let room_prefix = format!("{}:", unique_suffix());
    let app = Arc::new(
        spawn_app_on_database(
            &stack().kafka_brokers,
            &suffix,
            fresh_database().await,
            &in_process,
            &[("ONSALE__REDIS__KEY_PREFIX".to_owned(), room_prefix.clone())],
        )
        .await,
    );

    // The binary: the same stores, topics, issuer and queue-service.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let group = format!("test{suffix}");
    let mut extra: Vec<(&str, &str)> = DRILL_SETTINGS.to_vec();
    extra.extend([
        ("ONSALE__CORE__HTTP_ADDR", addr.as_str()),
        ("ONSALE__KAFKA__TOPIC_SUFFIX", suffix.as_str()),
        ("ONSALE__KAFKA__GROUP_PREFIX", group.as_str()),
        ("ONSALE__IDENTITY__ISSUER", app.issuer.url()),
        (
            "ONSALE__REDIS__KEY_PREFIX",
            app.settings.redis.key_prefix.as_str(),
        ),
    ]);
    let vars = core_vars(&app.database_url, &app.queue_grpc, &extra);
    let log = std::env::temp_dir().join(format!("onsale-drill-core-{}.log", unique_suffix()));
    let base = format!("http://{addr}");
    let mut process = start_core(&vars, &log);
    ready(&app, &base).await;
    let core = Client::builder()
        .queue_url(&app.queue_base)
        .core_url(&base)
        .http(app.http.clone())
        .queue_admin_key(QUEUE_ADMIN_KEY)
        .core_admin_key(CORE_ADMIN_KEY)
        .build();

    let show = app.create_show(FANS, SEATS_PER_FAN, PRICE, 4).await;
    let users: Vec<String> = (0..FANS).map(|i| format!("killed-core-fan-{i}")).collect();
    for user in &users {
        assert_eq!(app.charge(user, CHARGE).await.status, StatusCode::CREATED);
    }
    let tally: Shared = Arc::default();
    let sale = (show.performance_id, show.seat_ids.as_slice());
    let fans = drill::start_fans(&app, &core, sale, &users, ORDERS_PER_FAN, &tally);

    // kill -9 once a third of the orders are paid; after `down`, again.
    let target = FANS * ORDERS_PER_FAN;
    devstack::testing::eventually(Duration::from_secs(120), || async {
        (tally.lock().unwrap().paid.len() >= target / 3).then_some(())
    })
    .await;
    let killed = Instant::now();
    let paid_before = tally.lock().unwrap().paid.len();
    process.kill().expect("SIGKILL is sent");
    process.wait().expect("the killed process is reaped");
    tokio::time::sleep(down).await;
    process = start_core(&vars, &log);
    ready(&app, &base).await;
    let back = killed.elapsed();
    for fan in join_all(fans).await {
        fan.expect("a fan finishes");
    }

    let tally = Arc::try_unwrap(tally).unwrap().into_inner().unwrap();
    assert_eq!(tally.paid.len(), target, "every fan paid for their orders");
    let refused: Vec<_> = tally.unreachable.iter().filter(|t| **t >= killed).collect();
    assert!(
        !refused.is_empty(),
        "the kill was felt: some request found nothing listening"
    );
    assert!(
        tally.paid.iter().any(|p| p.at > killed + back),
        "payments go through the restarted process"
    );
    let options = Options {
        grace_seconds: 0,
        retention_seconds: loadtest::audit::DEFAULT_RETENTION_SECONDS,
        key_prefix: room_prefix,
    };
    drill::assert_nothing_lost_or_doubled(&app, &tally, (CHARGE, PRICE), &options).await;
    let expired = app
        .scalar("SELECT count(*) FROM reservations WHERE status = 'expired'")
        .await;

    eprintln!(
        "drill core kill -9, down {down:?}: serving again {back:?} after the kill; {} requests found nothing listening, \
         {} answered 503, {} payment_in_progress, of {} requests; {} holds expired unpaid \
         ({} answered 410 to their payment); {paid_before} orders paid before, {} after; lost 0, doubled 0",
        tally.unreachable.len(),
        tally.unavailable.len(),
        tally.in_progress,
        tally.requests,
        expired,
        tally.expired,
        tally.paid.len() - paid_before
    );
    process.kill().ok();
    process.wait().ok();
    let _ = std::fs::remove_file(log);
}
