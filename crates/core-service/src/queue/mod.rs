//! The waiting room (queue-service) over gRPC: access tokens are verified
//! on every reservation, release and payment.
//!
//! Every call presents the service credential (`core.queue_service_key`),
//! over TLS when the URL is `https://`: queue-service's certificate must
//! chain to `grpc.tls.ca_file` and name the URL's host, and
//! `grpc.tls.cert_file`/`key_file` are presented as a client certificate
//! when set.
//!
//! After a payment commits, [`QueueClient::release_completed`] frees the
//! session's slot through `ReleaseAccess` in the background (`background.rs`),
//! so a payment never waits on (or fails with) the waiting room, and the
//! slot is free again within a round trip even while Kafka is down; the
//! `payment.completed` event releases it too, as the guaranteed path. Once
//! released, a retry of the same `Idempotency-Key` still verifies through
//! [`QueueClient::verify_for_replay`], which accepts a completed session
//! and tells the payment path to replay and never to charge again.
//!
//! Concurrent checks are coalesced: one task sends them to
//! `VerifyAccessBatch`, one call at a time, with every check that arrived
//! while the previous call was in flight (up to
//! [`onsale_proto::MAX_VERIFY_BATCH`]). An idle
//! service sends each check alone at once; under an on-sale spike one call
//! and one Redis script serve many holds, where each used to cost its own
//! (measured in `docs/benchmarks.md`). The answer to each check is the one
//! `VerifyAccess` would give.
//!
//! Fail closed: when queue-service cannot answer within the deadline, the
//! check fails with [`QueueError::Unavailable`] (503 over HTTP), never
//! lets the request through.
//!
//! # Layout
//! - `mod.rs`: [`QueueClient`], the coalesced access checks;
//! - `background.rs`: the background calls: releases of paid sessions and
//!   inventory reports.

mod background;

use std::time::Duration;

use chrono::{DateTime, Utc};
use onsale_proto::{
    MAX_VERIFY_BATCH as MAX_BATCH,
    queue::v1::{
        CoreHealth, ReleaseAccessRequest, ReleaseReason, ReportInventoryRequest,
        VerifyAccessBatchRequest, VerifyAccessRequest, VerifyAccessResponse,
        verify_access_result::Outcome, waiting_room_client::WaitingRoomClient,
    },
};
use platform::{
    service_auth::present,
    settings::{Secret, TlsFiles},
};
use tokio::sync::{mpsc, oneshot};
use tonic::{
    Code, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::{
    domain::{PerformanceId, UserId},
    health::HealthReport,
    metrics,
    store::catalog::Inventory,
};

/// Checks waiting for the coalescing task before callers wait to enqueue:
/// one call's worth, so a queued check goes out in the call after the one
/// in flight, inside its deadline.
const QUEUE_DEPTH: usize = MAX_BATCH;

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The fan the token was issued to.
    pub user: UserId,
    /// The admission session the token belongs to (its `sid`): one fan's
    /// arrival in the event's waiting room.
    pub session_id: String,
    /// When the token (and so the admission) expires.
    pub expires_at: DateTime<Utc>,
    /// The session's purchase completed and its slot was released: the
    /// holder may replay a payment, not make a new one.
    pub completed: bool,
}

/// Longest session id accepted from queue-service, in bytes (the column's
/// limit); queue-service's are decimal arrival numbers.
const MAX_SESSION_ID_BYTES: usize = 128;

impl Access {
    /// The access a `VerifyAccess` answer describes.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when queue-service answered an invalid
    /// user id, an empty or oversized session id, or no expiry: an answer
    /// that breaks its contract admits nobody.
    fn from_response(response: VerifyAccessResponse) -> Result<Self, QueueError> {
        let nonsense = |what: String| QueueError::Unavailable(what.into());
        let user = UserId::parse(&response.user_id).map_err(|error| {
            nonsense(format!(
                "queue-service returned an invalid user id: {error}"
            ))
        })?;
        if response.session_id.is_empty() || response.session_id.len() > MAX_SESSION_ID_BYTES {
            return Err(nonsense(format!(
                "queue-service returned a session id of {} bytes",
                response.session_id.len()
            )));
        }
        let expires_at = response
            .expires_at
            .and_then(|at| {
                let nanos = u32::try_from(at.nanos).ok()?;
                DateTime::from_timestamp(at.seconds, nanos)
            })
            .ok_or_else(|| nonsense("queue-service returned no valid expiry".into()))?;
        Ok(Self {
            user,
            session_id: response.session_id,
            expires_at,
            completed: response.completed,
        })
    }
}

/// A client of the waiting room. Cheap to clone: every clone feeds the same
/// coalescing task, which owns one multiplexed HTTP/2 channel.
#[derive(Debug, Clone)]
pub struct QueueClient {
    checks: mpsc::Sender<Check>,
    /// Releases of paid sessions and inventory reports, for the task that
    /// sends them off the request path.
    calls: mpsc::Sender<background::Call>,
    /// A check waits at most this long in all: the call in flight, then
    /// its own.
    deadline: Duration,
}

/// One check waiting for its answer.
#[derive(Debug)]
struct Check {
    request: VerifyAccessRequest,
    answer: oneshot::Sender<Result<VerifyAccessResponse, Status>>,
}

/// Why an access token did not admit its holder.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Malformed, forged or expired token (`UNAUTHENTICATED`).
    #[error("the access token is invalid or expired")]
    InvalidToken,
    /// A token of another performance, or a released session
    /// (`PERMISSION_DENIED`).
    #[error("the access token does not admit this performance or was released")]
    AccessDenied,
    /// queue-service found the token or performance id malformed
    /// (`INVALID_ARGUMENT`).
    #[error("the access token or performance id is malformed")]
    Malformed,
    /// queue-service is unreachable, slow or failing, or answered nonsense:
    /// fail closed.
    #[error("queue-service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The queue-service URL is malformed, or its `[grpc.tls]` files cannot be
/// read or used.
#[derive(Debug, thiserror::Error)]
#[error("invalid core.queue_grpc_url or grpc.tls")]
pub struct QueueConfigError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl QueueClient {
    /// A lazily connecting client: start-up does not need queue-service, and
    /// the channel reconnects by itself. Every call is bounded by `timeout`
    /// and carries `service_key` as the service credential
    /// ([`platform::service_auth::present`]), without which queue-service
    /// answers `UNAUTHENTICATED` (a 503 here: fail closed, and the cause is
    /// logged). Spawns the coalescing task on the current Tokio runtime; it
    /// ends when the last clone is dropped.
    ///
    /// An `https://` `url` is called over TLS with `tls` (see the module
    /// docs); an `http://` one in plain text.
    ///
    /// # Errors
    /// [`QueueConfigError`] when `url` is not a valid URI or a `tls` file
    /// cannot be read or used.
    pub fn connect_lazy(
        url: &str,
        tls: &TlsFiles,
        timeout: Duration,
        service_key: Secret,
    ) -> Result<Self, QueueConfigError> {
        let config = |error: Box<dyn std::error::Error + Send + Sync>| QueueConfigError(error);
        let mut endpoint = Channel::from_shared(url.to_owned()).map_err(|e| config(e.into()))?;
        if url.starts_with("https://") {
            let mut client_tls = ClientTlsConfig::new();
            if let Some(ca) = tls.read_ca().map_err(|e| config(e.into()))? {
                client_tls = client_tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = tls.read_identity().map_err(|e| config(e.into()))? {
                client_tls = client_tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(client_tls)
                .map_err(|e| config(e.into()))?;
        }
        let channel = endpoint
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .connect_lazy();
        let (checks, queue) = mpsc::channel(QUEUE_DEPTH);
        let (calls, queued_calls) = mpsc::channel(background::QUEUE_DEPTH);
        let client = WaitingRoomClient::with_interceptor(channel, present(service_key));
        tokio::spawn(background::run(client.clone(), queued_calls, timeout));
        tokio::spawn(coalesce(client, queue, timeout));
        Ok(Self {
            checks,
            calls,
            deadline: timeout * 2,
        })
    }

    /// Verifies `access_token` for `performance` and returns the access it
    /// grants: to whom, in which session, until when.
    ///
    /// # Errors
    /// [`QueueError`]: the token does not admit the performance, or
    /// queue-service could not say (fail closed).
    pub async fn verify(
        &self,
        performance: PerformanceId,
        access_token: &str,
    ) -> Result<Access, QueueError> {
        self.call(performance, access_token, false).await
    }

    /// Like [`verify`](Self::verify), but a session released because its
    /// purchase completed (the `payment.completed` event has freed the slot)
    /// also passes, with [`Access::completed`] set, until its token expires.
    /// Only for the payment path: a completed session may replay a payment
    /// under an `Idempotency-Key` it already used, and nothing else.
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub async fn verify_for_replay(
        &self,
        performance: PerformanceId,
        access_token: &str,
    ) -> Result<Access, QueueError> {
        self.call(performance, access_token, true).await
    }

    /// Frees `access`'s slot in `performance`'s waiting room because its
    /// purchase completed (`ReleaseAccess`, reason `COMPLETED`, that session
    /// only), in the background: returns at once, and never fails. A
    /// release that cannot be queued or sent is left to the
    /// `payment.completed` event (counted in `queue_releases_total`).
    pub fn release_completed(&self, performance: PerformanceId, access: &Access) {
        let request = ReleaseAccessRequest {
            event_id: performance.to_string(),
            user_id: access.user.as_str().to_owned(),
            reason: ReleaseReason::Completed.into(),
            session_id: access.session_id.clone(),
        };
        if self
            .calls
            .try_send(background::Call::Release(request))
            .is_err()
        {
            metrics::queue_release("dropped");
        }
    }

    /// Reports a performance's seat counts to its waiting room
    /// (`ReportInventory`), with this instance's `health` over the last
    /// period. In the background, once: returns at once and never fails
    /// (the next report follows).
    pub fn report_inventory(&self, inventory: &Inventory, health: &HealthReport) {
        let request = ReportInventoryRequest {
            event_id: inventory.performance.to_string(),
            seats_available: inventory.available,
            seats_held: inventory.held,
            fans_holding: inventory.holders,
            health: Some(CoreHealth {
                hold_p95_ms: health.hold_p95_ms,
                payment_p95_ms: health.payment_p95_ms,
                pool_saturated: health.pool_saturated,
                holds: health.holds,
                payments: health.payments,
            }),
        };
        if self
            .calls
            .try_send(background::Call::Inventory(request))
            .is_err()
        {
            metrics::inventory_report("dropped");
        }
    }

    async fn call(
        &self,
        performance: PerformanceId,
        access_token: &str,
        accept_completed: bool,
    ) -> Result<Access, QueueError> {
        let request = VerifyAccessRequest {
            event_id: performance.to_string(),
            access_token: access_token.to_owned(),
            accept_completed,
        };
        let (answer, answered) = oneshot::channel();
        let unavailable = |why: &str| QueueError::Unavailable(why.to_owned().into());
        let exchange = async {
            self.checks
                .send(Check { request, answer })
                .await
                .map_err(|_| unavailable("the access-check task has stopped"))?;
            answered
                .await
                .map_err(|_| unavailable("the access-check task dropped the check"))
        };
        let reply = tokio::time::timeout(self.deadline, exchange)
            .await
            .map_err(|_| unavailable("queue-service did not answer in time"))??;
        match reply {
            Ok(response) => Access::from_response(response),
            Err(status) => Err(match status.code() {
                Code::Unauthenticated => QueueError::InvalidToken,
                Code::PermissionDenied => QueueError::AccessDenied,
                Code::InvalidArgument => QueueError::Malformed,
                _ => QueueError::Unavailable(Box::new(status)),
            }),
        }
    }
}

/// Sends queued checks to `VerifyAccessBatch`, one call at a time, each
/// with everything queued meanwhile, and answers every check. Each call is
/// bounded by `timeout` as a whole (the channel's own timeout stops at the
/// response headers). Ends when every [`QueueClient`] clone is gone.
async fn coalesce<F: Interceptor>(
    mut client: WaitingRoomClient<InterceptedService<Channel, F>>,
    mut queue: mpsc::Receiver<Check>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Callers that gave up (deadline, client gone) need no answer.
        batch.retain(|check| !check.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        metrics::verify_call(batch.len());
        let (requests, answers): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|check| (check.request, check.answer))
            .unzip();
        let checks = answers.len();
        let call = client.verify_access_batch(VerifyAccessBatchRequest { requests });
        let reply = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("VerifyAccessBatch timed out")));
        match reply {
            Ok(response) => {
                let mut results = response.into_inner().results.into_iter();
                for answer in answers {
                    let result = match results.next().and_then(|r| r.outcome) {
                        Some(Outcome::Access(access)) => Ok(access),
                        Some(Outcome::Error(error)) => {
                            Err(Status::new(Code::from_i32(error.code), error.message))
                        }
                        None => Err(Status::internal(format!(
                            "queue-service answered fewer than {checks} checks"
                        ))),
                    };
                    // A caller that gave up has dropped its receiver.
                    let _ = answer.send(result);
                }
            }
            Err(status) => {
                // A failed call says nothing about any token (an
                // INVALID_ARGUMENT here is about the batch, not a check):
                // every check fails closed with 503.
                let unavailable =
                    Status::unavailable(format!("VerifyAccessBatch failed: {status}"));
                for answer in answers {
                    let _ = answer.send(Err(unavailable.clone()));
                }
            }
        }
    }
}
