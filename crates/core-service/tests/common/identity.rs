//! Who the fans of a test are: each [`super::TestApp`] runs its own
//! identity provider ([`TestIssuer`], devstack's local OIDC issuer on a
//! free loopback port, with keys of its own), which both services trust;
//! and a [`Pass`] is one fan admitted to one performance.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use devstack::issuer::{DEFAULT_AUDIENCE, Issuer};
use jsonwebtoken::{Header, jwk::JwkSet};
use onsale_client::{Client, queue_api::FanStatus};
use serde_json::Value;

use super::TestApp;

/// Lifetime of the identity tokens [`TestIssuer::identity`] mints, in
/// seconds.
const IDENTITY_TTL_SECONDS: u64 = 3_600;

/// A test's identity provider, serving discovery, its JWK Set and `/token`
/// until dropped. It also hands out its signing key, so a test can sign
/// tokens with claims the issuer would never put in them (expired, not yet
/// valid), which the services must refuse even though the signature holds.
pub struct TestIssuer {
    issuer: Issuer,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl TestIssuer {
    /// An issuer with fresh keys, listening on a free loopback port. The
    /// key folder is removed once loaded: the issuer keeps its keys in
    /// memory.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = devstack::issuer::url_for(listener.local_addr().unwrap());
        let dir = std::env::temp_dir().join(format!(
            "core-service-issuer-{}",
            devstack::testing::unique_suffix()
        ));
        let issuer = Issuer::open(&dir, url).expect("the test issuer's keys");
        let _ = std::fs::remove_dir_all(&dir);
        let server = issuer.clone();
        let serving = tokio::spawn(async move {
            server
                .serve(listener)
                .await
                .expect("the test issuer serves");
        });
        Self { issuer, serving }
    }

    /// The issuer identifier (`iss`), for `identity.issuer`.
    pub fn url(&self) -> &str {
        self.issuer.url()
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> String {
        self.issuer.kid()
    }

    /// The published keys.
    pub fn jwks(&self) -> JwkSet {
        self.issuer.jwks()
    }

    /// A valid identity token for `user`, as a signed-in fan holds it.
    pub fn identity(&self, user: &str) -> String {
        self.issuer
            .mint(user, IDENTITY_TTL_SECONDS, DEFAULT_AUDIENCE)
            .expect("minting an identity token")
    }

    /// `claims` under `header`, signed with the issuer's own key (so the
    /// signature verifies whatever the claims say).
    pub fn sign(&self, header: &Header, claims: &Value) -> String {
        self.issuer
            .sign(header, claims)
            .expect("signing test claims")
    }
}

/// Signing in and the waiting room, as a fan goes through them.
impl TestApp {
    /// A valid identity token for `user`.
    pub fn identity(&self, user: &str) -> String {
        self.issuer.identity(user)
    }

    /// The typed client, signed in as `user`.
    pub fn fan(&self, user: &str) -> Client {
        self.client.as_fan(&self.identity(user))
    }

    /// `method path` to core-service with `identity` as the bearer.
    pub fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        identity: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(identity)
    }

    /// Signs `user` in, queues them for `performance` and waits until
    /// admitted; returns their pass (identity and access token).
    pub async fn access_token(&self, performance: i64, user: &str) -> Pass {
        let identity = self.identity(user);
        let fan = self.client.as_fan(&identity);
        // Entering is retried on 429/503 (load shedding under 500 concurrent
        // fans), as a real client would.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let entered = loop {
            match fan.enter(performance).await {
                Err(error) if error.is_shed() && tokio::time::Instant::now() <= deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                entered => break entered,
            }
        };
        let mut ticket =
            entered.unwrap_or_else(|error| panic!("entering the queue failed: {error}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if ticket.status == FanStatus::Active
                && let Some(access) = ticket.access_token.take()
            {
                return Pass {
                    user: user.to_owned(),
                    identity,
                    access,
                    queue: ticket.queue_token,
                };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} was not admitted: {ticket:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            match fan.poll(performance, &ticket.queue_token).await {
                Ok(next) => ticket = next,
                // A refused poll (shed, say) is tried again at the next step.
                Err(error) if error.status().is_some() => {}
                Err(error) => panic!("polling the queue failed: {error}"),
            }
        }
    }

    /// The fan of `pass` leaves the waiting room of `performance`: their
    /// admission session ends (a later [`Self::access_token`] starts a new
    /// one).
    pub async fn leave(&self, pass: &Pass, performance: i64) {
        self.client
            .as_fan(&pass.identity)
            .leave(performance, &pass.queue)
            .await
            .unwrap_or_else(|error| panic!("{} leaving failed: {error}", pass.user));
    }
}

/// One fan admitted to one performance: their identity token and the
/// waiting room's access token issued to them.
#[derive(Debug, Clone)]
pub struct Pass {
    /// The fan (the identity token's `sub`).
    pub user: String,
    /// Their identity token (`Authorization: Bearer`).
    pub identity: String,
    /// Their access token (`Onsale-Access-Token`).
    pub access: String,
    /// Their queue token (`Onsale-Queue-Token`), to leave the room.
    pub queue: String,
}

impl Pass {
    /// The same admission presented with another identity token, e.g.
    /// another fan's.
    pub fn with_identity(&self, identity: String) -> Self {
        Self {
            identity,
            ..self.clone()
        }
    }

    /// The same identity with another access token (forged, or another
    /// fan's).
    pub fn with_access(&self, access: String) -> Self {
        Self {
            access,
            ..self.clone()
        }
    }

    /// The access token's admission session (its `sid`).
    pub fn session_id(&self) -> String {
        claim(&self.access, "sid")
            .and_then(|sid| sid.as_str().map(str::to_owned))
            .expect("an access token names its session")
    }

    /// When the access token expires (its `exp`, Unix seconds).
    pub fn access_expires_at(&self) -> i64 {
        claim(&self.access, "exp")
            .and_then(|exp| exp.as_i64())
            .expect("an access token has an expiry")
    }
}

/// A claim of a JWT, read without checking anything.
pub fn claim(jwt: &str, name: &str) -> Option<Value> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let mut claims: Value = serde_json::from_slice(&payload).ok()?;
    Some(claims.get_mut(name)?.take())
}
