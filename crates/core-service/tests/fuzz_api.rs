//! The HTTP API fuzzed from its own OpenAPI document with schemathesis: no
//! 5xx, nothing undocumented, every error a problem, over at least a
//! thousand generated requests. The runner is queue-service's, included by
//! path so that both services share one.

mod common;
#[path = "../../queue-service/tests/schemathesis/mod.rs"]
mod schemathesis;

use common::{CORE_ADMIN_KEY, spawn_app};
use schemathesis::Fuzz;

/// The fan whose tokens every request carries.
const FAN: &str = "fuzz-fan";
/// Another fan, whose reservation and balance the first may not touch.
const OTHER: &str = "fuzz-other";
/// What schemathesis expects of a request its document calls valid, by
/// default: success, or an answer about auth, absence, state or rate.
const VALID: &str = r#""2xx", "3xx", "401", "403", "404", "409", "429""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_only_documented_answers_and_never_a_server_error() {
    let app = spawn_app().await;
    let show = app.create_show(4, 10, 1_000, 4).await;
    let performance = show.performance_id;
    let pass = app.access_token(performance, FAN).await;
    let other = app.access_token(performance, OTHER).await;
    for fan in [FAN, OTHER] {
        assert!(app.charge(fan, 10_000_000).await.status.is_success());
    }
    let mut reservations = Vec::new();
    for (who, seat) in [(&pass, show.seat_ids[0]), (&other, show.seat_ids[1])] {
        let held = app.hold(who, performance, &[seat]).await;
        assert!(held.status.is_success(), "{}", held.body);
        reservations.push(held.body["reservation_id"].clone());
    }
    let concerts = app.get("/v1/concerts").await;
    let concert = &concerts.body["concerts"][0]["id"];
    let campaign = app.open_campaign("Fuzzed", 1_000, 100).await;
    // Half the generated ids name what was seeded, so that requests get
    // past "not found"; the rest are whatever schemathesis makes. The
    // admin key goes only to the admin routes: with it, a read of a fan's
    // reservation or balance is the operator's, never the fan's.
    //
    // A request the document calls valid may still be refused for the
    // state it meets, like a 404 or a 409: unknown seats or more than the
    // performance allows (holds), a short balance, a lapsed hold or a
    // reused key (payments), a full balance (charges), and the concert
    // rules that span fields, which a schema cannot state. Those statuses
    // are added, per route, to what schemathesis expects of valid data.
    //
    // User ids are 1-64 bytes, which a schema can only say as 1-64
    // characters: the routes that take one get ASCII ids, for which the
    // two are the same.
    let seats = serde_json::to_string(&show.seat_ids).unwrap();
    let reservations = serde_json::to_string(&reservations).unwrap();
    let config = format!(
        r#"
[dictionaries.performance]
values = [{performance}]

[dictionaries.seat]
values = {seats}

[dictionaries.reservation]
values = {reservations}

[dictionaries.concert]
values = [{concert}]

[dictionaries.fan]
values = ["{FAN}", "{OTHER}"]

[dictionaries.campaign]
values = [{campaign}]

[parameters]
"body.performance_id" = {{ dictionary = "performance", probability = 0.5 }}
"body.seat_ids[*]" = {{ dictionary = "seat", probability = 0.5 }}
"body.reservation_id" = {{ dictionary = "reservation", probability = 0.5 }}

[[operations]]
include-path = "/v1/concerts/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "concert", probability = 0.5 }} }}

[[operations]]
include-path = "/v1/performances/{{id}}/seats"
parameters = {{ "path.id" = {{ dictionary = "performance", probability = 0.5 }} }}

[[operations]]
include-path = "/v1/reservations"
checks.positive_data_acceptance.expected-statuses = [{VALID}, "422"]

[[operations]]
include-path = "/v1/reservations/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "reservation", probability = 0.5 }} }}

[[operations]]
include-path = "/v1/payments"
checks.positive_data_acceptance.expected-statuses = [{VALID}, "402", "410", "422"]

[[operations]]
include-path = "/v1/users/{{id}}/balance"
generation.codec = "ascii"
parameters = {{ "path.id" = {{ dictionary = "fan", probability = 0.5 }} }}

[[operations]]
include-path = "/v1/users/{{id}}/balance/charges"
headers = {{ X-Admin-Key = "{CORE_ADMIN_KEY}" }}
generation.codec = "ascii"
parameters = {{ "path.id" = {{ dictionary = "fan", probability = 0.5 }} }}
checks.positive_data_acceptance.expected-statuses = [{VALID}, "422"]

[[operations]]
include-path = "/admin/v1/concerts"
headers = {{ X-Admin-Key = "{CORE_ADMIN_KEY}" }}
checks.positive_data_acceptance.expected-statuses = [{VALID}, "422"]

[[operations]]
include-path = "/admin/v1/coupon-campaigns"
headers = {{ X-Admin-Key = "{CORE_ADMIN_KEY}" }}
checks.positive_data_acceptance.expected-statuses = [{VALID}, "422"]

[[operations]]
include-path-regex = "^/admin/v1/coupon-campaigns/[{{]id[}}]"
headers = {{ X-Admin-Key = "{CORE_ADMIN_KEY}" }}
parameters = {{ "path.id" = {{ dictionary = "campaign", probability = 0.5 }} }}

[[operations]]
include-path = "/v1/coupon-campaigns/{{id}}/claims"
parameters = {{ "path.id" = {{ dictionary = "campaign", probability = 0.5 }} }}
"#
    );
    let fuzz = Fuzz {
        name: "core-service",
        base: &app.base,
        headers: vec![
            ("Authorization", format!("Bearer {}", pass.identity)),
            ("Onsale-Access-Token", pass.access.clone()),
        ],
        config,
        max_examples: 150,
    };
    let verdict = fuzz.run(&[&[]]).await;
    verdict.assert_clean();
    // What the fuzzer made (hundreds of concerts, up to a million seats,
    // hundreds of megabytes) is of no use once the run passed.
    let database = app.database_url.clone();
    drop(app);
    drop_database(&database).await;
}

/// Drops the database of `url` from the stack's Postgres server, ending
/// its connections; a failure is reported, not fatal.
async fn drop_database(url: &str) {
    use sqlx::{Connection, Executor};
    let name = url.rsplit('/').next().unwrap_or_default();
    let name = name.split('?').next().unwrap_or_default();
    let dropped = async {
        let mut admin =
            sqlx::PgConnection::connect(&devstack::testing::stack().database_url).await?;
        // Identifiers cannot be bound; the name is the harness's own.
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        admin.execute(sqlx::AssertSqlSafe(sql)).await
    };
    if let Err(error) = dropped.await {
        eprintln!("dropping the fuzzed database {name} failed: {error}");
    }
}
