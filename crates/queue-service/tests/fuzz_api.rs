//! The HTTP API fuzzed from its own OpenAPI document with schemathesis
//! (see `schemathesis/mod.rs`): no 5xx, nothing undocumented, every error
//! a problem, over at least a thousand generated requests.

mod common;
mod schemathesis;

use common::{ADMIN_KEY, QUEUE_TOKEN, event_id, identity, room, spawn_app};
use schemathesis::Fuzz;

/// The fan whose tokens every request carries.
const FAN: &str = "fuzz-fan";

#[tokio::test]
async fn generated_requests_get_only_documented_answers_and_never_a_server_error() {
    let app = spawn_app().await;
    // Half the generated event ids name a room where the fan is admitted,
    // so that status and leave get past the queue token; the rest are
    // whatever schemathesis makes.
    let event = event_id();
    app.open_room(&event, room(100_000, 1_000.0)).await;
    let (queue_token, _) = app.admitted(&event, FAN).await;
    // Once a generated leave has run, the fan's polls are 410 `not_in_line`:
    // an answer about the fan's state, like a 404 or a 409.
    let config = format!(
        r#"
[dictionaries.seeded]
values = ["{event}"]

[parameters]
"path.event_id" = {{ dictionary = "seeded", probability = 0.5 }}

[[operations]]
include-path = "/v1/events/{{event_id}}/queue/status"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "410", "429"]
"#
    );
    let fuzz = Fuzz {
        name: "queue-service",
        base: &app.base,
        headers: vec![
            ("Authorization", format!("Bearer {}", identity(FAN))),
            (QUEUE_TOKEN, queue_token),
            ("X-Admin-Key", ADMIN_KEY.to_owned()),
        ],
        config,
        max_examples: 300,
    };
    // Room settings come last: a room the fuzzer paused answers 503 to
    // every fan, by design, and its event ids are the ones the fan
    // routes get too.
    let verdict = fuzz
        .run(&[&["--exclude-method", "PUT"], &["--include-method", "PUT"]])
        .await;
    verdict.assert_clean();
}
