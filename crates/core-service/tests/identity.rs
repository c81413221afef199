//! Who may do what, against the real stack: identity tokens that break a
//! rule are refused, a fan's access token works only with their own
//! identity, a fan reads and releases only their own things, and each fan
//! (or anonymous address) has a request budget of their own.

mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{Pass, Reply, TestApp, identity::claim, spawn_app, spawn_app_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Unix seconds now.
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid identity token of `app`'s issuer for `sub`.
fn claims(app: &TestApp, sub: &str) -> Value {
    json!({
        "iss": app.issuer.url(),
        "aud": "onsale",
        "sub": sub,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 600,
    })
}

/// `claims` with `changes` applied.
fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    claims
}

/// A header of the issuer's algorithm naming its signing key.
fn signed(app: &TestApp) -> Header {
    let mut header = Header::new(devstack::issuer::ALGORITHM);
    header.kid = Some(app.issuer.kid());
    header
}

/// The base64url JSON of `value`, as one part of a compact JWS.
fn part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Identity tokens for `sub` that break one rule each, by the rule.
fn refused_tokens(app: &TestApp, sub: &str) -> Vec<(&'static str, String)> {
    let valid = app.identity(sub);
    let sign = |claims: Value| app.issuer.sign(&signed(app), &claims);
    // The signature of one fan's token over another fan's claims.
    let forged = {
        let parts: Vec<&str> = valid.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claim(&valid, "sub"), Some(json!(sub)));
        payload["sub"] = json!("someone-richer");
        format!("{}.{}.{}", parts[0], part(&payload), parts[2])
    };
    let unsigned = format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": "JWT", "kid": app.issuer.kid()})),
        part(&claims(app, sub))
    );
    // Algorithm confusion: a MAC keyed with the published public key.
    let public_key = serde_json::to_vec(&app.issuer.jwks().keys[0]).unwrap();
    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(app.issuer.kid());
    let confused = jsonwebtoken::encode(
        &hs256,
        &claims(app, sub),
        &EncodingKey::from_secret(&public_key),
    )
    .unwrap();
    // A key the issuer never published, under the issuer's name.
    let dir = std::env::temp_dir().join(format!("stranger-{}", devstack::testing::unique_suffix()));
    let stranger = devstack::issuer::Issuer::open(&dir, app.issuer.url()).unwrap();
    let unknown_kid = stranger.mint(sub, 600, "onsale").unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        ("forged", forged),
        (
            "expired",
            sign(with(claims(app, sub), json!({"exp": now() - 120}))),
        ),
        (
            "not yet valid",
            sign(with(
                claims(app, sub),
                json!({"nbf": now() + 300, "exp": now() + 900}),
            )),
        ),
        (
            "wrong issuer",
            sign(with(claims(app, sub), json!({"iss": "http://127.0.0.1:1"}))),
        ),
        (
            "wrong audience",
            sign(with(claims(app, sub), json!({"aud": "another-app"}))),
        ),
        ("alg none", unsigned),
        ("HS256 with the public key", confused),
        ("unknown kid", unknown_kid),
        ("not a JWT", "not-a-jwt".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_that_break_a_rule_are_refused_with_401_and_hold_nothing() {
    let app = spawn_app().await;
    let show = app.create_show(1, 4, 10_000, 4).await;
    let pass = app.access_token(show.performance_id, "signed-in").await;
    let seats = &show.seat_ids[..1];

    for (rule, token) in refused_tokens(&app, "signed-in") {
        let reply = app
            .hold(
                &pass.with_identity(token.clone()),
                show.performance_id,
                seats,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{rule}: {}",
            reply.body
        );
        assert_eq!(
            reply.code(),
            "invalid_identity_token",
            "{rule}: {}",
            reply.body
        );
        assert!(reply.is_problem(), "{rule}");
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{rule}: {challenge}");
        let read = app.signed(Method::GET, "/v1/users/signed-in/balance", &token);
        assert_eq!(
            Reply::send(read).await.status,
            StatusCode::UNAUTHORIZED,
            "{rule}"
        );
    }
    let anonymous = Reply::send(
        app.http
            .post(format!("{}/v1/reservations", app.base))
            .header("onsale-access-token", &pass.access)
            .json(&json!({"performance_id": show.performance_id, "seat_ids": seats})),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "missing_identity_token");
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 0);

    // The same claims, valid, signed the same way: accepted, so each refusal
    // above was for its rule alone.
    let valid = app.issuer.sign(&signed(&app), &claims(&app, "signed-in"));
    let held = app
        .hold(&pass.with_identity(valid), show.performance_id, seats)
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    assert_eq!(held.body["user_id"], "signed-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_cannot_hold_pay_read_or_release_as_another_fan() {
    let app = spawn_app().await;
    let show = app.create_show(1, 6, 10_000, 4).await;
    let alice = app.access_token(show.performance_id, "alice").await;
    let bob = app.access_token(show.performance_id, "bob").await;
    app.charge("alice", 100_000).await;
    app.charge("bob", 100_000).await;

    // Bob signed in, presenting Alice's admission (and the other way round).
    let stolen = alice.with_identity(bob.identity.clone());
    let hold = app
        .hold(&stolen, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(hold.status, StatusCode::FORBIDDEN, "{}", hold.body);
    assert_eq!(hold.code(), "token_subject_mismatch");
    let lent = bob.with_identity(alice.identity.clone());
    let hold = app
        .hold(&lent, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(hold.code(), "token_subject_mismatch");

    let held = app
        .hold(&alice, show.performance_id, &show.seat_ids[..2])
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();

    let paid = app.pay(&stolen, "bob-pays", &id).await;
    assert_eq!(paid.status, StatusCode::FORBIDDEN, "{}", paid.body);
    assert_eq!(paid.code(), "token_subject_mismatch");
    let paid = app.pay(&bob, "bob-pays", &id).await;
    assert_eq!(paid.code(), "not_owner");

    let path = format!("/v1/reservations/{id}");
    let read = Reply::send(app.signed(Method::GET, &path, &bob.identity)).await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "existence is not told");
    assert_eq!(read.code(), "not_found");
    let unknown = format!("/v1/reservations/{}", uuid::Uuid::now_v7());
    let unknown = Reply::send(app.signed(Method::GET, &unknown, &bob.identity)).await;
    assert_eq!(
        unknown.body["detail"], read.body["detail"],
        "an unknown id reads the same"
    );
    let own = Reply::send(app.signed(Method::GET, &path, &alice.identity)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["user_id"], "alice");
    assert_eq!(
        app.get(&path).await.body["user_id"],
        "alice",
        "the operator reads any"
    );

    let released = app.release(&bob.identity, &id).await;
    assert_eq!(released.status, StatusCode::FORBIDDEN);
    assert_eq!(released.code(), "not_owner");

    let balance =
        Reply::send(app.signed(Method::GET, "/v1/users/alice/balance", &bob.identity)).await;
    assert_eq!(balance.status, StatusCode::FORBIDDEN);
    assert_eq!(balance.code(), "not_owner");
    assert_eq!(app.balance("alice").await, 100_000);

    // Nothing Bob tried changed anything.
    assert_eq!(app.get(&path).await.body["status"], "held");
    assert_eq!(app.balance("bob").await, 100_000);
    assert_eq!(app.scalar("SELECT count(*) FROM reservations").await, 1);
    assert_eq!(app.scalar("SELECT count(*) FROM idempotency_keys").await, 0);
    // Alice's own admission still works, for her.
    let mine = app.pay(&alice, "alice-pays", &id).await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_may_release_their_hold_after_their_admission_ended() {
    let app = spawn_app().await;
    let show = app.create_show(1, 2, 10_000, 2).await;
    let pass: Pass = app.access_token(show.performance_id, "leaving").await;
    let held = app.hold(&pass, show.performance_id, &show.seat_ids).await;
    let id = held.body["reservation_id"].as_str().unwrap().to_owned();
    app.leave(&pass, show.performance_id).await;
    let again = app
        .hold(&pass, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(again.code(), "access_denied", "the admission is over");
    let released = app.release(&pass.identity, &id).await;
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.body);
    assert_eq!(
        app.get(&format!("/v1/reservations/{id}")).await.body["status"],
        "cancelled"
    );
}

#[tokio::test]
async fn each_fan_and_each_anonymous_address_has_a_request_budget_of_their_own() {
    let app = spawn_app_with(&[
        ("ONSALE__CORE__RATE_LIMIT__PER_SECOND", "1"),
        ("ONSALE__CORE__RATE_LIMIT__BURST", "3"),
    ])
    .await;
    let read = |user: &str| {
        let path = format!("/v1/users/{user}/balance");
        app.signed(Method::GET, &path, &app.identity(user))
    };
    for _ in 0..3 {
        assert_ne!(
            Reply::send(read("greedy")).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let refused = Reply::send(read("greedy")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    assert!(refused.is_problem());
    for header in ["retry-after", "ratelimit-policy", "ratelimit"] {
        assert!(refused.headers.contains_key(header), "{header} missing");
    }
    // A new identity token of the same fan draws on the same budget…
    assert_eq!(
        Reply::send(read("greedy")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // …and another fan has their own.
    assert_eq!(
        Reply::send(read("patient")).await.status,
        StatusCode::NOT_FOUND
    );

    // The catalog is limited per client address.
    let catalog = || app.http.get(format!("{}/v1/concerts", app.base));
    let statuses: Vec<StatusCode> =
        futures::future::join_all((0..4).map(|_| Reply::send(catalog())))
            .await
            .iter()
            .map(|reply| reply.status)
            .collect();
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Top-ups (an admin route) are not limited.
    for _ in 0..5 {
        assert_eq!(
            app.charge("patient", 1_000).await.status,
            StatusCode::CREATED
        );
    }
}
