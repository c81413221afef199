//! `devstack bench`: the service load and its raw baselines in one run,
//! written into `docs/benchmarks.md`.
//!
//! Each service operation is measured next to the raw work it stands on,
//! on the same machine, the service phase right after its baseline (the
//! booking core's phases each start after a `CHECKPOINT`; see `settle`):
//!
//! | operation | service load | raw baseline |
//! |---|---|---|
//! | entry | `wrk`, `POST /v1/events/{id}/queue`, distinct fans | `redis-benchmark` running `enter.lua` (`EVALSHA`) |
//! | status poll | `wrk`, `GET …/queue/status` with fans' queue tokens | `redis-benchmark` running `status.lua` for fans in line |
//! | hold | `wrk`, `POST /v1/reservations`, one seat, token verified over gRPC | `pgbench` running the hold's SQL files |
//! | payment | `wrk`, `POST /v1/payments` with an `Idempotency-Key` | `pgbench` running the payment's SQL files |
//!
//! The baselines run the very text the services run: the Lua scripts are
//! read from `crates/queue-service/src/lua/` (prelude + script, as the
//! service concatenates them) and the SQL from
//! `crates/core-service/src/store/sql/`, with `$n` parameters turned into
//! pgbench variables. The load generators are C programs (wrk, redis-
//! benchmark, pgbench), so the generator's own cost is alike on both sides.
//!
//! CPU per request: busy CPU time of the whole machine (`/proc/stat`) during
//! the phase, minus the CPU of the load generator (the children's rusage),
//! divided by the requests served: what the system under test spent per
//! request. For the service phases the service process's own share is given
//! too. Linux reports `/proc` times in USER_HZ, which is 100 on every
//! architecture Linux supports for user space.
//!
//! # Layout
//! - [`BenchArgs`], [`run`]: orchestration and the report.
//! - Baselines: `redis_baseline`, `pgbench`; service load: `wrk`.
//! - `Cpu`: the `/proc` and rusage accounting.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use futures::StreamExt;
use reqwest::Client;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};

use crate::{
    Endpoints, StackConfig, install,
    onsale::{self, CORE_ADMIN_KEY, QUEUE_ADMIN_KEY},
    services,
};

const QUEUE: &str = "http://127.0.0.1:8080";
const CORE: &str = "http://127.0.0.1:8081";
/// Markers around the part of `docs/benchmarks.md` this command owns.
const BEGIN: &str = "<!-- devstack bench: begin -->";
const END: &str = "<!-- devstack bench: end -->";
/// Keys of one event, in the order every script expects (see `common.lua`).
const KEY_NAMES: [&str; 9] = [
    "cfg", "waiting", "active", "sessions", "stats", "seq", "seen", "rates", "done",
];
/// Fans put in line before the status phases, polled round-robin.
const POLLED_FANS: usize = 10_000;
/// Price of every benchmark seat, KRW.
const SEAT_PRICE: i64 = 1_000;

/// Options of `devstack bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Seconds of each wrk phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub seconds: u64,
    /// Concurrent connections of the waiting-room phases (issue 3: 50).
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
    /// The hold phases run as this many rounds, each a pgbench round right
    /// before a wrk round of `--seconds` / rounds (at least 3 s), so that
    /// drift of the shared machine hits both sides alike. The report gives
    /// the totals and each round's ratio.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub rounds: u64,
    /// Run only the waiting-room or only the booking-core phases.
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
    fn hold_round_seconds(&self) -> u64 {
        self.seconds.div_ceil(self.rounds).max(3)
    }
}

/// A half of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Entry and status against redis-benchmark.
    Queue,
    /// Holds and payments against pgbench.
    Core,
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
        "--only runs half of the report: add --no-write"
    );
    install::ensure_apt(&["wrk"], &["wrk"])?;
    install::ensure_redis()?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let extra: Vec<(String, String)> = [
        ("ONSALE__CORE__ADMIN_KEY", CORE_ADMIN_KEY),
        ("ONSALE__QUEUE__ADMIN_KEY", QUEUE_ADMIN_KEY),
        // One client address sends everything: lift the per-client limit.
        ("ONSALE__QUEUE__RATE_LIMIT__PER_SECOND", "1000000"),
        ("ONSALE__QUEUE__RATE_LIMIT__BURST", "1000000"),
        // Holds must outlive the payment phase.
        ("ONSALE__CORE__HOLD_TTL_SECONDS", "3600"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    services::down(config);
    eprintln!("bench: starting services (release build)");
    services::start_with(config, endpoints, true, &extra).await?;
    let pids = services::pids(config);

    let work = config.dir.join("bench");
    std::fs::create_dir_all(&work)?;
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(256)
        .build()?;
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
        http,
        endpoints,
        args: &args,
        run_id,
        work,
        pids,
    };
    if args.only != Some(Part::Core) {
        queue_phases(&run, &mut record).await?;
    }
    if args.only != Some(Part::Queue) {
        core_phases(&run, &mut record).await?;
    }
    let report = render(&phases, &args, &load_before);
    println!("{report}");
    if !args.no_write {
        let path = crate::workspace_root().join(&args.out);
        write_section(&path, &report)?;
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
    http: Client,
    endpoints: &'a Endpoints,
    args: &'a BenchArgs,
    /// Makes this run's events, users and ids unique.
    run_id: String,
    /// Scratch directory for scripts, row files and pgbench logs.
    work: PathBuf,
    /// Service name → PID, for per-process CPU.
    pids: HashMap<&'static str, i32>,
}

/// Entry and status: redis-benchmark on the Lua scripts, then wrk on HTTP.
async fn queue_phases(run: &Run<'_>, record: &mut impl FnMut(Phase)) -> Result<()> {
    let Run {
        http,
        endpoints,
        args,
        run_id,
        work,
        pids,
    } = run;
    let lua_dir = crate::workspace_root().join("crates/queue-service/src/lua");
    let raw_event = format!("bench-raw-{run_id}");
    let http_event = format!("bench-http-{run_id}");
    for event in [&raw_event, &http_event] {
        // Capacity 1 and a trickle of admissions: the line stands still, so
        // every request does the same work.
        configure_room(http, event, 1, 0.001).await?;
    }
    let redis = RedisTarget::for_event(endpoints, &raw_event)?;
    let scripts = redis.load_scripts(&lua_dir, &["enter", "status"])?;
    settle(None).await;
    eprintln!(
        "bench: redis-benchmark, enter.lua on master :{}",
        redis.port
    );
    record(
        redis
            .benchmark(
                "entry (redis-benchmark, enter.lua)",
                &scripts["enter"],
                args,
                100_000_000,
            )
            .await?,
    );
    redis.enter_numbered(&scripts["enter"], POLLED_FANS)?;
    settle(None).await;
    eprintln!("bench: redis-benchmark, status.lua");
    record(
        redis
            .benchmark(
                "status (redis-benchmark, status.lua)",
                &scripts["status"],
                args,
                POLLED_FANS as u64,
            )
            .await?,
    );

    settle(None).await;
    eprintln!("bench: wrk, entry through queue-service");
    let entry_lua = work.join("entry.lua");
    std::fs::write(
        &entry_lua,
        format!(
            r#"local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{{"user_id":"wrk-{run_id}-' .. n .. '"}}')
end
"#
        ),
    )?;
    record(
        wrk(
            "entry (HTTP)",
            &format!("{QUEUE}/v1/events/{http_event}/queue"),
            &entry_lua,
            args.queue_connections,
            args.seconds,
            pids.get("queue-service").copied(),
            None,
        )
        .await?,
    );

    eprintln!("bench: putting {POLLED_FANS} fans in line for the status phase");
    let tokens = enter_many(http, &http_event, "polled", POLLED_FANS, false).await?;
    let status_lua = rows_script(
        work,
        "status",
        &tokens.iter().map(|t| vec![t.clone()]).collect::<Vec<_>>(),
        r#"wrk.format("GET", nil, {["Authorization"] = "Bearer " .. r[1]}, nil)"#,
    )?;
    settle(None).await;
    eprintln!("bench: wrk, status polls through queue-service");
    record(
        wrk(
            "status (HTTP)",
            &format!("{QUEUE}/v1/events/{http_event}/queue/status"),
            &status_lua,
            args.queue_connections,
            args.seconds,
            pids.get("queue-service").copied(),
            None,
        )
        .await?,
    );

    Ok(())
}

/// Holds and payments: pgbench on the SQL files, then wrk on HTTP.
async fn core_phases(run: &Run<'_>, record: &mut impl FnMut(Phase)) -> Result<()> {
    let Run {
        http,
        endpoints,
        args,
        run_id,
        work,
        pids,
    } = run;
    let pgbench_bin = install::ensure_postgres()?.join("pgbench");
    ensure!(
        pgbench_bin.is_file(),
        "no pgbench beside the Postgres server binaries"
    );
    let sql_dir = crate::workspace_root().join("crates/core-service/src/store/sql");
    let mut db = PgConnection::connect(&endpoints.database_url)
        .await
        .context("connecting to Postgres")?;
    let seats = args.seats as usize;
    let clients = args.core_connections as usize;

    eprintln!("bench: creating two performances of {seats} seats");
    let pg_show = create_show(http, &mut db, seats).await?;
    let http_show = create_show(http, &mut db, seats).await?;
    let pg_users: Vec<String> = (0..clients).map(|c| format!("pgb-{run_id}-{c}")).collect();
    onsale::charge_all(http, CORE, pg_users, 1_000_000_000).await?;

    let sql = |name: &str| -> Result<String> {
        let text = std::fs::read_to_string(sql_dir.join(format!("{name}.sql")))
            .with_context(|| format!("reading {name}.sql"))?;
        Ok(text.trim_end().trim_end_matches(';').to_owned())
    };
    let per_client = seats / clients;
    // Client c's n-th hold takes seat lo + (n - 1) * clients + c: the clients
    // claim neighbouring seats at the same moment, as wrk's connections do
    // (they share one counter over the seat list). Giving each client its
    // own block of seats instead spared pgbench the contention on shared
    // heap and index pages that the service meets.
    let user = format!("'pgb-{run_id}-' || :client_id::text");
    // Ids derived from (run, client, n): the payment script finds the
    // reservation the hold script made at the same n, with no lookup.
    let id_of =
        |kind: &str| format!("md5('{kind}{run_id}-' || :client_id::text || '-' || :n::text)");
    let rid = &id_of("r");
    // Real envelopes, built from the row's own values, so the consumers
    // handle these events exactly as the service's own (a hold's expiry is
    // deferred; a payment releases nobody) instead of dead-lettering them.
    let hold_event = format!(
        "jsonb_build_object('event_id', {eid}::uuid, 'type', 'reservation.expiration', 'version', 1, \
         'occurred_at', now(), 'key', {rid}::uuid::text, 'data', jsonb_build_object('reservation_id', {rid}::uuid, \
         'performance_id', {perf}, 'user_id', {user}, 'seat_ids', jsonb_build_array(:id::bigint), \
         'held_until', :held_until::timestamptz))",
        eid = id_of("e"),
        perf = pg_show.performance,
    );
    let pay_event = format!(
        "jsonb_build_object('event_id', {eid}::uuid, 'type', 'payment.completed', 'version', 1, \
         'occurred_at', :now::timestamptz, 'key', {rid}::uuid::text, 'data', jsonb_build_object('payment_id', {pid}::uuid, \
         'reservation_id', {rid}::uuid, 'user_id', {user}, 'performance_id', :performance_id::bigint, \
         'amount_krw', :amount_krw::bigint, 'seat_ids', jsonb_build_array(:id::bigint), 'paid_at', :now::timestamptz))",
        eid = id_of("f"),
        pid = id_of("p"),
    );
    let hold_script = format!(
        "\\set n :n + 1\n\\set seat {lo} + (:n - 1) * {clients} + :client_id\nBEGIN;\n{claim}\n\\gset\n{insert};\nEND;\n",
        lo = pg_show.first_seat,
        claim = bind(
            &sql("hold_claim")?,
            &[
                "ARRAY[:seat::bigint]",
                &pg_show.performance.to_string(),
                &format!("{rid}::uuid"),
                "3600",
            ]
        ),
        insert = bind(
            &sql("hold_insert_reservation")?,
            &[
                &format!("{rid}::uuid"),
                &user,
                &pg_show.performance.to_string(),
                ":price_krw::bigint",
                ":held_until::timestamptz",
                "ARRAY[:id::bigint]",
                "ARRAY[:price_krw::bigint]",
                &format!("{}::uuid", id_of("e")),
                "'reservation.expiration'",
                &format!("{rid}::uuid::text"),
                &hold_event,
                "'{}'::jsonb",
            ]
        ),
    );
    // Fans are admitted before either side runs, so each pgbench phase is
    // followed at once by its HTTP twin: pairs minutes apart drifted apart
    // with the machine (other tenants, database growth).
    eprintln!("bench: admitting {seats} fans for the hold phase");
    let performance = http_show.performance.to_string();
    configure_room(http, &performance, u64::try_from(seats)? + 10, 100_000.0).await?;
    let access = enter_many(http, &performance, &format!("fan-{run_id}"), seats, true).await?;
    let hold_rows: Vec<Vec<String>> = access
        .iter()
        .zip(http_show.first_seat..)
        .map(|(token, seat)| vec![token.clone(), seat.to_string()])
        .collect();
    let holds_lua = rows_script(
        work,
        "holds",
        &hold_rows,
        &format!(
            r#"wrk.format("POST", nil, {{["Authorization"] = "Bearer " .. r[1], ["Content-Type"] = "application/json"}}, '{{"performance_id":{performance},"seat_ids":[' .. r[2] .. ']}}')"#
        ),
    )?;
    sqlx::query("ANALYZE seats").execute(&mut db).await?;
    let rounds = args.rounds;
    let per_round = u64::try_from(per_client)? / rounds;
    ensure!(
        per_round > 0,
        "{seats} seats over {clients} pgbench clients leave none for each of {rounds} rounds; raise --seats"
    );
    let (mut pg_rounds, mut http_rounds) = (Vec::new(), Vec::new());
    // Holds each pgbench client made, over all rounds: its transaction
    // counter `n` runs on from round to round, and the payment phase pays
    // transactions 1..=n of each client.
    let mut pg_holds_per_client = 0;
    let mut rows_used = 0;
    for round in 1..=rounds {
        settle(Some(&mut db)).await;
        eprintln!("bench: pgbench, the hold transaction (round {round}/{rounds})");
        let (phase, done) = pgbench(
            &pgbench_bin,
            work,
            "hold (pgbench, same SQL)",
            &hold_script,
            &endpoints.database_url,
            clients,
            (pg_holds_per_client, per_round),
        )
        .await?;
        ensure!(
            done == per_round,
            "a pgbench client made {done} of its {per_round} holds"
        );
        pg_holds_per_client += per_round;
        pg_rounds.push(phase);

        settle(Some(&mut db)).await;
        eprintln!("bench: wrk, holds through core-service (round {round}/{rounds})");
        let phase = wrk(
            "hold (HTTP)",
            &format!("{CORE}/v1/reservations"),
            &holds_lua,
            args.core_connections,
            args.hold_round_seconds(),
            pids.get("core-service").copied(),
            Some((rows_used, hold_rows.len() as u64)),
        )
        .await?;
        // Requests still in flight when wrk stopped (one per connection at
        // most) took rows too without being counted: skip as many. (One wrk
        // thread, `-t1`, so one Lua counter walks the rows.)
        rows_used += phase.requests + u64::from(args.core_connections);
        http_rounds.push(phase);
    }
    record(Phase::from_rounds(&pg_rounds).context("no hold round")?);
    record(Phase::from_rounds(&http_rounds).context("no hold round")?);

    let pay_script = format!(
        "\\set n :n + 1\n{header};\n{claim_key};\nBEGIN;\n{lock}\n\\gset\n{sell}\n\\gset\n{debit}\n\\gset\n{record};\nEND;\n",
        header = bind(&sql("reservation_header")?, &[&format!("{rid}::uuid")]),
        claim_key = bind(
            &sql("pay_claim_key")?,
            &[
                &user,
                "'k-' || :client_id::text || '-' || :n::text",
                rid,
                "30"
            ]
        ),
        lock = bind(&sql("pay_lock_reservation")?, &[&format!("{rid}::uuid")]),
        sell = bind(&sql("pay_sell_seats")?, &[&format!("{rid}::uuid")]),
        debit = bind(&sql("pay_debit")?, &[&user, ":amount_krw::bigint"]),
        record = bind(
            &sql("pay_record")?,
            &[
                &user,
                ":amount_krw::bigint",
                ":balance_krw::bigint",
                &format!("{}::uuid", id_of("p")),
                ":now::timestamptz",
                &format!("{rid}::uuid"),
                "'k-' || :client_id::text || '-' || :n::text",
                &format!("{}::uuid", id_of("f")),
                "'payment.completed'",
                &format!("{rid}::uuid::text"),
                &pay_event,
                "'{}'::jsonb",
                &format!("'{}'::jsonb", representative_response()),
            ]
        ),
    );
    settle(Some(&mut db)).await;
    eprintln!("bench: pgbench, the payment transaction");
    let (pg_pay, _) = pgbench(
        &pgbench_bin,
        work,
        "payment (pgbench, same SQL)",
        &pay_script,
        &endpoints.database_url,
        clients,
        (0, pg_holds_per_client),
    )
    .await?;
    record(pg_pay);

    let held = sqlx::query(
        "SELECT id::text AS id, user_id FROM reservations WHERE performance_id = $1 AND status = 'held'",
    )
    .bind(http_show.performance)
    .fetch_all(&mut db)
    .await?;
    let token_of: HashMap<String, &String> = access
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("fan-{run_id}-{i}"), t))
        .collect();
    let mut pay_rows = Vec::with_capacity(held.len());
    let mut payers = Vec::with_capacity(held.len());
    for row in &held {
        let id: String = row.try_get("id")?;
        let user: String = row.try_get("user_id")?;
        let token = token_of.get(&user).context("a hold by an unknown fan")?;
        pay_rows.push(vec![(*token).clone(), id]);
        payers.push(user);
    }
    eprintln!("bench: charging {} payers", payers.len());
    onsale::charge_all(http, CORE, payers, 1_000_000).await?;
    let pay_lua = rows_script(
        work,
        "payments",
        &pay_rows,
        r#"wrk.format("POST", nil, {["Authorization"] = "Bearer " .. r[1], ["Content-Type"] = "application/json", ["Idempotency-Key"] = "bench-" .. r[2]}, '{"reservation_id":"' .. r[2] .. '"}')"#,
    )?;
    settle(Some(&mut db)).await;
    eprintln!("bench: wrk, payments through core-service");
    record(
        wrk(
            "payment (HTTP)",
            &format!("{CORE}/v1/payments"),
            &pay_lua,
            args.core_connections,
            args.seconds,
            pids.get("core-service").copied(),
            Some((0, pay_rows.len() as u64)),
        )
        .await?,
    );

    Ok(())
}

/// Replaces `$1…$n` in `sql` with `values[0…n-1]`, the highest first so
/// that `$1` never eats the start of `$10`.
fn bind(sql: &str, values: &[&str]) -> String {
    let mut out = sql.to_owned();
    for (i, value) in values.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), value);
    }
    out
}

fn representative_response() -> String {
    json!({
        "payment_id": "0b6f1c52-3a0e-4d43-9a55-5d7c1f9e2b10",
        "reservation_id": "6f0d8a4e-0d5c-4b1f-8f7a-2c9b3e1d4a55",
        "user_id": "fan-000000",
        "status": "completed",
        "amount": SEAT_PRICE,
        "balance_after": 999_000,
        "paid_at": "2026-11-22T06:00:00.000000Z"
    })
    .to_string()
}

/// Opens `event`'s room with `capacity` and `rate` admissions per second;
/// tokens and presence outlast any run.
async fn configure_room(http: &Client, event: &str, capacity: u64, rate: f64) -> Result<()> {
    onsale::configure_room(
        http,
        QUEUE,
        event,
        &json!({
            "capacity": capacity,
            "admit_per_second": rate,
            "access_ttl_seconds": 3600,
            "abandon_after_seconds": 3600,
            "state": "open",
        }),
    )
    .await
}

/// Enters `count` fans named `<prefix>-<i>` and returns their queue tokens,
/// or (with `until_active`) polls each until admitted and returns access
/// tokens, in fan order.
async fn enter_many(
    http: &Client,
    event: &str,
    prefix: &str,
    count: usize,
    until_active: bool,
) -> Result<Vec<String>> {
    let results: Vec<Result<String>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let url = format!("{QUEUE}/v1/events/{event}/queue");
            let ticket: Value = http
                .post(&url)
                .json(&json!({"user_id": format!("{prefix}-{i}")}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let queue_token = ticket["queue_token"]
                .as_str()
                .context("no queue_token")?
                .to_owned();
            if !until_active {
                return Ok(queue_token);
            }
            let mut reply = ticket;
            let deadline = Instant::now() + Duration::from_secs(120);
            while reply["status"] != "active" {
                ensure!(Instant::now() < deadline, "fan {i} not admitted in 120 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
                reply = http
                    .get(format!("{url}/status"))
                    .bearer_auth(&queue_token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
            }
            Ok(reply["access_token"]
                .as_str()
                .context("no access_token")?
                .to_owned())
        })
        .buffered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

struct Show {
    performance: i64,
    first_seat: i64,
}

/// A performance of `seats` seats at [`SEAT_PRICE`], whose seat ids are
/// contiguous (pgbench computes them).
async fn create_show(http: &Client, db: &mut PgConnection, seats: usize) -> Result<Show> {
    const PER_ROW: usize = 50;
    ensure!(
        seats.is_multiple_of(PER_ROW),
        "--seats must be a multiple of {PER_ROW}"
    );
    let rows: Vec<String> = (1..=seats / PER_ROW).map(|r| format!("R{r}")).collect();
    let now = chrono::Utc::now();
    let created = crate::onsale::create_concert(
        http,
        CORE,
        &json!({
            "title": "devstack bench",
            "artist": "wrk",
            "venue": "Loopback Hall",
            "performances": [{
                "starts_at": (now + chrono::Duration::days(30)).to_rfc3339(),
                "sale_opens_at": now.to_rfc3339(),
                "max_seats_per_order": 4,
                "sections": [{"section": "A", "grade": "R", "price": SEAT_PRICE, "rows": rows, "seats_per_row": PER_ROW}],
            }],
        }),
    )
    .await?;
    let performance = created["performances"][0]["id"]
        .as_i64()
        .context("no performance id")?;
    let row = sqlx::query(
        "SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM seats WHERE performance_id = $1",
    )
    .bind(performance)
    .fetch_one(db)
    .await?;
    let (lo, hi, n): (i64, i64, i64) = (row.try_get("lo")?, row.try_get("hi")?, row.try_get("n")?);
    ensure!(
        hi - lo + 1 == n && n == i64::try_from(seats)?,
        "seat ids of performance {performance} are not contiguous"
    );
    Ok(Show {
        performance,
        first_seat: lo,
    })
}

/// The master of the devstack cluster that owns one event's hash slot.
struct RedisTarget {
    port: u16,
    keys: Vec<String>,
}

impl RedisTarget {
    fn for_event(endpoints: &Endpoints, event: &str) -> Result<Self> {
        let seed = endpoints
            .redis_urls
            .first()
            .and_then(|u| u.rsplit(':').next())
            .context("no Redis URL")?
            .to_owned();
        let tag = format!("{{evt:{event}}}");
        let slot: u16 = redis_cli(&seed, &["CLUSTER", "KEYSLOT", &tag])?
            .trim()
            .parse()
            .context("CLUSTER KEYSLOT")?;
        let nodes = redis_cli(&seed, &["CLUSTER", "NODES"])?;
        let port = nodes
            .lines()
            .filter(|line| line.split(' ').nth(2).is_some_and(|f| f.contains("master")))
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let owns = fields.iter().skip(8).any(|range| {
                    let mut ends = range.split('-');
                    match (
                        ends.next().and_then(|a| a.parse::<u16>().ok()),
                        ends.next().and_then(|b| b.parse::<u16>().ok()),
                    ) {
                        (Some(a), Some(b)) => (a..=b).contains(&slot),
                        (Some(a), None) => a == slot,
                        _ => false,
                    }
                });
                let address = fields.get(1)?.split('@').next()?;
                owns.then(|| address.rsplit(':').next()?.parse().ok())
                    .flatten()
            })
            .context("no master owns the event's slot")?;
        Ok(Self {
            port,
            keys: KEY_NAMES.iter().map(|k| format!("{tag}:{k}")).collect(),
        })
    }

    /// `SCRIPT LOAD` of prelude + script, as queue-service composes them.
    fn load_scripts(&self, dir: &Path, names: &[&str]) -> Result<HashMap<String, String>> {
        let prelude = std::fs::read_to_string(dir.join("common.lua"))?;
        names
            .iter()
            .map(|name| {
                let body = std::fs::read_to_string(dir.join(format!("{name}.lua")))?;
                let sha = redis_cli(
                    &self.port.to_string(),
                    &["SCRIPT", "LOAD", &format!("{prelude}\n{body}")],
                )?;
                Ok(((*name).to_owned(), sha.trim().to_owned()))
            })
            .collect()
    }

    /// Enters `user:<12 digits>` for 0..count, as redis-benchmark's
    /// `__rand_int__` names them, through `redis-cli --pipe`.
    fn enter_numbered(&self, sha: &str, count: usize) -> Result<()> {
        let mut commands = String::new();
        for i in 0..count {
            let mut args = vec!["EVALSHA".to_owned(), sha.to_owned(), "9".to_owned()];
            args.extend(self.keys.iter().cloned());
            args.push(format!("user:{i:012}"));
            let _ = write!(commands, "*{}\r\n", args.len());
            for arg in args {
                let _ = write!(commands, "${}\r\n{arg}\r\n", arg.len());
            }
        }
        let path = std::env::temp_dir().join(format!("devstack-bench-{}.resp", std::process::id()));
        std::fs::write(&path, commands)?;
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--pipe"])
            .stdin(std::fs::File::open(&path)?)
            .output()
            .context("running redis-cli --pipe")?;
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && text.contains("errors: 0"),
            "redis-cli --pipe failed: {text}"
        );
        Ok(())
    }

    /// `redis-benchmark -c N --csv EVALSHA sha 9 keys… user:__rand_int__`.
    async fn benchmark(
        &self,
        name: &str,
        sha: &str,
        args: &BenchArgs,
        keyspace: u64,
    ) -> Result<Phase> {
        let mut command = tokio::process::Command::new("redis-benchmark");
        command
            .args(["-p", &self.port.to_string()])
            .args(["-c", &args.queue_connections.to_string()])
            .args(["-n", &args.redis_requests.to_string()])
            .args(["-r", &keyspace.to_string()])
            .args(["--csv", "EVALSHA", sha, "9"])
            .args(&self.keys)
            .arg("user:__rand_int__");
        let (output, cpu) = measured(command, &[]).await?;
        let csv = String::from_utf8_lossy(&output.stdout);
        ensure!(output.status.success(), "redis-benchmark failed: {csv}");
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        let row = csv
            .lines()
            .rfind(|l| l.starts_with("\"EVALSHA"))
            .context("no redis-benchmark result row")?;
        let cells: Vec<f64> = row
            .split(',')
            .skip(1)
            .map(|c| c.trim_matches('"').parse().unwrap_or(f64::NAN))
            .collect();
        ensure!(cells.len() >= 6, "unexpected redis-benchmark row: {row}");
        let errors = u64::from(String::from_utf8_lossy(&output.stderr).contains("ERR"));
        Ok(Phase {
            name: name.to_owned(),
            requests: args.redis_requests,
            rate: cells[0],
            p50_ms: cells[3],
            p99_ms: cells[5],
            errors,
            cpu_us_per_request: cpu.sut_us_per(args.redis_requests),
            service_cpu_us_per_request: None,
            round_rates: Vec::new(),
        })
    }
}

fn redis_cli(port: &str, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", port])
        .args(args)
        .output()
        .context("running redis-cli")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success() && !text.starts_with("ERR"),
        "redis-cli {args:?}: {text}"
    );
    Ok(text)
}

/// A wrk script sending one request per row of `rows` (tab-separated in a
/// file beside it), round-robin; `build` is a Lua expression over `r`.
fn rows_script(dir: &Path, name: &str, rows: &[Vec<String>], build: &str) -> Result<PathBuf> {
    let data = dir.join(format!("{name}.tsv"));
    let mut text = String::new();
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    std::fs::write(&data, text)?;
    let script = dir.join(format!("{name}.lua"));
    std::fs::write(
        &script,
        format!(
            r#"local rows = {{}}
for line in io.lines("{data}") do
  local r = {{}}
  for field in string.gmatch(line, "[^\t]+") do r[#r + 1] = field end
  rows[#rows + 1] = r
end
-- Rows before BENCH_OFFSET were used by earlier rounds.
local i = tonumber(os.getenv("BENCH_OFFSET") or "0")
request = function()
  i = i + 1
  local r = rows[(i - 1) % #rows + 1]
  return {build}
end
"#,
            data = data.display()
        ),
    )?;
    Ok(script)
}

/// `wrk -t1 -cN -dS --latency -s script url`. With `rows`, a run that
/// needed more requests than rows (so some were repeats) is an error.
async fn wrk(
    name: &str,
    url: &str,
    script: &Path,
    connections: u32,
    seconds: u64,
    service_pid: Option<i32>,
    rows: Option<(u64, u64)>,
) -> Result<Phase> {
    let mut command = tokio::process::Command::new("wrk");
    if let Some((offset, _)) = rows {
        command.env("BENCH_OFFSET", offset.to_string());
    }
    command
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--latency", "--timeout", "10s", "-s"])
        .arg(script)
        .arg(url);
    let (output, cpu) = measured(command, &service_pid.into_iter().collect::<Vec<_>>()).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    let parsed =
        WrkOutput::parse(&text).with_context(|| format!("unexpected wrk output: {text}"))?;
    if let Some((offset, rows)) = rows {
        ensure!(
            offset + parsed.requests <= rows,
            "{name}: wrk sent {} requests for the {} prepared rows left; raise --seats",
            parsed.requests,
            rows.saturating_sub(offset)
        );
    }
    Ok(Phase {
        name: name.to_owned(),
        requests: parsed.requests,
        rate: parsed.rate,
        p50_ms: parsed.p50_ms,
        p99_ms: parsed.p99_ms,
        errors: parsed.errors,
        cpu_us_per_request: cpu.sut_us_per(parsed.requests),
        service_cpu_us_per_request: service_pid.map(|_| cpu.service_us_per(parsed.requests)),
        round_rates: Vec::new(),
    })
}

/// What `wrk --latency` printed.
#[derive(Debug, PartialEq)]
struct WrkOutput {
    requests: u64,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl WrkOutput {
    fn parse(text: &str) -> Option<Self> {
        let latency = |label: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|v| duration_ms(v.trim()))
        };
        let requests = text
            .lines()
            .find(|l| l.contains(" requests in "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let rate = text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))?
            .trim()
            .parse()
            .ok()?;
        let non_2xx: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let socket: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Socket errors:"))
            .map_or(0, |v| {
                v.split(',')
                    .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum()
            });
        Some(Self {
            requests,
            rate,
            p50_ms: latency("50%")?,
            p99_ms: latency("99%")?,
            errors: non_2xx + socket,
        })
    }
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn duration_ms(value: &str) -> Option<f64> {
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => return None,
    })
}

/// Runs a pgbench script with `-M prepared` and per-transaction logs:
/// `(start, count)` transactions per client, its counter `n` running from
/// `start + 1`. Returns the phase and the transactions each client
/// completed (the fewest).
async fn pgbench(
    binary: &Path,
    work: &Path,
    name: &str,
    script: &str,
    database_url: &str,
    clients: usize,
    (start, transactions): (u64, u64),
) -> Result<(Phase, u64)> {
    let dir = work.join(format!(
        "pgbench-{}",
        name.split_whitespace().next().unwrap_or("x")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("script.sql");
    std::fs::write(&file, script)?;
    let mut command = tokio::process::Command::new(binary);
    command
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-l", "-D", &format!("n={start}")])
        .args(["-c", &clients.to_string(), "-j", "2"])
        .arg("-f")
        .arg(&file);
    command
        .args(["-t", &transactions.to_string()])
        .arg(database_url);
    let (output, cpu) = measured(command, &[]).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success() && !stderr.contains("aborted"),
        "pgbench {name} failed: {stdout}\n{stderr}"
    );
    let rate: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no tps in pgbench output")?;
    let failed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    // Log lines: client_id transaction_no time_us script_no time_epoch time_us
    let mut latencies = Vec::new();
    let mut per_client: HashMap<String, u64> = HashMap::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pgbench_log"))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let (Some(client), Some(us)) = (
                fields.first(),
                fields.get(2).and_then(|v| v.parse::<f64>().ok()),
            ) {
                latencies.push(us / 1e3);
                *per_client.entry((*client).to_owned()).or_default() += 1;
            }
        }
    }
    ensure!(
        !latencies.is_empty(),
        "pgbench {name} wrote no transaction log"
    );
    latencies.sort_by(f64::total_cmp);
    let fewest = per_client.values().copied().min().unwrap_or(0);
    let requests = latencies.len() as u64;
    Ok((
        Phase {
            name: name.to_owned(),
            requests,
            rate,
            p50_ms: nearest_rank(&latencies, 0.50),
            p99_ms: nearest_rank(&latencies, 0.99),
            errors: failed,
            cpu_us_per_request: cpu.sut_us_per(requests),
            service_cpu_us_per_request: None,
            round_rates: Vec::new(),
        },
        fewest,
    ))
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU spent during one phase.
struct Cpu {
    machine: Duration,
    generator: Duration,
    service: Duration,
}

impl Cpu {
    fn sut_us_per(&self, requests: u64) -> f64 {
        self.machine.saturating_sub(self.generator).as_secs_f64() * 1e6 / requests.max(1) as f64
    }

    fn service_us_per(&self, requests: u64) -> f64 {
        self.service.as_secs_f64() * 1e6 / requests.max(1) as f64
    }
}

/// Waits (at most 30 s) until the outbox relay has published every row
/// (with `db`) and the machine has been nearly idle for half a second, so a
/// phase does not pay for the previous one's background work.
///
/// With `db` it also runs a `CHECKPOINT`. A bench run writes about 500 MB
/// of WAL, so Postgres started a WAL-triggered checkpoint in most runs, at
/// whichever phase crossed the threshold; that was usually an HTTP phase,
/// since they come after the pgbench ones. After a checkpoint starts, the
/// first change to each page logs the whole page (full-page writes), so the
/// phase it landed in paid for it alone. Starting every database phase
/// right after a checkpoint gives each side the same full-page writes, and
/// no checkpoint starts within a 10 s phase.
async fn settle(db: Option<&mut PgConnection>) {
    if let Some(db) = db {
        for _ in 0..300 {
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&mut *db)
                    .await
                    .unwrap_or(0);
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Err(error) = sqlx::query("CHECKPOINT").execute(&mut *db).await {
            eprintln!("bench: CHECKPOINT failed ({error}); the phase may share one");
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    for _ in 0..60 {
        let before = machine_busy();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if (machine_busy() - before).as_secs_f64() / (0.5 * cores) < 0.2 {
            break;
        }
    }
}

/// Linux's USER_HZ: `/proc` reports CPU time in 1/100 s.
const USER_HZ: f64 = 100.0;

fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy is all but idle
    // and iowait; guest time is already inside user.
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Duration::from_secs_f64(busy as f64 / USER_HZ)
}

fn process_cpu(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / USER_HZ)
}

fn children_cpu() -> Duration {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).map_or(
        Duration::ZERO,
        |usage| {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::new(
                    u64::try_from(t.tv_sec()).unwrap_or(0),
                    u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
                )
            };
            tv(usage.user_time()) + tv(usage.system_time())
        },
    )
}

/// Runs `command` to completion and accounts the CPU of the machine, of
/// the command (the load generator) and of `services`.
async fn measured(
    mut command: tokio::process::Command,
    services: &[i32],
) -> Result<(std::process::Output, Cpu)> {
    let service_cpu = || services.iter().map(|p| process_cpu(*p)).sum::<Duration>();
    let (machine0, children0, service0) = (machine_busy(), children_cpu(), service_cpu());
    let output = command
        .kill_on_drop(true)
        .output()
        .await
        .context("starting a load generator")?;
    let cpu = Cpu {
        machine: machine_busy().saturating_sub(machine0),
        generator: children_cpu().saturating_sub(children0),
        service: service_cpu().saturating_sub(service0),
    };
    Ok((output, cpu))
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown CPU", |v| v.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cores} cores, {memory_gib:.0} GiB")
}

fn render(phases: &[Phase], args: &BenchArgs, load_before: &str) -> String {
    let find = |name: &str| phases.iter().find(|p| p.name.starts_with(name));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Service load against raw baselines (`devstack bench`)\n\n\
         Written by `cargo run --release -p devstack -- bench` on {} UTC; \
         everything between the markers is replaced by the next run.\n\n\
         - Machine: {}; the load generators, both services, six Redis nodes, \
         Postgres and the broker share it. Load average before the run: {}.\n\
         - Waiting room: {} connections; redis-benchmark {} requests per script on the \
         master owning the event's slot; wrk {} s per phase, one thread.\n\
         - Booking core: {} connections (pgbench clients) on both sides; holds in {} \
         rounds, each a pgbench round right before a wrk round of {} s; payments in one \
         round, wrk {} s. Each pgbench client holds {} seats interleaved with the other \
         clients' (as wrk's connections), then pays those reservations. Every \
         booking-core phase starts right after a `CHECKPOINT`. Over rounds, p50 is the \
         median round's and p99 the worst round's.\n\
         - CPU/request: machine CPU minus the load generator's, per request \
         (µs); for the service phases also the service process alone.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M"),
        machine_description(),
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.queue_connections,
        args.redis_requests,
        args.seconds,
        args.core_connections,
        args.rounds,
        args.hold_round_seconds(),
        args.seconds,
        args.seats / args.core_connections,
    );
    let _ = writeln!(
        out,
        "| operation | service req/s | baseline req/s | ratio | service p50 / p99 ms | baseline p50 / p99 ms | CPU µs/req service (process) | CPU µs/req baseline | errors |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (label, service, baseline) in [
        ("entry", "entry (HTTP)", "entry (redis"),
        ("status poll", "status (HTTP)", "status (redis"),
        ("hold", "hold (HTTP)", "hold (pgbench"),
        ("payment", "payment (HTTP)", "payment (pgbench"),
    ] {
        let (Some(s), Some(b)) = (find(service), find(baseline)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {label} | {:.0} | {:.0} | **{:.2}×** | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} ({:.0}) | {:.0} | {} / {} |",
            s.rate,
            b.rate,
            s.rate / b.rate,
            s.p50_ms,
            s.p99_ms,
            b.p50_ms,
            b.p99_ms,
            s.cpu_us_per_request,
            s.service_cpu_us_per_request.unwrap_or(f64::NAN),
            b.cpu_us_per_request,
            s.errors,
            b.errors,
        );
    }
    if let (Some(s), Some(b)) = (find("hold (HTTP)"), find("hold (pgbench"))
        && s.round_rates.len() > 1
        && s.round_rates.len() == b.round_rates.len()
    {
        let ratios: Vec<String> = s
            .round_rates
            .iter()
            .zip(&b.round_rates)
            .map(|(s, b)| format!("{:.2}× ({s:.0} vs {b:.0}/s)", s / b))
            .collect();
        let _ = writeln!(out, "\nHold ratio by round: {}.", ratios.join(", "));
    }
    let _ = writeln!(
        out,
        "\nBaselines: entry and status run queue-service's own Lua (prelude + \
         script) with `EVALSHA`, status for fans already in line; hold and \
         payment run core-service's own SQL files under `pgbench -M prepared`, \
         every statement the service sends on the success path, each client \
         as its own user, the clients on neighbouring seats like wrk's \
         connections (pgbench's hold opens with a plain \
         `BEGIN`: its `ARRAY[:seat]` claim already runs on a generic plan, \
         which the service's `hold_begin.sql` has to ask for). Service: one \
         seat per hold, each \
         hold by a different admitted fan, each payment of one of those holds \
         with its own Idempotency-Key; every request verified its access \
         token with queue-service over gRPC."
    );
    out
}

fn write_section(path: &Path, section: &str) -> Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{section}{END}\n");
    let updated = match (current.find(BEGIN), current.find(END)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{block}{}",
                &current[..start],
                current[end + END.len()..].trim_start_matches('\n')
            )
        }
        (None, None) => format!("{}\n{block}", current.trim_end()),
        _ => bail!("{} has only one of the bench markers", path.display()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed_with_its_units_and_errors() {
        let text = "Running 10s test @ http://127.0.0.1:8080/\n  1 threads and 50 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     3.10ms    1.02ms  30.00ms   90.00%\n  Latency Distribution\n     50%  812.00us\n     75%    3.50ms\n     90%    4.00ms\n     99%    1.20s\n  123456 requests in 10.00s, 50.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 4\nRequests/sec:  12345.60\nTransfer/sec:      5.00MB\n";
        assert_eq!(
            WrkOutput::parse(text),
            Some(WrkOutput {
                requests: 123_456,
                rate: 12_345.6,
                p50_ms: 0.812,
                p99_ms: 1_200.0,
                errors: 7,
            })
        );
    }

    #[test]
    fn parameters_are_bound_highest_first() {
        assert_eq!(
            bind(
                "f($1, $10, $2)",
                &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            ),
            "f(a, j, b)"
        );
    }

    #[test]
    fn the_generated_section_replaces_only_what_lies_between_the_markers() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.md");
        std::fs::write(&path, "# Title\n\nhand-written\n").unwrap();
        write_section(&path, "first\n").unwrap();
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "\n## Later\nkept\n",
        )
        .unwrap();
        write_section(&path, "second\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Title\n\nhand-written\n"));
        assert!(text.contains(&format!("{BEGIN}\nsecond\n{END}\n")));
        assert!(!text.contains("first"));
        assert!(text.ends_with("## Later\nkept\n"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
