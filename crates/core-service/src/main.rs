//! The `core-service` binary: `serve` (default), `migrate`, `seed`, and
//! `dlq list` / `dlq replay` for the dead letters of its topics.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use core_service::Settings;
use platform::problem::ErrorChain;

/// mimalloc instead of glibc malloc: under load glibc's allocator took about
/// a third of a status poll's CPU and contended on its arena locks
/// (measured with perf and `loadtest bench`, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "core-service", version, about = "onsale booking core")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create demo data (refuses in production).
    Seed,
    /// Inspect or replay dead letters, e.g.
    /// `core-service dlq list --topic reservation.expiration`.
    #[command(subcommand)]
    Dlq(events::dlq::DlqCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("core-service: {}", ErrorChain(&error));
            return ExitCode::FAILURE;
        }
    };
    // Built from the settings, so `[runtime]` can size it.
    let runtime = match settings.runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("core-service: starting the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cli, settings))
}

async fn serve(cli: Cli, settings: Settings) -> ExitCode {
    let _telemetry = match telemetry::init("core-service", &settings.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("core-service: {}", ErrorChain(&error));
            return ExitCode::FAILURE;
        }
    };
    match execute(cli.command.unwrap_or(Command::Serve), settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %ErrorChain(error.as_ref()), "core-service failed");
            ExitCode::FAILURE
        }
    }
}

async fn execute(
    command: Command,
    settings: Settings,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if let Command::Dlq(dlq) = &command {
        events::dlq::execute(dlq, &settings.kafka).await?;
        return Ok(());
    }
    let environment = settings.environment;
    let addr = settings.core.http_addr;
    let app = core_service::build(settings).await?;
    match command {
        Command::Migrate => {
            core_service::migrate(app.db()).await?;
            tracing::info!("migrations applied");
        }
        Command::Seed => {
            let created = core_service::seed::seed(app.db(), environment).await?;
            let performances: Vec<i64> = created.performances.iter().map(|p| p.id).collect();
            tracing::info!(
                concert_id = created.concert_id,
                ?performances,
                "demo data created"
            );
        }
        Command::Dlq(_) => unreachable!("handled before the service is built"),
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            core_service::run(app, listener, platform::shutdown::token_on_signal()).await?;
        }
    }
    Ok(())
}
