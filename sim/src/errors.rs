//! The API's error responses, one constructor per error schema of the spec.
//!
//! Each constructor fills exactly the fields its schema requires (some
//! require `suggestion`, some do not), so every error the simulator sends
//! validates against the spec.

use lambda_cloud::types::ApiErrorBody;

/// An error response: HTTP status plus Lambda's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `error` object.
    pub body: ApiErrorBody,
    /// `Retry-After` seconds, for 429s.
    pub retry_after: Option<u64>,
}

fn error(
    status: u16,
    code: &str,
    message: impl Into<String>,
    suggestion: Option<&str>,
) -> ApiError {
    ApiError {
        status,
        body: ApiErrorBody {
            code: code.to_owned(),
            message: message.into(),
            suggestion: suggestion.map(str::to_owned),
        },
        retry_after: None,
    }
}

impl ApiError {
    /// 401 `global/invalid-api-key`.
    pub fn unauthorized() -> Self {
        error(
            401,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            Some("Check your API key or create a new one, then try again."),
        )
    }

    /// 400 `global/invalid-parameters`.
    pub fn invalid_parameters(message: impl Into<String>) -> Self {
        error(400, "global/invalid-parameters", message, None)
    }

    /// 404 `global/not-found`: an unknown route or SSH key.
    pub fn not_found(message: impl Into<String>) -> Self {
        error(404, "global/not-found", message, None)
    }

    /// 404 `global/object-does-not-exist` for an instance.
    pub fn instance_not_found() -> Self {
        error(
            404,
            "global/object-does-not-exist",
            "Specified instance does not exist.",
            None,
        )
    }

    /// 404 `global/object-does-not-exist` for a filesystem.
    pub fn filesystem_not_found() -> Self {
        error(
            404,
            "global/object-does-not-exist",
            "Filesystem was not found.",
            None,
        )
    }

    /// 404 `global/object-does-not-exist` for a firewall ruleset.
    pub fn firewall_ruleset_not_found() -> Self {
        error(
            404,
            "global/object-does-not-exist",
            "Firewall ruleset does not exist or you do not have permission to access it.",
            Some("Check your firewall ruleset ID and try again."),
        )
    }

    /// 404 `global/object-does-not-exist` for a resource named in a launch
    /// (SSH key, filesystem, firewall ruleset, image).
    pub fn launch_resource_not_found(message: impl Into<String>, suggestion: &str) -> Self {
        error(
            404,
            "global/object-does-not-exist",
            message,
            Some(suggestion),
        )
    }

    /// 400 `instance-operations/launch/insufficient-capacity`.
    pub fn insufficient_capacity() -> Self {
        error(
            400,
            "instance-operations/launch/insufficient-capacity",
            "Not enough capacity to fulfill launch request.",
            None,
        )
    }

    /// 400 `instance-operations/launch/file-system-in-wrong-region`.
    pub fn filesystem_in_wrong_region(filesystem: &str, region: &str) -> Self {
        error(
            400,
            "instance-operations/launch/file-system-in-wrong-region",
            format!("File system '{filesystem}' is not in region '{region}'."),
            None,
        )
    }

    /// 400 `global/duplicate`.
    pub fn duplicate(message: impl Into<String>) -> Self {
        error(400, "global/duplicate", message, None)
    }

    /// 400 `filesystems/filesystem-in-use`.
    pub fn filesystem_in_use() -> Self {
        error(
            400,
            "filesystems/filesystem-in-use",
            "Filesystem is in use by one or more instances.",
            None,
        )
    }

    /// 400 `firewall-rulesets/firewall-ruleset-in-use`.
    pub fn firewall_ruleset_in_use() -> Self {
        error(
            400,
            "firewall-rulesets/firewall-ruleset-in-use",
            "Firewall ruleset is in use by one or more instances.",
            Some("Terminate all instances that are using the ruleset before deleting it."),
        )
    }

    /// 409 `global/conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        error(409, "global/conflict", message, None)
    }

    /// 5xx `global/internal-error`.
    pub fn internal(status: u16) -> Self {
        error(
            status,
            "global/internal-error",
            "An internal server error occurred.",
            Some("Try again later. Contact Support if the problem persists."),
        )
    }

    /// 429 `global/too-many-requests`. The spec documents no 429 body; this
    /// is the shape every other Lambda error has, with a `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut error = error(
            429,
            lambda_cloud::CODE_TOO_MANY_REQUESTS,
            "Too many requests.",
            Some("Slow down: the API allows about one request per second."),
        );
        error.retry_after = Some(retry_after_secs.max(1));
        error
    }
}
