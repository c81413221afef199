//! Installs what the stack needs when it is missing, from package registries
//! only: Debian packages with apt-get, and Tansu with `cargo install`.
//! Everything already present is left alone, so `up` is cheap after the first
//! run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::process;

/// The Tansu release the stack runs. 0.6.0 is the version verified with the
/// rdkafka crate's bundled librdkafka 2.12 (idempotent producer, consumer
/// groups, manual offset store and commit).
pub const TANSU_VERSION: &str = "0.6.0";

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Installs Debian `packages` unless every program in `programs` is present.
///
/// # Errors
/// When apt-get fails, or when not root and `sudo -n` is unavailable.
pub fn ensure_apt(programs: &[&str], packages: &[&str]) -> Result<()> {
    if programs.iter().all(|p| which(p).is_some()) {
        return Ok(());
    }
    apt_install(packages)?;
    if let Some(missing) = programs.iter().find(|p| which(p).is_none()) {
        bail!(
            "{missing} is still missing after installing {}",
            packages.join(" ")
        );
    }
    Ok(())
}

/// `apt-get update`, then `apt-get install` of `packages`.
fn apt_install(packages: &[&str]) -> Result<()> {
    eprintln!("devstack: installing {} with apt-get", packages.join(" "));
    let sudo: &[&str] = if process::is_root() {
        &[]
    } else {
        &["sudo", "-n"]
    };
    let mut update = apt_command(sudo, &["update", "-qq"]);
    process::run(&mut update).context("apt-get update failed; install the packages by hand")?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    let mut install = apt_command(sudo, &args);
    process::run(&mut install)
        .with_context(|| format!("apt-get install {} failed", packages.join(" ")))?;
    Ok(())
}

/// The `nginx` binary (the static-file baseline of `loadtest bench`),
/// installing Debian's `nginx` with apt-get when it is missing. Debian
/// keeps it in `/usr/sbin`, which is not on every user's `PATH`. The
/// package's own service is not needed: the bench runs nginx with a
/// configuration of its own.
///
/// # Errors
/// As [`ensure_apt`], or when no binary is found after installing.
pub fn ensure_nginx() -> Result<PathBuf> {
    if let Some(found) = find_nginx() {
        return Ok(found);
    }
    apt_install(&["nginx"])?;
    find_nginx().context("nginx is not on PATH or in /usr/sbin after apt-get install nginx")
}

fn find_nginx() -> Option<PathBuf> {
    which("nginx").or_else(|| {
        let candidate = PathBuf::from("/usr/sbin/nginx");
        candidate.is_file().then_some(candidate)
    })
}

fn apt_command(sudo: &[&str], args: &[&str]) -> Command {
    let mut command = if let Some((first, rest)) = sudo.split_first() {
        let mut c = Command::new(first);
        c.args(rest).arg("apt-get");
        c
    } else {
        Command::new("apt-get")
    };
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

/// Redis server and client (Debian `redis-server`, `redis-tools`).
///
/// # Errors
/// As [`ensure_apt`].
pub fn ensure_redis() -> Result<()> {
    ensure_apt(
        &["redis-server", "redis-cli"],
        &["redis-server", "redis-tools"],
    )
}

/// The folder with `initdb`, `pg_ctl` and `postgres`, preferring version 15,
/// installing Debian's `postgresql-15` when no server is present.
///
/// # Errors
/// When no server binaries can be found or installed.
pub fn ensure_postgres() -> Result<PathBuf> {
    if let Some(dir) = find_postgres() {
        return Ok(dir);
    }
    ensure_apt(&["__never_present__"], &["postgresql-15"]).ok();
    find_postgres().context("no Postgres server binaries in /usr/lib/postgresql/*/bin")
}

fn find_postgres() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let preferred = root.join("15/bin");
    if preferred.join("initdb").is_file() {
        return Some(preferred);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The `tansu` binary, built with `cargo install` (about 11 minutes on 2
/// cores) when it is not already installed.
///
/// # Errors
/// When `cargo install` fails.
pub fn ensure_tansu() -> Result<PathBuf> {
    if let Some(found) = find_tansu() {
        return Ok(found);
    }
    eprintln!(
        "devstack: building the Kafka-API broker (cargo install tansu {TANSU_VERSION}); this takes about 11 minutes once"
    );
    let status = Command::new("cargo")
        .args([
            "install",
            "tansu",
            "--version",
            TANSU_VERSION,
            "--locked",
            "--features",
            "dynostore",
        ])
        .status()
        .context("running cargo install tansu")?;
    if !status.success() {
        bail!("cargo install tansu failed ({status})");
    }
    find_tansu().context("tansu is not on PATH or in ~/.cargo/bin after cargo install")
}

fn find_tansu() -> Option<PathBuf> {
    which("tansu").or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let candidate = home.join("bin/tansu");
        candidate.is_file().then_some(candidate)
    })
}
