//! A local OpenID Connect issuer for development and tests: it signs
//! identity tokens for any subject it is asked for, and publishes its keys
//! the way a real provider does, so the services verify them with the same
//! code path as production tokens (`platform::identity`).
//!
//! - Keys: RSA-2048 signing RS256 ([`ALGORITHM`], as Amazon Cognito, the
//!   production issuer, signs), created on first use under the issuer's folder
//!   ([`dir`], `.devstack/issuer/` for the stack) and reused afterwards;
//!   each `kid` is the key's RFC 7638 thumbprint. [`Issuer::rotate`] adds a
//!   key that signs from then on while the previous ones stay published.
//! - HTTP ([`Issuer::serve`], [`run_server`]), loopback only because it
//!   hands out tokens to whoever asks:
//!   - `GET /.well-known/openid-configuration`: the discovery document
//!     (OpenID Connect Discovery 1.0 §3; there is no authorization
//!     endpoint: tokens come from `/token`);
//!   - `GET /jwks.json`: the JWK Set (RFC 7517 §5);
//!   - `POST /token`: JSON or form `sub`, optional `ttl_seconds` and
//!     `audience`, answered with `{"id_token", "token_type", "expires_in"}`.
//! - Without a server: [`mint_from_state_dir`] signs with the keys on disk,
//!   for `devstack token`.

mod keys;
mod server;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
};

use anyhow::{Context, Result, ensure};
use jsonwebtoken::{Algorithm, Header, jwk::JwkSet};
use serde::Serialize;

use self::keys::KeyRing;
pub use self::keys::{PUBLISHED_KEYS, key_file};
use crate::StackConfig;

/// The algorithm of every token the issuer signs: RS256, as Amazon
/// Cognito signs identity tokens, so the services verify locally what
/// they verify in production.
pub const ALGORITHM: Algorithm = Algorithm::RS256;

/// The port the stack runs the issuer on.
pub const DEFAULT_PORT: u16 = 8090;
/// The audience of tokens that name none; the services' default
/// `identity.audience` for the stack.
pub const DEFAULT_AUDIENCE: &str = "onsale";
/// Lifetime of tokens that name none, in seconds.
pub const DEFAULT_TTL_SECONDS: u64 = 3_600;
/// Longest lifetime the issuer signs, in seconds (a week).
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3_600;

/// The issuer's folder inside the stack's state folder.
#[must_use]
pub fn dir(config: &StackConfig) -> PathBuf {
    config.dir.join("issuer")
}

/// The issuer identifier (`iss`) of an issuer listening on `addr`, e.g.
/// `http://127.0.0.1:8090`; services set `identity.issuer` to it.
#[must_use]
pub fn url_for(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// A local issuer: its identifier and its key ring. Cheap to clone; clones
/// share keys, so a rotation is seen by the server at once.
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    dir: PathBuf,
    ring: RwLock<KeyRing>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.inner.url)
            .field("dir", &self.inner.dir)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

impl Issuer {
    /// The issuer `url` (its `iss`, see [`url_for`]) with the keys in
    /// `dir`, created there with a first key when missing.
    ///
    /// # Errors
    /// The folder or a key file cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>, url: impl Into<String>) -> Result<Self> {
        let dir = dir.into();
        let ring = KeyRing::load_or_create(&dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: url.into().trim_end_matches('/').to_owned(),
                dir,
                ring: RwLock::new(ring),
            }),
        })
    }

    /// The issuer identifier.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The `kid` new tokens are signed with.
    #[must_use]
    pub fn kid(&self) -> String {
        self.read(|ring| ring.signing().kid.clone())
    }

    /// The published keys, newest first.
    #[must_use]
    pub fn jwks(&self) -> JwkSet {
        self.read(KeyRing::jwks)
    }

    /// A signed [`ALGORITHM`] identity token for `sub`, valid from now for
    /// `ttl_seconds`, for `audience`, with `iss`, `aud`, `sub`, `iat`,
    /// `nbf`, `exp` and the signing key's `kid` in the header. `sub` is
    /// taken as given (any non-empty string), so tests can mint subjects
    /// the services must refuse.
    ///
    /// # Errors
    /// An empty `sub` or `audience`, a `ttl_seconds` of 0 or above
    /// [`MAX_TTL_SECONDS`], or a signing failure.
    pub fn mint(&self, sub: &str, ttl_seconds: u64, audience: &str) -> Result<String> {
        ensure!(!sub.is_empty(), "sub must not be empty");
        ensure!(!audience.is_empty(), "audience must not be empty");
        ensure!(
            (1..=MAX_TTL_SECONDS).contains(&ttl_seconds),
            "ttl_seconds must be 1..={MAX_TTL_SECONDS}, not {ttl_seconds}"
        );
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: &self.inner.url,
            aud: audience,
            sub,
            iat: now,
            nbf: now,
            exp: now + ttl_seconds,
        };
        self.read(|ring| {
            let key = ring.signing();
            let mut header = Header::new(ALGORITHM);
            header.kid = Some(key.kid.clone());
            jsonwebtoken::encode(&header, &claims, &key.encoding).context("signing the token")
        })
    }

    /// `claims` under `header`, signed with the signing key whatever they
    /// say, for tests of tokens the services must refuse (wrong issuer,
    /// lapsed, another `alg` in the header, …). The header is taken as
    /// given; name [`ALGORITHM`] and [`Issuer::kid`] for a signature that
    /// verifies.
    ///
    /// # Errors
    /// `claims` do not serialize or signing fails (e.g. a header `alg`
    /// that is not RSA).
    pub fn sign(&self, header: &Header, claims: &impl Serialize) -> Result<String> {
        self.read(|ring| {
            jsonwebtoken::encode(header, claims, &ring.signing().encoding)
                .context("signing the claims")
        })
    }

    /// Adds a new signing key (on disk and here) and returns its `kid`. The
    /// previous keys stay published, up to [`PUBLISHED_KEYS`] in all, so
    /// tokens they signed keep verifying while verifiers pick up the new
    /// key.
    ///
    /// # Errors
    /// The key file cannot be written or the folder read.
    pub fn rotate(&self) -> Result<String> {
        let mut ring = self
            .inner
            .ring
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *ring = KeyRing::rotate(&self.inner.dir, &ring)?;
        Ok(ring.signing().kid.clone())
    }

    /// The discovery document (OpenID Connect Discovery 1.0 §3).
    #[must_use]
    pub fn discovery(&self) -> serde_json::Value {
        let url = &self.inner.url;
        serde_json::json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks.json"),
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "claims_supported": ["iss", "aud", "sub", "iat", "nbf", "exp"],
        })
    }

    /// Serves the endpoints of the module docs on `listener` until the
    /// future is dropped.
    ///
    /// # Errors
    /// `listener` is not on a loopback address, or the server fails.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Result<()> {
        let addr = listener.local_addr()?;
        ensure!(
            addr.ip().is_loopback(),
            "the local issuer signs tokens for anyone who asks, so it listens on loopback only, not {addr}"
        );
        axum::serve(listener, server::router(self))
            .await
            .context("local issuer server")
    }

    fn read<T>(&self, f: impl FnOnce(&KeyRing) -> T) -> T {
        f(&self
            .inner
            .ring
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

/// Opens the issuer in `dir` as [`url_for`]`(addr)` and serves it on `addr`
/// (a loopback address) until the future is dropped: `devstack up` runs
/// this as its issuer process.
///
/// # Errors
/// The address is taken or not loopback, or the keys cannot be loaded.
pub async fn run_server(dir: &Path, addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the local issuer to {addr}"))?;
    let issuer = Issuer::open(dir, url_for(listener.local_addr()?))?;
    eprintln!(
        "local issuer {} signing with kid {}",
        issuer.url(),
        issuer.kid()
    );
    issuer.serve(listener).await
}

/// A token signed with the keys in `dir`, as the issuer `url` (normally
/// [`url_for`] the stack's issuer address) would mint it; see
/// [`Issuer::mint`]. Needs no running server: `devstack token` uses it.
///
/// # Errors
/// As [`Issuer::open`] and [`Issuer::mint`].
pub fn mint_from_state_dir(
    dir: &Path,
    url: &str,
    sub: &str,
    ttl_seconds: u64,
    audience: &str,
) -> Result<String> {
    Issuer::open(dir, url)?.mint(sub, ttl_seconds, audience)
}
