//! The popular-concert ranking after the sale: `GET
//! /v1/rankings/concerts?window=1h&limit=…`, read as plain JSON
//! (`{ window, as_of, stale, concerts: [{rank, concert_id, title,
//! tickets}] }`) so the simulation does not depend on the ranking's types
//! while they are being written.
//!
//! The ranking is fed by a consumer of `payment.completed`, so it trails
//! the sale by the outbox relay and the consumer: the report polls it for
//! up to [`PATIENCE`] until the simulation's concert shows every ticket
//! sold. It is reported, never a check: a ranking that lags, or an endpoint
//! that still answers 501 Not Implemented, does not fail the run.

use std::time::{Duration, Instant};

use onsale_client::Client;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

/// How long the report waits for the ranking to count the sale.
const PATIENCE: Duration = Duration::from_secs(10);

/// Concerts of the ranking the report shows.
const TOP: usize = 5;

/// What the ranking showed.
#[derive(Debug, Serialize)]
pub(super) struct RankingReport {
    /// `ok`, `not_implemented` (501), or what went wrong.
    status: String,
    /// Seconds spent polling.
    waited_seconds: f64,
    /// The simulation's concert shows every ticket sold.
    caught_up: bool,
    /// Its rank and tickets, when listed.
    rank: Option<u64>,
    tickets: Option<u64>,
    /// The top entries as served (at most [`TOP`]).
    top: Vec<Value>,
    /// `stale` of the last answer.
    stale: Option<bool>,
}

/// Polls the 1-hour ranking until `concert` shows `sold` tickets or
/// [`PATIENCE`] passes.
pub(super) async fn read(client: &Client, concert: i64, sold: u64) -> RankingReport {
    let started = Instant::now();
    let mut report = RankingReport {
        status: "no answer".to_owned(),
        waited_seconds: 0.0,
        caught_up: false,
        rank: None,
        tickets: None,
        top: Vec::new(),
        stale: None,
    };
    loop {
        match fetch(client).await {
            Ok(body) => {
                report.status = "ok".to_owned();
                let concerts = body
                    .get("concerts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let ours = concerts
                    .iter()
                    .find(|c| c.get("concert_id").and_then(Value::as_i64) == Some(concert));
                report.rank = ours.and_then(|c| c.get("rank")?.as_u64());
                report.tickets = ours.and_then(|c| c.get("tickets")?.as_u64());
                report.caught_up = report.tickets.is_some_and(|t| t >= sold);
                report.stale = body.get("stale").and_then(Value::as_bool);
                report.top = concerts.into_iter().take(TOP).collect();
            }
            Err(Fetch::NotImplemented) => {
                report.status = "not_implemented".to_owned();
                break;
            }
            Err(Fetch::Failed(why)) => report.status = why,
        }
        if report.caught_up || started.elapsed() >= PATIENCE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.waited_seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report
}

enum Fetch {
    NotImplemented,
    Failed(String),
}

async fn fetch(client: &Client) -> Result<Value, Fetch> {
    // The limit is the ranking's own: the report prints the top TOP, and
    // looks for the simulation's concert among the first 100.
    let response = client
        .ranking_request("1h", 100)
        .send()
        .await
        .map_err(|e| Fetch::Failed(format!("no answer: {e}")))?;
    match response.status() {
        StatusCode::NOT_IMPLEMENTED => Err(Fetch::NotImplemented),
        status if status.is_success() => response
            .json()
            .await
            .map_err(|e| Fetch::Failed(format!("unexpected body: {e}"))),
        status => Err(Fetch::Failed(format!("HTTP {status}"))),
    }
}

/// Prints the ranking lines of the terminal report.
pub(super) fn print(r: &RankingReport, concert: i64, sold: u64) {
    match r.status.as_str() {
        "not_implemented" => {
            println!("ranking (1h): not implemented yet (501); skipped");
            return;
        }
        "ok" => {}
        other => {
            println!("ranking (1h): {other} (after {:.1} s)", r.waited_seconds);
            return;
        }
    }
    println!(
        "ranking (1h) after {:.1} s{}: this concert ({concert}) {}",
        r.waited_seconds,
        if r.stale == Some(true) { ", stale" } else { "" },
        match (r.rank, r.tickets) {
            (Some(rank), Some(tickets)) if r.caught_up =>
                format!("#{rank} with {tickets} tickets (all {sold} sold counted)"),
            (Some(rank), Some(tickets)) =>
                format!("#{rank} with {tickets} of {sold} tickets (the ranking lags; not a check)"),
            _ => format!("not listed yet ({sold} sold; the ranking lags; not a check)"),
        }
    );
    for entry in &r.top {
        let field = |name: &str| entry.get(name).cloned().unwrap_or(Value::Null);
        println!(
            "  #{} concert {} {} — {} tickets",
            field("rank"),
            field("concert_id"),
            field("title"),
            field("tickets")
        );
    }
}
