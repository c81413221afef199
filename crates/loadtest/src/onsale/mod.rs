//! The on-sale simulation: many fans, few seats, through the real waiting
//! room, the real booking core and the real event flow.
//!
//! 1. **Start**: the stack and both services (migrated), the services
//!    restarted with this run's hold TTL so lapsed holds return to sale
//!    within the run.
//! 2. **Seed**: one concert with one performance of `--seats` seats, a
//!    balance for each of `--fans` fans, and an open waiting room.
//! 3. **Simulate**: fans arrive at `--arrival-rate` per second. Each enters
//!    the queue, polls as `poll_after_ms` says, views the seats once active,
//!    holds 1–4 seats (picking again after a 409), pays with an
//!    Idempotency-Key and finishes. `--abandon` of them stop polling while
//!    waiting; `--let-expire` of them let their hold lapse instead of paying.
//! 4. **Report**: counts, latency percentiles per step, activation wait,
//!    entry and exit rates, events, and the checks that matter: seats sold
//!    equal to supply when demand exceeds it, no seat sold twice (checked in
//!    Postgres), no 5xx. Printed and written as JSON.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use rand::{Rng, seq::SliceRandom};
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::{Endpoints, StackConfig, services};

/// Admin key the simulation gives queue-service (local runs only).
pub const QUEUE_ADMIN_KEY: &str = "devstack-onsale-queue-admin";
/// Admin key the simulation gives core-service (local runs only).
pub const CORE_ADMIN_KEY: &str = "devstack-onsale-core-admin";

/// Options of `devstack onsale`.
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
    /// Abandonment window of the waiting room in seconds.
    #[arg(long, default_value_t = 20)]
    pub abandon_after: u64,
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

/// A request step whose latency is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Enter,
    Poll,
    Seats,
    Hold,
    Pay,
}

#[derive(Default)]
struct Tally {
    latencies_ms: Mutex<BTreeMap<Step, Vec<f64>>>,
    activation_wait_ms: Mutex<Vec<f64>>,
    status_counts: Mutex<BTreeMap<u16, u64>>,
    entered: AtomicU64,
    last_entry_ms: AtomicU64,
    abandoned: AtomicU64,
    admitted: AtomicU64,
    holds: AtomicU64,
    conflicts: AtomicU64,
    let_expire: AtomicU64,
    payments: AtomicU64,
    seats_paid: AtomicU64,
    gave_up: AtomicU64,
    transport_errors: AtomicU64,
    finished: AtomicU64,
}

impl Tally {
    fn record(&self, step: Step, started: Instant, status: StatusCode) {
        let ms = started.elapsed().as_secs_f64() * 1_000.0;
        if let Ok(mut map) = self.latencies_ms.lock() {
            map.entry(step).or_default().push(ms);
        }
        if let Ok(mut counts) = self.status_counts.lock() {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
    }

    fn count_5xx(&self) -> u64 {
        self.status_counts
            .lock()
            .map(|c| c.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum())
            .unwrap_or(0)
    }
}

struct Sim {
    http: Client,
    queue: String,
    core: String,
    performance: i64,
    seat_total: u64,
    args: OnsaleArgs,
    tally: Tally,
    sold_out: AtomicBool,
    deadline: Instant,
    /// Wall-clock start of the simulation, to count this run's events.
    started_at: chrono::DateTime<chrono::Utc>,
    /// Monotonic start of the arrivals.
    simulation_started: Instant,
}

/// Percentiles of one step.
#[derive(Debug, Serialize)]
struct Percentiles {
    count: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

fn percentiles(samples: &mut [f64]) -> Percentiles {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        (samples[index] * 100.0).round() / 100.0
    };
    Percentiles {
        count: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
    }
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Report {
    seats: u64,
    fans: u32,
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
    transport_errors: u64,
    fans_who_found_no_seat: u64,
    unfinished_fans: u64,
    status_counts: BTreeMap<u16, u64>,
    latency: BTreeMap<Step, Percentiles>,
    activation_wait: Percentiles,
    waiting_room: Value,
    mean_entry_rate_per_second: f64,
    mean_exit_rate_per_second: f64,
    events_published: i64,
    events_pending: i64,
    slots_released_by_event: Option<f64>,
    elapsed_seconds: f64,
    ok: bool,
}

/// Runs the whole simulation and returns whether every check passed.
///
/// # Errors
/// When the stack or a service cannot start, seeding fails, or a service is
/// unreachable.
pub async fn run(config: &StackConfig, endpoints: &Endpoints, args: OnsaleArgs) -> Result<bool> {
    let started = Instant::now();
    let extra: Vec<(String, String)> = vec![
        (
            "ONSALE__CORE__HOLD_TTL_SECONDS".into(),
            args.hold_ttl.to_string(),
        ),
        ("ONSALE__CORE__ADMIN_KEY".into(), CORE_ADMIN_KEY.into()),
        ("ONSALE__QUEUE__ADMIN_KEY".into(), QUEUE_ADMIN_KEY.into()),
        // Every simulated fan connects from 127.0.0.1; like an API gateway,
        // the simulation names each fan's own address in X-Forwarded-For so
        // the per-client rate limit applies per fan, as in production.
        (
            "ONSALE__QUEUE__RATE_LIMIT__CLIENT_IP_HEADER".into(),
            "x-forwarded-for".into(),
        ),
    ];
    if !args.reuse_services {
        services::down(config);
    }
    eprintln!("onsale: starting services (release build)");
    services::start_with(config, endpoints, true, &extra).await?;
    let http = Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(512)
        .build()
        .context("building the HTTP client")?;
    let queue = "http://127.0.0.1:8080".to_owned();
    let core = "http://127.0.0.1:8081".to_owned();

    eprintln!(
        "onsale: seeding {} seats and {} fans",
        args.seats, args.fans
    );
    let (performance, seat_total) = seed_show(&http, &core, args.seats).await?;
    charge_all(&http, &core, (0..args.fans).map(fan_id), 1_000_000).await?;
    configure_room(
        &http,
        &queue,
        &performance.to_string(),
        &json!({
            "capacity": args.capacity,
            "admit_per_second": args.admit_per_second,
            "access_ttl_seconds": 600,
            "abandon_after_seconds": args.abandon_after,
            "state": "open",
        }),
    )
    .await?;

    let sim = Arc::new(Sim {
        http,
        queue,
        core,
        performance,
        seat_total,
        deadline: Instant::now() + Duration::from_secs(args.duration),
        args: args.clone(),
        tally: Tally::default(),
        sold_out: AtomicBool::new(false),
        started_at: chrono::Utc::now(),
        simulation_started: Instant::now(),
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
                    "entered {} admitted {} sold {}/{} 409s {} 5xx {}",
                    t.entered.load(Ordering::Relaxed),
                    t.admitted.load(Ordering::Relaxed),
                    t.seats_paid.load(Ordering::Relaxed),
                    sim.seat_total,
                    t.conflicts.load(Ordering::Relaxed),
                    t.count_5xx()
                ));
            }
        })
    };

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
    ticker.abort();
    progress.finish_and_clear();
    if interrupted {
        fans.abort_all();
        eprintln!("onsale: interrupted; the stack is still up (`devstack down` stops it)");
    }

    let report = report(&sim, endpoints, started.elapsed()).await?;
    print_report(&report);
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;
    eprintln!("report written to {}", args.report.display());
    Ok(report.ok && !interrupted)
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

async fn seed_show(http: &Client, core: &str, seats: u32) -> Result<(i64, u64)> {
    const PER_ROW: u32 = 50;
    let full_rows = seats / PER_ROW;
    let mut sections = Vec::new();
    if full_rows > 0 {
        let rows: Vec<String> = (1..=full_rows).map(|r| format!("R{r}")).collect();
        sections.push(json!({"section": "A", "grade": "R", "price": 110_000, "rows": rows, "seats_per_row": PER_ROW}));
    }
    if !seats.is_multiple_of(PER_ROW) {
        sections.push(json!({"section": "B", "grade": "S", "price": 88_000, "rows": ["R1"], "seats_per_row": seats % PER_ROW}));
    }
    let now = chrono::Utc::now();
    let body = json!({
        "title": "onsale simulation",
        "artist": "The Load Generators",
        "venue": "Loopback Arena",
        "performances": [{
            "starts_at": (now + chrono::Duration::days(30)).to_rfc3339(),
            "sale_opens_at": now.to_rfc3339(),
            "max_seats_per_order": 4,
            "sections": sections,
        }],
    });
    let created = create_concert(http, core, &body).await?;
    let performance = created["performances"][0]["id"]
        .as_i64()
        .context("no performance id in the reply")?;
    let seat_count = created["performances"][0]["seat_ids"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    Ok((performance, seat_count))
}

/// `POST /admin/v1/concerts` with `body`; the 201 reply.
///
/// # Errors
/// core-service unreachable, or any status but 201.
pub(crate) async fn create_concert(http: &Client, core: &str, body: &Value) -> Result<Value> {
    let response = http
        .post(format!("{core}/admin/v1/concerts"))
        .header("X-Admin-Key", CORE_ADMIN_KEY)
        .json(body)
        .send()
        .await
        .context("core-service is unreachable")?;
    let status = response.status();
    let created: Value = response.json().await.unwrap_or_default();
    ensure!(
        status == StatusCode::CREATED,
        "creating the concert failed: {status} {created}"
    );
    Ok(created)
}

/// A distinct client address per fan, carried only in `X-Forwarded-For`.
fn fan_address(n: u32) -> String {
    let [_, a, b, c] = n.to_be_bytes();
    format!("10.{a}.{b}.{c}")
}

fn fan_id(n: u32) -> String {
    format!("sim-fan-{n}")
}

/// Charges each of `users` `amount` KRW through the admin API, 64 requests
/// at a time.
///
/// # Errors
/// core-service unreachable, or any status but 201 for any user.
pub(crate) async fn charge_all(
    http: &Client,
    core: &str,
    users: impl IntoIterator<Item = String>,
    amount: i64,
) -> Result<()> {
    use futures::StreamExt;
    let results: Vec<Result<()>> = futures::stream::iter(users)
        .map(|user| async move {
            let status = http
                .post(format!("{core}/v1/users/{user}/balance/charges"))
                .header("X-Admin-Key", CORE_ADMIN_KEY)
                .json(&json!({ "amount": amount }))
                .send()
                .await
                .context("core-service is unreachable")?
                .status();
            ensure!(
                status == StatusCode::CREATED,
                "charging {user} failed: {status}"
            );
            Ok(())
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `PUT /admin/v1/events/{event}/waiting-room` with `room` (capacity,
/// admission rate, TTLs, state).
///
/// # Errors
/// queue-service unreachable, or a status that is not 2xx.
pub(crate) async fn configure_room(
    http: &Client,
    queue: &str,
    event: &str,
    room: &Value,
) -> Result<()> {
    let response = http
        .put(format!("{queue}/admin/v1/events/{event}/waiting-room"))
        .header("X-Admin-Key", QUEUE_ADMIN_KEY)
        .json(room)
        .send()
        .await
        .context("queue-service is unreachable")?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "configuring the waiting room of event {event} failed: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

enum Journey {
    Done,
    Abandoned,
    NoSeat,
    Stopped,
}

impl Sim {
    async fn fan(self: &Arc<Self>, n: u32) {
        match self.journey(n).await {
            Ok(Journey::Abandoned) => {
                self.tally.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Journey::NoSeat) => {
                self.tally.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Journey::Done | Journey::Stopped) => {}
            Err(_) => {
                self.tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends `request` as fan `n`, retrying 429 and 503 after their
    /// `Retry-After` (at most 5 tries), as a well-behaved client does. Every
    /// response, retried or not, is counted.
    async fn send(
        &self,
        n: u32,
        step: Step,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value)> {
        let request = request.header("X-Forwarded-For", fan_address(n));
        for attempt in 1..=5 {
            let Some(this) = request.try_clone() else {
                bail!("request body is not cloneable")
            };
            let started = Instant::now();
            let response = this.send().await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            let body = response.json().await.unwrap_or(Value::Null);
            self.tally.record(step, started, status);
            let shed = status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE;
            if !shed || attempt == 5 {
                return Ok((status, body));
            }
            tokio::time::sleep(Duration::from_secs(retry_after.min(10))).await;
        }
        unreachable!("the loop returns on its last attempt")
    }

    async fn journey(&self, n: u32) -> Result<Journey> {
        let user = fan_id(n);
        let (abandons, lets_expire, quantity) = {
            let mut rng = rand::rng();
            (
                rng.random_bool(self.args.abandon),
                rng.random_bool(self.args.let_expire),
                rng.random_range(1..=4usize),
            )
        };
        let entered_at = Instant::now();
        let (status, mut ticket) = self
            .send(
                n,
                Step::Enter,
                self.http
                    .post(format!(
                        "{}/v1/events/{}/queue",
                        self.queue, self.performance
                    ))
                    .json(&json!({"user_id": user})),
            )
            .await?;
        if !status.is_success() {
            return Ok(Journey::Stopped);
        }
        self.tally.entered.fetch_add(1, Ordering::Relaxed);
        let since_start = self.simulation_started.elapsed().as_millis() as u64;
        self.tally
            .last_entry_ms
            .fetch_max(since_start, Ordering::Relaxed);
        let queue_token = ticket["queue_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if abandons {
            // Walks away without polling again; the room must not waste a
            // slot on this fan.
            return Ok(Journey::Abandoned);
        }
        while ticket["status"] != "active" {
            if Instant::now() > self.deadline {
                return Ok(Journey::Stopped);
            }
            let wait = ticket["poll_after_ms"]
                .as_u64()
                .unwrap_or(1_000)
                .clamp(100, 30_000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let (status, body) = self
                .send(
                    n,
                    Step::Poll,
                    self.http
                        .get(format!(
                            "{}/v1/events/{}/queue/status",
                            self.queue, self.performance
                        ))
                        .bearer_auth(&queue_token),
                )
                .await?;
            if !status.is_success() {
                return Ok(Journey::Stopped);
            }
            ticket = body;
        }
        if let Ok(mut waits) = self.tally.activation_wait_ms.lock() {
            waits.push(entered_at.elapsed().as_secs_f64() * 1_000.0);
        }
        self.tally.admitted.fetch_add(1, Ordering::Relaxed);
        let access = ticket["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();

        // Keep trying while seats may come back (lapsed holds), until the
        // sale is sold out or patience runs out.
        let patience = Instant::now() + Duration::from_secs(self.args.hold_ttl * 2 + 10);
        let reservation = loop {
            if self.sold_out.load(Ordering::Relaxed) || Instant::now() > patience.min(self.deadline)
            {
                self.leave(n, &queue_token).await;
                return Ok(Journey::NoSeat);
            }
            let (status, map) = self
                .send(
                    n,
                    Step::Seats,
                    self.http.get(format!(
                        "{}/v1/performances/{}/seats",
                        self.core, self.performance
                    )),
                )
                .await?;
            if !status.is_success() {
                return Ok(Journey::Stopped);
            }
            let mut free: Vec<i64> = map["seats"]
                .as_array()
                .map(|seats| {
                    seats
                        .iter()
                        .filter(|s| s["available"] == true)
                        .filter_map(|s| s["id"].as_i64())
                        .collect()
                })
                .unwrap_or_default();
            if free.is_empty() {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                continue;
            }
            free.shuffle(&mut rand::rng());
            free.truncate(quantity);
            let (status, body) = self
                .send(
                    n,
                    Step::Hold,
                    self.http
                        .post(format!("{}/v1/reservations", self.core))
                        .bearer_auth(&access)
                        .json(&json!({"performance_id": self.performance, "seat_ids": free})),
                )
                .await?;
            match status {
                StatusCode::CREATED => break body,
                StatusCode::CONFLICT => {
                    self.tally.conflicts.fetch_add(1, Ordering::Relaxed);
                    let pause = rand::rng().random_range(50..250);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                _ => return Ok(Journey::Stopped),
            }
        };
        self.tally.holds.fetch_add(1, Ordering::Relaxed);
        if lets_expire {
            self.tally.let_expire.fetch_add(1, Ordering::Relaxed);
            return Ok(Journey::Done);
        }
        let key = uuid::Uuid::new_v4().to_string();
        let (status, _) = self
            .send(
                n,
                Step::Pay,
                self.http
                    .post(format!("{}/v1/payments", self.core))
                    .bearer_auth(&access)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"reservation_id": reservation["reservation_id"]})),
            )
            .await?;
        if status.is_success() {
            self.tally.payments.fetch_add(1, Ordering::Relaxed);
            let seats = reservation["seats"].as_array().map_or(0, Vec::len) as u64;
            let sold = self.tally.seats_paid.fetch_add(seats, Ordering::Relaxed) + seats;
            if sold >= self.seat_total {
                self.sold_out.store(true, Ordering::Relaxed);
            }
        }
        Ok(Journey::Done)
    }

    async fn leave(&self, n: u32, queue_token: &str) {
        let _ = self
            .http
            .delete(format!(
                "{}/v1/events/{}/queue",
                self.queue, self.performance
            ))
            .bearer_auth(queue_token)
            .header("X-Forwarded-For", fan_address(n))
            .send()
            .await;
    }
}

async fn report(sim: &Sim, endpoints: &Endpoints, elapsed: Duration) -> Result<Report> {
    let mut db = PgConnection::connect(&endpoints.database_url)
        .await
        .context("connecting to the core database")?;
    let performance = sim.performance;
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
    let room: Value = sim
        .http
        .get(format!(
            "{}/admin/v1/events/{performance}/waiting-room/stats",
            sim.queue
        ))
        .header("X-Admin-Key", QUEUE_ADMIN_KEY)
        .send()
        .await?
        .json()
        .await
        .unwrap_or(Value::Null);
    let released_by_event = metric_sum(
        &sim.http,
        &format!("{}/metrics", sim.queue),
        "queue_event_releases_total{released=\"true\"}",
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
    let admitted = t.admitted.load(Ordering::Relaxed);
    let demand_exceeded = t.holds.load(Ordering::Relaxed) + t.gave_up.load(Ordering::Relaxed) > 0
        && (admitted as f64) * 2.5 > sim.seat_total as f64;
    let responses_5xx = t.count_5xx();
    let seats_sold_equals_supply = seats_sold as u64 == sim.seat_total;
    let finished = t.finished.load(Ordering::Relaxed);
    let report = Report {
        seats: sim.seat_total,
        fans: sim.args.fans,
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
        fans_who_found_no_seat: t.gave_up.load(Ordering::Relaxed),
        unfinished_fans: u64::from(sim.args.fans).saturating_sub(finished),
        status_counts: t
            .status_counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default(),
        latency,
        activation_wait,
        mean_entry_rate_per_second: {
            let window = t.last_entry_ms.load(Ordering::Relaxed) as f64 / 1_000.0;
            round1(if window > 0.0 {
                t.entered.load(Ordering::Relaxed) as f64 / window
            } else {
                0.0
            })
        },
        mean_exit_rate_per_second: {
            let exits: u64 = ["left", "expired", "completed", "revoked"]
                .iter()
                .filter_map(|k| room["exited"][k].as_u64())
                .sum();
            round1(exits as f64 / sim.simulation_started.elapsed().as_secs_f64())
        },
        waiting_room: room,
        events_published: published,
        events_pending: pending,
        slots_released_by_event: released_by_event,
        elapsed_seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        ok: double_sold == 0
            && responses_5xx == 0
            && (!demand_exceeded || seats_sold_equals_supply),
    };
    Ok(report)
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Sums every sample of `name` on a Prometheus endpoint.
async fn metric_sum(http: &Client, url: &str, name: &str) -> Option<f64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    let values: Vec<f64> = text
        .lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn print_report(r: &Report) {
    let check = |ok: bool| if ok { "ok" } else { "FAILED" };
    println!("\n== onsale simulation ==");
    println!(
        "fans {}  entered {}  abandoned {}  admitted {}  no seat left {}",
        r.fans, r.entered, r.abandoned, r.admitted, r.fans_who_found_no_seat
    );
    println!(
        "holds {}  409s {}  left to expire {}  payments {}",
        r.holds, r.conflicts_409, r.holds_left_to_expire, r.payments
    );
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
    println!(
        "activation wait: p50 {:.0} ms, p95 {:.0} ms ({} fans)",
        r.activation_wait.p50_ms, r.activation_wait.p95_ms, r.activation_wait.count
    );
    println!(
        "entry rate {:.1} /s (mean over arrivals), exit rate {:.1} /s (mean over the run: leave, expiry, purchase)",
        r.mean_entry_rate_per_second, r.mean_exit_rate_per_second
    );
    println!(
        "events published {} (pending {}), slots released by payment.completed {}",
        r.events_published,
        r.events_pending,
        r.slots_released_by_event
            .map_or_else(|| "n/a".to_owned(), |v| v.to_string())
    );
    println!(
        "elapsed {:.1} s  transport errors {}  unfinished fans {}",
        r.elapsed_seconds, r.transport_errors, r.unfinished_fans
    );
    println!("result: {}", if r.ok { "PASS" } else { "FAIL" });
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
    fn percentiles_use_the_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&mut samples);
        assert_eq!((p.p50_ms, p.p95_ms, p.p99_ms), (50.0, 95.0, 99.0));
    }

    #[test]
    fn shares_outside_zero_to_one_are_refused() {
        assert!(share("0.3").is_ok());
        assert!(share("1.5").is_err());
        assert!(share("x").is_err());
    }
}
