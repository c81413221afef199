//! Fans for the fault drills: each buys single-seat orders through the
//! waiting room as a real client does, retrying what a fault interrupted,
//! and the [`Tally`] records what they saw.
//!
//! A 503 (or a connection refused while a process is down) is asked again
//! after [`PAUSE`]; a payment always under its own Idempotency-Key, so an
//! answer the fault cut off is asked for again rather than paid twice, and
//! a `409 payment_in_progress` (a claim left by a crashed attempt, until
//! its lease runs out) is asked again too.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use onsale_client::Client;
use reqwest::{RequestBuilder, StatusCode};
use tokio::time::Instant;

use super::{Reply, TestApp, hold_body};
use core_service::api::CreatePayment;

/// Fans buying at once in a drill.
pub const FANS: usize = 24;
/// Single-seat orders each fan pays for.
pub const ORDERS_PER_FAN: usize = 3;
/// Seats each fan may try: a hold whose answer the fault cut off keeps its
/// seat until it expires, so the fan moves on to the next.
pub const SEATS_PER_FAN: i32 = 6;
/// Price of a seat, KRW.
pub const PRICE: i64 = 10_000;
/// Each fan's prepaid balance, KRW.
pub const CHARGE: i64 = PRICE * SEATS_PER_FAN as i64;

/// The pause of a fan between orders, and before asking again.
pub const PAUSE: Duration = Duration::from_millis(100);

/// One payment a fan was told about.
#[derive(Debug, Clone)]
pub struct Paid {
    pub user: String,
    pub key: String,
    pub reservation: String,
    pub payment: String,
    pub at: Instant,
}

/// What the fans saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests sent.
    pub requests: u64,
    /// When each 503 was answered.
    pub unavailable: Vec<Instant>,
    /// When each request found nothing listening.
    pub unreachable: Vec<Instant>,
    /// `409 payment_in_progress` answers.
    pub in_progress: u64,
    /// Holds that ran out before their payment (`410`), left to expire.
    pub expired: u64,
    /// Acknowledged payments.
    pub paid: Vec<Paid>,
    /// Answers no client should see.
    pub wrong: Vec<String>,
}

pub type Shared = Arc<Mutex<Tally>>;

/// Sends the request `build` makes until it is served: not a 503, not a
/// payment in progress, and something listened.
async fn until_served(tally: &Shared, what: &str, build: impl Fn() -> RequestBuilder) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let sent = build().send().await;
        let reply = match sent {
            Ok(response) => Some(Reply::from(response).await),
            Err(_) => None,
        };
        let served = {
            let mut tally = tally.lock().unwrap();
            tally.requests += 1;
            match &reply {
                None => {
                    tally.unreachable.push(Instant::now());
                    false
                }
                Some(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                    if !reply.is_problem() || !reply.headers.contains_key("retry-after") {
                        tally.wrong.push(format!(
                            "{what}: a 503 without problem+json or Retry-After: {}",
                            reply.body
                        ));
                    }
                    tally.unavailable.push(Instant::now());
                    false
                }
                Some(reply)
                    if reply.status == StatusCode::CONFLICT
                        && reply.code() == "payment_in_progress" =>
                {
                    tally.in_progress += 1;
                    false
                }
                Some(reply) if reply.status.is_server_error() => {
                    tally
                        .wrong
                        .push(format!("{what}: {} {}", reply.status, reply.body));
                    true
                }
                Some(_) => true,
            }
        };
        if served && let Some(reply) = reply {
            return reply;
        }
        assert!(Instant::now() < deadline, "{what} was never served");
        tokio::time::sleep(PAUSE).await;
    }
}

/// One fan, `user`, buying through `core`: holds one seat at a time from
/// `seats` and pays for it, until `orders` are paid or the seats run out.
/// A payment ends the fan's admission (its slot goes to the next fan in
/// line), so each further order starts in the waiting room again.
pub async fn fan(
    app: Arc<TestApp>,
    core: Client,
    (performance, seats): (i64, Vec<i64>),
    user: String,
    orders: usize,
    tally: Shared,
) {
    let mut paid = 0;
    let mut pass = app.access_token(performance, &user).await;
    for (n, seat) in seats.into_iter().enumerate() {
        if paid == orders {
            break;
        }
        let fan = core.as_fan(&pass.identity);
        let hold = hold_body(performance, &[seat]);
        let held = until_served(&tally, "hold", || fan.hold_request(&pass.access, &hold)).await;
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
        let payment = CreatePayment {
            reservation_id: reservation.parse().unwrap(),
            coupon_code: None,
        };
        let answer = until_served(&tally, "payment", || {
            fan.pay_request(&pass.access, &key, &payment)
        })
        .await;
        {
            let mut tally = tally.lock().unwrap();
            if answer.status == StatusCode::CREATED {
                tally.paid.push(Paid {
                    user: user.clone(),
                    key,
                    reservation,
                    payment: answer.body["payment_id"].as_str().unwrap().to_owned(),
                    at: Instant::now(),
                });
                paid += 1;
            } else if answer.status == StatusCode::GONE {
                tally.expired += 1;
            } else {
                let wrong = format!("payment: {} {}", answer.status, answer.body);
                tally.wrong.push(wrong);
            }
        }
        tokio::time::sleep(PAUSE).await;
        if paid < orders {
            pass = app.access_token(performance, &user).await;
        }
    }
}

/// Starts one fan task per user; fan `i` tries seats
/// `seat_ids[i * per_fan..(i + 1) * per_fan]`.
pub fn start_fans(
    app: &Arc<TestApp>,
    core: &Client,
    (performance, seat_ids): (i64, &[i64]),
    users: &[String],
    orders: usize,
    tally: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let per_fan = seat_ids.len() / users.len();
    users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let seats = seat_ids[i * per_fan..(i + 1) * per_fan].to_vec();
            tokio::spawn(fan(
                app.clone(),
                core.clone(),
                (performance, seats),
                user.clone(),
                orders,
                tally.clone(),
            ))
        })
        .collect()
}

/// Checks what every drill promises once the fans are done: the database
/// holds exactly the acknowledged payments (each under its fan's key), each
/// fan's balance is `charge` less what they were told they paid at `price`,
/// and the on-sale audit passes within 90 s (the relay, the consumers and
/// the sweeper catching up).
pub async fn assert_nothing_lost_or_doubled(
    app: &TestApp,
    tally: &Tally,
    (charge, price): (i64, i64),
    audit: &loadtest::audit::Options,
) {
    assert!(
        tally.wrong.is_empty(),
        "answers no client should see: {:#?}",
        tally.wrong
    );
    let paid = i64::try_from(tally.paid.len()).unwrap();
    assert_eq!(
        app.scalar("SELECT count(*) FROM payments WHERE status = 'completed'")
            .await,
        paid,
        "the database holds exactly the acknowledged payments"
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM seats WHERE status = 'sold'")
            .await,
        paid
    );
    let mut spent = std::collections::BTreeMap::<&str, i64>::new();
    for p in &tally.paid {
        let stored: (String, String) = sqlx::query_as(
            "SELECT id::text, reservation_id::text FROM payments \
             WHERE user_id = $1 AND idempotency_key = $2 AND status = 'completed'",
        )
        .bind(&p.user)
        .bind(&p.key)
        .fetch_one(&app.db)
        .await
        .unwrap_or_else(|error| panic!("{}'s payment under {} is stored: {error}", p.user, p.key));
        assert_eq!(
            (&stored.0, &stored.1),
            (&p.payment, &p.reservation),
            "{}'s key {} holds the acknowledged payment",
            p.user,
            p.key
        );
        *spent.entry(&p.user).or_default() += price;
    }
    for (user, spent) in spent {
        assert_eq!(app.balance(user).await, charge - spent, "{user}'s balance");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let verdict = loadtest::audit::audit(
            &app.database_url,
            &devstack::testing::stack().redis_urls,
            audit,
        )
        .await
        .expect("the audit runs");
        if verdict.passed {
            return;
        }
        if Instant::now() > deadline {
            loadtest::audit::print(&verdict);
            panic!("the audit failed after the drill");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
