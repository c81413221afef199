//! `loadtest`: the load and benchmark tools (see the library docs). Each
//! subcommand brings the local stack up first (as `devstack up`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use devstack::{StackConfig, stack};
use loadtest::{audit, bench, events, onsale, release};

#[derive(Parser)]
#[command(
    version,
    about = "Load and benchmark tools of onsale, against the local stack and services"
)]
struct Cli {
    #[command(flatten)]
    config: StackConfig,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The on-sale simulation: stack, services, seed, many fans, report.
    Onsale(onsale::OnsaleArgs),
    /// Service load against raw baselines (redis-benchmark, pgbench) in one
    /// run; writes the generated section of docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Outbox relay and consumer runtime throughput against raw rdkafka.
    Events(events::EventsArgs),
    /// Latency from a payment's commit to the release of the buyer's slot.
    Release(release::ReleaseArgs),
    /// Checks the stores against onsale's promises after any run; exits 1
    /// on a violation.
    Audit(audit::AuditArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    run(Cli::parse()).await.unwrap_or_else(|error| {
        eprintln!("loadtest: {error:#}");
        ExitCode::FAILURE
    })
}

/// Exit 0 when the checks passed, 1 when any failed.
fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    let endpoints = stack::up_exclusive(&config).await?;
    match cli.command {
        Cmd::Onsale(args) => return Ok(verdict(onsale::run(&config, &endpoints, args).await?)),
        Cmd::Audit(args) => return Ok(verdict(audit::run(&endpoints, args).await?)),
        Cmd::Bench(args) => bench::run(&config, &endpoints, args).await?,
        Cmd::Events(args) => events::run(&endpoints, args).await?,
        Cmd::Release(args) => release::run(&config, &endpoints, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
