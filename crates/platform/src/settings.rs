//! Typed, layered settings.
//!
//! Every service embeds its `base.toml` and one TOML file per environment, and
//! loads them with [`load`] in this order, later layers winning:
//! 1. the embedded base file;
//! 2. the embedded file of the environment named by `ONSALE_ENVIRONMENT`
//!    (`local` by default, or `production`);
//! 3. an optional file named by `ONSALE_CONFIG_FILE`;
//! 4. environment variables `ONSALE__SECTION__KEY`, where `__` separates
//!    levels, e.g. `ONSALE__DATABASE__MAX_CONNECTIONS=40`. Lists such as
//!    `ONSALE__REDIS__URLS` are comma separated.
//!
//! The infrastructure sections ([`RedisSettings`], [`DatabaseSettings`],
//! [`KafkaSettings`]) have the same keys in every service, so the output of
//! `devstack env` configures all of them at once; `[grpc]` is
//! [`GrpcSettings`].
//!
//! TLS: `rediss://` URLs with `[redis.tls]`, `[database.tls]`
//! (`mode`, `ca_file`), `kafka.security_protocol`/`ssl_ca_file` and
//! `[grpc.tls]` ([`transport`]). In production a service refuses to start
//! with a plain-text link unless that section's `allow_plaintext` is true
//! ([`refuse_plaintext`]); an allowed one is logged at warn.

mod transport;

pub use transport::{
    DatabaseTls, GrpcSettings, KafkaSecurityProtocol, PgTlsMode, Plaintext, TlsFiles,
    refuse_plaintext, warn_plaintext,
};

use config::{Config, Environment as EnvSource, File, FileFormat};
use serde::{Deserialize, de::DeserializeOwned};

/// A secret string (passwords, signing keys, URLs with credentials). Its
/// `Debug` output is redacted; read it with `secrecy::ExposeSecret`.
pub type Secret = secrecy::SecretString;
pub use secrecy::ExposeSecret;

/// The deployment environment, from `ONSALE_ENVIRONMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine or CI (the default).
    #[default]
    Local,
    /// A real deployment. Dev-only commands refuse to run here.
    Production,
}

impl Environment {
    /// Reads `ONSALE_ENVIRONMENT`; unset means [`Environment::Local`].
    ///
    /// # Errors
    /// [`SettingsError::Environment`] for any value but `local` or `production`.
    pub fn from_env() -> Result<Self, SettingsError> {
        match std::env::var("ONSALE_ENVIRONMENT") {
            Err(_) => Ok(Self::Local),
            Ok(value) => match value.to_ascii_lowercase().as_str() {
                "local" => Ok(Self::Local),
                "production" => Ok(Self::Production),
                _ => Err(SettingsError::Environment(value)),
            },
        }
    }

    /// The lowercase name, as used in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Production => "production",
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `ONSALE_ENVIRONMENT` has an unknown value.
    #[error("ONSALE_ENVIRONMENT must be `local` or `production`, not {0:?}")]
    Environment(String),
    /// A layer does not parse, or the merged result does not fit the type.
    #[error("loading settings failed")]
    Config(#[from] config::ConfigError),
    /// The values parse but break a rule (see the message).
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// The embedded TOML layers of one service.
#[derive(Debug, Clone, Copy)]
pub struct Layers {
    /// Contents of `config/base.toml`.
    pub base: &'static str,
    /// Contents of `config/local.toml`.
    pub local: &'static str,
    /// Contents of `config/production.toml`.
    pub production: &'static str,
}

/// Loads `T` from the layers described in the module docs, reading the process
/// environment.
///
/// # Errors
/// [`SettingsError`] when a layer is malformed or a value does not fit `T`.
pub fn load<T: DeserializeOwned>(layers: Layers) -> Result<T, SettingsError> {
    load_from(layers, Environment::from_env()?, None)
}

/// Like [`load`], with the environment and (for tests) the variables given
/// explicitly instead of read from the process. `vars` holds `ONSALE__…`
/// pairs exactly as they would appear in the environment.
///
/// # Errors
/// As [`load`].
pub fn load_from<T: DeserializeOwned>(
    layers: Layers,
    environment: Environment,
    vars: Option<Vec<(String, String)>>,
) -> Result<T, SettingsError> {
    let overlay = match environment {
        Environment::Local => layers.local,
        Environment::Production => layers.production,
    };
    let mut builder = Config::builder()
        .add_source(File::from_str(layers.base, FileFormat::Toml))
        .add_source(File::from_str(overlay, FileFormat::Toml))
        .set_override("environment", environment.as_str())?;
    if let Ok(path) = std::env::var("ONSALE_CONFIG_FILE") {
        builder = builder.add_source(File::with_name(&path).required(true));
    }
    let mut env = EnvSource::with_prefix("ONSALE")
        .prefix_separator("__")
        .separator("__")
        .list_separator(",")
        .with_list_parse_key("redis.urls")
        .try_parsing(true);
    if let Some(vars) = vars {
        env = env.source(Some(
            vars.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ));
    }
    Ok(builder.add_source(env).build()?.try_deserialize()?)
}

/// The `[runtime]` section of every service: the Tokio runtime the binary
/// builds before anything else runs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeSettings {
    /// Tokio worker threads. 0 (the default) means one per CPU the process
    /// may use, which suits a container sized for the service alone. On a
    /// machine that runs the whole stack, a service that mostly waits on
    /// others (core-service) does better with one; `docs/benchmarks.md` has
    /// the measurement.
    #[serde(default)]
    pub worker_threads: usize,
}

impl RuntimeSettings {
    /// Builds the multi-thread runtime with every driver (I/O, time)
    /// enabled.
    ///
    /// # Errors
    /// The OS refused to start the worker threads.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if self.worker_threads > 0 {
            builder.worker_threads(self.worker_threads);
        }
        builder.enable_all().build()
    }
}

/// Redis Cluster connection settings (`[redis]`).
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Seed node URLs, e.g. `redis://127.0.0.1:7000`, or
    /// `rediss://:<AUTH token>@host:6379` for TLS with a password (hence
    /// secrets: never logged). Any reachable master or replica will do; the
    /// client discovers the rest of the cluster.
    pub urls: Vec<Secret>,
    /// Maximum pooled cluster connections per process.
    #[serde(default = "defaults::redis_pool_size")]
    pub pool_size: usize,
    /// Connect timeout in ms.
    #[serde(default = "defaults::redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Per-command response timeout in ms; a slow or dead shard fails fast
    /// instead of piling up requests.
    #[serde(default = "defaults::redis_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Prefix put before every key, so tests (and tenants sharing a cluster)
    /// never see each other's keys. Empty in production.
    #[serde(default)]
    pub key_prefix: String,
    /// CA and optional client certificate for `rediss://` (`[redis.tls]`).
    /// No CA: the system's trust store.
    #[serde(default)]
    pub tls: TlsFiles,
    /// Lets production start with `redis://` URLs (logged at warn).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl RedisSettings {
    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.urls.is_empty() {
            return Err(SettingsError::Invalid(
                "redis.urls needs at least one node".into(),
            ));
        }
        let urls = || self.urls.iter().map(ExposeSecret::expose_secret);
        if let Some(bad) =
            urls().position(|url| !url.starts_with("redis://") && !url.starts_with("rediss://"))
        {
            // The URL may hold the AUTH token: name its place only.
            return Err(SettingsError::Invalid(format!(
                "redis.urls entry {} is not a redis:// or rediss:// URL",
                bad + 1
            )));
        }
        let tls = urls().filter(|url| url.starts_with("rediss://")).count();
        if tls != 0 && tls != self.urls.len() {
            return Err(SettingsError::Invalid(
                "redis.urls must all be rediss:// or all redis://".into(),
            ));
        }
        if tls == 0 && self.tls.is_set() {
            return Err(SettingsError::Invalid(
                "redis.tls files need rediss:// URLs".into(),
            ));
        }
        self.tls.validate("redis.tls")?;
        if self.pool_size == 0 {
            return Err(SettingsError::Invalid(
                "redis.pool_size must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether the URLs are `rediss://`.
    pub fn uses_tls(&self) -> bool {
        self.urls
            .first()
            .is_some_and(|url| url.expose_secret().starts_with("rediss://"))
    }

    /// The plain-text link, if the URLs are `redis://`.
    pub fn plaintext(&self) -> Option<Plaintext> {
        (!self.uses_tls()).then(|| Plaintext {
            link: "redis.urls use redis://".into(),
            flag: "ONSALE__REDIS__ALLOW_PLAINTEXT",
            allowed: self.allow_plaintext,
        })
    }
}

/// Postgres settings (`[database]`).
///
/// The pool is sized explicitly, never left at a library default: a
/// default-sized pool ran dry under a concert on-sale in a published
/// incident review, whose rule we follow: measured peak concurrency ×
/// 1.2–1.3.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:port/database`.
    pub url: Secret,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// Connections kept open while idle.
    #[serde(default = "defaults::db_min_connections")]
    pub min_connections: u32,
    /// How long a request waits for a pooled connection before it is shed
    /// with 503, in ms.
    pub acquire_timeout_ms: u64,
    /// `statement_timeout` of every session, in ms.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of every session, in ms: no request waits long on
    /// another buyer's row lock, so a lock wait cannot hold a pooled
    /// connection until the pool runs dry.
    pub lock_timeout_ms: u64,
    /// TLS to the server (`[database.tls]`).
    #[serde(default)]
    pub tls: DatabaseTls,
    /// Lets production start without `verify-ca` or `verify-full` (logged
    /// at warn).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl DatabaseSettings {
    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !self.url.expose_secret().starts_with("postgres://")
            && !self.url.expose_secret().starts_with("postgresql://")
        {
            return Err(SettingsError::Invalid(
                "database.url must be a postgres:// URL".into(),
            ));
        }
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(SettingsError::Invalid(
                "database.max_connections must be ≥ 1 and ≥ database.min_connections".into(),
            ));
        }
        if self.acquire_timeout_ms == 0
            || self.statement_timeout_ms == 0
            || self.lock_timeout_ms == 0
        {
            return Err(SettingsError::Invalid(
                "database timeouts must be positive".into(),
            ));
        }
        if self.tls.ca_file.is_some() && self.tls_mode() == PgTlsMode::Disable {
            return Err(SettingsError::Invalid(
                "database.tls.ca_file needs a database.tls.mode other than disable".into(),
            ));
        }
        Ok(())
    }

    /// The `sslmode` in force: `tls.mode`, else the URL's `sslmode`, else
    /// `prefer` (libpq's and sqlx's default).
    pub fn tls_mode(&self) -> PgTlsMode {
        self.tls.mode.unwrap_or_else(|| {
            let url = self.url.expose_secret();
            let query = url.split_once('?').map_or("", |(_, query)| query);
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("sslmode="))
                .and_then(|mode| mode.parse().ok())
                .unwrap_or(PgTlsMode::Prefer)
        })
    }

    /// The link that is plain text or unverified, if the mode is not
    /// `verify-ca` or `verify-full`.
    pub fn plaintext(&self) -> Option<Plaintext> {
        let mode = self.tls_mode();
        (!mode.verifies()).then(|| Plaintext {
            link: format!(
                "database sslmode is {} (not verify-ca or verify-full)",
                mode.as_str()
            ),
            flag: "ONSALE__DATABASE__ALLOW_PLAINTEXT",
            allowed: self.allow_plaintext,
        })
    }
}

/// Kafka settings (`[kafka]`): the brokers, the names, and TLS.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Appended to every topic name, so tests get their own topics. Empty in
    /// production.
    #[serde(default)]
    pub topic_suffix: String,
    /// Consumer group id prefix; each consumer appends its role.
    #[serde(default = "defaults::kafka_group_prefix")]
    pub group_prefix: String,
    /// `security.protocol`: `plaintext` or `ssl` (any case).
    #[serde(default)]
    pub security_protocol: KafkaSecurityProtocol,
    /// `ssl.ca.location`: CA bundle for the brokers' certificates. Unset
    /// with `ssl`: librdkafka probes the usual system paths.
    #[serde(default)]
    pub ssl_ca_file: Option<std::path::PathBuf>,
    /// Lets production start with `plaintext` (logged at warn).
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl KafkaSettings {
    /// Checks the rules serde cannot express.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.brokers.trim().is_empty() {
            return Err(SettingsError::Invalid(
                "kafka.brokers must not be empty".into(),
            ));
        }
        if self.security_protocol == KafkaSecurityProtocol::Plaintext && self.ssl_ca_file.is_some()
        {
            return Err(SettingsError::Invalid(
                "kafka.ssl_ca_file needs kafka.security_protocol = ssl".into(),
            ));
        }
        Ok(())
    }

    /// Plain-text settings for `brokers`, as the local tools and tests use
    /// them: topics named with `topic_suffix`, groups with `group_prefix`.
    pub fn plaintext_to(
        brokers: impl Into<String>,
        topic_suffix: impl Into<String>,
        group_prefix: impl Into<String>,
    ) -> Self {
        Self {
            brokers: brokers.into(),
            topic_suffix: topic_suffix.into(),
            group_prefix: group_prefix.into(),
            security_protocol: KafkaSecurityProtocol::Plaintext,
            ssl_ca_file: None,
            allow_plaintext: false,
        }
    }

    /// `base` with this deployment's topic suffix.
    pub fn topic(&self, base: &str) -> String {
        format!("{base}{}", self.topic_suffix)
    }
}

mod defaults {
    pub(super) fn redis_pool_size() -> usize {
        64
    }
    pub(super) fn redis_connect_timeout_ms() -> u64 {
        1_000
    }
    pub(super) fn redis_response_timeout_ms() -> u64 {
        500
    }
    pub(super) fn db_min_connections() -> u32 {
        2
    }
    pub(super) fn kafka_group_prefix() -> String {
        "onsale".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_has_the_configured_number_of_workers() {
        for workers in [1, 2, 5] {
            let runtime = RuntimeSettings {
                worker_threads: workers,
            }
            .build()
            .unwrap();
            assert_eq!(runtime.metrics().num_workers(), workers);
        }
    }

    #[derive(Debug, Deserialize)]
    struct Sample {
        environment: Environment,
        redis: RedisSettings,
        database: DatabaseSettings,
    }

    const LAYERS: Layers = Layers {
        base: r#"
[redis]
urls = ["redis://127.0.0.1:7000"]
[database]
url = "postgres://base"
max_connections = 10
acquire_timeout_ms = 500
statement_timeout_ms = 2000
lock_timeout_ms = 200
"#,
        local: "[database]\nmax_connections = 5\n",
        production: "[database]\nmax_connections = 50\n",
    };

    #[test]
    fn environment_file_overrides_base_and_variables_override_both() {
        let vars = vec![
            (
                "ONSALE__DATABASE__LOCK_TIMEOUT_MS".to_owned(),
                "150".to_owned(),
            ),
            (
                "ONSALE__REDIS__URLS".to_owned(),
                "redis://a:1,redis://b:2".to_owned(),
            ),
        ];
        let s: Sample = load_from(LAYERS, Environment::Production, Some(vars)).unwrap();
        assert_eq!(s.environment, Environment::Production);
        assert_eq!(s.database.max_connections, 50);
        assert_eq!(s.database.lock_timeout_ms, 150);
        let urls: Vec<&str> = s.redis.urls.iter().map(|u| u.expose_secret()).collect();
        assert_eq!(urls, vec!["redis://a:1", "redis://b:2"]);
        assert_eq!(s.redis.pool_size, 64);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s: Sample = load_from(LAYERS, Environment::Local, Some(vec![])).unwrap();
        assert_eq!(s.database.max_connections, 5);
        assert!(!format!("{:?}", s.database).contains("postgres://base"));
    }

    #[test]
    fn validation_rejects_non_redis_urls_and_empty_pools() {
        let mut s: Sample = load_from(LAYERS, Environment::Local, Some(vec![])).unwrap();
        assert!(s.redis.validate().is_ok());
        s.redis.urls = vec!["http://x".to_owned().into()];
        assert!(s.redis.validate().is_err());
        s.database.min_connections = 9;
        assert!(s.database.validate().is_err());
    }
}
