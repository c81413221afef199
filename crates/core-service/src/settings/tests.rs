//! The settings' rules, production's among them.

use super::*;
use platform::settings::load_from;

fn load(environment: Environment, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    let vars = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let settings: Settings = load_from(LAYERS, environment, Some(vars))?;
    settings.validate()?;
    Ok(settings)
}

#[test]
fn local_defaults_load_and_validate() {
    let settings = load(Environment::Local, &[]).unwrap();
    assert_eq!(settings.core.http_addr.port(), 8081);
    assert_eq!(settings.core.hold_ttl_seconds, 300);
    assert!(settings.core.seat_cache_ms <= 1_000);
    assert!(settings.database.max_connections > 0);
}

/// Everything production must be given, for the tests that take one
/// away or override one.
const PRODUCTION: &[(&str, &str)] = &[
    (
        "ONSALE__CORE__ADMIN_KEY",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "ONSALE__CORE__QUEUE_SERVICE_KEY",
        "fedcba9876543210fedcba98",
    ),
    ("ONSALE__IDENTITY__ISSUER", "https://id.example.com"),
    ("ONSALE__IDENTITY__AUDIENCE", "onsale-web"),
    // TLS as Terraform passes it (deploy/README.md).
    ("ONSALE__DATABASE__TLS__MODE", "verify-full"),
    (
        "ONSALE__DATABASE__TLS__CA_FILE",
        "/usr/local/share/onsale/rds-global-bundle.pem",
    ),
    ("ONSALE__KAFKA__SECURITY_PROTOCOL", "SSL"),
    (
        "ONSALE__KAFKA__SSL_CA_FILE",
        "/etc/ssl/certs/ca-certificates.crt",
    ),
    (
        "ONSALE__REDIS__URLS",
        "rediss://:token@clustercfg.example.cache.amazonaws.com:6379",
    ),
];

/// [`PRODUCTION`] without `skip`, with `extra` added (later wins).
fn production(
    skip: &str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    PRODUCTION
        .iter()
        .copied()
        .filter(|(k, _)| *k != skip)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn production_without_an_admin_key_fails_fast() {
    assert!(load(Environment::Production, &[]).is_err());
    assert!(
        load(
            Environment::Production,
            &production("ONSALE__CORE__ADMIN_KEY", &[])
        )
        .is_err()
    );
    let short = production("", &[("ONSALE__CORE__ADMIN_KEY", "short-key-123")]);
    assert!(load(Environment::Production, &short).is_err());
    assert!(load(Environment::Production, PRODUCTION).is_ok());
}

#[test]
fn production_refuses_to_start_without_an_identity_issuer_or_audience() {
    for (missing, field) in [
        ("ONSALE__IDENTITY__ISSUER", "issuer"),
        ("ONSALE__IDENTITY__AUDIENCE", "audience"),
    ] {
        let error = load(Environment::Production, &production(missing, &[])).unwrap_err();
        assert!(format!("{error:?}").contains(field), "{missing}: {error:?}");
    }
    let plain_http = production("", &[("ONSALE__IDENTITY__ISSUER", "http://id.example.com")]);
    assert!(load(Environment::Production, &plain_http).is_err());
}

#[test]
fn production_refuses_a_missing_short_or_local_queue_service_key() {
    assert!(
        load(
            Environment::Production,
            &production("ONSALE__CORE__QUEUE_SERVICE_KEY", &[])
        )
        .is_err()
    );
    let short = production("", &[("ONSALE__CORE__QUEUE_SERVICE_KEY", "too-short")]);
    assert!(load(Environment::Production, &short).is_err());
    let local = production(
        "",
        &[("ONSALE__CORE__QUEUE_SERVICE_KEY", "local-grpc-service-key")],
    );
    let error = load(Environment::Production, &local).unwrap_err();
    assert!(error.to_string().contains("queue_service_key"), "{error}");
}

#[test]
fn the_local_stack_trusts_devstacks_issuer_and_shares_queue_services_key() {
    let local = load(Environment::Local, &[]).unwrap();
    assert_eq!(local.identity.issuer, "http://127.0.0.1:8090");
    assert_eq!(local.identity.audience, "onsale");
    assert_eq!(
        local.core.queue_service_key.expose_secret(),
        "local-grpc-service-key"
    );
    assert_eq!(local.core.rate_limit.trusted_proxy_hops, 0);
    assert!(local.core.rate_limit.per_second >= 100);
    let production = load(Environment::Production, PRODUCTION).unwrap();
    assert_eq!(production.core.rate_limit.trusted_proxy_hops, 1);
    assert_eq!(
        production.core.rate_limit.burst,
        local.core.rate_limit.burst
    );
}

#[test]
fn production_refuses_to_start_with_an_unverified_database_unless_allowed() {
    for mode in ["disable", "prefer", "require"] {
        let plain = production(
            "ONSALE__DATABASE__TLS__CA_FILE",
            &[("ONSALE__DATABASE__TLS__MODE", mode)],
        );
        let error = load(Environment::Production, &plain).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("ONSALE__DATABASE__ALLOW_PLAINTEXT"),
            "{mode}: {error}"
        );
    }
    // The URL's sslmode counts when tls.mode is unset.
    let in_url = production(
        "ONSALE__DATABASE__TLS__MODE",
        &[(
            "ONSALE__DATABASE__URL",
            "postgres://u:p@db.example.com/onsale?sslmode=verify-ca",
        )],
    );
    assert!(load(Environment::Production, &in_url).is_ok());
    let allowed = production(
        "",
        &[
            ("ONSALE__DATABASE__TLS__MODE", "require"),
            ("ONSALE__DATABASE__ALLOW_PLAINTEXT", "true"),
        ],
    );
    let settings = load(Environment::Production, &allowed).unwrap();
    assert!(settings.plaintext().iter().all(|link| link.allowed));
}

#[test]
fn production_refuses_plaintext_kafka_and_an_http_queue_service_unless_allowed() {
    let kafka = production(
        "ONSALE__KAFKA__SSL_CA_FILE",
        &[("ONSALE__KAFKA__SECURITY_PROTOCOL", "PLAINTEXT")],
    );
    let error = load(Environment::Production, &kafka).unwrap_err();
    assert!(error.to_string().contains("ONSALE__KAFKA__ALLOW_PLAINTEXT"));
    // config/production.toml allows plain gRPC inside the security group.
    let settings = load(Environment::Production, PRODUCTION).unwrap();
    assert!(settings.grpc.allow_plaintext);
    let strict = production("", &[("ONSALE__GRPC__ALLOW_PLAINTEXT", "false")]);
    let error = load(Environment::Production, &strict).unwrap_err();
    assert!(error.to_string().contains("ONSALE__GRPC__ALLOW_PLAINTEXT"));
    let https = production(
        "",
        &[
            ("ONSALE__GRPC__ALLOW_PLAINTEXT", "false"),
            (
                "ONSALE__CORE__QUEUE_GRPC_URL",
                "https://queue.internal:50051",
            ),
            ("ONSALE__GRPC__TLS__CA_FILE", "/run/tls/ca.pem"),
        ],
    );
    assert!(load(Environment::Production, &https).is_ok());
}

#[test]
fn an_https_queue_service_url_needs_a_ca_file() {
    let error = load(
        Environment::Local,
        &[("ONSALE__CORE__QUEUE_GRPC_URL", "https://127.0.0.1:50051")],
    )
    .unwrap_err();
    assert!(error.to_string().contains("grpc.tls.ca_file"), "{error}");
}

#[test]
fn a_rate_limit_of_zero_is_rejected() {
    let error = load(
        Environment::Local,
        &[("ONSALE__CORE__RATE_LIMIT__PER_SECOND", "0")],
    )
    .unwrap_err();
    assert!(error.to_string().contains("rate_limit"), "{error}");
}

#[test]
fn the_local_stack_runs_one_worker_and_production_one_per_cpu() {
    let local = load(Environment::Local, &[]).unwrap();
    assert_eq!(local.runtime.worker_threads, 1);
    let production = load(Environment::Production, PRODUCTION).unwrap();
    assert_eq!(production.runtime.worker_threads, 0);
    let overridden = load(
        Environment::Local,
        &[("ONSALE__RUNTIME__WORKER_THREADS", "3")],
    )
    .unwrap();
    assert_eq!(
        overridden.runtime.build().unwrap().metrics().num_workers(),
        3
    );
}

#[test]
fn an_outbox_retention_of_zero_hours_is_rejected() {
    let error = load(
        Environment::Local,
        &[("ONSALE__CORE__OUTBOX_RETENTION_HOURS", "0")],
    )
    .unwrap_err();
    assert!(error.to_string().contains("outbox_retention_hours"));
}

#[test]
fn a_seat_cache_longer_than_one_second_is_rejected() {
    let error = load(
        Environment::Local,
        &[("ONSALE__CORE__SEAT_CACHE_MS", "1500")],
    )
    .unwrap_err();
    assert!(error.to_string().contains("seat_cache_ms"));
}

#[test]
fn variables_override_the_files() {
    let settings = load(
        Environment::Local,
        &[("ONSALE__CORE__HOLD_TTL_SECONDS", "2")],
    )
    .unwrap();
    assert_eq!(settings.core.hold_ttl(), Duration::from_secs(2));
}

#[test]
fn production_refuses_plaintext_redis_unless_allowed() {
    let plain = production("", &[("ONSALE__REDIS__URLS", "redis://10.0.0.1:6379")]);
    let error = load(Environment::Production, &plain).unwrap_err();
    assert!(error.to_string().contains("redis"), "{error}");
    let allowed = production(
        "",
        &[
            ("ONSALE__REDIS__URLS", "redis://10.0.0.1:6379"),
            ("ONSALE__REDIS__ALLOW_PLAINTEXT", "true"),
        ],
    );
    assert!(load(Environment::Production, &allowed).is_ok());
}

#[test]
fn coupon_and_ranking_settings_refuse_values_that_break_their_rules() {
    for (key, value) in [
        ("ONSALE__RANKING__BUCKET_SECONDS", "700"),
        ("ONSALE__RANKING__CACHE_MS", "5000"),
        ("ONSALE__RANKING__SNAPSHOT_RETENTION_DAYS", "0"),
        ("ONSALE__COUPONS__KEY_TTL_AFTER_END_SECONDS", "0"),
        ("ONSALE__COUPONS__CLAIM_LOCK_TIMEOUT_MS", "0"),
        ("ONSALE__COUPONS__CLAIM_LOCK_TIMEOUT_MS", "60000"),
        ("ONSALE__REDIS__KEY_PREFIX", "{tag}"),
    ] {
        assert!(
            load(Environment::Local, &[(key, value)]).is_err(),
            "{key}={value}"
        );
    }
    let local = load(Environment::Local, &[]).unwrap();
    assert_eq!(local.ranking.bucket_seconds, 600);
    assert_eq!(local.coupons.reconcile_interval_seconds, 60);
    assert_eq!(local.coupons.claim_lock_timeout_ms, 2_000);
}
