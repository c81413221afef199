//! Per-client rate limits for HTTP routes: one GCRA bucket per verified fan,
//! or per client address where no fan is signed in.
//!
//! Keying on the signed-in fan means a fan behind a shared address (a
//! carrier NAT, a venue's Wi-Fi) is not limited with strangers, and a fan
//! cannot escape the limit by changing address. The address of an
//! unauthenticated request comes from `X-Forwarded-For` only through the
//! configured number of trusted proxies, counted from the right (each proxy
//! appends the address it saw), never from the client-written first entry.
//!
//! Refusals are 429 problems `rate_limited` with `Retry-After` and the IETF
//! `RateLimit-Policy` / `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers): `q` is the burst, `w` the
//! seconds the bucket takes to refill, `r` what is left, `t` the seconds
//! until a request is allowed again.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use serde::Deserialize;

use crate::{id::UserId, identity::http::verified_fan, problem::Problem, settings::SettingsError};

/// Checks between two sweeps of idle buckets, so the keyed state does not
/// keep one entry per fan ever seen.
const SWEEP_EVERY: u64 = 50_000;

/// `[….rate_limit]`: the per-client limit.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client.
    pub per_second: u32,
    /// Requests a client may send at once (the bucket size).
    pub burst: u32,
    /// Proxies in front of the service that append to `X-Forwarded-For`
    /// (an ALB is one). 0: use the peer address and ignore the header.
    #[serde(default)]
    pub trusted_proxy_hops: usize,
}

impl RateLimitSettings {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] when `per_second` or `burst` is 0, or
    /// more than 10 proxy hops are trusted.
    pub fn validate(&self, section: &str) -> Result<(), SettingsError> {
        if self.per_second == 0 || self.burst == 0 {
            return Err(SettingsError::Invalid(format!(
                "{section}.per_second and burst must be at least 1"
            )));
        }
        if self.trusted_proxy_hops > 10 {
            return Err(SettingsError::Invalid(format!(
                "{section}.trusted_proxy_hops must be at most 10"
            )));
        }
        Ok(())
    }
}

/// Whom a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// A signed-in fan.
    Fan(UserId),
    /// An unauthenticated client, by address.
    Address(IpAddr),
}

type Keyed = governor::RateLimiter<RateKey, DefaultKeyedStateStore<RateKey>, DefaultClock>;

/// The buckets of one service. Cheap to clone; clones share the buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    buckets: Keyed,
    settings: RateLimitSettings,
    /// `RateLimit-Policy` value, the same on every answer.
    policy: HeaderValue,
    checks: AtomicU64,
}

impl RateLimiter {
    /// Buckets of `settings.burst` requests refilled at
    /// `settings.per_second`.
    #[must_use]
    pub fn new(settings: &RateLimitSettings) -> Self {
        let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        let window = u64::from(burst.get()).div_ceil(u64::from(per_second.get()));
        let policy = HeaderValue::from_str(&format!("\"client\";q={burst};w={window}"))
            .unwrap_or_else(|_| HeaderValue::from_static("\"client\""));
        Self {
            inner: Arc::new(Inner {
                buckets: governor::RateLimiter::keyed(
                    Quota::per_second(per_second).allow_burst(burst),
                ),
                settings: settings.clone(),
                policy,
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// Takes one request from `key`'s bucket.
    ///
    /// # Errors
    /// The whole seconds to wait (at least 1) when the bucket is empty.
    pub fn check(&self, key: &RateKey) -> Result<(), u64> {
        if self.inner.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.inner.buckets.retain_recent();
            self.inner.buckets.shrink_to_fit();
        }
        self.inner.buckets.check_key(key).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        })
    }

    /// The bucket of `request`: its verified fan, else its client address.
    fn key_of(&self, request: &Request) -> RateKey {
        if let Some(identity) = verified_fan(request) {
            return RateKey::Fan(identity.subject.clone());
        }
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        RateKey::Address(client_address(
            request.headers(),
            peer,
            self.inner.settings.trusted_proxy_hops,
        ))
    }

    fn refusal(&self, wait_seconds: u64) -> Response {
        let mut response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
        )
        .detail("slow down; retry after the number of seconds in Retry-After")
        .retry_after(wait_seconds)
        .into_response();
        let headers = response.headers_mut();
        headers.insert("ratelimit-policy", self.inner.policy.clone());
        if let Ok(value) = HeaderValue::from_str(&format!("\"client\";r=0;t={wait_seconds}")) {
            headers.insert("ratelimit", value);
        }
        response
    }
}

/// The client's address: the peer address with no trusted proxy; with
/// `trusted_hops` proxies, the `X-Forwarded-For` entry that the outermost
/// trusted proxy appended (the `trusted_hops`-th from the right). Falls back
/// to the peer address (or `0.0.0.0`) when the header has fewer entries or
/// the entry is not an address.
#[must_use]
pub fn client_address(headers: &HeaderMap, peer: Option<IpAddr>, trusted_hops: usize) -> IpAddr {
    let fallback = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if trusted_hops == 0 {
        return fallback;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    entries
        .len()
        .checked_sub(trusted_hops)
        .and_then(|i| entries[i].parse().ok())
        .unwrap_or(fallback)
}

/// Route layer: refuses a request whose bucket is empty with 429. Put
/// [`crate::identity::authenticate`] in front of it (see
/// [`crate::identity::protect`]) so signed-in fans get buckets of their own.
pub async fn limit(State(limiter): State<RateLimiter>, request: Request, next: Next) -> Response {
    let key = limiter.key_of(&request);
    match limiter.check(&key) {
        Ok(()) => next.run(request).await,
        Err(wait) => limiter.refusal(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let address = IpAddr::from([10, 0, 0, 9]);
        assert_eq!(
            client_address(&forwarded("1.2.3.4"), Some(address), 0),
            address
        );
    }

    #[test]
    fn one_trusted_proxy_means_the_right_most_entry() {
        let address = IpAddr::from([10, 0, 0, 9]);
        let peer = Some(address);
        let headers = forwarded("6.6.6.6, 203.0.113.7");
        assert_eq!(
            client_address(&headers, peer, 1),
            IpAddr::from([203, 0, 113, 7])
        );
        assert_eq!(
            client_address(&headers, peer, 2),
            IpAddr::from([6, 6, 6, 6])
        );
        assert_eq!(client_address(&headers, peer, 3), address);
        assert_eq!(client_address(&forwarded("junk"), peer, 1), address);
    }

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_how_long_to_wait() {
        let limiter = RateLimiter::new(&RateLimitSettings {
            per_second: 1,
            burst: 3,
            trusted_proxy_hops: 0,
        });
        let key = RateKey::Address(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..3 {
            assert!(limiter.check(&key).is_ok());
        }
        assert_eq!(limiter.check(&key), Err(1));
        let other = RateKey::Fan(UserId::parse("fan-1").unwrap());
        assert!(limiter.check(&other).is_ok());
        let response = limiter.refusal(1);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["ratelimit-policy"], "\"client\";q=3;w=3");
        assert_eq!(response.headers()["ratelimit"], "\"client\";r=0;t=1");
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
