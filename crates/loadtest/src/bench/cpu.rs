//! CPU accounting of a phase (`/proc` for the machine and the services,
//! rusage for the load generator, all read through [`crate::procfs`]) and
//! settling the machine between phases.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result};
use sqlx::PgConnection;

use crate::procfs::{self, children_cpu, machine_busy};

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
        wait_for_outbox(db, Duration::from_secs(30), Duration::from_millis(100)).await;
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

/// Waits until the outbox relay has published every row (no `outbox` row
/// with `published_at` NULL): counts them every `poll`, at most `timeout /
/// poll` times (so a little over `timeout` in all, with the queries). A
/// count that fails counts as none pending.
pub(super) async fn wait_for_outbox(db: &mut PgConnection, timeout: Duration, poll: Duration) {
    for _ in 0..timeout.as_millis() / poll.as_millis().max(1) {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&mut *db)
                .await
                .unwrap_or(0);
        if pending == 0 {
            return;
        }
        tokio::time::sleep(poll).await;
    }
}

/// utime + stime of `pid` so far; zero when it is not running.
fn process_cpu(pid: i32) -> Duration {
    procfs::process_cpu(pid).map_or(Duration::ZERO, |cpu| cpu.own())
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
    let pids = procfs::StackPids::find(config);
    let component = |name: &'static str, roots: Vec<i32>| Component { name, roots };
    vec![
        component("core-service", pids.core_service.into_iter().collect()),
        component("queue-service", pids.queue_service.into_iter().collect()),
        component("postgres", pids.postgres.into_iter().collect()),
        component("redis (6 nodes)", pids.redis),
        component("broker", pids.broker.into_iter().collect()),
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
    let table: HashMap<i32, (i32, u64)> = procfs::processes()
        .into_iter()
        .map(|(pid, cpu)| (pid, (cpu.parent, cpu.own_ticks + cpu.reaped_ticks)))
        .collect();
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
            procfs::ticks(ticks)
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
