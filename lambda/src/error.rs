//! Errors from the Lambda Cloud API, classified so callers can act on them.
//!
//! Lambda reports errors as `{"error": {"code", "message", "suggestion"}}`.
//! [`Error::kind`] folds the HTTP status and the code into the handful of
//! situations a caller treats differently (no capacity, bad key, rate limit,
//! not found, …), and [`Error::hint`] says what a user can do about it.

use std::time::Duration;

/// Any failure of a Lambda Cloud API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error envelope.
    #[error("Lambda API error {status} `{code}`: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Lambda's machine-readable code, e.g. `global/invalid-api-key`.
        code: String,
        /// Lambda's message.
        message: String,
        /// Lambda's suggestion, when it gave one.
        suggestion: Option<String>,
        /// The `Retry-After` the API asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The API answered with a status and a body that is not an error envelope
    /// (a proxy's HTML page, say).
    #[error("Lambda API answered {status} without an error body")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
        /// The `Retry-After` the server asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The request did not complete within the client's timeout.
    #[error("the Lambda API did not answer within {0:?}")]
    Timeout(Duration),
    /// The API could not be reached (DNS, connect, TLS, connection reset).
    #[error("could not reach the Lambda API")]
    Network(#[source] reqwest::Error),
    /// A successful response whose body does not match the API's schema.
    #[error("could not read the Lambda API's response to {endpoint}")]
    Decode {
        /// The endpoint, e.g. `GET /instances`.
        endpoint: String,
        /// What did not match.
        #[source]
        source: serde_json::Error,
    },
    /// The configured base URL is not a usable URL.
    #[error("invalid Lambda API URL `{url}`")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The API key holds characters that cannot go in an HTTP header.
    #[error("the Lambda API key contains characters that are not allowed in an HTTP header")]
    InvalidApiKey,
    /// The HTTP client could not be built (TLS backend setup).
    #[error("could not set up the HTTP client")]
    ClientSetup(#[source] reqwest::Error),
}

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key is invalid, expired or deleted (401).
    Unauthorized,
    /// The account cannot do this (403: inactive, billing address, forbidden).
    Forbidden,
    /// No capacity for this instance type in this region.
    NoCapacity,
    /// Too many requests (429).
    RateLimited,
    /// The instance, key, filesystem or ruleset does not exist.
    NotFound,
    /// The request was rejected as invalid (400), other than for capacity.
    InvalidRequest,
    /// The request conflicts with the resource's state (409).
    Conflict,
    /// Lambda's side failed (5xx).
    Server,
    /// The network failed before an answer arrived.
    Network,
    /// No answer within the timeout.
    Timeout,
    /// Anything else: undecodable responses, local setup errors.
    Other,
}

/// Lambda's code for a launch refused for lack of capacity.
pub const CODE_INSUFFICIENT_CAPACITY: &str = "instance-operations/launch/insufficient-capacity";
/// Lambda's code for an object (instance, filesystem, …) that does not exist.
pub const CODE_OBJECT_DOES_NOT_EXIST: &str = "global/object-does-not-exist";
/// Lambda's code for a bad API key.
pub const CODE_INVALID_API_KEY: &str = "global/invalid-api-key";
/// Lambda's code for a filesystem in another region than the launch.
pub const CODE_FILESYSTEM_IN_WRONG_REGION: &str =
    "instance-operations/launch/file-system-in-wrong-region";
/// Lambda's code for an exceeded quota.
pub const CODE_QUOTA_EXCEEDED: &str = "global/quota-exceeded";
/// Lambda's code for an inactive account.
pub const CODE_ACCOUNT_INACTIVE: &str = "global/account-inactive";
/// The code sent with 429 responses.
pub const CODE_TOO_MANY_REQUESTS: &str = "global/too-many-requests";

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { status, code, .. } => classify(*status, Some(code)),
            Self::UnexpectedStatus { status, .. } => classify(*status, None),
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Network(_) => ErrorKind::Network,
            Self::Decode { .. }
            | Self::InvalidBaseUrl { .. }
            | Self::InvalidApiKey
            | Self::ClientSetup(_) => ErrorKind::Other,
        }
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Lambda's error code, when the API sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long the API asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } | Self::UnexpectedStatus { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether repeating the same request later could succeed. Says nothing
    /// about whether repeating it is *safe*: that is the caller's business
    /// (a launch is never repeated blindly).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Network | ErrorKind::Timeout
        )
    }

    /// What a user can do about this error: Lambda's own suggestion when it
    /// gave one, else ours.
    pub fn hint(&self) -> Option<String> {
        if let Self::Api {
            suggestion: Some(suggestion),
            ..
        } = self
        {
            return Some(suggestion.clone());
        }
        let hint = match (self.kind(), self.code()) {
            (_, Some(CODE_FILESYSTEM_IN_WRONG_REGION)) => {
                "launch in the filesystem's region, or create a filesystem in this region"
            }
            (_, Some(CODE_QUOTA_EXCEEDED)) => "ask Lambda support to raise your quota",
            (ErrorKind::NoCapacity, _) => {
                "try another region or GPU type (`soong available`), or wait for capacity with `soong start --wait-for-capacity`"
            }
            (ErrorKind::Unauthorized, _) => {
                "check `lambda.api_key` in the config or `LAMBDA_API_KEY`; keys are managed at https://cloud.lambda.ai/api-keys"
            }
            (ErrorKind::Forbidden, _) => {
                "check that the Lambda account is active and has a valid payment method"
            }
            (ErrorKind::RateLimited, _) => {
                "the API allows about one request per second; wait a moment and try again"
            }
            (ErrorKind::Server, _) => {
                "Lambda's API is failing; try again in a minute (https://status.lambda.ai)"
            }
            (ErrorKind::Network | ErrorKind::Timeout, _) => {
                "check the network connection and `lambda.api_url` (or `SOONG_API_URL`)"
            }
            _ => return None,
        };
        Some(hint.to_owned())
    }
}

fn classify(status: u16, code: Option<&str>) -> ErrorKind {
    match (status, code) {
        (_, Some(CODE_INSUFFICIENT_CAPACITY)) => ErrorKind::NoCapacity,
        (_, Some(CODE_INVALID_API_KEY)) | (401, _) => ErrorKind::Unauthorized,
        (429, _) => ErrorKind::RateLimited,
        (403, _) => ErrorKind::Forbidden,
        (_, Some(CODE_OBJECT_DOES_NOT_EXIST | "global/not-found")) | (404, _) => {
            ErrorKind::NotFound
        }
        (409, _) => ErrorKind::Conflict,
        (500..=599, _) => ErrorKind::Server,
        (400..=499, _) => ErrorKind::InvalidRequest,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> Error {
        Error::Api {
            status,
            code: code.into(),
            message: "m".into(),
            suggestion: None,
            retry_after: None,
        }
    }

    #[test]
    fn codes_and_statuses_are_told_apart() {
        assert_eq!(
            api(400, CODE_INSUFFICIENT_CAPACITY).kind(),
            ErrorKind::NoCapacity
        );
        assert_eq!(
            api(401, CODE_INVALID_API_KEY).kind(),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            api(429, CODE_TOO_MANY_REQUESTS).kind(),
            ErrorKind::RateLimited
        );
        assert_eq!(
            api(404, CODE_OBJECT_DOES_NOT_EXIST).kind(),
            ErrorKind::NotFound
        );
        // The launch endpoint reports a missing SSH key as 400 + object-does-not-exist.
        assert_eq!(
            api(400, CODE_OBJECT_DOES_NOT_EXIST).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            api(400, "global/invalid-parameters").kind(),
            ErrorKind::InvalidRequest
        );
        assert_eq!(api(503, "global/internal-error").kind(), ErrorKind::Server);
        assert_eq!(api(403, CODE_ACCOUNT_INACTIVE).kind(), ErrorKind::Forbidden);
    }

    #[test]
    fn lambdas_own_suggestion_wins_over_ours() {
        let error = Error::Api {
            status: 401,
            code: CODE_INVALID_API_KEY.into(),
            message: "API key was invalid, expired, or deleted.".into(),
            suggestion: Some("Check your API key or create a new one, then try again.".into()),
            retry_after: None,
        };
        assert_eq!(
            error.hint().as_deref(),
            Some("Check your API key or create a new one, then try again.")
        );
        assert!(
            api(400, CODE_INSUFFICIENT_CAPACITY)
                .hint()
                .unwrap()
                .contains("soong available")
        );
    }
}
