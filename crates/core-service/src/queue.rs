//! The waiting room (queue-service) over gRPC: access tokens are verified
//! with `VerifyAccess` on every reservation, release and payment.
//!
//! core-service does not call `ReleaseAccess` after a payment: the
//! `payment.completed` event releases the slot (issue 5). Once it has, a
//! retry of the same `Idempotency-Key` still verifies through
//! [`WaitingRoom::verify_for_replay`], which accepts a completed session
//! and tells the payment path to replay and never to charge again.
//!
//! Fail closed: when queue-service cannot answer within the deadline, the
//! request is refused with 503, never let through.

use std::time::Duration;

use onsale_proto::queue::v1::{VerifyAccessRequest, waiting_room_client::WaitingRoomClient};
use tonic::{Code, transport::Channel};

use crate::{
    domain::{PerformanceId, UserId},
    error::ApiError,
};

/// A verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The fan the token was issued to.
    pub user: UserId,
    /// The session's purchase completed and its slot was released: the
    /// holder may replay a payment, not make a new one.
    pub completed: bool,
}

/// A client of the waiting room. Cheap to clone (one multiplexed HTTP/2
/// channel).
#[derive(Debug, Clone)]
pub struct WaitingRoom {
    client: WaitingRoomClient<Channel>,
}

/// The queue-service URL is malformed.
#[derive(Debug, thiserror::Error)]
#[error("invalid core.queue_grpc_url")]
pub struct QueueConfigError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl WaitingRoom {
    /// A lazily connecting client: start-up does not need queue-service, and
    /// the channel reconnects by itself. Every call is bounded by `timeout`.
    ///
    /// # Errors
    /// [`QueueConfigError`] when `url` is not a valid URI.
    pub fn connect_lazy(url: &str, timeout: Duration) -> Result<Self, QueueConfigError> {
        let channel = Channel::from_shared(url.to_owned())
            .map_err(|error| QueueConfigError(Box::new(error)))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .connect_lazy();
        Ok(Self {
            client: WaitingRoomClient::new(channel),
        })
    }

    /// Verifies `access_token` for `performance` and returns the user it
    /// was issued to.
    ///
    /// # Errors
    /// - 401 `invalid_access_token`: malformed, forged or expired token;
    /// - 403 `access_denied`: a token of another performance, or a released
    ///   session;
    /// - 503: queue-service unreachable, slow or failing (fail closed).
    pub async fn verify(
        &self,
        performance: PerformanceId,
        access_token: &str,
    ) -> Result<UserId, ApiError> {
        self.call(performance, access_token, false)
            .await
            .map(|access| access.user)
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
    ) -> Result<Access, ApiError> {
        self.call(performance, access_token, true).await
    }

    async fn call(
        &self,
        performance: PerformanceId,
        access_token: &str,
        accept_completed: bool,
    ) -> Result<Access, ApiError> {
        let request = VerifyAccessRequest {
            event_id: performance.to_string(),
            access_token: access_token.to_owned(),
            accept_completed,
        };
        let mut client = self.client.clone();
        match client.verify_access(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let user = UserId::parse(&response.user_id).map_err(|error| {
                    ApiError::QueueUnavailable(
                        format!("queue-service returned an invalid user id: {error}").into(),
                    )
                })?;
                Ok(Access {
                    user,
                    completed: response.completed,
                })
            }
            Err(status) => Err(match status.code() {
                Code::Unauthenticated => ApiError::unauthorized(
                    "invalid_access_token",
                    "the access token is invalid or expired",
                ),
                Code::PermissionDenied => ApiError::forbidden(
                    "access_denied",
                    "the access token does not admit this performance or was released",
                ),
                Code::InvalidArgument => {
                    ApiError::BadRequest("the access token or performance id is malformed".into())
                }
                _ => ApiError::QueueUnavailable(Box::new(status)),
            }),
        }
    }
}
