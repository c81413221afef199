//! One fan's journey: enter, poll until admitted, hold seats (`seats`),
//! pay; or abandon, give up, or let the hold lapse.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use core_service::domain::{CouponCode, PerformanceId};
use onsale_client::{
    Client, Error,
    core_api::{CreatePayment, Payment, Reservation},
    queue_api::{FanStatus, Ticket},
};
use rand::Rng;

use super::{
    OnsaleArgs,
    coupons::CouponCampaign,
    eta::EtaGiven,
    seats::{Held, SeatStep},
    tally::{Passage, Tally},
};

/// A run of the simulation, shared by every fan.
pub(super) struct Sim {
    /// Observed by [`Tally::observe`].
    pub(super) client: Client,
    /// Fan `n`'s identity token at `n`, signed in before the arrivals.
    pub(super) identities: Vec<String>,
    /// How long signing every fan in took (not part of any step).
    pub(super) sign_in: Duration,
    pub(super) performance: PerformanceId,
    /// The performance's concert (the coupon campaign's scope, the
    /// ranking's key).
    pub(super) concert: i64,
    /// The first-come coupon campaign, unless `--coupons 0`.
    pub(super) campaign: Option<CouponCampaign>,
    pub(super) seat_total: u64,
    pub(super) args: OnsaleArgs,
    pub(super) tally: Arc<Tally>,
    pub(super) sold_out: AtomicBool,
    pub(super) deadline: Instant,
    /// Wall-clock start of the simulation, to count this run's events.
    pub(super) started_at: chrono::DateTime<chrono::Utc>,
    /// Monotonic start of the arrivals.
    pub(super) simulation_started: Instant,
    /// When the room opens (`--opens-in` after the room was configured,
    /// just before the first arrival); `None` when it opened at once.
    pub(super) opens_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The same instant on the monotonic clock.
    pub(super) opens: Option<Instant>,
}

enum Journey {
    Done,
    Abandoned,
    NoSeat,
    /// The waiting room said the show is sold out (410 `sold_out`).
    ToldSoldOut,
    Stopped,
}

/// A distinct client address per fan, carried only in `X-Forwarded-For`.
fn fan_address(n: u32) -> IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, a, b, c))
}

/// Fan `n`'s user id.
pub(super) fn fan_id(n: u32) -> String {
    format!("sim-fan-{n}")
}

/// Calls `call` as a well-behaved client does: a 429 or 503 is tried again
/// after its `Retry-After` (1 s when absent, at most 10 s), at most 5 tries
/// in all.
pub(super) async fn patiently<T, F, Fut>(mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(error) if error.is_shed() && attempt < 5 => {
                let wait = error.retry_after().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether the waiting room answered 410 `sold_out`: no seat left and no
/// live hold.
fn told_sold_out<T>(result: &Result<T, Error>) -> bool {
    matches!(result, Err(error) if error.code() == Some("sold_out"))
}

/// The answer, `None` for a refusal (any status that is not 2xx, which ends
/// the journey), or the failure to get an answer.
pub(super) fn answer<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::Status { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

impl Sim {
    /// Runs fan `n`'s journey and counts how it ended.
    pub(super) async fn fan(self: &Arc<Self>, n: u32) {
        let mut step = SeatStep::default();
        let journey = self.journey(n, &mut step).await;
        step.count(&self.tally.seat_step, self.sold_out.load(Ordering::Relaxed));
        match journey {
            Ok(Journey::Abandoned) => {
                self.tally.abandoned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Journey::NoSeat) => {
                self.tally.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Journey::ToldSoldOut) => {
                self.tally.told_sold_out.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Journey::Done | Journey::Stopped) => {}
            Err(error) => {
                self.tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                let kind = match &error {
                    Error::Transport { .. } => "no response",
                    Error::Decode { .. } => "undecodable body",
                    Error::Status { .. } => "refused",
                };
                if let Ok(mut errors) = self.tally.errors.lock() {
                    *errors
                        .entry(format!("{}: {kind}", error.operation()))
                        .or_default() += 1;
                }
            }
        }
    }

    async fn journey(&self, n: u32, step: &mut SeatStep) -> Result<Journey, Error> {
        let Some(identity) = self.identities.get(n as usize) else {
            return Ok(Journey::Stopped);
        };
        let fan = self.client.as_fan(identity).forwarded_for(fan_address(n));
        let event = self.performance.get();
        let (abandons, patience, lets_expire, quantity, claims, picks) = {
            let mut rng = rand::rng();
            (
                rng.random_bool(self.args.abandon),
                Duration::from_secs_f64(self.args.abandon_within as f64 * rng.random::<f64>()),
                rng.random_bool(self.args.let_expire),
                rng.random_range(1..=4u32),
                rng.random_bool(self.args.coupon_claimers),
                rng.random_bool(self.args.pick_own_seats),
            )
        };
        let entered_at = Instant::now();
        let entry_sent_us = self.micros_since_start(entered_at);
        let entered = patiently(|| fan.enter(event)).await;
        let entry_answered_us = self.micros_since_start(Instant::now());
        if told_sold_out(&entered) {
            return Ok(Journey::ToldSoldOut);
        }
        let Some(mut ticket) = answer(entered)? else {
            return Ok(Journey::Stopped);
        };
        self.tally.entered.fetch_add(1, Ordering::Relaxed);
        let pre_queued = ticket.status == FanStatus::PreQueue;
        if pre_queued {
            self.tally.pre_queued.fetch_add(1, Ordering::Relaxed);
        }
        let mut etas = Vec::new();
        note_eta(&ticket, &mut etas);
        let since_start = self.simulation_started.elapsed().as_millis() as u64;
        self.tally
            .last_entry_ms
            .fetch_max(since_start, Ordering::Relaxed);
        let queue_token = ticket.queue_token.clone();
        // Claimers claim right after taking their place in line, while they
        // wait: the campaign opened before the sale, and a first-come
        // coupon goes to whoever asks first, in line or not.
        let coupon = if claims {
            self.claim(&fan).await?
        } else {
            None
        };
        // An abandoner walks away `patience` after entering (at once by
        // default) without polling again; the room must not waste a slot
        // on this fan. One admitted before then goes on like any fan.
        let walks_away = abandons.then(|| entered_at + patience);
        while ticket.status != FanStatus::Active {
            if Instant::now() > self.deadline {
                return Ok(Journey::Stopped);
            }
            let wait = Duration::from_millis(ticket.poll_after_ms.clamp(100, 30_000));
            if let Some(at) = walks_away.filter(|at| Instant::now() + wait > *at) {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                if let Ok(mut waits) = self.tally.abandon_wait_ms.lock() {
                    waits.push(entered_at.elapsed().as_secs_f64() * 1_000.0);
                }
                return Ok(Journey::Abandoned);
            }
            tokio::time::sleep(wait).await;
            let polled = patiently(|| fan.poll(event, &queue_token)).await;
            if told_sold_out(&polled) {
                if let Ok(mut waits) = self.tally.sold_out_wait_ms.lock() {
                    waits.push(entered_at.elapsed().as_secs_f64() * 1_000.0);
                }
                return Ok(Journey::ToldSoldOut);
            }
            let Some(next) = answer(polled)? else {
                return Ok(Journey::Stopped);
            };
            ticket = next;
            note_eta(&ticket, &mut etas);
        }
        self.passed(
            &ticket,
            entered_at,
            pre_queued,
            etas,
            (entry_sent_us, entry_answered_us),
        );
        if self.sold_out.load(Ordering::Relaxed) {
            self.tally
                .admitted_after_sold_out
                .fetch_add(1, Ordering::Relaxed);
        }
        self.tally.admitted.fetch_add(1, Ordering::Relaxed);
        let access = ticket.access_token.unwrap_or_default();

        let reservation = match self
            .hold_seats(&fan, &access, &queue_token, quantity, picks, step)
            .await?
        {
            Held::Seats(reservation) => reservation,
            Held::NoSeat => return Ok(Journey::NoSeat),
            Held::Stopped => return Ok(Journey::Stopped),
        };
        self.tally.holds.fetch_add(1, Ordering::Relaxed);
        if lets_expire {
            self.tally.let_expire.fetch_add(1, Ordering::Relaxed);
            step.booked = true;
            return Ok(Journey::Done);
        }
        let key = uuid::Uuid::new_v4().to_string();
        let payment = CreatePayment {
            reservation_id: reservation.reservation_id,
            // Every issued code parses (32 hex digits).
            coupon_code: coupon.as_deref().and_then(|c| CouponCode::parse(c).ok()),
        };
        match patiently(|| fan.pay(&access, &key, &payment)).await {
            Ok(paid) => {
                step.booked = true;
                self.paid(&reservation, &paid);
            }
            Err(error) if payment.coupon_code.is_some() && is_coupon_refusal(&error) => {
                // Counted (the run fails on it), then paid without the
                // coupon, as a fan would, so the seats still sell.
                self.tally
                    .coupons
                    .payments_refused
                    .fetch_add(1, Ordering::Relaxed);
                let key = uuid::Uuid::new_v4().to_string();
                let payment = CreatePayment {
                    coupon_code: None,
                    ..payment
                };
                if let Some(paid) = answer(patiently(|| fan.pay(&access, &key, &payment)).await)? {
                    step.booked = true;
                    self.paid(&reservation, &paid);
                }
            }
            Err(Error::Status { .. }) => {}
            Err(error) => return Err(error),
        }
        Ok(Journey::Done)
    }

    /// µs from the start of the arrivals to `at`.
    fn micros_since_start(&self, at: Instant) -> u64 {
        u64::try_from(
            at.saturating_duration_since(self.simulation_started)
                .as_micros(),
        )
        .unwrap_or(u64::MAX)
    }

    /// Records the admission of a fan who sent its entry at `entered_at`
    /// (`pre_queued` when it answered `pre_queue`) and has just been
    /// answered `active` with `ticket`: its activation waits and its
    /// passage with the ETAs it was given and its entry's `(sent,
    /// answered)` µs since the start.
    fn passed(
        &self,
        ticket: &Ticket,
        entered_at: Instant,
        pre_queued: bool,
        etas: Vec<EtaGiven>,
        (entry_sent_us, entry_answered_us): (u64, u64),
    ) {
        let ms = |from: Instant| from.elapsed().as_secs_f64() * 1_000.0;
        if let Ok(mut waits) = self.tally.activation_wait_ms.lock() {
            waits.push(ms(entered_at));
        }
        let from = match self.opens {
            Some(opens) if pre_queued => opens.clamp(entered_at, Instant::now()),
            _ => entered_at,
        };
        if let Ok(mut waits) = self.tally.activation_wait_from_opening_ms.lock() {
            waits.push(ms(from));
        }
        let passage = Passage {
            entry_sent_us,
            entry_answered_us,
            pre_queued,
            access_expires_ms: ticket.access_expires_at.map(|at| at.timestamp_millis()),
            first_active_ms: chrono::Utc::now().timestamp_millis(),
            etas,
        };
        if let Ok(mut passages) = self.tally.passages.lock() {
            passages.push(passage);
        }
    }

    /// Claims a coupon of the campaign for `fan`; their code, or `None`
    /// (no campaign, sold out, refused).
    async fn claim(&self, fan: &Client) -> Result<Option<String>, Error> {
        let Some(campaign) = &self.campaign else {
            return Ok(None);
        };
        let counts = &self.tally.coupons;
        counts.claimers.fetch_add(1, Ordering::Relaxed);
        match patiently(|| fan.claim_coupon(campaign.id)).await {
            Ok(coupon) => {
                counts.issued.fetch_add(1, Ordering::Relaxed);
                Ok(Some(coupon.code))
            }
            // A retried claim (after a 503) whose first try issued: the
            // problem carries the fan's coupon.
            Err(error) if error.code() == Some("already_claimed") => {
                let code = error.problem().and_then(|p| {
                    Some(
                        p.extensions
                            .get("coupon")?
                            .get("code")?
                            .as_str()?
                            .to_owned(),
                    )
                });
                let counter = if code.is_some() {
                    &counts.issued
                } else {
                    &counts.claims_refused
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(code)
            }
            Err(error) if error.code() == Some("sold_out") => {
                counts.sold_out.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(Error::Status { .. }) => {
                counts.claims_refused.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Counts a completed payment of `reservation`, and its coupon.
    fn paid(&self, reservation: &Reservation, paid: &Payment) {
        self.tally.payments.fetch_add(1, Ordering::Relaxed);
        let seats = reservation.seats.len() as u64;
        let sold = self.tally.seats_paid.fetch_add(seats, Ordering::Relaxed) + seats;
        if sold >= self.seat_total {
            self.sold_out.store(true, Ordering::Relaxed);
        }
        if paid.coupon_code.is_none() {
            return;
        }
        let counts = &self.tally.coupons;
        counts.used.fetch_add(1, Ordering::Relaxed);
        counts
            .discount_krw
            .fetch_add(u64::try_from(paid.discount).unwrap_or(0), Ordering::Relaxed);
        let expected = self.campaign.as_ref().map(|c| c.discount.on(paid.price));
        if expected != Some(paid.discount) || paid.amount != paid.price - paid.discount {
            counts.discount_mismatches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Keeps the ETA of `ticket` in `etas` when it is a `waiting` answer, with
/// the time it arrived.
fn note_eta(ticket: &Ticket, etas: &mut Vec<EtaGiven>) {
    if ticket.status == FanStatus::Waiting {
        etas.push(EtaGiven {
            at_ms: chrono::Utc::now().timestamp_millis(),
            eta_ms: ticket.eta_ms,
            low_s: ticket.eta_low_seconds,
            high_s: ticket.eta_high_seconds,
        });
    }
}

/// A payment refused because of its coupon (the fan may pay without it).
fn is_coupon_refusal(error: &Error) -> bool {
    matches!(
        error.code(),
        Some("coupon_used" | "coupon_expired" | "unknown_coupon" | "coupon_not_applicable")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fan_has_an_address_of_its_own() {
        assert_eq!(fan_address(0).to_string(), "10.0.0.0");
        assert_eq!(fan_address(70_000).to_string(), "10.1.17.112");
        assert_ne!(fan_address(1), fan_address(256));
    }
}
