//! CPU accounting of the run: the generator (this process, `getrusage`),
//! the machine (`/proc/stat`) and each process of the stack
//! (`/proc/<pid>/stat`), sampled when the first fan arrives and when the
//! last one is done.
//!
//! - **Postgres** is the postmaster and every live child (backends,
//!   walwriter, checkpointer, …: each `/proc/*/stat` whose parent is the
//!   postmaster), each with the CPU of its own reaped children; a backend
//!   that exits during the run moves into the postmaster's reaped-children
//!   time, so it is still counted (with its CPU from before the run too, a
//!   small over-count).
//! - **Booking core** = core-service + Postgres + the broker; **waiting
//!   room** = queue-service + the six Redis nodes. The issuer is neither.
//! - Per sold ticket, the main job's figure holds every fan's traffic:
//!   waiting-room entries and polls, seat-map reads, refused holds,
//!   coupon claims, the outbox relay and consumers; the bench's figure is
//!   one hold and one payment only, so the two do not compare.

use std::{collections::BTreeMap, time::Duration, time::Instant};

use devstack::StackConfig;
use serde::Serialize;

/// Linux's `USER_HZ`: `/proc` gives CPU time in 1/100 s.
const USER_HZ: f64 = 100.0;

/// One component of the stack whose CPU is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Component {
    CoreService,
    Postgres,
    Broker,
    QueueService,
    Redis,
}

impl Component {
    const ALL: [Self; 5] = [
        Self::CoreService,
        Self::Postgres,
        Self::Broker,
        Self::QueueService,
        Self::Redis,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::CoreService => "core-service",
            Self::Postgres => "postgres",
            Self::Broker => "broker",
            Self::QueueService => "queue-service",
            Self::Redis => "redis",
        }
    }

    fn in_booking_core(self) -> bool {
        matches!(self, Self::CoreService | Self::Postgres | Self::Broker)
    }
}

/// The stack's processes, found through devstack's PID files.
pub(super) struct Stack {
    /// Plain processes (services, Redis nodes, the broker).
    pids: Vec<(Component, i32)>,
    /// The postmaster, whose children are counted too.
    postmaster: Option<i32>,
}

impl Stack {
    /// The running processes of `config`'s stack.
    pub(super) fn find(config: &StackConfig) -> Self {
        let services = devstack::services::pids(config);
        let mut pids = Vec::new();
        for (component, name) in [
            (Component::CoreService, "core-service"),
            (Component::QueueService, "queue-service"),
        ] {
            if let Some(pid) = services.get(name) {
                pids.push((component, *pid));
            }
        }
        pids.extend(
            devstack::redis::pids(config)
                .into_iter()
                .map(|p| (Component::Redis, p)),
        );
        if let Some(pid) = devstack::kafka::pid(config) {
            pids.push((Component::Broker, pid));
        }
        Self {
            pids,
            postmaster: devstack::postgres::pid(config),
        }
    }

    /// CPU so far of the machine, this process and each component.
    pub(super) fn sample(&self) -> Sample {
        let mut components: BTreeMap<Component, Duration> = BTreeMap::new();
        for (component, pid) in &self.pids {
            if let Some(cpu) = process_cpu(*pid) {
                *components.entry(*component).or_default() += cpu.own + cpu.reaped;
            }
        }
        if let Some(postmaster) = self.postmaster
            && let Some(cpu) = process_cpu(postmaster)
        {
            let children: Duration = children_of(postmaster)
                .into_iter()
                .filter_map(process_cpu)
                .map(|c| c.own + c.reaped)
                .sum();
            components.insert(Component::Postgres, cpu.own + cpu.reaped + children);
        }
        Sample {
            at: Instant::now(),
            machine: machine_busy(),
            generator: own_cpu(),
            components,
        }
    }
}

/// CPU times read at one moment.
pub(super) struct Sample {
    at: Instant,
    machine: Duration,
    generator: Duration,
    components: BTreeMap<Component, Duration>,
}

/// CPU over the run, in the JSON report.
#[derive(Debug, Serialize)]
pub(super) struct CpuReport {
    /// Wall-clock seconds between the samples (first arrival to last fan
    /// done).
    pub(super) wall_seconds: f64,
    /// Cores of the machine.
    pub(super) cores: usize,
    /// CPU seconds the machine was busy (all but idle and iowait in
    /// `/proc/stat`): everything on the box, other builds included.
    pub(super) machine_busy_cpu_seconds: f64,
    /// Busy CPU as a share of the cores over the wall time (0–1).
    pub(super) machine_utilisation: f64,
    /// CPU seconds of this process (user + system, `getrusage`).
    pub(super) generator_cpu_seconds: f64,
    /// The generator's CPU as a share of the machine's busy CPU (0–1).
    pub(super) generator_share_of_busy: Option<f64>,
    /// CPU seconds of each stack component found.
    pub(super) server_cpu_seconds: BTreeMap<Component, f64>,
    /// Components whose process was not found (not counted).
    pub(super) missing: Vec<&'static str>,
    /// core-service + Postgres + broker, CPU seconds.
    pub(super) booking_core_cpu_seconds: f64,
    /// queue-service + Redis, CPU seconds.
    pub(super) waiting_room_cpu_seconds: f64,
    /// Busy CPU seconds of neither the generator nor the stack (other
    /// processes on the box, the issuer, kernel work not charged to a
    /// process).
    pub(super) other_cpu_seconds: f64,
    /// Server CPU per sold ticket in ms; `null` when none sold.
    pub(super) per_sold_ticket_ms: Option<PerTicket>,
}

/// Server CPU per sold ticket, in ms.
#[derive(Debug, Serialize)]
pub(super) struct PerTicket {
    pub(super) total: f64,
    pub(super) booking_core: f64,
    pub(super) waiting_room: f64,
}

/// The CPU between `before` and `after`, and per ticket of `seats_sold`.
pub(super) fn report(before: &Sample, after: &Sample, seats_sold: u64) -> CpuReport {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let machine = after.machine.saturating_sub(before.machine).as_secs_f64();
    let generator = after
        .generator
        .saturating_sub(before.generator)
        .as_secs_f64();
    let mut server = BTreeMap::new();
    let mut missing = Vec::new();
    for component in Component::ALL {
        match (
            before.components.get(&component),
            after.components.get(&component),
        ) {
            (Some(b), Some(a)) => {
                server.insert(component, round3(a.saturating_sub(*b).as_secs_f64()));
            }
            _ => missing.push(component.name()),
        }
    }
    let sum = |core: bool| -> f64 {
        server
            .iter()
            .filter(|(c, _)| c.in_booking_core() == core)
            .map(|(_, s)| s)
            .sum()
    };
    let (booking_core, waiting_room) = (sum(true), sum(false));
    let per_ticket = |seconds: f64| round3(seconds * 1_000.0 / seats_sold as f64);
    CpuReport {
        wall_seconds: round3(wall),
        cores,
        machine_busy_cpu_seconds: round3(machine),
        machine_utilisation: round3(if wall > 0.0 {
            machine / (wall * cores as f64)
        } else {
            0.0
        }),
        generator_cpu_seconds: round3(generator),
        generator_share_of_busy: (machine > 0.0).then(|| round3(generator / machine)),
        server_cpu_seconds: server,
        missing,
        booking_core_cpu_seconds: round3(booking_core),
        waiting_room_cpu_seconds: round3(waiting_room),
        other_cpu_seconds: round3((machine - generator - booking_core - waiting_room).max(0.0)),
        per_sold_ticket_ms: (seats_sold > 0).then(|| PerTicket {
            total: per_ticket(booking_core + waiting_room),
            booking_core: per_ticket(booking_core),
            waiting_room: per_ticket(waiting_room),
        }),
    }
}

/// Prints `c` for a terminal.
pub(super) fn print(c: &CpuReport) {
    println!(
        "cpu over {:.1} s: machine busy {:.1} CPU s ({:.0} % of {} cores); generator {:.1} CPU s = {} of the busy CPU; other processes {:.1} CPU s",
        c.wall_seconds,
        c.machine_busy_cpu_seconds,
        c.machine_utilisation * 100.0,
        c.cores,
        c.generator_cpu_seconds,
        c.generator_share_of_busy
            .map_or_else(|| "n/a".to_owned(), |s| format!("{:.0} %", s * 100.0)),
        c.other_cpu_seconds,
    );
    let parts: Vec<String> = c
        .server_cpu_seconds
        .iter()
        .map(|(component, s)| format!("{} {s:.1}", component.name()))
        .collect();
    println!(
        "server cpu: booking core {:.1} CPU s, waiting room {:.1} CPU s ({}){}",
        c.booking_core_cpu_seconds,
        c.waiting_room_cpu_seconds,
        parts.join(", "),
        if c.missing.is_empty() {
            String::new()
        } else {
            format!("; not found: {}", c.missing.join(", "))
        }
    );
    if let Some(t) = &c.per_sold_ticket_ms {
        println!(
            "server cpu per sold ticket: {:.1} ms (booking core {:.1} ms, waiting room {:.1} ms; every fan's traffic, not the bench's hold + pay)",
            t.total, t.booking_core, t.waiting_room
        );
    }
}

fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

/// Busy CPU of the machine: every field of `/proc/stat`'s `cpu` line but
/// idle and iowait (guest time is inside user already).
fn machine_busy() -> Duration {
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

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / USER_HZ)
}

/// User + system CPU of this process, every thread.
fn own_cpu() -> Duration {
    use nix::sys::{
        resource::{UsageWho, getrusage},
        time::TimeVal,
    };
    let tv = |t: TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_usec()).unwrap_or(0) * 1_000,
        )
    };
    getrusage(UsageWho::RUSAGE_SELF)
        .map_or(Duration::ZERO, |u| tv(u.user_time()) + tv(u.system_time()))
}

/// CPU of one process from `/proc/<pid>/stat`.
struct ProcessCpu {
    /// utime + stime, all threads.
    own: Duration,
    /// cutime + cstime: children it has reaped.
    reaped: Duration,
    parent: i32,
}

/// The fields after the command name (which may hold spaces and
/// parentheses): state is field 3, ppid 4, utime 14, stime 15, cutime 16,
/// cstime 17.
fn parse_stat(stat: &str) -> Option<ProcessCpu> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<i64>().ok();
    let positive = |n: usize| Some(u64::try_from(field(n)?).unwrap_or(0));
    Some(ProcessCpu {
        own: ticks(positive(14)? + positive(15)?),
        reaped: ticks(positive(16)? + positive(17)?),
        parent: i32::try_from(field(4)?).ok()?,
    })
}

fn process_cpu(pid: i32) -> Option<ProcessCpu> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Live processes whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| process_cpu(*pid).is_some_and(|c| c.parent == parent))
        .collect()
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
        assert_eq!(cpu.own, Duration::from_secs(3));
        assert_eq!(cpu.reaped, Duration::from_millis(500));
    }

    #[test]
    fn server_cpu_is_split_per_component_and_per_ticket() {
        let at = Instant::now();
        let sample = |machine: u64, generator: u64, core: u64, redis: u64| Sample {
            at,
            machine: Duration::from_secs(machine),
            generator: Duration::from_secs(generator),
            components: BTreeMap::from([
                (Component::CoreService, Duration::from_secs(core)),
                (Component::Redis, Duration::from_secs(redis)),
            ]),
        };
        let cpu = report(&sample(10, 1, 2, 3), &sample(30, 6, 6, 5), 100);
        assert_eq!(cpu.generator_share_of_busy, Some(0.25));
        assert!((cpu.booking_core_cpu_seconds - 4.0).abs() < 1e-9);
        assert!((cpu.waiting_room_cpu_seconds - 2.0).abs() < 1e-9);
        assert!((cpu.other_cpu_seconds - 9.0).abs() < 1e-9);
        let per = cpu.per_sold_ticket_ms.as_ref().unwrap();
        assert!((per.total - 60.0).abs() < 1e-9);
        assert_eq!(cpu.missing, ["postgres", "broker", "queue-service"]);
        let json = serde_json::to_value(&cpu).unwrap();
        assert_eq!(json["server_cpu_seconds"]["core-service"], 4.0);
    }

    #[test]
    fn this_process_is_found_as_a_child_of_its_parent() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent = process_cpu(me).unwrap().parent;
        assert!(children_of(parent).contains(&me));
    }
}
