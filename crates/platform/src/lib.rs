//! Service plumbing shared by queue-service and core-service, so both load
//! configuration, report errors and shut down the same way.
//!
//! # Layout
//! - [`settings`]: layered, typed configuration (base file, environment file,
//!   `ONSALE__…` variables), the shared infrastructure sections and
//!   [`settings::Secret`].
//! - [`problem`]: RFC 9457 `application/problem+json` responses and axum
//!   extractors that turn every rejection into one.
//! - [`shutdown`]: one `shutdown_signal()` and a deadline-bounded drain.
//! - [`listener`]: HTTP listeners with `TCP_NODELAY` on every connection.
//! - [`auth`]: bearer tokens, constant-time comparison and the admin-key
//!   route layer.
//! - [`id`]: [`id::UserId`], the fan id both services parse.
//! - [`identity`]: verification of fans' OIDC identity tokens (JWTs signed
//!   by the provider, keys from its JWK Set) into [`identity::Identity`].
//! - [`openapi`]: the identity and admin-key security schemes of both
//!   OpenAPI documents.
//! - [`ratelimit`]: per-fan (else per-address) rate limits with trusted
//!   proxy hops and the IETF `RateLimit` fields.
//! - [`redis_pool`]: the Redis Cluster connection pool and the time limits
//!   of one call, for both services' scripts.
//! - [`service_auth`]: the service credential on gRPC between services.
//! - [`tls`]: the one rustls crypto provider (aws-lc-rs) of every TLS
//!   link (Redis, Postgres, gRPC).
//! - [`router`]: the standard layers of every HTTP router (404/405
//!   fallbacks, metrics, panic → problem+json, tracing).

pub mod auth;
pub mod id;
pub mod identity;
pub mod listener;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod redis_pool;
pub mod router;
pub mod service_auth;
pub mod settings;
pub mod shutdown;
pub mod tls;
