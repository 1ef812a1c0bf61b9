//! Every response the simulator sends conforms to Lambda's OpenAPI spec.
//!
//! The test drives every endpoint through its success and error paths, then
//! validates each logged response body against the schema the spec gives for
//! that route, method and status. The spec documents no body for 429 and 5xx;
//! those are checked against the shape every other Lambda error has
//! (`ApiErrorInternal` for 5xx).

use std::collections::BTreeSet;
use std::time::Duration;

use lambda_sim::{Faults, RequestRecord, ScriptedFault, Sim, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::Raw;

const SPEC: &str = include_str!("../../spec/lambda-cloud-openapi.json");

fn spec() -> Value {
    serde_json::from_str(SPEC).unwrap()
}

/// The schema the spec gives for a response, or the documented fallback for
/// statuses the spec leaves out.
fn response_schema(spec: &Value, record: &RequestRecord) -> Value {
    let documented = record.route.as_ref().and_then(|route| {
        spec["paths"][route][record.method.to_lowercase()]["responses"][record.status.to_string()]
            ["content"]["application/json"]["schema"]
            .as_object()
            .cloned()
            .map(Value::Object)
    });
    if let Some(schema) = documented {
        return schema;
    }
    let error = match record.status {
        500..=599 => json!({"$ref": "#/components/schemas/ApiErrorInternal"}),
        429 => json!({
            "type": "object", "additionalProperties": false,
            "required": ["code", "message", "suggestion"],
            "properties": {
                "code": {"const": "global/too-many-requests"},
                "message": {"type": "string"}, "suggestion": {"type": "string"}
            }
        }),
        // An unknown route: the spec's generic not-found.
        404 if record.route.is_none() => json!({"$ref": "#/components/schemas/ApiErrorNotFound"}),
        _ => panic!(
            "the spec has no schema for {} {} -> {}",
            record.method, record.path, record.status
        ),
    };
    json!({
        "type": "object", "additionalProperties": false, "required": ["error"],
        "properties": {"error": error}
    })
}

fn assert_conforms(spec: &Value, record: &RequestRecord) {
    let mut schema = response_schema(spec, record);
    // `$ref`s point into the spec's components: carry them along.
    schema["components"] = spec["components"].clone();
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|e| panic!("bad schema for {} {}: {e}", record.method, record.path));
    let errors: Vec<String> = validator
        .iter_errors(&record.response)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{} {} -> {} does not match the spec:\n{}\nbody: {}",
        record.method,
        record.path,
        record.status,
        errors.join("\n"),
        record.response
    );
}

#[test]
fn the_validator_rejects_a_body_that_breaks_the_spec() {
    // Guards the conformance test itself: were schema lookup or `$ref`
    // resolution silently vacuous, everything would pass.
    let spec = spec();
    let record = |response: Value| RequestRecord {
        seq: 1,
        at: String::new(),
        elapsed_ms: 0,
        method: "GET".into(),
        path: "/api/v1/regions".into(),
        route: Some("/api/v1/regions".into()),
        authorized: true,
        request: None,
        status: 200,
        response,
    };
    assert_conforms(
        &spec,
        &record(json!({"data": [{"name": "us-west-1", "description": "CA"}]})),
    );
    let missing_description = record(json!({"data": [{"name": "us-west-1"}]}));
    let outcome = std::panic::catch_unwind(|| assert_conforms(&spec, &missing_description));
    assert!(
        outcome.is_err(),
        "a region without its required description passed"
    );
}

#[tokio::test]
async fn every_response_of_every_endpoint_conforms_to_the_spec() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    let api = Raw::new(&sim);

    // Catalogue.
    api.get("/instance-types").await;
    api.get("/regions").await;
    api.get("/images").await;
    api.get("/no-such-endpoint").await;

    // SSH keys: list, add, generate, duplicate, bad key, delete, delete again.
    let (_, keys) = api.get("/ssh-keys").await;
    let key_name = keys["data"][0]["name"].as_str().unwrap().to_owned();
    let (status, added) = api
        .post(
            "/ssh-keys",
            json!({"name": "laptop", "public_key": "ssh-ed25519 AAAAC3Nza laptop"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, generated) = api.post("/ssh-keys", json!({"name": "generated"})).await;
    assert_eq!(status, 200);
    assert!(generated["data"]["private_key"].is_string());
    assert_eq!(
        api.post(
            "/ssh-keys",
            json!({"name": "laptop", "public_key": "ssh-ed25519 X"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.post(
            "/ssh-keys",
            json!({"name": "bad", "public_key": "not a key"})
        )
        .await
        .0,
        400
    );
    let added_id = added["data"]["id"].as_str().unwrap();
    assert_eq!(
        api.call(Method::DELETE, &format!("/ssh-keys/{added_id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("/ssh-keys/{added_id}"), None)
            .await
            .0,
        404
    );

    // Filesystems, with the spec's path quirk.
    let (status, created) = api
        .post(
            "/filesystems",
            json!({"name": "scratch", "region": "us-east-1"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.post(
            "/filesystems",
            json!({"name": "scratch", "region": "us-east-1"})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.post(
            "/filesystems",
            json!({"name": "1bad", "region": "us-east-1"})
        )
        .await
        .0,
        400
    );
    api.get("/file-systems").await;

    // Firewall rulesets.
    let rule = json!({"protocol": "tcp", "port_range": [22, 22], "source_network": "0.0.0.0/0", "description": "ssh"});
    let (status, ruleset) = api
        .post(
            "/firewall-rulesets",
            json!({"name": "ssh-only", "region": "us-west-1", "rules": [rule]}),
        )
        .await;
    assert_eq!(status, 200);
    let ruleset_id = ruleset["data"]["id"].as_str().unwrap().to_owned();
    api.get("/firewall-rulesets").await;
    api.get(&format!("/firewall-rulesets/{ruleset_id}")).await;
    assert_eq!(api.get("/firewall-rulesets/nope").await.0, 404);
    assert_eq!(
        api.call(
            Method::PATCH,
            &format!("/firewall-rulesets/{ruleset_id}"),
            Some(json!({"name": "renamed"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.call(
            Method::PATCH,
            "/firewall-rulesets/nope",
            Some(json!({"name": "x"}))
        )
        .await
        .0,
        404
    );
    api.get("/firewall-rulesets/global").await;
    assert_eq!(
        api.call(
            Method::PATCH,
            "/firewall-rulesets/global",
            Some(json!({"rules": [rule]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.call(Method::PATCH, "/firewall-rulesets/global", Some(json!({"rules": [{"protocol": "icmp", "port_range": [1, 2], "source_network": "0.0.0.0/0", "description": ""}]}))).await.0,
        400
    );
    api.get("/firewall-rules").await;
    assert_eq!(
        api.call(
            Method::PUT,
            "/firewall-rules",
            Some(json!({"data": [rule]}))
        )
        .await
        .0,
        200
    );

    // Launch: success, and each way it fails.
    let launch = |overrides: Value| {
        let mut body = json!({
            "region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
            "ssh_key_names": [key_name], "file_system_names": ["coding-stack"],
            "name": "soong-spec", "user_data": "#cloud-config\n",
            "tags": [{"key": "soong:managed", "value": "true"}],
            "firewall_rulesets": [{"id": ruleset_id}],
        });
        for (k, v) in overrides.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (status, launched) = api
        .post("/instance-operations/launch", launch(json!({})))
        .await;
    assert_eq!(status, 200, "{launched}");
    let id = launched["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    for (overrides, expected) in [
        (json!({"instance_type_name": "gpu_8x_a100"}), 400), // no capacity
        (json!({"ssh_key_names": ["nobody"]}), 404),         // unknown key
        (json!({"ssh_key_names": []}), 400),                 // not exactly one key
        (json!({"file_system_names": ["missing"]}), 404),    // unknown filesystem
        (json!({"region_name": "us-east-1"}), 400),          // filesystem in wrong region
        (json!({"tags": [{"key": "Bad Key", "value": "x"}]}), 400), // tag pattern
        (json!({"hostname": "-bad"}), 400),                  // hostname pattern
        (json!({"instance_type_name": "gpu_99x_nothing"}), 400), // unknown type
    ] {
        let (status, body) = api
            .post("/instance-operations/launch", launch(overrides.clone()))
            .await;
        assert_eq!(status, expected, "{overrides} -> {body}");
    }
    assert_eq!(
        api.post("/instance-operations/launch", json!({"region_name": 7}))
            .await
            .0,
        400
    );

    // Instances while booting, once active, renamed, restarted, terminated.
    api.get("/instances").await;
    api.get(&format!("/instances/{id}")).await;
    assert_eq!(
        api.post(
            "/instance-operations/restart",
            json!({"instance_ids": [id]})
        )
        .await
        .0,
        409
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, instance) = api.get(&format!("/instances/{id}")).await;
    assert_eq!(instance["data"]["status"], "active");
    assert_eq!(
        api.post(&format!("/instances/{id}"), json!({"name": "renamed"}))
            .await
            .0,
        200
    );
    assert_eq!(
        api.post(&format!("/instances/{id}"), json!({"name": "x".repeat(65)}))
            .await
            .0,
        400
    );
    assert_eq!(
        api.post(
            "/instance-operations/restart",
            json!({"instance_ids": [id]})
        )
        .await
        .0,
        200
    );
    assert_eq!(api.get("/instances/does-not-exist").await.0, 404);
    assert_eq!(
        api.post("/instances/does-not-exist", json!({"name": "x"}))
            .await
            .0,
        404
    );
    assert_eq!(
        api.post(
            "/instance-operations/restart",
            json!({"instance_ids": ["nope"]})
        )
        .await
        .0,
        404
    );
    // In use: neither the filesystem nor the ruleset can go.
    let (_, filesystems) = api.get("/file-systems").await;
    let coding_stack = filesystems["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "coding-stack")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/filesystems/{coding_stack}"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/firewall-rulesets/{ruleset_id}"),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.post(
            "/instance-operations/terminate",
            json!({"instance_ids": [id]})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post(
            "/instance-operations/terminate",
            json!({"instance_ids": ["nope"]})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.post(
            "/instance-operations/terminate",
            json!({"instance_ids": []})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.post("/instance-operations/terminate", json!({"ids": [id]}))
            .await
            .0,
        400
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, instance) = api.get(&format!("/instances/{id}")).await;
    assert_eq!(instance["data"]["status"], "terminated");
    let created_id = created["data"]["id"].as_str().unwrap();
    assert_eq!(
        api.call(Method::DELETE, &format!("/filesystems/{created_id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("/filesystems/{created_id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            &format!("/firewall-rulesets/{ruleset_id}"),
            None
        )
        .await
        .0,
        200
    );

    // Authentication: missing, wrong, and the two Basic forms.
    let http = reqwest::Client::new();
    let url = format!("{}/instances", sim.api_url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(&url)
            .basic_auth(sim.api_key(), Some(""))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let raw_basic = format!("Basic {}", sim.api_key());
    assert_eq!(
        http.get(&url)
            .header("authorization", raw_basic)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Injected 5xx and 429, and a rate limit reached for real.
    sim.set_faults(Faults {
        scripted: vec![
            ScriptedFault {
                method: None,
                path: "/instances".into(),
                status: 503,
                count: 1,
                retry_after: None,
            },
            ScriptedFault {
                method: None,
                path: "/instances".into(),
                status: 429,
                count: 1,
                retry_after: Some(2),
            },
        ],
        ..Faults::default()
    });
    assert_eq!(api.get("/instances").await.0, 503);
    assert_eq!(api.get("/instances").await.0, 429);
    assert_eq!(api.get("/instances").await.0, 200);

    // Validate everything that was answered.
    let spec = spec();
    let log = sim.request_log();
    for record in &log {
        assert_conforms(&spec, record);
    }

    // And prove the walk covered every endpoint the simulator serves and
    // every status each can answer with in these scenarios.
    let covered: BTreeSet<(String, String)> = log
        .iter()
        .filter_map(|r| Some((r.method.clone(), r.route.clone()?)))
        .collect();
    let mut served = BTreeSet::new();
    for (route, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if lambda_sim::serves(&method, route) {
                served.insert((method, route.clone()));
            }
        }
    }
    assert_eq!(
        served.len(),
        lambda_sim::OPERATIONS.len(),
        "every served operation is in the spec"
    );
    let missing: Vec<_> = served.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "operations never exercised: {missing:?}"
    );
    let statuses: BTreeSet<u16> = log.iter().map(|r| r.status).collect();
    for status in [200, 400, 401, 404, 409, 429, 503] {
        assert!(statuses.contains(&status), "no {status} was validated");
    }
}
