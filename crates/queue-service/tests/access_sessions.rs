//! Access sessions against the real stack: `VerifyAccess` and its batch,
//! `ReleaseAccess` of one named session, and tokens that are forged,
//! tampered with or of another event.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{
    claim, event_id, release, release_for, room, spawn_app, token, verify,
    verify_accepting_completed,
};
use onsale_proto::queue::v1::{
    ReleaseAccessRequest, ReleaseReason, VerifyAccessBatchRequest, VerifyAccessRequest,
    verify_access_result::Outcome,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

#[tokio::test]
async fn a_late_release_of_an_earlier_session_leaves_the_fans_new_session_active() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    // The fan gives up the slot, comes back and is admitted again.
    let (old_access, new_access) = app.readmitted(&event, "fan-1").await;

    // A release of the first session, arriving late, frees nothing.
    for reason in [
        ReleaseReason::Completed,
        ReleaseReason::Left,
        ReleaseReason::Revoked,
    ] {
        assert!(
            !release_for(&app, &event, &old_access, reason).await,
            "{reason:?}"
        );
    }
    assert_eq!(verify(&app, &event, &new_access).await.unwrap(), "fan-1");
    let stats = app.stats(&event).await;
    assert_eq!(stats["active"], 1);
    assert_eq!(stats["exited"]["completed"], 0);
    // The release of the session the fan holds frees it.
    assert!(release(&app, &event, &new_access).await);
    assert_eq!(app.stats(&event).await["active"], 0);
}

#[tokio::test]
async fn a_completed_session_verifies_only_for_callers_accepting_it_and_a_left_one_never() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let mut access = BTreeMap::new();
    for fan in ["buyer", "leaver"] {
        access.insert(fan, app.admitted(&event, fan).await.1);
    }
    let live = verify_accepting_completed(&app, &event, &access["buyer"], true)
        .await
        .unwrap();
    assert!(!live.completed, "an active session is not completed");

    assert!(release(&app, &event, &access["buyer"]).await);
    assert_eq!(
        verify(&app, &event, &access["buyer"])
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let replay = verify_accepting_completed(&app, &event, &access["buyer"], true)
        .await
        .unwrap();
    assert_eq!((replay.user_id.as_str(), replay.completed), ("buyer", true));

    assert!(release_for(&app, &event, &access["leaver"], ReleaseReason::Left).await);
    let left = verify_accepting_completed(&app, &event, &access["leaver"], true)
        .await
        .unwrap_err();
    assert_eq!(left.code(), Code::PermissionDenied);
    // The buyer's slot is free for the next fan all the same.
    assert_eq!(app.stats(&event).await["active"], 0);
}

#[tokio::test]
async fn a_released_session_is_refused_even_while_its_jwt_is_valid() {
    let app = spawn_app().await;
    let event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    let queue_token = token(&app.enter(&event, "fan-1").await.body);
    let active = app.until_active(&event, &queue_token).await;
    let access = active["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "fan-1");

    assert!(release(&app, &event, &access).await);
    let refused = verify(&app, &event, &access).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Releasing twice reports that nothing was held.
    assert!(!release(&app, &event, &access).await);

    // Coming back gives a new session; the old token stays refused.
    let again = token(&app.enter(&event, "fan-1").await.body);
    let renewed = app.until_active(&event, &again).await;
    let new_access = renewed["access_token"].as_str().unwrap();
    assert_ne!(new_access, access);
    assert_eq!(verify(&app, &event, new_access).await.unwrap(), "fan-1");
    assert_eq!(
        verify(&app, &event, &access).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let unspecified = ReleaseAccessRequest {
        event_id: event.clone(),
        user_id: "fan-1".into(),
        reason: 0,
        session_id: claim(new_access, "sid").unwrap(),
    };
    let error = app
        .grpc()
        .await
        .release_access(unspecified)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_verify_batch_answers_each_check_in_order_as_verify_access_would() {
    let app = spawn_app().await;
    let (event, other_event) = (event_id(), event_id());
    app.open_room(&event, room(10, 100.0)).await;
    app.open_room(&other_event, room(10, 100.0)).await;
    let mut access = BTreeMap::new();
    for (room_event, fan) in [
        (&event, "fan-a"),
        (&event, "fan-b"),
        (&event, "fan-gone"),
        (&other_event, "fan-elsewhere"),
    ] {
        access.insert(fan, app.admitted(room_event, fan).await.1);
    }
    assert!(release(&app, &event, &access["fan-gone"]).await);

    let check = |event: &str, token: &str| VerifyAccessRequest {
        event_id: event.to_owned(),
        access_token: token.to_owned(),
        accept_completed: false,
    };
    let mut replay = check(&event, &access["fan-gone"]);
    replay.accept_completed = true;
    let requests = vec![
        check(&event, &access["fan-a"]),
        check(&event, "not-a-jwt"),
        check(&event, &access["fan-gone"]),
        check(&other_event, &access["fan-elsewhere"]),
        check(&event, &access["fan-elsewhere"]),
        check("bad event!", &access["fan-a"]),
        check(&event, ""),
        replay,
        check(&event, &access["fan-b"]),
    ];
    let mut expected = Vec::new();
    for request in &requests {
        expected.push(
            app.grpc()
                .await
                .verify_access(request.clone())
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| status.code()),
        );
    }
    let results = app
        .grpc()
        .await
        .verify_access_batch(VerifyAccessBatchRequest { requests })
        .await
        .unwrap()
        .into_inner()
        .results;
    let got: Vec<_> = results
        .into_iter()
        .map(|result| match result.outcome.expect("an outcome") {
            Outcome::Access(access) => Ok(access),
            Outcome::Error(error) => Err(Code::from_i32(error.code)),
        })
        .collect();
    assert_eq!(got, expected);
    // The checks cover every kind of answer, not the same one nine times.
    let codes: HashSet<_> = got.iter().map(|r| r.as_ref().err().copied()).collect();
    for code in [
        None,
        Some(Code::Unauthenticated),
        Some(Code::PermissionDenied),
        Some(Code::InvalidArgument),
    ] {
        assert!(codes.contains(&code), "no {code:?} in {got:?}");
    }
    assert_eq!(got[0].as_ref().unwrap().user_id, "fan-a");
    assert_eq!(got[3].as_ref().unwrap().user_id, "fan-elsewhere");
    let replayed = got[7].as_ref().unwrap();
    assert_eq!(
        (replayed.user_id.as_str(), replayed.completed),
        ("fan-gone", true)
    );

    for size in [0, onsale_proto::MAX_VERIFY_BATCH + 1] {
        let oversized = VerifyAccessBatchRequest {
            requests: vec![check(&event, &access["fan-a"]); size],
        };
        let refused = app
            .grpc()
            .await
            .verify_access_batch(oversized)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{size} checks");
    }
}

fn forge(claims: Value, key: &str) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_tampered_and_other_event_tokens_are_rejected() {
    let app = spawn_app().await;
    let event = event_id();
    let other_event = event_id();
    app.open_room(&event, room(5, 100.0)).await;
    app.open_room(&other_event, room(5, 100.0)).await;
    let queue_token = token(&app.enter(&event, "fan-1").await.body);
    let access = app.until_active(&event, &queue_token).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let exp = chrono::Utc::now().timestamp() + 600;

    // Signed with a key that is not ours.
    let forged = forge(
        json!({"typ": "queue", "evt": event, "sub": "fan-1", "sid": "1", "iat": 0, "exp": exp}),
        "an-attacker-key-of-sufficient-length!!",
    );
    let reply = app.status(&event, &forged).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "invalid_token");
    assert!(reply.is_problem());

    // Our signature over a payload edited to name another fan.
    let mut parts: Vec<&str> = queue_token.split('.').collect();
    let edited = forge(
        json!({"typ": "queue", "evt": event, "sub": "fan-2", "sid": "1", "iat": 0, "exp": exp}),
        "x",
    );
    parts[1] = edited.split('.').nth(1).unwrap();
    let tampered = parts.join(".");
    assert_eq!(
        app.status(&event, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.leave(&event, &tampered).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A genuine token of another event.
    let reply = app.status(&other_event, &queue_token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "token_event_mismatch");

    // Over gRPC: forged or wrong kind → UNAUTHENTICATED, other event →
    // PERMISSION_DENIED.
    let forged_access = forge(
        json!({"typ": "access", "evt": event, "sub": "fan-1", "sid": "1", "iat": 0, "exp": exp}),
        "an-attacker-key-of-sufficient-length!!",
    );
    assert_eq!(
        verify(&app, &event, &forged_access)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &event, &queue_token).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &event, "garbage").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        verify(&app, &other_event, &access)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(verify(&app, &event, &access).await.unwrap(), "fan-1");
}
