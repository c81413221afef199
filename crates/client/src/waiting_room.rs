//! queue-service's calls: rooms (admin), the fan's entry, polls and exit,
//! and its metrics.

use std::fmt::Display;

use queue_service::{
    api::{EnterRequest, RoomRequest, RoomStats, Ticket},
    domain::RoomConfig,
};
use reqwest::{Method, RequestBuilder};

use crate::{Client, Error, Operation, QUEUE_TOKEN_HEADER, Service};

impl Client {
    /// The request of [`Client::configure_room`].
    pub fn configure_room_request(
        &self,
        event: impl Display,
        room: &RoomRequest,
    ) -> RequestBuilder {
        self.admin(
            Service::Queue,
            Method::PUT,
            &format!("/admin/v1/events/{event}/waiting-room"),
        )
        .json(room)
    }

    /// Creates or changes `event`'s waiting room (admin key): capacity,
    /// admissions per second, TTLs in seconds, state. Returns the settings
    /// now in force.
    ///
    /// # Errors
    /// [`Error::Status`] 400 `invalid_room_settings`, 401 without the admin
    /// key; [`Error::Transport`] when queue-service is unreachable.
    pub async fn configure_room(
        &self,
        event: impl Display,
        room: &RoomRequest,
    ) -> Result<RoomConfig, Error> {
        self.json(
            Operation::ConfigureRoom,
            self.configure_room_request(event, room),
        )
        .await
    }

    /// The request of [`Client::room_stats`].
    pub fn room_stats_request(&self, event: impl Display) -> RequestBuilder {
        self.admin(
            Service::Queue,
            Method::GET,
            &format!("/admin/v1/events/{event}/waiting-room/stats"),
        )
    }

    /// `event`'s room numbers (admin key): fans waiting and active, totals,
    /// exits by reason, entry and exit rates per second.
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown room, 401 without the admin key.
    pub async fn room_stats(&self, event: impl Display) -> Result<RoomStats, Error> {
        self.json(Operation::RoomStats, self.room_stats_request(event))
            .await
    }

    /// The request of [`Client::enter`]: an empty [`EnterRequest`] (`{}`),
    /// since the fan is the identity's `sub` (see [`Client::as_fan`]).
    pub fn enter_request(&self, event: impl Display) -> RequestBuilder {
        self.request(
            Service::Queue,
            Method::POST,
            &format!("/v1/events/{event}/queue"),
        )
        .json(&EnterRequest {})
    }

    /// Enters `event`'s line as this client's fan (201), or returns the
    /// fan's existing place (200). The ticket carries the queue token for
    /// polls and leaving.
    ///
    /// # Errors
    /// [`Error::Status`]: 401 `missing_identity_token` /
    /// `invalid_identity_token` without a valid identity, 404 for no room,
    /// 503 while paused, 403 when closed, 429 over the rate limit (429 and
    /// 503 with `Retry-After`).
    pub async fn enter(&self, event: impl Display) -> Result<Ticket, Error> {
        self.json(Operation::Enter, self.enter_request(event)).await
    }

    /// The request of [`Client::poll`]: the queue token in
    /// [`QUEUE_TOKEN_HEADER`].
    pub fn poll_request(&self, event: impl Display, queue_token: &str) -> RequestBuilder {
        self.request(
            Service::Queue,
            Method::GET,
            &format!("/v1/events/{event}/queue/status"),
        )
        .header(QUEUE_TOKEN_HEADER, queue_token)
    }

    /// The fan's place: position, fans ahead, ETA in seconds, when to poll
    /// next (`poll_after_ms`) and, once active, the access token.
    ///
    /// # Errors
    /// [`Error::Status`]: 401 for a bad identity or queue token, 403
    /// `token_subject_mismatch` for another fan's queue token, 410 once the
    /// place is lost (abandoned, expired), 503 while paused, 403 when
    /// closed.
    pub async fn poll(&self, event: impl Display, queue_token: &str) -> Result<Ticket, Error> {
        self.json(Operation::Poll, self.poll_request(event, queue_token))
            .await
    }

    /// The request of [`Client::leave`]: the queue token in
    /// [`QUEUE_TOKEN_HEADER`].
    pub fn leave_request(&self, event: impl Display, queue_token: &str) -> RequestBuilder {
        self.request(
            Service::Queue,
            Method::DELETE,
            &format!("/v1/events/{event}/queue"),
        )
        .header(QUEUE_TOKEN_HEADER, queue_token)
    }

    /// Leaves the line or the active set (204).
    ///
    /// # Errors
    /// [`Error::Status`] 401 for a bad identity or queue token, 403
    /// `token_subject_mismatch` for another fan's queue token.
    pub async fn leave(&self, event: impl Display, queue_token: &str) -> Result<(), Error> {
        self.empty(Operation::Leave, self.leave_request(event, queue_token))
            .await
    }

    /// queue-service's `/metrics` in the Prometheus text format.
    ///
    /// # Errors
    /// [`Error::Transport`] when queue-service is unreachable.
    pub async fn queue_metrics(&self) -> Result<String, Error> {
        self.text(
            Operation::QueueMetrics,
            self.request(Service::Queue, Method::GET, "/metrics"),
        )
        .await
    }
}
