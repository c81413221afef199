//! Settings: embedded `config/*.toml` layers plus `ONSALE__…` variables
//! (see [`platform::settings`]), validated once at start.
//!
//! TLS: `rediss://` URLs with `[redis.tls]`, `kafka.security_protocol`,
//! and `[grpc.tls]` for the gRPC server. In production the service refuses
//! to start with a plain-text link to Redis or Kafka, or a gRPC server
//! without a certificate, unless that section's `allow_plaintext` is true.

use std::net::SocketAddr;

use platform::{
    identity::IdentitySettings,
    ratelimit::RateLimitSettings,
    settings::{
        Environment, ExposeSecret, GrpcSettings, KafkaSettings, Layers, Plaintext, RedisSettings,
        RuntimeSettings, Secret, SettingsError,
    },
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

/// Shortest accepted gRPC service key, in bytes: it is the only thing
/// between the network and `ReleaseAccess`.
pub const MIN_SERVICE_KEY_BYTES: usize = 16;

/// Everything queue-service reads at start.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `local` or `production`, from `ONSALE_ENVIRONMENT`.
    pub environment: Environment,
    /// Redis Cluster (`[redis]`); `key_prefix` isolates tests.
    pub redis: RedisSettings,
    /// Kafka (`[kafka]`): the `payment.completed` consumer and its DLQ.
    pub kafka: KafkaSettings,
    /// TLS of the gRPC server (`[grpc]`): `tls.cert_file` and
    /// `tls.key_file` serve TLS; `tls.ca_file` then also requires client
    /// certificates chaining to it. Without them gRPC is plain text, which
    /// production allows only with `grpc.allow_plaintext`.
    #[serde(default)]
    pub grpc: GrpcSettings,
    /// Fans' identity tokens (`[identity]`): issuer, audience, leeway, key
    /// cache. Local default: devstack's issuer at `http://127.0.0.1:8090`,
    /// audience `onsale`; production has no default, so the service does
    /// not start without `ONSALE__IDENTITY__ISSUER` and
    /// `ONSALE__IDENTITY__AUDIENCE`.
    pub identity: IdentitySettings,
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
    /// The service credential gRPC callers (core-service) must present as
    /// `authorization: Bearer <key>` for `onsale.queue.v1.WaitingRoom`
    /// (`ONSALE__QUEUE__GRPC_SERVICE_KEY`; at least 16 bytes of visible
    /// ASCII). Health and reflection need none.
    pub grpc_service_key: Secret,
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
    /// Per-client request limit of the fan API (`[queue.rate_limit]`): per
    /// signed-in fan, else per client address; `trusted_proxy_hops` says
    /// which `X-Forwarded-For` entry is the address (0: the peer address).
    pub rate_limit: RateLimitSettings,
    /// Defaults for fields a `PUT …/waiting-room` leaves out.
    pub default_room: RoomDefaults,
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
    /// Time an admitted fan has to claim the admission, seconds.
    pub claim_within_seconds: u64,
    /// The booking core's hold and payment p95 above which admission slows
    /// down, ms.
    pub latency_target_ms: u64,
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
        self.identity.validate()?;
        let grpc = &self.grpc.tls;
        grpc.validate("grpc.tls")?;
        if grpc.ca_file.is_some() && grpc.cert_file.is_none() {
            return Err(invalid(
                "grpc.tls.ca_file (client certificates) needs grpc.tls.cert_file and key_file",
            ));
        }
        platform::settings::refuse_plaintext(self.environment, self.plaintext())?;
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
        let service_key = q.grpc_service_key.expose_secret();
        if service_key.len() < MIN_SERVICE_KEY_BYTES
            || !service_key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "queue.grpc_service_key must be at least 16 bytes of visible ASCII",
            ));
        }
        q.rate_limit.validate("queue.rate_limit")?;
        self.default_room(RoomState::Open)
            .validate()
            .map_err(|why| SettingsError::Invalid(format!("queue.default_room: {why}")))?;
        Ok(())
    }

    /// The links that would carry data in plain text: Redis, Kafka, and
    /// the gRPC server when it has no certificate.
    pub fn plaintext(&self) -> Vec<Plaintext> {
        let grpc = self.grpc.tls.cert_file.is_none().then(|| Plaintext {
            link: "the gRPC server has no grpc.tls.cert_file".into(),
            flag: "ONSALE__GRPC__ALLOW_PLAINTEXT",
            allowed: self.grpc.allow_plaintext,
        });
        [self.redis.plaintext(), self.kafka.plaintext(), grpc]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The default room settings in `state`.
    pub fn default_room(&self, state: RoomState) -> RoomConfig {
        let d = self.queue.default_room;
        RoomConfig {
            capacity: d.capacity,
            admit_per_second: d.admit_per_second,
            access_ttl_seconds: d.access_ttl_seconds,
            abandon_after_seconds: d.abandon_after_seconds,
            claim_within_seconds: d.claim_within_seconds,
            latency_target_ms: d.latency_target_ms,
            opens_at: None,
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

    /// Production settings from `vars`, validated as at start.
    fn production(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let settings: Settings =
            platform::settings::load_from(LAYERS, Environment::Production, Some(vars(pairs)))?;
        settings.validate()?;
        Ok(settings)
    }

    const PRODUCTION_SECRETS: [(&str, &str); 3] = [
        ("ONSALE__QUEUE__ADMIN_KEY", "production-admin-key"),
        (
            "ONSALE__QUEUE__TOKEN_SECRET",
            "production-signing-secret-0123456789abcdef",
        ),
        (
            "ONSALE__QUEUE__GRPC_SERVICE_KEY",
            "production-grpc-service-key",
        ),
    ];

    /// What Terraform passes for TLS (deploy/README.md), the AUTH token in
    /// the URL.
    const PRODUCTION_TLS: [(&str, &str); 4] = [
        (
            "ONSALE__REDIS__URLS",
            "rediss://:auth-token-0123456789@redis.example.com:6379",
        ),
        (
            "ONSALE__REDIS__TLS__CA_FILE",
            "/etc/ssl/certs/ca-certificates.crt",
        ),
        ("ONSALE__KAFKA__SECURITY_PROTOCOL", "SSL"),
        (
            "ONSALE__KAFKA__SSL_CA_FILE",
            "/etc/ssl/certs/ca-certificates.crt",
        ),
    ];

    /// Everything production needs, with `extra` added (later wins).
    fn production_with(
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let identity = [
            ("ONSALE__IDENTITY__ISSUER", "https://id.example.com"),
            ("ONSALE__IDENTITY__AUDIENCE", "onsale-web"),
        ];
        (PRODUCTION_SECRETS
            .iter()
            .chain(&PRODUCTION_TLS)
            .chain(&identity))
        .chain(extra)
        .copied()
        .collect()
    }

    #[test]
    fn production_with_the_terraform_tls_settings_starts_and_never_shows_the_auth_token() {
        let s = production(&production_with(&[])).unwrap();
        assert!(s.redis.uses_tls());
        assert_eq!(
            s.redis.tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"))
        );
        assert_eq!(
            s.kafka.security_protocol,
            platform::settings::KafkaSecurityProtocol::Ssl
        );
        // gRPC stays plain inside the security group (config/production.toml).
        assert!(s.grpc.allow_plaintext);
        assert!(!format!("{s:?}").contains("auth-token-0123456789"));
    }

    #[test]
    fn production_refuses_to_start_with_a_plain_redis_url_unless_allowed() {
        let plain = production_with(&[("ONSALE__REDIS__URLS", "redis://redis.example.com:6379")]);
        let plain: Vec<_> = plain
            .into_iter()
            .filter(|(k, _)| *k != "ONSALE__REDIS__TLS__CA_FILE")
            .collect();
        let err = production(&plain).unwrap_err();
        assert!(
            err.to_string().contains("ONSALE__REDIS__ALLOW_PLAINTEXT"),
            "{err}"
        );
        let mut allowed = plain.clone();
        allowed.push(("ONSALE__REDIS__ALLOW_PLAINTEXT", "true"));
        let s = production(&allowed).unwrap();
        assert!(
            s.plaintext()
                .iter()
                .any(|link| link.allowed && link.link.contains("redis"))
        );
        // The same URLs start locally without any flag.
        assert!(Settings::load_with(vars(&[("ONSALE__REDIS__URLS", "redis://a:1")])).is_ok());
    }

    #[test]
    fn production_refuses_plaintext_kafka_and_a_plain_grpc_server_unless_allowed() {
        let kafka = production_with(&[("ONSALE__KAFKA__SECURITY_PROTOCOL", "plaintext")]);
        let kafka: Vec<_> = kafka
            .into_iter()
            .filter(|(k, _)| *k != "ONSALE__KAFKA__SSL_CA_FILE")
            .collect();
        let err = production(&kafka).unwrap_err();
        assert!(
            err.to_string().contains("ONSALE__KAFKA__ALLOW_PLAINTEXT"),
            "{err}"
        );
        let grpc = production_with(&[("ONSALE__GRPC__ALLOW_PLAINTEXT", "false")]);
        let err = production(&grpc).unwrap_err();
        assert!(
            err.to_string().contains("ONSALE__GRPC__ALLOW_PLAINTEXT"),
            "{err}"
        );
        let served = production_with(&[
            ("ONSALE__GRPC__ALLOW_PLAINTEXT", "false"),
            ("ONSALE__GRPC__TLS__CERT_FILE", "/run/tls/queue.pem"),
            ("ONSALE__GRPC__TLS__KEY_FILE", "/run/tls/queue.key"),
        ]);
        assert!(production(&served).is_ok());
    }

    #[test]
    fn tls_files_need_rediss_urls_and_a_certificate_its_key() {
        let plain_with_ca = vars(&[("ONSALE__REDIS__TLS__CA_FILE", "/ca.pem")]);
        assert!(Settings::load_with(plain_with_ca).is_err());
        let half = vars(&[
            ("ONSALE__REDIS__URLS", "rediss://127.0.0.1:7100"),
            ("ONSALE__REDIS__TLS__CERT_FILE", "/client.pem"),
        ]);
        assert!(Settings::load_with(half).is_err());
        let mixed = vars(&[("ONSALE__REDIS__URLS", "rediss://a:1,redis://b:2")]);
        assert!(Settings::load_with(mixed).is_err());
    }

    #[test]
    fn local_defaults_load_and_validate() {
        let s = Settings::load_with(vec![]).unwrap();
        assert_eq!(s.queue.tick_ms, 200);
        assert_eq!(s.queue.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.queue.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(s.identity.issuer, "http://127.0.0.1:8090");
        assert_eq!(s.identity.audience, "onsale");
        assert_eq!(
            (
                s.queue.rate_limit.per_second,
                s.queue.rate_limit.burst,
                s.queue.rate_limit.trusted_proxy_hops
            ),
            (100, 200, 0)
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("local-admin-key"));
        assert!(!shown.contains("local-grpc-service-key"));
    }

    #[test]
    fn production_refuses_to_start_without_an_identity_issuer_and_audience() {
        let err = production(&PRODUCTION_SECRETS).unwrap_err();
        let chain = platform::problem::ErrorChain(&err).to_string();
        assert!(chain.contains("identity"), "{chain}");
        let mut only_issuer = PRODUCTION_SECRETS.to_vec();
        only_issuer.push(("ONSALE__IDENTITY__ISSUER", "https://id.example.com"));
        let err = production(&only_issuer).unwrap_err();
        let chain = platform::problem::ErrorChain(&err).to_string();
        assert!(chain.contains("audience"), "{chain}");
    }

    #[test]
    fn production_trusts_one_proxy_hop_and_takes_the_provider_from_the_environment() {
        let s = production(&production_with(&[])).unwrap();
        assert_eq!(s.queue.rate_limit.trusted_proxy_hops, 1);
        assert_eq!(s.identity.issuer, "https://id.example.com");
        assert_eq!(s.identity.audience, "onsale-web");
    }

    #[test]
    fn production_refuses_to_start_without_the_grpc_service_key() {
        let pairs = [
            PRODUCTION_SECRETS[0],
            PRODUCTION_SECRETS[1],
            ("ONSALE__IDENTITY__ISSUER", "https://id.example.com"),
            ("ONSALE__IDENTITY__AUDIENCE", "onsale-web"),
        ];
        let err = production(&pairs).unwrap_err();
        let chain = platform::problem::ErrorChain(&err).to_string();
        assert!(chain.contains("grpc_service_key"), "{chain}");
    }

    #[test]
    fn a_short_or_unprintable_grpc_service_key_is_refused() {
        for key in ["short", "sixteen bytes or more, with spaces"] {
            let err =
                Settings::load_with(vars(&[("ONSALE__QUEUE__GRPC_SERVICE_KEY", key)])).unwrap_err();
            assert!(err.to_string().contains("grpc_service_key"), "{key:?}");
        }
    }

    #[test]
    fn an_identity_issuer_over_plain_http_is_refused_off_loopback() {
        let err = Settings::load_with(vars(&[(
            "ONSALE__IDENTITY__ISSUER",
            "http://id.example.com",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("identity.issuer"), "{err}");
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
