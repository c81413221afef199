//! Keys made for these tests only (with `openssl genpkey`); they sign
//! nothing outside them.

/// RSA-2048, published as `rsa-1`.
const RSA_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCKzOWyvsQRI9l7\n\
pWD6tGzAN7hGx/Lcczyqb4M9wsEqPO6VHHV/vtgvoa9HB1Okosu3gxf6/fT2DSCq\n\
otNmEaE2Sfa0GgcqtyKhfBINAnxYNWdOWns3V14B8RKDn3qF6Zi28uIYq61ck87f\n\
tVHX5R/T9Tm7qou+9s+QAV3X3P6AlJuwDpEqwPEofcCsJWWZX4j9z60QikW0NCW6\n\
CTaP9XDuyjNYwMTouNb4CA0uRtdEkQwa+Wboa66NH7/cGNRxzBTr21NZvBKkphHg\n\
GkpQTj8nkFJNxzFQpNMGilNwCclkFQdNpD5FSn/Hjduqpk/Eq17MA6brQhE7G1LV\n\
Ui8bHeM7AgMBAAECggEANEE5hNa+9/j4Ks2zOg9tFdykWrlyHD6iK0Q6M6k7kcxI\n\
wghp0AMoXp5PX71JZyUG7vrCr3Kmo2+DydntHnMqr0afQ2S9J/60YflUzmMOLyND\n\
1kLIOqiAsthwcO88cGfmX5IHPuR7KuxWqPAZdN9E4UZkStvFKsq+j+eDzf3cLsm1\n\
9s2pRHEpUlD0ArrDE4F+nylygJSR2MNvzoAZ8gtn/j384Gp/nj/mlHa0ksmceTQN\n\
rGGI11042Z7E0hUnCFdbnJ/4h1giyq1bM9O7UOesvSuZjtt07fcxinVF7h0mh9WB\n\
uir6PTz2GVmulo3Qc9SINbIXL031NYag8LHAx6itIQKBgQC+HXjLzSzPxfw7kefX\n\
hxTbvQ4VBUGXcenvQq9BF+/JSDQBCIUb6Tlz32i11ecba29cqiYnl5WcPFLjPoah\n\
frKwttw2ZJcOUZlCARuK/gmAc3itixVQQ0+M7G8e9Yb8BZNY+G0rP7LUoVQEZBmT\n\
ix19UvrCYXsQdxU1444FgK9UywKBgQC65umQgrV4VAy6PWVObI3zmpakVsmIQnad\n\
aiox3+5kY3y2aa5Hwmu3bRvhaOPi9McDYtjRGHmEmGrZJCT2Wa4Izro6Js5mJgnl\n\
za3AxxljdggdLSOesev50B51fR/yM/8zV7AHuG/Ckw8f7yvzVXxduuA7RmqvV6wG\n\
ugVOhAlNUQKBgQCxAM2Lqg5Tr/ikGbcqQlkYMQ+gYJFuCCAOpB55U2jsFS5d2+na\n\
T60vBcz+pxWRwNghBUWazRX9LWjarEc6qrSBtO6YMdU1/qDbBB75rIV6M4giw4Bn\n\
hxPUl/jpcR1pHWPPjRRPFPJR55ZKtEvfw8EEArL3MT0b2lNEJgX/d41GOwKBgHoK\n\
F06WGrp0X08okcLQnSwIr/6k8Lk5dMw6q0yfxMDmOWO+w971c3J1GzRnUg46+Mwc\n\
OijmS0qqX3Jj6IK3ci0sF2urNTB7/BCC6car+sb4Jjou5EhWMxiOraTXzAlRrHyw\n\
8C9KXid18PVQLamZEzj8sjfiNf1CSQCnbJmlG5HRAoGAIdJZa2AzsykBbnS12DvH\n\
eBJEiGfKA3EkNV0HRYpYkrp5dwoFCOj6DXYe4EqpTrudWJJpeSHftlMkzVyQCW6x\n\
7TmH3Y1aa9KUJcZCMMZLQeSlGPuLzHMFY7jBK3BMY951JGL8zREmj1JSN2LWfw7c\n\
xluOAjIJBDqQHUudB59gpFo=\n\
-----END PRIVATE KEY-----\n\
";

/// The public half of [`RSA_PRIVATE_PEM`], the HMAC secret of the key-confusion attack.
const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAiszlsr7EESPZe6Vg+rRs\n\
wDe4Rsfy3HM8qm+DPcLBKjzulRx1f77YL6GvRwdTpKLLt4MX+v309g0gqqLTZhGh\n\
Nkn2tBoHKrcioXwSDQJ8WDVnTlp7N1deAfESg596hemYtvLiGKutXJPO37VR1+Uf\n\
0/U5u6qLvvbPkAFd19z+gJSbsA6RKsDxKH3ArCVlmV+I/c+tEIpFtDQlugk2j/Vw\n\
7sozWMDE6LjW+AgNLkbXRJEMGvlm6GuujR+/3BjUccwU69tTWbwSpKYR4BpKUE4/\n\
J5BSTccxUKTTBopTcAnJZBUHTaQ+RUp/x43bqqZPxKtezAOm60IROxtS1VIvGx3j\n\
OwIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

/// P-256, published as `ec-1`.
const EC_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgUgwEWc2hFvCcumUJ\n\
w6Z4T6WS5DDX3HA7Oh7kX06ttaihRANCAARm5ucI0Ydzen7/Um9mwZvWmGhiVZd3\n\
obrPly2zJhTlbRTjUrwj6p63nNLm6IM81QNu6JwAi7Ov+J8UNm8VC19r\n\
-----END PRIVATE KEY-----\n\
";

/// Another P-256 key: unpublished at first, for forgeries and rotation.
const EC_OTHER_PRIVATE_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOyepEXsSCMVF9Z3f\n\
saJnpDLr35X7NZ/BPRoSKd6oAWihRANCAASXg0kTB9jUU7yieU+lDuxiqJt5+3o6\n\
folic9+tUYx26sCwWhmakwzNLQTeJtkQhTILeIHLzfotR40q3b191/Mz\n\
-----END PRIVATE KEY-----\n\
";

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use platform::identity::{IdentitySettings, IdentityVerifier};
use serde_json::{Value, json};

/// The audience every test token is for.
pub(crate) const AUDIENCE: &str = "onsale-tests";

/// A signing key and the JWK that publishes its public half.
pub(crate) struct TestKey {
    pub(crate) alg: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Jwk,
}

impl TestKey {
    fn new(alg: Algorithm, encoding: EncodingKey, kid: &str) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        Self { alg, encoding, jwk }
    }

    pub(crate) fn rsa() -> Self {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        Self::new(Algorithm::RS256, key, "rsa-1")
    }

    pub(crate) fn ec() -> Self {
        let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
        Self::new(Algorithm::ES256, key, "ec-1")
    }

    /// The other P-256 key, published (if at all) under `kid`.
    pub(crate) fn other_ec(kid: &str) -> Self {
        let key = EncodingKey::from_ec_pem(EC_OTHER_PRIVATE_PEM.as_bytes()).unwrap();
        Self::new(Algorithm::ES256, key, kid)
    }

    pub(crate) fn kid(&self) -> &str {
        self.jwk.common.key_id.as_deref().unwrap()
    }

    /// `claims` signed with this key, the header naming `kid`.
    pub(crate) fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid(), claims)
    }
}

/// The public PEM of the RSA key, for the HS256 key-confusion forgery.
pub(crate) fn rsa_public_pem() -> &'static [u8] {
    RSA_PUBLIC_PEM.as_bytes()
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A fake OIDC provider on loopback: discovery, a mutable JWK Set, and
/// counters of what was fetched.
#[derive(Clone)]
pub(crate) struct Provider {
    pub(crate) addr: SocketAddr,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fail_jwks: Arc<AtomicBool>,
    discovery_hits: Arc<AtomicUsize>,
    jwks_hits: Arc<AtomicUsize>,
}

impl Provider {
    pub(crate) async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Self {
            addr: listener.local_addr().unwrap(),
            keys: Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect())),
            fail_jwks: Arc::default(),
            discovery_hits: Arc::default(),
            jwks_hits: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    pub(crate) fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Claims that pass every check; tests break one at a time.
    pub(crate) fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.issuer(), "aud": AUDIENCE, "sub": "fan-1",
            "iat": now, "nbf": now, "exp": now + 600,
        })
    }

    pub(crate) fn settings(&self) -> IdentitySettings {
        IdentitySettings::new(self.issuer(), AUDIENCE)
    }

    /// A verifier with default settings, without pooled connections so the
    /// tests' time travel never meets a connection the server timed out.
    pub(crate) fn verifier(&self) -> IdentityVerifier {
        self.verifier_with(self.settings())
    }

    pub(crate) fn verifier_with(&self, settings: IdentitySettings) -> IdentityVerifier {
        let client = reqwest::Client::builder()
            .timeout(settings.http_timeout())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        IdentityVerifier::with_client(settings, client).unwrap()
    }

    pub(crate) fn publish(&self, key: &TestKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    pub(crate) fn withdraw(&self, kid: &str) {
        self.keys
            .lock()
            .unwrap()
            .retain(|jwk| jwk.common.key_id.as_deref() != Some(kid));
    }

    pub(crate) fn fail_jwks(&self, fail: bool) {
        self.fail_jwks.store(fail, Ordering::SeqCst);
    }

    pub(crate) fn discovery_hits(&self) -> usize {
        self.discovery_hits.load(Ordering::SeqCst)
    }

    pub(crate) fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

async fn discovery(State(p): State<Provider>) -> Json<Value> {
    p.discovery_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": p.issuer(),
        "jwks_uri": format!("{}/jwks.json", p.issuer()),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(p): State<Provider>) -> Result<Json<Value>, StatusCode> {
    p.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if p.fail_jwks.load(Ordering::SeqCst) {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(json!({ "keys": *p.keys.lock().unwrap() })))
}

/// Moves Tokio's clock (which the key cache reads) forward by `by`, then
/// lets it run in real time again. Real loopback I/O never happens while
/// the clock is paused, so no HTTP timeout fires early.
pub(crate) async fn travel(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}
