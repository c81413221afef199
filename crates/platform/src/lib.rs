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

pub mod listener;
pub mod problem;
pub mod settings;
pub mod shutdown;
