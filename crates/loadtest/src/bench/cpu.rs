//! CPU accounting of a phase (`/proc` for the machine and the services,
//! rusage for the load generator) and settling the machine between phases.

use std::{collections::HashMap, time::Duration};

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

/// One component of the local stack and the processes it is started as
/// (their descendants belong to it too).
pub(super) struct Component {
    /// e.g. `postgres`.
    pub(super) name: &'static str,
    /// The PIDs devstack recorded.
    pub(super) roots: Vec<i32>,
}

/// Every server process of the stack devstack runs: both services, the six
/// Redis nodes, Postgres (the postmaster, whose backends are its children)
/// and the broker. The issuer is left out: fans sign in before a phase.
pub(super) fn stack_components(config: &devstack::StackConfig) -> Vec<Component> {
    let services = devstack::services::pids(config);
    let service = |name: &'static str| Component {
        name,
        roots: services.get(name).copied().into_iter().collect(),
    };
    vec![
        service("core-service"),
        service("queue-service"),
        Component {
            name: "postgres",
            roots: devstack::postgres::pid(config).into_iter().collect(),
        },
        Component {
            name: "redis (6 nodes)",
            roots: devstack::redis::pids(config),
        },
        Component {
            name: "broker",
            roots: devstack::kafka::pid(config).into_iter().collect(),
        },
    ]
}

/// CPU used so far by each component's processes and all their live
/// descendants, plus what their exited children used (`cutime`, `cstime`:
/// a Postgres backend that ends is counted in the postmaster once reaped),
/// in `components` order. Two snapshots subtract into the CPU between
/// them: a child that exits in between moves from its own line to its
/// parent's, and one born in between starts from nothing.
pub(super) fn stack_cpu(components: &[Component]) -> Vec<Duration> {
    // pid → (parent, own CPU + reaped children's CPU, in ticks).
    let mut table: HashMap<i32, (i32, u64)> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            // After the name: state (3), ppid (4), … utime (14), stime (15),
            // cutime (16), cstime (17).
            let fields: Vec<&str> = after.split_whitespace().collect();
            let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
            let (Some(parent), Some(u), Some(s), Some(cu), Some(cs)) = (
                fields.get(1).and_then(|v| v.parse::<i32>().ok()),
                number(11),
                number(12),
                number(13),
                number(14),
            ) else {
                continue;
            };
            table.insert(pid, (parent, u + s + cu + cs));
        }
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, (parent, _)) in &table {
        children.entry(*parent).or_default().push(*pid);
    }
    components
        .iter()
        .map(|component| {
            let mut ticks = 0;
            let mut stack = component.roots.clone();
            while let Some(pid) = stack.pop() {
                ticks += table.get(&pid).map_or(0, |(_, t)| *t);
                stack.extend(children.get(&pid).into_iter().flatten());
            }
            Duration::from_secs_f64(ticks as f64 / USER_HZ)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_tree_counts_its_children() {
        let me = i32::try_from(std::process::id()).unwrap();
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let child_pid = i32::try_from(child.id()).unwrap();
        let components = [
            Component {
                name: "me",
                roots: vec![me],
            },
            Component {
                name: "child",
                roots: vec![child_pid],
            },
        ];
        let cpu = stack_cpu(&components);
        let _ = child.kill();
        let _ = child.wait();
        assert!(cpu[1] > Duration::ZERO, "the busy child used no CPU");
        assert!(
            cpu[0] >= cpu[1],
            "the tree of the parent includes its child"
        );
    }
}
