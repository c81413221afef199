//! The API boundary's error type, mapped to a status in exactly one place per
//! transport: [`IntoResponse`] for HTTP (RFC 9457 problems) and
//! `From<ApiError> for tonic::Status` for gRPC.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use platform::problem::{ErrorChain, Problem};

use crate::{domain::IdError, store::StoreError, tokens::TokenError};

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed event id in the path or message.
    #[error("invalid event id: {0}")]
    InvalidEventId(IdError),
    /// Malformed user id.
    #[error("invalid user id: {0}")]
    InvalidUserId(IdError),
    /// Room settings out of range.
    #[error("invalid waiting room settings: {0}")]
    InvalidRoom(String),
    /// A gRPC field that must be set was not.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A request body the API does not take (the reason, for the client).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// No queue token (HTTP: the `Onsale-Queue-Token` header) or no access
    /// token (gRPC: an empty `access_token`).
    #[error("missing token")]
    MissingToken,
    /// A token that failed verification.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A valid queue token of another fan than the signed-in one.
    #[error("the token belongs to another fan than the signed-in one")]
    SubjectMismatch,
    /// A valid access token whose session was released or replaced.
    #[error("the access session was released")]
    SessionReleased,
    /// No waiting room for the event.
    #[error("no waiting room for this event")]
    NoRoom,
    /// The fan is no longer in line (left, abandoned or expired).
    #[error("not in line: left, abandoned or expired")]
    NotInLine,
    /// The room is closed.
    #[error("the waiting room is closed")]
    Closed,
    /// The room is paused.
    #[error("the waiting room is paused")]
    Paused,
    /// No seat is left and no hold is live.
    #[error("the event is sold out")]
    SoldOut,
    /// A new `opens_at` for a room whose line already has fans: the
    /// pre-queue's order and the opening time told to fans are final.
    #[error("the waiting room has already opened; opens_at can no longer change")]
    RoomAlreadyOpen,
    /// Redis failed.
    #[error("waiting room storage is unavailable")]
    Store(#[from] StoreError),
    /// A bug: signing failed.
    #[error("signing a token failed")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Seconds a client should wait while a room is paused.
const PAUSED_RETRY_AFTER_SECONDS: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::InvalidEventId(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_event_id",
                "Invalid event id",
            )
            .detail(self.to_string()),
            Self::InvalidUserId(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_user_id",
                "Invalid user id",
            )
            .detail(self.to_string()),
            Self::InvalidRoom(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_room_settings",
                "Invalid waiting room settings",
            )
            .detail(self.to_string()),
            Self::InvalidArgument(_) => Problem::bad_request(self.to_string()),
            Self::InvalidRequest(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
            )
            .detail(self.to_string()),
            Self::MissingToken => Problem::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "Missing queue token",
            )
            .detail("the Onsale-Queue-Token header must carry the ticket's queue token"),
            Self::Token(TokenError::Expired) => {
                Problem::new(StatusCode::UNAUTHORIZED, "token_expired", "Token expired")
            }
            Self::Token(TokenError::OtherEvent) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "token_event_mismatch",
                "Token belongs to another event",
            ),
            Self::Token(_) => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token")
            }
            Self::SubjectMismatch => Problem::new(
                StatusCode::FORBIDDEN,
                "token_subject_mismatch",
                "Token belongs to another fan",
            )
            .detail(self.to_string()),
            Self::SessionReleased => Problem::new(
                StatusCode::UNAUTHORIZED,
                "session_released",
                "Access session released",
            ),
            Self::NoRoom => Problem::new(
                StatusCode::NOT_FOUND,
                "waiting_room_not_found",
                "No waiting room",
            )
            .detail("no waiting room is configured for this event"),
            Self::NotInLine => Problem::new(StatusCode::GONE, "not_in_line", "Not in line")
                .detail("the place was given up, abandoned or has expired; enter again"),
            Self::Closed => Problem::new(
                StatusCode::FORBIDDEN,
                "waiting_room_closed",
                "Waiting room closed",
            ),
            Self::Paused => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "waiting_room_paused",
                "Waiting room paused",
            )
            .retry_after(PAUSED_RETRY_AFTER_SECONDS),
            Self::SoldOut => Problem::new(StatusCode::GONE, "sold_out", "Sold out")
                .detail("every seat is sold and no hold is left that could return one"),
            Self::RoomAlreadyOpen => Problem::new(
                StatusCode::CONFLICT,
                "room_already_open",
                "Waiting room already open",
            )
            .detail(self.to_string()),
            Self::Store(cause) => Problem::unavailable("redis", cause),
            Self::Signing(cause) => {
                tracing::error!(error = %ErrorChain(cause), "signing a token failed");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                )
            }
        };
        problem.into_response()
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        use tonic::Status;
        match &error {
            ApiError::InvalidEventId(_)
            | ApiError::InvalidUserId(_)
            | ApiError::InvalidRoom(_)
            | ApiError::InvalidArgument(_)
            | ApiError::InvalidRequest(_) => Status::invalid_argument(error.to_string()),
            ApiError::Token(TokenError::OtherEvent)
            | ApiError::SubjectMismatch
            | ApiError::SessionReleased => Status::permission_denied(error.to_string()),
            ApiError::MissingToken | ApiError::Token(_) => {
                Status::unauthenticated(error.to_string())
            }
            ApiError::NoRoom | ApiError::NotInLine => Status::not_found(error.to_string()),
            ApiError::Closed | ApiError::SoldOut | ApiError::RoomAlreadyOpen => {
                Status::failed_precondition(error.to_string())
            }
            ApiError::Paused => Status::unavailable(error.to_string()),
            ApiError::Store(cause) => {
                // The first check of a shared call carries and logs the cause.
                if !matches!(cause, StoreError::SharedCallFailed) {
                    tracing::error!(error = %ErrorChain(cause), "dependency failed");
                }
                Status::unavailable("waiting room storage is unavailable; try again shortly")
            }
            ApiError::Signing(cause) => {
                tracing::error!(error = %ErrorChain(cause), "signing a token failed");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_event_tokens_are_401_over_http_and_permission_denied_over_grpc() {
        let http = ApiError::Token(TokenError::OtherEvent).into_response();
        assert_eq!(http.status(), StatusCode::UNAUTHORIZED);
        let grpc = tonic::Status::from(ApiError::Token(TokenError::OtherEvent));
        assert_eq!(grpc.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            tonic::Status::from(ApiError::Token(TokenError::Invalid)).code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn storage_failures_are_503_with_retry_after_and_hide_the_cause() {
        let timeout = StoreError::Call(platform::redis_pool::RedisCallError::Timeout(
            std::time::Duration::from_millis(500),
        ));
        let response = ApiError::Store(timeout).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        let status = tonic::Status::from(ApiError::Store(StoreError::Reply("secret".into())));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn another_fans_token_is_403_token_subject_mismatch() {
        let response = ApiError::SubjectMismatch.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            tonic::Status::from(ApiError::SubjectMismatch).code(),
            tonic::Code::PermissionDenied
        );
        let refused = ApiError::InvalidRequest("no user_id").into_response();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_paused_room_asks_clients_to_come_back_later() {
        let response = ApiError::Paused.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "5");
    }
}
