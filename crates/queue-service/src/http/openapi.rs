//! The OpenAPI 3.1 document served at `/openapi.json`: the paths of
//! [`super`], the security schemes they name, and a problem+json body on
//! every error answer ([`ProblemBodies`]).

use platform::openapi::{ProblemBodies, ProblemDetails};
use serde::Deserialize;
use utoipa::{
    IntoParams, Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};

use crate::{
    api::{CoreHealth, EnterRequest, ExitCounts, Readiness, RoomRequest, RoomStats},
    domain::{RoomConfig, RoomState},
    service::{FanStatus, Ticket},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "onsale queue-service",
        description = "Virtual waiting room: fair line, admission, access tokens. Fan calls \
            carry the fan's identity token (`Authorization: Bearer`, security scheme \
            `identity`); status and leave also carry the ticket's queue token \
            (`Onsale-Queue-Token`, scheme `queue_token`), which must name the same fan. \
            Errors are RFC 9457 problems (`application/problem+json`) with a stable `code`."
    ),
    paths(
        super::enter,
        super::status,
        super::leave,
        super::put_room,
        super::get_room,
        super::room_stats,
        super::healthz,
        super::readyz
    ),
    components(schemas(
        Ticket,
        FanStatus,
        EnterRequest,
        RoomRequest,
        RoomConfig,
        RoomState,
        RoomStats,
        ExitCounts,
        CoreHealth,
        Readiness,
        ProblemDetails
    )),
    modifiers(&SecuritySchemes, &ProblemBodies)
)]
struct ApiDoc;

/// The security schemes the paths refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        platform::openapi::add_common_schemes(openapi);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "queue_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Onsale-Queue-Token",
                "The `queue_token` of the fan's ticket (from entry or status).",
            ))),
        );
    }
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `{event_id}` of every waiting-room path, as documented; handlers
/// parse it with [`super::event_id`], which refuses what the pattern
/// excludes.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the OpenAPI document only
pub(super) struct EventPath {
    /// Performance id: 1 to 64 characters of `[A-Za-z0-9_-]`.
    #[param(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_is_3_1_and_lists_the_fan_api() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc["paths"]["/v1/events/{event_id}/queue"]["post"].is_object());
        assert!(doc["paths"]["/admin/v1/events/{event_id}/waiting-room/stats"]["get"].is_object());
    }

    #[test]
    fn every_error_answer_is_a_problem_and_every_event_id_has_the_parsed_pattern() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let problem = serde_json::json!({
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
        });
        let mut errors = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.as_str() >= "400" && path != "/readyz" {
                        assert_eq!(response["content"], problem, "{method} {path} {status}");
                        errors += 1;
                    }
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    assert_eq!(parameter["required"], true, "{method} {path}");
                    assert_eq!(
                        parameter["schema"]["pattern"], "^[A-Za-z0-9_-]{1,64}$",
                        "{method} {path}"
                    );
                }
            }
        }
        assert!(errors > 20, "{errors}");
        assert!(doc["components"]["schemas"]["ProblemDetails"].is_object());
    }

    #[test]
    fn the_openapi_document_names_the_identity_and_queue_token_headers() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["identity"]["scheme"], "bearer");
        assert_eq!(
            (
                schemes["queue_token"]["in"].as_str(),
                schemes["queue_token"]["name"].as_str()
            ),
            (Some("header"), Some("Onsale-Queue-Token"))
        );
        assert_eq!(schemes["admin_key"]["name"], "X-Admin-Key");
        let paths = &doc["paths"];
        let enter = &paths["/v1/events/{event_id}/queue"]["post"];
        assert_eq!(enter["security"], serde_json::json!([{"identity": []}]));
        assert_ne!(
            enter["requestBody"]["required"], true,
            "the body is optional"
        );
        for (path, method) in [
            ("/v1/events/{event_id}/queue/status", "get"),
            ("/v1/events/{event_id}/queue", "delete"),
        ] {
            assert_eq!(
                paths[path][method]["security"],
                serde_json::json!([{"identity": [], "queue_token": []}]),
                "{method} {path}"
            );
        }
    }
}
