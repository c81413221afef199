//! TLS of every connection a service opens or serves, and the production
//! rule: a plain-text link to a store (or between the services) refuses to
//! start unless its `allow_plaintext` setting says otherwise, and an allowed
//! one is logged at warn ([`warn_plaintext`]), so the choice is visible.
//!
//! The files are PEM and are read when the clients are built (at start),
//! not here: validation checks the settings' shape only, so a test can
//! validate production settings on a machine without the files.

use std::{fmt, path::PathBuf, str::FromStr};

use serde::{Deserialize, Deserializer, de};

use super::{Environment, KafkaSettings, SettingsError};

/// PEM files of one TLS link (`[redis.tls]`, `[grpc.tls]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsFiles {
    /// CA bundle the peer's certificate must chain to. Unset on a client:
    /// the system's trust store (Redis) or no TLS (gRPC needs it). On
    /// queue-service's gRPC server: when set, callers must present a client
    /// certificate chaining to it.
    pub ca_file: Option<PathBuf>,
    /// This side's certificate chain: a client certificate (Redis,
    /// core-service's gRPC calls) or the server's (queue-service's gRPC).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Checks that a certificate comes with its key and a key with its
    /// certificate; `section` names the settings in the message.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the missing half.
    pub fn validate(&self, section: &str) -> Result<(), SettingsError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(SettingsError::Invalid(format!(
                "{section}.cert_file and {section}.key_file go together"
            )));
        }
        Ok(())
    }

    /// The CA bundle's bytes, if one is named.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read_ca(&self) -> std::io::Result<Option<Vec<u8>>> {
        self.ca_file.as_ref().map(std::fs::read).transpose()
    }

    /// The certificate chain's and the key's bytes, if they are named.
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn read_identity(&self) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((std::fs::read(cert)?, std::fs::read(key)?))),
            _ => Ok(None),
        }
    }
}

/// Postgres TLS (`[database.tls]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DatabaseTls {
    /// `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`). Unset: the URL's `sslmode`, else `prefer`.
    /// Production needs `verify-ca` or `verify-full`: `require` encrypts
    /// but accepts any server.
    pub mode: Option<PgTlsMode>,
    /// CA bundle the server's certificate must chain to (`sslrootcert`).
    pub ca_file: Option<PathBuf>,
}

/// Postgres `sslmode`, as libpq names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified (libpq's default).
    Prefer,
    /// TLS always, the server not verified.
    Require,
    /// TLS, the server's chain verified against the CA.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl PgTlsMode {
    /// The libpq name, e.g. `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl FromStr for PgTlsMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value.to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return Err(format!("unknown sslmode {value:?}")),
        })
    }
}

/// Kafka `security.protocol` (SASL is not supported: MSK is reached from
/// the services' security group only and takes TLS without client auth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaSecurityProtocol {
    /// No TLS (the local broker).
    #[default]
    Plaintext,
    /// TLS, the brokers' certificates and host names verified.
    Ssl,
}

impl FromStr for KafkaSecurityProtocol {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            _ => Err(format!(
                "kafka.security_protocol must be plaintext or ssl, not {value:?}"
            )),
        }
    }
}

/// Deserializes any [`FromStr`] type from a string, case-insensitively
/// where its `FromStr` is.
fn from_str<'de, D: Deserializer<'de>, T: FromStr<Err = String>>(d: D) -> Result<T, D::Error> {
    String::deserialize(d)?.parse().map_err(de::Error::custom)
}

impl<'de> Deserialize<'de> for PgTlsMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

impl<'de> Deserialize<'de> for KafkaSecurityProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str(d)
    }
}

impl KafkaSettings {
    /// The plain-text link, if `security_protocol` is `plaintext`.
    pub fn plaintext(&self) -> Option<Plaintext> {
        (self.security_protocol == KafkaSecurityProtocol::Plaintext).then(|| Plaintext {
            link: "kafka.security_protocol is plaintext".into(),
            flag: "ONSALE__KAFKA__ALLOW_PLAINTEXT",
            allowed: self.allow_plaintext,
        })
    }

    /// What a Kafka client needs to connect, as librdkafka properties:
    /// `bootstrap.servers` and, with TLS, `security.protocol` and
    /// `ssl.ca.location`.
    pub fn client_properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = vec![("bootstrap.servers", self.brokers.clone())];
        if self.security_protocol == KafkaSecurityProtocol::Ssl {
            properties.push(("security.protocol", "ssl".into()));
            // librdkafka checks host names by default
            // (`ssl.endpoint.identification.algorithm=https`).
            let ca =
                (self.ssl_ca_file.as_ref()).map_or("probe".into(), |p| p.display().to_string());
            properties.push(("ssl.ca.location", ca));
        }
        properties
    }
}

/// gRPC between the services (`[grpc]`): TLS beside the service
/// credential. queue-service serves with `tls.cert_file`/`key_file` (and
/// with `tls.ca_file`, requires client certificates chaining to it);
/// core-service calls an `https://` URL trusting `tls.ca_file`, presenting
/// `tls.cert_file`/`key_file` when set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrpcSettings {
    /// The PEM files (`[grpc.tls]`).
    #[serde(default)]
    pub tls: TlsFiles,
    /// Lets production serve or call gRPC without TLS (logged at warn).
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// A link that would carry data in plain text, and whether a setting
/// allows that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// What is plain, e.g. `redis.urls use redis://`.
    pub link: String,
    /// The variable that allows it, e.g. `ONSALE__REDIS__ALLOW_PLAINTEXT`.
    pub flag: &'static str,
    /// Whether that variable (or a settings file) says `true`.
    pub allowed: bool,
}

impl fmt::Display for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (set {}=true to allow it)", self.link, self.flag)
    }
}

/// In production, refuses the first plain-text link no setting allows.
///
/// # Errors
/// [`SettingsError::Invalid`] naming the link and the flag that allows it.
pub fn refuse_plaintext(
    environment: Environment,
    links: impl IntoIterator<Item = Plaintext>,
) -> Result<(), SettingsError> {
    if environment != Environment::Production {
        return Ok(());
    }
    match links.into_iter().find(|link| !link.allowed) {
        Some(link) => Err(SettingsError::Invalid(format!(
            "production refuses plain-text connections: {link}"
        ))),
        None => Ok(()),
    }
}

/// In production, logs every allowed plain-text link at warn. Call it once
/// logging is set up (settings are loaded before).
pub fn warn_plaintext(environment: Environment, links: impl IntoIterator<Item = Plaintext>) {
    if environment != Environment::Production {
        return;
    }
    for link in links.into_iter().filter(|link| link.allowed) {
        tracing::warn!(
            link = %link.link,
            allowed_by = link.flag,
            "plain-text connection allowed in production"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(allowed: bool) -> Plaintext {
        Plaintext {
            link: "redis.urls use redis://".into(),
            flag: "ONSALE__REDIS__ALLOW_PLAINTEXT",
            allowed,
        }
    }

    #[test]
    fn production_refuses_a_plain_link_unless_its_flag_allows_it() {
        let error = refuse_plaintext(Environment::Production, [link(false)]).unwrap_err();
        assert!(
            error.to_string().contains("ONSALE__REDIS__ALLOW_PLAINTEXT"),
            "{error}"
        );
        assert!(refuse_plaintext(Environment::Production, [link(true)]).is_ok());
        assert!(refuse_plaintext(Environment::Local, [link(false)]).is_ok());
    }

    #[test]
    fn modes_and_protocols_parse_in_any_case() {
        assert_eq!("VERIFY-FULL".parse(), Ok(PgTlsMode::VerifyFull));
        assert_eq!("SSL".parse(), Ok(KafkaSecurityProtocol::Ssl));
        assert!("tls".parse::<KafkaSecurityProtocol>().is_err());
        assert!("verify".parse::<PgTlsMode>().is_err());
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let files = TlsFiles {
            cert_file: Some("/c.pem".into()),
            ..TlsFiles::default()
        };
        assert!(files.validate("redis.tls").is_err());
        assert!(TlsFiles::default().validate("redis.tls").is_ok());
    }
}
