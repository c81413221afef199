//! `devstack up --tls`: a second stack beside the plain one, taking TLS
//! only, so the normal suite keeps its ports and the TLS tests start this
//! one by themselves ([`crate::testing::tls_stack`]).
//!
//! - A throw-away CA and certificates made with rcgen in `<dir>/tls/certs/`
//!   ([`Certs`]): the servers' certificate names the IP address 127.0.0.1
//!   only (so `localhost` is a host name it does not cover), a client
//!   certificate, and a second CA that signed nothing, for tests that a
//!   client refuses a server it cannot verify.
//! - A Redis Cluster on ports `redis_port + 100 ..` (7100–7105), TLS only,
//!   cluster bus and replication included.
//! - Postgres on `postgres_port + 1` (5434) with `ssl=on` and `hostssl`
//!   lines only.
//!
//! No Kafka broker: Tansu 0.6 lists `--cert` and `--key` options, but its
//! command line refuses them together, and with `--cert` alone (certificate
//! and key in one file) its listener completed no TLS handshake
//! (docs/tls.md). The Kafka client's TLS settings are tested against the
//! TLS Redis port instead, a TLS-only endpoint whose certificate the wrong
//! CA did not sign.
//!
//! State lives in `<dir>/tls/` (logs in `<dir>/tls/logs/`); the local
//! issuer is the plain stack's.

use std::{fs, path::PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde::Serialize;

use crate::{StackConfig, postgres, redis, stack};

/// How far the TLS stack's Redis ports are from the plain stack's.
pub const REDIS_PORT_OFFSET: u16 = 100;

/// The PEM files of the TLS stack.
#[derive(Debug, Clone, Serialize)]
pub struct Certs {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Every server's certificate (IP address 127.0.0.1 only).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A client certificate signed by [`Certs::ca`].
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting it instead of [`Certs::ca`]
    /// must fail every handshake.
    pub wrong_ca: PathBuf,
}

impl Certs {
    /// The files in `dir`.
    fn in_dir(dir: &std::path::Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            wrong_ca: dir.join("wrong-ca.pem"),
        }
    }

    /// Creates the files in `dir` unless they all exist.
    ///
    /// # Errors
    /// When generating or writing fails.
    pub fn ensure(dir: &std::path::Path) -> Result<Self> {
        let certs = Self::in_dir(dir);
        let all = [
            &certs.ca,
            &certs.server_cert,
            &certs.server_key,
            &certs.client_cert,
            &certs.client_key,
            &certs.wrong_ca,
        ];
        if all.iter().all(|path| path.is_file()) {
            return Ok(certs);
        }
        fs::create_dir_all(dir)?;
        let (ca_pem, issuer) = ca("onsale devstack CA")?;
        let (wrong_pem, _) = ca("onsale devstack wrong CA")?;
        let (server_pem, server_key) = leaf(&issuer, "127.0.0.1", vec!["127.0.0.1".into()])?;
        let (client_pem, client_key) = leaf(&issuer, "onsale-client", vec![])?;
        for (path, text) in [
            (&certs.ca, ca_pem),
            (&certs.wrong_ca, wrong_pem),
            (&certs.server_cert, server_pem),
            (&certs.server_key, server_key),
            (&certs.client_cert, client_pem),
            (&certs.client_key, client_key),
        ] {
            fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(certs)
    }
}

/// A self-signed CA: its certificate (PEM) and an issuer to sign with.
fn ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A certificate for `names` signed by `issuer`: (certificate, key) PEM.
fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, names: Vec<String>) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The TLS stack's ports and folder, derived from the plain stack's.
pub fn config(base: &StackConfig) -> StackConfig {
    StackConfig {
        dir: base.dir.join("tls"),
        redis_port: base.redis_port + REDIS_PORT_OFFSET,
        postgres_port: base.postgres_port + 1,
        // No TLS broker (see the module docs): the plain one's port.
        kafka_port: base.kafka_port,
        issuer_port: base.issuer_port,
    }
}

/// How services and tests reach the TLS stack.
#[derive(Debug, Clone, Serialize)]
pub struct TlsEndpoints {
    /// `rediss://` seed URLs (the masters).
    pub redis_urls: Vec<String>,
    /// The core database's URL, without `sslmode` (set it with
    /// `ONSALE__DATABASE__TLS__MODE`).
    pub database_url: String,
    /// The files.
    pub certs: Certs,
}

impl TlsEndpoints {
    /// The endpoints of the TLS stack beside `base`.
    pub fn of(base: &StackConfig) -> Self {
        let config = config(base);
        Self {
            redis_urls: (0..3)
                .map(|i| format!("rediss://127.0.0.1:{}", config.redis_port + i))
                .collect(),
            database_url: postgres::database_url(&config, postgres::CORE_DATABASE),
            certs: Certs::in_dir(&config.dir.join("certs")),
        }
    }

    /// The `ONSALE__…` variables that point the services at the TLS stores,
    /// verifying every server against the stack's CA.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        let ca = self.certs.ca.display().to_string();
        vec![
            ("ONSALE__REDIS__URLS", self.redis_urls.join(",")),
            ("ONSALE__REDIS__TLS__CA_FILE", ca.clone()),
            ("ONSALE__DATABASE__URL", self.database_url.clone()),
            ("ONSALE__DATABASE__TLS__MODE", "verify-full".into()),
            ("ONSALE__DATABASE__TLS__CA_FILE", ca),
        ]
    }
}

/// Brings the TLS stack up beside `base` (idempotent) under the stack's
/// file lock, and returns its endpoints. Blocks, as
/// [`stack::up_locked`].
///
/// # Errors
/// The first component that failed, with its log's location.
pub fn up_locked(base: &StackConfig) -> Result<TlsEndpoints> {
    let config = config(base);
    stack::block_locked(base, async {
        fs::create_dir_all(config.logs_dir())?;
        fs::create_dir_all(config.run_dir())?;
        let certs = Certs::ensure(&config.dir.join("certs"))?;
        let logs = config.logs_dir();
        redis::up_with(&config, Some(&certs))
            .map_err(|e| e.context(format!("tls redis cluster (logs in {})", logs.display())))?;
        postgres::up_with(&config, Some(&certs))
            .await
            .map_err(|e| {
                e.context(format!(
                    "tls postgres (log: {})",
                    postgres::root(&config).join("postgres.log").display()
                ))
            })?;
        Ok(TlsEndpoints::of(base))
    })
}

/// [`up_locked`] from async code.
///
/// # Errors
/// As [`up_locked`].
pub async fn up_exclusive(base: &StackConfig) -> Result<TlsEndpoints> {
    let base = base.clone();
    tokio::task::spawn_blocking(move || up_locked(&base)).await?
}

/// Stops the TLS stack's processes (by recorded PID); with `purge` deletes
/// its data. Returns how many processes were stopped.
pub fn down(base: &StackConfig, purge: bool) -> usize {
    let config = config(base);
    let mut stopped = redis::down(&config);
    stopped += usize::from(postgres::down(&config));
    if purge {
        postgres::purge(&config);
        let _ = fs::remove_dir_all(&config.dir);
    }
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_stack_keeps_clear_of_the_plain_stacks_ports_and_folder() {
        let base = StackConfig::default();
        let tls = config(&base);
        assert_eq!(tls.redis_port, base.redis_port + 100);
        assert_ne!(tls.postgres_port, base.postgres_port);
        assert!(tls.dir.starts_with(&base.dir) && tls.dir != base.dir);
        let vars = TlsEndpoints::of(&base).env_vars();
        assert!(
            vars.iter()
                .any(|(k, v)| *k == "ONSALE__REDIS__URLS" && v.starts_with("rediss://"))
        );
    }
}
