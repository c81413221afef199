//! The on-sale simulation: many fans, few seats, through the real waiting
//! room, the real booking core and the real event flow.
//!
//! 1. **Start**: the stack and both services (migrated), the services
//!    restarted with this run's hold TTL so lapsed holds return to sale
//!    within the run.
//! 2. **Seed**: one concert with one performance of `--seats` seats, a
//!    balance for each of `--fans` fans, an identity token for each (signed
//!    in through the stack issuer's `POST /token`, as a fan's app does, all
//!    before the first arrival so sign-in is never counted as entry
//!    latency), a first-come coupon campaign for the concert (`--coupons` ×
//!    the seats, opening before the sale; see `coupons`), and a waiting
//!    room that opens `--opens-in` seconds after the first arrival (3 s; 0
//!    opens it at once): fans who enter before then wait in its pre-queue,
//!    drawn into a random order at the opening, and later fans queue
//!    behind them.
//! 3. **Simulate**: fans arrive at `--arrival-rate` per second. Each, with
//!    `Authorization: Bearer <identity>` on every call, enters
//!    the queue (noting when it sent the entry and got the answer, and every
//!    ETA it is given while waiting), polls as `poll_after_ms` says (in the
//!    pre-queue too), and once active holds 1–4
//!    seats: most ask for the best available seats (the server picks an
//!    adjacent block), `--pick-own-seats` of them view the seat map and pick
//!    (again after a 409); then it pays with an Idempotency-Key and
//!    finishes. `--coupon-claimers` of them claim a
//!    coupon right after entering, while they wait, and pay with it if they
//!    got one. `--abandon` of them stop polling while waiting (right after
//!    entering, or within `--abandon-within` seconds);
//!    `--let-expire` of them let their hold lapse instead of paying.
//! 4. **Report**: counts, latency percentiles per step, activation wait,
//!    entry and exit rates, events, and the checks that matter: seats sold
//!    equal to supply when demand exceeds it, no seat sold twice (checked in
//!    Postgres), no 5xx, and of the coupons: issued ≤ quantity, issued =
//!    coupons in Postgres, none used twice, used = payments with a coupon,
//!    each discount the campaign's; and the service levels (`checks`): seat
//!    map p95 < 500 ms, hold p95 < 1 s, payment p95 < 2 s, over 80 % of the
//!    fans who reached the seat step while seats remained booked, under 5 %
//!    of the holds refused 409 while seats remained; fairness (`fairness`):
//!    no FIFO inversion after the opening, no pre-queued fan admitted
//!    behind a later one, the pre-queue's order independent of arrival
//!    (Kendall τ); circulation (`circulation`): exits ≥ 95 % of entries once
//!    the line has settled, activation wait p95 < 30 s. Reported beside
//!    them: ETA accuracy (`eta`, with its targets) and drop-off (how long
//!    the abandoners had waited, the room's abandoned count). Then the stricter
//!    targets on this box, the CPU of the generator, the machine and the
//!    stack per sold ticket (`cpu`), and the concert ranking (reported, not
//!    checks). Printed and written as JSON.
//! 5. **Audit**: 10 s after the last fan, [`crate::audit`] checks the
//!    stores against the promises (seats sold = paid seats, one payment,
//!    debit and event per sale, each applied once, overdue holds expired,
//!    the active set within its bounds); a violation fails the run.
//!
//! # Layout
//! - [`OnsaleArgs`], [`run`]: options, start, seed, arrivals, progress.
//! - `journey`: one fan, as a well-behaved client (429/503 retried after
//!   `Retry-After`), the queue token in `Onsale-Queue-Token`, the access
//!   token in `Onsale-Access-Token`, and an address of its own in
//!   `X-Forwarded-For` (the services' rate limits key on the verified fan,
//!   and on that address for the anonymous seat map).
//! - `seats`: the seat step (best available or picked), and what each fan
//!   met there for the booking success rate.
//! - `tally`: counters and per-step latencies, fed by the client's
//!   observer with every response, and each admitted fan's passage (entry
//!   times, admission, ETAs).
//! - `fairness`: FIFO inversions, pre-queued fans behind later ones, the
//!   pre-queue's Kendall τ (pure functions, O(n log n)); `kendall`: τ-b
//!   and its spread under a fair shuffle.
//! - `eta`: ETA errors at entry, in the last minute, and ranges.
//! - `circulation`: drop-off, and exits per entry from the settled room.
//! - `report`: figures and checks, printed and written as JSON.
//! - `checks`: the latency, booking-success and 409 checks, and the
//!   targets on this box.
//! - `cpu`: CPU of the generator, the machine and each stack process over
//!   the arrivals.
//! - `coupons`: the campaign (created, then checked against Postgres).
//! - `ranking`: the 1-hour concert ranking after the sale.

mod checks;
mod circulation;
mod coupons;
mod cpu;
mod eta;
mod fairness;
mod journey;
mod kendall;
mod ranking;
mod report;
mod seats;
mod tally;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use core_service::domain::PerformanceId;
use devstack::{Endpoints, StackConfig};

use crate::setup;
use journey::{Sim, fan_id};
use tally::Tally;

/// Lifetime of an admission in the simulation's room, seconds: longer than
/// any run, so admission time = `access_expires_at` − this.
const ACCESS_TTL_SECONDS: u64 = 600;

/// Options of `loadtest onsale`.
#[derive(Debug, Clone, Args)]
pub struct OnsaleArgs {
    /// Seats on sale (N).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seats: u32,
    /// Fans arriving (M).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub fans: u32,
    /// Arrivals per second (the ramp reaches it after `--ramp-seconds`).
    /// The default leaves the two cores of a dev machine some room: the
    /// generator, both services, six Redis nodes, Postgres and the broker
    /// share them.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub arrival_rate: u32,
    /// Seconds over which the arrival rate ramps up from zero.
    #[arg(long, default_value_t = 5)]
    pub ramp_seconds: u64,
    /// Share of fans who stop polling while waiting (0–1).
    #[arg(long, default_value_t = 0.05, value_parser = share)]
    pub abandon: f64,
    /// Those fans stop at a uniformly random moment within this many
    /// seconds of entering (0: right after entering); one admitted before
    /// then goes on like any fan.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub abandon_within: u64,
    /// Seconds after the first arrival when the waiting room opens; fans
    /// entering before wait in its pre-queue and are placed in a random
    /// order at the opening. 0 opens it at once (no pre-queue).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub opens_in: u64,
    /// Share of fans who hold seats but never pay (0–1).
    #[arg(long, default_value_t = 0.02, value_parser = share)]
    pub let_expire: f64,
    /// Active-set capacity of the waiting room.
    #[arg(long, default_value_t = 1_000)]
    pub capacity: u32,
    /// Admissions per second.
    #[arg(long, default_value_t = 500)]
    pub admit_per_second: u32,
    /// Hold TTL in seconds given to core-service for this run.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub hold_ttl: u64,
    /// Coupons of the first-come campaign, as a share of the seats (0
    /// turns the campaign off; at least one coupon otherwise).
    #[arg(long, default_value_t = 0.2, value_parser = share)]
    pub coupons: f64,
    /// Share of fans who pick their own seats from the seat map (0–1); the
    /// rest ask for the best available seats, and the server picks.
    #[arg(long, default_value_t = 0.1, value_parser = share)]
    pub pick_own_seats: f64,
    /// Share of fans who claim a coupon while they wait (0–1).
    #[arg(long, default_value_t = 0.3, value_parser = share)]
    pub coupon_claimers: f64,
    /// Abandonment window of the waiting room in seconds.
    #[arg(long, default_value_t = 20)]
    pub abandon_after: u64,
    /// Seconds an admitted fan has to claim the admission before the slot
    /// is reclaimed as a no-show (queue-service's default).
    #[arg(long, default_value_t = 30)]
    pub claim_within: u64,
    /// Stop the run after this many seconds, finished or not.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "onsale-report.json")]
    pub report: std::path::PathBuf,
    /// Use services already running (with their own settings) instead of
    /// restarting them.
    #[arg(long)]
    pub reuse_services: bool,
}

fn share(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} is not between 0 and 1"))
    }
}

/// Runs the whole simulation and returns whether every check passed.
///
/// # Errors
/// When a service cannot start, seeding fails, or a service is
/// unreachable.
pub async fn run(config: &StackConfig, endpoints: &Endpoints, args: OnsaleArgs) -> Result<bool> {
    let started = Instant::now();
    let hold_ttl = args.hold_ttl.to_string();
    setup::start_services(
        config,
        endpoints,
        "onsale",
        &[
            ("ONSALE__CORE__HOLD_TTL_SECONDS", &hold_ttl),
            // The rate limits key on the verified fan, but the seat map is
            // anonymous and every simulated fan connects from 127.0.0.1.
            // Like the load balancer in production, the simulation names
            // each fan's own address in X-Forwarded-For, and the services
            // trust that one hop.
            ("ONSALE__QUEUE__RATE_LIMIT__TRUSTED_PROXY_HOPS", "1"),
            ("ONSALE__CORE__RATE_LIMIT__TRUSTED_PROXY_HOPS", "1"),
        ],
        args.reuse_services,
    )
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(512)
        .build()
        .context("building the HTTP client")?;
    let tally = Arc::new(Tally::default());
    let observed = tally.clone();
    let issuer = setup::issuer(http.clone(), endpoints);
    let client = setup::client(http)
        .observe(move |response| observed.observe(response))
        .build();

    eprintln!(
        "onsale: seeding {} seats and {} fans (balances, identity tokens from {})",
        args.seats,
        args.fans,
        issuer.url()
    );
    let show = seed_show(&client, args.seats).await?;
    let campaign =
        coupons::create(&client, show.concert, show.seat_ids.len() as u64, &args).await?;
    if let Some(c) = &campaign {
        eprintln!(
            "onsale: coupon campaign {} of {} coupons for concert {}",
            c.id, c.quantity, show.concert
        );
    }
    let performance = show.performance;
    let fans: Vec<String> = (0..args.fans).map(fan_id).collect();
    let signing_in = async {
        let started = Instant::now();
        let identities = setup::sign_in_all(&issuer, &fans).await?;
        anyhow::Ok((identities, started.elapsed()))
    };
    let ((identities, sign_in), ()) = tokio::try_join!(
        signing_in,
        setup::charge_all(&client, fans.iter().cloned(), 1_000_000)
    )?;
    let mut room = setup::open_room(
        u64::from(args.capacity),
        f64::from(args.admit_per_second),
        ACCESS_TTL_SECONDS,
        args.abandon_after,
    );
    room.claim_within_seconds = Some(args.claim_within);
    // The opening counts from now, just before the first arrival.
    let opens_in = Duration::from_secs(args.opens_in);
    let (opens_at, opens) = if args.opens_in > 0 {
        (
            Some(chrono::Utc::now() + opens_in),
            Some(Instant::now() + opens_in),
        )
    } else {
        (None, None)
    };
    room.opens_at = opens_at;
    client.configure_room(performance, &room).await?;

    let sim = Arc::new(Sim {
        client,
        identities,
        sign_in,
        performance: PerformanceId::new(performance)?,
        concert: show.concert,
        campaign,
        seat_total: show.seat_ids.len() as u64,
        deadline: Instant::now() + Duration::from_secs(args.duration),
        args: args.clone(),
        tally,
        sold_out: AtomicBool::new(false),
        started_at: chrono::Utc::now(),
        simulation_started: Instant::now(),
        opens_at,
        opens,
    });
    let progress = indicatif::ProgressBar::new(u64::from(args.fans));
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} fans done · {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let sim = sim.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let t = &sim.tally;
                progress.set_position(t.finished.load(Ordering::Relaxed));
                progress.set_message(format!(
                    "entered {} (pre-queued {}) admitted {} sold {}/{} 409s {} 5xx {}",
                    t.entered.load(Ordering::Relaxed),
                    t.pre_queued.load(Ordering::Relaxed),
                    t.admitted.load(Ordering::Relaxed),
                    t.seats_paid.load(Ordering::Relaxed),
                    sim.seat_total,
                    t.conflicts.load(Ordering::Relaxed),
                    t.count_5xx()
                ));
            }
        })
    };

    let stack = cpu::Stack::find(config);
    let cpu_before = stack.sample();
    let simulation = Instant::now();
    let mut fans = tokio::task::JoinSet::new();
    for fan in 0..args.fans {
        let due = arrival_offset(fan, args.arrival_rate, args.ramp_seconds);
        let sim = sim.clone();
        fans.spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(simulation + due)).await;
            if Instant::now() < sim.deadline {
                sim.fan(fan).await;
            }
            sim.tally.finished.fetch_add(1, Ordering::Relaxed);
        });
    }
    let interrupted = tokio::select! {
        () = async { while fans.join_next().await.is_some() {} } => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let cpu_after = stack.sample();
    ticker.abort();
    progress.finish_and_clear();
    if interrupted {
        fans.abort_all();
        eprintln!(
            "onsale: interrupted; the stack is still up (`cargo run -p devstack -- down` stops it)"
        );
    }

    let report = report::report(
        &sim,
        endpoints,
        started.elapsed(),
        (&cpu_before, &cpu_after),
    )
    .await?;
    report::print_report(&report);
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    eprintln!("report written to {}", args.report.display());
    let audited = settle_and_audit(endpoints).await?;
    Ok(report.ok && audited && !interrupted)
}

/// Seconds the simulation's audit allows work that follows a commit (the
/// relay, the `payment.completed` consumers, the hold sweeper, the
/// admission tick): well above what each takes on a loaded dev box, and
/// short enough that the last fans' sales are judged too.
const AUDIT_GRACE_SECONDS: u64 = 10;

/// Audits the stores once the last fans' work is older than the grace
/// period, and again (up to three times, 5 s apart) while a check still
/// fails, since the relay and the consumers may still be catching up after
/// a burst; prints the last verdict and returns whether it passed.
async fn settle_and_audit(endpoints: &Endpoints) -> Result<bool> {
    let options = crate::audit::Options {
        grace_seconds: AUDIT_GRACE_SECONDS,
        retention_seconds: crate::audit::DEFAULT_RETENTION_SECONDS,
        key_prefix: String::new(),
    };
    eprintln!("onsale: auditing the stores in {AUDIT_GRACE_SECONDS} s (loadtest audit)");
    tokio::time::sleep(Duration::from_secs(AUDIT_GRACE_SECONDS)).await;
    let mut verdict =
        crate::audit::audit(&endpoints.database_url, &endpoints.redis_urls, &options).await?;
    for _ in 0..3 {
        if verdict.passed {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        verdict =
            crate::audit::audit(&endpoints.database_url, &endpoints.redis_urls, &options).await?;
    }
    crate::audit::print(&verdict);
    Ok(verdict.passed)
}

/// When fan `n` arrives: a linear ramp to `rate` over `ramp` seconds, then
/// constant.
fn arrival_offset(n: u32, rate: u32, ramp: u64) -> Duration {
    let n = f64::from(n);
    let rate = f64::from(rate);
    let ramp = ramp as f64;
    // Arrivals during the ramp: rate * t^2 / (2 * ramp).
    let during_ramp = rate * ramp / 2.0;
    let seconds = if ramp > 0.0 && n < during_ramp {
        (2.0 * n * ramp / rate).sqrt()
    } else {
        ramp + (n - during_ramp) / rate
    };
    Duration::from_secs_f64(seconds.max(0.0))
}

/// One concert with one performance of `seats` seats: rows of 50 in
/// section A, the rest in one row of section B.
async fn seed_show(client: &onsale_client::Client, seats: u32) -> Result<setup::Show> {
    let per_row = setup::SEATS_PER_ROW;
    let mut sections = Vec::new();
    if seats >= per_row {
        sections.push(setup::section("A", "R", 110_000, seats / per_row, per_row)?);
    }
    if !seats.is_multiple_of(per_row) {
        sections.push(setup::section("B", "S", 88_000, 1, seats % per_row)?);
    }
    setup::create_concert_show(
        client,
        "onsale simulation",
        "The Load Generators",
        "Loopback Arena",
        sections,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrival_ramp_is_monotonic_and_reaches_the_full_rate() {
        let mut last = Duration::ZERO;
        for n in 0..20_000 {
            let at = arrival_offset(n, 2_000, 5);
            assert!(at >= last);
            last = at;
        }
        // 5,000 fans arrive during a 5 s ramp to 2,000/s; the rest at 2,000/s.
        assert!((arrival_offset(5_000, 2_000, 5).as_secs_f64() - 5.0).abs() < 1e-9);
        assert!((arrival_offset(7_000, 2_000, 5).as_secs_f64() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        assert!(share("0.3").is_ok());
        assert!(share("1.5").is_err());
        assert!(share("x").is_err());
    }
}
