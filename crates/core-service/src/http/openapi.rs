//! The OpenAPI 3.1 document served at `/openapi.json`: the paths of
//! [`super::handlers`], the security schemes of the module docs of
//! [`super`], and a problem+json body on every error answer
//! ([`ProblemBodies`], with this service's [`ProblemDetails`]).

use platform::openapi::ProblemBodies;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};

use super::{coupons, handlers, rankings, seatmap};
use crate::api::ProblemDetails;

/// The OpenAPI document served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "onsale core-service", description = "Concerts, seat holds, payments and balances. \
        Fan routes need the fan's OIDC identity token (`Authorization: Bearer`, the `identity` \
        scheme); holds and payments also need the waiting room's access token issued to the same \
        fan (`Onsale-Access-Token`, the `access_token` scheme). Errors are RFC 9457 problems \
        (`application/problem+json`) with a stable `code`."),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::list_concerts,
        handlers::get_concert,
        seatmap::get_seats,
        seatmap::get_layout,
        seatmap::get_availability,
        handlers::create_reservation,
        handlers::get_reservation,
        handlers::delete_reservation,
        handlers::create_payment,
        handlers::charge_balance,
        handlers::get_balance,
        handlers::create_concert,
        coupons::create_campaign,
        coupons::get_campaign,
        coupons::reconcile_campaign,
        coupons::claim_coupon,
        coupons::list_coupons,
        rankings::concert_ranking,
    ),
    components(schemas(
        ProblemDetails,
        crate::api::ranking::ConcertRanking,
        crate::api::ranking::RankedConcert,
        crate::api::ranking::RankingWindow,
        crate::api::BestAvailable,
        crate::api::seatmap::LayoutSection,
        crate::api::seatmap::LayoutRow,
        crate::api::seatmap::SeatRun,
    )),
    modifiers(&Security, &ProblemBodies),
    tags(
        (name = "catalog", description = "Concerts, performances, seat maps and the popular-concert ranking"),
        (name = "reservations", description = "Seat holds"),
        (name = "payments", description = "Idempotent payments from the prepaid balance"),
        (name = "balance", description = "Prepaid KRW balances"),
        (name = "admin", description = "Operator API (X-Admin-Key)"),
        (name = "coupons", description = "First-come coupon campaigns (X-Admin-Key), claims and a fan's coupons"),
        (name = "ops", description = "Health"),
    )
)]
pub struct ApiDoc;

/// The schemes that the paths' `security` names.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        platform::openapi::add_common_schemes(openapi);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Onsale-Access-Token",
                "The waiting room's access token for the performance (the bare token, no \
                 scheme), issued on admission to the fan of the identity token.",
            ))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    #[test]
    fn the_openapi_document_is_3_1_and_lists_the_public_paths() {
        let doc = document();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/reservations",
            "/v1/payments",
            "/v1/performances/{id}/seats",
            "/v1/users/{id}/balance/charges",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(doc["components"]["schemas"].get("Reservation").is_some());
    }

    #[test]
    fn holds_and_payments_need_both_the_identity_and_the_access_token() {
        let doc = document();
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["identity"]["scheme"], "bearer");
        assert_eq!(schemes["access_token"]["in"], "header");
        assert_eq!(schemes["access_token"]["name"], "Onsale-Access-Token");
        for (path, method) in [("/v1/reservations", "post"), ("/v1/payments", "post")] {
            let security = &doc["paths"][path][method]["security"];
            assert_eq!(
                security,
                &serde_json::json!([{"identity": [], "access_token": []}]),
                "{method} {path}"
            );
        }
        let read = &doc["paths"]["/v1/users/{id}/balance"]["get"]["security"];
        assert_eq!(
            read,
            &serde_json::json!([{"identity": []}, {"admin_key": []}])
        );
    }

    #[test]
    fn every_error_answer_is_a_problem_and_the_new_ones_are_documented() {
        let doc = document();
        let hold = &doc["paths"]["/v1/reservations"]["post"]["responses"];
        for status in ["401", "403", "409", "429", "503"] {
            assert_eq!(
                hold[status]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/ProblemDetails",
                "{status}"
            );
        }
        let conflict = hold["409"]["description"].as_str().unwrap();
        for code in ["order_limit", "fan_limit", "seat_taken"] {
            assert!(conflict.contains(code), "{code} missing from {conflict}");
        }
        assert!(
            hold["403"]["description"]
                .as_str()
                .unwrap()
                .contains("token_subject_mismatch")
        );
        let seats = &doc["paths"]["/v1/performances/{id}/seats"]["get"]["responses"];
        assert!(seats.get("429").is_some());
        let read = &doc["paths"]["/v1/reservations/{id}"]["get"]["responses"];
        assert!(read.get("401").is_some() && read.get("404").is_some());
        assert!(doc["components"]["schemas"].get("ProblemDetails").is_some());
    }

    #[test]
    fn paging_is_in_the_query_and_ids_are_documented_as_the_handlers_parse_them() {
        let doc = document();
        let paging = &doc["paths"]["/v1/concerts"]["get"]["parameters"];
        for parameter in paging.as_array().unwrap() {
            assert_eq!(parameter["in"], "query", "{parameter}");
            assert_eq!(parameter["required"], false, "{parameter}");
        }
        let balance = &doc["paths"]["/v1/users/{id}/balance"]["get"]["parameters"][0];
        assert_eq!(
            (&balance["in"], &balance["required"]),
            (&"path".into(), &true.into())
        );
        assert_eq!(balance["schema"]["maxLength"], 64);
        assert!(balance["schema"]["pattern"].is_string());
        let schemas = &doc["components"]["schemas"];
        for id in ["PerformanceId", "Krw"] {
            assert_eq!(schemas[id]["minimum"], 1, "{id}");
        }
        let seats = &schemas["CreateReservation"]["properties"]["seat_ids"];
        assert_eq!(
            (&seats["minItems"], &seats["uniqueItems"]),
            (&1.into(), &true.into())
        );
        assert_eq!(seats["items"]["minimum"], 1);
    }
}
