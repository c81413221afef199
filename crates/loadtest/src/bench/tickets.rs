//! `--only tickets`: CPU per sold ticket, the whole stack counted.
//!
//! A sale of `--ticket-seats` seats (1,000) to `--ticket-buyers` buyers
//! (1,200), `--ticket-concurrency` (50) of them at once, as in a published
//! side-by-side where buyers pick their seats themselves (onsale 5.4 ms of
//! CPU per ticket there, pretix 55 ms). Every buyer is a signed-in fan
//! already admitted by the waiting room (identity and access tokens, signed
//! in and admitted before the measured window, as in `core_phases`), with
//! a balance charged before it. Each buyer then holds one seat and pays it
//! with an `Idempotency-Key`:
//!
//! - **picking seats**: reads the seat map (`GET
//!   /v1/performances/{id}/seats`, up to 1 s stale), holds a random seat
//!   the map shows free, and after a 409 reads the map again and picks
//!   anew;
//! - **best available**: asks for one seat (`{performance_id,
//!   best_available: {quantity}}`) and lets the service choose; after a 409
//!   it asks again.
//!
//! A buyer stops when the map shows no free seat or a 409 says
//! `seats_available` 0 (sold out); a 429 or 503 is retried after its
//! `Retry-After` (or 50 ms). The load generator is this process (the
//! `onsale_client` crate on Tokio), so its CPU is left out: the window
//! counts the CPU of every server process of the stack (`cpu::stack_cpu`:
//! both services, Postgres with every backend, the six Redis nodes, the
//! broker), from the first buyer's first request until the outbox relay
//! has published the last sale's events plus 500 ms for their consumers,
//! and divides it by the seats sold (counted in Postgres). The stack's idle
//! CPU is measured over 2 s right before and reported beside it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use core_service::{
    api::{CreatePayment, CreateReservation},
    domain::{PerformanceId, SeatId},
};
use futures::StreamExt;
use onsale_client::{Client, Error};
use rand::seq::IndexedRandom;
use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};

use super::{
    Run,
    cpu::{settle, stack_components, stack_cpu, wait_for_outbox},
    room,
};
use crate::setup;

/// Price of every seat of the sale, KRW.
const PRICE: i64 = 110_000;

/// Holds a buyer tries before giving up (a guard; a buyer stops earlier
/// once the sale is sold out).
const MAX_ATTEMPTS: u32 = 100;

/// How the buyers choose their seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// From the seat map, a random free seat.
    Pick,
    /// The service's best available seat.
    BestAvailable,
}

impl Mode {
    /// The report's name of the mode.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Pick => "buyers pick seats from the seat map",
            Self::BestAvailable => "best available",
        }
    }
}

/// Requests the buyers sent during the window, by kind.
#[derive(Debug, Default)]
struct Counters {
    seat_maps: AtomicU64,
    holds: AtomicU64,
    conflicts: AtomicU64,
    payments: AtomicU64,
    shed: AtomicU64,
    gave_up: AtomicU64,
}

/// One measured sale.
#[derive(Debug, Clone)]
pub(super) struct Sale {
    /// How the buyers chose.
    pub(super) mode: Mode,
    /// Seats on sale.
    pub(super) seats: u64,
    /// Buyers.
    pub(super) buyers: u64,
    /// Buyers at once.
    pub(super) concurrency: u64,
    /// Seats sold, counted in Postgres.
    pub(super) sold: u64,
    /// Seat-map reads.
    pub(super) seat_maps: u64,
    /// Hold requests that succeeded.
    pub(super) holds: u64,
    /// Hold requests answered 409.
    pub(super) conflicts: u64,
    /// Payments that succeeded.
    pub(super) payments: u64,
    /// Requests answered 429 or 503 (and retried).
    pub(super) shed: u64,
    /// Buyers who stopped after [`MAX_ATTEMPTS`] holds.
    pub(super) gave_up: u64,
    /// The window, seconds.
    pub(super) seconds: f64,
    /// CPU of each stack component over the window.
    pub(super) cpu: Vec<(&'static str, Duration)>,
    /// The whole stack's CPU per second while idle, just before, ms/s.
    pub(super) idle_ms_per_second: f64,
}

impl Sale {
    /// Every request the buyers sent.
    pub(super) fn requests(&self) -> u64 {
        self.seat_maps + self.holds + self.conflicts + self.payments + self.shed
    }

    /// The stack's CPU over the window, per sold ticket, ms.
    pub(super) fn cpu_ms_per_ticket(&self) -> f64 {
        let total: Duration = self.cpu.iter().map(|(_, d)| *d).sum();
        total.as_secs_f64() * 1e3 / self.sold.max(1) as f64
    }

    /// [`Sale::cpu_ms_per_ticket`] less the idle CPU the stack would have
    /// used over the window anyway, ms.
    pub(super) fn net_cpu_ms_per_ticket(&self) -> f64 {
        let idle = self.idle_ms_per_second * self.seconds;
        (self.cpu_ms_per_ticket() * self.sold.max(1) as f64 - idle).max(0.0)
            / self.sold.max(1) as f64
    }
}

/// Both sales, one after the other, each on a performance and buyers of its
/// own.
pub(super) async fn run(run: &Run<'_>, sales: &mut Vec<Sale>) -> Result<()> {
    for mode in [Mode::Pick, Mode::BestAvailable] {
        let sale = sell(run, mode).await?;
        eprintln!(
            "bench: tickets, {}: {} sold in {:.1} s, {:.2} ms stack CPU per ticket ({:.2} less idle), {:.2} requests per ticket; {:?}",
            mode.label(),
            sale.sold,
            sale.seconds,
            sale.cpu_ms_per_ticket(),
            sale.net_cpu_ms_per_ticket(),
            sale.requests() as f64 / sale.sold.max(1) as f64,
            sale.cpu
        );
        sales.push(sale);
    }
    Ok(())
}

async fn sell(run: &Run<'_>, mode: Mode) -> Result<Sale> {
    let (client, args) = (&run.client, run.args);
    let seats = args.ticket_seats;
    let buyers = usize::try_from(args.ticket_buyers)?;
    let per_row = setup::SEATS_PER_ROW;
    ensure!(
        seats.is_multiple_of(per_row),
        "--ticket-seats must be a multiple of {per_row}"
    );
    let section = setup::section("A", "R", PRICE, seats / per_row, per_row)?;
    let (performance, _) = setup::create_show(
        client,
        "loadtest bench tickets",
        "The Buyers",
        "Loopback Hall",
        vec![section],
    )
    .await?;
    let event = performance.to_string();
    client
        .configure_room(&event, &room(args.ticket_buyers + 10, 100_000.0))
        .await?;
    eprintln!(
        "bench: tickets, {}: signing in and admitting {buyers} buyers",
        mode.label()
    );
    let tag = match mode {
        Mode::Pick => "pick",
        Mode::BestAvailable => "best",
    };
    let fans = setup::enter_many(
        client,
        &run.issuer,
        &event,
        &format!("buyer-{tag}-{}", run.run_id),
        buyers,
        true,
    )
    .await?;
    setup::charge_all(client, fans.iter().map(|f| f.user.clone()), PRICE * 10).await?;

    let mut db = PgConnection::connect(&run.endpoints.database_url)
        .await
        .context("connecting to Postgres")?;
    settle(Some(&mut db)).await;
    let components = stack_components(run.config);
    let idle_before = stack_cpu(&components);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: Duration = sum_since(&idle_before, &stack_cpu(&components))
        .iter()
        .sum();

    eprintln!("bench: tickets, {}: selling {seats} seats", mode.label());
    let counters = Counters::default();
    let performance_id = PerformanceId::new(performance)?;
    let before = stack_cpu(&components);
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(&fans)
        .map(|fan| {
            let buyer = client.as_fan(&fan.identity);
            let counters = &counters;
            async move {
                buy(&buyer, &fan.token, performance_id, mode, counters)
                    .await
                    .with_context(|| format!("buyer {}", fan.user))
            }
        })
        .buffer_unordered(usize::try_from(args.ticket_concurrency)?)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    wait_for_outbox(&mut db, Duration::from_secs(30), Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seconds = started.elapsed().as_secs_f64();
    let used = sum_since(&before, &stack_cpu(&components));

    let sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats WHERE performance_id = $1 AND status = 'sold'",
    )
    .bind(performance)
    .fetch_one(&mut db)
    .await?;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let sale = Sale {
        mode,
        seats: u64::from(seats),
        buyers: args.ticket_buyers,
        concurrency: args.ticket_concurrency,
        sold: u64::try_from(sold)?,
        seat_maps: load(&counters.seat_maps),
        holds: load(&counters.holds),
        conflicts: load(&counters.conflicts),
        payments: load(&counters.payments),
        shed: load(&counters.shed),
        gave_up: load(&counters.gave_up),
        seconds,
        cpu: components.iter().map(|c| c.name).zip(used).collect(),
        idle_ms_per_second: idle.as_secs_f64() * 1e3 / 2.0,
    };
    ensure!(
        sale.sold == sale.payments && sale.payments == sale.holds,
        "{}: {} seats sold in Postgres, {} holds and {} payments succeeded",
        mode.label(),
        sale.sold,
        sale.holds,
        sale.payments
    );
    Ok(sale)
}

/// `after - before`, component by component.
fn sum_since(before: &[Duration], after: &[Duration]) -> Vec<Duration> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect()
}

/// One buyer: hold one seat (retrying after a 409 while seats remain),
/// then pay it.
async fn buy(
    fan: &Client,
    access: &str,
    performance: PerformanceId,
    mode: Mode,
    counters: &Counters,
) -> Result<()> {
    let mut attempts = 0;
    let reservation = loop {
        attempts += 1;
        if attempts > MAX_ATTEMPTS {
            counters.gave_up.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let hold = match mode {
            Mode::Pick => {
                let map = shed_retry(counters, || fan.seat_map(performance.get())).await?;
                counters.seat_maps.fetch_add(1, Ordering::Relaxed);
                let free: Vec<i64> = map
                    .seats
                    .iter()
                    .filter(|s| s.available)
                    .map(|s| s.id)
                    .collect();
                let Some(&seat) = free.choose(&mut rand::rng()) else {
                    return Ok(());
                };
                CreateReservation::seats(performance, vec![SeatId::new(seat)?])
            }
            Mode::BestAvailable => CreateReservation::best_available(performance, 1),
        };
        match shed_retry(counters, || fan.hold(access, &hold)).await {
            Ok(reservation) => {
                counters.holds.fetch_add(1, Ordering::Relaxed);
                break reservation;
            }
            Err(error) if error.status() == Some(StatusCode::CONFLICT) => {
                counters.conflicts.fetch_add(1, Ordering::Relaxed);
                let left = error
                    .problem()
                    .and_then(|p| p.extensions.get("seats_available")?.as_i64());
                if left == Some(0) {
                    return Ok(());
                }
                let pause = Duration::from_millis(rand::random_range(50..250));
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let key = uuid::Uuid::new_v4().to_string();
    let payment = CreatePayment {
        reservation_id: reservation.reservation_id,
        coupon_code: None,
    };
    shed_retry(counters, || fan.pay(access, &key, &payment)).await?;
    counters.payments.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Runs `call` again while the service sheds it (429, 503), after its
/// `Retry-After` or 50 ms, at most 100 times; each shed answer is counted.
async fn shed_retry<T, F, Fut>(counters: &Counters, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(error) if error.is_shed() && tries < 100 => {
                tries += 1;
                counters.shed.fetch_add(1, Ordering::Relaxed);
                let wait = error
                    .retry_after()
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_secs(1));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

/// The Markdown of the sales (a section of the generated block).
pub(super) fn render(sales: &[Sale], target_ms: f64) -> String {
    use std::fmt::Write as _;
    let Some(first) = sales.first() else {
        return String::new();
    };
    let mut out = format!(
        "\n### CPU per sold ticket\n\n{} seats, {} buyers, {} at once; each buyer a signed-in, admitted fan \
         holding one seat and paying it (Idempotency-Key), retrying after a 409. CPU: every server \
         process of the stack (both services, Postgres with its backends, six Redis nodes, the broker) \
         from the first request until the outbox is published plus 500 ms; the load generator \
         (Tokio, `onsale_client`) is not counted. Target: ≤ {target_ms} ms per ticket.\n\n\
         | buyers choose | sold | seconds | CPU ms/ticket | less idle | requests/ticket | seat maps | holds | 409s | payments | 429/503 | CPU by process (ms/ticket) | met? |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        first.seats, first.buyers, first.concurrency
    );
    for sale in sales {
        let per = |d: &Duration| d.as_secs_f64() * 1e3 / sale.sold.max(1) as f64;
        let by_process: Vec<String> = sale
            .cpu
            .iter()
            .map(|(name, d)| format!("{name} {:.2}", per(d)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | **{:.2}** | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            sale.mode.label(),
            sale.sold,
            sale.seconds,
            sale.cpu_ms_per_ticket(),
            sale.net_cpu_ms_per_ticket(),
            sale.requests() as f64 / sale.sold.max(1) as f64,
            sale.seat_maps,
            sale.holds,
            sale.conflicts,
            sale.payments,
            sale.shed,
            by_process.join(", "),
            if sale.cpu_ms_per_ticket() <= target_ms {
                "yes"
            } else {
                "**no**"
            },
        );
        if sale.gave_up > 0 {
            let _ = writeln!(
                out,
                "\n{} buyers gave up after {MAX_ATTEMPTS} holds.",
                sale.gave_up
            );
        }
    }
    let _ = writeln!(
        out,
        "\n\"less idle\" subtracts what the stack used while idle ({}), measured over 2 s right before each sale.",
        sales
            .iter()
            .map(|s| format!("{:.1} ms/s", s.idle_ms_per_second))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}
