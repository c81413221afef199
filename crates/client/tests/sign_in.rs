//! Signing in against the stack's local issuer, as the load tools and a
//! fan's app do: the token endpoint over HTTP, verified the way the
//! services verify identity tokens.

use onsale_client::{Error, Issuer, Operation};
use platform::identity::{IdentitySettings, IdentityVerifier};

fn issuer() -> Issuer {
    Issuer::new(reqwest::Client::new(), devstack::testing::issuer_url())
}

#[tokio::test]
async fn a_fan_signed_in_over_http_holds_a_token_the_services_accept() {
    let token = issuer().identity_token("client-fan-1", 120).await.unwrap();
    let verifier = IdentityVerifier::new(IdentitySettings::new(
        devstack::testing::issuer_url(),
        devstack::issuer::DEFAULT_AUDIENCE,
    ))
    .unwrap();
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.subject.as_str(), "client-fan-1");
}

#[tokio::test]
async fn a_lifetime_the_issuer_refuses_is_a_sign_in_refusal() {
    let error = issuer()
        .identity_token("client-fan-2", 0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Status { operation: Operation::SignIn, status, .. } if status == 400),
        "{error}"
    );
}
