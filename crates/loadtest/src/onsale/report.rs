//! The simulation's figures and checks: counted by the fans, read back from
//! Postgres (seats sold, double sales, events) and from queue-service (room
//! stats, releases by event, and once the line has settled the counts of
//! the circulation); printed and written as JSON.

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Duration};

use anyhow::{Context, Result};
use devstack::Endpoints;
use onsale_client::{Client, Error, queue_api::RoomStats};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::{
    ACCESS_TTL_SECONDS,
    checks::{self, Check, SeatStepReport},
    circulation::{self, CirculationReport, DropOffReport},
    coupons::{self, CouponReport},
    cpu::{self, CpuReport, Sample},
    eta::{self, EtaReport},
    fairness::{self, FairnessReport},
    journey::Sim,
    ranking::{self, RankingReport},
    tally::Step,
};
use crate::stats::nearest_rank;

/// Percentiles of one step.
#[derive(Debug, Serialize)]
pub(super) struct Percentiles {
    pub(super) count: usize,
    pub(super) p50_ms: f64,
    pub(super) p95_ms: f64,
    pub(super) p99_ms: f64,
}

/// Nearest-rank percentiles of `samples` (sorted here), in ms to 0.01.
fn percentiles(samples: &mut [f64]) -> Percentiles {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| (nearest_rank(samples, q) * 100.0).round() / 100.0;
    Percentiles {
        count: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    }
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    seats: u64,
    fans: u32,
    /// Seconds signing every fan in with the issuer, before the first
    /// arrival; no step's latency includes it.
    sign_in_seconds: f64,
    entered: u64,
    abandoned: u64,
    admitted: u64,
    holds: u64,
    conflicts_409: u64,
    holds_left_to_expire: u64,
    payments: u64,
    seats_sold: i64,
    seats_sold_equals_supply: bool,
    demand_exceeded_supply: bool,
    double_sold_seats: i64,
    responses_5xx: u64,
    /// Journeys ended by an error without an answer (named so for
    /// continuity: undecodable bodies count too, see `errors`).
    transport_errors: u64,
    /// Those by call and kind.
    errors: BTreeMap<String, u64>,
    fans_who_found_no_seat: u64,
    /// Fans the waiting room told `sold_out`, at entry or while waiting,
    /// and how long those waiting had waited.
    fans_told_sold_out: u64,
    sold_out_wait: Percentiles,
    /// Fans admitted after every seat was sold (each a wasted admission).
    admitted_after_sold_out: u64,
    unfinished_fans: u64,
    status_counts: BTreeMap<u16, u64>,
    latency: BTreeMap<Step, Percentiles>,
    /// From sending the entry to the first `active` answer (for pre-queued
    /// fans, time in the pre-queue included).
    activation_wait: Percentiles,
    /// The same, counted from the opening for pre-queued fans.
    activation_wait_from_opening: Percentiles,
    /// When the room opened (`--opens-in` after the first arrival); `null`
    /// when it opened at once.
    opens_at: Option<chrono::DateTime<chrono::Utc>>,
    /// FIFO after the opening, the pre-queue's shuffle (see `fairness`).
    fairness: FairnessReport,
    /// The ETAs the admitted fans were given against their real waits.
    eta_accuracy: EtaReport,
    /// How long the fans who stopped polling had waited.
    drop_off: DropOffReport,
    /// Exits per entry in the room's stats once the line had settled.
    circulation: CirculationReport,
    /// queue-service's room stats at the end; `null` when it refused them.
    waiting_room: Option<RoomStats>,
    /// Admissions reclaimed because their fan had stopped polling and never
    /// claimed them (`waiting_room.exited.no_show`).
    no_shows: Option<u64>,
    /// Slot-seconds absent fans held before their slots were reclaimed: each
    /// no-show held its slot for `claim_within` seconds (and up to one
    /// admission tick more).
    slot_seconds_lost_to_no_shows: Option<u64>,
    mean_entry_rate_per_second: f64,
    mean_exit_rate_per_second: f64,
    events_published: i64,
    events_pending: i64,
    /// Slots freed by the `payment.completed` consumer: only those
    /// core-service's release right after the payment did not free first.
    slots_released_by_event: Option<f64>,
    /// The coupon campaign, as the fans saw it and Postgres records it;
    /// `null` with `--coupons 0`. Its checks count towards `ok`.
    coupons: Option<CouponReport>,
    /// The simulation's concert in the 1-hour ranking after the sale
    /// (reported, not a check).
    ranking: RankingReport,
    /// The concert the ranking was searched for.
    concert_id: i64,
    /// The seat step: best-available and picking fans, 409s, the fans who
    /// booked.
    seat_step: SeatStepReport,
    /// CPU of the machine, the generator and the stack from the first
    /// arrival until the last fan was done.
    cpu: CpuReport,
    /// Every pass/fail check; `ok` is whether all passed.
    checks: Vec<Check>,
    /// Stricter targets on this box, reported and never failing.
    targets_on_this_box: Vec<Check>,
    /// The ETA accuracy targets, reported and never failing.
    reported_targets: Vec<Check>,
    elapsed_seconds: f64,
    /// Every check passed.
    pub(super) ok: bool,
}

/// Builds the report of `sim`, `elapsed` after the start of the run, with
/// the CPU between the samples `cpu` (first arrival, last fan done).
///
/// # Errors
/// Postgres or queue-service unreachable.
pub(super) async fn report(
    sim: &Sim,
    endpoints: &Endpoints,
    elapsed: Duration,
    cpu: (&Sample, &Sample),
) -> Result<Report> {
    let mut db = PgConnection::connect(&endpoints.database_url)
        .await
        .context("connecting to the core database")?;
    let performance = sim.performance.get();
    let seats_sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats WHERE performance_id = $1 AND status = 'sold'",
    )
    .bind(performance)
    .fetch_one(&mut db)
    .await?;
    let double_sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT rs.seat_id FROM reservation_seats rs
             JOIN reservations r ON r.id = rs.reservation_id
            WHERE r.performance_id = $1 AND r.status = 'confirmed'
            GROUP BY rs.seat_id HAVING count(*) > 1) twice",
    )
    .bind(performance)
    .fetch_one(&mut db)
    .await?;
    let (published, pending): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE published_at IS NOT NULL), count(*) FILTER (WHERE published_at IS NULL)
           FROM outbox WHERE created_at >= $1",
    )
    .bind(sim.started_at)
    .fetch_one(&mut db)
    .await?;
    let room = match sim.client.room_stats(performance).await {
        Ok(stats) => Some(stats),
        Err(Error::Status { .. } | Error::Decode { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    let released_by_event =
        metric_sum(&sim.client, "queue_event_releases_total{released=\"true\"}").await;
    let (settled, settled_after) = circulation::settle(
        &sim.client,
        performance,
        Duration::from_secs(sim.args.abandon_after),
    )
    .await;
    let coupons = coupons::report(sim, &mut db).await?;
    let ranking = ranking::read(
        &sim.client,
        sim.concert,
        u64::try_from(seats_sold).unwrap_or(0),
    )
    .await;

    let t = &sim.tally;
    let mut latency = BTreeMap::new();
    if let Ok(mut map) = t.latencies_ms.lock() {
        for (step, samples) in map.iter_mut() {
            latency.insert(*step, percentiles(samples));
        }
    }
    let activation_wait = percentiles(
        &mut t
            .activation_wait_ms
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default(),
    );
    let activation_wait_from_opening = percentiles(
        &mut t
            .activation_wait_from_opening_ms
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default(),
    );
    let passages = t.passages.lock().map(|p| p.clone()).unwrap_or_default();
    let fairness = FairnessReport::of(&passages, t.pre_queued.load(Ordering::Relaxed));
    let eta_accuracy = EtaReport::of(&passages, (ACCESS_TTL_SECONDS * 1_000) as i64);
    let drop_off = DropOffReport::of(
        &t.abandon_wait_ms
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default(),
        t.sold_out_wait_ms.lock().map(|w| w.len()).unwrap_or(0),
        settled.as_ref(),
    );
    let circulation = CirculationReport::of(
        settled.as_ref(),
        settled_after,
        (activation_wait_from_opening.count > 0).then_some(activation_wait_from_opening.p95_ms),
    );
    let admitted = t.admitted.load(Ordering::Relaxed);
    // Fans told `sold_out` were turned away because demand exceeded supply.
    let demand_exceeded = t.told_sold_out.load(Ordering::Relaxed) > 0
        || (t.holds.load(Ordering::Relaxed) + t.gave_up.load(Ordering::Relaxed) > 0
            && (admitted as f64) * 2.5 > sim.seat_total as f64);
    let responses_5xx = t.count_5xx();
    let seats_sold_equals_supply = seats_sold as u64 == sim.seat_total;
    let finished = t.finished.load(Ordering::Relaxed);
    let exits = room.as_ref().map_or(0, |r| {
        r.exited.left + r.exited.expired + r.exited.completed + r.exited.revoked + r.exited.no_show
    });
    let no_shows = room.as_ref().map(|r| r.exited.no_show);
    let seat_step = SeatStepReport::of(&t.seat_step);
    let correct = |name: &str, target: String, measured: i64, ok: bool| Check {
        name: name.to_owned(),
        target,
        measured: Some(measured as f64),
        unit: "count",
        ok,
        source: "correctness",
    };
    let mut all_checks = vec![
        correct(
            "seats sold",
            if demand_exceeded {
                format!("= {} (supply)", sim.seat_total)
            } else {
                "demand below supply".to_owned()
            },
            seats_sold,
            !demand_exceeded || seats_sold_equals_supply,
        ),
        correct(
            "seats sold twice",
            "= 0".to_owned(),
            double_sold,
            double_sold == 0,
        ),
        correct(
            "responses 5xx",
            "= 0".to_owned(),
            i64::try_from(responses_5xx).unwrap_or(i64::MAX),
            responses_5xx == 0,
        ),
    ];
    if let Some(c) = &coupons {
        all_checks.push(Check {
            name: "coupon checks".to_owned(),
            target: "all pass".to_owned(),
            measured: None,
            unit: "",
            ok: c.ok(),
            source: "correctness",
        });
    }
    all_checks.extend(checks::latency(&latency));
    all_checks.extend(seat_step.checks());
    all_checks.extend(fairness.checks());
    all_checks.extend(circulation.checks());
    let targets_on_this_box = checks::box_targets(&latency);
    let reported_targets = eta_accuracy.targets().into();
    let cpu = cpu::report(cpu.0, cpu.1, u64::try_from(seats_sold).unwrap_or(0));
    Ok(Report {
        seats: sim.seat_total,
        fans: sim.args.fans,
        sign_in_seconds: round1(sim.sign_in.as_secs_f64()),
        entered: t.entered.load(Ordering::Relaxed),
        abandoned: t.abandoned.load(Ordering::Relaxed),
        admitted,
        holds: t.holds.load(Ordering::Relaxed),
        conflicts_409: t.conflicts.load(Ordering::Relaxed),
        holds_left_to_expire: t.let_expire.load(Ordering::Relaxed),
        payments: t.payments.load(Ordering::Relaxed),
        seats_sold,
        seats_sold_equals_supply,
        demand_exceeded_supply: demand_exceeded,
        double_sold_seats: double_sold,
        responses_5xx,
        transport_errors: t.transport_errors.load(Ordering::Relaxed),
        errors: t.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        fans_who_found_no_seat: t.gave_up.load(Ordering::Relaxed),
        fans_told_sold_out: t.told_sold_out.load(Ordering::Relaxed),
        sold_out_wait: percentiles(
            &mut t
                .sold_out_wait_ms
                .lock()
                .map(|w| w.clone())
                .unwrap_or_default(),
        ),
        admitted_after_sold_out: t.admitted_after_sold_out.load(Ordering::Relaxed),
        unfinished_fans: u64::from(sim.args.fans).saturating_sub(finished),
        status_counts: t
            .status_counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default(),
        latency,
        activation_wait,
        activation_wait_from_opening,
        opens_at: sim.opens_at,
        fairness,
        eta_accuracy,
        drop_off,
        circulation,
        mean_entry_rate_per_second: {
            let window = t.last_entry_ms.load(Ordering::Relaxed) as f64 / 1_000.0;
            round1(if window > 0.0 {
                t.entered.load(Ordering::Relaxed) as f64 / window
            } else {
                0.0
            })
        },
        mean_exit_rate_per_second: round1(
            exits as f64 / sim.simulation_started.elapsed().as_secs_f64(),
        ),
        waiting_room: room,
        no_shows,
        slot_seconds_lost_to_no_shows: no_shows.map(|n| n * sim.args.claim_within),
        events_published: published,
        events_pending: pending,
        slots_released_by_event: released_by_event,
        ok: all_checks.iter().all(|c| c.ok),
        checks: all_checks,
        targets_on_this_box,
        reported_targets,
        seat_step,
        cpu,
        coupons,
        ranking,
        concert_id: sim.concert,
        elapsed_seconds: round1(elapsed.as_secs_f64()),
    })
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Sums every sample of `name` on queue-service's Prometheus endpoint.
async fn metric_sum(client: &Client, name: &str) -> Option<f64> {
    let text = client.queue_metrics().await.ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Prints `r` for a terminal.
pub(super) fn print_report(r: &Report) {
    let check = |ok: bool| if ok { "ok" } else { "FAILED" };
    println!("\n== onsale simulation ==");
    println!(
        "fans {} (signed in before arriving, {:.1} s)  entered {}  abandoned {}  admitted {}  no seat left {}",
        r.fans, r.sign_in_seconds, r.entered, r.abandoned, r.admitted, r.fans_who_found_no_seat
    );
    println!(
        "holds {}  409s {}  left to expire {}  payments {}",
        r.holds, r.conflicts_409, r.holds_left_to_expire, r.payments
    );
    println!(
        "told sold out {} (waiting ones after p50 {:.0} ms, p95 {:.0} ms)  admitted after the last seat sold {}",
        r.fans_told_sold_out,
        r.sold_out_wait.p50_ms,
        r.sold_out_wait.p95_ms,
        r.admitted_after_sold_out
    );
    if let (Some(no_shows), Some(lost)) = (r.no_shows, r.slot_seconds_lost_to_no_shows) {
        println!("no-shows {no_shows} (admitted, never claimed; {lost} slot-seconds lost)");
    }
    println!(
        "seats sold {}/{} [{}]   double-sold seats {} [{}]   5xx {} [{}]",
        r.seats_sold,
        r.seats,
        if r.demand_exceeded_supply {
            check(r.seats_sold_equals_supply)
        } else {
            "demand below supply"
        },
        r.double_sold_seats,
        check(r.double_sold_seats == 0),
        r.responses_5xx,
        check(r.responses_5xx == 0)
    );
    println!(
        "{:<8} {:>8} {:>9} {:>9} {:>9}",
        "step", "count", "p50 ms", "p95 ms", "p99 ms"
    );
    for (step, p) in &r.latency {
        println!(
            "{:<8} {:>8} {:>9.2} {:>9.2} {:>9.2}",
            format!("{step:?}").to_lowercase(),
            p.count,
            p.p50_ms,
            p.p95_ms,
            p.p99_ms
        );
    }
    checks::print_seat_step(&r.seat_step);
    checks::print(&r.checks, &r.targets_on_this_box);
    checks::print_reported(&r.reported_targets);
    cpu::print(&r.cpu);
    println!(
        "activation wait: p50 {:.0} ms, p95 {:.0} ms ({} fans); from the opening for pre-queued fans p50 {:.0} ms, p95 {:.0} ms; room {}",
        r.activation_wait.p50_ms,
        r.activation_wait.p95_ms,
        r.activation_wait.count,
        r.activation_wait_from_opening.p50_ms,
        r.activation_wait_from_opening.p95_ms,
        r.opens_at.map_or_else(
            || "opened at once".to_owned(),
            |at| format!("opened at {at}")
        )
    );
    fairness::print(&r.fairness);
    eta::print(&r.eta_accuracy);
    circulation::print(&r.drop_off, &r.circulation);
    println!(
        "entry rate {:.1} /s (mean over arrivals), exit rate {:.1} /s (mean over the run: leave, expiry, purchase)",
        r.mean_entry_rate_per_second, r.mean_exit_rate_per_second
    );
    println!(
        "events published {} (pending {}), slots released after payment {} (of which by payment.completed {})",
        r.events_published,
        r.events_pending,
        r.waiting_room
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |w| w.exited.completed.to_string()),
        r.slots_released_by_event
            .map_or_else(|| "n/a".to_owned(), |v| v.to_string())
    );
    coupons::print(r.coupons.as_ref());
    ranking::print(
        &r.ranking,
        r.concert_id,
        u64::try_from(r.seats_sold).unwrap_or(0),
    );
    let errors: Vec<String> = r.errors.iter().map(|(e, n)| format!("{e} {n}")).collect();
    println!(
        "elapsed {:.1} s  transport errors {} [{}]  unfinished fans {}",
        r.elapsed_seconds,
        r.transport_errors,
        errors.join(", "),
        r.unfinished_fans
    );
    println!("result: {}", if r.ok { "PASS" } else { "FAIL" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut samples);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms), (50.0, 95.0, 99.0));
    }
}
