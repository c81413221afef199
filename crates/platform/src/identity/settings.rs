//! The `[identity]` settings section and its rules.

use std::{net::IpAddr, str::FromStr, time::Duration};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use reqwest::Url;
use serde::Deserialize;

use crate::settings::SettingsError;

/// Largest accepted [`IdentitySettings::leeway_seconds`]. Leeway exists for
/// clock skew between the provider and us; minutes of it would quietly
/// extend every token's life.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// Where fan identity tokens come from and how they are checked (the
/// `[identity]` section of a service's settings).
///
/// Every duration is in the unit its name ends with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdentitySettings {
    /// The OIDC provider's issuer identifier, e.g. `https://id.example.com`.
    /// Tokens must carry exactly this `iss` (RFC 7519 §4.1.1), and discovery
    /// reads `{issuer}/.well-known/openid-configuration` (OpenID Connect
    /// Discovery 1.0 §4). `https` is required, except plain `http` on a
    /// loopback host for the local issuer.
    pub issuer: String,
    /// The `aud` value this service accepts, normally the client id the
    /// provider issued to onsale (RFC 7519 §4.1.3).
    pub audience: String,
    /// Where to fetch the JWK Set; when absent, the `jwks_uri` of the
    /// discovery document is used. Same scheme rules as `issuer`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most
    /// [`MAX_LEEWAY_SECONDS`]).
    #[serde(default = "defaults::leeway_seconds")]
    pub leeway_seconds: u64,
    /// JWS `alg` values accepted (RFC 7518 §3.1 names). Only public-key
    /// algorithms may be listed: `none` and the `HS*` family are refused by
    /// [`IdentitySettings::validate`], because a verifier holding only
    /// public keys must never accept a MAC or an unsigned token.
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<String>,
    /// Least time between two JWK Set fetches, in ms. Tokens with an unknown
    /// `kid` trigger a fetch; this bounds how hard forged `kid`s can make us
    /// hit the provider.
    #[serde(default = "defaults::jwks_refresh_min_interval_ms")]
    pub jwks_refresh_min_interval_ms: u64,
    /// How long a fetched JWK Set is used before it is fetched again, in
    /// seconds, so keys the provider withdraws stop being accepted. A failed
    /// refetch keeps the old keys.
    #[serde(default = "defaults::jwks_cache_ttl_seconds")]
    pub jwks_cache_ttl_seconds: u64,
    /// Timeout of one discovery or JWK Set request, in ms.
    #[serde(default = "defaults::http_timeout_ms")]
    pub http_timeout_ms: u64,
}

mod defaults {
    pub(super) fn leeway_seconds() -> u64 {
        30
    }
    pub(super) fn algorithms() -> Vec<String> {
        vec!["RS256".into(), "ES256".into()]
    }
    pub(super) fn jwks_refresh_min_interval_ms() -> u64 {
        10_000
    }
    pub(super) fn jwks_cache_ttl_seconds() -> u64 {
        300
    }
    pub(super) fn http_timeout_ms() -> u64 {
        5_000
    }
}

impl IdentitySettings {
    /// Settings for `issuer` and `audience` with every other field at its
    /// default.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            leeway_seconds: defaults::leeway_seconds(),
            algorithms: defaults::algorithms(),
            jwks_refresh_min_interval_ms: defaults::jwks_refresh_min_interval_ms(),
            jwks_cache_ttl_seconds: defaults::jwks_cache_ttl_seconds(),
            http_timeout_ms: defaults::http_timeout_ms(),
        }
    }

    /// Checks the rules serde cannot express: URL schemes, a non-empty
    /// audience, a small leeway, non-zero durations, and an allow-list of
    /// known public-key algorithms only.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the field and the broken rule.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |msg: String| Err(SettingsError::Invalid(msg));
        check_url("identity.issuer", &self.issuer)?;
        if let Some(url) = &self.jwks_url {
            check_url("identity.jwks_url", url)?;
        }
        if self.audience.trim().is_empty() {
            return invalid("identity.audience must not be empty".into());
        }
        if self.leeway_seconds > MAX_LEEWAY_SECONDS {
            return invalid(format!(
                "identity.leeway_seconds is {}, at most {MAX_LEEWAY_SECONDS} is allowed",
                self.leeway_seconds
            ));
        }
        if self.http_timeout_ms == 0 || self.jwks_cache_ttl_seconds == 0 {
            return invalid(
                "identity.http_timeout_ms and identity.jwks_cache_ttl_seconds must be positive"
                    .into(),
            );
        }
        self.allowed_algorithms().map(|_| ())
    }

    /// The parsed allow-list.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] when it is empty or names `none`, an `HS*`
    /// algorithm or an unknown one.
    pub fn allowed_algorithms(&self) -> Result<Vec<Algorithm>, SettingsError> {
        if self.algorithms.is_empty() {
            return Err(SettingsError::Invalid(
                "identity.algorithms must list at least one algorithm".into(),
            ));
        }
        self.algorithms
            .iter()
            .map(|name| match Algorithm::from_str(name) {
                Ok(alg) if alg.family() != AlgorithmFamily::Hmac => Ok(alg),
                Ok(_) => Err(SettingsError::Invalid(format!(
                    "identity.algorithms: {name} is a shared-secret MAC; identity tokens \
                     must be signed with a public-key algorithm (RS*, PS*, ES*, EdDSA)"
                ))),
                Err(_) if name.eq_ignore_ascii_case("none") => Err(SettingsError::Invalid(
                    "identity.algorithms: `none` (unsigned tokens) is never accepted".into(),
                )),
                Err(_) => Err(SettingsError::Invalid(format!(
                    "identity.algorithms: unknown algorithm {name:?}"
                ))),
            })
            .collect()
    }

    /// [`Self::jwks_refresh_min_interval_ms`] as a duration.
    #[must_use]
    pub fn jwks_refresh_min_interval(&self) -> Duration {
        Duration::from_millis(self.jwks_refresh_min_interval_ms)
    }

    /// [`Self::jwks_cache_ttl_seconds`] as a duration.
    #[must_use]
    pub fn jwks_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.jwks_cache_ttl_seconds)
    }

    /// [`Self::http_timeout_ms`] as a duration.
    #[must_use]
    pub fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms)
    }
}

/// An `https` URL, or `http` on a loopback host (the local issuer), without
/// query or fragment (OpenID Connect Discovery 1.0 §2 forbids both in an
/// issuer). Used for settings and for the discovered `jwks_uri`.
pub(super) fn check_url(field: &str, raw: &str) -> Result<Url, SettingsError> {
    let invalid = |why: &str| SettingsError::Invalid(format!("{field} {raw:?} {why}"));
    let url = Url::parse(raw).map_err(|_| invalid("is not a URL"))?;
    let host = url.host_str().ok_or_else(|| invalid("has no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err(invalid("must use https (plain http only on loopback)")),
        _ => return Err(invalid("must be an https URL")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(url)
}
