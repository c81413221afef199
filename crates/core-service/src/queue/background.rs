//! The calls to the waiting room that leave the request path: freeing a
//! paid session's slot right after the payment commits, so that admission
//! keeps flowing when Kafka does not, and the inventory reports.
//!
//! The `payment.completed` event still releases the slot (queue-service's
//! consumer): it is the guaranteed path, this one is the fast one. Both
//! release by session id (`ReleaseAccess`), which frees only that
//! admission session and does so once: whichever arrives second finds the
//! session gone and changes nothing, so a slot is never freed twice and a
//! newer admission of the same fan is never ended.
//!
//! Releases leave the payment path through a bounded queue
//! ([`QUEUE_DEPTH`]) and are sent by one task, at most [`IN_FLIGHT`] at
//! once, each retried with exponential backoff ([`backon`]) for about a
//! second while queue-service is unreachable or overloaded. A payment never
//! waits for (or fails with) its release. A release that is dropped (full
//! queue, shutdown) or still fails after its retries is left to the event,
//! and counted in `queue_releases_total{result}`.
//!
//! The same task sends the inventory reports (`ReportInventory`), once and
//! without retries: the next report follows within a second.

use std::{sync::Arc, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use onsale_proto::queue::v1::{
    ReleaseAccessRequest, ReportInventoryRequest, waiting_room_client::WaitingRoomClient,
};
use tokio::sync::{Semaphore, mpsc};
use tonic::{
    Code, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::metrics;

/// Calls waiting to be sent: a few seconds of a big sale's payments.
pub(super) const QUEUE_DEPTH: usize = 4_096;

/// A call to queue-service made off the request path.
#[derive(Debug)]
pub(super) enum Call {
    /// Free a paid session's slot.
    Release(ReleaseAccessRequest),
    /// Report a performance's inventory.
    Inventory(ReportInventoryRequest),
}

/// Calls in flight at once.
const IN_FLIGHT: usize = 64;

/// Whether a failed `ReleaseAccess` may succeed when sent again: transport
/// failures and overload, not a refused credential or a malformed request.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
    )
}

/// Sends every queued call until every sender is gone. Each call is
/// bounded by `timeout`; a release that fails retryably is sent again after
/// 50, 100, 200 and 400 ms (with jitter), then left to the event.
pub(super) async fn run<F>(
    client: WaitingRoomClient<InterceptedService<Channel, F>>,
    mut queue: mpsc::Receiver<Call>,
    timeout: Duration,
) where
    F: Interceptor + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(call) = queue.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move {
            match call {
                Call::Release(request) => release(client, request, timeout).await,
                Call::Inventory(request) => report(client, request, timeout).await,
            }
            drop(slot);
        });
    }
}

async fn report<F>(
    mut client: WaitingRoomClient<InterceptedService<Channel, F>>,
    request: ReportInventoryRequest,
    timeout: Duration,
) where
    F: Interceptor + Clone + Send + Sync + 'static,
{
    let event = request.event_id.clone();
    match tokio::time::timeout(timeout, client.report_inventory(request)).await {
        Ok(Ok(reply)) if reply.get_ref().recorded => metrics::inventory_report("recorded"),
        // The performance is sold without a waiting room.
        Ok(Ok(_)) => metrics::inventory_report("no_room"),
        Ok(Err(status)) => {
            metrics::inventory_report("failed");
            tracing::debug!(event_id = %event, code = ?status.code(), "an inventory report failed");
        }
        Err(_) => metrics::inventory_report("failed"),
    }
}

async fn release<F>(
    client: WaitingRoomClient<InterceptedService<Channel, F>>,
    request: ReleaseAccessRequest,
    timeout: Duration,
) where
    F: Interceptor + Clone + Send + Sync + 'static,
{
    let attempt = || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            tokio::time::timeout(timeout, client.release_access(request))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("ReleaseAccess timed out")))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_millis(400))
        .with_max_times(4)
        .with_jitter();
    match attempt
        .retry(backoff)
        .when(|status: &Status| retryable(status.code()))
        .await
    {
        Ok(reply) if reply.get_ref().released => metrics::queue_release("released"),
        // The event got there first, or the session had lapsed.
        Ok(_) => metrics::queue_release("none"),
        Err(status) => {
            metrics::queue_release("failed");
            tracing::warn!(
                event_id = %request.event_id,
                code = ?status.code(),
                error = %status.message(),
                "releasing a paid session failed; payment.completed will release it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(retryable(Code::Unavailable));
        assert!(retryable(Code::DeadlineExceeded));
        assert!(!retryable(Code::Unauthenticated));
        assert!(!retryable(Code::InvalidArgument));
        assert!(!retryable(Code::PermissionDenied));
    }
}
