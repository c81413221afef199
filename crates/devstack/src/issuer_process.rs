//! The local OIDC issuer ([`crate::issuer`]) as a stack component: a
//! background process of the `devstack` binary (`devstack issuer-serve`,
//! hidden) on 127.0.0.1:[`StackConfig::issuer_port`] (8090,
//! `DEVSTACK_ISSUER_PORT`), with its PID in `run/issuer.pid`, its log in
//! `logs/issuer.log` and its keys in `issuer/`. Healthy once its discovery
//! document names the expected issuer.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;

use crate::{StackConfig, process};

/// The hidden `devstack` subcommand that serves the issuer; also how `down`
/// recognises the process (its command line names it).
pub const SERVE_COMMAND: &str = "issuer-serve";

/// How long `up` waits for a fresh issuer to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn pid_file(config: &StackConfig) -> PathBuf {
    config.run_dir().join("issuer.pid")
}

/// Where the issuer process logs.
pub fn log_file(config: &StackConfig) -> PathBuf {
    config.logs_dir().join("issuer.log")
}

/// The issuer's PID, when it runs.
pub fn pid(config: &StackConfig) -> Option<i32> {
    process::running_pid(&pid_file(config), SERVE_COMMAND)
}

/// Starts the issuer unless it runs, and waits until it is healthy.
///
/// # Errors
/// The port is taken by another program, the `devstack` binary cannot be
/// built, or the issuer does not answer within 30 s.
pub async fn up(config: &StackConfig) -> Result<()> {
    start(config, || devstack_binary(None)).await
}

/// [`up`], with an issuer from a release build: one from another build is
/// replaced (keys, address and issuer identifier stay the same). For the
/// load tools, which sign in tens of thousands of fans: a debug build signs
/// about 550 tokens/s on two cores, a release build about ten times more.
///
/// # Errors
/// As [`up`].
pub async fn up_release(config: &StackConfig) -> Result<()> {
    if let Some(pid) = pid(config)
        && program_of(pid).is_none_or(|program| built_as(&program) != "release")
    {
        // Built before the old issuer stops, so tokens are unavailable only
        // while the new one starts.
        let binary = devstack_binary(Some("release"))?;
        down(config);
        return start(config, || Ok(binary)).await;
    }
    start(config, || devstack_binary(Some("release"))).await
}

/// Starts the issuer, unless it runs, from the `devstack` binary that
/// `binary` finds (called only then), and waits until it is healthy.
async fn start(config: &StackConfig, binary: impl FnOnce() -> Result<PathBuf>) -> Result<()> {
    let started = match pid(config) {
        Some(pid) => pid,
        None => {
            if process::port_open(config.issuer_port) {
                bail!(
                    "port {} is taken by a process devstack did not start; set DEVSTACK_ISSUER_PORT",
                    config.issuer_port
                );
            }
            let mut command = Command::new(binary()?);
            command
                .arg("--dir")
                .arg(&config.dir)
                .args(["--issuer-port", &config.issuer_port.to_string()])
                .arg(SERVE_COMMAND);
            process::spawn_detached(command, &log_file(config), &pid_file(config))?
        }
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match healthy(config).await {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) if !process::alive(started) => {
                bail!("the issuer exited during start")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Fetches the discovery document and checks it names this stack's issuer.
///
/// # Errors
/// Says what is wrong: no answer, a status that is not 200, or another
/// issuer identifier.
pub async fn healthy(config: &StackConfig) -> Result<()> {
    let expected = config.issuer_url();
    let url = format!("{expected}/.well-known/openid-configuration");
    let reply = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(reply.status().is_success(), "GET {url}: {}", reply.status());
    let document: serde_json::Value = reply.json().await.context("discovery document")?;
    let issuer = document["issuer"].as_str().unwrap_or_default();
    ensure!(
        issuer == expected,
        "the discovery document names issuer {issuer:?}, not {expected}"
    );
    Ok(())
}

/// Stops the issuer devstack started.
pub fn down(config: &StackConfig) -> bool {
    let stopped = pid(config).is_some_and(|pid| {
        process::stop(pid, SERVE_COMMAND, Signal::SIGTERM, Duration::from_secs(5))
    });
    let _ = std::fs::remove_file(pid_file(config));
    stopped
}

/// The `devstack` binary to serve the issuer with: this executable when it
/// is `devstack` of the wanted profile; otherwise (a test binary,
/// `loadtest`, another profile) the workspace's, built first, with the
/// running executable's profile unless `profile` names one, so an issuer
/// started by a test never runs older code than the test itself.
fn devstack_binary(profile: Option<&str>) -> Result<PathBuf> {
    let current = std::env::current_exe().context("locating this executable")?;
    let is_devstack = current.file_stem().is_some_and(|stem| stem == "devstack");
    if is_devstack && profile.is_none_or(|wanted| built_as(&current) == wanted) {
        return Ok(current);
    }
    let current_dir = profile_dir(&current).with_context(|| {
        format!(
            "{} is not in a cargo target folder; run `devstack up` first",
            current.display()
        )
    })?;
    let folder = profile.map_or_else(|| built_as(&current), str::to_owned);
    // cargo's `dev` and `test` profiles build into `debug/`.
    let cargo_profile = if folder == "debug" { "dev" } else { &folder };
    let status = Command::new("cargo")
        .current_dir(crate::workspace_root())
        .args(["build", "-q", "-p", "devstack", "--bin", "devstack"])
        .args(["--profile", cargo_profile])
        .status()
        .context("running cargo build -p devstack")?;
    ensure!(status.success(), "cargo build -p devstack failed");
    let binary = current_dir.with_file_name(&folder).join("devstack");
    ensure!(binary.is_file(), "no {} after the build", binary.display());
    Ok(binary)
}

/// `target/<profile>` of an executable in `target/<profile>/` or (tests)
/// `target/<profile>/deps/`.
fn profile_dir(executable: &Path) -> Option<PathBuf> {
    let dir = executable.parent()?;
    let dir = if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent()?
    } else {
        dir
    };
    Some(dir.to_path_buf())
}

/// The name of the profile folder `executable` was built into (`debug`,
/// `release`, …); `debug` when it is not in one.
fn built_as(executable: &Path) -> String {
    profile_dir(executable)
        .and_then(|dir| Some(dir.file_name()?.to_str()?.to_owned()))
        .unwrap_or_else(|| "debug".to_owned())
}

/// The program process `pid` runs (the first word of its command line).
fn program_of(pid: i32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|byte| *byte == 0).next()?;
    Some(PathBuf::from(String::from_utf8_lossy(first).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_binaries_find_the_profile_folder_above_deps() {
        assert_eq!(
            profile_dir(Path::new("/w/target/debug/deps/queue_service-0123abcd")),
            Some(PathBuf::from("/w/target/debug"))
        );
        assert_eq!(
            profile_dir(Path::new("/w/target/release/loadtest")),
            Some(PathBuf::from("/w/target/release"))
        );
    }

    #[test]
    fn the_profile_of_an_executable_is_its_target_folder() {
        assert_eq!(built_as(Path::new("/w/target/release/devstack")), "release");
        assert_eq!(built_as(Path::new("/w/target/debug/deps/t-01")), "debug");
    }
}
