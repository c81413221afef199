//! The waiting-room half: entry and status, each first as redis-benchmark
//! running queue-service's own Lua on the master that owns the event, then
//! as wrk through queue-service. Every HTTP request is a signed-in fan's:
//! `Authorization: Bearer <identity token>`, one token per fan, signed in
//! with the stack's issuer before the phase (so never timed), and for
//! status the fan's queue token in `Onsale-Queue-Token`.

use std::fmt::Write as _;

use anyhow::{Context, Result, ensure};
use devstack::Endpoints;
use onsale_client::QUEUE_TOKEN_HEADER;
use queue_service::{
    domain::EventId,
    layout::{self, lua},
};

use super::{
    BenchArgs, Phase, Run,
    cpu::{measured, settle},
    room,
    wrk::{rows_script, url_of, wrk},
};
use crate::setup;

/// Fans put in line before the status phases, polled round-robin.
const POLLED_FANS: usize = 10_000;

/// Entry and status: redis-benchmark on the Lua scripts, then wrk on HTTP.
pub(super) async fn run(run: &Run<'_>, record: &mut impl FnMut(Phase)) -> Result<()> {
    let (client, endpoints, args) = (&run.client, run.endpoints, run.args);
    let (run_id, work, pids) = (&run.run_id, &run.work, &run.pids);
    let raw_event = format!("bench-raw-{run_id}");
    let http_event = format!("bench-http-{run_id}");
    for event in [&raw_event, &http_event] {
        // Capacity 1 and a trickle of admissions: the line stands still, so
        // every request does the same work.
        client.configure_room(event, &room(1, 0.001)).await?;
    }
    let redis = RedisTarget::for_event(endpoints, &raw_event)?;
    let enter = redis.load_script(lua::ENTER)?;
    let status = redis.load_script(lua::STATUS)?;
    settle(None).await;
    eprintln!(
        "bench: redis-benchmark, enter.lua on master :{}",
        redis.port
    );
    record(
        redis
            .benchmark(
                "entry (redis-benchmark, enter.lua)",
                &enter,
                args,
                100_000_000,
            )
            .await?,
    );
    redis.enter_numbered(&enter, POLLED_FANS)?;
    settle(None).await;
    eprintln!("bench: redis-benchmark, status.lua");
    record(
        redis
            .benchmark(
                "status (redis-benchmark, status.lua)",
                &status,
                args,
                POLLED_FANS as u64,
            )
            .await?,
    );

    let entrants = args.entry_fans();
    eprintln!("bench: signing in {entrants} fans for the entry phase");
    let users: Vec<String> = (0..entrants).map(|i| format!("wrk-{run_id}-{i}")).collect();
    let identities = setup::sign_in_all(&run.issuer, &users).await?;
    let entry_lua = rows_script(
        work,
        "entry",
        &identities.into_iter().map(|t| vec![t]).collect::<Vec<_>>(),
        r#"wrk.format("POST", nil, {["Authorization"] = "Bearer " .. r[1], ["Content-Type"] = "application/json"}, "{}")"#,
    )?;
    settle(None).await;
    eprintln!("bench: wrk, entry through queue-service");
    record(
        wrk(
            "entry (HTTP)",
            &url_of(client.enter_request(&http_event))?,
            &entry_lua,
            args.queue_connections,
            args.seconds,
            pids.get("queue-service").copied(),
            Some((0, entrants)),
        )
        .await?,
    );

    eprintln!("bench: putting {POLLED_FANS} fans in line for the status phase");
    let polled = setup::enter_many(
        client,
        &run.issuer,
        &http_event,
        &format!("polled-{run_id}"),
        POLLED_FANS,
        false,
    )
    .await?;
    let status_lua = rows_script(
        work,
        "status",
        &polled
            .iter()
            .map(|fan| vec![fan.identity.clone(), fan.token.clone()])
            .collect::<Vec<_>>(),
        &format!(
            r#"wrk.format("GET", nil, {{["Authorization"] = "Bearer " .. r[1], ["{QUEUE_TOKEN_HEADER}"] = r[2]}}, nil)"#
        ),
    )?;
    settle(None).await;
    eprintln!("bench: wrk, status polls through queue-service");
    record(
        wrk(
            "status (HTTP)",
            &url_of(client.poll_request(&http_event, ""))?,
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

/// The master of the devstack cluster that owns one event's hash slot, and
/// that event's keys (the services run with no key prefix).
struct RedisTarget {
    port: u16,
    keys: [String; 9],
}

impl RedisTarget {
    fn for_event(endpoints: &Endpoints, event: &str) -> Result<Self> {
        let seed = endpoints
            .redis_urls
            .first()
            .and_then(|u| u.rsplit(':').next())
            .context("no Redis URL")?
            .to_owned();
        let keys = layout::event_keys("", &EventId::parse(event)?);
        // Every key of the event shares one hash tag, so one slot.
        let slot: u16 = redis_cli(&seed, &["CLUSTER", "KEYSLOT", &keys[0]])?
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
        Ok(Self { port, keys })
    }

    /// `SCRIPT LOAD` of prelude + `body`, as queue-service composes them;
    /// returns the SHA for `EVALSHA`.
    fn load_script(&self, body: &str) -> Result<String> {
        let sha = redis_cli(
            &self.port.to_string(),
            &["SCRIPT", "LOAD", &layout::script_source(body)],
        )?;
        Ok(sha.trim().to_owned())
    }

    /// Enters `user:<12 digits>` for 0..count, as redis-benchmark's
    /// `__rand_int__` names them, through `redis-cli --pipe`.
    fn enter_numbered(&self, sha: &str, count: usize) -> Result<()> {
        let mut commands = String::new();
        for i in 0..count {
            let mut args = vec![
                "EVALSHA".to_owned(),
                sha.to_owned(),
                self.keys.len().to_string(),
            ];
            args.extend(self.keys.iter().cloned());
            args.push(format!("user:{i:012}"));
            let _ = write!(commands, "*{}\r\n", args.len());
            for arg in args {
                let _ = write!(commands, "${}\r\n{arg}\r\n", arg.len());
            }
        }
        let path = std::env::temp_dir().join(format!("loadtest-bench-{}.resp", std::process::id()));
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
            .args(["--csv", "EVALSHA", sha, &self.keys.len().to_string()])
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
