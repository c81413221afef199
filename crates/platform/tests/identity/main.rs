//! `platform::identity` against a fake OIDC provider on loopback.

mod support;

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::{
    id::UserIdError,
    identity::{IdentityError, IdentitySettings, IdentityVerifier},
};
use serde_json::{Value, json};
use support::{AUDIENCE, Provider, TestKey, now, rsa_public_pem, travel};

/// A provider publishing the RSA and the EC key, and one claim changed.
async fn provider_and_claims(change: impl FnOnce(&mut Value)) -> (Provider, Value) {
    let provider = Provider::start(&[&TestKey::rsa(), &TestKey::ec()]).await;
    let mut claims = provider.claims();
    change(&mut claims);
    (provider, claims)
}

async fn verify_ec(change: impl FnOnce(&mut Value)) -> Result<(), IdentityError> {
    let (provider, claims) = provider_and_claims(change).await;
    let token = TestKey::ec().sign(&claims);
    provider.verifier().verify(&token).await.map(|_| ())
}

/// A provider publishing the EC key, a verifier that has already fetched
/// it, and a valid token signed with it.
async fn warm_ec_verifier() -> (Provider, IdentityVerifier, String) {
    let provider = Provider::start(&[&TestKey::ec()]).await;
    let verifier = provider.verifier();
    let token = TestKey::ec().sign(&provider.claims());
    verifier.verify(&token).await.unwrap();
    (provider, verifier, token)
}

#[tokio::test]
async fn a_valid_rs256_token_is_accepted_and_names_its_subject() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    let identity = provider
        .verifier()
        .verify(&TestKey::rsa().sign(&claims))
        .await
        .unwrap();
    assert_eq!(identity.subject.as_str(), "fan-1");
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(
        identity.expires_at,
        std::time::UNIX_EPOCH + Duration::from_secs(exp)
    );
    assert!(identity.issued_at.is_some());
    assert_eq!((provider.discovery_hits(), provider.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn a_valid_es256_token_is_accepted() {
    verify_ec(|_| {}).await.unwrap();
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_is_a_bad_signature() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    let forged = TestKey::other_ec("x").sign_as("ec-1", &claims);
    let err = provider.verifier().verify(&forged).await.unwrap_err();
    assert_eq!(err, IdentityError::BadSignature);
}

#[tokio::test]
async fn a_token_breaking_one_claim_rule_is_refused_with_that_rules_error() {
    let (past, later) = (now() - 3_600, now() + 3_600);
    let cases = [
        ("exp", json!(past), IdentityError::Expired),
        ("nbf", json!(later), IdentityError::NotYetValid),
        (
            "iss",
            json!("https://evil.example"),
            IdentityError::WrongIssuer,
        ),
        ("aud", json!("someone-else"), IdentityError::WrongAudience),
        (
            "aud",
            Value::Null,
            IdentityError::Malformed("missing `aud` claim".into()),
        ),
        (
            "sub",
            json!("two words"),
            IdentityError::InvalidSubject(UserIdError::Character),
        ),
    ];
    for (claim, value, expected) in cases {
        let result = verify_ec(|claims| match value {
            Value::Null => drop(claims.as_object_mut().unwrap().remove(claim)),
            value => claims[claim] = value,
        });
        assert_eq!(result.await, Err(expected), "{claim}");
    }
}

#[tokio::test]
async fn the_leeway_covers_clock_skew_and_one_audience_among_several_suffices() {
    let just_past = now() - 10;
    verify_ec(|c| c["exp"] = json!(just_past)).await.unwrap();
    let audiences = json!(["someone-else", AUDIENCE]);
    verify_ec(|c| c["aud"] = audiences).await.unwrap();
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused_without_fetching_keys() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"ec-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let token = format!("{header}.{payload}.");
    let err = provider.verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, IdentityError::DisallowedAlgorithm("none".into()));
    assert_eq!(provider.jwks_hits(), 0);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_public_key_is_refused() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_secret(rsa_public_pem());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let err = provider.verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, IdentityError::DisallowedAlgorithm("HS256".into()));
}

#[tokio::test]
async fn an_allowed_alg_that_does_not_fit_the_named_key_is_refused() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    // An RS256 signature that claims the EC key's kid.
    let token = TestKey::rsa().sign_as("ec-1", &claims);
    let err = provider.verifier().verify(&token).await.unwrap_err();
    assert!(
        matches!(err, IdentityError::DisallowedAlgorithm(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_token_naming_an_unknown_kid_is_refused() {
    let (provider, claims) = provider_and_claims(|_| {}).await;
    let token = TestKey::other_ec("nobody").sign(&claims);
    let err = provider.verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, IdentityError::UnknownKid(Some("nobody".into())));
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn empty_and_garbled_tokens_are_missing_and_malformed() {
    let provider = Provider::start(&[]).await;
    let verifier = provider.verifier();
    assert_eq!(verifier.verify("  ").await, Err(IdentityError::Missing));
    for garbled in ["abc", "a.b", "!!.e30.x", "a.b.c.d.e"] {
        let err = verifier.verify(garbled).await.unwrap_err();
        assert!(
            matches!(err, IdentityError::Malformed(_)),
            "{garbled}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_key_published_after_start_is_accepted_by_the_same_verifier() {
    let (provider, verifier, _) = warm_ec_verifier().await;
    let rotated = TestKey::other_ec("ec-2");
    provider.publish(&rotated);
    travel(provider.settings().jwks_refresh_min_interval()).await;
    let identity = verifier.verify(&rotated.sign(&provider.claims())).await;
    assert_eq!(identity.unwrap().subject.as_str(), "fan-1");
    assert_eq!(provider.jwks_hits(), 2);
    assert_eq!(provider.discovery_hits(), 1, "jwks_uri is remembered");
}

#[tokio::test]
async fn a_burst_of_unknown_kids_costs_one_fetch_per_min_interval() {
    let (provider, verifier, _) = warm_ec_verifier().await;
    let claims = provider.claims();
    let burst = |count: usize| {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let (verifier, token) = (
                verifier.clone(),
                TestKey::other_ec("x").sign_as(&format!("forged-{i}"), &claims),
            );
            tasks.spawn(async move { verifier.verify(&token).await });
        }
        tasks.join_all()
    };
    for result in burst(20).await {
        assert!(matches!(result, Err(IdentityError::UnknownKid(_))));
    }
    assert_eq!(
        provider.jwks_hits(),
        1,
        "within the interval nothing is fetched"
    );
    travel(provider.settings().jwks_refresh_min_interval()).await;
    for result in burst(20).await {
        assert!(matches!(result, Err(IdentityError::UnknownKid(_))));
    }
    assert_eq!(
        provider.jwks_hits(),
        2,
        "one single-flight fetch for the burst"
    );
}

#[tokio::test]
async fn a_withdrawn_key_is_refused_once_the_cache_ttl_has_passed() {
    let (provider, verifier, token) = warm_ec_verifier().await;
    provider.withdraw("ec-1");
    verifier.verify(&token).await.unwrap();
    travel(provider.settings().jwks_cache_ttl()).await;
    let err = verifier.verify(&token).await.unwrap_err();
    assert_eq!(err, IdentityError::UnknownKid(Some("ec-1".into())));
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_cached_keys() {
    let (provider, verifier, token) = warm_ec_verifier().await;
    provider.fail_jwks(true);
    travel(provider.settings().jwks_cache_ttl()).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(provider.jwks_hits(), 2);
}

#[tokio::test]
async fn an_unreachable_provider_with_nothing_cached_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = Provider::start(&[&TestKey::ec()]).await;
    let token = TestKey::ec().sign(&provider.claims());
    let mut settings = IdentitySettings::new(format!("http://127.0.0.1:{port}"), AUDIENCE);
    settings.http_timeout_ms = 2_000;
    let err = provider
        .verifier_with(settings)
        .verify(&token)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    let provider = Provider::start(&[&TestKey::ec()]).await;
    // Same server, but the issuer string differs from the one it advertises.
    let issuer = format!("http://localhost:{}", provider.addr.port());
    let mut claims = provider.claims();
    claims["iss"] = json!(issuer);
    let verifier = provider.verifier_with(IdentitySettings::new(issuer, AUDIENCE));
    let err = verifier.warm_up().await.unwrap_err();
    assert!(
        matches!(err, IdentityError::Unavailable(ref why) if why.contains("names issuer")),
        "{err:?}"
    );
    let err = verifier
        .verify(&TestKey::ec().sign(&claims))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_configured_jwks_url_skips_discovery() {
    let provider = Provider::start(&[&TestKey::ec()]).await;
    let mut settings = provider.settings();
    settings.jwks_url = Some(format!("{}/jwks.json", provider.issuer()));
    let verifier = provider.verifier_with(settings);
    verifier.warm_up().await.unwrap();
    verifier
        .verify(&TestKey::ec().sign(&provider.claims()))
        .await
        .unwrap();
    assert_eq!((provider.discovery_hits(), provider.jwks_hits()), (0, 1));
}

#[test]
fn settings_default_everything_but_issuer_and_audience() {
    let settings: IdentitySettings =
        serde_json::from_value(json!({"issuer": "https://id.example", "audience": "onsale"}))
            .unwrap();
    assert_eq!(
        settings,
        IdentitySettings::new("https://id.example", "onsale")
    );
    assert_eq!(settings.algorithms, ["RS256", "ES256"]);
    assert_eq!(settings.leeway_seconds, 30);
    settings.validate().unwrap();
}

#[test]
fn settings_refuse_none_hmac_and_unknown_algorithms() {
    for algorithms in [
        &["none"][..],
        &["RS256", "HS256"],
        &["HS512"],
        &["XS1"],
        &[],
    ] {
        let mut settings = IdentitySettings::new("https://id.example", "onsale");
        settings.algorithms = algorithms.iter().map(|a| a.to_string()).collect();
        assert!(settings.validate().is_err(), "{algorithms:?} accepted");
    }
}

#[test]
fn settings_refuse_plain_http_off_loopback_and_other_broken_rules() {
    let ok = IdentitySettings::new("http://127.0.0.1:8090", "onsale");
    ok.validate().unwrap();
    let broken: [fn(&mut IdentitySettings); 5] = [
        |s| s.issuer = "http://id.example".into(),
        |s| s.issuer = "https://id.example/?tenant=1".into(),
        |s| s.jwks_url = Some("ftp://id.example/keys".into()),
        |s| s.audience = " ".into(),
        |s| s.leeway_seconds = 3_600,
    ];
    for (i, break_rule) in broken.iter().enumerate() {
        let mut settings = ok.clone();
        break_rule(&mut settings);
        assert!(settings.validate().is_err(), "case {i} accepted");
    }
}
