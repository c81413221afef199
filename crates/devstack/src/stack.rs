//! The whole stack: `up`, `down`, `status` and `env`, the local OIDC issuer
//! included.
//!
//! `up` and `down` hold an exclusive lock on `<dir>/devstack.lock`, so test
//! binaries running side by side, each asking for the stack, start it once.

use std::fs;

use anyhow::Result;
use serde::Serialize;

use crate::{Endpoints, StackConfig, issuer_process, kafka, postgres, redis, services, tls};

/// Runs `f` while holding the stack's file lock.
///
/// # Errors
/// When the lock file cannot be created, or `f` fails.
pub fn with_lock<T>(config: &StackConfig, f: impl FnOnce() -> Result<T>) -> Result<T> {
    fs::create_dir_all(&config.dir)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.dir.join("devstack.lock"))?;
    let mut lock = fd_lock::RwLock::new(file);
    let _guard = lock.write()?;
    f()
}

fn prepare_dirs(config: &StackConfig) -> Result<()> {
    fs::create_dir_all(config.logs_dir())?;
    fs::create_dir_all(config.run_dir())?;
    Ok(())
}

/// Brings every component up (idempotent: running, healthy components are
/// left alone) and returns the endpoints.
///
/// # Errors
/// The first component that failed, with its log's location.
pub async fn up(config: &StackConfig) -> Result<Endpoints> {
    prepare_dirs(config)?;
    let logs = config.logs_dir();
    redis::up(config)
        .map_err(|e| e.context(format!("redis cluster (logs in {})", logs.display())))?;
    postgres::up(config).await.map_err(|e| {
        e.context(format!(
            "postgres (log: {})",
            postgres::root(config).join("postgres.log").display()
        ))
    })?;
    kafka::up(config).await.map_err(|e| {
        e.context(format!(
            "kafka broker (log: {})",
            logs.join("tansu.log").display()
        ))
    })?;
    up_issuer(config).await?;
    Ok(Endpoints::of(config))
}

/// Brings the local OIDC issuer up alone (idempotent), for tests whose
/// stores come from the environment but whose identity tokens come from
/// the stack.
///
/// # Errors
/// As [`issuer_process::up`], with the log's location.
pub async fn up_issuer(config: &StackConfig) -> Result<()> {
    prepare_dirs(config)?;
    issuer_process::up(config).await.map_err(|e| {
        e.context(format!(
            "local OIDC issuer (log: {})",
            issuer_process::log_file(config).display()
        ))
    })
}

/// [`up`] under the stack's file lock, on a Tokio runtime of its own.
/// Blocks: call it where blocking is allowed (a plain thread,
/// `spawn_blocking`), never on an async worker.
///
/// # Errors
/// As [`up`], or when the lock or the runtime cannot be had.
pub fn up_locked(config: &StackConfig) -> Result<Endpoints> {
    block_locked(config, up(config))
}

/// Runs `work` (which starts components of `config`'s stack) to completion
/// under the stack's file lock, on a Tokio runtime of its own. Blocks, as
/// [`up_locked`].
///
/// # Errors
/// As `work`, or when the lock or the runtime cannot be had.
pub fn block_locked<T>(
    config: &StackConfig,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    with_lock(config, || runtime.block_on(work))
}

/// [`up_locked`] from async code: the lock is a blocking file lock and `up`
/// starts processes, so both run off the async workers.
///
/// # Errors
/// As [`up_locked`].
pub async fn up_exclusive(config: &StackConfig) -> Result<Endpoints> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || up_locked(&config)).await?
}

/// What `down` stopped.
#[derive(Debug, Default, Serialize)]
pub struct Stopped {
    /// Service processes (queue-service, core-service).
    pub services: usize,
    /// Redis nodes.
    pub redis_nodes: usize,
    /// Whether Postgres was running.
    pub postgres: bool,
    /// Whether the broker was running.
    pub kafka: bool,
    /// Whether the local OIDC issuer was running.
    pub issuer: bool,
    /// Processes of the TLS stack beside it ([`tls`]).
    pub tls: usize,
}

/// Stops every process devstack started, by recorded PID, and with `purge`
/// deletes all data.
pub fn down(config: &StackConfig, purge: bool) -> Stopped {
    let stopped = Stopped {
        services: services::down(config),
        issuer: issuer_process::down(config),
        kafka: kafka::down(config),
        redis_nodes: redis::down(config),
        postgres: postgres::down(config),
        tls: tls::down(config, purge),
    };
    if purge {
        postgres::purge(config);
        let _ = fs::remove_dir_all(&config.dir);
    }
    stopped
}

/// Health of one component.
#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    /// Component name.
    pub name: &'static str,
    /// Where it listens.
    pub endpoint: String,
    /// PIDs devstack recorded for it and that are alive.
    pub pids: Vec<i32>,
    /// `None` when healthy, otherwise why not.
    pub problem: Option<String>,
}

impl ComponentStatus {
    /// True when running and healthy.
    pub fn healthy(&self) -> bool {
        self.problem.is_none()
    }
}

/// The problem of a component whose recorded process is `pid`: not running
/// without one, else what its health `check` (run only then) reports.
async fn problem(
    pid: Option<i32>,
    check: impl std::future::Future<Output = Result<()>>,
) -> Option<String> {
    match pid {
        None => Some("not running".to_owned()),
        Some(_) => check.await.err().map(|e| format!("{e:#}")),
    }
}

/// Checks each component.
pub async fn status(config: &StackConfig) -> Vec<ComponentStatus> {
    let endpoints = Endpoints::of(config);
    let redis_pids = redis::pids(config);
    let redis_problem = if redis_pids.is_empty() {
        Some("not running".to_owned())
    } else {
        redis::healthy(config).err().map(|e| format!("{e:#}"))
    };
    let pg_pid = postgres::pid(config);
    let pg_problem = problem(pg_pid, postgres::healthy(config)).await;
    let kafka_pid = kafka::pid(config);
    let brokers = endpoints.kafka_brokers.clone();
    let kafka_problem = problem(kafka_pid, async move {
        tokio::task::spawn_blocking(move || kafka::healthy(&brokers)).await?
    })
    .await;
    let issuer_pid = issuer_process::pid(config);
    let issuer_problem = problem(issuer_pid, issuer_process::healthy(config)).await;
    let mut all = vec![
        ComponentStatus {
            name: "redis-cluster",
            endpoint: format!(
                "127.0.0.1:{}-{}",
                config.redis_port,
                config.redis_port + redis::NODES - 1
            ),
            pids: redis_pids,
            problem: redis_problem,
        },
        ComponentStatus {
            name: "postgres",
            endpoint: format!("127.0.0.1:{}", config.postgres_port),
            pids: pg_pid.into_iter().collect(),
            problem: pg_problem,
        },
        ComponentStatus {
            name: "kafka (tansu)",
            endpoint: endpoints.kafka_brokers,
            pids: kafka_pid.into_iter().collect(),
            problem: kafka_problem,
        },
        ComponentStatus {
            name: "issuer (oidc)",
            endpoint: format!("127.0.0.1:{}", config.issuer_port),
            pids: issuer_pid.into_iter().collect(),
            problem: issuer_problem,
        },
    ];
    all.extend(services::status(config).await);
    all
}
