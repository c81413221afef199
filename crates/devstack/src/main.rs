//! `devstack`: the local onsale stack (see the library docs).

use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use devstack::{Endpoints, StackConfig, issuer, issuer_process, services, stack, tls};

#[derive(Parser)]
#[command(
    version,
    about = "The local onsale stack: Redis Cluster, Postgres 15, a Kafka-API broker and an OIDC issuer on loopback"
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
        /// Also start the TLS-only stack beside it (Redis 7100-7105,
        /// Postgres 5434, certificates in `<dir>/tls/certs/`).
        #[arg(long)]
        tls: bool,
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
    Env {
        /// Point the stores at the TLS stack (`up --tls`) instead.
        #[arg(long)]
        tls: bool,
    },
    /// Print a fresh identity token (an RS256 JWT from the local issuer's
    /// keys, audience `onsale`) for `Authorization: Bearer …`.
    Token {
        /// The fan: the token's `sub`.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds (at most a week).
        #[arg(long, default_value_t = issuer::DEFAULT_TTL_SECONDS)]
        ttl: u64,
        /// The token's `aud`.
        #[arg(long, default_value = issuer::DEFAULT_AUDIENCE)]
        audience: String,
    },
    /// Serve the local OIDC issuer in the foreground (`up` runs this as a
    /// background process).
    #[command(name = issuer_process::SERVE_COMMAND, hide = true)]
    IssuerServe,
    /// Bring the stack up and run `cargo test` against it: the whole
    /// workspace, or the packages named with `-p`.
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

async fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Cmd::Up {
            services: with_services,
            release,
            tls: with_tls,
        } => {
            let endpoints = stack::up_exclusive(&config).await?;
            if with_tls {
                let tls = tls::up_exclusive(&config).await?;
                eprintln!(
                    "tls stack healthy: redis {}, postgres {}; CA {}\n\
                     its variables: cargo run -q -p devstack -- env --tls",
                    tls.redis_urls.join(","),
                    tls.database_url,
                    tls.certs.ca.display()
                );
            }
            if with_services {
                services::start(&config, &endpoints, release).await?;
            }
            print_status(&config, false).await;
            eprintln!(
                "\nlogs: {}\nnext: eval \"$(cargo run -q -p devstack -- env)\"\n\
                 a fan's identity token: cargo run -q -p devstack -- token --user fan-1",
                config.logs_dir().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { purge } => {
            let stopped = tokio::task::spawn_blocking(move || stack::down(&config, purge)).await?;
            eprintln!(
                "stopped: {} service(s), {} redis node(s), postgres: {}, kafka: {}, issuer: {}, tls stack: {} process(es){}",
                stopped.services,
                stopped.redis_nodes,
                stopped.postgres,
                stopped.kafka,
                stopped.issuer,
                stopped.tls,
                if purge { "; data purged" } else { "" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => Ok(if print_status(&config, json).await {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Cmd::Env { tls: with_tls } => {
            let mut vars = Endpoints::of(&config).env_vars();
            if with_tls {
                // The TLS stores replace the plain ones; the rest stays.
                let tls = tls::TlsEndpoints::of(&config).env_vars();
                vars.retain(|(key, _)| tls.iter().all(|(k, _)| k != key));
                vars.extend(tls);
            }
            for (key, value) in vars {
                println!("export {key}={value}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token {
            user,
            ttl,
            audience,
        } => {
            let token = issuer::mint_from_state_dir(
                &issuer::dir(&config),
                &config.issuer_url(),
                &user,
                ttl,
                &audience,
            )?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::IssuerServe => {
            issuer::run_server(
                &issuer::dir(&config),
                ([127, 0, 0, 1], config.issuer_port).into(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Test { args } => {
            let endpoints = stack::up_exclusive(&config).await?;
            // `--workspace` would override any `-p` the caller gave.
            let scope: &[&str] = if names_packages(&args) {
                &[]
            } else {
                &["--workspace"]
            };
            eprintln!(
                "devstack: stack healthy; running cargo test {}",
                scope.join(" ")
            );
            // One failing test binary must not hide the others' results.
            let fail_fast: &[&str] = if args.iter().any(|a| a == "--no-fail-fast") {
                &[]
            } else {
                &["--no-fail-fast"]
            };
            let status = Command::new("cargo")
                .current_dir(devstack::workspace_root())
                .arg("test")
                .args(scope)
                .args(fail_fast)
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

/// Whether `cargo test` arguments pick packages themselves (`-p`,
/// `--package`), before any `--` that starts the test binary's arguments.
fn names_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-p" || a.starts_with("--package") || (a.starts_with("-p") && a.len() > 2))
}

#[cfg(test)]
mod tests {
    use super::names_packages;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn package_flags_replace_the_whole_workspace() {
        assert!(names_packages(&args(&["-p", "queue-service"])));
        assert!(names_packages(&args(&["-pqueue-service"])));
        assert!(names_packages(&args(&["--package=core-service"])));
        assert!(!names_packages(&args(&["--release"])));
        assert!(!names_packages(&args(&["--", "-p"])));
    }
}
