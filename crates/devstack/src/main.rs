//! `devstack`: the local onsale stack (see the library docs).

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use devstack::{Endpoints, StackConfig, services, stack};

#[derive(Parser)]
#[command(
    version,
    about = "The local onsale stack: Redis Cluster, Postgres 15 and a Kafka-API broker on loopback"
)]
struct Cli {
    #[command(flatten)]
    config: StackConfig,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, start every component and wait until healthy.
    Up {
        /// Also build, migrate and start queue-service and core-service.
        #[arg(long)]
        services: bool,
        /// Build the services with --release.
        #[arg(long, requires = "services")]
        release: bool,
    },
    /// Stop every process devstack started, by recorded PID.
    Down {
        /// Also delete all data and logs.
        #[arg(long)]
        purge: bool,
    },
    /// Report each component's health; exits 1 when any is unhealthy.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print `export ONSALE__…=…` lines for services and tests.
    Env,
    /// The on-sale simulation: stack, services, seed, many fans, report.
    Onsale(devstack::onsale::OnsaleArgs),
    /// Service load against raw baselines (redis-benchmark, pgbench) in one
    /// run; writes the generated section of docs/benchmarks.md.
    Bench(devstack::bench::BenchArgs),
    /// Bring the stack up and run `cargo test --workspace` against it.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("devstack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(config: &StackConfig) -> Result<Endpoints> {
    let config = config.clone();
    // The lock is a blocking file lock and `up` starts processes: keep both
    // off the async workers.
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        stack::with_lock(&config, || runtime.block_on(stack::up(&config)))
    })
    .await?
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Cmd::Up {
            services: with_services,
            release,
        } => {
            let endpoints = up(&config).await?;
            if with_services {
                services::start(&config, &endpoints, release).await?;
            }
            print_status(&config, false).await;
            eprintln!(
                "\nlogs: {}\nnext: eval \"$(cargo run -q -p devstack -- env)\"",
                config.logs_dir().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { purge } => {
            let stopped = tokio::task::spawn_blocking(move || stack::down(&config, purge)).await?;
            eprintln!(
                "stopped: {} service(s), {} redis node(s), postgres: {}, kafka: {}{}",
                stopped.services,
                stopped.redis_nodes,
                stopped.postgres,
                stopped.kafka,
                if purge { "; data purged" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => Ok(if print_status(&config, json).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Cmd::Env => {
            for (key, value) in Endpoints::of(&config).env_vars() {
                println!("export {key}={value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Onsale(args) => {
            let endpoints = up(&config).await?;
            let passed = devstack::onsale::run(&config, &endpoints, args).await?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Bench(args) => {
            let endpoints = up(&config).await?;
            devstack::bench::run(&config, &endpoints, args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { args } => {
            let endpoints = up(&config).await?;
            eprintln!("devstack: stack healthy; running cargo test --workspace");
            let status = Command::new("cargo")
                .current_dir(devstack::workspace_root())
                .args(["test", "--workspace"])
                .args(&args)
                .envs(endpoints.env_vars())
                .status()
                .context("running cargo test")?;
            eprintln!("devstack: the stack is still up; `cargo run -p devstack -- down` stops it");
            Ok(if status.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8)
            })
        }
    }
}

async fn print_status(config: &StackConfig, json: bool) -> bool {
    let all = stack::status(config).await;
    let healthy = all.iter().all(stack::ComponentStatus::healthy);
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        println!(
            "{:<16} {:<22} {:<40} state",
            "component", "endpoint", "pids"
        );
        for c in &all {
            let pids = c
                .pids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let state = c
                .problem
                .as_deref()
                .map_or_else(|| "healthy".to_owned(), |p| format!("UNHEALTHY: {p}"));
            println!("{:<16} {:<22} {:<40} {state}", c.name, c.endpoint, pids);
        }
    }
    healthy
}
