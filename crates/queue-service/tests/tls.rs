//! queue-service on the TLS-only Redis Cluster
//! (`devstack::testing::tls_stack`, started here when it is not running):
//! it enters and polls over `rediss://`, and refuses a cluster it cannot
//! verify.

mod common;

use common::{event_id, room, settings_from, spawn_app_with, token};
use reqwest::StatusCode;

/// Settings for the TLS cluster at `urls` trusting `ca`.
fn over_tls(urls: &str, ca: &std::path::Path) -> queue_service::Settings {
    let prefix = format!("{}:", devstack::testing::unique_suffix());
    let ca = ca.display().to_string();
    settings_from(
        urls,
        &prefix,
        &[
            ("ONSALE__REDIS__TLS__CA_FILE", &ca),
            ("ONSALE__REDIS__CONNECT_TIMEOUT_MS", "2000"),
        ],
    )
}

#[tokio::test]
async fn queue_service_enters_and_polls_over_tls_to_redis() {
    let tls = devstack::testing::tls_stack();
    let app = spawn_app_with(over_tls(&tls.redis_urls.join(","), &tls.certs.ca)).await;
    let event = event_id();
    app.open_room(&event, room(10, 100.0)).await;
    let entered = app.enter(&event, "tls-fan").await;
    assert_eq!(entered.status, StatusCode::CREATED, "{}", entered.body);
    let polled = app.status(&event, &token(&entered.body)).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
}

#[tokio::test]
async fn queue_service_refuses_a_redis_its_ca_did_not_sign_or_whose_name_is_not_in_the_certificate()
{
    let tls = devstack::testing::tls_stack();
    let first = &tls.redis_urls[0];
    // The certificate names 127.0.0.1, not localhost.
    let localhost = first.replace("127.0.0.1", "localhost");
    for settings in [
        over_tls(first, &tls.certs.wrong_ca),
        over_tls(&localhost, &tls.certs.ca),
    ] {
        let app = spawn_app_with(settings).await;
        let entered = app.enter(&event_id(), "mistrusting-fan").await;
        assert_eq!(
            entered.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            entered.body
        );
    }
}
