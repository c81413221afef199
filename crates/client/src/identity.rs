//! Signing in: identity tokens from an OIDC issuer's token endpoint, as a
//! real client gets them before it calls the services.

use std::{fmt, sync::Arc};

use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};

use crate::{Error, Observation, Observer, Operation};

/// The local issuer devstack runs (`devstack up`), whose tokens the
/// services trust by default.
pub const DEFAULT_ISSUER_URL: &str = "http://127.0.0.1:8090";

/// What `POST /token` takes.
#[derive(Serialize)]
struct TokenRequest<'a> {
    sub: &'a str,
    ttl_seconds: u64,
}

/// What `POST /token` answers (other members are ignored).
#[derive(Deserialize)]
struct TokenReply {
    id_token: String,
}

/// A client of an OIDC issuer's token endpoint (`POST {url}/token` with
/// `{"sub", "ttl_seconds"}`, answered with `{"id_token", …}`), such as the
/// local issuer devstack runs. Cheap to clone.
#[derive(Clone)]
pub struct Issuer {
    http: reqwest::Client,
    url: Arc<str>,
    observer: Option<Observer>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The issuer at `url` (its identifier, e.g. [`DEFAULT_ISSUER_URL`]; a
    /// trailing slash is dropped), reached with `http`.
    pub fn new(http: reqwest::Client, url: impl Into<String>) -> Self {
        Self {
            http,
            url: url.into().trim_end_matches('/').into(),
            observer: None,
        }
    }

    /// Calls `observer` with every response of [`Issuer::identity_token`]
    /// (as [`Operation::SignIn`]).
    #[must_use]
    pub fn observe(mut self, observer: impl Fn(&Observation) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The issuer identifier.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request of [`Issuer::identity_token`].
    pub fn token_request(&self, sub: &str, ttl_seconds: u64) -> RequestBuilder {
        self.http
            .request(Method::POST, format!("{}/token", self.url))
            .json(&TokenRequest { sub, ttl_seconds })
    }

    /// Signs in as the fan `sub`: a fresh identity token valid for
    /// `ttl_seconds`, to pass to [`crate::Client::as_fan`].
    ///
    /// # Errors
    /// [`Error::Status`] 400 for an empty `sub` or a lifetime the issuer
    /// refuses (the local issuer signs 1 s up to a week);
    /// [`Error::Transport`] when the issuer is unreachable;
    /// [`Error::Decode`] for a reply without `id_token`.
    pub async fn identity_token(&self, sub: &str, ttl_seconds: u64) -> Result<String, Error> {
        let operation = Operation::SignIn;
        let (status, body) = crate::exchange(
            self.observer.as_ref(),
            operation,
            self.token_request(sub, ttl_seconds),
        )
        .await?;
        crate::decode::<TokenReply>(operation, status, &body).map(|reply| reply.id_token)
    }
}
