//! TLS end to end, on the TLS-only stack beside the plain one
//! (`devstack::testing::tls_stack`, started here when it is not running):
//! queue-service on `rediss://` Redis serving gRPC with a certificate,
//! core-service on Postgres with `verify-full` calling it over `https://`;
//! and each client refusing a server it cannot verify.

mod common;

use std::time::Duration;

use common::spawn_apps_on_stores;
use core_service::db::Db;
use platform::settings::Environment;
use reqwest::StatusCode;

/// queue-service settings for the TLS Redis and a TLS gRPC server.
fn queue_over_tls() -> Vec<(String, String)> {
    let tls = devstack::testing::tls_stack();
    let certs = &tls.certs;
    let path = |p: &std::path::Path| p.display().to_string();
    [
        ("ONSALE__REDIS__URLS", tls.redis_urls.join(",")),
        ("ONSALE__REDIS__TLS__CA_FILE", path(&certs.ca)),
        ("ONSALE__GRPC__TLS__CERT_FILE", path(&certs.server_cert)),
        ("ONSALE__GRPC__TLS__KEY_FILE", path(&certs.server_key)),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// A fresh database on the TLS Postgres, its URL verifying the server.
async fn tls_database() -> String {
    let tls = devstack::testing::tls_stack();
    let admin = devstack::postgres::verified_url(&tls.database_url, &tls.certs);
    devstack::testing::create_database(&admin)
        .await
        .expect("a database on the TLS postgres")
}

#[tokio::test]
async fn both_services_work_end_to_end_over_tls() {
    let tls = devstack::testing::tls_stack();
    let ca = tls.certs.ca.display().to_string();
    let database_url = tls_database().await;
    let redis = tls.redis_urls.join(",");
    let core = [
        ("ONSALE__DATABASE__TLS__MODE", "verify-full"),
        ("ONSALE__DATABASE__TLS__CA_FILE", ca.as_str()),
        ("ONSALE__GRPC__TLS__CA_FILE", ca.as_str()),
        ("ONSALE__REDIS__URLS", redis.as_str()),
        ("ONSALE__REDIS__TLS__CA_FILE", ca.as_str()),
    ];
    let app = spawn_apps_on_stores(&core, &queue_over_tls(), database_url, "https").await;
    // A write (the admin API creates a show on TLS Postgres and opens its
    // room on TLS Redis) and a read.
    let show = app.create_show(1, 4, 10_000, 2).await;
    let seats = app
        .get(&format!("/v1/performances/{}/seats", show.performance_id))
        .await;
    assert_eq!(seats.status, StatusCode::OK, "{}", seats.body);
    // Entering, polling and being admitted go through TLS Redis; the hold
    // is verified over TLS gRPC and written over TLS Postgres.
    let pass = app.access_token(show.performance_id, "tls-fan").await;
    let held = app
        .hold(&pass, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let over_tls: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(over_tls);
    // A coupon claim goes through core-service's own TLS Redis link.
    let campaign = app.open_campaign("TLS", 1, 1_000).await;
    let coupon = app.fan("tls-fan").claim_coupon(campaign).await.unwrap();
    assert_eq!(coupon.sequence, 1);
    let claimed_in_redis = app.client.reconcile_campaign(campaign).await.unwrap();
    assert_eq!(
        claimed_in_redis.fixes, 0,
        "Redis had the claim: {claimed_in_redis:?}"
    );
}

#[tokio::test]
async fn core_service_calling_queue_service_with_the_wrong_ca_fails_closed() {
    let tls = devstack::testing::tls_stack();
    let (ca, wrong) = (
        tls.certs.ca.display().to_string(),
        tls.certs.wrong_ca.display().to_string(),
    );
    let core = [
        ("ONSALE__DATABASE__TLS__MODE", "verify-full"),
        ("ONSALE__DATABASE__TLS__CA_FILE", ca.as_str()),
        ("ONSALE__GRPC__TLS__CA_FILE", wrong.as_str()),
        ("ONSALE__CORE__QUEUE_TIMEOUT_MS", "1000"),
    ];
    let app = spawn_apps_on_stores(&core, &queue_over_tls(), tls_database().await, "https").await;
    let show = app.create_show(1, 2, 10_000, 1).await;
    let pass = app
        .access_token(show.performance_id, "mistrusting-fan")
        .await;
    let held = app
        .hold(&pass, show.performance_id, &show.seat_ids[..1])
        .await;
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        held.body
    );
}

/// core-service's pool on the TLS Postgres at `host`, with `mode` and `ca`.
fn pool(host: &str, mode: &str, ca: &std::path::Path) -> Db {
    let tls = devstack::testing::tls_stack();
    let url = tls.database_url.replace("127.0.0.1", host);
    let ca = ca.display().to_string();
    let mut vars = vec![
        ("ONSALE__DATABASE__TLS__MODE", mode),
        ("ONSALE__DATABASE__ACQUIRE_TIMEOUT_MS", "3000"),
    ];
    if mode != "disable" {
        vars.push(("ONSALE__DATABASE__TLS__CA_FILE", &ca));
    }
    let settings = common::core_settings(&url, "http://127.0.0.1:1", &vars);
    assert_eq!(settings.environment, Environment::Local);
    Db::connect_lazy(&settings.database).expect("a lazy pool")
}

#[tokio::test]
async fn core_service_refuses_a_postgres_its_ca_did_not_sign_or_whose_name_is_not_in_the_certificate()
 {
    let certs = &devstack::testing::tls_stack().certs;
    let timeout = Duration::from_secs(5);
    assert!(
        pool("127.0.0.1", "verify-full", &certs.ca)
            .ping(timeout)
            .await
    );
    assert!(
        !pool("127.0.0.1", "verify-full", &certs.wrong_ca)
            .ping(timeout)
            .await
    );
    assert!(
        !pool("127.0.0.1", "verify-ca", &certs.wrong_ca)
            .ping(timeout)
            .await
    );
    // The certificate names 127.0.0.1, not localhost: only the chain holds.
    assert!(
        !pool("localhost", "verify-full", &certs.ca)
            .ping(timeout)
            .await
    );
    assert!(
        pool("localhost", "verify-ca", &certs.ca)
            .ping(timeout)
            .await
    );
    // The server takes no plain-text connection.
    assert!(!pool("127.0.0.1", "disable", &certs.ca).ping(timeout).await);
}
