//! Failures of a call, and the RFC 9457 problem body of a refusal.

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Operation;

/// An RFC 9457 problem (`application/problem+json`), as both services send
/// it: `code` is the stable, machine-readable reason (e.g. `seat_taken`);
/// extension members (e.g. `seats_available`, `balance_krw`) are kept in
/// [`Problem::extensions`]. Members a body lacks are empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `type`: a URI derived from `code`.
    #[serde(rename = "type", default)]
    pub problem_type: String,
    /// Short human summary of the kind of problem.
    #[serde(default)]
    pub title: String,
    /// The HTTP status, repeated in the body.
    #[serde(default)]
    pub status: u16,
    /// What went wrong this time.
    #[serde(default)]
    pub detail: String,
    /// The stable reason, e.g. `rate_limited`, `seat_taken`.
    #[serde(default)]
    pub code: String,
    /// Every other member of the body.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// Why a call gave no decoded answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No response: connection refused or reset, a timeout, a body cut off.
    #[error("{operation}: no response")]
    Transport {
        /// The call.
        operation: Operation,
        /// What reqwest reported.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered with a status that is not 2xx.
    #[error("{operation}: {status}{}", describe(.problem.as_deref()))]
    Status {
        /// The call.
        operation: Operation,
        /// The response status.
        status: StatusCode,
        /// The problem body, when the response carried one.
        problem: Option<Box<Problem>>,
        /// `Retry-After` (whole seconds), sent with 429 and 503.
        retry_after: Option<Duration>,
    },
    /// A 2xx response whose body is not the expected JSON.
    #[error("{operation}: unexpected body with {status}")]
    Decode {
        /// The call.
        operation: Operation,
        /// The response status.
        status: StatusCode,
        /// What serde reported.
        #[source]
        source: serde_json::Error,
    },
}

fn describe(problem: Option<&Problem>) -> String {
    problem.map_or_else(String::new, |p| format!(" {}: {}", p.code, p.detail))
}

impl Error {
    /// The [`Error::Status`] of a refused call.
    pub(crate) fn refused(
        operation: Operation,
        status: StatusCode,
        headers: &header::HeaderMap,
        body: &[u8],
    ) -> Self {
        let problem = crate::is_problem(headers)
            .then(|| serde_json::from_slice::<Problem>(body).ok())
            .flatten()
            .map(Box::new);
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Self::Status {
            operation,
            status,
            problem,
            retry_after,
        }
    }

    /// The call that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Transport { operation, .. }
            | Self::Status { operation, .. }
            | Self::Decode { operation, .. } => *operation,
        }
    }

    /// The response status, when there was a response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Transport { .. } => None,
            Self::Status { status, .. } | Self::Decode { status, .. } => Some(*status),
        }
    }

    /// The problem body of a refusal.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Status { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// The problem's stable `code`, e.g. `seat_taken`.
    pub fn code(&self) -> Option<&str> {
        self.problem().map(|p| p.code.as_str())
    }

    /// `Retry-After` of a refusal.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True for 429 and 503: the service shed the request and a later try
    /// may succeed (after [`Error::retry_after`]).
    pub fn is_shed(&self) -> bool {
        matches!(
            self.status(),
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        )
    }

    /// True when the service answered (with any status), as opposed to a
    /// call that got no response.
    pub fn answered(&self) -> bool {
        !matches!(self, Self::Transport { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> header::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), header::HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn a_problem_body_and_retry_after_are_read_from_a_refusal() {
        let body = br#"{"type":"https://onsale.dev/problems/seat-taken","title":"Seat already taken","status":409,"detail":"2 seats are held","code":"seat_taken","seats_available":118}"#;
        let error = Error::refused(
            Operation::Hold,
            StatusCode::CONFLICT,
            &headers(&[
                (header::CONTENT_TYPE, "application/problem+json"),
                (header::RETRY_AFTER, "3"),
            ]),
            body,
        );
        assert_eq!(error.status(), Some(StatusCode::CONFLICT));
        assert_eq!(error.code(), Some("seat_taken"));
        assert_eq!(error.problem().unwrap().extensions["seats_available"], 118);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
        assert!(!error.is_shed());
        assert_eq!(
            error.to_string(),
            "holding seats: 409 Conflict seat_taken: 2 seats are held"
        );
    }

    #[test]
    fn a_body_that_is_not_a_problem_is_left_out() {
        let error = Error::refused(
            Operation::Enter,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[(header::CONTENT_TYPE, "text/plain")]),
            b"slow down",
        );
        assert_eq!(error.problem(), None);
        assert!(error.is_shed());
        assert!(error.answered());
    }
}
