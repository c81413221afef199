//! Settings: embedded `config/*.toml` layers plus `ONSALE__…` variables
//! (see [`platform::settings`]), validated once at start.

use std::net::SocketAddr;

use platform::settings::{
    Environment, ExposeSecret, KafkaSettings, Layers, RedisSettings, RuntimeSettings, Secret,
    SettingsError,
};
use serde::Deserialize;
use telemetry::TelemetrySettings;

use crate::domain::{RoomConfig, RoomState};

const LAYERS: Layers = Layers {
    base: include_str!("../config/base.toml"),
    local: include_str!("../config/local.toml"),
    production: include_str!("../config/production.toml"),
};

/// Shortest accepted signing secret, in bytes (HS256 wants at least 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Everything queue-service reads at start.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `local` or `production`, from `ONSALE_ENVIRONMENT`.
    pub environment: Environment,
    /// Redis Cluster (`[redis]`); `key_prefix` isolates tests.
    pub redis: RedisSettings,
    /// Kafka (`[kafka]`), kept for the events issue; unused so far.
    pub kafka: KafkaSettings,
    /// Logs, metrics and traces (`[telemetry]`).
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// The Tokio runtime (`[runtime]`).
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// The waiting room itself (`[queue]`).
    pub queue: QueueSettings,
}

/// The `[queue]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueSettings {
    /// Public and admin HTTP API (`ONSALE__QUEUE__HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// gRPC API (`ONSALE__QUEUE__GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Value of the `X-Admin-Key` header that unlocks `/admin/v1/...`.
    pub admin_key: Secret,
    /// HS256 key signing queue and access tokens; at least 32 bytes, the same
    /// on every instance.
    pub token_secret: Secret,
    /// Admission tick in ms, 10 to 1000.
    pub tick_ms: u64,
    /// Whether this instance runs the admission loop. Any number may; turning
    /// it off makes an API-only instance.
    pub admission_enabled: bool,
    /// Whether this instance consumes `payment.completed` and releases each
    /// buyer's active slot at once (event-driven admission). Any number of
    /// instances may: they share one consumer group.
    #[serde(default = "enabled")]
    pub consume_events: bool,
    /// Minimum width in seconds of one presence window (a room uses at least
    /// a quarter of its abandonment window); abandonment is detected between
    /// `abandon_after_seconds` and one window later. Must be the same on
    /// every instance.
    pub presence_granularity_seconds: u64,
    /// Lifetime of a queue token, in seconds.
    pub queue_token_ttl_seconds: u64,
    /// How long `run` waits for in-flight work after shutdown starts, in ms.
    pub shutdown_grace_ms: u64,
    /// Per-client request limit of the fan API.
    pub rate_limit: RateLimitSettings,
    /// Defaults for fields a `PUT …/waiting-room` leaves out.
    pub default_room: RoomDefaults,
}

/// Per-client rate limit of `/v1/...` (`[queue.rate_limit]`).
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client.
    pub per_second: u32,
    /// Requests a client may send at once.
    pub burst: u32,
    /// Header naming the client address (first entry of e.g.
    /// `x-forwarded-for`) when behind a trusted proxy; the peer address
    /// otherwise.
    #[serde(default)]
    pub client_ip_header: Option<String>,
}

/// Default room settings (`[queue.default_room]`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RoomDefaults {
    /// Active set size.
    pub capacity: u64,
    /// Admissions per second.
    pub admit_per_second: f64,
    /// Admission lifetime, seconds.
    pub access_ttl_seconds: u64,
    /// Silence after which a waiting fan loses the place, seconds.
    pub abandon_after_seconds: u64,
}

impl Settings {
    /// Loads settings from the embedded layers and the process environment,
    /// then validates them.
    ///
    /// # Errors
    /// [`SettingsError`] for malformed layers, missing values or broken rules.
    pub fn load() -> Result<Self, SettingsError> {
        let settings: Self = platform::settings::load(LAYERS)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Like [`Settings::load`] for the `local` environment, with `vars`
    /// (`ONSALE__…` pairs) instead of the process environment. For tests.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with(vars: Vec<(String, String)>) -> Result<Self, SettingsError> {
        let settings: Self = platform::settings::load_from(LAYERS, Environment::Local, Some(vars))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every rule serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.redis.validate()?;
        self.kafka.validate()?;
        if self.redis.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "redis.key_prefix must not contain braces: keys carry their own hash tags",
            ));
        }
        let q = &self.queue;
        if !(10..=1000).contains(&q.tick_ms) {
            return Err(invalid("queue.tick_ms must be between 10 and 1000"));
        }
        if q.admin_key.expose_secret().trim().is_empty() {
            return Err(invalid("queue.admin_key must not be empty"));
        }
        if q.token_secret.expose_secret().len() < MIN_SECRET_BYTES {
            return Err(invalid("queue.token_secret must be at least 32 bytes"));
        }
        if q.presence_granularity_seconds == 0 || q.presence_granularity_seconds > 3600 {
            return Err(invalid(
                "queue.presence_granularity_seconds must be between 1 and 3600",
            ));
        }
        if q.queue_token_ttl_seconds < 60 {
            return Err(invalid("queue.queue_token_ttl_seconds must be at least 60"));
        }
        if q.rate_limit.per_second == 0 || q.rate_limit.burst == 0 {
            return Err(invalid(
                "queue.rate_limit.per_second and burst must be at least 1",
            ));
        }
        self.default_room(RoomState::Open)
            .validate()
            .map_err(|why| SettingsError::Invalid(format!("queue.default_room: {why}")))?;
        Ok(())
    }

    /// The default room settings in `state`.
    pub fn default_room(&self, state: RoomState) -> RoomConfig {
        let d = self.queue.default_room;
        RoomConfig {
            capacity: d.capacity,
            admit_per_second: d.admit_per_second,
            access_ttl_seconds: d.access_ttl_seconds,
            abandon_after_seconds: d.abandon_after_seconds,
            state,
        }
    }
}

fn invalid(message: &str) -> SettingsError {
    SettingsError::Invalid(message.to_owned())
}

fn enabled() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn local_defaults_load_and_validate() {
        let s = Settings::load_with(vec![]).unwrap();
        assert_eq!(s.queue.tick_ms, 200);
        assert_eq!(s.queue.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.queue.grpc_addr.to_string(), "127.0.0.1:50051");
        assert!(!format!("{s:?}").contains("local-admin-key"));
    }

    #[test]
    fn variables_override_the_files() {
        let s = Settings::load_with(vars(&[
            ("ONSALE__QUEUE__HTTP_ADDR", "127.0.0.1:9999"),
            ("ONSALE__QUEUE__TICK_MS", "500"),
            ("ONSALE__REDIS__URLS", "redis://a:1,redis://b:2"),
        ]))
        .unwrap();
        assert_eq!(s.queue.http_addr.port(), 9999);
        assert_eq!(s.queue.tick_ms, 500);
        assert_eq!(s.redis.urls.len(), 2);
    }

    #[test]
    fn a_tick_above_one_second_is_refused() {
        let err = Settings::load_with(vars(&[("ONSALE__QUEUE__TICK_MS", "1001")])).unwrap_err();
        assert!(err.to_string().contains("tick_ms"));
    }

    #[test]
    fn a_short_signing_secret_is_refused() {
        let err =
            Settings::load_with(vars(&[("ONSALE__QUEUE__TOKEN_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("token_secret"));
    }

    #[test]
    fn braces_in_the_key_prefix_are_refused() {
        assert!(Settings::load_with(vars(&[("ONSALE__REDIS__KEY_PREFIX", "a{b}")])).is_err());
    }
}
