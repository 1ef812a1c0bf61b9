//! What a simulated cloud contains and how it behaves: the scenario file.
//!
//! A scenario is YAML; every key is optional and falls back to a realistic
//! default (the catalogue below), so `{}` is a valid scenario. Unknown keys
//! are an error, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole simulated account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// API keys the simulator accepts.
    pub api_keys: Vec<String>,
    /// How long an instance stays `booting`.
    #[serde(with = "humantime_serde")]
    pub boot_delay: Duration,
    /// How long an instance stays `terminating`.
    #[serde(with = "humantime_serde")]
    pub terminate_delay: Duration,
    /// How long a `terminated` instance stays listed before it is gone.
    #[serde(with = "humantime_serde")]
    pub gone_delay: Duration,
    /// Rate limiting, like the real API's.
    pub rate_limit: RateLimit,
    /// Instance types on offer. Defaults to Lambda's catalogue.
    pub instance_types: Vec<InstanceTypeSpec>,
    /// Regions. Defaults to Lambda's.
    pub regions: Vec<RegionSpec>,
    /// Free slots per instance type and region: `type -> region -> count`.
    /// Types or regions not listed have no capacity.
    pub capacity: BTreeMap<String, BTreeMap<String, u32>>,
    /// SSH keys already in the account.
    pub ssh_keys: Vec<SshKeySpec>,
    /// Filesystems already in the account.
    pub filesystems: Vec<FilesystemSpec>,
    /// Injected faults.
    pub faults: Faults,
}

/// Rate limiting settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Whether to answer over-limit requests with 429.
    pub enabled: bool,
    /// Sustained requests per second per API key.
    pub requests_per_second: f64,
    /// Requests allowed in a burst before the sustained rate applies.
    pub burst: u32,
    /// Minimum spacing between launches per API key.
    #[serde(with = "humantime_serde")]
    pub launch_interval: Duration,
}

impl Default for RateLimit {
    /// The real API's documented limits: about one request per second (a
    /// burst of two absorbs clock jitter of well-paced clients) and one
    /// launch per 12 seconds.
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 1.0,
            burst: 2,
            launch_interval: Duration::from_secs(12),
        }
    }
}

/// Faults to inject, settable at start-up and at run time (`PUT /sim/faults`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Added to every API response.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Probability (0–1) of answering a request with a 5xx.
    pub error_rate: f64,
    /// Probability (0–1) of answering a request with a 429.
    pub rate_limit_rate: f64,
    /// "Listed but refused": capacity shows in `/instance-types`, but every
    /// launch fails with `insufficient-capacity`.
    pub refuse_launch: bool,
    /// Probability (0–1) that a launched instance ends `unhealthy` instead of
    /// `active`.
    pub unhealthy_rate: f64,
    /// For this long after launch, the new instance is missing from list and
    /// get (eventual consistency).
    #[serde(with = "humantime_serde")]
    pub not_found_after_launch: Duration,
    /// Deterministic failures for the next matching requests.
    pub scripted: Vec<ScriptedFault>,
}

/// Fail the next `count` requests whose path ends with `path` (and whose
/// method is `method`, when given) with `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    /// HTTP method to match, e.g. `POST`; any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path suffix to match, e.g. `/instance-operations/terminate`.
    pub path: String,
    /// Status to answer with: 429 or a 5xx.
    pub status: u16,
    /// How many matching requests to fail.
    #[serde(default = "one")]
    pub count: u32,
    /// `Retry-After` seconds to send with a 429.
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn one() -> u32 {
    1
}

/// An instance type on offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceTypeSpec {
    /// e.g. `gpu_1x_a10`.
    pub name: String,
    /// e.g. `1x A10 (24 GB PCIe)`.
    pub description: String,
    /// e.g. `A10 (24 GB PCIe)`.
    pub gpu_description: String,
    /// Price in cents per hour.
    pub price_cents_per_hour: i64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// RAM, GiB.
    pub memory_gib: u32,
    /// Local storage, GiB.
    pub storage_gib: u32,
    /// GPUs.
    pub gpus: u32,
}

/// A region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// e.g. `us-west-1`.
    pub name: String,
    /// e.g. `California, USA`.
    pub description: String,
}

/// An SSH key in the account at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeySpec {
    /// Name.
    pub name: String,
    /// OpenSSH public key.
    pub public_key: String,
}

/// A filesystem in the account at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSpec {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
}

/// The API key a default scenario accepts.
pub const DEFAULT_API_KEY: &str = "sim-api-key";

impl Default for Scenario {
    fn default() -> Self {
        let instance_types = default_instance_types();
        let regions = default_regions();
        let capacity = default_capacity(&instance_types);
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            boot_delay: Duration::from_secs(5),
            terminate_delay: Duration::from_secs(2),
            gone_delay: Duration::from_secs(60),
            rate_limit: RateLimit::default(),
            instance_types,
            regions,
            capacity,
            ssh_keys: vec![SshKeySpec {
                name: "default".into(),
                public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1c3lzaW1rZXlmb3J0ZXN0aW5nb25seQ sim@soong"
                    .into(),
            }],
            filesystems: vec![FilesystemSpec {
                name: "coding-stack".into(),
                region: "us-west-1".into(),
            }],
            faults: Faults::default(),
        }
    }
}

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario file `{path}`")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has an unknown key.
    #[error("invalid scenario file `{path}`: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the key and line.
        message: String,
    },
    /// The YAML parses but describes something impossible.
    #[error("invalid scenario file `{path}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_yaml(&text, &display)
    }

    /// Parses and checks a scenario; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ScenarioError> {
        // An empty file is the empty mapping, i.e. all defaults.
        let scenario: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_yaml::from_str(text).map_err(|error| ScenarioError::Parse {
                path: origin.to_owned(),
                message: error.to_string(),
            })?
        };
        scenario.check().map_err(|message| ScenarioError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(scenario)
    }

    /// Checks what parsing cannot: references between sections, ranges.
    pub fn check(&self) -> Result<(), String> {
        if self.api_keys.is_empty() {
            return Err("`api_keys` must list at least one key".into());
        }
        for (type_name, regions) in &self.capacity {
            if !self.instance_types.iter().any(|t| &t.name == type_name) {
                return Err(format!("`capacity.{type_name}`: no such instance type"));
            }
            for region in regions.keys() {
                if !self.regions.iter().any(|r| &r.name == region) {
                    return Err(format!("`capacity.{type_name}.{region}`: no such region"));
                }
            }
        }
        for filesystem in &self.filesystems {
            if !self.regions.iter().any(|r| r.name == filesystem.region) {
                return Err(format!(
                    "`filesystems`: `{}` is in unknown region `{}`",
                    filesystem.name, filesystem.region
                ));
            }
        }
        for (name, rate) in [
            ("faults.error_rate", self.faults.error_rate),
            ("faults.rate_limit_rate", self.faults.rate_limit_rate),
            ("faults.unhealthy_rate", self.faults.unhealthy_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("`{name}` must be between 0 and 1, got {rate}"));
            }
        }
        if self.rate_limit.enabled && self.rate_limit.requests_per_second <= 0.0 {
            return Err("`rate_limit.requests_per_second` must be positive".into());
        }
        for fault in &self.faults.scripted {
            if fault.status != 429 && !(500..=599).contains(&fault.status) {
                return Err(format!(
                    "`faults.scripted`: status {} is neither 429 nor 5xx",
                    fault.status
                ));
            }
        }
        Ok(())
    }
}

fn instance_type(
    name: &str,
    gpu: &str,
    gpus: u32,
    price_cents_per_hour: i64,
    vcpus: u32,
    memory_gib: u32,
    storage_gib: u32,
) -> InstanceTypeSpec {
    InstanceTypeSpec {
        name: name.into(),
        description: format!("{gpus}x {gpu}"),
        gpu_description: gpu.into(),
        price_cents_per_hour,
        vcpus,
        memory_gib,
        storage_gib,
        gpus,
    }
}

/// Lambda's on-demand catalogue and list prices (cents per hour).
pub fn default_instance_types() -> Vec<InstanceTypeSpec> {
    vec![
        instance_type("gpu_1x_a10", "A10 (24 GB PCIe)", 1, 75, 30, 200, 1400),
        instance_type("gpu_1x_a6000", "RTX A6000 (48 GB)", 1, 80, 14, 46, 512),
        instance_type("gpu_2x_a6000", "RTX A6000 (48 GB)", 2, 160, 28, 92, 1024),
        instance_type("gpu_4x_a6000", "RTX A6000 (48 GB)", 4, 320, 56, 184, 2048),
        instance_type("gpu_1x_a100", "A100 (40 GB PCIe)", 1, 129, 30, 200, 512),
        instance_type(
            "gpu_1x_a100_sxm4",
            "A100 (40 GB SXM4)",
            1,
            129,
            30,
            200,
            512,
        ),
        instance_type("gpu_2x_a100", "A100 (40 GB PCIe)", 2, 258, 60, 400, 1024),
        instance_type("gpu_4x_a100", "A100 (40 GB PCIe)", 4, 516, 120, 800, 2048),
        instance_type("gpu_8x_a100", "A100 (40 GB SXM4)", 8, 1032, 124, 1800, 6144),
        instance_type(
            "gpu_8x_a100_80gb_sxm4",
            "A100 (80 GB SXM4)",
            8,
            1432,
            240,
            1800,
            19_456,
        ),
        instance_type(
            "gpu_1x_h100_pcie",
            "H100 (80 GB PCIe)",
            1,
            249,
            26,
            200,
            1024,
        ),
        instance_type(
            "gpu_1x_h100_sxm5",
            "H100 (80 GB SXM5)",
            1,
            329,
            26,
            225,
            2816,
        ),
        instance_type(
            "gpu_2x_h100_sxm5",
            "H100 (80 GB SXM5)",
            2,
            638,
            52,
            450,
            5632,
        ),
        instance_type(
            "gpu_4x_h100_sxm5",
            "H100 (80 GB SXM5)",
            4,
            1236,
            104,
            900,
            11_264,
        ),
        instance_type(
            "gpu_8x_h100_sxm5",
            "H100 (80 GB SXM5)",
            8,
            2392,
            208,
            1800,
            22_528,
        ),
        instance_type("gpu_1x_gh200", "GH200 (96 GB)", 1, 149, 64, 432, 4096),
        instance_type(
            "gpu_1x_b200_sxm6",
            "B200 (180 GB SXM6)",
            1,
            499,
            26,
            225,
            2816,
        ),
        instance_type(
            "gpu_8x_b200_sxm6",
            "B200 (180 GB SXM6)",
            8,
            3992,
            208,
            2900,
            22_528,
        ),
    ]
}

/// Lambda's regions.
pub fn default_regions() -> Vec<RegionSpec> {
    [
        ("us-west-1", "California, USA"),
        ("us-west-2", "Arizona, USA"),
        ("us-west-3", "Utah, USA"),
        ("us-south-1", "Texas, USA"),
        ("us-south-2", "North Texas, USA"),
        ("us-south-3", "Central Texas, USA"),
        ("us-midwest-1", "Illinois, USA"),
        ("us-east-1", "Virginia, USA"),
        ("us-east-3", "Washington DC, USA"),
        ("europe-central-1", "Germany"),
        ("asia-south-1", "India"),
        ("asia-northeast-1", "Tokyo, Japan"),
        ("asia-northeast-2", "Osaka, Japan"),
        ("me-west-1", "Israel"),
    ]
    .into_iter()
    .map(|(name, description)| RegionSpec {
        name: name.into(),
        description: description.into(),
    })
    .collect()
}

/// A plausible day: the small single-GPU types have capacity in a few
/// regions, the big ones in one, and some none at all.
fn default_capacity(types: &[InstanceTypeSpec]) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut capacity = BTreeMap::new();
    for spec in types {
        let regions: &[(&str, u32)] = match spec.name.as_str() {
            "gpu_1x_a10" => &[("us-west-1", 4), ("us-east-1", 2), ("europe-central-1", 1)],
            "gpu_1x_a6000" => &[("us-west-1", 2), ("us-south-1", 2)],
            "gpu_1x_a100" | "gpu_1x_a100_sxm4" => &[("us-west-1", 2), ("us-east-1", 1)],
            "gpu_2x_a100" | "gpu_1x_h100_pcie" => &[("us-west-1", 1)],
            "gpu_1x_h100_sxm5" | "gpu_2x_h100_sxm5" => &[("us-west-1", 1), ("us-south-1", 2)],
            "gpu_8x_h100_sxm5" => &[("us-south-1", 1)],
            "gpu_1x_gh200" => &[("us-east-3", 2)],
            "gpu_1x_b200_sxm6" => &[("us-south-3", 1)],
            _ => &[],
        };
        if !regions.is_empty() {
            capacity.insert(
                spec.name.clone(),
                regions.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect(),
            );
        }
    }
    capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_is_consistent() {
        Scenario::default().check().unwrap();
        assert_eq!(
            Scenario::from_yaml("", "empty").unwrap(),
            Scenario::default()
        );
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let error = Scenario::from_yaml("boot_dleay: 3s\n", "s.yaml").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("s.yaml"), "{message}");
        assert!(message.contains("boot_dleay"), "{message}");
    }

    #[test]
    fn capacity_for_an_unknown_region_is_rejected() {
        let error = Scenario::from_yaml("capacity: {gpu_1x_a10: {mars-1: 1}}\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("mars-1"), "{error}");
    }
}
