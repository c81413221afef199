//! gRPC transport: `onsale.queue.v1.WaitingRoom`. Every call needs the
//! service credential (`platform::service_auth::require`, wrapped around the
//! service in `lib.rs`); health and reflection do not.

use onsale_proto::{
    MAX_VERIFY_BATCH,
    queue::v1::{
        GetStatsRequest, ReleaseAccessRequest, ReleaseAccessResponse, ReleaseReason,
        ReportInventoryRequest, ReportInventoryResponse, VerifyAccessBatchRequest,
        VerifyAccessBatchResponse, VerifyAccessError, VerifyAccessRequest, VerifyAccessResponse,
        VerifyAccessResult, WaitingRoomStats, verify_access_result::Outcome,
        waiting_room_server::WaitingRoom as WaitingRoomApi,
    },
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    domain::{CoreHealth, EventId, ExitReason, UserId},
    error::ApiError,
    service::{Access, AccessCheck, WaitingRoom, no_answer},
};

/// The gRPC service over the shared [`WaitingRoom`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcApi {
    pub(crate) room: WaitingRoom,
}

fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(ApiError::InvalidEventId)
}

/// The event of a `VerifyAccessRequest`, once its fields are checked.
fn checked_event(request: &VerifyAccessRequest) -> Result<EventId, ApiError> {
    let event = event_id(&request.event_id)?;
    if request.access_token.is_empty() {
        return Err(ApiError::MissingToken);
    }
    Ok(event)
}

/// The wire form of a granted access (`expires_at` in whole seconds).
fn access_response(access: Access) -> VerifyAccessResponse {
    let seconds = i64::try_from(access.expires_at).unwrap_or(i64::MAX);
    VerifyAccessResponse {
        user_id: access.user.to_string(),
        session_id: access.session_id,
        expires_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        completed: access.completed,
    }
}

/// One batch result, with the status `VerifyAccess` would have returned.
fn batch_result(result: Result<Access, ApiError>) -> VerifyAccessResult {
    let outcome = match result {
        Ok(access) => Outcome::Access(access_response(access)),
        Err(error) => {
            let status = Status::from(error);
            Outcome::Error(VerifyAccessError {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        }
    };
    VerifyAccessResult {
        outcome: Some(outcome),
    }
}

#[tonic::async_trait]
impl WaitingRoomApi for GrpcApi {
    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn verify_access(
        &self,
        request: Request<VerifyAccessRequest>,
    ) -> Result<Response<VerifyAccessResponse>, Status> {
        let request = request.into_inner();
        let event = checked_event(&request)?;
        let access = self
            .room
            .verify_access(&event, &request.access_token, request.accept_completed)
            .await?;
        Ok(Response::new(access_response(access)))
    }

    #[instrument(skip_all, fields(checks = request.get_ref().requests.len()))]
    async fn verify_access_batch(
        &self,
        request: Request<VerifyAccessBatchRequest>,
    ) -> Result<Response<VerifyAccessBatchResponse>, Status> {
        let requests = request.into_inner().requests;
        if requests.is_empty() || requests.len() > MAX_VERIFY_BATCH {
            return Err(ApiError::InvalidArgument(
                "a VerifyAccessBatch request holds 1 to MAX_VERIFY_BATCH (256) checks",
            )
            .into());
        }
        let events: Vec<Result<EventId, ApiError>> = requests.iter().map(checked_event).collect();
        let checks: Vec<AccessCheck<'_>> = requests
            .iter()
            .zip(&events)
            .filter_map(|(request, event)| {
                Some(AccessCheck {
                    event: event.as_ref().ok()?,
                    access_token: &request.access_token,
                    accept_completed: request.accept_completed,
                })
            })
            .collect();
        let mut verified = self.room.verify_access_many(&checks).await.into_iter();
        let results = events
            .into_iter()
            .map(|event| match event {
                Ok(_) => batch_result(verified.next().unwrap_or_else(|| Err(no_answer()))),
                Err(error) => batch_result(Err(error)),
            })
            .collect();
        Ok(Response::new(VerifyAccessBatchResponse { results }))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn release_access(
        &self,
        request: Request<ReleaseAccessRequest>,
    ) -> Result<Response<ReleaseAccessResponse>, Status> {
        let request = request.into_inner();
        let event = event_id(&request.event_id)?;
        let user =
            UserId::parse(&request.user_id).map_err(|e| ApiError::InvalidUserId(e.into()))?;
        let reason = match ReleaseReason::try_from(request.reason) {
            Ok(ReleaseReason::Completed) => ExitReason::Completed,
            Ok(ReleaseReason::Left) => ExitReason::Left,
            Ok(ReleaseReason::Revoked) => ExitReason::Revoked,
            Ok(ReleaseReason::Unspecified) | Err(_) => {
                return Err(
                    ApiError::InvalidArgument("reason must be COMPLETED, LEFT or REVOKED").into(),
                );
            }
        };
        let released = self
            .room
            .release(&event, &user, &request.session_id, reason)
            .await?;
        Ok(Response::new(ReleaseAccessResponse { released }))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn report_inventory(
        &self,
        request: Request<ReportInventoryRequest>,
    ) -> Result<Response<ReportInventoryResponse>, Status> {
        let request = request.into_inner();
        let event = event_id(&request.event_id)?;
        let health = request.health.map(|h| CoreHealth {
            hold_p95_ms: u64::from(h.hold_p95_ms),
            payment_p95_ms: u64::from(h.payment_p95_ms),
            pool_saturated: h.pool_saturated,
        });
        let recorded = self
            .room
            .report_inventory(
                &event,
                request.seats_available,
                request.seats_held,
                request.fans_holding,
                health.as_ref(),
            )
            .await?;
        Ok(Response::new(ReportInventoryResponse { recorded }))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<WaitingRoomStats>, Status> {
        let event = event_id(&request.get_ref().event_id)?;
        let s = self.room.room(&event).await?;
        Ok(Response::new(WaitingRoomStats {
            event_id: event.to_string(),
            waiting: s.waiting,
            active: s.active,
            capacity: s.config.capacity,
            entered_total: s.entered,
            admitted_total: s.admitted,
            exited_left_total: s.exited_left,
            exited_expired_total: s.exited_expired,
            exited_completed_total: s.exited_completed,
            exited_revoked_total: s.exited_revoked,
            exited_no_show_total: s.exited_no_show,
            sold_out: s.sold_out,
            admission_rate_per_second: s.admission_rate,
            admission_rate_reason: s.admission_rate_reason,
            left_waiting_total: s.left_waiting,
            abandoned_total: s.abandoned,
            sold_out_total: s.told_sold_out,
            entry_rate_per_second: s.entry_rate,
            exit_rate_per_second: s.exit_rate,
            state: s.config.state.as_str().to_owned(),
        }))
    }
}
