//! The coupon-claim phases: first-come claims through core-service (wrk,
//! `POST /v1/coupon-campaigns/{id}/claims`, one distinct signed-in fan per
//! request) next to redis-benchmark running core-service's own claim script
//! (`core_service::coupons::gate::CLAIM_SCRIPT`) with distinct fan ids
//! (`fan:__rand_int__`), in the same run.
//!
//! Two pairs, because a claim takes one of two paths:
//! - **issued**: a campaign whose quantity is the number of fans signed in
//!   for the phase (`--seconds` × `--claim-rate-bound`), so every claim of
//!   the phase passes the Redis gate *and* writes its coupon to Postgres
//!   (`coupon_issue.sql`: the conditional `UPDATE` of the campaign's row and
//!   the coupon's `INSERT`). A phase that runs out of
//!   fans fails and says so. Its baseline reserves on every call (quantity
//!   10,000,000, far above the requests). Since every such claim also
//!   updates the one campaign row, it is measured against a second baseline
//!   too: pgbench running `coupon_issue.sql` itself on a campaign of its
//!   own, the ceiling that row sets with the same clients.
//! - **sold out**: a campaign of quantity 1, claimed once before the phase,
//!   so every claim is answered from Redis alone (`sold_out`, 409) and the
//!   fans keep coming, as in the minutes after a campaign runs out. Its
//!   baseline runs the script against a counter at its quantity. The 409s
//!   are the expected answer: wrk counts them as non-2xx, so they are
//!   checked against core-service's `coupon_claims_total{result="sold_out"}`
//!   instead, and only other answers (or sockets errors) count as errors.
//!
//! The issued pair runs with `--claim-connections` (4 by default): every
//! issued claim waits for the campaign row's lock, so a few clients
//! saturate it and more only lengthen the line. Measured on 2026-12-01 with
//! pgbench on `coupon_issue.sql`, 5 s each: 4 clients 1,600–1,780/s
//! (2.2–2.5 ms mean), 8 clients 1,550–1,710/s (4.7–5.2 ms), 16 clients
//! 1,260/s (12.7 ms); through core-service 4 connections gave 1,324 claims/s
//! at p99 7.3 ms where 8 gave 1,254/s at p99 21.2 ms. The sold-out pair runs
//! with `--queue-connections` (50, like the waiting room's entries: Redis
//! alone answers). Service and baseline always share the count.
//!
//! The baselines' keys follow the gate's layout (`{coupon:<id>}:issued`,
//! `:fans`, no key prefix) under ids no campaign has, so core-service's
//! reconciliation job never touches them; they expire after an hour (the
//! script's `ARGV[3]`).

use anyhow::{Context, Result, ensure};
use chrono::{Duration as Span, Utc};
use core_service::{
    api::coupons::{Campaign, Discount, NewCampaign},
    coupons::gate::CLAIM_SCRIPT,
    domain::Krw,
    store::sql,
};
use devstack::install;
use onsale_client::Client;
use sqlx::{Connection, PgConnection};

use super::{
    Phase, Run,
    cpu::settle,
    pgbench::{Length, bind, pgbench},
    redis::{Benchmark, RedisTarget},
    wrk::{rows_script, url_of, wrk, wrk_replies},
};
use crate::setup;

/// Quantity of the baselines' reserving campaign: far above any request
/// count, so every call reserves.
const UNLIMITED: i32 = 10_000_000;

/// Lifetime of the baselines' keys, seconds.
const KEY_TTL: &str = "3600";

/// The coupon-claim phases (see the module docs).
pub(super) async fn run(run: &Run<'_>, record: &mut impl FnMut(Phase)) -> Result<()> {
    let (client, endpoints, args) = (&run.client, run.endpoints, run.args);
    let (run_id, work, pids) = (&run.run_id, &run.work, &run.pids);
    let pgbench_bin = install::ensure_postgres()?.join("pgbench");
    let mut db = PgConnection::connect(&endpoints.database_url)
        .await
        .context("connecting to Postgres")?;

    let fans = args.claim_fans();
    eprintln!("bench: signing in {fans} fans for the coupon claims");
    let users: Vec<String> = (0..=fans).map(|i| format!("claim-{run_id}-{i}")).collect();
    let mut identities = setup::sign_in_all(&run.issuer, &users).await?;
    // The last fan claims the sold-out campaign's only coupon.
    let first_claimer = identities.pop().context("no fans signed in")?;
    let issuing = create_campaign(
        client,
        &format!("bench claims {run_id}"),
        i32::try_from(fans)?,
    )
    .await?;
    let sold_out = create_campaign(client, &format!("bench sold out {run_id}"), 1).await?;
    client
        .as_fan(&first_claimer)
        .claim_coupon(sold_out.id)
        .await
        .context("claiming the sold-out campaign's only coupon")?;
    let pg_campaign =
        create_campaign(client, &format!("bench pgbench {run_id}"), UNLIMITED).await?;

    // Reserving baseline.
    let tag = format!("{{coupon:bench-{run_id}}}");
    let redis = RedisTarget::for_keys(
        endpoints,
        vec![format!("{tag}:issued"), format!("{tag}:fans")],
    )?;
    let sha = redis.load_script(CLAIM_SCRIPT)?;
    let unlimited = UNLIMITED.to_string();
    settle(None).await;
    eprintln!(
        "bench: redis-benchmark, claim.lua (reserving) on master :{}",
        redis.port
    );
    let phase = redis
        .benchmark(&Benchmark {
            name: "claim (redis-benchmark, claim.lua)",
            sha: &sha,
            argv: &["fan:__rand_int__", &unlimited, KEY_TTL],
            connections: args.claim_connections,
            requests: args.redis_requests,
            keyspace: 100_000_000,
        })
        .await?;
    // Random fan ids from 10^8 repeat rarely (about 0.1 % of 200,000 calls
    // meet an earlier one and answer `already`): nearly every call reserved.
    let reserved: u64 = redis
        .cli(&["GET", &redis.keys[0]])?
        .trim()
        .parse()
        .unwrap_or(0);
    ensure!(
        reserved * 100 >= phase.requests * 98,
        "the reserving baseline reserved only {reserved} of {} calls",
        phase.requests
    );
    record(phase);

    // Sold-out baseline: the counter stands at the quantity (1).
    let tag = format!("{{coupon:bench-sold-{run_id}}}");
    let redis = RedisTarget::for_keys(
        endpoints,
        vec![format!("{tag}:issued"), format!("{tag}:fans")],
    )?;
    let sha = redis.load_script(CLAIM_SCRIPT)?;
    redis.cli(&["SET", &redis.keys[0], "1", "EX", KEY_TTL])?;
    settle(None).await;
    eprintln!(
        "bench: redis-benchmark, claim.lua (sold out) on master :{}",
        redis.port
    );
    let phase = redis
        .benchmark(&Benchmark {
            name: "claim sold out (redis-benchmark, claim.lua)",
            sha: &sha,
            argv: &["fan:__rand_int__", "1", KEY_TTL],
            connections: args.queue_connections,
            requests: args.redis_requests,
            keyspace: 100_000_000,
        })
        .await?;
    let counter = redis.cli(&["GET", &redis.keys[0]])?;
    let members = redis.cli(&["SCARD", &redis.keys[1]])?;
    ensure!(
        counter.trim() == "1" && members.trim() == "0",
        "the sold-out baseline reserved (counter {}, {} fans)",
        counter.trim(),
        members.trim()
    );
    record(phase);

    // The campaign row's ceiling: pgbench on the issue statement, each
    // transaction a new fan with a code of its own.
    let fan = format!("'pgc-{run_id}-' || :client_id::text || '-' || :n::text");
    let code = format!("md5('pgc-{run_id}-' || :client_id::text || '-' || :n::text)");
    let script = format!(
        "\\set n :n + 1\n{};\n",
        bind(
            sql::COUPON_ISSUE,
            &[&pg_campaign.id.to_string(), &fan, &code]
        )
    );
    settle(Some(&mut db)).await;
    eprintln!("bench: pgbench, coupon_issue.sql");
    let (phase, _) = pgbench(
        &pgbench_bin,
        work,
        "claim (pgbench, coupon_issue.sql)",
        &script,
        &endpoints.database_url,
        args.claim_connections as usize,
        Length::Seconds(args.seconds),
    )
    .await?;
    let issued = postgres_coupons(&mut db, pg_campaign.id).await?;
    ensure!(
        u64::try_from(issued)? == phase.requests,
        "pgbench logged {} issue transactions but Postgres holds {issued} coupons",
        phase.requests
    );
    record(phase);

    // Issued through core-service: every claim a new fan's.
    let rows: Vec<Vec<String>> = identities.iter().map(|t| vec![t.clone()]).collect();
    let claims_lua = rows_script(
        work,
        "claims",
        &rows,
        r#"wrk.format("POST", nil, {["Authorization"] = "Bearer " .. r[1]}, nil)"#,
    )?;
    let before = Metrics::read(client).await?;
    settle(Some(&mut db)).await;
    eprintln!("bench: wrk, coupon claims through core-service (every claim issues)");
    let phase = wrk(
        "claim (HTTP)",
        &url_of(client.claim_coupon_request(issuing.id))?,
        &claims_lua,
        args.claim_connections,
        args.seconds,
        pids.get("core-service").copied(),
        Some((0, rows.len() as u64)),
    )
    .await?;
    // Claims cut off when wrk closed its connections settle meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = Metrics::read(client).await?;
    let counts = client.campaign(issuing.id).await?.counts;
    let in_postgres = postgres_coupons(&mut db, issuing.id).await?;
    ensure!(
        i64::from(counts.issued) == in_postgres && u64::try_from(in_postgres)? >= phase.requests,
        "claim (HTTP): {} claims answered, campaign counts {} issued, Postgres holds {in_postgres} coupons",
        phase.requests,
        counts.issued
    );
    let by_postgres = after.path("postgres") - before.path("postgres");
    let compensated = after.compensations - before.compensations;
    let fixes = client.reconcile_campaign(issuing.id).await?;
    eprintln!(
        "bench: claim (HTTP): {in_postgres} coupons issued, {by_postgres:.0} claims on the Postgres-only path, \
         {compensated:.0} compensated; reconciliation afterwards: Redis {} vs Postgres {}, {} fixes",
        fixes
            .redis_issued_before
            .map_or_else(|| "none".to_owned(), |n| n.to_string()),
        fixes.postgres_issued,
        fixes.fixes
    );
    record(phase);

    // Sold out: the same fans (none holds this campaign's coupon), so every
    // answer comes from the Redis gate. The rows may wrap around: a repeated
    // fan is answered exactly as a new one (not in the set, counter full).
    let before = Metrics::read(client).await?;
    settle(None).await;
    eprintln!("bench: wrk, coupon claims of a sold-out campaign through core-service");
    let (mut phase, replies) = wrk_replies(
        "claim sold out (HTTP)",
        &url_of(client.claim_coupon_request(sold_out.id))?,
        &claims_lua,
        args.queue_connections,
        args.seconds,
        pids.get("core-service").copied(),
        None,
    )
    .await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let after = Metrics::read(client).await?;
    let sold_out_answers = (after.result("sold_out") - before.result("sold_out")).max(0.0) as u64;
    let other_answers =
        ((after.results() - before.results()).max(0.0) as u64).saturating_sub(sold_out_answers);
    let by_postgres = (after.path("postgres") - before.path("postgres")).max(0.0) as u64;
    // 2xx replies (an issued coupon) + replies the service did not count
    // as sold out + answers of another kind + sockets errors.
    phase.errors = phase.requests.saturating_sub(replies.non_2xx)
        + phase.requests.saturating_sub(sold_out_answers)
        + other_answers
        + by_postgres
        + replies.socket_errors;
    let still = client.campaign(sold_out.id).await?.counts.issued;
    ensure!(still == 1, "the sold-out campaign issued {still} coupons");
    eprintln!(
        "bench: claim sold out (HTTP): {sold_out_answers} sold_out answers from Redis, \
         {other_answers} others, {by_postgres} on the Postgres path"
    );
    record(phase);
    Ok(())
}

/// A campaign of `quantity` amount-off coupons for any show, open from a
/// minute ago for two hours.
async fn create_campaign(client: &Client, name: &str, quantity: i32) -> Result<Campaign> {
    let now = Utc::now();
    client
        .create_campaign(&NewCampaign {
            name: name.to_owned(),
            concert_id: None,
            performance_id: None,
            discount: Discount::Amount {
                amount_krw: Krw::positive(1_000)?,
            },
            quantity,
            starts_at: now - Span::minutes(1),
            ends_at: now + Span::hours(2),
            valid_for_seconds: 3_600,
        })
        .await
        .with_context(|| format!("creating campaign {name:?}"))
}

async fn postgres_coupons(db: &mut PgConnection, campaign: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM coupons WHERE campaign_id = $1")
            .bind(campaign)
            .fetch_one(db)
            .await?,
    )
}

/// The coupon counters of core-service's `/metrics`.
struct Metrics {
    /// `coupon_claims_total` samples: (result, value).
    results: Vec<(String, f64)>,
    /// `coupon_claim_path_total` samples: (path, value).
    paths: Vec<(String, f64)>,
    compensations: f64,
}

impl Metrics {
    async fn read(client: &Client) -> Result<Self> {
        let text = client
            .http()
            .get(format!("{}/metrics", client.core_url()))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let samples = |name: &str, label: &str| -> Vec<(String, f64)> {
            let open = format!("{name}{{");
            let key = format!("{label}=\"");
            text.lines()
                .filter_map(|line| {
                    let labels = line.strip_prefix(&open)?;
                    let (labels, value) = labels.rsplit_once("} ")?;
                    let start = labels.find(&key)? + key.len();
                    let end = labels[start..].find('"')? + start;
                    Some((labels[start..end].to_owned(), value.trim().parse().ok()?))
                })
                .collect()
        };
        let compensations = text
            .lines()
            .find_map(|l| l.strip_prefix("coupon_compensations_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            results: samples("coupon_claims_total", "result"),
            paths: samples("coupon_claim_path_total", "path"),
            compensations,
        }
    }

    fn result(&self, result: &str) -> f64 {
        self.results
            .iter()
            .filter(|(r, _)| r == result)
            .map(|(_, v)| v)
            .sum()
    }

    fn results(&self) -> f64 {
        self.results.iter().map(|(_, v)| v).sum()
    }

    fn path(&self, path: &str) -> f64 {
        self.paths
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupon_counters_are_read_by_label() {
        let text = "# TYPE coupon_claims_total counter\n\
            coupon_claims_total{result=\"sold_out\"} 120\n\
            coupon_claims_total{result=\"claimed\"} 7\n\
            coupon_claim_path_total{path=\"redis\"} 127\n\
            coupon_compensations_total 2\n";
        let m = Metrics::parse(text);
        assert!((m.result("sold_out") - 120.0).abs() < f64::EPSILON);
        assert!((m.results() - 127.0).abs() < f64::EPSILON);
        assert!((m.path("redis") - 127.0).abs() < f64::EPSILON);
        assert!(m.path("postgres").abs() < f64::EPSILON);
        assert!((m.compensations - 2.0).abs() < f64::EPSILON);
    }
}
