//! Fuzzing an HTTP API from its own OpenAPI document with schemathesis
//! (PyPI), for the `fuzz_api` tests of both services.
//!
//! [`Fuzz::run`] installs the pinned [`VERSION`] once per machine, in a
//! virtualenv under the devstack state folder (`$DEVSTACK_DIR`, by default
//! `.devstack/` in the workspace; [`devstack::testing::python_tool`]), then
//! runs every check schemathesis has (`--checks all`) against
//! `/openapi.json`, with a fixed seed (`FUZZ_SEED` names another), and reads
//! its JSON and HAR reports into a [`Verdict`].
//! core-service includes this file by path, so the two services share one
//! runner instead of two copies.

#![allow(unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The schemathesis release the tests are written against; changing it
/// installs a new virtualenv beside the old one.
pub const VERSION: &str = "4.32.5";

/// Fewest checked test cases a run must have; fewer means the document or
/// the seeds stopped schemathesis from generating, which must not pass.
pub const MIN_CASES: u64 = 1_000;

/// The seed of every run unless `FUZZ_SEED` names another, so that a
/// failure seen once can be seen again.
const DEFAULT_SEED: &str = "20261201";

/// One schemathesis run against a service.
pub struct Fuzz<'a> {
    /// A short name for the report folder, e.g. `queue-service`.
    pub name: &'a str,
    /// The service's base URL, e.g. `http://127.0.0.1:1234`.
    pub base: &'a str,
    /// Headers sent with every request (`Authorization`, `X-Admin-Key`, …).
    pub headers: Vec<(&'static str, String)>,
    /// The text of a `schemathesis.toml` (dictionaries, parameters,
    /// per-operation settings).
    pub config: String,
    /// `--max-examples`: cases per operation and phase.
    pub max_examples: u32,
}

/// What a run did, from its reports: schemathesis' own verdict (the JSON
/// report) and every response it got (the HAR report).
#[derive(Debug, Default)]
pub struct Verdict {
    /// Test cases generated.
    pub generated: u64,
    /// Cases sent whose response some check looked at.
    pub checked: u64,
    /// Cases that failed a check.
    pub with_failures: u64,
    /// Cases that could not be sent or checked (connection errors, …).
    pub errored: u64,
    /// Failures by code (`ST103 Undocumented status code: 3 (GET /x)`),
    /// and run errors.
    pub problems: Vec<String>,
    /// Operations only ever answered 401/403: the seeded credentials did
    /// not work there.
    pub unauthenticated: Vec<String>,
    /// Responses received.
    pub responses: u64,
    /// Responses with a 5xx status (`503 GET /x`).
    pub server_errors: Vec<String>,
    /// 4xx and 5xx responses whose body is no problem+json with the same
    /// `status` and a `code`.
    pub not_problems: Vec<String>,
    /// How long schemathesis ran.
    pub elapsed: Duration,
    /// What schemathesis printed, for the failures' details.
    pub output: String,
}

impl Fuzz<'_> {
    /// Installs schemathesis when missing, then runs it once per pass of
    /// `passes` (extra arguments, e.g. `["--include-method", "PUT"]`), in
    /// order, and adds up what their reports say.
    ///
    /// # Panics
    /// When schemathesis cannot be installed or a pass wrote no report.
    pub async fn run(&self, passes: &[&[&str]]) -> Verdict {
        let python = install().await;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{}", self.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the report folder");
        let config = dir.join("schemathesis.toml");
        std::fs::write(&config, &self.config).expect("writing schemathesis.toml");
        let mut verdict = Verdict::default();
        for (number, extra) in passes.iter().enumerate() {
            let reports = dir.join(format!("pass-{number}"));
            verdict.add(self.pass(&python, &config, &reports, extra).await);
        }
        verdict
    }

    async fn pass(&self, python: &Path, config: &Path, reports: &Path, extra: &[&str]) -> Verdict {
        let seed = std::env::var("FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_owned());
        let (json, har) = (reports.join("report.json"), reports.join("responses.har"));
        let mut command = tokio::process::Command::new(python);
        command
            .current_dir(config.parent().expect("the report folder"))
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(config)
            .arg("run")
            .arg(format!("{}/openapi.json", self.base))
            .args(["--checks", "all", "--max-examples"])
            .arg(self.max_examples.to_string())
            .args(["--seed", &seed, "--generation-database", "none"])
            .args(["--report", "json,har", "--report-json-path"])
            .arg(&json)
            .arg("--report-har-path")
            .arg(&har)
            .args(["--no-color", "--request-timeout", "10"])
            .args(extra);
        for (name, value) in &self.headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        let started = Instant::now();
        let output = command.output().await.expect("running schemathesis");
        let elapsed = started.elapsed();
        let output = printed(&output);
        let read = |path: &Path| -> Value {
            let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
                panic!(
                    "schemathesis wrote no {} ({error}):\n{output}",
                    path.display()
                )
            });
            serde_json::from_str(&text).expect("a report is JSON")
        };
        let mut verdict = Verdict::read(&read(&json));
        verdict.read_responses(&read(&har));
        if verdict.server_errors.is_empty() && verdict.not_problems.is_empty() {
            // Tens of megabytes with nothing in them to look at.
            let _ = std::fs::remove_file(&har);
        }
        verdict.elapsed = elapsed;
        verdict.output = output;
        verdict
    }
}

impl Verdict {
    /// The counts and failures of a JSON run report.
    fn read(report: &Value) -> Self {
        let cases = &report["test_cases"];
        let count = |name: &str| cases[name].as_u64().unwrap_or_default();
        let mut problems: Vec<String> = list(&report["failures"])
            .map(|failure| {
                format!(
                    "{} {}: {} ({})",
                    failure["code"].as_str().unwrap_or("?"),
                    failure["title"].as_str().unwrap_or("?"),
                    failure["count"],
                    list(&failure["operations"])
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        problems.extend(list(&report["errors"]).map(|error| format!("error: {error}")));
        if report["complete"] != true {
            problems.push(format!("run incomplete: {}", report["stop_reason"]));
        }
        if report["operations"]["errored"].as_u64() != Some(0) {
            problems.push(format!("operations errored: {}", report["operations"]));
        }
        Self {
            generated: count("generated"),
            checked: count("generated").saturating_sub(count("without_checks") + count("errored")),
            with_failures: count("with_failures"),
            errored: count("errored"),
            problems,
            unauthenticated: list(&report["warnings"]["missing_auth"])
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        }
    }

    /// Counts the responses of a HAR report and notes each 5xx and each
    /// error that is not a problem.
    fn read_responses(&mut self, har: &Value) {
        for entry in list(&har["log"]["entries"]) {
            let response = &entry["response"];
            let status = response["status"].as_u64().unwrap_or_default();
            let what = || {
                let request = &entry["request"];
                format!("{status} {} {}", request["method"], request["url"])
            };
            self.responses += 1;
            if status >= 500 {
                self.server_errors.push(what());
            }
            let content = &response["content"];
            let body: Value = content["text"]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            let problem = content["mimeType"] == "application/problem+json"
                && body["status"].as_u64() == Some(status)
                && body["code"].is_string();
            if status >= 400 && !problem {
                self.not_problems.push(what());
            }
        }
    }

    /// Adds the counts, findings and output of another pass.
    fn add(&mut self, pass: Self) {
        self.generated += pass.generated;
        self.checked += pass.checked;
        self.with_failures += pass.with_failures;
        self.errored += pass.errored;
        self.problems.extend(pass.problems);
        self.unauthenticated.extend(pass.unauthenticated);
        self.responses += pass.responses;
        self.server_errors.extend(pass.server_errors);
        self.not_problems.extend(pass.not_problems);
        self.elapsed += pass.elapsed;
        self.output.push_str(&pass.output);
    }

    /// Panics, printing the failures, unless the run checked at least
    /// [`MIN_CASES`] cases and found nothing: no failed check (no
    /// undocumented status, header or body), no 5xx, no error that is not
    /// a problem, no case left unsent, and no operation the credentials
    /// could not reach.
    pub fn assert_clean(&self) {
        println!(
            "schemathesis {VERSION}: {} cases generated, {} checked, {} failed, {} errored; \
             {} responses, {} 5xx, {} errors not problem+json; in {:.1?}",
            self.generated,
            self.checked,
            self.with_failures,
            self.errored,
            self.responses,
            self.server_errors.len(),
            self.not_problems.len(),
            self.elapsed
        );
        let clean = self.problems.is_empty()
            && self.with_failures == 0
            && self.errored == 0
            && self.server_errors.is_empty()
            && self.not_problems.is_empty()
            && self.unauthenticated.is_empty()
            && self.checked >= MIN_CASES;
        assert!(
            clean,
            "{}\n\nproblems: {:#?}\n5xx: {:#?}\nerrors not problem+json: {:#?}\n\
             only 401/403 on: {:?}\nchecked {} of at least {MIN_CASES} cases",
            self.output,
            self.problems,
            self.server_errors,
            self.not_problems,
            self.unauthenticated,
            self.checked
        );
    }
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The Python of the virtualenv holding schemathesis [`VERSION`]
/// ([`devstack::testing::python_tool`]); the CLI is started as `python -m
/// schemathesis.cli`, which works from the renamed virtualenv.
async fn install() -> PathBuf {
    let requirement = format!("schemathesis=={VERSION}");
    devstack::testing::python_tool("schemathesis", &[requirement.as_str()]).await
}
