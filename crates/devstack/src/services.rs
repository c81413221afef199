//! queue-service and core-service as processes against the stack, for the
//! README's main job and for load tests.
//!
//! `start` builds both binaries with cargo, migrates core-service's
//! database, starts each with the stack's `ONSALE__…` variables, records its
//! PID and waits for `/readyz`. Ports: queue-service HTTP 8080 and gRPC 50051,
//! core-service HTTP 8081.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::{Endpoints, StackConfig, process, stack::ComponentStatus};

/// A service binary devstack runs.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// Cargo package and binary name.
    pub name: &'static str,
    /// HTTP port.
    pub http_port: u16,
    /// Extra settings, as `ONSALE__…` variables.
    pub env: &'static [(&'static str, &'static str)],
    /// Arguments after the binary.
    pub args: &'static [&'static str],
}

/// The services, in start order.
pub const SERVICES: &[Service] = &[
    Service {
        name: "queue-service",
        http_port: 8080,
        env: &[
            ("ONSALE__QUEUE__HTTP_ADDR", "127.0.0.1:8080"),
            ("ONSALE__QUEUE__GRPC_ADDR", "127.0.0.1:50051"),
        ],
        args: &[],
    },
    Service {
        name: "core-service",
        http_port: 8081,
        env: &[
            ("ONSALE__CORE__HTTP_ADDR", "127.0.0.1:8081"),
            ("ONSALE__CORE__QUEUE_GRPC_URL", "http://127.0.0.1:50051"),
        ],
        args: &["serve"],
    },
];

fn pid_file(config: &StackConfig, service: &Service) -> PathBuf {
    config.run_dir().join(format!("{}.pid", service.name))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_root().join("target"), PathBuf::from)
}

/// Builds and starts both services (skipping any already running) and waits
/// until each answers `/readyz` with 200.
///
/// # Errors
/// When the build, the migration or a start fails, or a service is not ready
/// within 60 s; the service's log is named.
pub async fn start(config: &StackConfig, endpoints: &Endpoints, release: bool) -> Result<()> {
    start_with(config, endpoints, release, &[]).await
}

/// Like [`start`], with extra `ONSALE__…` variables for both services (for
/// example a short hold TTL for the simulation). Services already running
/// keep their settings.
///
/// # Errors
/// As [`start`].
pub async fn start_with(
    config: &StackConfig,
    endpoints: &Endpoints,
    release: bool,
    extra: &[(String, String)],
) -> Result<()> {
    let profile = if release { "release" } else { "debug" };
    let mut build = Command::new("cargo");
    build.current_dir(crate::workspace_root()).args([
        "build",
        "-p",
        "queue-service",
        "-p",
        "core-service",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the services failed");
    }
    let bin = |name: &str| target_dir().join(profile).join(name);
    let mut migrate = Command::new(bin("core-service"));
    migrate.arg("migrate").envs(endpoints.env_vars());
    process::run(&mut migrate).context("core-service migrate failed")?;
    for service in SERVICES {
        if process::running_pid(&pid_file(config, service), service.name).is_some() {
            continue;
        }
        if process::port_open(service.http_port) {
            bail!(
                "port {} is taken; stop whatever listens there",
                service.http_port
            );
        }
        let mut command = Command::new(bin(service.name));
        command
            .args(service.args)
            .envs(endpoints.env_vars())
            .envs(service.env.iter().copied())
            .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ONSALE_ENVIRONMENT", "local");
        let log = config.logs_dir().join(format!("{}.log", service.name));
        let pid = process::spawn_detached(command, &log, &pid_file(config, service))?;
        let url = format!("http://127.0.0.1:{}/readyz", service.http_port);
        let mut ready = false;
        for _ in 0..300 {
            if readyz(&url).await {
                ready = true;
                break;
            }
            if !process::alive(pid) {
                bail!(
                    "{} exited during start; see {}",
                    service.name,
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !ready {
            bail!(
                "{} not ready after 60 s; see {}",
                service.name,
                log.display()
            );
        }
    }
    Ok(())
}

async fn readyz(url: &str) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    match client {
        Ok(client) => client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}

/// Status of each running service; services never started are not listed.
pub async fn status(config: &StackConfig) -> Vec<ComponentStatus> {
    let mut all = Vec::new();
    for service in SERVICES {
        if let Some(pid) = process::running_pid(&pid_file(config, service), service.name) {
            let url = format!("http://127.0.0.1:{}/readyz", service.http_port);
            all.push(ComponentStatus {
                name: service.name,
                endpoint: format!("127.0.0.1:{}", service.http_port),
                pids: vec![pid],
                problem: (!readyz(&url).await).then(|| "/readyz is not 200".to_owned()),
            });
        }
    }
    all
}

/// PIDs of the running services by name (for CPU accounting).
pub fn pids(config: &StackConfig) -> std::collections::HashMap<&'static str, i32> {
    SERVICES
        .iter()
        .filter_map(|s| Some((s.name, process::running_pid(&pid_file(config, s), s.name)?)))
        .collect()
}

/// Stops the services devstack started (SIGTERM: they drain first).
pub fn down(config: &StackConfig) -> usize {
    let mut stopped = 0;
    for service in SERVICES {
        if let Some(pid) = process::read_pid(&pid_file(config, service))
            && process::stop(pid, service.name, Signal::SIGTERM, Duration::from_secs(30))
        {
            stopped += 1;
        }
        let _ = std::fs::remove_file(pid_file(config, service));
    }
    stopped
}
