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

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Reply, TestApp, spawn_app_on_database};
use devstack::testing::{PrivatePostgres, isolated_topics, stack, unique_suffix};
use futures::future::join_all;
use loadtest::audit::{self, Options};
use reqwest::StatusCode;
use tokio::time::Instant;

/// Fans buying at once.
const FANS: usize = 24;
/// Single-seat orders each fan pays for.
const ORDERS_PER_FAN: usize = 3;
/// Seats each fan may try (a hold whose answer the crash cut off keeps its
/// seat until it expires, so the fan moves on to the next).
const SEATS_PER_FAN: i32 = 6;
/// Price of a seat, KRW.
const PRICE: i64 = 10_000;
/// Each fan's prepaid balance, KRW.
const CHARGE: i64 = PRICE * SEATS_PER_FAN as i64;
/// The pause of a fan between orders, and after a 503 before asking again.
const PAUSE: Duration = Duration::from_millis(100);

/// What the fans saw.
#[derive(Default)]
struct Tally {
    /// Requests sent.
    requests: u64,
    /// When each 503 was answered.
    unavailable: Vec<Instant>,
    /// `409 payment_in_progress` answers (a retry that met its own first
    /// attempt still running).
    in_progress: u64,
    /// Acknowledged payments: (user, idempotency key, reservation id,
    /// payment id, when).
    paid: Vec<(String, String, String, String, Instant)>,
    /// Answers no client should see.
    wrong: Vec<String>,
}

type Shared = Arc<Mutex<Tally>>;

/// Sends `request` until the answer is neither a 503 nor a payment in
/// progress, as a client following Retry-After would; records every answer.
async fn until_served<F, Fut>(tally: &Shared, what: &str, mut request: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = request().await;
        let served = {
            let mut tally = tally.lock().unwrap();
            tally.requests += 1;
            match reply.status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    if !reply.is_problem() || !reply.headers.contains_key("retry-after") {
                        tally.wrong.push(format!(
                            "{what}: a 503 without problem+json or Retry-After: {}",
                            reply.body
                        ));
                    }
                    tally.unavailable.push(Instant::now());
                    false
                }
                StatusCode::CONFLICT if reply.code() == "payment_in_progress" => {
                    tally.in_progress += 1;
                    false
                }
                status if status.is_server_error() => {
                    tally.wrong.push(format!("{what}: {status} {}", reply.body));
                    true
                }
                _ => true,
            }
        };
        if served {
            return reply;
        }
        assert!(Instant::now() < deadline, "{what} was never served");
        tokio::time::sleep(PAUSE).await;
    }
}

/// One fan: holds one seat at a time from `seats` and pays for it, until
/// [`ORDERS_PER_FAN`] are paid or the seats run out. A payment ends the
/// fan's admission (its slot goes to the next fan in line), so each
/// further order starts in the waiting room again.
async fn fan(app: Arc<TestApp>, performance: i64, seats: Vec<i64>, user: String, tally: Shared) {
    let mut paid = 0;
    let mut pass = app.access_token(performance, &user).await;
    for (n, seat) in seats.into_iter().enumerate() {
        if paid == ORDERS_PER_FAN {
            break;
        }
        let one = [seat];
        let held = until_served(&tally, "hold", || app.hold(&pass, performance, &one)).await;
        if held.status == StatusCode::CONFLICT {
            // Taken, by this fan's own hold if its answer was lost.
            continue;
        }
        if held.status != StatusCode::CREATED {
            let wrong = format!("hold: {} {}", held.status, held.body);
            tally.lock().unwrap().wrong.push(wrong);
            continue;
        }
        let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();
        let key = format!("{user}-order-{n}");
        let payment = until_served(&tally, "payment", || app.pay(&pass, &key, &reservation)).await;
        {
            let mut tally = tally.lock().unwrap();
            if payment.status == StatusCode::CREATED {
                let id = payment.body["payment_id"].as_str().unwrap().to_owned();
                tally
                    .paid
                    .push((user.clone(), key, reservation, id, Instant::now()));
                paid += 1;
            } else {
                let wrong = format!("payment: {} {}", payment.status, payment.body);
                tally.wrong.push(wrong);
            }
        }
        tokio::time::sleep(PAUSE).await;
        if paid < ORDERS_PER_FAN {
            pass = app.access_token(performance, &user).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_crash_mid_sale_costs_seconds_of_503_and_loses_and_doubles_nothing() {
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
    let performance = show.performance_id;
    let users: Vec<String> = (0..FANS).map(|i| format!("drill-fan-{i}")).collect();
    for user in &users {
        assert_eq!(app.charge(user, CHARGE).await.status, StatusCode::CREATED);
    }

    let tally: Shared = Arc::default();
    let per_fan = SEATS_PER_FAN as usize;
    let fans: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let seats = show.seat_ids[i * per_fan..(i + 1) * per_fan].to_vec();
            tokio::spawn(fan(
                app.clone(),
                performance,
                seats,
                user.clone(),
                tally.clone(),
            ))
        })
        .collect();

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

    let tally = Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap();
    assert!(
        tally.wrong.is_empty(),
        "answers no client should see: {:#?}",
        tally.wrong
    );
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
    assert!(
        tally.paid.iter().any(|p| p.4 > *after[after.len() - 1]),
        "payments succeed again after the crash without a service restart"
    );

    // The database holds exactly the acknowledged payments, and the same
    // key returns the same payment.
    assert_eq!(
        app.scalar("SELECT count(*) FROM payments WHERE status = 'completed'")
            .await,
        i64::try_from(target).unwrap()
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'sold'")
            .await,
        i64::try_from(target).unwrap()
    );
    let mut spent: BTreeMap<&str, i64> = BTreeMap::new();
    for (user, key, reservation, payment, _) in &tally.paid {
        let stored: (String, String) = sqlx::query_as(
            "SELECT id::text, reservation_id::text FROM payments \
             WHERE user_id = $1 AND idempotency_key = $2 AND status = 'completed'",
        )
        .bind(user)
        .bind(key)
        .fetch_one(&app.db)
        .await
        .unwrap_or_else(|error| panic!("{user}'s payment under {key} is stored: {error}"));
        assert_eq!(
            (&stored.0, &stored.1),
            (payment, reservation),
            "{user}'s key {key} holds the acknowledged payment"
        );
        *spent.entry(user).or_default() += PRICE;
    }
    for (user, spent) in spent {
        assert_eq!(app.balance(user).await, CHARGE - spent, "{user}'s balance");
    }

    // The audit, once the relay and the consumers have caught up.
    let options = Options {
        grace_seconds: 0,
        retention_seconds: 23 * 3_600,
        key_prefix: room_prefix,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let verdict = audit::audit(&server.url(), &stack().redis_urls, &options)
            .await
            .expect("the audit runs");
        if verdict.passed {
            break;
        }
        if Instant::now() > deadline {
            audit::print(&verdict);
            panic!("the audit failed after the crash");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let first = after[0].duration_since(crashed);
    let last = after[after.len() - 1].duration_since(crashed);
    eprintln!(
        "drill postgres: pg_ctl restart took {restart:?}; 503s from {first:?} to {last:?} after the crash \
         ({} of {} requests, {} in progress); {paid_before} orders paid before, {} after; lost 0, doubled 0",
        tally.unavailable.len(),
        tally.requests,
        tally.in_progress,
        tally.paid.len() - paid_before
    );
}
