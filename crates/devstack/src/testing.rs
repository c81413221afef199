//! Test support: every integration test in the workspace finds the stack
//! here, and gets state nobody else touches.
//!
//! [`stack`] uses the `ONSALE__REDIS__URLS`, `ONSALE__DATABASE__URL` and
//! `ONSALE__KAFKA__BROKERS` variables when all three are set (the README's
//! test command sets them, and so can anyone with their own Redis Cluster,
//! Postgres or Kafka). Otherwise it brings the devstack up itself, once per
//! machine, under the stack's file lock.
//!
//! Identity: fans are identified by tokens of the stack's local OIDC issuer
//! ([`issuer_url`], [`identity_token`]), which [`stack`] keeps running even
//! when the stores come from the environment.
//!
//! Isolation: [`fresh_database`] for Postgres, [`unique_suffix`] for Redis
//! key prefixes and Kafka topic suffixes, [`create_topics`] for those topics.
//!
//! TLS: [`tls_stack`] brings the TLS-only stack up beside the plain one
//! (once per machine, under the same lock) for the tests of the services'
//! TLS settings.
//!
//! Outages: [`PrivateRedisNode`] is a one-node Redis Cluster a test may
//! stop and restart under a running service.
//!
//! Tools: [`python_tool`] installs pinned PyPI packages (schemathesis,
//! checkov, …) once per machine, in a virtualenv of their own.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

use crate::{Endpoints, StackConfig, issuer, stack};

mod postgres_server;
mod redis_node;
pub use postgres_server::PrivatePostgres;
pub use redis_node::PrivateRedisNode;

/// The stack's endpoints, bringing the stack up when no variables name one.
///
/// Blocks (it may start processes); safe to call from inside a Tokio runtime.
///
/// # Panics
/// When the stack cannot be brought up: every integration test needs it.
pub fn stack() -> &'static Endpoints {
    static STACK: OnceLock<Endpoints> = OnceLock::new();
    STACK.get_or_init(|| {
        // A runtime cannot block inside another runtime, so bring the stack
        // up on a thread of its own.
        std::thread::spawn(|| {
            let config = StackConfig::default();
            match from_env() {
                // Stores of the caller's own; identity tokens still come
                // from the stack's issuer unless the variables name another.
                Some(endpoints) if endpoints.issuer_url == config.issuer_url() => {
                    stack::block_locked(&config, stack::up_issuer(&config)).map(|()| endpoints)
                }
                Some(endpoints) => Ok(endpoints),
                None => stack::up_locked(&config),
            }
        })
        .join()
        .expect("devstack thread panicked")
        .unwrap_or_else(|error| panic!("bringing the devstack up failed: {error:#}"))
    })
}

/// The TLS-only stack beside [`stack`] ([`crate::tls`]): `rediss://`
/// Redis, Postgres taking `hostssl` only, and the certificates. Brings it
/// up when it is not running; blocks, as [`stack`].
///
/// # Panics
/// When the TLS stack cannot be brought up.
pub fn tls_stack() -> &'static crate::tls::TlsEndpoints {
    static TLS: OnceLock<crate::tls::TlsEndpoints> = OnceLock::new();
    TLS.get_or_init(|| {
        std::thread::spawn(|| crate::tls::up_locked(&StackConfig::default()))
            .join()
            .expect("devstack thread panicked")
            .unwrap_or_else(|error| panic!("bringing the TLS stack up failed: {error:#}"))
    })
}

/// The issuer identifier the services under test trust
/// (`identity.issuer`): `ONSALE__IDENTITY__ISSUER` when set, else the
/// stack's local issuer, e.g. `http://127.0.0.1:8090`. Tokens are for
/// [`issuer::DEFAULT_AUDIENCE`].
///
/// # Panics
/// As [`stack`].
pub fn issuer_url() -> &'static str {
    &stack().issuer_url
}

/// A fresh identity token for the fan `sub`, valid for an hour, for the
/// audience `onsale`: what a signed-in fan sends as `Authorization: Bearer
/// …`. Signed with the stack's issuer keys (in its state folder), so it
/// verifies against [`issuer_url`]'s JWK Set when that is the stack's
/// issuer.
///
/// # Panics
/// As [`identity_token_with`].
pub fn identity_token(sub: &str) -> String {
    identity_token_with(sub, issuer::DEFAULT_TTL_SECONDS, issuer::DEFAULT_AUDIENCE)
}

/// [`identity_token`] with its own lifetime (seconds, 1 up to
/// [`issuer::MAX_TTL_SECONDS`]) and audience, for tests of tokens the
/// services must refuse (another audience) or that expire soon.
///
/// # Panics
/// When `sub` or `audience` is empty, the lifetime is out of range, or the
/// issuer keys cannot be read or created.
pub fn identity_token_with(sub: &str, ttl_seconds: u64, audience: &str) -> String {
    let url = issuer_url();
    issuer::mint_from_state_dir(
        &issuer::dir(&StackConfig::default()),
        url,
        sub,
        ttl_seconds,
        audience,
    )
    .unwrap_or_else(|error| panic!("minting an identity token for {sub:?} failed: {error:#}"))
}

fn from_env() -> Option<Endpoints> {
    let redis = std::env::var("ONSALE__REDIS__URLS").ok()?;
    Some(Endpoints {
        redis_urls: redis
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        database_url: std::env::var("ONSALE__DATABASE__URL").ok()?,
        kafka_brokers: std::env::var("ONSALE__KAFKA__BROKERS").ok()?,
        issuer_url: std::env::var("ONSALE__IDENTITY__ISSUER")
            .unwrap_or_else(|_| StackConfig::default().issuer_url()),
    })
}

/// A short string unique to this call (`t` + 12 hex digits), for Redis key
/// prefixes, Kafka topic suffixes and consumer group ids.
pub fn unique_suffix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').unwrap_or((base, ""));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Creates an empty database with a unique name on the stack's Postgres
/// server and returns its URL.
///
/// # Panics
/// When the server refuses: the test cannot run without it.
pub async fn fresh_database() -> String {
    create_database(&stack().database_url)
        .await
        .unwrap_or_else(|error| panic!("creating a test database failed: {error:#}"))
}

/// Creates an empty database named `test_<unique suffix>` on the server of
/// `admin_url` and returns its URL.
///
/// # Errors
/// When the server is unreachable or refuses.
pub async fn create_database(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("test_{}", unique_suffix());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to postgres")?;
    // Identifiers cannot be bound; `name` is generated from hex digits.
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    Ok(with_database(admin_url, &name))
}

/// Creates Kafka topics (with `partitions` each) on the stack's broker;
/// existing ones are kept.
///
/// # Panics
/// When the broker refuses.
pub async fn create_topics(topics: &[&str], partitions: i32) {
    crate::kafka::create_topics(&stack().kafka_brokers, topics, partitions)
        .await
        .unwrap_or_else(|error| panic!("creating topics {topics:?} failed: {error:#}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5433/core", "t1"),
            "postgres://u:p@h:5433/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/core?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
    }

    #[test]
    fn unique_suffixes_differ() {
        assert_ne!(unique_suffix(), unique_suffix());
        assert_eq!(unique_suffix().len(), 13);
    }
}

/// A Tansu broker of a test's own, on a free port, for failure tests that
/// must stop a broker without disturbing tests running beside them. Killed
/// on drop.
#[derive(Debug)]
pub struct PrivateBroker {
    /// `bootstrap.servers` of this broker.
    pub brokers: String,
    child: std::process::Child,
}

impl PrivateBroker {
    /// Starts a broker and creates `topics` with `partitions` each.
    ///
    /// # Panics
    /// When tansu is missing or does not start within 30 s.
    pub async fn start(topics: &[&str], partitions: i32) -> Self {
        let tansu = crate::install::ensure_tansu().expect("tansu is installed by devstack");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting a private tansu");
        let broker = Self {
            brokers: format!("127.0.0.1:{port}"),
            child,
        };
        for _ in 0..150 {
            if crate::process::port_open(port) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        crate::kafka::create_topics(&broker.brokers, topics, partitions)
            .await
            .unwrap_or_else(|error| {
                panic!("creating topics on the private broker failed: {error:#}")
            });
        broker
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is
    /// answered, like a broker that hangs.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        nix::sys::signal::kill(pid, signal).expect("signalling the private broker");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response read whole, for assertions: status, headers and the
/// JSON body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Response status.
    pub status: reqwest::StatusCode,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed JSON body.
    pub body: serde_json::Value,
}

impl Reply {
    /// Reads `response` whole.
    ///
    /// # Panics
    /// When the body cannot be read: the test cannot go on without it.
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("reading the response body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        Self {
            status,
            headers,
            body,
        }
    }

    /// Sends `request` and reads the response whole.
    ///
    /// # Panics
    /// When the request gets no response.
    pub async fn send(request: reqwest::RequestBuilder) -> Self {
        Self::from(request.send().await.expect("sending the request")).await
    }

    /// The RFC 9457 problem's stable `code`, or `""`.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// True when the body is `application/problem+json`.
    pub fn is_problem(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json")
    }
}

/// Creates the stack's topics (and their `.dlq`) with a fresh suffix on the
/// stack's broker and returns the suffix (e.g. `.t1a2b3c4d5e6f`), for
/// `ONSALE__KAFKA__TOPIC_SUFFIX` and `ONSALE__KAFKA__GROUP_PREFIX`, so that a
/// test's services never consume another test's events.
///
/// # Panics
/// When the broker refuses.
pub async fn isolated_topics() -> String {
    isolated_topics_on(&stack().kafka_brokers)
        .await
        .unwrap_or_else(|error| panic!("creating isolated topics failed: {error:#}"))
}

/// [`isolated_topics`] on the broker at `brokers`.
///
/// # Errors
/// When the broker refuses.
pub async fn isolated_topics_on(brokers: &str) -> anyhow::Result<String> {
    let suffix = format!(".{}", unique_suffix());
    // The consumer runtime dead-letters `<topic><suffix>` to
    // `<topic><suffix>.dlq`.
    let names: Vec<String> = crate::TOPICS
        .iter()
        .flat_map(|t| [format!("{t}{suffix}"), format!("{t}{suffix}.dlq")])
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::kafka::create_topics(brokers, &refs, crate::kafka::PARTITIONS).await?;
    Ok(suffix)
}

/// The Python of a virtualenv holding exactly `requirements` (pinned pip
/// requirements such as `"checkov==3.3.30"`), made with `python3 -m venv`
/// and `pip install` when missing. `name` names the tool in messages.
///
/// The virtualenv lives in `venvs/` under the devstack state folder
/// ([`StackConfig::dir`]), in a folder named after the requirements
/// (`schemathesis==4.32.5` installs into `schemathesis-4.32.5`), so a new
/// pin installs beside the old one. It is built in a staging folder and
/// renamed into place, so a test binary running beside this one never sees
/// half an install. Scripts in `bin/` keep the staging path in their
/// shebang lines: start the tool as `python -m <module>`.
///
/// # Panics
/// When `requirements` is empty, or the virtualenv or the install fails
/// (the message has pip's output).
pub async fn python_tool(name: &str, requirements: &[&str]) -> PathBuf {
    assert!(
        !requirements.is_empty(),
        "{name}: no requirements to install"
    );
    let venvs = StackConfig::default().dir.join("venvs");
    let folder = requirements
        .iter()
        .map(|requirement| requirement.replace("==", "-"))
        .collect::<Vec<_>>()
        .join("+")
        .replace(
            |c: char| !(c.is_ascii_alphanumeric() || "+-._".contains(c)),
            "_",
        );
    let venv = venvs.join(&folder);
    let python = venv.join("bin").join("python");
    if python.exists() {
        return python;
    }
    std::fs::create_dir_all(&venvs).expect("creating the virtualenv folder");
    let staging = venvs.join(format!(".{folder}-{}", unique_suffix()));
    let mut pip_args = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    .map(OsStr::new)
    .to_vec();
    pip_args.extend(requirements.iter().map(OsStr::new));
    let venv_args = [OsStr::new("-m"), OsStr::new("venv"), staging.as_os_str()];
    let installed = match run_to_end(Path::new("python3"), &venv_args).await {
        Ok(()) => run_to_end(&staging.join("bin").join("python"), &pip_args).await,
        failed => failed,
    };
    if let Err(failure) = installed {
        let _ = std::fs::remove_dir_all(&staging);
        panic!(
            "installing {name} ({}) failed: {failure}",
            requirements.join(" ")
        );
    }
    if std::fs::rename(&staging, &venv).is_err() {
        // Another test binary got there first; its install is as good.
        let _ = std::fs::remove_dir_all(&staging);
        assert!(python.exists(), "no {name} at {}", venv.display());
    }
    python
}

/// Runs `program` with `args` to the end; what it printed unless it
/// succeeded.
async fn run_to_end(program: &Path, args: &[&OsStr]) -> Result<(), String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|error| format!("running {}: {error}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?}:\n{}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
///
/// # Panics
/// When `limit` passes first.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
