//! Load and benchmark tools of onsale, run against the local stack that
//! `devstack` brings up, with queue-service and core-service started as
//! release builds. The `loadtest` binary has one subcommand per tool:
//!
//! - `onsale`: the on-sale simulation, the README's main job: many fans,
//!   few seats, through the real services, with the checks that matter.
//! - `bench`: service load (wrk) against raw baselines (redis-benchmark on
//!   queue-service's own Lua and core-service's coupon claim script, pgbench
//!   on core-service's own SQL), written into the generated block of
//!   `docs/benchmarks.md`.
//! - `events`: outbox relay and consumer runtime throughput next to raw
//!   rdkafka baselines.
//! - `release`: latency from a payment's commit to the release of the
//!   buyer's waiting-room slot, through Kafka.
//! - `audit`: checks the stores against onsale's promises after any run
//!   (no seat sold twice, one payment, debit and event per sale, overdue
//!   holds expired, active sets within their bounds); exits 1 on a
//!   violation.
//!
//! Every HTTP call goes through [`onsale_client`], as a signed-in fan
//! (`Authorization: Bearer <identity token>`, one token per fan, signed in
//! before the measured work) or with an admin key; the Redis key layout, the
//! Lua and the SQL come from the services' own crates.
//!
//! # Layout
//! - [`onsale`]: the simulation (`journey`: one fan; `tally`: counters and
//!   latencies; `coupons`: the first-come campaign and its checks;
//!   `ranking`: the concert ranking after the sale; `report`: figures,
//!   checks and the JSON report).
//! - [`bench`]: the benchmark (`queue_phases`, `core_phases`,
//!   `coupon_phase`: its parts; `wrk`, `pgbench`, `redis`: the generators;
//!   `cpu`: CPU accounting and settling; `report`: the Markdown section).
//! - [`events`], [`release`]: the event-flow benchmarks.
//! - [`audit`]: the audit (`postgres`: the booking core's rules, one query
//!   each; `rooms`: the waiting rooms in Redis).
//! - [`setup`]: what the tools share: services (and a release build of the
//!   stack's OIDC issuer) started with the tool's settings, the admin keys,
//!   fans signed in through the issuer's `POST /token`, seeding (concerts,
//!   balances, rooms, admitted fans).
//! - [`procfs`]: CPU time read from Linux's `/proc` (the machine's busy
//!   time, a process's own and reaped children's time, a process's
//!   children, the stack's PIDs through devstack) and `getrusage`, for
//!   `bench` and `onsale` alike.
//! - [`stats`]: nearest-rank percentiles.
//!
//! Also here: `k6/` (k6 scripts against running services) and
//! `scripts/redis-scripts.sh` (the Lua scripts on a bare Redis).

pub mod audit;
pub mod bench;
pub mod events;
pub mod onsale;
pub mod procfs;
pub mod release;
pub mod setup;
pub mod stats;
