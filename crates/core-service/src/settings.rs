//! Typed settings of core-service, loaded from the embedded `config/*.toml`
//! layers and `ONSALE__…` variables (see [`platform::settings`]).

use std::{net::SocketAddr, time::Duration};

use platform::{
    identity::IdentitySettings,
    ratelimit::RateLimitSettings,
    settings::{
        DatabaseSettings, Environment, ExposeSecret, KafkaSettings, Layers, RuntimeSettings,
        Secret, SettingsError,
    },
};
use serde::Deserialize;
use telemetry::TelemetrySettings;

/// The embedded configuration files.
pub const LAYERS: Layers = Layers {
    base: include_str!("../config/base.toml"),
    local: include_str!("../config/local.toml"),
    production: include_str!("../config/production.toml"),
};

/// Shortest accepted queue-service credential, in bytes (queue-service
/// refuses shorter ones too).
pub const MIN_SERVICE_KEY_BYTES: usize = 16;

/// The local stack's queue-service credential, refused in production.
const LOCAL_SERVICE_KEY: &str = "local-grpc-service-key";

/// Everything core-service needs to start.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `local` or `production` (from `ONSALE_ENVIRONMENT`).
    pub environment: Environment,
    /// The Postgres pool and its session timeouts.
    pub database: DatabaseSettings,
    /// Kafka; read by the outbox relay and the expiry consumer, kept here
    /// so one `devstack env` configures every service.
    pub kafka: KafkaSettings,
    /// Fans' identity tokens (`[identity]`): issuer, audience, leeway, key
    /// cache. Local default: devstack's issuer at `http://127.0.0.1:8090`,
    /// audience `onsale`; production has no default, so the service does
    /// not start without `ONSALE__IDENTITY__ISSUER` and
    /// `ONSALE__IDENTITY__AUDIENCE`.
    pub identity: IdentitySettings,
    /// Logs, metrics and traces.
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// The Tokio runtime (`[runtime]`).
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// The `[core]` section.
    pub core: CoreSettings,
}

/// The `[core]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct CoreSettings {
    /// Address the public HTTP API listens on (default `127.0.0.1:8081`).
    pub http_addr: SocketAddr,
    /// queue-service gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub queue_grpc_url: String,
    /// Deadline of every gRPC call to queue-service, in ms. A token check
    /// waits at most twice this (the call in flight, then its own); past
    /// it the request fails closed with 503.
    pub queue_timeout_ms: u64,
    /// Value of the `X-Admin-Key` header that unlocks the admin API and
    /// balance charges, and lets the operator read any fan's reservations
    /// and balance.
    pub admin_key: Secret,
    /// The service credential presented to queue-service's gRPC API as
    /// `authorization: Bearer <key>` (`ONSALE__CORE__QUEUE_SERVICE_KEY`;
    /// at least 16 bytes of visible ASCII, equal to queue-service's
    /// `queue.grpc_service_key`).
    pub queue_service_key: Secret,
    /// Per-client request limit (`[core.rate_limit]`): per signed-in fan on
    /// the fan routes, per client address on the catalog;
    /// `trusted_proxy_hops` says which `X-Forwarded-For` entry is the
    /// address (0: the peer address).
    pub rate_limit: RateLimitSettings,
    /// How long a seat hold lasts, in seconds (300 by default).
    pub hold_ttl_seconds: u64,
    /// Lifetime of the cached seat list of a performance, in ms (at most 1000;
    /// 0 disables the cache).
    pub seat_cache_ms: u64,
    /// How long an in-flight `Idempotency-Key` stays claimed before another
    /// request may take it over (covers a crash mid-payment), in seconds.
    pub idempotency_lease_seconds: u64,
    /// How long a completed `Idempotency-Key` is remembered (and replayed),
    /// in hours. Older keys are purged in the background.
    pub idempotency_retention_hours: u64,
    /// How long a published outbox row is kept (to trace an event back to
    /// its transaction), in hours; older published rows are purged in the
    /// background. Unpublished rows are never purged.
    pub outbox_retention_hours: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_deadline_seconds: u64,
    /// Ledger entries returned with a balance.
    pub recent_ledger_entries: u32,
    /// Run the outbox relay (publishes outbox rows to Kafka).
    #[serde(default = "enabled")]
    pub outbox_relay: bool,
    /// Rows the relay claims per transaction.
    #[serde(default = "default_outbox_batch")]
    pub outbox_batch_size: i64,
    /// How long one publish may wait for Kafka's acknowledgement, in ms.
    /// Past it the row stays pending and is retried: a broker outage grows
    /// the backlog, it never fails a payment.
    #[serde(default = "default_outbox_delivery_timeout_ms")]
    pub outbox_delivery_timeout_ms: u64,
    /// Consume `reservation.expiration` and expire holds at their due time.
    #[serde(default = "enabled")]
    pub expiry_consumer: bool,
    /// Expire overdue holds from the database every `sweep_interval_ms`.
    #[serde(default = "enabled")]
    pub sweeper: bool,
    /// Sweeper period in ms.
    #[serde(default = "default_sweep_interval_ms")]
    pub sweep_interval_ms: u64,
}

fn enabled() -> bool {
    true
}

fn default_outbox_batch() -> i64 {
    500
}

fn default_outbox_delivery_timeout_ms() -> u64 {
    5_000
}

fn default_sweep_interval_ms() -> u64 {
    5_000
}

impl Settings {
    /// Loads the layers described in [`platform::settings`] and validates
    /// them.
    ///
    /// # Errors
    /// [`SettingsError`] when a layer is malformed, a value is missing (the
    /// production admin key must come from `ONSALE__CORE__ADMIN_KEY`) or a
    /// rule of [`Settings::validate`] is broken.
    pub fn load() -> Result<Self, SettingsError> {
        let settings: Self = platform::settings::load(LAYERS)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        self.kafka.validate()?;
        self.identity.validate()?;
        let core = &self.core;
        core.rate_limit.validate("core.rate_limit")?;
        let invalid = |msg: &str| Err(SettingsError::Invalid(msg.to_owned()));
        if !core.queue_grpc_url.starts_with("http://")
            && !core.queue_grpc_url.starts_with("https://")
        {
            return invalid("core.queue_grpc_url must be an http:// or https:// URL");
        }
        if core.queue_timeout_ms == 0 || core.queue_timeout_ms > 30_000 {
            return invalid("core.queue_timeout_ms must be between 1 and 30000");
        }
        if core.hold_ttl_seconds == 0 || core.hold_ttl_seconds > 3_600 {
            return invalid("core.hold_ttl_seconds must be between 1 and 3600");
        }
        if core.seat_cache_ms > 1_000 {
            return invalid(
                "core.seat_cache_ms must be at most 1000 (the seat list is never staler than 1 s)",
            );
        }
        if core.idempotency_lease_seconds * 1_000 <= self.database.statement_timeout_ms {
            return invalid(
                "core.idempotency_lease_seconds must outlast database.statement_timeout_ms",
            );
        }
        if core.idempotency_retention_hours == 0 || core.idempotency_retention_hours > 24 * 365 {
            return invalid("core.idempotency_retention_hours must be between 1 and 8760");
        }
        if core.outbox_retention_hours == 0 || core.outbox_retention_hours > 24 * 365 {
            return invalid("core.outbox_retention_hours must be between 1 and 8760");
        }
        if core.recent_ledger_entries == 0 || core.recent_ledger_entries > 1_000 {
            return invalid("core.recent_ledger_entries must be between 1 and 1000");
        }
        let service_key = core.queue_service_key.expose_secret();
        if service_key.len() < MIN_SERVICE_KEY_BYTES
            || !service_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return invalid("core.queue_service_key must be at least 16 bytes of visible ASCII");
        }
        if self.environment == Environment::Production && service_key == LOCAL_SERVICE_KEY {
            return invalid(
                "core.queue_service_key in production must come from ONSALE__CORE__QUEUE_SERVICE_KEY, not the local value",
            );
        }
        let key = core.admin_key.expose_secret();
        if key.len() < 8 {
            return invalid("core.admin_key must be at least 8 characters");
        }
        if self.environment == Environment::Production
            && (key.len() < 24 || key == "local-dev-admin-key")
        {
            return invalid(
                "core.admin_key in production must be a random value of at least 24 characters",
            );
        }
        Ok(())
    }
}

impl CoreSettings {
    /// [`CoreSettings::hold_ttl_seconds`] as a duration.
    pub fn hold_ttl(&self) -> Duration {
        Duration::from_secs(self.hold_ttl_seconds)
    }
}

#[cfg(test)]
mod tests {
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
}
