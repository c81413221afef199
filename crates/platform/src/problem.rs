//! RFC 9457 problem details (`application/problem+json`).
//!
//! Every error leaving an onsale HTTP API is a [`Problem`]:
//!
//! ```json
//! {"type":"https://onsale.dev/problems/seat-taken","title":"Seat already taken",
//!  "status":409,"detail":"2 of the requested seats are held by someone else",
//!  "code":"seat_taken","seats_available":118}
//! ```
//!
//! `code` is stable and machine-readable; `type` is derived from it; extra
//! members (such as `seats_available`) are RFC 9457 extensions. Problems are
//! never cacheable (`Cache-Control: no-store`), and 429/503 carry
//! `Retry-After` in seconds.
//!
//! The extractors [`ApiJson`], [`ApiPath`] and [`ApiQuery`] turn axum's own
//! rejections into 400 problems, so a malformed body or id never reaches a
//! handler and never produces axum's plain-text errors. [`ApiJson`] also
//! takes `2.0` for an integer, as the JSON Schemas of the documents do.

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use self::whole_numbers::integers_respelled;

mod whole_numbers;

/// Base of every problem `type` URI; the stable code follows it with `_`
/// replaced by `-`.
pub const TYPE_BASE: &str = "https://onsale.dev/problems/";

/// An RFC 9457 problem response.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    retry_after_seconds: Option<u64>,
    extensions: Map<String, Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten)]
    extensions: &'a Map<String, Value>,
}

impl Problem {
    /// A problem with `status`, a stable snake_case `code` and a short
    /// human `title`. The detail defaults to the title.
    pub fn new(status: StatusCode, code: &'static str, title: &'static str) -> Self {
        Self {
            status,
            code,
            title,
            detail: title.to_owned(),
            retry_after_seconds: None,
            extensions: Map::new(),
        }
    }

    /// Sets the occurrence-specific explanation shown to the client.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Adds a `Retry-After` header, in seconds (at least 1).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    /// Adds an extension member to the body.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// 400 `bad_request` with `detail`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request").detail(detail)
    }

    /// 404 `not_found` with `detail`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found").detail(detail)
    }

    /// 503 `unavailable` for a dependency that failed. The cause's whole
    /// chain is logged here and hidden from the client.
    pub fn unavailable(
        dependency: &'static str,
        cause: &(dyn std::error::Error + 'static),
    ) -> Self {
        tracing::error!(dependency, error = %ErrorChain(cause), "dependency failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service temporarily unavailable",
        )
        .detail(format!("{dependency} is unavailable; try again shortly"))
        .retry_after(1)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// Displays an error followed by every `source()` in its chain, separated by
/// `: `, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!("{TYPE_BASE}{}", self.code.replace('_', "-")),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extensions: &self.extensions,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported_content_type",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::JsonDataError(_) => "invalid_body",
            _ => "malformed_body",
        };
        Problem::new(StatusCode::BAD_REQUEST, code, "Malformed request body")
            .detail(rejection.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_path",
            "Malformed path parameter",
        )
        .detail(rejection.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_query",
            "Malformed query string",
        )
        .detail(rejection.body_text())
    }
}

/// `axum::Json` whose rejection is a 400 [`Problem`], and which also takes
/// a whole number written as a float (`2.0`, `1e3`) where an integer is
/// expected: JSON Schema's `integer`, as the OpenAPI documents use it,
/// admits both spellings, and JSON itself does not tell them apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(JsonRejection::from)?;
        let request = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            // Only a body that fails is read again, so every other keeps
            // axum's path and error messages.
            Err(JsonRejection::JsonDataError(error)) => integers_respelled(&bytes)
                .and_then(|respelled| axum::Json::<T>::from_bytes(&respelled).ok())
                .map(|axum::Json(value)| Self(value))
                .ok_or_else(|| JsonRejection::JsonDataError(error).into()),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejection is a 400 [`Problem`].
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(Problem))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` whose rejection is a 400 [`Problem`].
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Problem))]
pub struct ApiQuery<T>(pub T);

/// Router fallback: 404 problem for unknown paths.
pub async fn not_found_fallback() -> Problem {
    Problem::not_found("no such resource")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(problem: Problem) -> (Response<()>, Value) {
        let response = problem.into_response();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_problem_has_every_rfc_9457_member_and_a_stable_code() {
        let (response, json) = body(
            Problem::new(StatusCode::CONFLICT, "seat_taken", "Seat already taken")
                .detail("taken")
                .with("seats_available", 3),
        )
        .await;
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(json["type"], "https://onsale.dev/problems/seat-taken");
        assert_eq!(json["title"], "Seat already taken");
        assert_eq!(json["status"], 409);
        assert_eq!(json["detail"], "taken");
        assert_eq!(json["code"], "seat_taken");
        assert_eq!(json["seats_available"], 3);
    }

    fn json_request(body: &str) -> Request {
        Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap()
    }

    #[derive(Debug, serde::Deserialize)]
    struct Seats {
        count: u32,
        ids: Vec<i64>,
        price: f64,
    }

    #[tokio::test]
    async fn whole_numbers_spelled_as_floats_are_integers_and_fractions_are_not() {
        let body = r#"{"count": 2.0, "ids": [1e3, -4.0, 5], "price": 7.0}"#;
        let ApiJson(seats) = ApiJson::<Seats>::from_request(json_request(body), &())
            .await
            .unwrap();
        assert_eq!(
            (seats.count, seats.ids, seats.price),
            (2, vec![1000, -4, 5], 7.0)
        );
        let body = r#"{"count": 2.5, "ids": [1.0], "price": 7}"#;
        let refused = ApiJson::<Seats>::from_request(json_request(body), &())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "invalid_body");
        // The refusal is axum's, naming the field, as without the respelling.
        assert!(
            refused.detail.contains("count: invalid type"),
            "{}",
            refused.detail
        );
        let huge = r#"{"count": 1, "ids": [9223372036854775808.0], "price": 1}"#;
        let refused = ApiJson::<Seats>::from_request(json_request(huge), &())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "invalid_body");
    }

    #[tokio::test]
    async fn json_bodies_keep_their_refusals() {
        let refused = ApiJson::<Seats>::from_request(json_request("{\"count\": "), &())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "malformed_json");
        let plain = Request::builder()
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let refused = ApiJson::<Seats>::from_request(plain, &())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "unsupported_content_type");
    }

    #[tokio::test]
    async fn unavailable_hides_the_cause_and_asks_to_retry() {
        let cause = std::io::Error::other("password=hunter2 rejected");
        let (response, json) = body(Problem::unavailable("redis", &cause)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert!(!json.to_string().contains("hunter2"));
    }
}
