//! The issuer against `platform::identity`, over real HTTP on loopback. No
//! stack needed.

use std::{os::unix::fs::PermissionsExt, path::PathBuf};

use platform::identity::{IdentityError, IdentitySettings, IdentityVerifier};
use serde_json::{Value, json};

use super::*;

/// A fresh issuer folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("devstack-issuer-{}", uuid::Uuid::new_v4()));
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An issuer serving on an ephemeral loopback port.
async fn serve(dir: &Path) -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = Issuer::open(dir, url_for(listener.local_addr().unwrap())).unwrap();
    tokio::spawn(issuer.clone().serve(listener));
    issuer
}

/// A verifier for `issuer` that may refetch keys at once, so rotation is
/// seen without waiting out the production rate limit.
fn verifier(issuer: &Issuer) -> IdentityVerifier {
    let mut settings = IdentitySettings::new(issuer.url(), DEFAULT_AUDIENCE);
    settings.jwks_refresh_min_interval_ms = 0;
    IdentityVerifier::new(settings).unwrap()
}

#[test]
fn the_first_key_is_created_once_private_to_the_owner_and_reused() {
    let dir = TempDir::new();
    let first = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    let again = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    assert_eq!(first.kid(), again.kid());
    let mode = std::fs::metadata(super::key_file(&dir.0, 1))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_kid_is_the_rfc_7638_thumbprint_of_the_published_key() {
    let dir = TempDir::new();
    let issuer = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    let jwks = issuer.jwks();
    let [jwk] = jwks.keys.as_slice() else {
        panic!("one key expected: {jwks:?}")
    };
    let thumbprint = jwk
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .unwrap();
    assert_eq!(jwk.common.key_id.as_deref(), Some(thumbprint.as_str()));
    assert_eq!(issuer.kid(), thumbprint);
}

#[test]
fn minting_refuses_empty_subjects_and_lifetimes_out_of_range() {
    let dir = TempDir::new();
    let issuer = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    assert!(issuer.mint("", 60, DEFAULT_AUDIENCE).is_err());
    assert!(issuer.mint("u1", 0, DEFAULT_AUDIENCE).is_err());
    assert!(
        issuer
            .mint("u1", MAX_TTL_SECONDS + 1, DEFAULT_AUDIENCE)
            .is_err()
    );
    assert!(issuer.mint("u1", 60, "").is_err());
}

#[tokio::test]
async fn minted_tokens_pass_the_platform_verifier_over_loopback() {
    let dir = TempDir::new();
    let issuer = serve(&dir.0).await;
    let token = issuer.mint("u1", 60, DEFAULT_AUDIENCE).unwrap();
    let identity = verifier(&issuer).verify(&token).await.unwrap();
    assert_eq!(identity.subject.as_str(), "u1");
    let other = issuer.mint("u1", 60, "another-service").unwrap();
    let err = verifier(&issuer).verify(&other).await.unwrap_err();
    assert_eq!(err, IdentityError::WrongAudience);
}

#[tokio::test]
async fn tokens_from_the_state_dir_alone_pass_against_the_running_server() {
    let dir = TempDir::new();
    let issuer = serve(&dir.0).await;
    let token = mint_from_state_dir(&dir.0, issuer.url(), "u2", 60, DEFAULT_AUDIENCE).unwrap();
    let identity = verifier(&issuer).verify(&token).await.unwrap();
    assert_eq!(identity.subject.as_str(), "u2");
}

/// POSTs to the issuer's `/token` as `build` describes the body; returns
/// the status and the JSON reply.
async fn post_token(
    issuer: &Issuer,
    build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, Value) {
    let request = reqwest::Client::new().post(format!("{}/token", issuer.url()));
    let reply = build(request).send().await.unwrap();
    (reply.status().as_u16(), reply.json().await.unwrap())
}

#[tokio::test]
async fn the_token_endpoint_takes_json_and_forms_and_refuses_bad_requests() {
    let dir = TempDir::new();
    let issuer = serve(&dir.0).await;
    let verifier = verifier(&issuer);

    let (status, reply) = post_token(&issuer, |r| {
        r.json(&json!({"sub": "u3", "ttl_seconds": 120}))
    })
    .await;
    assert_eq!((status, &reply["expires_in"]), (200, &json!(120)));
    let identity = verifier.verify(reply["id_token"].as_str().unwrap()).await;
    assert_eq!(identity.unwrap().subject.as_str(), "u3");

    let (status, reply) = post_token(&issuer, |r| {
        r.header("content-type", "application/x-www-form-urlencoded")
            .body("sub=u4")
    })
    .await;
    assert_eq!(
        (status, &reply["expires_in"]),
        (200, &json!(DEFAULT_TTL_SECONDS))
    );
    let identity = verifier.verify(reply["id_token"].as_str().unwrap()).await;
    assert_eq!(identity.unwrap().subject.as_str(), "u4");

    let (status, reply) =
        post_token(&issuer, |r| r.json(&json!({"sub": "u5", "ttl_seconds": 0}))).await;
    assert_eq!((status, &reply["error"]), (400, &json!("invalid_request")));
}

#[tokio::test]
async fn after_rotation_new_and_old_tokens_both_verify_and_the_new_key_persists() {
    let dir = TempDir::new();
    let issuer = serve(&dir.0).await;
    let verifier = verifier(&issuer);
    let old_kid = issuer.kid();
    let old_token = issuer.mint("u1", 60, DEFAULT_AUDIENCE).unwrap();
    verifier.verify(&old_token).await.unwrap();

    let new_kid = issuer.rotate().unwrap();
    assert_ne!(new_kid, old_kid);
    let new_token = issuer.mint("u1", 60, DEFAULT_AUDIENCE).unwrap();
    verifier.verify(&new_token).await.unwrap();
    verifier.verify(&old_token).await.unwrap();
    let published: Vec<_> = issuer
        .jwks()
        .keys
        .into_iter()
        .filter_map(|jwk| jwk.common.key_id)
        .collect();
    assert_eq!(published, [new_kid.clone(), old_kid]);
    assert_eq!(Issuer::open(&dir.0, issuer.url()).unwrap().kid(), new_kid);
}

#[test]
fn rotation_publishes_a_bounded_window_of_keys() {
    let dir = TempDir::new();
    let issuer = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    for _ in 0..PUBLISHED_KEYS + 2 {
        issuer.rotate().unwrap();
    }
    assert_eq!(issuer.jwks().keys.len(), PUBLISHED_KEYS);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), PUBLISHED_KEYS);
}

#[tokio::test]
async fn the_server_refuses_to_listen_beyond_loopback() {
    let dir = TempDir::new();
    let issuer = Issuer::open(&dir.0, "http://127.0.0.1:1").unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = issuer.serve(listener).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
