//! The stack's local OIDC issuer, as the services meet it: tokens minted
//! for tests and tokens fetched over HTTP both pass `platform::identity`
//! against the running issuer's discovery document and JWK Set.

use devstack::{issuer, testing};
use platform::identity::{IdentityError, IdentitySettings, IdentityVerifier};

fn verifier() -> IdentityVerifier {
    IdentityVerifier::new(IdentitySettings::new(
        testing::issuer_url(),
        issuer::DEFAULT_AUDIENCE,
    ))
    .expect("the stack's issuer settings are valid")
}

#[tokio::test]
async fn tokens_minted_for_tests_verify_against_the_running_issuer() {
    let identity = verifier()
        .verify(&testing::identity_token("devstack-fan-1"))
        .await
        .unwrap();
    assert_eq!(identity.subject.as_str(), "devstack-fan-1");
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let token = testing::identity_token_with("devstack-fan-2", 60, "another-service");
    let refused = verifier().verify(&token).await.unwrap_err();
    assert_eq!(refused, IdentityError::WrongAudience);
}

#[tokio::test]
async fn tokens_from_the_token_endpoint_verify_like_a_signed_in_fan() {
    let reply: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", testing::issuer_url()))
        .json(&serde_json::json!({"sub": "devstack-fan-3", "ttl_seconds": 120}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reply["id_token"].as_str().expect("an id_token");
    let identity = verifier().verify(token).await.unwrap();
    assert_eq!(identity.subject.as_str(), "devstack-fan-3");
}
