//! The waiting-room half: entry and status, each first as redis-benchmark
//! running queue-service's own Lua on the master that owns the event, then
//! as wrk through queue-service. Every HTTP request is a signed-in fan's:
//! `Authorization: Bearer <identity token>`, one token per fan, signed in
//! with the stack's issuer before the phase (so never timed), and for
//! status the fan's queue token in `Onsale-Queue-Token`.

use std::fmt::Write as _;

use anyhow::{Context, Result, ensure};
use onsale_client::QUEUE_TOKEN_HEADER;
use queue_service::{
    domain::EventId,
    layout::{self, lua},
};

use super::{
    Phase, Run,
    cpu::settle,
    redis::{Benchmark, RedisTarget},
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
    // Every key of the event shares one hash tag, so one slot.
    let redis = RedisTarget::for_keys(
        endpoints,
        layout::event_keys("", &EventId::parse(&raw_event)?).to_vec(),
    )?;
    // Prelude + script, as queue-service composes them.
    let enter = redis.load_script(&layout::script_source(lua::ENTER))?;
    let status = redis.load_script(&layout::script_source(lua::STATUS))?;
    let benchmark = |name, sha, keyspace| Benchmark {
        name,
        sha,
        argv: &["user:__rand_int__"],
        connections: args.queue_connections,
        requests: args.redis_requests,
        keyspace,
    };
    settle(None).await;
    eprintln!(
        "bench: redis-benchmark, enter.lua on master :{}",
        redis.port
    );
    record(
        redis
            .benchmark(&benchmark(
                "entry (redis-benchmark, enter.lua)",
                &enter,
                100_000_000,
            ))
            .await?,
    );
    enter_numbered(&redis, &enter, POLLED_FANS)?;
    settle(None).await;
    eprintln!("bench: redis-benchmark, status.lua");
    record(
        redis
            .benchmark(&benchmark(
                "status (redis-benchmark, status.lua)",
                &status,
                POLLED_FANS as u64,
            ))
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

/// Enters `user:<12 digits>` for 0..count, as redis-benchmark's
/// `__rand_int__` names them, through `redis-cli --pipe`.
fn enter_numbered(redis: &RedisTarget, sha: &str, count: usize) -> Result<()> {
    let mut commands = String::new();
    for i in 0..count {
        let mut args = vec![
            "EVALSHA".to_owned(),
            sha.to_owned(),
            redis.keys.len().to_string(),
        ];
        args.extend(redis.keys.iter().cloned());
        args.push(format!("user:{i:012}"));
        let _ = write!(commands, "*{}\r\n", args.len());
        for arg in args {
            let _ = write!(commands, "${}\r\n{arg}\r\n", arg.len());
        }
    }
    let path = std::env::temp_dir().join(format!("loadtest-bench-{}.resp", std::process::id()));
    std::fs::write(&path, commands)?;
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--pipe"])
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
