//! The headers and bodies the request builders put on the wire.

use core_service::{
    api::{CreatePayment, CreateReservation},
    domain::{PerformanceId, SeatId},
};
use reqwest::header::AUTHORIZATION;

use super::*;

fn built(request: RequestBuilder) -> reqwest::Request {
    request.build().expect("the request builds")
}

fn header<'a>(request: &'a reqwest::Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts `request` carries the identity `identity` and `token` in
/// `token_header`.
fn assert_fan_token(request: RequestBuilder, token_header: &str, token: &str) {
    let request = built(request);
    assert_eq!(header(&request, token_header), Some(token));
    assert_eq!(header(&request, "authorization"), Some("Bearer identity"));
}

#[test]
fn a_fan_sends_the_identity_on_every_call_and_entry_names_no_user() {
    let fan = Client::default().as_fan("id.token.sig");
    let enter = built(fan.enter_request("42"));
    assert_eq!(header(&enter, "authorization"), Some("Bearer id.token.sig"));
    assert_eq!(enter.body().and_then(|b| b.as_bytes()), Some(&b"{}"[..]));
    let balance = built(fan.balance_request("fan-1"));
    assert_eq!(
        header(&balance, "authorization"),
        Some("Bearer id.token.sig")
    );
    assert!(fan.is_fan());
    assert!(!Client::default().is_fan());
}

#[test]
fn the_queue_token_travels_in_its_own_header_not_in_authorization() {
    let fan = Client::default().as_fan("identity");
    assert_fan_token(
        fan.poll_request("42", "queue.tok"),
        QUEUE_TOKEN_HEADER,
        "queue.tok",
    );
    assert_fan_token(
        fan.leave_request("42", "queue.tok"),
        QUEUE_TOKEN_HEADER,
        "queue.tok",
    );
}

#[test]
fn the_access_token_travels_in_its_own_header_for_holds_and_payments() {
    let fan = Client::default().as_fan("identity");
    let hold = CreateReservation::seats(
        PerformanceId::new(7).unwrap(),
        vec![SeatId::new(1).unwrap()],
    );
    let payment = CreatePayment {
        reservation_id: uuid::Uuid::nil(),
        coupon_code: None,
    };
    let pay = fan.pay_request("access.tok", "key-1", &payment);
    assert_fan_token(
        fan.hold_request("access.tok", &hold),
        ACCESS_TOKEN_HEADER,
        "access.tok",
    );
    assert_fan_token(pay, ACCESS_TOKEN_HEADER, "access.tok");
}

#[test]
fn the_identity_is_marked_sensitive_and_left_out_of_debug_output() {
    let fan = Client::default().as_fan("secret-identity");
    let request = built(fan.seat_map_request(7));
    assert!(request.headers()[AUTHORIZATION].is_sensitive());
    assert!(!format!("{fan:?}").contains("secret-identity"));
}

#[test]
fn an_identity_that_cannot_be_a_header_is_not_sent() {
    let fan = Client::default().as_fan("bad\ntoken");
    assert!(!fan.is_fan());
    assert_eq!(
        header(&built(fan.enter_request("42")), "authorization"),
        None
    );
}

#[test]
fn signing_in_posts_the_subject_and_lifetime_to_the_token_endpoint() {
    let issuer = Issuer::new(reqwest::Client::new(), "http://127.0.0.1:8090/");
    let request = built(issuer.token_request("fan-1", 600));
    assert_eq!(request.url().as_str(), "http://127.0.0.1:8090/token");
    let body: serde_json::Value =
        serde_json::from_slice(request.body().and_then(|b| b.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"sub": "fan-1", "ttl_seconds": 600})
    );
}
