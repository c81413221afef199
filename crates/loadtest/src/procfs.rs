//! CPU time from Linux's `/proc`, read in one place for every tool: the
//! machine's busy time (`/proc/stat`), a process's own CPU and that of the
//! children it has reaped (`/proc/<pid>/stat`), the live children of a
//! process, and the PIDs of the local stack's server processes (through
//! devstack's PID files). Also the `getrusage` side: this process and the
//! children it has reaped.
//!
//! `/proc` gives CPU time in ticks of `USER_HZ`, which is 100 on every
//! Linux build ([`USER_HZ`]). What cannot be read counts as nothing (zero,
//! `None` or empty), so a process that exits between two reads is skipped
//! rather than an error.

use std::time::Duration;

use devstack::StackConfig;
use nix::sys::{
    resource::{UsageWho, getrusage},
    time::TimeVal,
};

/// Linux's `USER_HZ`: `/proc` gives CPU time in 1/100 s.
pub const USER_HZ: f64 = 100.0;

/// `n` ticks of [`USER_HZ`] as a duration.
pub fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / USER_HZ)
}

/// Busy CPU of the machine so far, every core: every field of
/// `/proc/stat`'s `cpu` line (user nice system idle iowait irq softirq
/// steal) but idle and iowait; guest time is inside user already.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let busy: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    ticks(busy)
}

/// CPU of one process so far, from `/proc/<pid>/stat`, in ticks of
/// [`USER_HZ`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessCpu {
    /// utime + stime: the process itself, all threads.
    pub own_ticks: u64,
    /// cutime + cstime: the children it has reaped (waited for).
    pub reaped_ticks: u64,
    /// The parent's PID (ppid).
    pub parent: i32,
}

impl ProcessCpu {
    /// utime + stime as a duration.
    pub fn own(&self) -> Duration {
        ticks(self.own_ticks)
    }

    /// cutime + cstime as a duration.
    pub fn reaped(&self) -> Duration {
        ticks(self.reaped_ticks)
    }
}

/// Parses a `/proc/<pid>/stat` line. The fields after the command name
/// (which may hold spaces and parentheses, so it ends at the last `)`):
/// state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
/// `None` when a field is missing.
pub fn parse_stat(stat: &str) -> Option<ProcessCpu> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let positive = |n: usize| Some(u64::try_from(field(n)?).unwrap_or(0));
    Some(ProcessCpu {
        own_ticks: positive(14)? + positive(15)?,
        reaped_ticks: positive(16)? + positive(17)?,
        parent: i32::try_from(field(4)?).ok()?,
    })
}

/// CPU so far of process `pid`; `None` when it is not running (or its
/// `/proc/<pid>/stat` cannot be read).
pub fn process_cpu(pid: i32) -> Option<ProcessCpu> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every live process that could be read, with its CPU so far.
pub fn processes() -> Vec<(i32, ProcessCpu)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid = e.ok()?.file_name().to_str()?.parse::<i32>().ok()?;
            Some((pid, process_cpu(pid)?))
        })
        .collect()
}

/// Live processes whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, cpu)| cpu.parent == parent)
        .map(|(pid, _)| pid)
        .collect()
}

/// User + system CPU of this process so far, every thread (`getrusage`).
pub fn own_cpu() -> Duration {
    rusage_cpu(UsageWho::RUSAGE_SELF)
}

/// User + system CPU so far of the children this process has reaped
/// (`getrusage`): a finished load generator, for one.
pub fn children_cpu() -> Duration {
    rusage_cpu(UsageWho::RUSAGE_CHILDREN)
}

fn rusage_cpu(who: UsageWho) -> Duration {
    let tv = |t: TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
        )
    };
    getrusage(who).map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
}

/// The running server processes of the local stack, from devstack's PID
/// files; one that is not running is `None` (or left out). The issuer is
/// not here: fans sign in before anything is measured.
#[derive(Debug, Clone, Default)]
pub struct StackPids {
    /// core-service.
    pub core_service: Option<i32>,
    /// queue-service.
    pub queue_service: Option<i32>,
    /// The postmaster; Postgres's backends and workers are its children.
    pub postgres: Option<i32>,
    /// The Redis nodes (six in the stack).
    pub redis: Vec<i32>,
    /// The Kafka-compatible broker.
    pub broker: Option<i32>,
}

impl StackPids {
    /// The running processes of `config`'s stack.
    pub fn find(config: &StackConfig) -> Self {
        let services = devstack::services::pids(config);
        Self {
            core_service: services.get("core-service").copied(),
            queue_service: services.get("queue-service").copied(),
            postgres: devstack::postgres::pid(config),
            redis: devstack::redis::pids(config),
            broker: devstack::kafka::pid(config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "4242 (postgres: onsale (x) idle) S 17 4242 4242 0 -1 4194560 \
                    100 0 0 0 250 50 30 20 20 0 1 0 12345 1000 200";
        let cpu = parse_stat(line).unwrap();
        assert_eq!(cpu.parent, 17);
        assert_eq!(cpu.own(), Duration::from_secs(3));
        assert_eq!(cpu.reaped(), Duration::from_millis(500));
    }

    #[test]
    fn this_process_is_found_as_a_child_of_its_parent() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent = process_cpu(me).unwrap().parent;
        assert!(children_of(parent).contains(&me));
        assert!(processes().iter().any(|(pid, _)| *pid == me));
    }
}
