//! core-service's calls: the catalog (admin), balances, the seat map,
//! holds and payments.

use core_service::api::{
    Balance, ChargeRequest, ConcertCreated, CreatePayment, CreateReservation, LedgerEntry,
    NewConcert, Payment, Reservation, SeatMap,
    seatmap::{Availability, SeatLayout},
};
use reqwest::{Method, RequestBuilder};
use uuid::Uuid;

use crate::{ACCESS_TOKEN_HEADER, Client, Error, Operation, Service};

/// Header naming a payment attempt; a retry with the same key replays the
/// first outcome instead of paying twice.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl Client {
    /// The request of [`Client::create_concert`].
    pub fn create_concert_request(&self, concert: &NewConcert) -> RequestBuilder {
        self.admin(Service::Core, Method::POST, "/admin/v1/concerts")
            .json(concert)
    }

    /// Creates a concert with its performances and seat maps (admin key);
    /// returns the new ids, seat ids ascending per performance.
    ///
    /// # Errors
    /// [`Error::Status`] 400 for an invalid catalog, 401 without the admin
    /// key; [`Error::Transport`] when core-service is unreachable.
    pub async fn create_concert(&self, concert: &NewConcert) -> Result<ConcertCreated, Error> {
        self.json(
            Operation::CreateConcert,
            self.create_concert_request(concert),
        )
        .await
    }

    /// The request of [`Client::charge`].
    pub fn charge_request(&self, user: &str, charge: &ChargeRequest) -> RequestBuilder {
        self.admin(
            Service::Core,
            Method::POST,
            &format!("/v1/users/{user}/balance/charges"),
        )
        .json(charge)
    }

    /// Adds `charge.amount` KRW to `user`'s prepaid balance (admin key);
    /// returns the ledger entry with the balance after it.
    ///
    /// # Errors
    /// [`Error::Status`] 401 without the admin key, 422 when the balance
    /// would overflow.
    pub async fn charge(&self, user: &str, charge: &ChargeRequest) -> Result<LedgerEntry, Error> {
        self.json(Operation::Charge, self.charge_request(user, charge))
            .await
    }

    /// The request of [`Client::balance`].
    pub fn balance_request(&self, user: &str) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::GET,
            &format!("/v1/users/{user}/balance"),
        )
    }

    /// `user`'s balance in KRW and latest ledger entries: this client's fan
    /// reads their own ([`Client::as_fan`]); the admin key reads anyone's.
    ///
    /// # Errors
    /// [`Error::Status`] 400 for an invalid user id, 401 without an
    /// identity, 403 `not_owner` for another fan's balance.
    pub async fn balance(&self, user: &str) -> Result<Balance, Error> {
        self.json(Operation::Balance, self.balance_request(user))
            .await
    }

    /// The request of [`Client::seat_map`].
    pub fn seat_map_request(&self, performance: i64) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::GET,
            &format!("/v1/performances/{performance}/seats"),
        )
    }

    /// Every seat of `performance` and whether it can be held now (up to
    /// 1 s stale).
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown performance.
    pub async fn seat_map(&self, performance: i64) -> Result<SeatMap, Error> {
        self.json(Operation::SeatMap, self.seat_map_request(performance))
            .await
    }

    /// The request of [`Client::layout`].
    pub fn layout_request(&self, performance: i64) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::GET,
            &format!("/v1/performances/{performance}/layout"),
        )
    }

    /// The static layout of `performance`: sections, rows, grades, prices
    /// and seat ids as runs.
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown performance.
    pub async fn layout(&self, performance: i64) -> Result<SeatLayout, Error> {
        self.json(Operation::SeatMap, self.layout_request(performance))
            .await
    }

    /// The request of [`Client::availability`].
    pub fn availability_request(&self, performance: i64, since: Option<&str>) -> RequestBuilder {
        let mut path = format!("/v1/performances/{performance}/availability");
        if let Some(since) = since {
            path.push('?');
            path.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .append_pair("since", since)
                    .finish(),
            );
        }
        self.request(Service::Core, Method::GET, &path)
    }

    /// Which seats of `performance` can be held: the full bitmap, or the
    /// delta since the version `since` when the server still knows it.
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown performance, 400 for a
    /// malformed `since`.
    pub async fn availability(
        &self,
        performance: i64,
        since: Option<&str>,
    ) -> Result<Availability, Error> {
        self.json(
            Operation::SeatMap,
            self.availability_request(performance, since),
        )
        .await
    }

    /// The request of [`Client::hold`]: the access token in
    /// [`ACCESS_TOKEN_HEADER`].
    pub fn hold_request(&self, access_token: &str, hold: &CreateReservation) -> RequestBuilder {
        self.request(Service::Core, Method::POST, "/v1/reservations")
            .header(ACCESS_TOKEN_HEADER, access_token)
            .json(hold)
    }

    /// Holds `hold.seat_ids` (all or none), or the best block
    /// `hold.best_available` asks for, for this client's fan, admitted
    /// with `access_token`, until the returned `held_until` (never after
    /// the access token expires).
    ///
    /// # Errors
    /// [`Error::Status`]: 409 `seat_taken` when any seat is held or sold,
    /// 409 `no_block_available` when no row has the block asked for,
    /// 409 `order_limit` / `fan_limit` beyond the performance's purchase
    /// limits, 401 without an identity or for an access token queue-service
    /// refuses, 403 `token_subject_mismatch` for another fan's access
    /// token, 422 for a bad seat list.
    pub async fn hold(
        &self,
        access_token: &str,
        hold: &CreateReservation,
    ) -> Result<Reservation, Error> {
        self.json(Operation::Hold, self.hold_request(access_token, hold))
            .await
    }

    /// The request of [`Client::reservation`].
    pub fn reservation_request(&self, id: Uuid) -> RequestBuilder {
        self.request(
            Service::Core,
            Method::GET,
            &format!("/v1/reservations/{id}"),
        )
    }

    /// A reservation of this client's fan by id; a hold past `held_until`
    /// reads as `expired`.
    ///
    /// # Errors
    /// [`Error::Status`] 404 for an unknown id or another fan's
    /// reservation, 401 without an identity.
    pub async fn reservation(&self, id: Uuid) -> Result<Reservation, Error> {
        self.json(Operation::Reservation, self.reservation_request(id))
            .await
    }

    /// The request of [`Client::pay`].
    pub fn pay_request(
        &self,
        access_token: &str,
        idempotency_key: &str,
        payment: &CreatePayment,
    ) -> RequestBuilder {
        self.request(Service::Core, Method::POST, "/v1/payments")
            .header(ACCESS_TOKEN_HEADER, access_token)
            .header(IDEMPOTENCY_KEY, idempotency_key)
            .json(payment)
    }

    /// Pays a held reservation from this client's fan's balance, admitted
    /// with `access_token` (in [`ACCESS_TOKEN_HEADER`]). A retry with the
    /// same `idempotency_key` returns the first payment instead of paying
    /// again.
    ///
    /// # Errors
    /// [`Error::Status`]: 402 `insufficient_balance`, 410 `hold_expired`,
    /// 409 `already_paid` or for a key reused on another reservation,
    /// 403 for someone else's reservation or access token, 401 without an
    /// identity.
    pub async fn pay(
        &self,
        access_token: &str,
        idempotency_key: &str,
        payment: &CreatePayment,
    ) -> Result<Payment, Error> {
        self.json(
            Operation::Pay,
            self.pay_request(access_token, idempotency_key, payment),
        )
        .await
    }
}
