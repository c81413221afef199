//! CPU accounting of a phase (`/proc` for the machine and the services,
//! rusage for the load generator) and settling the machine between phases.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgConnection;

/// CPU spent during one phase.
pub(super) struct Cpu {
    machine: Duration,
    generator: Duration,
    service: Duration,
}

impl Cpu {
    pub(super) fn sut_us_per(&self, requests: u64) -> f64 {
        self.machine.saturating_sub(self.generator).as_secs_f64() * 1e6 / requests.max(1) as f64
    }

    pub(super) fn service_us_per(&self, requests: u64) -> f64 {
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
pub(super) async fn settle(db: Option<&mut PgConnection>) {
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
pub(super) async fn measured(
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

pub(super) fn machine_description() -> String {
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
