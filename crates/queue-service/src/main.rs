//! queue-service binary: loads settings, sets up telemetry, binds the
//! listeners and serves until SIGTERM or ctrl-c. `queue-service dlq list`
//! and `dlq replay` inspect and replay the dead letters of its
//! `payment.completed` consumer.

use anyhow::Context;
use clap::{Parser, Subcommand};
use queue_service::{Listeners, Settings};

/// mimalloc instead of glibc malloc: under load glibc's allocator took about
/// a third of a status poll's CPU and contended on its arena locks
/// (measured with perf and `loadtest bench`, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "queue-service", version, about = "onsale virtual waiting room")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP, gRPC and the admission loop (the default).
    Serve,
    /// Inspect or replay dead letters, e.g.
    /// `queue-service dlq replay --topic payment.completed`.
    #[command(subcommand)]
    Dlq(events::dlq::DlqCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    // Built from the settings, so `[runtime]` can size it.
    let runtime = settings
        .runtime
        .build()
        .context("starting the Tokio runtime")?;
    runtime.block_on(serve(cli, settings))
}

async fn serve(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let _telemetry =
        telemetry::init("queue-service", &settings.telemetry).context("setting up telemetry")?;
    if let Some(Command::Dlq(dlq)) = &cli.command {
        return events::dlq::execute(dlq, &settings.kafka)
            .await
            .context("dlq command failed");
    }
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind(settings.queue.http_addr)
            .await
            .with_context(|| format!("binding HTTP {}", settings.queue.http_addr))?,
        grpc: tokio::net::TcpListener::bind(settings.queue.grpc_addr)
            .await
            .with_context(|| format!("binding gRPC {}", settings.queue.grpc_addr))?,
    };
    let app = queue_service::build(settings)
        .await
        .context("starting queue-service")?;
    queue_service::run(app, listeners, platform::shutdown::token_on_signal())
        .await
        .context("serving")?;
    Ok(())
}
