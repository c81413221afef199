//! Typed settings of core-service, loaded from the embedded `config/*.toml`
//! layers and `ONSALE__…` variables (see [`platform::settings`]).
//!
//! Redis (`[redis]`) carries the coupon claims and the concert ranking;
//! `[coupons]` and `[ranking]` tune them ([`promotions`]).
//!
//! TLS: `[database.tls]` (`mode`, `ca_file`), `kafka.security_protocol`,
//! and `[grpc.tls]` for the calls to queue-service (an `https://`
//! `core.queue_grpc_url`). In production the service refuses to start with
//! a Postgres mode short of `verify-ca`, plaintext Kafka or an `http://`
//! queue-service URL, unless that section's `allow_plaintext` is true.

use std::{net::SocketAddr, time::Duration};

use platform::{
    identity::IdentitySettings,
    ratelimit::RateLimitSettings,
    settings::{
        DatabaseSettings, Environment, ExposeSecret, GrpcSettings, KafkaSettings, Layers,
        Plaintext, RedisSettings, RuntimeSettings, Secret, SettingsError,
    },
};
use serde::Deserialize;
use telemetry::TelemetrySettings;

pub use self::promotions::{CouponSettings, RankingSettings};

pub mod promotions;

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
    /// The Redis Cluster of coupon claims and the concert ranking
    /// (`[redis]`, the same section as queue-service's; `key_prefix`
    /// separates tests).
    pub redis: RedisSettings,
    /// First-come coupons (`[coupons]`).
    #[serde(default)]
    pub coupons: CouponSettings,
    /// The popular-concert ranking (`[ranking]`).
    #[serde(default)]
    pub ranking: RankingSettings,
    /// Kafka; read by the outbox relay and the expiry consumer, kept here
    /// so one `devstack env` configures every service.
    pub kafka: KafkaSettings,
    /// TLS of the calls to queue-service (`[grpc]`): with an `https://`
    /// `core.queue_grpc_url`, `tls.ca_file` is the CA its certificate must
    /// chain to, and `tls.cert_file`/`key_file` an optional client
    /// certificate.
    #[serde(default)]
    pub grpc: GrpcSettings,
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
    /// Longest age of a performance's availability snapshot, in ms (at most
    /// 1000; 0 rebuilds it on every read). Each instance rebuilds it at
    /// most once per this interval, whatever the number of holds, and
    /// best-available picks run on it plus the instance's own holds.
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
    /// Period of the inventory reports to the waiting room, in ms (0: off;
    /// at most 5000, well inside the 10 s after which queue-service
    /// ignores a report).
    #[serde(default = "default_inventory_report_ms")]
    pub inventory_report_ms: u64,
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

fn default_inventory_report_ms() -> u64 {
    1_000
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
        self.redis.validate()?;
        if self.redis.key_prefix.contains(['{', '}']) {
            return Err(SettingsError::Invalid(
                "redis.key_prefix must not contain braces (they would change the hash slot)".into(),
            ));
        }
        self.coupons.validate()?;
        self.ranking.validate()?;
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
        self.grpc.tls.validate("grpc.tls")?;
        let https = core.queue_grpc_url.starts_with("https://");
        if https && self.grpc.tls.ca_file.is_none() {
            return invalid("an https:// core.queue_grpc_url needs grpc.tls.ca_file");
        }
        if !https && self.grpc.tls.is_set() {
            return invalid("grpc.tls files need an https:// core.queue_grpc_url");
        }
        platform::settings::refuse_plaintext(self.environment, self.plaintext())?;
        if core.queue_timeout_ms == 0 || core.queue_timeout_ms > 30_000 {
            return invalid("core.queue_timeout_ms must be between 1 and 30000");
        }
        if core.hold_ttl_seconds == 0 || core.hold_ttl_seconds > 3_600 {
            return invalid("core.hold_ttl_seconds must be between 1 and 3600");
        }
        if core.inventory_report_ms > 5_000 {
            return invalid("core.inventory_report_ms must be at most 5000 (0: off)");
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

impl Settings {
    /// The links that would carry data in plain text (or, for Postgres,
    /// unverified): the database, Redis, Kafka, and an `http://`
    /// queue-service.
    pub fn plaintext(&self) -> Vec<Plaintext> {
        let grpc = self
            .core
            .queue_grpc_url
            .starts_with("http://")
            .then(|| Plaintext {
                link: "core.queue_grpc_url is http://".into(),
                flag: "ONSALE__GRPC__ALLOW_PLAINTEXT",
                allowed: self.grpc.allow_plaintext,
            });
        [
            self.database.plaintext(),
            self.redis.plaintext(),
            self.kafka.plaintext(),
            grpc,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl CoreSettings {
    /// [`CoreSettings::hold_ttl_seconds`] as a duration.
    pub fn hold_ttl(&self) -> Duration {
        Duration::from_secs(self.hold_ttl_seconds)
    }
}

#[cfg(test)]
mod tests;
