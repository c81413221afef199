//! Putting a test's own TCP proxy in front of the devstack Postgres, for
//! tests that slow the database down or cut it off.

use std::future::Future;

/// `url` (a `postgres://user:pass@host:port/db` URL) with its `host:port`
/// replaced by the address `proxy` returns once it listens; `proxy` gets the
/// real `host:port` to forward to.
///
/// # Panics
/// When `url` has no credentials or no database path, as devstack's URLs
/// always do.
pub async fn behind_proxy<F, Fut>(url: &str, proxy: F) -> String
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = String>,
{
    let (prefix, rest) = url.split_once('@').expect("a URL with credentials");
    let (host, db_path) = rest.split_once('/').expect("a URL with a database");
    format!("{prefix}@{}/{db_path}", proxy(host.to_owned()).await)
}
