//! OpenAPI pieces both services document the same way: the identity-token
//! and admin-key security schemes, and the problem+json body of every error
//! answer ([`ProblemBodies`], [`ProblemDetails`]).

use serde::{Deserialize, Serialize};
use utoipa::{
    Modify, ToSchema,
    openapi::{
        Content, RefOr, Response,
        schema::Ref,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// Name of the identity scheme in `components.securitySchemes`.
pub const IDENTITY_SCHEME: &str = "identity";
/// Name of the admin-key scheme in `components.securitySchemes`.
pub const ADMIN_KEY_SCHEME: &str = "admin_key";

/// `Authorization: Bearer <identity token>`: the fan's OpenID Connect
/// identity token (see [`crate::identity`]).
#[must_use]
pub fn identity_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "The fan's OpenID Connect identity token from the platform's issuer \
                 (RS256 or ES256, audience `onsale` locally); its `sub` is the fan's user id.",
            ))
            .build(),
    )
}

/// `X-Admin-Key`: the operator key of the admin API (see
/// [`crate::auth::AdminKey`]).
#[must_use]
pub fn admin_key_scheme() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
        "X-Admin-Key",
        "The operator key of the admin API.",
    )))
}

/// Adds both schemes to `openapi` under [`IDENTITY_SCHEME`] and
/// [`ADMIN_KEY_SCHEME`].
pub fn add_common_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(IDENTITY_SCHEME, identity_scheme());
    components.add_security_scheme(ADMIN_KEY_SCHEME, admin_key_scheme());
}

/// Name of the problem schema in `components.schemas` that
/// [`ProblemBodies`] refers to. Each document registers its own schema
/// under it: [`ProblemDetails`], or one that lists a service's extension
/// members too.
pub const PROBLEM_SCHEMA: &str = "ProblemDetails";

/// The media type of every error body ([`crate::problem::Problem`]).
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem, as every onsale service writes it
/// (`platform::problem::Problem`): the body of every 4xx and 5xx answer.
/// Clients branch on `code`; a problem may add extension members.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemDetails {
    /// `https://onsale.dev/problems/<code with - for _>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// Stable snake_case code, e.g. `rate_limited`.
    pub code: String,
}

/// Modifier that gives every 4xx and 5xx answer of every operation that
/// names no body the `application/problem+json` body
/// `#/components/schemas/ProblemDetails` ([`PROBLEM_SCHEMA`]), so each
/// route documents only its statuses and their codes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemBodies;

impl Modify for ProblemBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, response) in &mut operation.responses.responses {
                    if let RefOr::T(response) = response
                        && is_error(status)
                    {
                        add_problem_body(response);
                    }
                }
            }
        }
    }
}

fn is_error(status: &str) -> bool {
    status.parse::<u16>().is_ok_and(|code| code >= 400)
}

fn add_problem_body(response: &mut Response) {
    if response.content.is_empty() {
        response.content.insert(
            PROBLEM_MEDIA_TYPE.to_owned(),
            Content::new(Some(Ref::from_schema_name(PROBLEM_SCHEMA))),
        );
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    /// A route with a success, an error without a body and an error with a
    /// body of its own.
    #[utoipa::path(get, path = "/thing", responses(
        (status = 200, description = "The thing", body = String),
        (status = 404, description = "No thing"),
        (status = 503, description = "Down", body = String, content_type = "text/plain"),
    ))]
    #[allow(dead_code)]
    fn thing() {}

    #[derive(OpenApi)]
    #[openapi(paths(thing), components(schemas(ProblemDetails)), modifiers(&ProblemBodies))]
    struct Doc;

    #[test]
    fn errors_without_a_body_get_the_problem_schema_and_others_keep_theirs() {
        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        let responses = &doc["paths"]["/thing"]["get"]["responses"];
        assert_eq!(
            responses["404"]["content"][PROBLEM_MEDIA_TYPE]["schema"]["$ref"],
            "#/components/schemas/ProblemDetails"
        );
        assert!(
            responses["503"]["content"]
                .get(PROBLEM_MEDIA_TYPE)
                .is_none()
        );
        assert!(
            responses["200"]["content"]
                .get(PROBLEM_MEDIA_TYPE)
                .is_none()
        );
        let required = &doc["components"]["schemas"][PROBLEM_SCHEMA]["required"];
        for member in ["type", "title", "status", "detail", "code"] {
            assert!(
                required.as_array().unwrap().contains(&member.into()),
                "{member}"
            );
        }
    }
}
