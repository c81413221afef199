//! Graceful shutdown.
//!
//! A process calls [`shutdown_signal`] once and hands a clone of one
//! [`CancellationToken`] to its HTTP server, gRPC server and every worker.
//! [`drain`] then waits for all of them up to a deadline, so a SIGTERM from
//! ECS finishes in-flight requests and stores Kafka offsets before the task
//! is killed (ECS sends SIGKILL 30 s after SIGTERM by default).

use std::{future::Future, time::Duration};

pub use tokio_util::sync::CancellationToken;

/// Completes on SIGTERM or ctrl-c (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "listening for ctrl-c failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// A token cancelled when [`shutdown_signal`] completes.
pub fn token_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    token
}

/// Waits for `work` (typically a join of every server and worker) at most
/// `deadline` after `token` is cancelled.
///
/// Returns `true` when everything finished, `false` when the deadline cut it
/// off.
pub async fn drain<F: Future<Output = ()>>(
    token: &CancellationToken,
    deadline: Duration,
    work: F,
) -> bool {
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => return true,
        () = token.cancelled() => {}
    }
    match tokio::time::timeout(deadline, work).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "drain deadline passed; stopping anyway"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_at_the_deadline() {
        let token = CancellationToken::new();
        token.cancel();
        let finished = drain(&token, Duration::from_secs(5), std::future::pending()).await;
        assert!(!finished);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_work_that_finishes_in_time() {
        let token = CancellationToken::new();
        token.cancel();
        let finished = drain(
            &token,
            Duration::from_secs(5),
            tokio::time::sleep(Duration::from_secs(1)),
        )
        .await;
        assert!(finished);
    }
}
