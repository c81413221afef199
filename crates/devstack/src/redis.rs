//! A Redis Cluster of 3 masters and 3 replicas on ports `redis_port ..
//! redis_port + 6`, created with `redis-cli --cluster create` and ready once
//! every node reports `cluster_state:ok`.
//!
//! Persistence is off (`save ""`, no AOF): the stack is for development and
//! tests, and a restart after `down` starts from an empty cluster.
//!
//! After a fault drill (a node killed, its replica promoted), [`up`] heals
//! instead of failing: it restarts the dead node empty, forgets the failed
//! entry on every surviving node (`CLUSTER FORGET`) and adds the new node
//! as a replica of the master that lacks one (`redis-cli --cluster
//! add-node --cluster-slave`). [`healthy`] names a cluster with a failed
//! node or a master without a replica as degraded.
//!
//! With [`crate::tls::Certs`] ([`up_with`], the `--tls` stack) every node
//! serves TLS only (`--port 0 --tls-port`), the cluster bus and replication
//! included, and client certificates are optional.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::{StackConfig, process, tls::Certs};

mod heal;

/// Nodes in the cluster: 3 masters and their 3 replicas.
pub const NODES: u16 = 6;

fn ports(config: &StackConfig) -> impl Iterator<Item = u16> {
    (0..NODES).map(move |i| config.redis_port + i)
}

fn node_dir(config: &StackConfig, port: u16) -> PathBuf {
    config.dir.join("redis").join(port.to_string())
}

fn pid_file(config: &StackConfig, port: u16) -> PathBuf {
    config.run_dir().join(format!("redis-{port}.pid"))
}

/// A `redis-cli` command, speaking TLS with `tls`.
fn redis_cli(tls: Option<&Certs>) -> Command {
    let mut command = Command::new("redis-cli");
    if let Some(certs) = tls {
        command.arg("--tls").arg("--cacert").arg(&certs.ca);
    }
    command
}

/// `redis-cli` against the node on `port`; its standard output.
fn cli(port: u16, tls: Option<&Certs>, args: &[&str]) -> Result<String> {
    let mut command = redis_cli(tls);
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    process::run(command.args(args))
}

/// `redis-server` arguments that make a node serve TLS only on `port`.
fn tls_args(command: &mut Command, port: u16, certs: &Certs) {
    command.args(["--port", "0", "--tls-port", &port.to_string()]);
    command.arg("--tls-cert-file").arg(&certs.server_cert);
    command.arg("--tls-key-file").arg(&certs.server_key);
    command.arg("--tls-ca-cert-file").arg(&certs.ca);
    command.args([
        "--tls-cluster",
        "yes",
        "--tls-replication",
        "yes",
        "--tls-auth-clients",
        "optional",
    ]);
}

/// The value of `field` in an `INFO`-style reply.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

/// Starts the nodes that are not running, forms the cluster if needed and
/// waits for `cluster_state:ok` on every node.
///
/// # Errors
/// When a node does not start or the cluster does not become healthy within
/// 60 s (then `devstack down --purge` resets it).
pub fn up(config: &StackConfig) -> Result<()> {
    up_with(config, None)
}

/// [`up`], serving TLS only with `tls`.
///
/// # Errors
/// As [`up`].
pub fn up_with(config: &StackConfig, tls: Option<&Certs>) -> Result<()> {
    crate::install::ensure_redis()?;
    let dead: Vec<u16> = ports(config)
        .filter(|&port| process::running_pid(&pid_file(config, port), "redis-server").is_none())
        .collect();
    let alive: Vec<u16> = ports(config).filter(|port| !dead.contains(port)).collect();
    // Running nodes that know only themselves (restarted empty by an
    // earlier `up`) rejoin like the dead ones.
    let lonely: Vec<u16> = alive
        .iter()
        .copied()
        .filter(|&port| known_nodes(port, tls).is_ok_and(|n| n == 1))
        .collect();
    let survivors: Vec<u16> = alive
        .iter()
        .copied()
        .filter(|port| !lonely.contains(port))
        .collect();
    let rejoining: Vec<u16> = dead.iter().chain(&lonely).copied().collect();
    // Surviving nodes that still form a cluster are healed, not replaced.
    let healing = !survivors.is_empty() && !rejoining.is_empty();
    if healing {
        heal::settle(&survivors, &rejoining, tls)?;
    }
    for &port in &dead {
        // Each node also listens on port + 10000 for the cluster bus.
        if let Some(taken) = [port, port + 10_000]
            .into_iter()
            .find(|p| process::port_open(*p))
        {
            bail!(
                "port {taken} is taken by a process devstack did not start; set DEVSTACK_REDIS_PORT"
            );
        }
        let dir = node_dir(config, port);
        // A fresh node each time: cluster membership from a previous run is
        // meaningless once the data is gone.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut command = Command::new("redis-server");
        match tls {
            Some(certs) => tls_args(&mut command, port, certs),
            None => {
                command.args(["--port", &port.to_string()]);
            }
        }
        command.args([
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]);
        command.arg(&dir);
        process::spawn_detached(
            command,
            &config.logs_dir().join(format!("redis-{port}.log")),
            &pid_file(config, port),
        )?;
    }
    for port in ports(config) {
        process::wait_until(&format!("redis {port}"), Duration::from_secs(20), || {
            cli(port, tls, &["ping"]).is_ok_and(|r| r.trim() == "PONG")
        })?;
    }
    if healing {
        heal::rejoin(&survivors, &rejoining, tls)?;
    } else if known_nodes(config.redis_port, tls)? < u32::from(NODES) {
        let nodes: Vec<String> = ports(config).map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = redis_cli(tls);
        create.arg("--cluster").arg("create").args(&nodes).args([
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]);
        process::run(&mut create)
            .context("redis-cli --cluster create failed; try `devstack down --purge`")?;
    }
    process::wait_until("redis cluster_state:ok", Duration::from_secs(60), || {
        healthy_with(config, tls).is_ok()
    })
}

/// Nodes that `port` knows (`cluster_known_nodes`).
fn known_nodes(port: u16, tls: Option<&Certs>) -> Result<u32> {
    Ok(info_field(
        &cli(port, tls, &["cluster", "info"])?,
        "cluster_known_nodes",
    )
    .and_then(|v| v.parse().ok())
    .unwrap_or(0))
}

/// Checks every node reports `cluster_state:ok` and knows all six nodes,
/// none has failed and every master has a replica.
///
/// # Errors
/// Describes the first unhealthy node, or how the cluster is degraded.
pub fn healthy(config: &StackConfig) -> Result<()> {
    healthy_with(config, None)
}

/// [`healthy`] for nodes serving TLS with `tls`.
///
/// # Errors
/// As [`healthy`].
pub fn healthy_with(config: &StackConfig, tls: Option<&Certs>) -> Result<()> {
    for port in ports(config) {
        let info = cli(port, tls, &["cluster", "info"])
            .with_context(|| format!("degraded: node {port} unreachable"))?;
        let state = info_field(&info, "cluster_state").unwrap_or_default();
        let known = info_field(&info, "cluster_known_nodes").unwrap_or_default();
        if state != "ok" || known != NODES.to_string() {
            bail!("node {port}: cluster_state={state} known_nodes={known}");
        }
    }
    if let Some(reason) = heal::degraded(&cli(config.redis_port, tls, &["cluster", "nodes"])?) {
        bail!("redis cluster {reason}");
    }
    Ok(())
}

/// PIDs of running nodes started by devstack.
pub fn pids(config: &StackConfig) -> Vec<i32> {
    ports(config)
        .filter_map(|port| process::running_pid(&pid_file(config, port), "redis-server"))
        .collect()
}

/// Stops every node devstack started.
pub fn down(config: &StackConfig) -> usize {
    let mut stopped = 0;
    for port in ports(config) {
        if let Some(pid) = process::read_pid(&pid_file(config, port))
            && process::stop(
                pid,
                "redis-server",
                Signal::SIGTERM,
                Duration::from_secs(10),
            )
        {
            stopped += 1;
        }
        let _ = fs::remove_file(pid_file(config, port));
    }
    stopped
}
