//! The Lambda Cloud API v1 data model, as specified in `lambda-cloud-openapi.json` (v1.10.0).
//!
//! Two rules shape every type here. Responses are read tolerantly: unknown
//! fields are ignored and unknown enum values land in an `Unknown` variant, so
//! a new field or status on Lambda's side never breaks a running daemon.
//! Requests and responses are written strictly: optional fields that are unset
//! are omitted rather than sent as `null`, because the spec does not allow
//! `null` anywhere. The simulator serialises these same types, and its tests
//! validate that output against the spec.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A virtual machine, as returned by the instance endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique identifier.
    pub id: String,
    /// User-provided name (0–64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Public IPv4 address; only present once the instance is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Private IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// Lifecycle status.
    pub status: InstanceStatus,
    /// Names of the SSH keys allowed to log in.
    #[serde(default)]
    pub ssh_key_names: Vec<String>,
    /// Names of the attached filesystems.
    #[serde(default)]
    pub file_system_names: Vec<String>,
    /// Where each attached filesystem is mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_system_mounts: Vec<FilesystemMount>,
    /// The region the instance runs in.
    pub region: Region,
    /// The hardware the instance runs on, with its price.
    pub instance_type: InstanceType,
    /// Hostname, only present once the instance is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// JupyterLab token (a secret; never logged by this crate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jupyter_token: Option<String>,
    /// JupyterLab URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jupyter_url: Option<String>,
    /// Which actions can be taken on the instance now.
    #[serde(default)]
    pub actions: InstanceActions,
    /// Key/value tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Firewall rulesets associated with the instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_rulesets: Vec<FirewallRulesetRef>,
}

impl Instance {
    /// The value of the tag `key`, if the instance carries it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.as_str())
    }
}

/// The lifecycle status of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    /// Launched, not yet usable. Lambda may already bill.
    Booting,
    /// Running and usable.
    Active,
    /// Running but failing health checks. Billing continues.
    Unhealthy,
    /// Termination requested; shutting down.
    Terminating,
    /// Gone; no longer billed.
    Terminated,
    /// Reclaimed by Lambda.
    Preempted,
    /// A status this client does not know yet.
    #[serde(other)]
    Unknown,
}

impl InstanceStatus {
    /// Whether the instance has stopped for good (or is on its way there), so
    /// terminating it again would achieve nothing.
    pub fn is_ending(self) -> bool {
        matches!(self, Self::Terminating | Self::Terminated | Self::Preempted)
    }

    /// The spec's lowercase spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booting => "booting",
            Self::Active => "active",
            Self::Unhealthy => "unhealthy",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
            Self::Preempted => "preempted",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether each lifecycle action is available for an instance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InstanceActions {
    /// Migrate to other hardware.
    #[serde(default)]
    pub migrate: ActionAvailability,
    /// Rebuild from the image.
    #[serde(default)]
    pub rebuild: ActionAvailability,
    /// Restart.
    #[serde(default)]
    pub restart: ActionAvailability,
    /// Power-cycle.
    #[serde(default)]
    pub cold_reboot: ActionAvailability,
    /// Terminate.
    #[serde(default)]
    pub terminate: ActionAvailability,
}

/// Whether one action is available, and why not.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ActionAvailability {
    /// Whether the action can be taken now.
    pub available: bool,
    /// Why not (e.g. `vm-has-not-launched`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Why not, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_description: Option<String>,
}

/// A key/value tag on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tag {
    /// Key; for requests it must match `^[a-z][a-z0-9-:]+$`, at most 55 characters.
    pub key: String,
    /// Value, at most 128 characters.
    pub value: String,
}

impl Tag {
    /// A tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A filesystem mounted on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemMount {
    /// Absolute mount path.
    pub mount_point: String,
    /// The filesystem's id.
    pub file_system_id: String,
}

/// A reference to a firewall ruleset by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRulesetRef {
    /// The ruleset's id.
    pub id: String,
}

/// A region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// Region code, e.g. `us-west-1`.
    pub name: String,
    /// Human-readable location, e.g. `California, USA`.
    #[serde(default)]
    pub description: String,
}

/// An instance type: hardware and price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceType {
    /// Type name, e.g. `gpu_1x_a100_sxm4`.
    pub name: String,
    /// Human-readable description, e.g. `1x A100 (40 GB SXM4)`.
    #[serde(default)]
    pub description: String,
    /// GPU model, e.g. `A100 (40 GB SXM4)`.
    #[serde(default)]
    pub gpu_description: String,
    /// Price in US cents per hour.
    pub price_cents_per_hour: i64,
    /// Hardware specifications.
    pub specs: InstanceTypeSpecs,
}

/// Hardware specifications of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTypeSpecs {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// RAM in GiB.
    pub memory_gib: u32,
    /// Local storage in GiB.
    pub storage_gib: u32,
    /// Number of GPUs.
    pub gpus: u32,
}

/// One entry of `GET /instance-types`: a type and where it can launch now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceTypeAvailability {
    /// The instance type.
    pub instance_type: InstanceType,
    /// Regions that have capacity for it right now.
    pub regions_with_capacity_available: Vec<Region>,
}

/// `GET /instance-types`: keyed by type name.
pub type InstanceTypes = BTreeMap<String, InstanceTypeAvailability>;

/// A machine image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Unique identifier.
    pub id: String,
    /// When the image was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_time: OffsetDateTime,
    /// When the image was last updated.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_time: OffsetDateTime,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Family, e.g. `lambda-stack-24-04`.
    pub family: String,
    /// Version.
    pub version: String,
    /// CPU architecture.
    pub architecture: ImageArchitecture,
    /// Region the image is in.
    pub region: Region,
}

/// CPU architecture of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageArchitecture {
    /// 64-bit x86.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit ARM (GH200).
    #[serde(rename = "arm64")]
    Arm64,
    /// An architecture this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// How to pick the image at launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSpec {
    /// A specific image.
    Id {
        /// The image id.
        id: String,
    },
    /// The latest image of a family.
    Family {
        /// The family name.
        family: String,
    },
}

/// An SSH public key stored in the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    /// Unique identifier.
    pub id: String,
    /// Name (1–64 characters).
    pub name: String,
    /// The OpenSSH public key.
    pub public_key: String,
}

/// An SSH key pair that Lambda generated. The private key is shown only once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedSshKey {
    /// Unique identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// The OpenSSH public key.
    pub public_key: String,
    /// The private key, PEM. A secret: `Debug` redacts it.
    pub private_key: String,
}

impl fmt::Debug for GeneratedSshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedSshKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("public_key", &self.public_key)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// A persistent filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// Unique identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Where it is mounted on instances, e.g. `/lambda/nfs/coding-stack`.
    pub mount_point: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Who created it.
    pub created_by: User,
    /// Whether an instance has it mounted.
    pub is_in_use: bool,
    /// The region it lives in; instances must launch there to mount it.
    pub region: Region,
    /// Bytes used, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_used: Option<u64>,
}

/// A user of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Unique identifier.
    pub id: String,
    /// E-mail address.
    pub email: String,
    /// Account status.
    pub status: UserStatus,
}

/// Status of a user's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Active.
    Active,
    /// Deactivated.
    Deactivated,
    /// A status this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// A firewall ruleset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallRuleset {
    /// Unique identifier.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region it applies in.
    pub region: Region,
    /// Inbound rules.
    pub rules: Vec<FirewallRule>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Instances using it.
    pub instance_ids: Vec<String>,
}

/// The account-wide firewall ruleset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalFirewallRuleset {
    /// Always `global`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Inbound rules.
    pub rules: Vec<FirewallRule>,
}

/// One inbound firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    /// Protocol.
    pub protocol: NetworkProtocol,
    /// Inclusive `[min, max]` port range; not allowed for ICMP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<[u16; 2]>,
    /// Source IPv4 CIDR, e.g. `0.0.0.0/0`.
    pub source_network: String,
    /// Human-readable description (0–128 characters).
    #[serde(default)]
    pub description: String,
}

/// A network protocol in a firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProtocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// Every protocol.
    All,
    /// A protocol this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// A filesystem to mount at a chosen path at launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedFilesystemMount {
    /// Mount path under `/home`, `/lambda/nfs` or `/data`.
    pub mount_point: String,
    /// The filesystem's id.
    pub file_system_id: String,
}

/// The cloud-init user-data sent at launch. It carries secrets (the daemon's
/// token and API key), so `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserData(pub String);

impl fmt::Debug for UserData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserData(<{} bytes, redacted>)", self.0.len())
    }
}

/// `POST /instance-operations/launch`: every request field of the spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LaunchRequest {
    /// Region to launch in.
    pub region_name: String,
    /// Instance type to launch.
    pub instance_type_name: String,
    /// SSH keys to install. The API takes exactly one.
    pub ssh_key_names: Vec<String>,
    /// Filesystems to attach (mounted under `/lambda/nfs/<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_system_names: Vec<String>,
    /// Filesystems to attach at chosen paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_system_mounts: Vec<RequestedFilesystemMount>,
    /// Hostname (`^[a-z0-9][0-9a-z-]{0,62}$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Name (0–64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image by id or family; Lambda's default image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// cloud-init user-data (at most 1 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<UserData>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Firewall rulesets to apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_rulesets: Vec<FirewallRulesetRef>,
}

/// The `{"data": …}` envelope of every successful response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataEnvelope<T> {
    /// The payload.
    pub data: T,
}

/// The `{"error": …}` envelope of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ApiErrorBody,
}

/// An API error as Lambda sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Machine-readable code, e.g. `instance-operations/launch/insufficient-capacity`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// What to do about it, when Lambda says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

/// `data` of a launch response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchResponse {
    /// Ids of the launched instances.
    pub instance_ids: Vec<String>,
}

/// `data` of a terminate response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminateResponse {
    /// The instances, now terminating.
    pub terminated_instances: Vec<Instance>,
}

/// `data` of a restart response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartResponse {
    /// The instances, restarting.
    pub restarted_instances: Vec<Instance>,
}

/// `data` of a filesystem delete response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesystemDeleteResponse {
    /// Ids of the deleted filesystems.
    pub deleted_ids: Vec<String>,
}

/// Body of terminate and restart requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceIdsRequest {
    /// The instances to act on.
    pub instance_ids: Vec<String>,
}

/// Body of `POST /ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddSshKeyRequest {
    /// Name.
    pub name: String,
    /// Public key; when absent Lambda generates a pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Body of `POST /filesystems`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateFilesystemRequest {
    /// Name (`^[a-zA-Z]+[0-9a-zA-Z-]*$`, 1–60 characters).
    pub name: String,
    /// Region.
    pub region: String,
}

/// Body of `POST /instances/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenameRequest {
    /// The new name.
    pub name: String,
}

/// Body of `POST /firewall-rulesets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateFirewallRulesetRequest {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Rules.
    pub rules: Vec<FirewallRule>,
}

/// Body of `PATCH /firewall-rulesets/{id}` and `PATCH /firewall-rulesets/global`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateFirewallRulesetRequest {
    /// New name; unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New rules; unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<FirewallRule>>,
}

/// Body of `PUT /firewall-rules`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirewallRulesRequest {
    /// The rules.
    pub data: Vec<FirewallRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_and_fields_are_tolerated() {
        let json = r#"{"id":"i1","status":"hibernating","ssh_key_names":[],"file_system_names":[],
            "region":{"name":"us-west-1","description":"California"},
            "instance_type":{"name":"gpu_1x_a10","description":"1x A10","gpu_description":"A10",
              "price_cents_per_hour":86,"specs":{"vcpus":30,"memory_gib":200,"storage_gib":1400,"gpus":1},
              "brand_new_field":true},
            "actions":{"migrate":{"available":false},"rebuild":{"available":false},"restart":{"available":true},
              "cold_reboot":{"available":true},"terminate":{"available":true}},
            "some_future_field":{"x":1}}"#;
        let instance: Instance = serde_json::from_str(json).unwrap();
        assert_eq!(instance.status, InstanceStatus::Unknown);
        assert_eq!(instance.instance_type.price_cents_per_hour, 86);
    }

    #[test]
    fn unset_optional_launch_fields_are_omitted_not_null() {
        let request = LaunchRequest {
            region_name: "us-west-1".into(),
            instance_type_name: "gpu_1x_a10".into(),
            ssh_key_names: vec!["me".into()],
            ..LaunchRequest::default()
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"region_name":"us-west-1","instance_type_name":"gpu_1x_a10","ssh_key_names":["me"]})
        );
    }

    #[test]
    fn user_data_and_private_keys_never_show_in_debug_output() {
        let request = LaunchRequest {
            user_data: Some(UserData("token: hunter2".into())),
            ..LaunchRequest::default()
        };
        assert!(!format!("{request:?}").contains("hunter2"));
        let key = GeneratedSshKey {
            id: "k".into(),
            name: "n".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            private_key: "-----BEGIN OPENSSH PRIVATE KEY----- secret".into(),
        };
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn image_spec_serialises_as_either_shape() {
        let by_family = ImageSpec::Family {
            family: "lambda-stack-24-04".into(),
        };
        assert_eq!(
            serde_json::to_value(&by_family).unwrap(),
            serde_json::json!({"family":"lambda-stack-24-04"})
        );
        let back: ImageSpec = serde_json::from_str(r#"{"id":"img-1"}"#).unwrap();
        assert_eq!(back, ImageSpec::Id { id: "img-1".into() });
    }
}
