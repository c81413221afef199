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
//!
//! The reading itself (`/proc`, `getrusage`, devstack's PIDs) is
//! [`crate::procfs`].

use std::{collections::BTreeMap, time::Duration, time::Instant};

use devstack::StackConfig;
use serde::Serialize;

use crate::procfs::{StackPids, children_of, machine_busy, own_cpu, process_cpu};

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
    /// Plain processes (services, Redis nodes, the broker), and the
    /// postmaster, whose children are counted too.
    pids: StackPids,
}

impl Stack {
    /// The running processes of `config`'s stack.
    pub(super) fn find(config: &StackConfig) -> Self {
        Self {
            pids: StackPids::find(config),
        }
    }

    /// CPU so far of the machine, this process and each component.
    pub(super) fn sample(&self) -> Sample {
        let p = &self.pids;
        let plain = p
            .core_service
            .iter()
            .map(|pid| (Component::CoreService, pid))
            .chain(
                p.queue_service
                    .iter()
                    .map(|pid| (Component::QueueService, pid)),
            )
            .chain(p.redis.iter().map(|pid| (Component::Redis, pid)))
            .chain(p.broker.iter().map(|pid| (Component::Broker, pid)));
        let mut components: BTreeMap<Component, Duration> = BTreeMap::new();
        for (component, pid) in plain {
            if let Some(cpu) = process_cpu(*pid) {
                *components.entry(component).or_default() += cpu.own() + cpu.reaped();
            }
        }
        if let Some(postmaster) = p.postgres
            && let Some(cpu) = process_cpu(postmaster)
        {
            let children: Duration = children_of(postmaster)
                .into_iter()
                .filter_map(process_cpu)
                .map(|c| c.own() + c.reaped())
                .sum();
            components.insert(Component::Postgres, cpu.own() + cpu.reaped() + children);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
