//! A typed async client of queue-service and core-service over HTTP, for
//! the load tools (`loadtest`) and the services' integration tests alike.
//!
//! Every call sends the services' own request bodies and decodes their own
//! response bodies ([`queue_api`], [`core_api`]), so a change of the API
//! shows up here at compile time. A reply that is not 2xx becomes
//! [`Error::Status`] with the status, the RFC 9457 problem body (its stable
//! `code` among it) and `Retry-After`.
//!
//! Each operation comes twice: `enter` sends and decodes, `enter_request`
//! only builds the [`reqwest::RequestBuilder`] (URL, headers, body), for
//! callers that assert on the raw response (status, headers, wire format).
//! Both use the same builder, so paths and headers are written once.
//!
//! # Who the caller is
//! - A fan signs in with the identity provider ([`Issuer::identity_token`],
//!   the OIDC issuer's `POST /token`) and calls as that fan through
//!   [`Client::as_fan`]: every request then carries `Authorization: Bearer
//!   <identity token>`, and the services take the fan's id from its `sub`.
//! - The waiting room's tokens travel in headers of their own: the queue
//!   token in [`QUEUE_TOKEN_HEADER`] (status, leave), the access token in
//!   [`ACCESS_TOKEN_HEADER`] (hold, pay). Their `sub` must be the identity's.
//! - Admin calls send `X-Admin-Key` ([`ClientBuilder::queue_admin_key`],
//!   [`ClientBuilder::core_admin_key`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), onsale_client::Error> {
//! use onsale_client::{Client, DEFAULT_ISSUER_URL, Issuer};
//!
//! let issuer = Issuer::new(reqwest::Client::new(), DEFAULT_ISSUER_URL);
//! let fan = Client::default().as_fan(&issuer.identity_token("fan-1", 3_600).await?);
//! let ticket = fan.enter("42").await?;
//! println!("position {}", ticket.position);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`], [`ClientBuilder`]: base URLs (default: the services' local
//!   listeners), admin keys, the [`reqwest::Client`], an [`Observer`] that
//!   sees every response (operation, status, latency), the fan's identity
//!   ([`Client::as_fan`]) and a per-fan `X-Forwarded-For`
//!   ([`Client::forwarded_for`]).
//! - [`Issuer`]: identity tokens from an OIDC issuer's token endpoint.
//! - `waiting_room` (private): queue-service's operations: configure a room,
//!   room stats, enter, poll, leave, metrics.
//! - `booking` (private): core-service's operations: create a concert,
//!   charge and read a balance, seat map, hold, read a reservation, pay.
//! - [`Error`], [`Problem`]: failures, and the problem body of a refusal.

mod booking;
mod coupons;
mod error;
mod identity;
mod waiting_room;

use std::{
    fmt,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{
    Method, RequestBuilder, StatusCode,
    header::{self, HeaderValue},
};
use serde::de::DeserializeOwned;

/// core-service's request and response bodies.
pub use core_service::api as core_api;
pub use error::{Error, Problem};
pub use identity::{DEFAULT_ISSUER_URL, Issuer};
/// queue-service's request and response bodies.
pub use queue_service::api as queue_api;
/// queue-service's room settings, returned when a room is configured.
pub use queue_service::domain::{RoomConfig, RoomState};

/// queue-service's HTTP base URL when none is given (its local listener).
pub const DEFAULT_QUEUE_URL: &str = "http://127.0.0.1:8080";
/// core-service's HTTP base URL when none is given (its local listener).
pub const DEFAULT_CORE_URL: &str = "http://127.0.0.1:8081";

/// The header carrying a fan's access token (core-service's hold and pay),
/// `onsale-access-token`, as core-service names it.
pub use core_service::http::access::ACCESS_TOKEN_HEADER;
/// The header carrying a fan's queue token (queue-service's status and
/// leave), `onsale-queue-token`, as queue-service names it.
pub use queue_service::http::QUEUE_TOKEN_HEADER;

const ADMIN_KEY: &str = "x-admin-key";
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Which call a response answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `PUT /admin/v1/events/{event}/waiting-room`.
    ConfigureRoom,
    /// `GET /admin/v1/events/{event}/waiting-room/stats`.
    RoomStats,
    /// `POST /v1/events/{event}/queue`.
    Enter,
    /// `GET /v1/events/{event}/queue/status`.
    Poll,
    /// `DELETE /v1/events/{event}/queue`.
    Leave,
    /// `GET /metrics` of queue-service.
    QueueMetrics,
    /// `POST /admin/v1/concerts`.
    CreateConcert,
    /// `POST /v1/users/{user}/balance/charges`.
    Charge,
    /// `GET /v1/users/{user}/balance`.
    Balance,
    /// `GET /v1/performances/{performance}/seats`.
    SeatMap,
    /// `POST /v1/reservations`.
    Hold,
    /// `GET /v1/reservations/{id}`.
    Reservation,
    /// `POST /v1/payments`.
    Pay,
    /// `POST /token` of the identity issuer.
    SignIn,
    /// `POST /admin/v1/coupon-campaigns`.
    CreateCampaign,
    /// `GET /admin/v1/coupon-campaigns/{id}`.
    Campaign,
    /// `POST /admin/v1/coupon-campaigns/{id}/reconciliation`.
    Reconcile,
    /// `POST /v1/coupon-campaigns/{id}/claims`.
    ClaimCoupon,
    /// `GET /v1/coupons`.
    Coupons,
    /// `GET /v1/rankings/concerts`.
    Ranking,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ConfigureRoom => "configuring the waiting room",
            Self::RoomStats => "reading the waiting room's stats",
            Self::Enter => "entering the queue",
            Self::Poll => "polling the queue status",
            Self::Leave => "leaving the queue",
            Self::QueueMetrics => "reading queue-service's metrics",
            Self::CreateConcert => "creating the concert",
            Self::Charge => "charging the balance",
            Self::Balance => "reading the balance",
            Self::SeatMap => "reading the seat map",
            Self::Hold => "holding seats",
            Self::Reservation => "reading the reservation",
            Self::Pay => "paying",
            Self::SignIn => "signing in with the identity issuer",
            Self::CreateCampaign => "creating the coupon campaign",
            Self::Campaign => "reading the coupon campaign",
            Self::Reconcile => "reconciling the coupon campaign",
            Self::ClaimCoupon => "claiming a coupon",
            Self::Coupons => "listing the fan's coupons",
            Self::Ranking => "reading the concert ranking",
        })
    }
}

/// One response, as an [`Observer`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The call.
    pub operation: Operation,
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// From sending the request to reading the whole body.
    pub elapsed: Duration,
}

/// Called once per response a typed call receives (any status), before the
/// body is decoded; requests that got no response are not observed.
pub type Observer = Arc<dyn Fn(&Observation) + Send + Sync>;

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    queue_url: Option<String>,
    core_url: Option<String>,
    http: Option<reqwest::Client>,
    queue_admin_key: Option<String>,
    core_admin_key: Option<String>,
    observer: Option<Observer>,
}

impl ClientBuilder {
    /// queue-service's HTTP base, e.g. `http://127.0.0.1:8080` (no trailing
    /// slash). Default: [`DEFAULT_QUEUE_URL`].
    #[must_use]
    pub fn queue_url(mut self, url: impl Into<String>) -> Self {
        self.queue_url = Some(url.into());
        self
    }

    /// core-service's HTTP base. Default: [`DEFAULT_CORE_URL`].
    #[must_use]
    pub fn core_url(mut self, url: impl Into<String>) -> Self {
        self.core_url = Some(url.into());
        self
    }

    /// The HTTP client to send with (timeouts, pool size). Default:
    /// `reqwest::Client::new()`.
    #[must_use]
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// `X-Admin-Key` for queue-service's admin calls.
    #[must_use]
    pub fn queue_admin_key(mut self, key: impl Into<String>) -> Self {
        self.queue_admin_key = Some(key.into());
        self
    }

    /// `X-Admin-Key` for core-service's admin calls (concerts, charges).
    #[must_use]
    pub fn core_admin_key(mut self, key: impl Into<String>) -> Self {
        self.core_admin_key = Some(key.into());
        self
    }

    /// Calls `observer` with every response of a typed call.
    #[must_use]
    pub fn observe(mut self, observer: impl Fn(&Observation) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        Client {
            shared: Arc::new(Shared {
                http: self.http.unwrap_or_default(),
                queue_url: self
                    .queue_url
                    .unwrap_or_else(|| DEFAULT_QUEUE_URL.to_owned()),
                core_url: self.core_url.unwrap_or_else(|| DEFAULT_CORE_URL.to_owned()),
                queue_admin_key: self.queue_admin_key,
                core_admin_key: self.core_admin_key,
                observer: self.observer,
            }),
            forwarded_for: None,
            identity: None,
        }
    }
}

struct Shared {
    http: reqwest::Client,
    queue_url: String,
    core_url: String,
    queue_admin_key: Option<String>,
    core_admin_key: Option<String>,
    observer: Option<Observer>,
}

/// A client of both services. Cheap to clone; clones share the connection
/// pool and the observer.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    forwarded_for: Option<HeaderValue>,
    /// `Bearer <identity token>`, marked sensitive.
    identity: Option<HeaderValue>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("queue_url", &self.shared.queue_url)
            .field("core_url", &self.shared.core_url)
            .field("forwarded_for", &self.forwarded_for)
            // Never the token itself: it is the fan's credential.
            .field("as_fan", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// The two services, for building URLs.
#[derive(Debug, Clone, Copy)]
enum Service {
    Queue,
    Core,
}

impl Client {
    /// A builder with the local defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// queue-service's HTTP base.
    pub fn queue_url(&self) -> &str {
        &self.shared.queue_url
    }

    /// core-service's HTTP base.
    pub fn core_url(&self) -> &str {
        &self.shared.core_url
    }

    /// The HTTP client underneath, for requests this client does not model.
    pub fn http(&self) -> &reqwest::Client {
        &self.shared.http
    }

    /// This client, with every request naming `address` in
    /// `X-Forwarded-For`, as an API gateway does for each fan (queue-service
    /// applies its per-client rate limit to that address when configured to
    /// read the header).
    #[must_use]
    pub fn forwarded_for(&self, address: IpAddr) -> Self {
        Self {
            forwarded_for: HeaderValue::from_str(&address.to_string()).ok(),
            ..self.clone()
        }
    }

    /// This client, calling as the fan `identity_token` names: every request
    /// carries `Authorization: Bearer <identity_token>` (an OIDC identity
    /// token from the platform's issuer, e.g. [`Issuer::identity_token`]).
    /// A token that cannot be a header value (control characters) is sent
    /// as no identity, which the services answer with 401
    /// `missing_identity_token`.
    #[must_use]
    pub fn as_fan(&self, identity_token: &str) -> Self {
        let identity = HeaderValue::from_str(&format!("Bearer {identity_token}"))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Self {
            identity,
            ..self.clone()
        }
    }

    /// Whether this client calls as a fan ([`Client::as_fan`]).
    pub fn is_fan(&self) -> bool {
        self.identity.is_some()
    }

    fn request(&self, service: Service, method: Method, path: &str) -> RequestBuilder {
        let base = match service {
            Service::Queue => &self.shared.queue_url,
            Service::Core => &self.shared.core_url,
        };
        let mut request = self.shared.http.request(method, format!("{base}{path}"));
        if let Some(address) = &self.forwarded_for {
            request = request.header(FORWARDED_FOR, address.clone());
        }
        if let Some(identity) = &self.identity {
            request = request.header(header::AUTHORIZATION, identity.clone());
        }
        request
    }

    /// A request carrying the service's admin key (none when not set, which
    /// the service answers with 401).
    fn admin(&self, service: Service, method: Method, path: &str) -> RequestBuilder {
        let key = match service {
            Service::Queue => &self.shared.queue_admin_key,
            Service::Core => &self.shared.core_admin_key,
        };
        let request = self.request(service, method, path);
        match key {
            Some(key) => request.header(ADMIN_KEY, key),
            None => request,
        }
    }

    /// Sends `request`, observes the response and returns its status and
    /// body; a status that is not 2xx is an [`Error::Status`].
    async fn exchange(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), Error> {
        exchange(self.shared.observer.as_ref(), operation, request).await
    }

    /// [`Self::exchange`], then the body as `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        request: RequestBuilder,
    ) -> Result<T, Error> {
        let (status, body) = self.exchange(operation, request).await?;
        decode(operation, status, &body)
    }

    /// [`Self::exchange`], ignoring the body.
    async fn empty(&self, operation: Operation, request: RequestBuilder) -> Result<(), Error> {
        self.exchange(operation, request).await.map(|_| ())
    }

    /// [`Self::exchange`], then the body as text.
    async fn text(&self, operation: Operation, request: RequestBuilder) -> Result<String, Error> {
        let (_, body) = self.exchange(operation, request).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// Sends `request`, shows the response to `observer` and returns its status
/// and body; a status that is not 2xx is an [`Error::Status`].
async fn exchange(
    observer: Option<&Observer>,
    operation: Operation,
    request: RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), Error> {
    let started = Instant::now();
    let transport = |source| Error::Transport { operation, source };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transport)?.to_vec();
    if let Some(observer) = observer {
        observer(&Observation {
            operation,
            status,
            elapsed: started.elapsed(),
        });
    }
    if status.is_success() {
        Ok((status, body))
    } else {
        Err(Error::refused(operation, status, &headers, &body))
    }
}

/// A 2xx body as `T`.
fn decode<T: DeserializeOwned>(
    operation: Operation,
    status: StatusCode,
    body: &[u8],
) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|source| Error::Decode {
        operation,
        status,
        source,
    })
}

/// True when `headers` say the body is an RFC 9457 problem.
fn is_problem(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"))
}

#[cfg(test)]
mod tests;
