//! The waiting room's operations, shared by the HTTP and gRPC transports.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    domain::{CoreHealth, EventId, ExitReason, RoomConfig, UserId},
    error::ApiError,
    eta, metrics,
    settings::Settings,
    store::{Configured, Lookup, Place, RoomSnapshot, SessionCheck, Store, StoreError},
    tokens::{TokenKind, Tokens, Verified},
};

/// Shared state of one service instance.
#[derive(Debug, Clone)]
pub struct WaitingRoom {
    pub(crate) store: Store,
    pub(crate) tokens: Tokens,
    pub(crate) settings: Arc<Settings>,
}

/// Where a fan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FanStatus {
    /// Entered before the room's `opens_at`: waiting for the opening, when
    /// the pre-queue is drawn into a random order; no position yet.
    PreQueue,
    /// In line.
    Waiting,
    /// Admitted: holds an access token.
    Active,
}

/// The fan's view of the waiting room, returned by entry and status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    /// Token for status polls and leaving, sent back in the
    /// `Onsale-Queue-Token` header (JWT, `typ` = `queue`; its `sub` is the
    /// fan, so it works only alongside that fan's identity token).
    pub queue_token: String,
    /// `pre_queue`, `waiting` or `active`.
    pub status: FanStatus,
    /// 1-based place in line; 0 in the pre-queue and once active.
    pub position: u64,
    /// Fans ahead; 0 in the pre-queue and once active.
    pub ahead: u64,
    /// Expected wait in seconds: the free slots of the active set fill at
    /// the room's ceiling, the rest of the fans ahead pass at the measured
    /// departure rate (see [`crate::eta`]). 0 in the pre-queue and once
    /// active.
    pub eta_seconds: u64,
    /// The same expected wait in ms (rounded to the nearest ms, not up):
    /// finer than `eta_seconds` near the front, where waits are under a
    /// second. 0 in the pre-queue and once active.
    #[serde(default)]
    pub eta_ms: u64,
    /// The wait, seconds, if the line keeps its fastest pace of the last
    /// 30 s (its fastest 5-second bucket); at most `eta_seconds`.
    #[serde(default)]
    pub eta_low_seconds: u64,
    /// The wait, seconds, if the line keeps its slowest pace of the last
    /// 30 s; at least `eta_seconds`, and at most the fans ahead at
    /// `capacity / access_ttl_seconds` (every admission ends by then).
    #[serde(default)]
    pub eta_high_seconds: u64,
    /// Only in the pre-queue: when the room opens (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    /// Only in the pre-queue: seconds until `opens_at` (rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_in_seconds: Option<u64>,
    /// When to poll next, in ms; grows with the distance from the front.
    pub poll_after_ms: u64,
    /// Only when active: JWT (`typ` = `access`) for core-service, sent in
    /// its `Onsale-Access-Token` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Only when active: end of the admission (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<DateTime<Utc>>,
}

/// A verified, unrevoked access session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The fan.
    pub user: UserId,
    /// Session id.
    pub session_id: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The session's purchase completed and its slot was released; only
    /// reported to a caller that accepts completed sessions.
    pub completed: bool,
}

/// One access-token check of [`WaitingRoom::verify_access_many`].
#[derive(Debug, Clone, Copy)]
pub struct AccessCheck<'a> {
    /// The event the token must be for.
    pub event: &'a EventId,
    /// The compact JWS.
    pub access_token: &'a str,
    /// Also accept a session released by a completed purchase.
    pub accept_completed: bool,
}

/// A check whose token's signature, expiry and event passed, waiting for
/// its revocation check.
struct SignedCheck {
    /// Position among the checks.
    index: usize,
    verified: Verified,
    accept_completed: bool,
}

/// The error for a check left without an answer: a broken invariant of
/// ours, so 503 like any storage fault, never a verdict on the token.
pub(crate) fn no_answer() -> ApiError {
    ApiError::Store(StoreError::Reply("no answer for the check".into()))
}

/// The access a verified token grants, given its session's state.
fn access(verified: Verified, check: SessionCheck) -> Result<Access, ApiError> {
    let Verified { user, sid, exp } = verified;
    match check {
        SessionCheck::Valid | SessionCheck::Completed => Ok(Access {
            user,
            session_id: sid,
            expires_at: exp,
            completed: check == SessionCheck::Completed,
        }),
        SessionCheck::Expired => Err(ApiError::Token(crate::tokens::TokenError::Expired)),
        SessionCheck::Released => Err(ApiError::SessionReleased),
    }
}

impl WaitingRoom {
    /// Wires the parts together.
    pub(crate) fn new(store: Store, settings: Arc<Settings>) -> Self {
        let tokens = Tokens::new(&settings.queue.token_secret);
        Self {
            store,
            tokens,
            settings,
        }
    }

    fn queue_token(&self, event: &EventId, user: &UserId, sid: &str) -> Result<String, ApiError> {
        let exp =
            jsonwebtoken::get_current_timestamp() + self.settings.queue.queue_token_ttl_seconds;
        Ok(self.tokens.sign(TokenKind::Queue, event, user, sid, exp)?)
    }

    fn ticket(
        &self,
        event: &EventId,
        user: &UserId,
        place: Place,
        queue_token: Option<String>,
    ) -> Result<Ticket, ApiError> {
        match place {
            Place::PreQueue {
                opens_at_ms,
                silence_window_seconds,
            } => {
                let queue_token = match queue_token {
                    Some(token) => token,
                    None => self.queue_token(event, user, "0")?,
                };
                let now_ms = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
                let opens_in_ms = opens_at_ms.saturating_sub(now_ms);
                Ok(Ticket {
                    queue_token,
                    status: FanStatus::PreQueue,
                    position: 0,
                    ahead: 0,
                    eta_seconds: 0,
                    eta_ms: 0,
                    eta_low_seconds: 0,
                    eta_high_seconds: 0,
                    opens_at: i64::try_from(opens_at_ms)
                        .ok()
                        .and_then(DateTime::<Utc>::from_timestamp_millis),
                    opens_in_seconds: Some(opens_in_ms.div_ceil(1000)),
                    poll_after_ms: eta::pre_queue_poll_ms(opens_in_ms, silence_window_seconds),
                    access_token: None,
                    access_expires_at: None,
                })
            }
            Place::Waiting {
                seq,
                ahead,
                speed,
                silence_window_seconds,
            } => {
                let e = eta::estimate(ahead, &speed, silence_window_seconds);
                let queue_token = match queue_token {
                    Some(token) => token,
                    None => self.queue_token(event, user, &seq.to_string())?,
                };
                Ok(Ticket {
                    queue_token,
                    status: FanStatus::Waiting,
                    position: e.position,
                    ahead: e.ahead,
                    eta_seconds: e.eta_seconds,
                    eta_ms: e.eta_ms,
                    eta_low_seconds: e.eta_low_seconds,
                    eta_high_seconds: e.eta_high_seconds,
                    opens_at: None,
                    opens_in_seconds: None,
                    poll_after_ms: e.poll_after_ms,
                    access_token: None,
                    access_expires_at: None,
                })
            }
            Place::Active { sid, expires_at_ms } => {
                let queue_token = match queue_token {
                    Some(token) => token,
                    None => self.queue_token(event, user, &sid)?,
                };
                // The JWT expires with the admission (rounded down to whole
                // seconds, never later than the slot).
                let exp = expires_at_ms / 1000;
                let access_token = self
                    .tokens
                    .sign(TokenKind::Access, event, user, &sid, exp)?;
                let expires_at = i64::try_from(expires_at_ms)
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis);
                Ok(Ticket {
                    queue_token,
                    status: FanStatus::Active,
                    position: 0,
                    ahead: 0,
                    eta_seconds: 0,
                    eta_ms: 0,
                    eta_low_seconds: 0,
                    eta_high_seconds: 0,
                    opens_at: None,
                    opens_in_seconds: None,
                    poll_after_ms: eta::MAX_POLL_MS,
                    access_token: Some(access_token),
                    access_expires_at: expires_at,
                })
            }
        }
    }

    /// Enters the line (idempotent). Returns the ticket and whether a new
    /// place was made.
    ///
    /// # Errors
    /// `NoRoom`, `Closed`, `Paused`, `Store`.
    pub async fn enter(&self, event: &EventId, user: &UserId) -> Result<(Ticket, bool), ApiError> {
        match self.store.enter(event, user).await? {
            Lookup::Found { place, created } => {
                if created {
                    metrics::entered(event.as_str());
                }
                Ok((self.ticket(event, user, place, None)?, created))
            }
            other => Err(refusal(other)),
        }
    }

    /// Checks that `queue_token` is a queue token of `event` for `signed_in`
    /// (the fan of the identity token) and returns its claims. No I/O.
    ///
    /// # Errors
    /// `Token`, or `SubjectMismatch` for another fan's token.
    fn fans_queue_token(
        &self,
        event: &EventId,
        queue_token: &str,
        signed_in: &UserId,
    ) -> Result<Verified, ApiError> {
        let fan = self.tokens.verify(queue_token, TokenKind::Queue, event)?;
        if fan.user != *signed_in {
            return Err(ApiError::SubjectMismatch);
        }
        Ok(fan)
    }

    /// Checks the queue token of `signed_in` and reports their place; the
    /// poll counts as presence.
    ///
    /// # Errors
    /// `Token`, `SubjectMismatch`, `NoRoom`, `Closed`, `Paused`,
    /// `NotInLine`, `Store`.
    pub async fn status(
        &self,
        event: &EventId,
        queue_token: &str,
        signed_in: &UserId,
    ) -> Result<Ticket, ApiError> {
        let fan = self.fans_queue_token(event, queue_token, signed_in)?;
        match self.store.status(event, &fan.user).await? {
            Lookup::Found { place, .. } => {
                self.ticket(event, &fan.user, place, Some(queue_token.to_owned()))
            }
            other => Err(refusal(other)),
        }
    }

    /// `signed_in` leaves the line or gives up the active slot, with their
    /// queue token. Leaving twice is fine.
    ///
    /// # Errors
    /// `Token`, `SubjectMismatch`, `Store`.
    pub async fn leave(
        &self,
        event: &EventId,
        queue_token: &str,
        signed_in: &UserId,
    ) -> Result<(), ApiError> {
        let fan = self.fans_queue_token(event, queue_token, signed_in)?;
        if let Some(was_active) = self.store.leave(event, &fan.user).await? {
            let reason = if was_active { "left" } else { "left_waiting" };
            metrics::exited(event.as_str(), reason, 1);
        }
        Ok(())
    }

    /// Checks an access token: signature, expiry, event (no I/O), then
    /// revocation (one script). With `accept_completed`, a session released
    /// because its purchase completed passes too, with `completed` set, until
    /// the token expires: core-service needs that to replay a payment.
    ///
    /// # Errors
    /// `Token` (`OtherEvent` for another event), `SessionReleased`, `Store`.
    pub async fn verify_access(
        &self,
        event: &EventId,
        access_token: &str,
        accept_completed: bool,
    ) -> Result<Access, ApiError> {
        self.verify_access_many(&[AccessCheck {
            event,
            access_token,
            accept_completed,
        }])
        .await
        .pop()
        .unwrap_or_else(|| Err(no_answer()))
    }

    /// [`verify_access`](Self::verify_access) for several checks, with one
    /// revocation script per event instead of one per check. One result
    /// per check, in order. When an event's script fails, each of its
    /// checks fails with `Store` (the first carries the cause).
    pub async fn verify_access_many(
        &self,
        checks: &[AccessCheck<'_>],
    ) -> Vec<Result<Access, ApiError>> {
        let mut results: Vec<Option<Result<Access, ApiError>>> = Vec::with_capacity(checks.len());
        // Signed checks by event: one revocation script per event.
        let mut by_event: BTreeMap<&EventId, Vec<SignedCheck>> = BTreeMap::new();
        for (index, check) in checks.iter().enumerate() {
            match self
                .tokens
                .verify(check.access_token, TokenKind::Access, check.event)
            {
                Ok(verified) => {
                    by_event.entry(check.event).or_default().push(SignedCheck {
                        index,
                        verified,
                        accept_completed: check.accept_completed,
                    });
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error.into()))),
            }
        }
        let answers = futures::future::join_all(by_event.iter().map(|(event, members)| {
            let sessions: Vec<(&UserId, &str, bool)> = members
                .iter()
                .map(|c| {
                    (
                        &c.verified.user,
                        c.verified.sid.as_str(),
                        c.accept_completed,
                    )
                })
                .collect();
            async move { self.store.verify_many(event, &sessions).await }
        }))
        .await;
        for (members, answer) in by_event.into_values().zip(answers) {
            match answer {
                Ok(found) => {
                    for (member, check) in members.into_iter().zip(found) {
                        results[member.index] = Some(access(member.verified, check));
                    }
                }
                Err(error) => {
                    let mut error = Some(error);
                    for member in members {
                        let cause = error.take().unwrap_or(StoreError::SharedCallFailed);
                        results[member.index] = Some(Err(ApiError::Store(cause)));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(no_answer())))
            .collect()
    }

    /// Frees `user`'s active slot if it is admission session `session_id`
    /// (the access token's `sid`). Returns false when the fan holds no
    /// slot, or holds one of a newer session, which stays active: a late or
    /// replayed release never ends a later admission.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty `session_id`, `Store`.
    pub async fn release(
        &self,
        event: &EventId,
        user: &UserId,
        session_id: &str,
        reason: ExitReason,
    ) -> Result<bool, ApiError> {
        if session_id.is_empty() {
            return Err(ApiError::InvalidArgument("session_id is required"));
        }
        let released = self.store.release(event, user, session_id, reason).await?;
        if released {
            metrics::exited(event.as_str(), reason.as_str(), 1);
        }
        Ok(released)
    }

    /// Creates or updates a room. Returns true when created.
    ///
    /// # Errors
    /// `InvalidRoom`, `RoomAlreadyOpen` (a new `opens_at` after fans were
    /// placed in the line), `Store`.
    pub async fn configure(&self, event: &EventId, config: &RoomConfig) -> Result<bool, ApiError> {
        config.validate().map_err(ApiError::InvalidRoom)?;
        let created = match self.store.configure(event, config).await? {
            Configured::Created => true,
            Configured::Updated => false,
            Configured::AlreadyOpen => return Err(ApiError::RoomAlreadyOpen),
        };
        tracing::info!(event = %event, state = config.state.as_str(), capacity = config.capacity,
            admit_per_second = config.admit_per_second, "waiting room configured");
        Ok(created)
    }

    /// Records the booking core's inventory of `event` (see
    /// `ReportInventory`) and the reporting instance's `health`, which the
    /// admission rate follows; false when the event has no room.
    ///
    /// # Errors
    /// `Store`.
    pub async fn report_inventory(
        &self,
        event: &EventId,
        available: u64,
        held: u64,
        holders: u64,
        health: Option<&CoreHealth>,
    ) -> Result<bool, ApiError> {
        let Some(control) = self
            .store
            .report_inventory(event, available, held, holders, health)
            .await?
        else {
            return Ok(false);
        };
        metrics::admission_rate(event.as_str(), control.rate);
        if control.cut {
            metrics::admission_rate_cut(event.as_str(), &control.reason);
            tracing::info!(%event, rate = control.rate, reason = %control.reason,
                "admission rate cut: the booking core is overloaded");
        }
        Ok(true)
    }

    /// Settings and numbers of a room.
    ///
    /// # Errors
    /// `NoRoom`, `Store`.
    pub async fn room(&self, event: &EventId) -> Result<RoomSnapshot, ApiError> {
        self.store.room(event).await?.ok_or(ApiError::NoRoom)
    }
}

fn refusal(lookup: Lookup) -> ApiError {
    match lookup {
        Lookup::NoRoom => ApiError::NoRoom,
        Lookup::Closed => ApiError::Closed,
        Lookup::Paused => ApiError::Paused,
        Lookup::SoldOut => ApiError::SoldOut,
        Lookup::Gone | Lookup::Found { .. } => ApiError::NotInLine,
    }
}
