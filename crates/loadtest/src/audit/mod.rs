//! `loadtest audit`: after any run (a sale, a drill, a crash), checks what
//! the stores say against onsale's promises and prints a verdict; the
//! command exits 1 on any violation.
//!
//! The promises, one check each ([`postgres`] and [`rooms`] list the rules
//! and their queries):
//! - seats sold = seats in paid reservations, and no seat in two paid
//!   reservations or two live holds;
//! - every paid reservation has exactly one payment and every payment one
//!   debit of its amount; balances equal the ledger;
//! - every payment has exactly one `payment.completed` in the outbox, the
//!   relay published it, and the consumer applied it once;
//! - every overdue hold has expired;
//! - in every registered waiting room: the active set within capacity, no
//!   entry past its access expiry, no fan both waiting and active, every
//!   active fan with its admission session.
//!
//! Work that follows a commit (publishing, consuming, expiring, ticking) is
//! judged only after a grace period, `--grace-seconds`. The on-sale
//! simulation runs the same audit when its fans are done.

pub mod postgres;
pub mod rooms;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use devstack::Endpoints;
use serde::Serialize;

/// Options of `loadtest audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// The core-service database (default: the stack's).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Redis Cluster seed URLs, comma-separated (default: the stack's).
    #[arg(long, value_delimiter = ',')]
    pub redis_urls: Vec<String>,
    /// What the checks tolerate.
    #[command(flatten)]
    pub options: Options,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seconds back that event checks look by default: 23 h, an hour inside
/// core-service's `outbox_retention_hours` (24 h by default,
/// config/base.toml), after which published outbox rows are deleted.
pub const DEFAULT_RETENTION_SECONDS: u64 = 23 * 3_600;

/// What the checks may tolerate.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Seconds that asynchronous work may take after a commit or an expiry
    /// (the relay's publish, the consumer's apply, the sweeper, the
    /// admission tick) before its absence counts as a violation.
    #[arg(long, default_value_t = 60)]
    pub grace_seconds: u64,
    /// Seconds back that event checks look: published outbox rows are
    /// deleted after core-service's `outbox_retention_hours` (24 h by
    /// default, config/base.toml), so older payments have no row by design.
    #[arg(long, default_value_t = DEFAULT_RETENTION_SECONDS)]
    pub retention_seconds: u64,
    /// queue-service's `redis.key_prefix` (empty in the stack's services).
    #[arg(long, default_value = "")]
    pub key_prefix: String,
}

/// One promise and how often the stores break it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `postgres` or `redis`.
    pub store: &'static str,
    /// Stable name, e.g. `sold_seats_are_paid`.
    pub name: &'static str,
    /// The promise in words.
    pub promise: &'static str,
    /// Rows (or entries) that break it; 0 when kept.
    pub violations: u64,
    /// Up to five offending ids.
    pub examples: Vec<String>,
}

/// Every check, the totals they were taken over, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// True when no check has a violation.
    pub passed: bool,
    /// The checks, Postgres first.
    pub checks: Vec<Check>,
    /// Counts the checks covered, e.g. `("seats sold", 1000)`.
    pub totals: Vec<(&'static str, i64)>,
}

impl Verdict {
    /// The checks that failed.
    pub fn violated(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.violations > 0)
    }
}

/// Audits the database at `database_url` and the cluster at `redis_urls`.
///
/// # Errors
/// When either store is unreachable or a query fails.
pub async fn audit(
    database_url: &str,
    redis_urls: &[String],
    options: &Options,
) -> Result<Verdict> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .context("connecting to the core-service database")?;
    let mut checks = postgres::audit(&pool, options)
        .await
        .context("auditing Postgres")?;
    let mut totals = postgres::totals(&pool)
        .await
        .context("counting in Postgres")?;
    pool.close().await;
    let (room_checks, rooms) = rooms::audit(redis_urls, options)
        .await
        .context("auditing the waiting rooms in Redis")?;
    checks.extend(room_checks);
    totals.push(("registered waiting rooms", i64::try_from(rooms)?));
    Ok(Verdict {
        passed: checks.iter().all(|c| c.violations == 0),
        checks,
        totals,
    })
}

/// Prints `verdict` as a table: one line per check, its examples, the
/// totals, then `audit: PASS` or `audit: FAIL`.
pub fn print(verdict: &Verdict) {
    for check in &verdict.checks {
        let mark = if check.violations == 0 {
            "ok  "
        } else {
            "FAIL"
        };
        println!(
            "{mark} {:<8} {:<36} {:>6}  {}",
            check.store, check.name, check.violations, check.promise
        );
        if !check.examples.is_empty() {
            println!("       e.g. {}", check.examples.join(", "));
        }
    }
    let totals: Vec<String> = verdict
        .totals
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!("over: {}", totals.join(" · "));
    println!(
        "audit: {}",
        if verdict.passed {
            "PASS".to_owned()
        } else {
            format!("FAIL ({} promise(s) broken)", verdict.violated().count())
        }
    );
}

/// `loadtest audit`: audits the stack's stores (or the ones named) and
/// prints the verdict; returns whether it passed.
///
/// # Errors
/// When a store is unreachable.
pub async fn run(endpoints: &Endpoints, args: AuditArgs) -> Result<bool> {
    let database_url = args
        .database_url
        .unwrap_or_else(|| endpoints.database_url.clone());
    let redis_urls = if args.redis_urls.is_empty() {
        endpoints.redis_urls.clone()
    } else {
        args.redis_urls
    };
    let verdict = audit(&database_url, &redis_urls, &args.options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print(&verdict);
    }
    Ok(verdict.passed)
}
