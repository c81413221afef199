//! `loadtest bench`: the service load and its raw baselines in one run,
//! written into `docs/benchmarks.md`.
//!
//! Each service operation is measured next to the raw work it stands on,
//! on the same machine, the service phase right after its baseline (the
//! booking core's phases each start after a `CHECKPOINT`; see
//! `cpu::settle`):
//!
//! | operation | service load | raw baseline |
//! |---|---|---|
//! | entry | `wrk`, `POST /v1/events/{id}/queue`, distinct signed-in fans | `redis-benchmark` running `enter.lua` (`EVALSHA`) |
//! | status poll | `wrk`, `GET …/queue/status` with fans' identity and queue tokens | `redis-benchmark` running `status.lua` for fans in line |
//! | hold | `wrk`, `POST /v1/reservations`, one seat, identity verified, access token verified over gRPC | `pgbench` running the hold's SQL |
//! | payment | `wrk`, `POST /v1/payments` with an `Idempotency-Key` | `pgbench` running the payment's SQL |
//! | coupon claim, issued | `wrk`, `POST /v1/coupon-campaigns/{id}/claims`, distinct signed-in fans, quantity enough for all | `redis-benchmark` running `claim.lua` (`EVALSHA`), distinct fan ids; and `pgbench` running `coupon_issue.sql` |
//! | coupon claim, sold out | the same, against a campaign already sold out (409 from Redis) | `redis-benchmark` running `claim.lua` against a full counter |
//! | seat map of 50,000 seats | `wrk`, `GET /v1/performances/{id}/seats` with `Accept-Encoding: br` (and with `If-None-Match`: 304), anonymous | nginx serving the very bytes core-service sent, as a static file |
//!
//! Two more parts measure something other than a ratio: `seatmap` also
//! gives the bytes of the map, layout, availability and its deltas
//! (`seatmap`), and `tickets` the CPU of the whole stack per sold ticket
//! in a sale of 1,000 seats to 1,200 buyers (`tickets`).
//!
//! Every service request carries a fan's own identity token
//! (`Authorization: Bearer …`), signed in with the stack's issuer over HTTP
//! before the phase, so signing in is never measured; the waiting room's
//! tokens travel in `Onsale-Queue-Token` and `Onsale-Access-Token`.
//!
//! The baselines run the very text the services run: the Lua scripts come
//! from `queue_service::layout` (prelude + script, as the service
//! concatenates them), the keys from its key layout, the coupon claim
//! script from `core_service::coupons::gate::CLAIM_SCRIPT`, and the SQL from
//! `core_service::store::sql`, with `$n` parameters turned into pgbench
//! variables. The load generators are C programs (wrk, redis-benchmark,
//! pgbench), so the generator's own cost is alike on both sides.
//!
//! CPU per request: busy CPU time of the whole machine (`/proc/stat`) during
//! the phase, minus the CPU of the load generator (the children's rusage),
//! divided by the requests served: what the system under test spent per
//! request. For the service phases the service process's own share is given
//! too. Linux reports `/proc` times in USER_HZ, which is 100 on every
//! architecture Linux supports for user space.
//!
//! # Layout
//! - [`BenchArgs`], [`run`], [`Phase`]: options, orchestration, one measured
//!   phase.
//! - `queue_phases`: entry and status, redis-benchmark then wrk.
//! - `core_phases`: holds and payments, pgbench then wrk.
//! - `coupon_phase`: coupon claims (issued, sold out), redis-benchmark and
//!   pgbench then wrk.
//! - `seatmap`, `nginx`: the seat map's sizes and its rate next to nginx.
//! - `tickets`: CPU per sold ticket, buyers picking seats and best
//!   available.
//! - `wrk`, `pgbench`, `redis`: running the generators and reading their
//!   output (`redis`: the master owning a hash tag, scripts loaded there).
//! - `cpu`: the `/proc` and rusage accounting, and settling between phases.
//! - `report`: the Markdown section and its place in `docs/benchmarks.md`.

mod core_phases;
mod coupon_phase;
mod cpu;
mod nginx;
mod pgbench;
mod queue_phases;
mod redis;
mod report;
mod seatmap;
mod tickets;
mod wrk;

use std::{collections::HashMap, path::PathBuf, time::Duration};

use anyhow::{Result, ensure};
use clap::Args;
use devstack::{Endpoints, StackConfig, install, services};
use onsale_client::{Client, Issuer, queue_api::RoomRequest};
use serde::Serialize;

use crate::setup;

/// Options of `loadtest bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds of each wrk phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub seconds: u64,
    /// Concurrent connections of the waiting-room phases.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub queue_connections: u32,
    /// Concurrent connections (pgbench clients) of the hold and payment
    /// phases; the same for service and baseline.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub core_connections: u32,
    /// Requests of each redis-benchmark phase.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1_000..=10_000_000))]
    pub redis_requests: u64,
    /// Seats per benchmark performance (one hold each). The service phase
    /// needs at least holds/s × seconds; pgbench's clients split them.
    #[arg(long, default_value_t = 40_000, value_parser = clap::value_parser!(u32).range(1_000..=200_000))]
    pub seats: u32,
    /// An upper bound of the HTTP entry rate, per second. Each entry is a
    /// new fan with an identity token of their own, signed in before the
    /// phase, so `--seconds` × this many fans are prepared; a phase that
    /// runs out fails and says so.
    #[arg(long, default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    pub entry_rate_bound: u64,
    /// The hold phases run as this many rounds, each a pgbench round right
    /// before a wrk round of `--seconds` / rounds (at least 3 s), so that
    /// drift of the shared machine hits both sides alike. The report gives
    /// the totals and each round's ratio.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub rounds: u64,
    /// Concurrent connections of the issuing coupon-claim pair (wrk,
    /// redis-benchmark and pgbench alike). Every issued claim updates the
    /// campaign's one row, so claims queue for its lock: 4 connections
    /// saturate it, and more only add waiting (8 gave the same claims/s at
    /// three times the p99; see `coupon_phase`). The sold-out pair uses
    /// `--queue-connections`.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub claim_connections: u32,
    /// An upper bound of the HTTP claim rate, per second: `--seconds` ×
    /// this many fans are signed in for the claim phases, and the issuing
    /// campaign's quantity is that many, so every claim issues a coupon; a
    /// phase that runs out fails and says so.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=100_000))]
    pub claim_rate_bound: u64,
    /// Seats of the seat-map performance (sections of 20 rows of 50).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1_000..=100_000))]
    pub seatmap_seats: u32,
    /// Concurrent connections of the seat-map phases (wrk, both sides).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub seatmap_connections: u32,
    /// Seats on sale in each ticket sale (rows of 50).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(50..=100_000))]
    pub ticket_seats: u32,
    /// Buyers in each ticket sale, one seat each.
    #[arg(long, default_value_t = 1_200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ticket_buyers: u64,
    /// Buyers buying at once in each ticket sale.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub ticket_concurrency: u64,
    /// Run only one part: the waiting room, the booking core, the coupon
    /// claims, the seat map or the ticket sales.
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Markdown file whose generated section is replaced.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Print the report only; leave the file alone.
    #[arg(long)]
    pub no_write: bool,
}

impl BenchArgs {
    /// Seconds of each wrk hold round: `--seconds` split over `--rounds`,
    /// at least 3.
    pub(crate) fn hold_round_seconds(&self) -> u64 {
        self.seconds.div_ceil(self.rounds).max(3)
    }

    /// Fans signed in for the HTTP entry phase: `--seconds` ×
    /// `--entry-rate-bound`.
    pub(crate) fn entry_fans(&self) -> u64 {
        self.seconds * self.entry_rate_bound
    }

    /// Fans signed in for the coupon claims (and the issuing campaign's
    /// quantity): `--seconds` × `--claim-rate-bound`.
    pub(crate) fn claim_fans(&self) -> u64 {
        self.seconds * self.claim_rate_bound
    }

    /// Whether `part` runs (every part without `--only`).
    fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|only| only == part)
    }
}

/// A half of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Entry and status against redis-benchmark.
    Queue,
    /// Holds and payments against pgbench.
    Core,
    /// Coupon claims (issued, sold out) against redis-benchmark on the
    /// claim script (and pgbench on the issue statement).
    Coupons,
    /// The seat map of a large performance: bytes, and its rate against
    /// nginx serving the same bytes.
    Seatmap,
    /// CPU of the whole stack per sold ticket (buyers picking seats, and
    /// best available).
    Tickets,
}

/// What a run found besides its phases.
#[derive(Debug, Default)]
struct Findings {
    /// The seat map's sizes (`seatmap`).
    seatmap: Option<seatmap::Sizes>,
    /// The ticket sales (`tickets`).
    sales: Vec<tickets::Sale>,
}

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// What ran, e.g. `entry (HTTP)`.
    pub name: String,
    /// Requests or transactions completed.
    pub requests: u64,
    /// Per second, over the phase.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Non-2xx replies, socket errors or failed transactions.
    pub errors: u64,
    /// Machine CPU minus the load generator's, per request, µs.
    pub cpu_us_per_request: f64,
    /// The service process's own CPU per request, µs (service phases).
    pub service_cpu_us_per_request: Option<f64>,
    /// Rate of each round, per second, when the phase ran in rounds.
    pub round_rates: Vec<f64>,
}

impl Phase {
    /// One phase from its rounds (in order): totals, the overall rate
    /// (requests over the rounds' summed durations), the median round's
    /// p50, the worst round's p99 (wrk reports percentiles, not samples),
    /// and CPU per request weighted by requests.
    fn from_rounds(rounds: &[Phase]) -> Option<Phase> {
        let first = rounds.first()?;
        let requests: u64 = rounds.iter().map(|r| r.requests).sum();
        let seconds: f64 = rounds
            .iter()
            .map(|r| r.requests as f64 / r.rate.max(f64::MIN_POSITIVE))
            .sum();
        let weighted = |value: &dyn Fn(&Phase) -> f64| {
            rounds
                .iter()
                .map(|r| value(r) * r.requests as f64)
                .sum::<f64>()
                / requests.max(1) as f64
        };
        let mut p50s: Vec<f64> = rounds.iter().map(|r| r.p50_ms).collect();
        p50s.sort_by(f64::total_cmp);
        Some(Phase {
            name: first.name.clone(),
            requests,
            rate: requests as f64 / seconds.max(f64::MIN_POSITIVE),
            p50_ms: p50s[p50s.len() / 2],
            p99_ms: rounds.iter().map(|r| r.p99_ms).fold(0.0, f64::max),
            errors: rounds.iter().map(|r| r.errors).sum(),
            cpu_us_per_request: weighted(&|r| r.cpu_us_per_request),
            service_cpu_us_per_request: first
                .service_cpu_us_per_request
                .map(|_| weighted(&|r| r.service_cpu_us_per_request.unwrap_or(0.0))),
            round_rates: rounds.iter().map(|r| r.rate).collect(),
        })
    }
}

/// Runs every phase against the local stack (already up) and writes the
/// report. Restarts both services with the benchmark's settings.
///
/// # Errors
/// A missing tool that cannot be installed, a service that does not start,
/// a setup request that fails, or a phase with errors.
pub async fn run(config: &StackConfig, endpoints: &Endpoints, args: BenchArgs) -> Result<()> {
    ensure!(
        args.only.is_none() || args.no_write,
        "--only runs part of the report: add --no-write"
    );
    install::ensure_apt(&["wrk"], &["wrk"])?;
    install::ensure_redis()?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    setup::start_services(
        config,
        endpoints,
        "bench",
        &[
            // The limits key on each signed-in fan, but the status phase
            // polls each of its fans far faster than a fan would: lift them.
            ("ONSALE__QUEUE__RATE_LIMIT__PER_SECOND", "1000000"),
            ("ONSALE__QUEUE__RATE_LIMIT__BURST", "1000000"),
            ("ONSALE__CORE__RATE_LIMIT__PER_SECOND", "1000000"),
            ("ONSALE__CORE__RATE_LIMIT__BURST", "1000000"),
            // Holds must outlive the payment phase.
            ("ONSALE__CORE__HOLD_TTL_SECONDS", "3600"),
        ],
        false,
    )
    .await?;
    let pids = services::pids(config);

    let work = config.dir.join("bench");
    std::fs::create_dir_all(&work)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()?;
    let issuer = setup::issuer(http.clone(), endpoints);
    let client = setup::client(http).build();
    let run_id = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let mut phases = Vec::new();
    let mut record = |phase: Phase| {
        eprintln!(
            "bench: {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, {:.0} µs CPU/request",
            phase.name,
            phase.rate,
            phase.p50_ms,
            phase.p99_ms,
            phase.errors,
            phase.cpu_us_per_request
        );
        phases.push(phase);
    };

    let run = Run {
        config,
        client,
        issuer,
        endpoints,
        args: &args,
        run_id,
        work,
        pids,
    };
    if args.runs(Part::Queue) {
        queue_phases::run(&run, &mut record).await?;
    }
    if args.runs(Part::Core) {
        core_phases::run(&run, &mut record).await?;
    }
    if args.runs(Part::Coupons) {
        coupon_phase::run(&run, &mut record).await?;
    }
    let mut findings = Findings::default();
    if args.runs(Part::Seatmap) {
        seatmap::run(&run, &mut record, &mut findings.seatmap).await?;
    }
    if args.runs(Part::Tickets) {
        tickets::run(&run, &mut findings.sales).await?;
    }
    let report = report::render(&phases, &findings, &args, &load_before);
    println!("{report}");
    if !args.no_write {
        let path = devstack::workspace_root().join(&args.out);
        report::write_section(&path, &report)?;
        eprintln!("bench: wrote {}", path.display());
    }
    let failed: Vec<&str> = phases
        .iter()
        .filter(|p| p.errors > 0)
        .map(|p| p.name.as_str())
        .collect();
    ensure!(
        failed.is_empty(),
        "phases with errors: {}",
        failed.join(", ")
    );
    Ok(())
}

/// What the waiting-room and booking-core halves of a run share.
struct Run<'a> {
    /// The stack's settings (its processes, for CPU accounting).
    config: &'a StackConfig,
    client: Client,
    /// Signs fans in (the stack's issuer).
    issuer: Issuer,
    endpoints: &'a Endpoints,
    args: &'a BenchArgs,
    /// Makes this run's events, users and ids unique.
    run_id: String,
    /// Scratch directory for scripts, row files and pgbench logs.
    work: PathBuf,
    /// Service name → PID, for per-process CPU.
    pids: HashMap<&'static str, i32>,
}

/// A room that outlasts any run (tokens and presence for an hour), of
/// `capacity` admitting `rate` fans per second.
fn room(capacity: u64, rate: f64) -> RoomRequest {
    setup::open_room(capacity, rate, 3600, 3600)
}
