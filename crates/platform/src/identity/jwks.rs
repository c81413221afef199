//! The provider's signing keys: discovery, the JWK Set fetch, and the cache
//! that lets keys rotate without a restart.
//!
//! Reads take a cheap snapshot (`Arc`) of the cached keys. A miss (unknown
//! `kid`, or nothing fetched yet) or a snapshot older than the TTL asks for
//! a refetch. Refetches are single-flight (one async mutex; whoever waited
//! behind a successful fetch just rereads the cache) and rate-limited (at
//! most one attempt per minimum interval, successful or not), so a burst of
//! tokens with forged `kid`s costs the provider one request.

use std::{
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use reqwest::header::ACCEPT;
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};

use super::{IdentityError, IdentitySettings, settings::check_url};

/// Largest discovery document or JWK Set read, in bytes. Real ones are a
/// few KiB; the cap keeps a broken or hostile endpoint from filling memory.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The cached keys and where they come from.
#[derive(Debug)]
pub(super) struct KeySource {
    client: reqwest::Client,
    issuer: String,
    jwks_url: Option<String>,
    min_interval: Duration,
    ttl: Duration,
    cache: RwLock<Arc<Snapshot>>,
    refresh: Mutex<RefreshState>,
}

/// One fetched JWK Set.
#[derive(Debug, Default)]
struct Snapshot {
    keys: Vec<Jwk>,
    /// `None` until the first successful fetch.
    fetched_at: Option<Instant>,
    /// Bumped by every successful fetch, so a task that waited for the
    /// refresh lock can tell that someone else already refreshed.
    generation: u64,
}

#[derive(Debug, Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    /// The discovered `jwks_uri`, kept until a fetch from it fails.
    discovered_jwks_uri: Option<String>,
}

/// The part of the discovery document we use (OpenID Connect Discovery 1.0
/// §3).
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// A JWK Set whose members are parsed one by one, so one key of a type we
/// do not know does not hide the others (RFC 7517 §5: members that are not
/// understood are ignored).
#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

impl Snapshot {
    /// The key a token names. Without a `kid` the set must hold exactly one
    /// key (OpenID Connect Core 1.0 §10.1 requires a `kid` otherwise).
    fn find(&self, kid: Option<&str>) -> Option<&Jwk> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|jwk| jwk.common.key_id.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

impl KeySource {
    pub(super) fn new(settings: &IdentitySettings, client: reqwest::Client) -> Self {
        Self {
            client,
            issuer: settings.issuer.clone(),
            jwks_url: settings.jwks_url.clone(),
            min_interval: settings.jwks_refresh_min_interval(),
            ttl: settings.jwks_cache_ttl(),
            cache: RwLock::default(),
            refresh: Mutex::default(),
        }
    }

    /// The generation of the cached key set while it is within its TTL;
    /// `None` when nothing was fetched yet or the set is due a refresh.
    pub(super) fn fresh_generation(&self) -> Option<u64> {
        let snapshot = self.snapshot();
        snapshot
            .fetched_at
            .filter(|at| at.elapsed() < self.ttl)
            .map(|_| snapshot.generation)
    }

    /// The generation of the cached key set, fresh or not.
    pub(super) fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.cache.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The published key for `kid`, refetching the set when the key is
    /// missing or the cache is past its TTL.
    ///
    /// # Errors
    /// [`IdentityError::UnknownKid`] when the (possibly refreshed) set has
    /// no such key; [`IdentityError::Unavailable`] when no set was ever
    /// fetched.
    pub(super) async fn key(&self, kid: Option<&str>) -> Result<Jwk, IdentityError> {
        let mut snapshot = self.snapshot();
        let missing = snapshot.find(kid).is_none();
        let stale = snapshot
            .fetched_at
            .is_some_and(|at| at.elapsed() >= self.ttl);
        if missing || stale {
            // A stale cache that still has the key does not wait for a
            // refresh another request is already doing.
            let outcome = self.refresh(snapshot.generation, missing).await;
            snapshot = self.snapshot();
            if snapshot.fetched_at.is_none() {
                return Err(IdentityError::Unavailable(
                    outcome
                        .err()
                        .unwrap_or_else(|| "no JWK Set fetched yet".into()),
                ));
            }
        }
        snapshot
            .find(kid)
            .cloned()
            .ok_or_else(|| IdentityError::UnknownKid(kid.map(str::to_owned)))
    }

    /// Fetches the set unless another task did since `seen_generation` or
    /// the last attempt is younger than the minimum interval.
    ///
    /// # Errors
    /// Why the set is not fresh: the fetch error, or the previous one while
    /// rate-limited.
    pub(super) async fn refresh(&self, seen_generation: u64, wait: bool) -> Result<(), String> {
        let mut state = if wait {
            self.refresh.lock().await
        } else {
            match self.refresh.try_lock() {
                Ok(state) => state,
                Err(_) => return Ok(()),
            }
        };
        if self.snapshot().generation != seen_generation {
            return Ok(());
        }
        if let Some(at) = state.last_attempt
            && at.elapsed() < self.min_interval
        {
            return Err(state
                .last_error
                .clone()
                .unwrap_or_else(|| "JWK Set refetch rate-limited".into()));
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch(&mut state).await {
            Ok(keys) => {
                let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                *cache = Arc::new(Snapshot {
                    keys,
                    fetched_at: Some(Instant::now()),
                    generation: cache.generation + 1,
                });
                state.last_error = None;
                tracing::debug!(issuer = %self.issuer, keys = cache.keys.len(), "JWK Set fetched");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer, %error, "JWK Set fetch failed");
                state.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<Vec<Jwk>, String> {
        let uri = match (&self.jwks_url, &state.discovered_jwks_uri) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let uri = self.discover().await?;
                state.discovered_jwks_uri = Some(uri.clone());
                uri
            }
        };
        let set = self.get_json::<RawJwkSet>(&uri).await.inspect_err(|_| {
            // The provider may have moved its keys; rediscover next time.
            state.discovered_jwks_uri = None;
        })?;
        Ok(set
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter(is_signing_key)
            .collect())
    }

    /// The `jwks_uri` of the discovery document, whose `issuer` must equal
    /// ours exactly (OpenID Connect Discovery 1.0 §4.3).
    async fn discover(&self) -> Result<String, String> {
        // §4.1: a terminating `/` of the issuer is removed before appending.
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc = self.get_json::<Discovery>(&url).await?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "discovery document at {url} names issuer {:?}, expected {:?}",
                doc.issuer, self.issuer
            ));
        }
        check_url("jwks_uri", &doc.jwks_uri).map_err(|e| e.to_string())?;
        Ok(doc.jwks_uri)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let failed = |why: String| format!("GET {url}: {why}");
        let mut response = self
            .client
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(failed(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
            }
        }
        serde_json::from_slice(&body).map_err(|e| failed(e.to_string()))
    }
}

/// Whether a published key may verify signatures: not marked for
/// encryption (RFC 7517 §4.2), and not a symmetric `oct` key, which has no
/// place in a public key set and would invite MAC confusion.
fn is_signing_key(jwk: &Jwk) -> bool {
    !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
        && !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
}
