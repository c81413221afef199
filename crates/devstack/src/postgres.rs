//! Postgres 15 from the machine's server binaries, with its own data
//! directory and port, trust authentication on 127.0.0.1, and one database
//! per service.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so as root they run as the
//! `postgres` user, and the data directory lives under
//! `/var/tmp/onsale-devstack/` where that user can reach it whatever the
//! checkout's permissions are.
//!
//! With [`crate::tls::Certs`] ([`up_with`], the `--tls` stack) the server
//! has `ssl=on` and a `pg_hba.conf` whose only TCP line is `hostssl`: a
//! client without TLS is refused. The socket (for `pg_ctl`) stays open.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use sqlx::{Connection, Executor, PgConnection};

use crate::{StackConfig, process, tls::Certs};

/// The database of core-service.
pub const CORE_DATABASE: &str = "onsale_core";

/// Databases created by `up`: one per service that uses Postgres.
pub const DATABASES: &[&str] = &[CORE_DATABASE];

/// Connections the server accepts. Every test opens its own pool on its own
/// database, so the default of 100 is too small for a parallel test run.
pub const MAX_CONNECTIONS: u32 = 500;

/// `postgres://postgres:postgres@127.0.0.1:<port>/<database>`.
pub fn database_url(config: &StackConfig, database: &str) -> String {
    format!(
        "postgres://postgres:postgres@127.0.0.1:{}/{database}",
        config.postgres_port
    )
}

/// Root of the server's files: data directory and log.
pub fn root(config: &StackConfig) -> PathBuf {
    if process::is_root() {
        PathBuf::from(format!(
            "/var/tmp/onsale-devstack/postgres-{}",
            config.postgres_port
        ))
    } else {
        config.dir.join("postgres")
    }
}

fn data_dir(config: &StackConfig) -> PathBuf {
    root(config).join("data")
}

fn log_file(config: &StackConfig) -> PathBuf {
    root(config).join("postgres.log")
}

/// A command for a Postgres binary, run as `postgres` when we are root.
fn pg_command(bin: &std::path::Path, program: &str) -> Command {
    if process::is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

/// The postmaster PID, when it runs.
pub fn pid(config: &StackConfig) -> Option<i32> {
    process::running_pid(&data_dir(config).join("postmaster.pid"), "postgres")
}

/// `url` with `sslmode=verify-full` and the stack's CA as `sslrootcert`.
pub fn verified_url(url: &str, certs: &Certs) -> String {
    format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        certs.ca.display()
    )
}

/// Initialises the cluster on first use, starts it, and creates the service
/// databases.
///
/// # Errors
/// When the binaries are missing, `initdb`/`pg_ctl` fail, or the server is
/// not accepting connections within 60 s.
pub async fn up(config: &StackConfig) -> Result<()> {
    up_with(config, None).await
}

/// [`up`], taking TLS connections only with `tls`.
///
/// # Errors
/// As [`up`].
pub async fn up_with(config: &StackConfig, tls: Option<&Certs>) -> Result<()> {
    let bin = crate::install::ensure_postgres()?;
    let url = |database: &str| {
        let plain = database_url(config, database);
        tls.map_or_else(|| plain.clone(), |certs| verified_url(&plain, certs))
    };
    let root = root(config);
    let data = data_dir(config);
    if pid(config).is_none() {
        if process::port_open(config.postgres_port) {
            anyhow::bail!(
                "port {} is taken by a process devstack did not start; set DEVSTACK_POSTGRES_PORT",
                config.postgres_port
            );
        }
        fs::create_dir_all(&root)?;
        // The server reads its key as its own user, which must own it
        // (mode 0600): copies in its root, chowned below with the rest.
        let mut ssl = String::new();
        if let Some(certs) = tls {
            let (cert, key) = (root.join("server.pem"), root.join("server.key"));
            fs::copy(&certs.server_cert, &cert)?;
            fs::copy(&certs.server_key, &key)?;
            fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
            ssl = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
        }
        if process::is_root() {
            process::run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&root),
            )?;
        }
        if !data.join("PG_VERSION").is_file() {
            process::run(pg_command(&bin, "initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]))
            .context("initdb failed")?;
        }
        if tls.is_some() {
            // Rewriting the file keeps its owner (the server's user).
            fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )?;
        }
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections={MAX_CONNECTIONS} -c shared_buffers=256MB{ssl}",
            config.postgres_port,
            root.display()
        );
        process::run(
            pg_command(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(log_file(config))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
        )
        .context("pg_ctl start failed")?;
        link_log(config);
    }
    wait_ready(config, &url("postgres")).await?;
    let mut admin = PgConnection::connect(&url("postgres")).await?;
    for database in DATABASES {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut admin)
                .await?;
        if exists.is_none() {
            // Identifiers cannot be bound; `database` is one of our constants.
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{database}\""
                )))
                .await?;
        }
    }
    Ok(())
}

/// Makes the server log visible in the stack's logs folder.
fn link_log(config: &StackConfig) {
    let link = config.logs_dir().join("postgres.log");
    if link != log_file(config) {
        let _ = fs::remove_file(&link);
        let _ = std::os::unix::fs::symlink(log_file(config), link);
    }
}

async fn wait_ready(config: &StackConfig, url: &str) -> Result<()> {
    for _ in 0..300 {
        if healthy_url(url).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!(
        "postgres on port {} not ready after 60 s",
        config.postgres_port
    )
}

/// Connects to `url` and runs `SELECT 1`.
///
/// # Errors
/// When the server or the database is unreachable.
pub async fn healthy_url(url: &str) -> Result<()> {
    let mut connection = PgConnection::connect(url).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut connection)
        .await?;
    anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
    Ok(())
}

/// Connects to the core database and runs `SELECT 1`.
///
/// # Errors
/// When the server or the database is unreachable.
pub async fn healthy(config: &StackConfig) -> Result<()> {
    healthy_url(&database_url(config, CORE_DATABASE)).await
}

/// Fast shutdown (SIGINT) of the postmaster devstack started.
pub fn down(config: &StackConfig) -> bool {
    match pid(config) {
        Some(pid) => process::stop(pid, "postgres", Signal::SIGINT, Duration::from_secs(20)),
        None => false,
    }
}

/// Crashes and restarts the server devstack started:
/// `pg_ctl restart -m immediate`, which ends every backend without a
/// checkpoint (as a power cut would) and starts again with the options of
/// the last start, so the server replays its WAL (crash recovery) before it
/// accepts connections. Returns once it does, within 60 s.
///
/// # Errors
/// When the binaries are missing or `pg_ctl` fails.
pub fn restart_immediate(config: &StackConfig) -> Result<()> {
    let bin = crate::install::ensure_postgres()?;
    process::run(
        pg_command(&bin, "pg_ctl")
            .arg("-D")
            .arg(data_dir(config))
            .arg("-l")
            .arg(log_file(config))
            .args(["-m", "immediate", "-w", "-t", "60", "restart"]),
    )
    .context("pg_ctl restart -m immediate failed")?;
    Ok(())
}

/// Deletes the data directory (after `down`).
pub fn purge(config: &StackConfig) {
    let _ = fs::remove_dir_all(root(config));
}
