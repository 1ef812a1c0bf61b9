//! The daemon's HTTP API (DESIGN.md §3.2) on poem.
//!
//! Every answer that is not a success is `{"error": {"code", "message"}}`
//! with a fixed message chosen here: no path, OS error, type name or parser
//! message ever reaches a client (poem's own 404/405/413 are rewritten in
//! [`error_response`]). Authentication is a bearer token compared in
//! constant time; a token in the URL is never looked at. Bodies are read
//! only after authentication and only up to 16 KiB. Nothing a client sends
//! can stop enforcement: handlers take the core's lock for a few field
//! updates and never wait on the enforcement loop.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::{Body, Endpoint, EndpointExt, Request, Response, Route, get, handler, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use soong_protocol::api::{
    ActivityResponse, DaemonState, ErrorBody, ExtendRequest, ExtendResponse, HealthResponse,
    MAX_BODY_BYTES, MAX_SHUTDOWN_REASON_CHARS, ShutdownRequest, ShutdownResponse, error_code,
};
use soong_protocol::config::Secret;
use soong_protocol::lease::hours_to_duration;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;

use crate::policy::Refusal;
use crate::shared::{Shared, now};

/// A refusal, boxed: a `Response` is large and mostly not needed.
type Refused = Box<Response>;

/// What the handlers share.
struct Api {
    shared: Arc<Shared>,
    token: Secret,
}

/// The API's routes, with error rewriting.
pub fn routes(shared: Arc<Shared>, token: Secret) -> impl Endpoint {
    Route::new()
        .at("/", get(crate::dashboard::page))
        .at("/dashboard.js", get(crate::dashboard::script))
        .at("/dashboard.css", get(crate::dashboard::style))
        .at("/health", get(get_health))
        .at("/status", get(get_status))
        .at("/activity", post(post_activity))
        .at("/extend", post(post_extend))
        .at("/shutdown", post(post_shutdown))
        .at("/metrics", get(get_metrics))
        .data(Arc::new(Api { shared, token }))
        .catch_all_error(|err: poem::Error| async move { error_response(err.status()) })
}

/// Rewrites poem's own errors (unknown path, wrong method, ...) into the
/// daemon's error shape, with messages that reveal nothing.
fn error_response(status: StatusCode) -> Response {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (error_code::NOT_FOUND, "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (
            error_code::METHOD_NOT_ALLOWED,
            "this endpoint does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (error_code::PAYLOAD_TOO_LARGE, "the body is over 16 KiB"),
        s if s.is_client_error() => (
            error_code::INVALID_REQUEST,
            "the request was not understood",
        ),
        _ => (
            error_code::INTERNAL,
            "the daemon could not answer this request",
        ),
    };
    error(status, code, message)
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .content_type("application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .header("x-content-type-options", "nosniff")
            .body(bytes),
        Err(_) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .finish(),
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(status, &ErrorBody::new(code, message))
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, error_code::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

impl Api {
    /// `Authorization: Bearer <token>`, compared in constant time. The
    /// scheme is case-insensitive (RFC 9110); the token is not.
    fn authorize(&self, req: &Request) -> Result<(), Refused> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Err(Box::new(unauthorized(
                "an `Authorization: Bearer` header is required",
            )));
        };
        let value = value.as_bytes();
        let presented = match value.split_first_chunk::<7>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest,
            _ => {
                return Err(Box::new(unauthorized(
                    "an `Authorization: Bearer` header is required",
                )));
            }
        };
        let presented = presented.trim_ascii();
        let expected = self.token.expose().as_bytes();
        if bool::from(presented.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Box::new(unauthorized("the bearer token is not valid")))
        }
    }
}

/// Reads the body, up to [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Vec<u8>, Refused> {
    match body.into_bytes_limit(MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => {
            Err(Box::new(error_response(StatusCode::PAYLOAD_TOO_LARGE)))
        }
        Err(_) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            error_code::INVALID_REQUEST,
            "the body could not be read",
        ))),
    }
}

/// Parses a JSON body: not JSON is 400, JSON of the wrong shape is 422.
/// The message is the caller's, never serde's (which names Rust types).
fn parse<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, Refused> {
    serde_json::from_slice(bytes).map_err(|err| {
        Box::new(match err.classify() {
            serde_json::error::Category::Data => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                error_code::INVALID_REQUEST,
                format!("expected a body like {shape}"),
            ),
            _ => error(
                StatusCode::BAD_REQUEST,
                error_code::INVALID_JSON,
                format!("the body is not valid JSON; expected {shape}"),
            ),
        })
    })
}

fn terminating() -> Response {
    error(
        StatusCode::CONFLICT,
        error_code::TERMINATING,
        "the instance is being terminated; this cannot be undone",
    )
}

#[handler]
fn get_health() -> Response {
    json(StatusCode::OK, &HealthResponse::ok())
}

#[handler]
fn get_status(req: &Request, Data(api): Data<&Arc<Api>>) -> Response {
    if let Err(denied) = api.authorize(req) {
        return *denied;
    }
    let status = api.shared.lock().status(now());
    json(StatusCode::OK, &status)
}

#[handler]
fn get_metrics(req: &Request, Data(api): Data<&Arc<Api>>) -> Response {
    if let Err(denied) = api.authorize(req) {
        return *denied;
    }
    let now = now();
    let (status, attempts) = {
        let core = api.shared.lock();
        (core.status(now), core.terminate_attempts())
    };
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(crate::metrics::render(&status, attempts, now))
}

#[handler]
async fn post_activity(req: &Request, body: Body, Data(api): Data<&Arc<Api>>) -> Response {
    if let Err(denied) = api.authorize(req) {
        return *denied;
    }
    // The body carries nothing, but its size is still bounded.
    if let Err(refused) = read_body(body).await {
        return *refused;
    }
    let result = api.shared.lock().record_activity(now(), "api");
    match result {
        Ok(last_activity) => {
            // Explicit activity is rare and deliberate: make it durable now
            // (sampled activity is persisted at a bounded rate instead).
            let _ = api.shared.persist().await;
            json(StatusCode::OK, &ActivityResponse { last_activity })
        }
        Err(_) => terminating(),
    }
}

#[handler]
async fn post_extend(req: &Request, body: Body, Data(api): Data<&Arc<Api>>) -> Response {
    const SHAPE: &str = r#"{"hours": 2} with a positive number of hours"#;
    if let Err(denied) = api.authorize(req) {
        return *denied;
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(refused) => return *refused,
    };
    let request: ExtendRequest = match parse(&bytes, SHAPE) {
        Ok(request) => request,
        Err(refused) => return *refused,
    };
    let requested = match hours_to_duration(request.hours) {
        Ok(requested) => requested,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                error_code::INVALID_REQUEST,
                err.to_string(),
            );
        }
    };
    let result = api.shared.lock().extend(now(), requested);
    match result {
        Ok(grant) => {
            let (shutdown_at, reason) = api.shared.lock().shutdown();
            let shutdown_at = shutdown_at.format(&Rfc3339).unwrap_or_default();
            log::info!(
                SOONG_REASON = reason.as_str(), SOONG_SHUTDOWN_AT = shutdown_at.as_str();
                "lease extended by {}s (asked {}s) to {}; shutdown at {shutdown_at} ({reason})",
                grant.granted.as_secs(),
                grant.requested.as_secs(),
                grant.lease_deadline.format(&Rfc3339).unwrap_or_default()
            );
            // Durable before it is promised; a failure is logged by persist()
            // and retried by the loop, and the grant holds in memory.
            let _ = api.shared.persist().await;
            api.shared.wake.notify_one();
            json(
                StatusCode::OK,
                &ExtendResponse {
                    lease_deadline: grant.lease_deadline,
                    granted_seconds: grant.granted.as_secs(),
                    requested_seconds: grant.requested.as_secs(),
                    capped: grant.capped,
                },
            )
        }
        Err(Refusal::Terminating) => terminating(),
        Err(Refusal::AtCap { max_lease_deadline }) => error(
            StatusCode::CONFLICT,
            error_code::LEASE_AT_MAXIMUM,
            format!(
                "the lease already ends at its maximum ({}, launch + max_lease); it cannot be extended further",
                max_lease_deadline.format(&Rfc3339).unwrap_or_default()
            ),
        ),
    }
}

#[handler]
async fn post_shutdown(req: &Request, body: Body, Data(api): Data<&Arc<Api>>) -> Response {
    const SHAPE: &str = r#"{"reason": "..."} or an empty body"#;
    if let Err(denied) = api.authorize(req) {
        return *denied;
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(refused) => return *refused,
    };
    let request = if bytes.trim_ascii().is_empty() {
        ShutdownRequest::default()
    } else {
        match parse::<ShutdownRequest>(&bytes, SHAPE) {
            Ok(request) => request,
            Err(refused) => return *refused,
        }
    };
    if request
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_SHUTDOWN_REASON_CHARS)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            error_code::INVALID_REQUEST,
            format!("`reason` must be at most {MAX_SHUTDOWN_REASON_CHARS} characters"),
        );
    }
    let detail = request.reason.filter(|r| !r.trim().is_empty());
    log::warn!(
        SOONG_REASON = "shutdown_requested";
        "shutdown requested through the API{}",
        detail
            .as_deref()
            .map(|r| format!(": {r:?}"))
            .unwrap_or_default()
    );
    api.shared.lock().request_shutdown(now(), detail);
    // `terminating` is on disk before the answer, so a crash right after
    // it still comes back terminating.
    let _ = api.shared.persist().await;
    api.shared.wake.notify_one();
    json(
        StatusCode::ACCEPTED,
        &ShutdownResponse {
            state: DaemonState::Terminating,
        },
    )
}
