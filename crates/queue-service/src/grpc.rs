//! gRPC transport: `onsale.queue.v1.WaitingRoom`.

use onsale_proto::queue::v1::{
    GetStatsRequest, ReleaseAccessRequest, ReleaseAccessResponse, ReleaseReason,
    VerifyAccessRequest, VerifyAccessResponse, WaitingRoomStats,
    waiting_room_server::WaitingRoom as WaitingRoomApi,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::{
    domain::{EventId, ExitReason, UserId},
    error::ApiError,
    service::WaitingRoom,
};

/// The gRPC service over the shared [`WaitingRoom`].
#[derive(Debug, Clone)]
pub(crate) struct GrpcApi {
    pub(crate) room: WaitingRoom,
}

fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(ApiError::InvalidEventId)
}

#[tonic::async_trait]
impl WaitingRoomApi for GrpcApi {
    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn verify_access(
        &self,
        request: Request<VerifyAccessRequest>,
    ) -> Result<Response<VerifyAccessResponse>, Status> {
        let request = request.into_inner();
        let event = event_id(&request.event_id)?;
        if request.access_token.is_empty() {
            return Err(ApiError::MissingToken.into());
        }
        let access = self
            .room
            .verify_access(&event, &request.access_token, request.accept_completed)
            .await?;
        let seconds = i64::try_from(access.expires_at).unwrap_or(i64::MAX);
        Ok(Response::new(VerifyAccessResponse {
            user_id: access.user.to_string(),
            session_id: access.session_id,
            expires_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            completed: access.completed,
        }))
    }

    #[instrument(skip_all, fields(event_id = %request.get_ref().event_id))]
    async fn release_access(
        &self,
        request: Request<ReleaseAccessRequest>,
    ) -> Result<Response<ReleaseAccessResponse>, Status> {
        let request = request.into_inner();
        let event = event_id(&request.event_id)?;
        let user = UserId::parse(&request.user_id).map_err(ApiError::InvalidUserId)?;
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
        let released = self.room.release(&event, &user, reason).await?;
        Ok(Response::new(ReleaseAccessResponse { released }))
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
            left_waiting_total: s.left_waiting,
            abandoned_total: s.abandoned,
            entry_rate_per_second: s.entry_rate,
            exit_rate_per_second: s.exit_rate,
            state: s.config.state.as_str().to_owned(),
        }))
    }
}
