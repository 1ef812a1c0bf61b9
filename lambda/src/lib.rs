//! A typed async client for the [Lambda Cloud API v1](https://docs.lambda.ai/api/cloud)
//! (OpenAPI v1.10.0), used by the soong CLI and the on-instance daemon.
//!
//! ```no_run
//! # async fn example() -> Result<(), lambda_cloud::Error> {
//! use lambda_cloud::{ApiKey, Client, DEFAULT_API_URL};
//! let client = Client::builder(DEFAULT_API_URL, ApiKey::new("secret_...")).build()?;
//! for instance in client.list_instances().await? {
//!     println!("{} {}", instance.id, instance.status);
//! }
//! # Ok(()) }
//! ```
//!
//! What the client guarantees:
//! - every request has a timeout;
//! - requests are paced to the API's limits (1/s, one launch per 12 s),
//!   shared by all clones of a client;
//! - reads and terminate are retried on 429, 5xx and network errors with
//!   jittered exponential backoff that honours `Retry-After`; a launch is
//!   never re-sent;
//! - errors keep Lambda's code, message and suggestion ([`Error`]), and are
//!   classified ([`ErrorKind`]);
//! - secrets (the key, user-data, generated private keys) never appear in
//!   `Debug` output.
#![warn(missing_docs)]

mod client;
mod error;
mod pacing;
mod retry;
pub mod types;

pub use client::{ApiKey, Client, ClientBuilder, DEFAULT_API_URL};
pub use error::{
    CODE_ACCOUNT_INACTIVE, CODE_FILESYSTEM_IN_WRONG_REGION, CODE_INSUFFICIENT_CAPACITY,
    CODE_INVALID_API_KEY, CODE_OBJECT_DOES_NOT_EXIST, CODE_QUOTA_EXCEEDED, CODE_TOO_MANY_REQUESTS,
    Error, ErrorKind,
};
pub use pacing::Pacing;
pub use retry::RetryPolicy;
pub use types::{
    Filesystem, GeneratedSshKey, ImageSpec, Instance, InstanceStatus, InstanceType, InstanceTypes,
    LaunchRequest, Region, SshKey, Tag, UserData,
};
