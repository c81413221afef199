//! redis-benchmark, the baseline of the Redis-side phases: the cluster
//! master that owns a set of keys (one hash tag, so one slot), a script
//! loaded there, and `redis-benchmark` running it with `EVALSHA`.
//!
//! Shared by the waiting-room phases (queue-service's Lua over an event's
//! keys) and the coupon-claim phase (core-service's claim script over a
//! campaign's keys).

use anyhow::{Context, Result, ensure};
use devstack::Endpoints;

use super::{Phase, cpu::measured};

/// The master of the devstack cluster that owns one hash tag's slot, and
/// the keys under that tag (the services run with no key prefix).
pub(super) struct RedisTarget {
    pub(super) port: u16,
    pub(super) keys: Vec<String>,
}

/// One redis-benchmark run: `EVALSHA sha <keys> <args>` over `connections`
/// for `requests` calls, `__rand_int__` drawn from `0..keyspace`.
pub(super) struct Benchmark<'a> {
    /// Phase name in the report.
    pub(super) name: &'a str,
    /// The script's SHA ([`RedisTarget::load_script`]).
    pub(super) sha: &'a str,
    /// `ARGV`, after the keys; may hold `__rand_int__`.
    pub(super) argv: &'a [&'a str],
    pub(super) connections: u32,
    pub(super) requests: u64,
    pub(super) keyspace: u64,
}

impl RedisTarget {
    /// The master owning `keys` (which must share one hash tag).
    ///
    /// # Errors
    /// No Redis URL, or `redis-cli` failing.
    pub(super) fn for_keys(endpoints: &Endpoints, keys: Vec<String>) -> Result<Self> {
        let seed = endpoints
            .redis_urls
            .first()
            .and_then(|u| u.rsplit(':').next())
            .context("no Redis URL")?
            .to_owned();
        let first = keys.first().context("no keys")?;
        let slot: u16 = redis_cli(&seed, &["CLUSTER", "KEYSLOT", first])?
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
            .context("no master owns the keys' slot")?;
        Ok(Self { port, keys })
    }

    /// `SCRIPT LOAD` of `source` exactly as given; returns the SHA for
    /// `EVALSHA`.
    ///
    /// # Errors
    /// `redis-cli` failing.
    pub(super) fn load_script(&self, source: &str) -> Result<String> {
        Ok(self.cli(&["SCRIPT", "LOAD", source])?.trim().to_owned())
    }

    /// `redis-cli -p <this master> args…`.
    ///
    /// # Errors
    /// `redis-cli` failing or answering `ERR`.
    pub(super) fn cli(&self, args: &[&str]) -> Result<String> {
        redis_cli(&self.port.to_string(), args)
    }

    /// `redis-benchmark -c N -n R -r K --csv EVALSHA sha <keys> <argv>`.
    ///
    /// # Errors
    /// redis-benchmark failing or printing no result row.
    pub(super) async fn benchmark(&self, run: &Benchmark<'_>) -> Result<Phase> {
        let mut command = tokio::process::Command::new("redis-benchmark");
        command
            .args(["-p", &self.port.to_string()])
            .args(["-c", &run.connections.to_string()])
            .args(["-n", &run.requests.to_string()])
            .args(["-r", &run.keyspace.to_string()])
            .args(["--csv", "EVALSHA", run.sha, &self.keys.len().to_string()])
            .args(&self.keys)
            .args(run.argv);
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
            name: run.name.to_owned(),
            requests: run.requests,
            rate: cells[0],
            p50_ms: cells[3],
            p99_ms: cells[5],
            errors,
            cpu_us_per_request: cpu.sut_us_per(run.requests),
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
