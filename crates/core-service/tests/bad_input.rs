//! Every kind of bad input gets its own status and problem code, and
//! leaves no trace.

mod common;

use common::{CORE_ADMIN_KEY, Reply, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_problem_code() {
    let app = spawn_app().await;
    let show = app.create_show(1, 10, 10_000, 2).await;
    let token = app.access_token(show.performance_id, "careful").await;
    let other = app.access_token(show.performance_id, "other").await;
    let base = &app.base;
    let http = &app.http;

    let send = |request: reqwest::RequestBuilder| async move {
        Reply::from(request.send().await.unwrap()).await
    };
    let charge = |body: &'static str| {
        http.post(format!("{base}/v1/users/careful/balance/charges"))
            .header("x-admin-key", CORE_ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body)
    };
    let signed = |method: reqwest::Method, path: &str| app.signed(method, path, &token.identity);
    let hold = |pass: &common::Pass, body: serde_json::Value| {
        app.signed(reqwest::Method::POST, "/v1/reservations", &pass.identity)
            .header("onsale-access-token", &pass.access)
            .json(&body)
    };
    let pay = |pass: &common::Pass| {
        app.signed(reqwest::Method::POST, "/v1/payments", &pass.identity)
            .header("onsale-access-token", &pass.access)
    };

    let held = app
        .hold(&token, show.performance_id, &show.seat_ids[..1])
        .await;
    let reservation = held.body["reservation_id"].as_str().unwrap().to_owned();
    let perf = show.performance_id;

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "malformed json",
            charge("{\"amount\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "negative amount",
            charge("{\"amount\": -5}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "zero amount",
            charge("{\"amount\": 0}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "amount beyond i64",
            charge("{\"amount\": 9223372036854775808}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "fractional amount",
            charge("{\"amount\": 1.5}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "string amount",
            charge("{\"amount\": \"100\"}"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "charge without admin key",
            http.post(format!("{base}/v1/users/careful/balance/charges"))
                .json(&json!({"amount": -5})),
            StatusCode::UNAUTHORIZED,
            "admin_key_required",
        ),
        (
            "user id with a space",
            signed(reqwest::Method::GET, "/v1/users/has%20space/balance"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown user",
            http.get(format!("{base}/v1/users/nobody/balance"))
                .header("x-admin-key", CORE_ADMIN_KEY),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "non-numeric concert id",
            http.get(format!("{base}/v1/concerts/abc")),
            StatusCode::BAD_REQUEST,
            "malformed_path",
        ),
        (
            "negative concert id",
            http.get(format!("{base}/v1/concerts/-3")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown concert",
            http.get(format!("{base}/v1/concerts/999999")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "unknown performance",
            http.get(format!("{base}/v1/performances/999999/seats")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "bad paging",
            http.get(format!("{base}/v1/concerts?limit=0")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "malformed reservation id",
            signed(reqwest::Method::GET, "/v1/reservations/nope"),
            StatusCode::BAD_REQUEST,
            "malformed_path",
        ),
        (
            "unknown reservation",
            signed(
                reqwest::Method::GET,
                &format!("/v1/reservations/{}", uuid::Uuid::now_v7()),
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            http.put(format!("{base}/v1/reservations")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "unknown path",
            http.get(format!("{base}/v2/nothing")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "hold without identity",
            http.post(format!("{base}/v1/reservations"))
                .header("onsale-access-token", &token.access)
                .json(&json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]]})),
            StatusCode::UNAUTHORIZED,
            "missing_identity_token",
        ),
        (
            "hold without access token",
            signed(reqwest::Method::POST, "/v1/reservations")
                .json(&json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]]})),
            StatusCode::UNAUTHORIZED,
            "missing_access_token",
        ),
        (
            "hold with a forged token",
            hold(
                &token.with_access("not.a.token".into()),
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]]}),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_access_token",
        ),
        (
            "too many seats",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": &show.seat_ids[1..4]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            "duplicate seats",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1], show.seat_ids[1]]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_seats",
        ),
        (
            "no seats",
            hold(&token, json!({"performance_id": perf, "seat_ids": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_seats",
        ),
        (
            "seat of another performance",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [999_999]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_seats",
        ),
        (
            "negative seat id",
            hold(&token, json!({"performance_id": perf, "seat_ids": [-1]})),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "token of another performance",
            hold(
                &token,
                json!({"performance_id": perf + 1000, "seat_ids": [show.seat_ids[1]]}),
            ),
            StatusCode::FORBIDDEN,
            "access_denied",
        ),
        (
            "unknown field",
            hold(
                &token,
                json!({"performance_id": perf, "seat_ids": [show.seat_ids[1]], "user_id": "someone-else"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "payment without Idempotency-Key",
            pay(&token).json(&json!({"reservation_id": reservation})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "payment of an unknown reservation",
            pay(&token)
                .header("idempotency-key", "k1")
                .json(&json!({"reservation_id": uuid::Uuid::now_v7()})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "payment of another user's reservation",
            pay(&other)
                .header("idempotency-key", "k2")
                .json(&json!({"reservation_id": reservation})),
            StatusCode::FORBIDDEN,
            "not_owner",
        ),
        (
            "admin without key",
            http.post(format!("{base}/admin/v1/concerts"))
                .json(&json!({})),
            StatusCode::UNAUTHORIZED,
            "admin_key_required",
        ),
    ];
    for (name, request, status, code) in cases {
        let reply = send(request).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert!(reply.is_problem(), "{name}: not a problem+json");
        assert_eq!(reply.code(), code, "{name}: {}", reply.body);
    }

    // A balance that would overflow i64 is refused and left unchanged.
    assert_eq!(
        app.charge("careful", i64::MAX).await.status,
        StatusCode::CREATED
    );
    let overflow = app.charge("careful", 1).await;
    assert_eq!(overflow.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(overflow.code(), "balance_overflow");
    assert_eq!(app.balance("careful").await, i64::MAX);
    // None of the failures left a trace.
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 1);
    assert_eq!(app.scalar("SELECT count(*) FROM idempotency_keys").await, 0);
}
