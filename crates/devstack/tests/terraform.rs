//! The production Terraform (`terraform/`), checked without an AWS account
//! or a Terraform binary: checkov (PyPI) finds no failed check and every
//! skip carries its reason; python-hcl2 (PyPI) parses every file; each
//! service's task definitions pass every setting it needs in production,
//! secrets from Secrets Manager, as `deploy/README.md`'s "Settings in
//! production" table lists them; every store takes TLS only and the
//! services connect with TLS; every service rolls a failed deployment back.
//!
//! A setting is needed when its field in the service's settings structs has
//! no serde default and neither `config/base.toml` nor
//! `config/production.toml` sets it, or when `base.toml`'s value names the
//! local machine and `production.toml` keeps it: derived from the source,
//! not listed here. The tools are installed once per machine, pinned
//! ([`devstack::testing::python_tool`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The checkov release the Terraform is scanned with (docs/terraform-scan.md).
const CHECKOV: &str = "checkov==3.3.30";
/// python-hcl2 for the Terraform, tomli for the services' TOML layers.
const PARSERS: &[&str] = &["python-hcl2==8.1.4", "tomli==2.2.1"];
const SERVICES: [&str; 2] = ["queue-service", "core-service"];
/// Shortest reason a `#checkov:skip` may give.
const MIN_SKIP_REASON_CHARS: usize = 40;

/// Prints as JSON: `hcl`, every `terraform/*.tf` parsed (or
/// `{"__error__": …}`); `toml`, the services' (argv[1]) `base` and
/// `production` layers as dotted keys; `settings`, each service's leaf
/// settings from its `Settings` struct down through the platform's and
/// telemetry's section structs: path, whether serde requires it (no
/// `#[serde(default…)]` on it or above it, no `Option`), whether a `Secret`.
const PARSE_PY: &str = r##"
import json, pathlib, re, sys
import hcl2, tomli
from hcl2 import SerializationOptions
services = json.loads(sys.argv[1])
options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
out = {"hcl": {}, "toml": {}, "settings": {}}
for path in sorted(pathlib.Path("terraform").glob("*.tf")):
    try:
        out["hcl"][path.name] = hcl2.load(path.open(), serialization_options=options)
    except Exception as error:
        out["hcl"][path.name] = {"__error__": f"{type(error).__name__}: {error}"}
def leaves(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from leaves(value, prefix + key + ".")
        else:
            yield prefix + key, value
def structs(files):
    found = {}
    for path in files:
        current, default = None, False
        for line in path.open(encoding="utf-8"):
            text = line.strip()
            start = re.match(r"pub struct (\w+)\b.*\{$", line.rstrip())
            field = re.match(r"pub (\w+): (.+),$", text)
            if text.startswith("#[serde(default"):
                default = True
            elif start:
                current = found[start[1]] = {"default": default, "fields": []}
                default = False
            elif line.rstrip() == "}":
                current = None
            elif current is not None and field:
                current["fields"].append((field[1], field[2], default))
                default = False
            elif not text.startswith(("//", "#[")):
                default = False
    return found
def settings(found, name, path, required):
    for field, ty, defaulted in found[name]["fields"]:
        optional = ty.startswith("Option<")
        ty = ty.removeprefix("Option<").removesuffix(">")
        needed = required and not found[name]["default"] and not defaulted and not optional
        if ty in found:
            yield from settings(found, ty, path + [field], needed)
        else:
            yield {"path": path + [field], "required": needed, "secret": ty == "Secret"}
for service in services:
    for layer in ["base", "production"]:
        with open(f"crates/{service}/config/{layer}.toml", "rb") as f:
            out["toml"][f"{service}/{layer}"] = dict(leaves(tomli.load(f)))
    files = [f for k in ["platform", "telemetry"] for f in sorted(pathlib.Path(f"crates/{k}/src").rglob("*.rs"))]
    found = structs(files + [pathlib.Path(f"crates/{service}/src/settings.rs")])
    out["settings"][service] = list(settings(found, "Settings", [], True))
json.dump(out, sys.stdout, default=str)
"##;

/// What the stores and the services' connections to them must say:
/// `<resource type>.<name>` or `locals`, a JSON pointer into its parse,
/// ` = `, the JSON value.
const TLS_ONLY: &str = r#"
aws_elasticache_replication_group.redis/transit_encryption_enabled = true
aws_elasticache_replication_group.redis/at_rest_encryption_enabled = true
aws_elasticache_replication_group.redis/auth_token = "${random_password.redis_auth.result}"
aws_elasticache_replication_group.redis/kms_key_id = "${aws_kms_key.onsale.arn}"
aws_db_instance.postgres/storage_encrypted = true
aws_db_instance.postgres/kms_key_id = "${aws_kms_key.onsale.arn}"
aws_msk_cluster.kafka/encryption_info/0/encryption_in_transit/0/client_broker = "TLS"
aws_msk_cluster.kafka/encryption_info/0/encryption_in_transit/0/in_cluster = true
aws_msk_cluster.kafka/encryption_info/0/encryption_at_rest_kms_key_arn = "${aws_kms_key.onsale.arn}"
locals/services/queue-service/secrets/ONSALE__REDIS__URLS = "redis_url"
locals/secrets/redis_url = "${local.redis_url}"
locals/redis_url = "rediss://:${random_password.redis_auth.result}@${aws_elasticache_replication_group.redis.configuration_endpoint_address}:${local.ports.redis}"
locals/services/queue-service/env/ONSALE__REDIS__TLS__CA_FILE = "${local.system_ca_file}"
locals/system_ca_file = "/etc/ssl/certs/ca-certificates.crt"
locals/services/core-service/env/ONSALE__DATABASE__TLS__MODE = "verify-full"
locals/services/core-service/env/ONSALE__DATABASE__TLS__CA_FILE = "${local.rds_ca_file}"
locals/rds_ca_file = "/usr/local/share/onsale/rds-global-bundle.pem"
locals/common_env/ONSALE__KAFKA__BROKERS = "${aws_msk_cluster.kafka.bootstrap_brokers_tls}"
locals/common_env/ONSALE__KAFKA__SECURITY_PROTOCOL = "SSL"
locals/common_env/ONSALE__KAFKA__SSL_CA_FILE = "${local.system_ca_file}"
"#;

/// Findings of one test, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn expect(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "\n{}", self.0.join("\n"));
    }
}

fn root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().expect("the workspace")
}

/// Runs `python` with `args` in the workspace; its stdout, or a panic with
/// everything it printed unless it exited with one of `statuses`.
async fn run(python: &Path, args: &[&str], statuses: &[i32]) -> String {
    let mut command = tokio::process::Command::new(python);
    let output = command.current_dir(root()).args(args).output().await;
    let output = output.expect("running python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = output.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        statuses.contains(&status),
        "{args:?} exited with {status}:\n{stdout}{stderr}"
    );
    stdout
}

/// A leaf setting of a service (see [`PARSE_PY`]).
#[derive(Debug, Deserialize)]
struct Setting {
    /// `["queue", "rate_limit", "burst"]`.
    path: Vec<String>,
    required: bool,
    secret: bool,
}

impl Setting {
    /// The variable that sets it: ONSALE__SECTION__KEY, except the root
    /// `environment`, which `platform::settings::load_from` takes from
    /// ONSALE_ENVIRONMENT.
    fn variable(&self) -> String {
        if self.path == ["environment"] {
            return "ONSALE_ENVIRONMENT".to_owned();
        }
        format!("ONSALE__{}", self.path.join("__").to_ascii_uppercase())
    }
}

/// The parser's output, once per test binary.
#[derive(Deserialize)]
struct Parsed {
    /// `services.tf` => python-hcl2's JSON.
    hcl: BTreeMap<String, Value>,
    /// `queue-service/base` => dotted key => value.
    toml: BTreeMap<String, BTreeMap<String, Value>>,
    settings: BTreeMap<String, Vec<Setting>>,
}

async fn parsed() -> &'static Parsed {
    static PARSED: OnceCell<Parsed> = OnceCell::const_new();
    PARSED
        .get_or_init(|| async {
            let python = devstack::testing::python_tool("python-hcl2", PARSERS).await;
            let services = json!(SERVICES).to_string();
            let out = run(&python, &["-c", PARSE_PY, &services], &[0]).await;
            serde_json::from_str(&out).expect("the parser's JSON")
        })
        .await
}

/// The blocks of one kind (`locals`, `resource`, …) across every file.
fn blocks<'a>(parsed: &'a Parsed, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    let files = parsed.hcl.values();
    files.flat_map(move |file| file[kind].as_array().into_iter().flatten())
}

/// Every `locals` entry, across files.
fn locals(parsed: &Parsed) -> Value {
    let mut all = serde_json::Map::new();
    for block in blocks(parsed, "locals") {
        all.extend(block.as_object().expect("a locals block").clone());
    }
    Value::Object(all)
}

/// The resources of type `kind`: name => body.
fn resources<'a>(parsed: &'a Parsed, kind: &str) -> Vec<(&'a str, &'a Value)> {
    blocks(parsed, "resource")
        .filter_map(|block| block.get(kind).and_then(Value::as_object))
        .flat_map(|named| named.iter().map(|(name, body)| (name.as_str(), body)))
        .collect()
}

fn keys(map: &Value) -> BTreeSet<String> {
    map.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// What one task definition passes to one service's container.
#[derive(Debug)]
struct TaskDefinition {
    resource: String,
    service: String,
    environment: BTreeSet<String>,
    secrets: BTreeSet<String>,
}

/// Every service container of every task definition. A container takes
/// `merge(local.common_env, <service>.env)` as its environment and
/// `<service>.secrets` as its secrets, `<service>` being `each.value` (for
/// each of `local.services`) or `local.services["name"]`; a task definition
/// built another way fails the test instead of escaping it.
fn task_definitions(parsed: &Parsed) -> Vec<TaskDefinition> {
    let locals = locals(parsed);
    let mut found = Vec::new();
    for (name, body) in resources(parsed, "aws_ecs_task_definition") {
        let resource = format!("aws_ecs_task_definition.{name}");
        let containers = body["container_definitions"].as_str().unwrap_or_default();
        let source = (containers.split_once("merge(local.common_env, "))
            .and_then(|(_, rest)| rest.split_once(".env)"))
            .map(|(source, _)| source)
            .unwrap_or_else(|| panic!("{resource}: environment not from local.common_env"));
        let secrets = format!("in {source}.secrets");
        assert!(
            containers.contains(&secrets),
            "{resource}: secrets not from {source}"
        );
        let services = match source.strip_prefix("local.services[\"") {
            Some(service) => BTreeSet::from([service.trim_end_matches("\"]").to_owned()]),
            None if body["for_each"] == "${local.services}" => keys(&locals["services"]),
            None => panic!("{resource}: {source} is not one of local.services"),
        };
        for service in services {
            let of = &locals["services"][&service];
            assert!(
                of.is_object(),
                "{resource}: local.services has no {service}"
            );
            let common = keys(&locals["common_env"]);
            found.push(TaskDefinition {
                resource: resource.clone(),
                environment: common.union(&keys(&of["env"])).cloned().collect(),
                secrets: keys(&of["secrets"]),
                service,
            });
        }
    }
    found
}

/// What `service` cannot run in production without: variable => why.
fn needed_in_production(parsed: &Parsed, service: &str) -> BTreeMap<String, String> {
    let layer = |name: &str| &parsed.toml[&format!("{service}/{name}")];
    let (base, production) = (layer("base"), layer("production"));
    let mut needed = BTreeMap::new();
    for setting in &parsed.settings[service] {
        let key = setting.path.join(".");
        let local = base.get(&key).map(Value::to_string).unwrap_or_default();
        let in_base_or_production = base.contains_key(&key) || production.contains_key(&key);
        let names_this_machine = local.contains("127.0.0.1") || local.contains("localhost");
        if setting.required && !in_base_or_production {
            needed.insert(setting.variable(), "it has no default".to_owned());
        } else if names_this_machine && !production.contains_key(&key) {
            needed.insert(
                setting.variable(),
                format!("its default {local} is the local machine"),
            );
        }
    }
    needed
}

/// `deploy/README.md`'s "Settings in production" table: variable =>
/// (services, passed as a secret).
fn settings_table() -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).expect("the README");
    let (_, section) = (readme.split_once("\n## Settings in production\n"))
        .expect("deploy/README.md has a \"## Settings in production\" section");
    let mut rows = BTreeMap::new();
    let section = section.split("\n## ").next().unwrap_or_default();
    for line in section.lines().filter(|line| line.starts_with("| `ONSALE")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let services = cells[2].split(',').map(|s| s.trim().to_owned()).collect();
        let secret = match cells[3] {
            "secret" => true,
            "environment" => false,
            other => panic!("deploy/README.md: {} is passed as {other:?}", cells[1]),
        };
        rows.insert(cells[1].trim_matches('`').to_owned(), (services, secret));
    }
    assert!(
        rows.len() > 10,
        "deploy/README.md: too few settings rows: {rows:?}"
    );
    rows
}

#[tokio::test]
async fn checkov_finds_no_failed_check_in_the_terraform() {
    let python = devstack::testing::python_tool("checkov", &[CHECKOV]).await;
    // --skip-download: the bundled checks only, offline (no guidelines or
    // policies from Prisma Cloud). checkov exits 1 on a failed check, which
    // the report explains better.
    let args = "-m checkov.main --directory terraform --framework terraform --skip-download";
    let args: Vec<&str> = args.split(' ').chain(["--output", "json"]).collect();
    let report = run(&python, &args, &[0, 1]).await;
    let report: Value = serde_json::from_str(&report).expect("a JSON report");
    let (summary, results) = (&report["summary"], &report["results"]);
    let count = |name: &str| summary[name].as_u64().unwrap_or_default();
    let (passed, failed, skipped) = (count("passed"), count("failed"), count("skipped"));
    let version = summary["checkov_version"].as_str().unwrap_or_default();
    println!("checkov {version}: {passed} passed, {failed} failed, {skipped} skipped");
    let checks = |kind: &str| results[kind].as_array().cloned().unwrap_or_default();
    let mut problems = Problems::default();
    for check in checks("failed_checks") {
        let (id, name, resource) = (&check["check_id"], &check["check_name"], &check["resource"]);
        let (file, lines) = (&check["file_path"], &check["file_line_range"]);
        problems
            .0
            .push(format!("failed {id} {name}: {resource} ({file} {lines})"));
    }
    for check in checks("skipped_checks") {
        let reason = check["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default();
        problems.expect(reason.len() >= MIN_SKIP_REASON_CHARS, || {
            format!(
                "{} is skipped on {} without a reason",
                check["check_id"], check["resource"]
            )
        });
    }
    problems.expect(failed == 0, || format!("{failed} failed checks"));
    problems.expect(count("parsing_errors") == 0, || {
        format!("parsing errors: {summary}")
    });
    problems.expect(passed > 100, || {
        format!("checkov scanned too little: {summary}")
    });
    let pinned = CHECKOV.trim_start_matches("checkov==");
    problems.expect(version == pinned, || {
        format!("checkov {version} ran, not {pinned}")
    });
    problems.assert_none();
}

#[tokio::test]
async fn every_terraform_file_parses_as_hcl() {
    let parsed = parsed().await;
    let mut problems = Problems::default();
    for (file, tree) in &parsed.hcl {
        let error = tree.get("__error__");
        problems.expect(error.is_none(), || format!("{file}: {}", tree["__error__"]));
    }
    let files = parsed.hcl.len();
    problems.expect(files >= 10, || format!("only {files} .tf files parsed"));
    problems.assert_none();
}

#[tokio::test]
async fn every_setting_a_service_reads_is_passed_by_its_task_definition() {
    let parsed = parsed().await;
    let table = settings_table();
    let definitions = task_definitions(parsed);
    let mut problems = Problems::default();
    for service in SERVICES {
        let runs = definitions.iter().any(|d| d.service == service);
        problems.expect(runs, || format!("no task definition runs {service}"));
    }
    for definition in &definitions {
        let (service, resource) = (definition.service.as_str(), &definition.resource);
        let mut needed = needed_in_production(parsed, service);
        for (name, (services, _)) in &table {
            if services.contains(service) {
                needed
                    .entry(name.clone())
                    .or_insert_with(|| "deploy/README.md lists it".into());
            }
        }
        for (name, why) in &needed {
            let passed = definition.environment.contains(name) || definition.secrets.contains(name);
            problems.expect(passed, || {
                format!("{resource} does not pass {name} ({service}): {why}")
            });
        }
        let typed = parsed.settings[service].iter().filter(|s| s.secret);
        let listed = table.iter().filter(|(_, (_, secret))| *secret);
        let secret: BTreeSet<String> = (typed.map(Setting::variable))
            .chain(listed.map(|(n, _)| n.clone()))
            .collect();
        for name in secret {
            let plain = definition.environment.contains(&name);
            problems.expect(!plain, || {
                format!("{resource} passes the secret {name} in plain text")
            });
        }
        for name in &definition.secrets {
            let listed_plain = table.get(name).is_some_and(|(_, secret)| !secret);
            problems.expect(!listed_plain, || {
                format!("{resource}: {name} is listed as plain")
            });
        }
    }
    problems.assert_none();
}

#[tokio::test]
async fn the_deploy_settings_table_lists_what_each_task_definition_passes() {
    let parsed = parsed().await;
    let table = settings_table();
    let mut problems = Problems::default();
    for definition in task_definitions(parsed) {
        let (service, resource) = (definition.service.as_str(), &definition.resource);
        let listed = |name: &str| table.get(name).is_some_and(|(s, _)| s.contains(service));
        for name in definition.environment.iter().chain(&definition.secrets) {
            problems.expect(listed(name), || {
                format!("{resource} passes {name} to {service}; deploy/README.md does not list it")
            });
        }
    }
    problems.assert_none();
}

#[tokio::test]
async fn every_variable_a_task_definition_passes_is_a_setting_of_its_service() {
    let parsed = parsed().await;
    let mut problems = Problems::default();
    for definition in task_definitions(parsed) {
        let (service, resource) = (definition.service.as_str(), &definition.resource);
        let known: BTreeSet<String> = parsed.settings[service]
            .iter()
            .map(Setting::variable)
            .collect();
        for name in definition.environment.iter().chain(&definition.secrets) {
            let reads = known.contains(name);
            problems.expect(reads, || {
                format!("{resource} passes {name}, which {service} does not read")
            });
        }
    }
    problems.assert_none();
}

#[tokio::test]
async fn every_store_takes_tls_only_and_the_services_connect_with_it() {
    let parsed = parsed().await;
    let locals = locals(parsed);
    let mut problems = Problems::default();
    for line in TLS_ONLY.lines().filter(|line| !line.is_empty()) {
        let (at, expected) = line.split_once(" = ").expect("<where> = <value>");
        let expected: Value = serde_json::from_str(expected).expect("a JSON value");
        let (owner, pointer) = at.split_at(at.find('/').expect("a JSON pointer"));
        let found = match owner.split_once('.') {
            None => locals.pointer(pointer),
            Some((kind, name)) => (resources(parsed, kind).into_iter())
                .find(|(n, _)| *n == name)
                .and_then(|(_, body)| body.pointer(pointer)),
        };
        let found = found.unwrap_or(&Value::Null);
        problems.expect(*found == expected, || {
            format!("{at} is {found}, not {expected}")
        });
    }
    let parameters = (resources(parsed, "aws_db_parameter_group").into_iter())
        .flat_map(|(_, group)| group["parameter"].as_array().cloned().unwrap_or_default());
    let forced = parameters
        .into_iter()
        .any(|p| p["name"] == "rds.force_ssl" && p["value"] == "1");
    problems.expect(forced, || {
        "RDS takes connections without TLS (rds.force_ssl)".into()
    });
    problems.assert_none();
}

#[tokio::test]
async fn every_service_rolls_a_failed_deployment_back() {
    let parsed = parsed().await;
    let groups = resources(parsed, "aws_codedeploy_deployment_group");
    let mut problems = Problems::default();
    for (name, service) in resources(parsed, "aws_ecs_service") {
        let on = |body: &Value, pointer: &str| body.pointer(pointer) == Some(&json!(true));
        if service.pointer("/deployment_controller/0/type") == Some(&json!("CODE_DEPLOY")) {
            // ECS allows no circuit breaker here; CodeDeploy rolls back.
            let covers = json!(format!("${{aws_ecs_service.{name}}}"));
            let group = groups.iter().find(|(_, group)| group["for_each"] == covers);
            let Some((_, group)) = group else {
                problems.0.push(format!(
                    "aws_ecs_service.{name}: no CodeDeploy deployment group"
                ));
                continue;
            };
            let events = group.pointer("/auto_rollback_configuration/0/events");
            let events = events
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let on_both = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"].map(|e| json!(e));
            let rolls_back = on(group, "/auto_rollback_configuration/0/enabled")
                && on_both.iter().all(|event| events.contains(event))
                && on(group, "/alarm_configuration/0/enabled");
            problems.expect(rolls_back, || {
                format!("aws_ecs_service.{name}: CodeDeploy does not roll back failures and alarms")
            });
        } else {
            let rolls_back = on(service, "/deployment_circuit_breaker/0/enable")
                && on(service, "/deployment_circuit_breaker/0/rollback")
                && on(service, "/alarms/0/enable")
                && on(service, "/alarms/0/rollback");
            problems.expect(rolls_back, || {
                format!("aws_ecs_service.{name}: no circuit breaker and rollback alarms")
            });
        }
    }
    problems.assert_none();
}
