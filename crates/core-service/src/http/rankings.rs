//! `GET /v1/rankings/concerts`: the popular-concert ranking, a public
//! catalog read (rate-limited per client address). It parses and checks
//! the query, then asks [`Ranking`](crate::ranking::Ranking), which never
//! fails: with Redis down it answers a snapshot or an empty list marked
//! `stale`, so the only errors are 400 (and the router's 429).

use axum::{Json, extract::State};
use platform::problem::ApiQuery;
use serde::Deserialize;
use tracing::instrument;
use utoipa::IntoParams;

use super::AppState;
use crate::{
    api::ranking::{ConcertRanking, RankingWindow},
    error::ApiError,
    ranking::{DEFAULT_LIMIT, MAX_LIMIT},
};

/// The query of `GET /v1/rankings/concerts`, as sent. Both are read as text
/// and checked by [`parse`], so every bad value gets the same 400
/// `invalid_request` naming the parameter (a typed field would answer
/// `malformed_query` for some and `invalid_request` for others).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RankingQuery {
    /// The window counted: `1h` (default) or `24h`.
    #[param(value_type = Option<RankingWindow>)]
    pub window: Option<String>,
    /// How many concerts at most, 1–100 (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The window and limit of `query`, with their defaults (`1h`, 10).
///
/// # Errors
/// 400 `invalid_request` for a window other than `1h` or `24h`, or a limit
/// that is not an integer in 1–100.
pub fn parse(query: &RankingQuery) -> Result<(RankingWindow, usize), ApiError> {
    let window = match query.window.as_deref() {
        None => RankingWindow::Hour,
        Some(raw) => RankingWindow::parse(raw)
            .ok_or_else(|| ApiError::BadRequest("window must be 1h or 24h".into()))?,
    };
    let limit = match query.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            })?,
    };
    Ok((window, limit))
}

/// `GET /v1/rankings/concerts`: concerts by tickets sold in the window,
/// best first (ties by concert id). Live counts are at most
/// `ranking.cache_ms` (1 s) old; while Redis is unreachable the answer is
/// the newest snapshot (taken every 10 minutes) with `stale: true`, or an
/// empty list with `stale: true`. Never a 5xx.
#[utoipa::path(get, path = "/v1/rankings/concerts", tag = "catalog", params(RankingQuery), responses(
    (status = 200, body = ConcertRanking, description = "The ranking: live, or a snapshot or an \
        empty list with `stale: true` while Redis is unreachable"),
    (status = 400, description = "`invalid_request`: a window other than `1h` or `24h`, or a limit \
        that is not an integer from 1 to 100; `malformed_query`: an undecodable query string"),
    (status = 429, description = "`rate_limited` per client address (Retry-After, RateLimit-Policy, RateLimit)")))]
#[instrument(skip_all, fields(
    window = tracing::field::Empty,
    limit = tracing::field::Empty,
    stale = tracing::field::Empty,
    concerts = tracing::field::Empty,
))]
pub async fn concert_ranking(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RankingQuery>,
) -> Result<Json<ConcertRanking>, ApiError> {
    let (window, limit) = parse(&query)?;
    let span = tracing::Span::current();
    span.record("window", window.as_str());
    span.record("limit", limit);
    let answer = state.ranking.concerts(window, limit).await;
    span.record("stale", answer.stale);
    span.record("concerts", answer.concerts.len());
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(window: Option<&str>, limit: Option<&str>) -> RankingQuery {
        RankingQuery {
            window: window.map(str::to_owned),
            limit: limit.map(str::to_owned),
        }
    }

    #[test]
    fn the_defaults_are_one_hour_and_ten_concerts() {
        assert_eq!(
            parse(&query(None, None)).unwrap(),
            (RankingWindow::Hour, 10)
        );
        assert_eq!(
            parse(&query(Some("24h"), Some("100"))).unwrap(),
            (RankingWindow::Day, 100)
        );
    }

    #[test]
    fn other_windows_and_limits_outside_one_to_one_hundred_are_bad_requests() {
        for (window, limit) in [
            (Some("2h"), None),
            (Some(""), None),
            (Some("1H"), None),
            (None, Some("0")),
            (None, Some("101")),
            (None, Some("-1")),
            (None, Some("ten")),
            (None, Some("")),
        ] {
            let error = parse(&query(window, limit)).unwrap_err();
            assert_eq!(
                error.status(),
                axum::http::StatusCode::BAD_REQUEST,
                "{window:?} {limit:?}"
            );
        }
    }
}

#[cfg(test)]
mod document {
    use utoipa::OpenApi;

    #[test]
    fn the_ranking_is_documented_with_optional_query_parameters_and_no_5xx() {
        let doc = serde_json::to_value(crate::http::ApiDoc::openapi()).unwrap();
        let get = &doc["paths"]["/v1/rankings/concerts"]["get"];
        let parameters = get["parameters"].as_array().unwrap();
        assert_eq!(parameters.len(), 2);
        for parameter in parameters {
            assert_eq!(
                (&parameter["in"], &parameter["required"]),
                (&"query".into(), &false.into())
            );
        }
        assert_eq!(
            parameters[0]["schema"]["$ref"],
            "#/components/schemas/RankingWindow"
        );
        assert_eq!(
            (
                &parameters[1]["schema"]["minimum"],
                &parameters[1]["schema"]["maximum"]
            ),
            (&1.into(), &100.into())
        );
        let responses = get["responses"].as_object().unwrap();
        assert!(responses.keys().all(|status| !status.starts_with('5')));
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["RankingWindow"]["enum"],
            serde_json::json!(["1h", "24h"])
        );
        for field in ["window", "as_of", "stale", "concerts"] {
            let required = schemas["ConcertRanking"]["required"].as_array().unwrap();
            assert!(required.contains(&field.into()), "{field}");
        }
    }
}
