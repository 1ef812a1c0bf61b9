//! The HTTP face of the simulator: `/api/v1/*` as Lambda serves it, plus the
//! sim-only control endpoints under `/sim/*`.
//!
//! Every API request goes through one pipeline: advance the world's clock,
//! authenticate, rate-limit, inject faults, dispatch, log. Keeping that in
//! one place (rather than per route) is what makes the request log complete
//! and the error envelopes uniform.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use lambda_cloud::InstanceStatus;
use lambda_cloud::types::{
    AddSshKeyRequest, CreateFilesystemRequest, CreateFirewallRulesetRequest,
    FilesystemDeleteResponse, FirewallRulesRequest, InstanceIdsRequest, LaunchRequest,
    LaunchResponse, RenameRequest, RestartResponse, TerminateResponse,
    UpdateFirewallRulesetRequest,
};
use poem::http::{Method, StatusCode, header};
use poem::web::{Data, Json, Path};
use poem::{Body, IntoResponse, Request, Response, handler};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::errors::ApiError;
use crate::scenario::{Faults, RateLimit};
use crate::world::World;
use crate::{LaunchHook, NewInstance};

/// The longest request body accepted (user-data may be up to 1 MB).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How many requests the log keeps; older ones are dropped.
const REQUEST_LOG_CAPACITY: usize = 10_000;

/// One API request as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Wall-clock time of arrival, RFC 3339.
    pub at: String,
    /// Milliseconds since the simulator started.
    pub elapsed_ms: u64,
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/api/v1/instances/abc`.
    pub path: String,
    /// The spec's path template, e.g. `/api/v1/instances/{id}`, when the
    /// path matched an endpoint.
    pub route: Option<String>,
    /// Whether the request carried a valid API key.
    pub authorized: bool,
    /// The JSON request body, with `user_data` redacted.
    pub request: Option<Value>,
    /// Response status.
    pub status: u16,
    /// The JSON response body.
    pub response: Value,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    last_launch: Option<Instant>,
}

/// State shared by all requests.
pub(crate) struct Shared {
    pub(crate) world: Mutex<World>,
    log: Mutex<VecDeque<RequestRecord>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    hook: Option<LaunchHook>,
    started: Instant,
    seq: Mutex<u64>,
}

/// Locks a mutex, recovering from poisoning: a panicked request must not take
/// the whole simulated cloud down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn new(world: World, hook: Option<LaunchHook>) -> Self {
        Self {
            world: Mutex::new(world),
            log: Mutex::new(VecDeque::new()),
            buckets: Mutex::new(HashMap::new()),
            hook,
            started: Instant::now(),
            seq: Mutex::new(0),
        }
    }

    /// Advances the lifecycle to now and runs the launch hook for what happened.
    pub(crate) fn advance(&self) {
        let events = lock(&self.world).advance(Instant::now());
        if let Some(hook) = &self.hook {
            for event in events {
                hook(event);
            }
        }
    }

    pub(crate) fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.log).iter().cloned().collect()
    }

    fn record(&self, mut record: RequestRecord) {
        let mut seq = lock(&self.seq);
        *seq += 1;
        record.seq = *seq;
        let mut log = lock(&self.log);
        if log.len() == REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(record);
    }

    /// Token-bucket rate limiting per API key; `None` when allowed.
    fn rate_limit(&self, key: &str, is_launch: bool, now: Instant) -> Option<ApiError> {
        let limits: RateLimit = lock(&self.world).scenario().rate_limit.clone();
        if !limits.enabled {
            return None;
        }
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(limits.burst),
            refilled: now,
            last_launch: None,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * limits.requests_per_second).min(f64::from(limits.burst));
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / limits.requests_per_second;
            return Some(ApiError::too_many_requests(wait.ceil() as u64));
        }
        if is_launch && let Some(last) = bucket.last_launch {
            let since = now.saturating_duration_since(last);
            if since < limits.launch_interval {
                let wait = limits.launch_interval.saturating_sub(since).as_secs_f64();
                return Some(ApiError::too_many_requests(wait.ceil() as u64));
            }
        }
        bucket.tokens -= 1.0;
        if is_launch {
            bucket.last_launch = Some(now);
        }
        None
    }

    /// A scripted or random fault for this request, if one applies.
    fn injected_fault(&self, method: &Method, path: &str) -> Option<ApiError> {
        let mut world = lock(&self.world);
        let faults = world.faults_mut();
        if let Some(fault) = faults.scripted.iter_mut().find(|f| {
            f.count > 0
                && path.ends_with(&f.path)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
        }) {
            fault.count -= 1;
            let status = fault.status;
            let retry_after = fault.retry_after;
            faults.scripted.retain(|f| f.count > 0);
            return Some(if status == 429 {
                ApiError::too_many_requests(retry_after.unwrap_or(1))
            } else {
                ApiError::internal(status)
            });
        }
        let mut rng = rand::rng();
        if faults.rate_limit_rate > 0.0 && rng.random_bool(faults.rate_limit_rate) {
            return Some(ApiError::too_many_requests(1));
        }
        if faults.error_rate > 0.0 && rng.random_bool(faults.error_rate) {
            let status = [500, 502, 503][rng.random_range(0..3)];
            return Some(ApiError::internal(status));
        }
        None
    }
}

/// The API key in an `Authorization` header, in any of the three forms the
/// API accepts: `Bearer <key>`, `Basic base64(<key>:)`, `Basic <key>`.
fn api_key_of(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials)
            && let Ok(text) = String::from_utf8(decoded)
            && let Some((user, _password)) = text.split_once(':')
        {
            return Some(user.to_owned());
        }
        return Some(credentials.to_owned());
    }
    None
}

fn redact_user_data(mut body: Value) -> Value {
    if let Some(user_data) = body.get_mut("user_data")
        && let Some(text) = user_data.as_str()
    {
        *user_data = Value::String(format!("<redacted: {} bytes>", text.len()));
    }
    body
}

fn parse<T: DeserializeOwned>(body: Option<&Value>) -> Result<T, ApiError> {
    let body =
        body.ok_or_else(|| ApiError::invalid_parameters("A JSON request body is required."))?;
    T::deserialize(body)
        .map_err(|error| ApiError::invalid_parameters(format!("Invalid request data: {error}.")))
}

fn data<T: Serialize>(value: T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::internal(500))
}

/// Every operation of the spec the simulator serves, as (method, path
/// template). Audit events, fabric and support tickets are out of its scope.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("GET", "/api/v1/instances"),
    ("GET", "/api/v1/instances/{id}"),
    ("POST", "/api/v1/instances/{id}"),
    ("POST", "/api/v1/instance-operations/launch"),
    ("POST", "/api/v1/instance-operations/terminate"),
    ("POST", "/api/v1/instance-operations/restart"),
    ("GET", "/api/v1/instance-types"),
    ("GET", "/api/v1/regions"),
    ("GET", "/api/v1/images"),
    ("GET", "/api/v1/ssh-keys"),
    ("POST", "/api/v1/ssh-keys"),
    ("DELETE", "/api/v1/ssh-keys/{id}"),
    ("GET", "/api/v1/file-systems"),
    ("POST", "/api/v1/filesystems"),
    ("DELETE", "/api/v1/filesystems/{id}"),
    ("GET", "/api/v1/firewall-rulesets"),
    ("POST", "/api/v1/firewall-rulesets"),
    ("GET", "/api/v1/firewall-rulesets/global"),
    ("PATCH", "/api/v1/firewall-rulesets/global"),
    ("GET", "/api/v1/firewall-rulesets/{id}"),
    ("PATCH", "/api/v1/firewall-rulesets/{id}"),
    ("DELETE", "/api/v1/firewall-rulesets/{id}"),
    ("GET", "/api/v1/firewall-rules"),
    ("PUT", "/api/v1/firewall-rules"),
];

/// Whether the simulator serves `method` on the spec's path template `route`.
pub fn serves(method: &str, route: &str) -> bool {
    OPERATIONS.iter().any(|(m, r)| *m == method && *r == route)
}

/// The spec's path template for a path below `/api/v1`, and the `{id}` in it.
fn route<'a>(segments: &[&'a str]) -> Option<(&'static str, Option<&'a str>)> {
    Some(match segments {
        ["instances"] => ("/api/v1/instances", None),
        ["instances", id] => ("/api/v1/instances/{id}", Some(*id)),
        ["instance-operations", "launch"] => ("/api/v1/instance-operations/launch", None),
        ["instance-operations", "terminate"] => ("/api/v1/instance-operations/terminate", None),
        ["instance-operations", "restart"] => ("/api/v1/instance-operations/restart", None),
        ["instance-types"] => ("/api/v1/instance-types", None),
        ["regions"] => ("/api/v1/regions", None),
        ["images"] => ("/api/v1/images", None),
        ["ssh-keys"] => ("/api/v1/ssh-keys", None),
        ["ssh-keys", id] => ("/api/v1/ssh-keys/{id}", Some(*id)),
        ["file-systems"] => ("/api/v1/file-systems", None),
        ["filesystems"] => ("/api/v1/filesystems", None),
        ["filesystems", id] => ("/api/v1/filesystems/{id}", Some(*id)),
        ["firewall-rulesets"] => ("/api/v1/firewall-rulesets", None),
        ["firewall-rulesets", "global"] => ("/api/v1/firewall-rulesets/global", None),
        ["firewall-rulesets", id] => ("/api/v1/firewall-rulesets/{id}", Some(*id)),
        ["firewall-rules"] => ("/api/v1/firewall-rules", None),
        _ => return None,
    })
}

/// Runs the endpoint `(method, route)` against the world. `None` when the
/// route exists but not for this method.
fn dispatch(
    world: &mut World,
    method: &Method,
    route: &str,
    id: &str,
    body: Option<&Value>,
    now: Instant,
) -> Option<Result<Value, ApiError>> {
    let result = match (method.as_str(), route) {
        ("GET", "/api/v1/instances") => data(world.list_instances(now)),
        ("GET", "/api/v1/instances/{id}") => world.get_instance(id, now).and_then(data),
        ("POST", "/api/v1/instances/{id}") => parse::<RenameRequest>(body)
            .and_then(|r| world.rename_instance(id, &r.name))
            .and_then(data),
        ("POST", "/api/v1/instance-operations/launch") => parse::<LaunchRequest>(body)
            .and_then(|r| world.launch(&r, now))
            .and_then(|id| {
                data(LaunchResponse {
                    instance_ids: vec![id],
                })
            }),
        ("POST", "/api/v1/instance-operations/terminate") => parse::<InstanceIdsRequest>(body)
            .and_then(|r| world.terminate(&r.instance_ids, now))
            .and_then(|terminated_instances| {
                data(TerminateResponse {
                    terminated_instances,
                })
            }),
        ("POST", "/api/v1/instance-operations/restart") => parse::<InstanceIdsRequest>(body)
            .and_then(|r| world.restart(&r.instance_ids, now))
            .and_then(|restarted_instances| {
                data(RestartResponse {
                    restarted_instances,
                })
            }),
        ("GET", "/api/v1/instance-types") => data(world.instance_types()),
        ("GET", "/api/v1/regions") => data(world.regions()),
        ("GET", "/api/v1/images") => data(world.images()),
        ("GET", "/api/v1/ssh-keys") => data(world.ssh_keys()),
        ("POST", "/api/v1/ssh-keys") => parse::<AddSshKeyRequest>(body).and_then(|r| {
            match world.add_ssh_key(&r.name, r.public_key.as_deref())? {
                Ok(key) => data(key),
                Err(generated) => data(generated),
            }
        }),
        ("DELETE", "/api/v1/ssh-keys/{id}") => world.delete_ssh_key(id).map(|()| json!({})),
        ("GET", "/api/v1/file-systems") => data(world.filesystems()),
        ("POST", "/api/v1/filesystems") => parse::<CreateFilesystemRequest>(body)
            .and_then(|r| world.create_filesystem(&r.name, &r.region))
            .and_then(data),
        ("DELETE", "/api/v1/filesystems/{id}") => world
            .delete_filesystem(id)
            .and_then(|deleted_ids| data(FilesystemDeleteResponse { deleted_ids })),
        ("GET", "/api/v1/firewall-rulesets") => data(world.firewall_rulesets()),
        ("POST", "/api/v1/firewall-rulesets") => parse::<CreateFirewallRulesetRequest>(body)
            .and_then(|r| world.create_firewall_ruleset(r))
            .and_then(data),
        ("GET", "/api/v1/firewall-rulesets/global") => data(world.global_firewall_ruleset()),
        ("PATCH", "/api/v1/firewall-rulesets/global") => {
            parse::<UpdateFirewallRulesetRequest>(body)
                .and_then(|r| world.update_global_firewall_ruleset(r.rules))
                .and_then(data)
        }
        ("GET", "/api/v1/firewall-rulesets/{id}") => world.firewall_ruleset(id).and_then(data),
        ("PATCH", "/api/v1/firewall-rulesets/{id}") => parse::<UpdateFirewallRulesetRequest>(body)
            .and_then(|r| world.update_firewall_ruleset(id, r))
            .and_then(data),
        ("DELETE", "/api/v1/firewall-rulesets/{id}") => {
            world.delete_firewall_ruleset(id).map(|()| json!({}))
        }
        ("GET", "/api/v1/firewall-rules") => data(world.legacy_firewall_rules()),
        ("PUT", "/api/v1/firewall-rules") => parse::<FirewallRulesRequest>(body)
            .and_then(|r| world.set_legacy_firewall_rules(r.data))
            .and_then(data),
        _ => return None,
    };
    Some(result)
}

fn error_response(error: &ApiError) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json!({ "error": error.body }))
}

/// `/api/v1/*path`: every Lambda API endpoint.
#[handler]
pub(crate) async fn api(
    request: &Request,
    body: Body,
    Data(shared): Data<&Arc<Shared>>,
) -> Response {
    let arrived = Instant::now();
    shared.advance();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let sub_path = path
        .strip_prefix("/api/v1")
        .unwrap_or(&path)
        .trim_matches('/')
        .to_owned();
    let segments: Vec<&str> = sub_path.split('/').filter(|s| !s.is_empty()).collect();

    let key = api_key_of(request);
    let authorized = key.as_deref().is_some_and(|key| {
        lock(&shared.world)
            .scenario()
            .api_keys
            .iter()
            .any(|k| k == key)
    });

    let body_bytes = body.into_bytes_limit(MAX_BODY_BYTES).await;
    let (parsed_body, body_error) = match body_bytes {
        Ok(bytes) if bytes.is_empty() => (None, None),
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => (Some(value), None),
            Err(_) => (
                None,
                Some(ApiError::invalid_parameters(
                    "Request body is not valid JSON.",
                )),
            ),
        },
        Err(_) => (
            None,
            Some(ApiError::invalid_parameters("Request body is too large.")),
        ),
    };

    let routed = route(&segments);
    let is_launch = routed.is_some_and(|(template, _)| template.ends_with("/launch"));
    let outcome = if authorized {
        let key = key.unwrap_or_default();
        if let Some(limited) = shared.rate_limit(&key, is_launch, arrived) {
            Err(limited)
        } else if let Some(fault) = shared.injected_fault(&method, &path) {
            Err(fault)
        } else if let Some(error) = body_error {
            Err(error)
        } else {
            let not_found = || Err(ApiError::not_found("The requested resource was not found."));
            match routed {
                Some((template, id)) => {
                    let mut world = lock(&shared.world);
                    dispatch(
                        &mut world,
                        &method,
                        template,
                        id.unwrap_or_default(),
                        parsed_body.as_ref(),
                        arrived,
                    )
                    .unwrap_or_else(not_found)
                }
                None => not_found(),
            }
        }
    } else {
        Err(ApiError::unauthorized())
    };
    // The route is logged even when auth or a fault cut the request short,
    // so the spec test knows which schema the answer must match.
    let route = routed.map(|(template, _)| template);

    let latency = lock(&shared.world).scenario().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let (status, response_body, retry_after) = match &outcome {
        Ok(value) => (StatusCode::OK, json!({ "data": value }), None),
        Err(error) => {
            let (status, body) = error_response(error);
            (status, body, error.retry_after)
        }
    };
    shared.record(RequestRecord {
        seq: 0,
        at: OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        elapsed_ms: arrived.duration_since(shared.started).as_millis() as u64,
        method: method.to_string(),
        path,
        route: route.map(str::to_owned),
        authorized,
        request: parsed_body.map(redact_user_data),
        status: status.as_u16(),
        response: response_body.clone(),
    });
    let mut response = Response::builder()
        .status(status)
        .content_type("application/json");
    if let Some(seconds) = retry_after {
        response = response.header(header::RETRY_AFTER, seconds.to_string());
    }
    response.body(response_body.to_string())
}

// ---- sim-only control endpoints ----

/// `GET /sim/requests`.
#[handler]
pub(crate) fn control_requests(Data(shared): Data<&Arc<Shared>>) -> Json<Vec<RequestRecord>> {
    Json(shared.request_log())
}

/// `GET /sim/billing`.
#[handler]
pub(crate) fn control_billing(Data(shared): Data<&Arc<Shared>>) -> Response {
    shared.advance();
    let billing = lock(&shared.world).billing(Instant::now());
    Json(billing).into_response()
}

/// `GET /sim/faults`.
#[handler]
pub(crate) fn control_get_faults(Data(shared): Data<&Arc<Shared>>) -> Json<Faults> {
    Json(lock(&shared.world).scenario().faults.clone())
}

/// `PUT /sim/faults`.
#[handler]
pub(crate) fn control_put_faults(
    Data(shared): Data<&Arc<Shared>>,
    Json(faults): Json<Faults>,
) -> StatusCode {
    lock(&shared.world).set_faults(faults);
    StatusCode::NO_CONTENT
}

/// `POST /sim/instances`.
#[handler]
pub(crate) fn control_insert_instance(
    Data(shared): Data<&Arc<Shared>>,
    Json(new): Json<NewInstance>,
) -> Response {
    match lock(&shared.world).insert_instance(new, Instant::now()) {
        Ok(id) => Json(json!({ "id": id })).into_response(),
        Err(error) => {
            let (status, body) = error_response(&error);
            Response::builder().status(status).body(body.to_string())
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ForcedStatus {
    status: InstanceStatus,
}

/// `POST /sim/instances/{id}/status`.
#[handler]
pub(crate) fn control_force_status(
    Data(shared): Data<&Arc<Shared>>,
    Path(id): Path<String>,
    Json(forced): Json<ForcedStatus>,
) -> StatusCode {
    if lock(&shared.world).force_status(&id, forced.status, Instant::now()) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// How often the lifecycle advances on its own, so hooks fire on time even
/// when nobody is calling the API.
pub(crate) const TICK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operations_table_matches_what_dispatch_serves() {
        let mut world = World::new(crate::Scenario::default());
        let now = Instant::now();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            for (_, route) in OPERATIONS {
                let served = dispatch(&mut world, &method, route, "x", None, now).is_some();
                assert_eq!(served, serves(method.as_str(), route), "{method} {route}");
            }
        }
    }
}
