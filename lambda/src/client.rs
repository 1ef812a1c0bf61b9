//! The HTTP client: one method per endpoint, with pacing, timeouts and retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::Error;
use crate::pacing::{Pacer, Pacing, RequestClass};
use crate::retry::RetryPolicy;
use crate::types::{
    AddSshKeyRequest, CreateFilesystemRequest, CreateFirewallRulesetRequest, DataEnvelope,
    ErrorEnvelope, Filesystem, FilesystemDeleteResponse, FirewallRule, FirewallRulesRequest,
    FirewallRuleset, GeneratedSshKey, GlobalFirewallRuleset, Image, Instance, InstanceIdsRequest,
    InstanceTypes, LaunchRequest, LaunchResponse, Region, RenameRequest, RestartResponse, SshKey,
    TerminateResponse, UpdateFirewallRulesetRequest,
};

/// The production API's base URL.
pub const DEFAULT_API_URL: &str = "https://cloud.lambda.ai/api/v1";

/// A Lambda Cloud API key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key. Surrounding whitespace (a trailing newline from a key
    /// file, typically) is dropped.
    pub fn new(key: impl Into<String>) -> Self {
        let key: String = key.into();
        Self(key.trim().to_owned())
    }

    /// The key itself, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    api_key: ApiKey,
    pacing: Pacing,
    retry: RetryPolicy,
    timeout: Duration,
}

impl ClientBuilder {
    /// Request pacing (default: Lambda's limits).
    #[must_use]
    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// Retry policy for idempotent requests.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout for one attempt of one request, from connect to the last byte.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let mut base = Url::parse(&self.base_url).map_err(|error| Error::InvalidBaseUrl {
            url: self.base_url.clone(),
            reason: error.to_string(),
        })?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidBaseUrl {
                url: self.base_url,
                reason: "expected an http or https URL".into(),
            });
        }
        // Path segments are appended, so a trailing slash must not leave an
        // empty segment behind.
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.expose()))
            .map_err(|_| Error::InvalidApiKey)?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("soong/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::ClientSetup)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                pacer: Pacer::new(self.pacing),
                retry: self.retry,
                timeout: self.timeout,
            }),
        })
    }
}

/// A Lambda Cloud API v1 client. Cheap to clone; clones share one pacing
/// budget, as the API's rate limit is per account.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    pacer: Pacer,
    retry: RetryPolicy,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Whether a request may be repeated when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    Retry,
    Once,
}

impl Client {
    /// Starts building a client for the API at `base_url` (e.g.
    /// [`DEFAULT_API_URL`]).
    pub fn builder(base_url: impl Into<String>, api_key: ApiKey) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key,
            pacing: Pacing::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    // ---- instances ----

    /// `GET /instances`: every instance in the account.
    pub async fn list_instances(&self) -> Result<Vec<Instance>, Error> {
        self.get(&["instances"]).await
    }

    /// `GET /instances/{id}`.
    pub async fn get_instance(&self, id: &str) -> Result<Instance, Error> {
        self.get(&["instances", id]).await
    }

    /// `POST /instances/{id}`: renames an instance.
    pub async fn rename_instance(&self, id: &str, name: &str) -> Result<Instance, Error> {
        let body = RenameRequest { name: name.into() };
        self.send(
            Method::POST,
            &["instances", id],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Retry,
        )
        .await
    }

    /// `POST /instance-operations/launch`. Sent exactly once, whatever
    /// happens: after a timeout or a 5xx the launch may still have happened,
    /// so the caller must look for the instance (by name) before trying again.
    pub async fn launch_instance(&self, request: &LaunchRequest) -> Result<Vec<String>, Error> {
        let response: LaunchResponse = self
            .send(
                Method::POST,
                &["instance-operations", "launch"],
                Some(request),
                RequestClass::Launch,
                Idempotence::Once,
            )
            .await?;
        Ok(response.instance_ids)
    }

    /// `POST /instance-operations/terminate`. Retried on transient failures:
    /// terminating twice is the same as terminating once. A 404
    /// (`global/object-does-not-exist`) after a lost answer means the instance
    /// is already gone; callers usually treat [`crate::ErrorKind::NotFound`] as success.
    pub async fn terminate_instances(&self, ids: &[String]) -> Result<Vec<Instance>, Error> {
        let body = InstanceIdsRequest {
            instance_ids: ids.to_vec(),
        };
        let response: TerminateResponse = self
            .send(
                Method::POST,
                &["instance-operations", "terminate"],
                Some(&body),
                RequestClass::Ordinary,
                Idempotence::Retry,
            )
            .await?;
        Ok(response.terminated_instances)
    }

    /// `POST /instance-operations/restart`. Not retried: a restart repeated
    /// after a lost answer would reboot twice.
    pub async fn restart_instances(&self, ids: &[String]) -> Result<Vec<Instance>, Error> {
        let body = InstanceIdsRequest {
            instance_ids: ids.to_vec(),
        };
        let response: RestartResponse = self
            .send(
                Method::POST,
                &["instance-operations", "restart"],
                Some(&body),
                RequestClass::Ordinary,
                Idempotence::Once,
            )
            .await?;
        Ok(response.restarted_instances)
    }

    // ---- catalogue ----

    /// `GET /instance-types`: every type with its price and the regions that
    /// have capacity for it now.
    pub async fn list_instance_types(&self) -> Result<InstanceTypes, Error> {
        self.get(&["instance-types"]).await
    }

    /// `GET /regions`.
    pub async fn list_regions(&self) -> Result<Vec<Region>, Error> {
        self.get(&["regions"]).await
    }

    /// `GET /images`.
    pub async fn list_images(&self) -> Result<Vec<Image>, Error> {
        self.get(&["images"]).await
    }

    // ---- SSH keys ----

    /// `GET /ssh-keys`.
    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, Error> {
        self.get(&["ssh-keys"]).await
    }

    /// `POST /ssh-keys` with a public key.
    pub async fn add_ssh_key(&self, name: &str, public_key: &str) -> Result<SshKey, Error> {
        let body = AddSshKeyRequest {
            name: name.into(),
            public_key: Some(public_key.into()),
        };
        self.send(
            Method::POST,
            &["ssh-keys"],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `POST /ssh-keys` without a public key: Lambda generates a pair and
    /// returns the private key, once.
    pub async fn generate_ssh_key(&self, name: &str) -> Result<GeneratedSshKey, Error> {
        let body = AddSshKeyRequest {
            name: name.into(),
            public_key: None,
        };
        self.send(
            Method::POST,
            &["ssh-keys"],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `DELETE /ssh-keys/{id}`.
    pub async fn delete_ssh_key(&self, id: &str) -> Result<(), Error> {
        let _: serde_json::Value = self
            .send(
                Method::DELETE,
                &["ssh-keys", id],
                None::<&()>,
                RequestClass::Ordinary,
                Idempotence::Once,
            )
            .await?;
        Ok(())
    }

    // ---- filesystems ----
    //
    // The spec's quirk: the list lives at `/file-systems`, while create and
    // delete live at `/filesystems`.

    /// `GET /file-systems`.
    pub async fn list_filesystems(&self) -> Result<Vec<Filesystem>, Error> {
        self.get(&["file-systems"]).await
    }

    /// `POST /filesystems`.
    pub async fn create_filesystem(&self, name: &str, region: &str) -> Result<Filesystem, Error> {
        let body = CreateFilesystemRequest {
            name: name.into(),
            region: region.into(),
        };
        self.send(
            Method::POST,
            &["filesystems"],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `DELETE /filesystems/{id}`: returns the deleted ids.
    pub async fn delete_filesystem(&self, id: &str) -> Result<Vec<String>, Error> {
        let response: FilesystemDeleteResponse = self
            .send(
                Method::DELETE,
                &["filesystems", id],
                None::<&()>,
                RequestClass::Ordinary,
                Idempotence::Once,
            )
            .await?;
        Ok(response.deleted_ids)
    }

    // ---- firewall ----

    /// `GET /firewall-rulesets`.
    pub async fn list_firewall_rulesets(&self) -> Result<Vec<FirewallRuleset>, Error> {
        self.get(&["firewall-rulesets"]).await
    }

    /// `GET /firewall-rulesets/{id}`.
    pub async fn get_firewall_ruleset(&self, id: &str) -> Result<FirewallRuleset, Error> {
        self.get(&["firewall-rulesets", id]).await
    }

    /// `POST /firewall-rulesets`.
    pub async fn create_firewall_ruleset(
        &self,
        request: &CreateFirewallRulesetRequest,
    ) -> Result<FirewallRuleset, Error> {
        self.send(
            Method::POST,
            &["firewall-rulesets"],
            Some(request),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `PATCH /firewall-rulesets/{id}`.
    pub async fn update_firewall_ruleset(
        &self,
        id: &str,
        request: &UpdateFirewallRulesetRequest,
    ) -> Result<FirewallRuleset, Error> {
        self.send(
            Method::PATCH,
            &["firewall-rulesets", id],
            Some(request),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `DELETE /firewall-rulesets/{id}`.
    pub async fn delete_firewall_ruleset(&self, id: &str) -> Result<(), Error> {
        let _: serde_json::Value = self
            .send(
                Method::DELETE,
                &["firewall-rulesets", id],
                None::<&()>,
                RequestClass::Ordinary,
                Idempotence::Once,
            )
            .await?;
        Ok(())
    }

    /// `GET /firewall-rulesets/global`.
    pub async fn get_global_firewall_ruleset(&self) -> Result<GlobalFirewallRuleset, Error> {
        self.get(&["firewall-rulesets", "global"]).await
    }

    /// `PATCH /firewall-rulesets/global`.
    pub async fn update_global_firewall_ruleset(
        &self,
        rules: Vec<FirewallRule>,
    ) -> Result<GlobalFirewallRuleset, Error> {
        let body = UpdateFirewallRulesetRequest {
            name: None,
            rules: Some(rules),
        };
        self.send(
            Method::PATCH,
            &["firewall-rulesets", "global"],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Once,
        )
        .await
    }

    /// `GET /firewall-rules` (the legacy, account-wide rule list).
    pub async fn list_firewall_rules(&self) -> Result<Vec<FirewallRule>, Error> {
        self.get(&["firewall-rules"]).await
    }

    /// `PUT /firewall-rules`: replaces the legacy rule list.
    pub async fn set_firewall_rules(
        &self,
        rules: Vec<FirewallRule>,
    ) -> Result<Vec<FirewallRule>, Error> {
        let body = FirewallRulesRequest { data: rules };
        self.send(
            Method::PUT,
            &["firewall-rules"],
            Some(&body),
            RequestClass::Ordinary,
            Idempotence::Retry,
        )
        .await
    }

    // ---- plumbing ----

    async fn get<T: DeserializeOwned>(&self, path: &[&str]) -> Result<T, Error> {
        self.send(
            Method::GET,
            path,
            None::<&()>,
            RequestClass::Ordinary,
            Idempotence::Retry,
        )
        .await
    }

    async fn send<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &[&str],
        body: Option<&B>,
        class: RequestClass,
        idempotence: Idempotence,
    ) -> Result<T, Error> {
        let mut url = self.inner.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // Ids are pushed as segments, so an id can never smuggle in a path.
            segments.extend(path);
        }
        let endpoint = format!("{method} /{}", path.join("/"));
        let mut attempt = 1;
        loop {
            self.inner.pacer.wait(class).await;
            let result = self
                .attempt(method.clone(), url.clone(), body, &endpoint)
                .await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let backoff = match idempotence {
                Idempotence::Retry => self.inner.retry.backoff(attempt, &error),
                Idempotence::Once => None,
            };
            let Some(wait) = backoff else {
                return Err(error);
            };
            log::warn!("{endpoint} failed (attempt {attempt}): {error}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        endpoint: &str,
    ) -> Result<T, Error> {
        let mut request = self
            .inner
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.inner.auth.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            let envelope: DataEnvelope<T> =
                serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
                    endpoint: endpoint.to_owned(),
                    source,
                })?;
            return Ok(envelope.data);
        }
        Err(api_error(status, retry_after, &bytes))
    }

    fn transport_error(&self, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            Error::Timeout(self.inner.timeout)
        } else {
            Error::Network(error)
        }
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    // Lambda sends delta-seconds; an HTTP-date is treated as absent, which
    // falls back to our own backoff.
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn api_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(ErrorEnvelope { error }) => Error::Api {
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            suggestion: error.suggestion,
            retry_after,
        },
        Err(_) => Error::UnexpectedStatus {
            status: status.as_u16(),
            retry_after,
        },
    }
}
