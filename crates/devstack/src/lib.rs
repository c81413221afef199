//! The local onsale stack, without Docker: a Redis Cluster of 3 masters and
//! 3 replicas, Postgres 15 with one database per service, Tansu, a
//! Kafka-API broker, with the topics the services use, and a local OpenID
//! Connect issuer that signs fans' identity tokens. Everything listens on
//! 127.0.0.1 and is started from packages the project installs itself
//! (Debian's `redis-server`, the machine's Postgres 15 binaries, and
//! `cargo install tansu`) or from this crate (the issuer).
//!
//! The `devstack` binary drives it (`up`, `down`, `status`, `env`, `token`,
//! `test`);
//! integration tests use [`testing`]. The load tools (the on-sale
//! simulation, the benchmarks) live in the `loadtest` crate, which brings
//! the stack and the services up through [`stack`] and [`services`].
//!
//! # Layout
//! - [`StackConfig`]: ports and the state folder (`.devstack/` in the
//!   workspace by default; logs in `.devstack/logs/`).
//! - [`install`]: installs what is missing (apt-get, `cargo install`).
//! - [`redis`], [`postgres`], [`kafka`], [`issuer_process`]: one component
//!   each: start, health, stop. `redis::heal` repairs the cluster after a
//!   node died (promote, forget, rejoin as a replica) instead of
//!   recreating it.
//! - [`issuer`]: the OIDC issuer itself (keys, discovery, JWKS, `/token`).
//! - [`process`]: PID files and signals; `down` stops only what `up`
//!   started, by recorded PID.
//! - [`stack`]: `up`, `down`, `status` and the `ONSALE__…` environment.
//! - [`services`]: builds and starts queue-service and core-service against
//!   the stack.
//! - [`tls`]: the TLS-only stack beside the plain one (`up --tls`): a
//!   throw-away CA and certificates, Redis, Postgres and Tansu on ports of
//!   their own.
//! - [`testing`]: endpoints for tests, identity tokens, isolated databases,
//!   key prefixes and topics.

pub mod install;
pub mod issuer;
pub mod issuer_process;
pub mod kafka;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod services;
pub mod stack;
pub mod testing;
pub mod tls;

use std::path::{Path, PathBuf};

use clap::Args;

/// Topics the services use, created with [`kafka::PARTITIONS`] partitions
/// each. Every topic has a `.dlq` dead-letter twin.
pub const TOPICS: &[&str] = &["payment.completed", "reservation.expiration"];

/// The credential core-service presents on gRPC to queue-service in the
/// stack (`queue.grpc_service_key` and `core.queue_service_key`, the
/// services' own local default). Production keys come from the
/// environment.
pub const LOCAL_SERVICE_KEY: &str = "local-grpc-service-key";

/// Where the stack listens and keeps its state. Every field can be set by a
/// flag or a `DEVSTACK_…` variable.
#[derive(Debug, Clone, Args)]
pub struct StackConfig {
    /// Folder for data, PID files and logs.
    #[arg(long, env = "DEVSTACK_DIR", default_value_os_t = default_dir())]
    pub dir: PathBuf,
    /// First of six consecutive Redis ports (masters then replicas).
    #[arg(long, env = "DEVSTACK_REDIS_PORT", default_value_t = 7000)]
    pub redis_port: u16,
    /// Postgres port.
    #[arg(long, env = "DEVSTACK_POSTGRES_PORT", default_value_t = 5433)]
    pub postgres_port: u16,
    /// Kafka-API (Tansu) port.
    #[arg(long, env = "DEVSTACK_KAFKA_PORT", default_value_t = 9092)]
    pub kafka_port: u16,
    /// Port of the local OIDC issuer (discovery, JWKS, `/token`).
    #[arg(long, env = "DEVSTACK_ISSUER_PORT", default_value_t = issuer::DEFAULT_PORT)]
    pub issuer_port: u16,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            dir: std::env::var_os("DEVSTACK_DIR").map_or_else(default_dir, PathBuf::from),
            redis_port: env_port("DEVSTACK_REDIS_PORT", 7000),
            postgres_port: env_port("DEVSTACK_POSTGRES_PORT", 5433),
            kafka_port: env_port("DEVSTACK_KAFKA_PORT", 9092),
            issuer_port: env_port("DEVSTACK_ISSUER_PORT", issuer::DEFAULT_PORT),
        }
    }
}

fn env_port(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `.devstack/` at the workspace root.
pub fn default_dir() -> PathBuf {
    workspace_root().join(".devstack")
}

/// The workspace root, known at compile time.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

impl StackConfig {
    /// The folder holding every component's log.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// PID files live here.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The local issuer's identifier (its `iss`), e.g.
    /// `http://127.0.0.1:8090`.
    pub fn issuer_url(&self) -> String {
        issuer::url_for(([127, 0, 0, 1], self.issuer_port).into())
    }
}

/// How services and tests reach a stack.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Endpoints {
    /// Redis Cluster seed URLs (the masters).
    pub redis_urls: Vec<String>,
    /// URL of the core-service database. Tests create their own databases on
    /// the same server (see [`testing::fresh_database`]).
    pub database_url: String,
    /// Kafka `bootstrap.servers`.
    pub kafka_brokers: String,
    /// The OIDC issuer of fans' identity tokens (`identity.issuer`); tokens
    /// name [`issuer::DEFAULT_AUDIENCE`] as their audience.
    pub issuer_url: String,
}

impl Endpoints {
    /// The endpoints of the stack that `config` describes.
    pub fn of(config: &StackConfig) -> Self {
        Self {
            redis_urls: (0..3)
                .map(|i| format!("redis://127.0.0.1:{}", config.redis_port + i))
                .collect(),
            database_url: postgres::database_url(config, postgres::CORE_DATABASE),
            kafka_brokers: format!("127.0.0.1:{}", config.kafka_port),
            issuer_url: config.issuer_url(),
        }
    }

    /// The `ONSALE__…` variables that point services and tests here: the
    /// stores, the identity issuer and audience, and the gRPC service key
    /// both services share ([`LOCAL_SERVICE_KEY`]).
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ONSALE__REDIS__URLS", self.redis_urls.join(",")),
            ("ONSALE__DATABASE__URL", self.database_url.clone()),
            ("ONSALE__KAFKA__BROKERS", self.kafka_brokers.clone()),
            ("ONSALE__IDENTITY__ISSUER", self.issuer_url.clone()),
            (
                "ONSALE__IDENTITY__AUDIENCE",
                issuer::DEFAULT_AUDIENCE.to_owned(),
            ),
            (
                "ONSALE__QUEUE__GRPC_SERVICE_KEY",
                LOCAL_SERVICE_KEY.to_owned(),
            ),
            (
                "ONSALE__CORE__QUEUE_SERVICE_KEY",
                LOCAL_SERVICE_KEY.to_owned(),
            ),
        ]
    }
}
