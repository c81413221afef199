//! PID files and signals.
//!
//! `down` stops only processes that `up` started: it reads their PID files
//! and checks `/proc/<pid>/cmdline` still names the expected program before
//! signalling, so a recycled PID is never killed.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Reads the first line of a PID file.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// True when `pid` is alive and its command line mentions `program`.
pub fn is_running(pid: i32, program: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(program),
        Err(_) => false,
    }
}

/// The PID in `pid_file` if that process is alive and is `program`.
pub fn running_pid(pid_file: &Path, program: &str) -> Option<i32> {
    read_pid(pid_file).filter(|pid| is_running(*pid, program))
}

/// Sends `signal`, waits up to `grace` for exit, then SIGKILLs.
///
/// Returns true if the process was running.
pub fn stop(pid: i32, program: &str, signal: Signal, grace: Duration) -> bool {
    if !is_running(pid, program) {
        return false;
    }
    let pid_t = Pid::from_raw(pid);
    let _ = kill(pid_t, signal);
    let started = Instant::now();
    while started.elapsed() < grace {
        if !is_running(pid, program) || is_zombie(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid_t, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(100));
    true
}

/// True while process `pid` exists and has not exited (not a zombie).
/// Unlike [`is_running`] it does not read the command line, which is briefly
/// empty while a freshly spawned process is still in `exec`.
pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Starts `command` in its own session (via `setsid`), detached from this
/// process, with stdout and stderr appended to `log`, and records its PID in
/// `pid_file`. The process outlives `devstack`.
pub fn spawn_detached(command: Command, log: &Path, pid_file: &Path) -> Result<i32> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = Command::new("setsid");
    wrapped.arg(&program).args(&args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    let child = wrapped
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    fs::write(pid_file, format!("{pid}\n"))?;
    // The child is reaped by init once we exit; we never wait on it.
    drop(child);
    Ok(pid)
}

/// Runs `command` to completion and fails with its output when it fails.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            command,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        .is_ok()
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} not ready after {} s", timeout.as_secs())
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
