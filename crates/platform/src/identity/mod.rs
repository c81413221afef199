//! Fan identity: verifying the OpenID Connect identity tokens that fans
//! present as `Authorization: Bearer <token>`.
//!
//! A token is a JWT (RFC 7519) in JWS compact form (RFC 7515), signed by the
//! provider with a public-key algorithm. [`IdentityVerifier::verify`]
//! accepts it only when
//! - its `alg` is in [`IdentitySettings::algorithms`] (never `none` or
//!   `HS*`) and fits the published key it names: the key's `alg`, when
//!   given, is the same, and its `kty`/`crv` belong to that algorithm, which
//!   rules out algorithm-confusion forgeries;
//! - the signature verifies against the key of the token's `kid` in the
//!   provider's JWK Set (RFC 7517), found through OpenID Connect Discovery
//!   1.0 unless [`IdentitySettings::jwks_url`] names it;
//! - `iss` equals the issuer, `aud` contains the audience, `exp` is not
//!   past and `nbf` (when present) not ahead, both with the leeway
//!   (RFC 7519 §4.1);
//! - `sub` is a valid [`UserId`].
//!
//! Signature checks are done by the `jsonwebtoken` crate; this module only
//! picks the key and the rules. The JWK Set is cached; a token naming an
//! unknown `kid` makes one rate-limited, single-flight refetch, so the
//! provider can rotate keys without restarting the services.
//!
//! A verified token is remembered by its SHA-256 until it expires, for as
//! long as the key set it was checked against is the current one and within
//! its TTL, because a waiting fan presents the same token on every poll: a
//! hit costs a hash and a lookup instead of a signature check, and a key the
//! provider withdraws stops working at the same time as without the cache.
//!
//! [`http`] puts identity on axum routes ([`authenticate`], [`Fan`],
//! [`protect`]).

pub(crate) mod http;
mod jwks;
mod settings;

pub use self::http::{Fan, authenticate, protect, rejection};

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::http::StatusCode;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use self::settings::{IdentitySettings, MAX_LEEWAY_SECONDS};
use crate::{
    id::{UserId, UserIdError},
    settings::SettingsError,
};

/// A fan, as a verified identity token describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`: the provider's stable id of the fan.
    pub subject: UserId,
    /// The token's `exp`. Verification already refused expired tokens; a
    /// session derived from this identity should not outlive it.
    pub expires_at: SystemTime,
    /// The token's `iat`, when present.
    pub issued_at: Option<SystemTime>,
}

/// Why a token was refused. Every variant but [`IdentityError::Unavailable`]
/// is the client's problem (401, see [`IdentityError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No token was presented.
    #[error("no identity token")]
    Missing,
    /// Not a well-formed JWS-compact JWT, or a claim has the wrong type or
    /// is missing (`exp`, `iss`, `aud` and `sub` are required).
    #[error("malformed identity token: {0}")]
    Malformed(String),
    /// The signature does not verify with the key the token names.
    #[error("identity token signature is invalid")]
    BadSignature,
    /// `exp` is past, beyond the leeway.
    #[error("identity token has expired")]
    Expired,
    /// `nbf` is ahead, beyond the leeway.
    #[error("identity token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("identity token is from another issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("identity token is meant for another audience")]
    WrongAudience,
    /// The header's `alg` (named here) is not allowed, or does not fit the
    /// published key the token names.
    #[error("identity token algorithm refused: {0}")]
    DisallowedAlgorithm(String),
    /// The provider publishes no key with the token's `kid` (`None`: the
    /// token has no `kid` and the set holds several keys), even after a
    /// refetch.
    #[error("identity token signed with an unknown key {0:?}")]
    UnknownKid(Option<String>),
    /// `sub` is not a valid [`UserId`].
    #[error("identity token subject is not a valid user id: {0}")]
    InvalidSubject(UserIdError),
    /// The provider's keys could not be fetched and none are cached, so
    /// no token can be checked; the reason is for logs, not for clients.
    #[error("identity provider keys unavailable: {0}")]
    Unavailable(String),
}

impl IdentityError {
    /// The HTTP status to answer: 503 for [`IdentityError::Unavailable`],
    /// 401 for everything else.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Verifies identity tokens for one issuer and audience. Cheap to clone
/// (an `Arc` inside); clones share the key cache.
#[derive(Debug, Clone)]
pub struct IdentityVerifier {
    inner: Arc<Inner>,
}

/// Longest an unused verified token is remembered, in seconds (memory
/// bound only; validity is checked on every hit).
const VERIFIED_CACHE_IDLE_SECONDS: u64 = 300;

/// Verified tokens remembered at most: about 200 bytes each, so the cache
/// stays near 100 MB with every fan of a 300,000-fan on-sale polling.
const VERIFIED_CACHE_ENTRIES: u64 = 500_000;

#[derive(Debug)]
struct Inner {
    /// Verified tokens by the SHA-256 of their text, with the key-set
    /// generation they were checked against.
    verified: moka::sync::Cache<[u8; 32], (Identity, u64)>,
    settings: IdentitySettings,
    /// One rule set per allowed algorithm, so `decode` only ever accepts
    /// the algorithm already matched to the key.
    validations: Vec<(Algorithm, Validation)>,
    keys: jwks::KeySource,
}

/// The header fields needed before the key is known. Parsed leniently so
/// that `alg: none` or an unknown algorithm is reported as such rather than
/// as a malformed header.
#[derive(Deserialize)]
struct PeekedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

impl IdentityVerifier {
    /// A verifier with its own HTTP client (timeout from the settings). No
    /// request is made until the first token or [`Self::warm_up`].
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] when [`IdentitySettings::validate`]
    /// fails, or the HTTP client cannot be built.
    pub fn new(settings: IdentitySettings) -> Result<Self, SettingsError> {
        let client = reqwest::Client::builder()
            .timeout(settings.http_timeout())
            .build()
            .map_err(|e| SettingsError::Invalid(format!("identity HTTP client: {e}")))?;
        Self::with_client(settings, client)
    }

    /// A verifier that fetches keys with `client` (e.g. one with TLS roots
    /// or a proxy configured); its timeout is the caller's business.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] when [`IdentitySettings::validate`] fails.
    pub fn with_client(
        settings: IdentitySettings,
        client: reqwest::Client,
    ) -> Result<Self, SettingsError> {
        settings.validate()?;
        let validations = settings
            .allowed_algorithms()?
            .into_iter()
            .map(|alg| (alg, validation(&settings, alg)))
            .collect();
        let keys = jwks::KeySource::new(&settings, client);
        Ok(Self {
            inner: Arc::new(Inner {
                verified: moka::sync::Cache::builder()
                    .max_capacity(VERIFIED_CACHE_ENTRIES)
                    .time_to_idle(Duration::from_secs(VERIFIED_CACHE_IDLE_SECONDS))
                    .build(),
                settings,
                validations,
                keys,
            }),
        })
    }

    /// The settings this verifier checks against.
    #[must_use]
    pub fn settings(&self) -> &IdentitySettings {
        &self.inner.settings
    }

    /// Fetches the provider's keys now, so the first fan does not wait for
    /// discovery. Optional: [`Self::verify`] fetches on demand. Honours the
    /// refetch rate limit.
    ///
    /// # Errors
    /// [`IdentityError::Unavailable`] with the reason the fetch failed.
    pub async fn warm_up(&self) -> Result<(), IdentityError> {
        self.inner
            .keys
            .refresh(0, true)
            .await
            .map_err(IdentityError::Unavailable)
    }

    /// Checks `token` (the bare JWT, without `Bearer `) as the module docs
    /// describe and returns whom it identifies. Take it from
    /// [`crate::auth::bearer`], which also bounds its length.
    ///
    /// # Errors
    /// The first rule the token breaks, as an [`IdentityError`];
    /// [`IdentityError::Unavailable`] when no keys could be had.
    pub async fn verify(&self, token: &str) -> Result<Identity, IdentityError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(IdentityError::Missing);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((identity, generation)) = self.inner.verified.get(&digest) {
            let leeway = Duration::from_secs(self.inner.settings.leeway_seconds);
            if self.inner.keys.fresh_generation() == Some(generation)
                && SystemTime::now() < identity.expires_at + leeway
            {
                return Ok(identity);
            }
            self.inner.verified.invalidate(&digest);
        }
        let identity = self.verify_signed(token).await?;
        let generation = self.inner.keys.generation();
        self.inner
            .verified
            .insert(digest, (identity.clone(), generation));
        Ok(identity)
    }

    /// The full check of [`Self::verify`], without the cache.
    async fn verify_signed(&self, token: &str) -> Result<Identity, IdentityError> {
        let header = peek_header(token)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: we understand no extension, so a token that
            // declares critical ones must be refused.
            return Err(IdentityError::Malformed("unsupported `crit` header".into()));
        }
        let (alg, validation) = Algorithm::from_str(&header.alg)
            .ok()
            .and_then(|alg| self.inner.validations.iter().find(|(a, _)| *a == alg))
            .ok_or_else(|| IdentityError::DisallowedAlgorithm(header.alg.clone()))?;
        let jwk = self.inner.keys.key(header.kid.as_deref()).await?;
        check_key_fits(&jwk, *alg)?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| IdentityError::BadSignature)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, validation)
            .map_err(|e| map_error(e.into_kind()))?
            .claims;
        Ok(Identity {
            subject: UserId::parse(&claims.sub).map_err(IdentityError::InvalidSubject)?,
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
            issued_at: claims.iat.map(|iat| UNIX_EPOCH + Duration::from_secs(iat)),
        })
    }
}

fn validation(settings: &IdentitySettings, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway_seconds;
    validation.validate_nbf = true;
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation
}

fn peek_header(token: &str) -> Result<PeekedHeader, IdentityError> {
    let malformed = |why: &str| IdentityError::Malformed(why.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "expected three dot-separated parts (JWS compact serialization, RFC 7515 §7.1)",
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("header is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|e| IdentityError::Malformed(format!("header: {e}")))
}

/// Refuses a key that cannot honestly produce `alg`: a different `alg` on
/// the key (RFC 7517 §4.4), or a key type or curve of another algorithm
/// family (RFC 7518 §3.1). This is what stops a token from choosing how
/// the verifier interprets the key.
fn check_key_fits(jwk: &Jwk, alg: Algorithm) -> Result<(), IdentityError> {
    let refuse = |why: &str| {
        Err(IdentityError::DisallowedAlgorithm(format!(
            "{alg:?}: {why}"
        )))
    };
    if let Some(key_alg) = jwk.common.key_algorithm
        && Algorithm::try_from(key_alg).ok() != Some(alg)
    {
        return refuse(&format!("the key is for {key_alg}"));
    }
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        refuse("the key's type or curve belongs to another algorithm")
    }
}

fn map_error(kind: ErrorKind) -> IdentityError {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => IdentityError::BadSignature,
        ErrorKind::ExpiredSignature => IdentityError::Expired,
        ErrorKind::ImmatureSignature => IdentityError::NotYetValid,
        ErrorKind::InvalidIssuer => IdentityError::WrongIssuer,
        ErrorKind::InvalidAudience => IdentityError::WrongAudience,
        ErrorKind::InvalidAlgorithm => IdentityError::DisallowedAlgorithm("mismatch".into()),
        ErrorKind::MissingRequiredClaim(claim) => {
            IdentityError::Malformed(format!("missing `{claim}` claim"))
        }
        other => IdentityError::Malformed(format!("{other:?}")),
    }
}
