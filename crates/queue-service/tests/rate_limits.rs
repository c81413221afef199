//! Per-client rate limits of the fan API against the real stack: one bucket
//! per signed-in fan, else per client address, where the address is the
//! peer's (no trusted proxy) or the `X-Forwarded-For` entry the trusted
//! proxy appended, never one the client wrote.

mod common;

use std::{net::Ipv4Addr, time::Instant};

use common::{Reply, TestApp, event_id, identity, room, settings, spawn_app_with};
use reqwest::{RequestBuilder, StatusCode};

/// Requests per flood.
const REQUESTS: u32 = 600;
/// The address a trusted proxy saw for most requests of a test.
const PROXY_SEEN: &str = "203.0.113.77";

/// An app whose fan API allows `burst` requests at once per client and one
/// per second after that.
async fn limited_app(burst: u32, trusted_proxy_hops: usize) -> TestApp {
    let mut s = settings();
    s.queue.rate_limit.per_second = 1;
    s.queue.rate_limit.burst = burst;
    s.queue.rate_limit.trusted_proxy_hops = trusted_proxy_hops;
    spawn_app_with(s).await
}

/// The `n`-th of many distinct addresses (198.18.0.0/15, the range for
/// benchmarks).
fn address(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n)
}

/// What a flood of requests got.
struct Flood {
    /// Answers other than 429, with their problem codes.
    passed: Vec<(StatusCode, String)>,
    /// The 429 answers.
    limited: Vec<Reply>,
    /// Whole seconds the flood took, rounded up.
    seconds: u32,
}

impl Flood {
    /// Asserts that the flood was limited as one client's with `burst`:
    /// at least the burst passed, and at most the burst plus one per second
    /// of the flood, plus one for a refill at its edge.
    fn assert_one_client(&self, burst: u32) {
        let passed = self.passed.len();
        let most = (burst + self.seconds + 1) as usize;
        assert!(
            (burst as usize..=most).contains(&passed),
            "{passed} of {REQUESTS} passed in {} s, burst {burst}",
            self.seconds
        );
        assert_eq!(passed + self.limited.len(), REQUESTS as usize);
    }

    /// Asserts that every request let through got `status` with `code`
    /// from the handler.
    fn assert_passed_as(&self, status: StatusCode, code: &str) {
        for passed in &self.passed {
            assert_eq!((passed.0, passed.1.as_str()), (status, code));
        }
    }
}

/// Sends [`REQUESTS`] requests built by `request(n)`, one after another.
async fn flood(request: impl Fn(u32) -> RequestBuilder) -> Flood {
    let started = Instant::now();
    let mut passed = Vec::new();
    let mut limited = Vec::new();
    for n in 0..REQUESTS {
        let reply = Reply::send(request(n)).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited.push(reply);
        } else {
            passed.push((reply.status, reply.code().to_owned()));
        }
    }
    let seconds = started.elapsed().as_secs_f64().ceil() as u32;
    Flood {
        passed,
        limited,
        seconds,
    }
}

#[tokio::test]
async fn six_hundred_anonymous_requests_with_a_new_forwarded_address_each_are_limited_as_one_client()
 {
    // No trusted proxy (the default): X-Forwarded-For is the client's own
    // writing, so the peer address is the key.
    let app = limited_app(100, 0).await;
    let event = event_id();
    let got = flood(|n| {
        app.status_request(&event)
            .header("x-forwarded-for", address(n).to_string())
    })
    .await;
    got.assert_one_client(100);
    // Those let through are refused by the handler for want of a sign-in.
    got.assert_passed_as(StatusCode::UNAUTHORIZED, "missing_identity_token");
}

#[tokio::test]
async fn with_one_trusted_proxy_hop_the_right_most_forwarded_entry_is_the_client() {
    let app = limited_app(5, 1).await;
    let event = event_id();
    // A different client behind the proxy each time, each claiming (in the
    // entry it wrote itself) to be the same address: none is limited.
    let distinct = flood(|n| {
        app.status_request(&event)
            .header("x-forwarded-for", format!("192.0.2.1, {}", address(n)))
    })
    .await;
    assert!(
        distinct.limited.is_empty(),
        "{} of {REQUESTS} limited",
        distinct.limited.len()
    );
    distinct.assert_passed_as(StatusCode::UNAUTHORIZED, "missing_identity_token");

    // One client behind the proxy writing a new address each time: one
    // bucket, the one of the address the proxy saw.
    let spoofing = flood(|n| {
        app.status_request(&event)
            .header("x-forwarded-for", format!("{}, {PROXY_SEEN}", address(n)))
    })
    .await;
    spoofing.assert_one_client(5);
}

#[tokio::test]
async fn a_signed_in_fan_is_limited_as_one_client_from_any_address() {
    let app = limited_app(100, 1).await;
    let event = event_id();
    let fan = identity("fan-1");
    let got = flood(|n| {
        app.status_request(&event)
            .bearer_auth(&fan)
            .header("x-forwarded-for", address(n).to_string())
    })
    .await;
    got.assert_one_client(100);
    // Signed in, so the handler got as far as the missing queue token.
    got.assert_passed_as(StatusCode::UNAUTHORIZED, "missing_token");
    // Another fan at an address the first one used has a bucket of their
    // own.
    let neighbour = Reply::send(
        app.status_request(&event)
            .bearer_auth(identity("fan-2"))
            .header("x-forwarded-for", address(0).to_string()),
    )
    .await;
    assert_eq!(
        (neighbour.status, neighbour.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after_and_ratelimit_fields() {
    let app = limited_app(3, 0).await;
    let event = event_id();
    app.open_room(&event, room(5, 1.0)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.enter(&event, "fan-1").await);
    }
    assert!(statuses[..3].iter().all(|r| r.status.is_success()));
    let limited = &statuses[4];
    assert_eq!(
        (limited.status, limited.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(limited.is_problem());
    let header = |name: &str| {
        limited.headers[name]
            .to_str()
            .unwrap_or_else(|_| panic!("{name} is text"))
            .to_owned()
    };
    assert!(header("retry-after").parse::<u64>().unwrap() >= 1);
    let policy = header("ratelimit-policy");
    assert!(policy.contains("q=3"), "RateLimit-Policy: {policy}");
    let state = header("ratelimit");
    assert!(state.contains("r=0"), "RateLimit: {state}");
    // Admin and probes are not limited.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    app.stats(&event).await;
}
