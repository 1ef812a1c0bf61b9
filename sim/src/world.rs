//! The simulated account: instances and their lifecycle, capacity, billing,
//! SSH keys, filesystems and firewall rulesets.
//!
//! Everything here is plain data advanced by [`World::advance`] with an
//! explicit `now`, so the lifecycle is deterministic; the HTTP layer only
//! translates requests into these calls.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lambda_cloud::types::{
    ActionAvailability, CreateFirewallRulesetRequest, Filesystem, FirewallRule, FirewallRuleset,
    FirewallRulesetRef, GeneratedSshKey, GlobalFirewallRuleset, Image, ImageArchitecture,
    ImageSpec, Instance, InstanceActions, InstanceStatus, InstanceType, InstanceTypeAvailability,
    InstanceTypeSpecs, InstanceTypes, LaunchRequest, Region, SshKey, Tag,
    UpdateFirewallRulesetRequest, User, UserStatus,
};
use rand::Rng;
use serde::Serialize;
use time::OffsetDateTime;

use crate::errors::ApiError;
use crate::scenario::{Faults, Scenario};

/// Something that happened to an instance that a launch hook may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    /// The instance finished booting (it is `active`, or `unhealthy`).
    Booted(BootedInstance),
    /// The instance was terminated: whatever runs "on" it must stop.
    Terminated {
        /// The instance's id.
        id: String,
    },
}

/// What a launch hook needs to run something "on" an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootedInstance {
    /// Instance id.
    pub id: String,
    /// Instance name, if it has one.
    pub name: Option<String>,
    /// Its own loopback address.
    pub ip: Ipv4Addr,
    /// The cloud-init user-data it was launched with.
    pub user_data: Option<String>,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its status after booting (`active` or `unhealthy`).
    pub status: InstanceStatus,
}

/// One instance's billing, as the sim-only `/sim/billing` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BillingRecord {
    /// Instance id.
    pub instance_id: String,
    /// Instance name.
    pub name: Option<String>,
    /// Instance type.
    pub instance_type: String,
    /// Price in cents per hour.
    pub price_cents_per_hour: i64,
    /// Seconds billed so far (from active until terminate).
    pub billed_seconds: f64,
    /// Cost so far in cents.
    pub cost_cents: f64,
    /// Whether the meter is still running.
    pub running: bool,
}

#[derive(Debug, Clone)]
struct SimInstance {
    id: String,
    name: Option<String>,
    hostname: Option<String>,
    instance_type: InstanceType,
    region: Region,
    ssh_key_names: Vec<String>,
    file_system_names: Vec<String>,
    tags: Vec<Tag>,
    firewall_rulesets: Vec<FirewallRulesetRef>,
    user_data: Option<String>,
    ip: Ipv4Addr,
    private_ip: Ipv4Addr,
    status: InstanceStatus,
    launched: Instant,
    /// Hidden from list/get until then (eventual consistency fault).
    visible_from: Instant,
    boots_unhealthy: bool,
    billing_started: Option<Instant>,
    billing_ended: Option<Instant>,
    terminate_requested: Option<Instant>,
    terminated_at: Option<Instant>,
}

/// The simulated account.
#[derive(Debug)]
pub struct World {
    scenario: Scenario,
    /// Remaining free slots per (type, region).
    capacity: BTreeMap<(String, String), u32>,
    instances: Vec<SimInstance>,
    ssh_keys: Vec<SshKey>,
    filesystems: Vec<Filesystem>,
    firewall_rulesets: Vec<FirewallRuleset>,
    global_rules: Vec<FirewallRule>,
    legacy_rules: Vec<FirewallRule>,
    images: Vec<Image>,
    next_address: u32,
    owner: User,
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

impl World {
    /// A fresh account as the scenario describes it.
    pub fn new(scenario: Scenario) -> Self {
        let owner = User {
            id: new_id(),
            email: "sim@example.com".into(),
            status: UserStatus::Active,
        };
        let capacity = scenario
            .capacity
            .iter()
            .flat_map(|(type_name, regions)| {
                regions
                    .iter()
                    .map(move |(region, count)| ((type_name.clone(), region.clone()), *count))
            })
            .collect();
        let mut world = Self {
            capacity,
            instances: Vec::new(),
            ssh_keys: Vec::new(),
            filesystems: Vec::new(),
            firewall_rulesets: Vec::new(),
            global_rules: vec![FirewallRule {
                protocol: lambda_cloud::types::NetworkProtocol::Tcp,
                port_range: Some([22, 22]),
                source_network: "0.0.0.0/0".into(),
                description: "Allow SSH from anywhere".into(),
            }],
            legacy_rules: Vec::new(),
            images: Vec::new(),
            next_address: 0,
            owner,
            scenario,
        };
        for key in world.scenario.ssh_keys.clone() {
            world.ssh_keys.push(SshKey {
                id: new_id(),
                name: key.name,
                public_key: key.public_key,
            });
        }
        for filesystem in world.scenario.filesystems.clone() {
            let region = world.region(&filesystem.region).unwrap_or(Region {
                name: filesystem.region.clone(),
                description: String::new(),
            });
            world
                .filesystems
                .push(world.new_filesystem(&filesystem.name, region));
        }
        world.images = world.default_images();
        world
    }

    /// The scenario the world was built from (faults included).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Replaces the injected faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.scenario.faults = faults;
    }

    /// Mutable access to the faults (scripted faults are consumed).
    pub fn faults_mut(&mut self) -> &mut Faults {
        &mut self.scenario.faults
    }

    fn region(&self, name: &str) -> Option<Region> {
        self.scenario
            .regions
            .iter()
            .find(|r| r.name == name)
            .map(|r| Region {
                name: r.name.clone(),
                description: r.description.clone(),
            })
    }

    fn instance_type(&self, name: &str) -> Option<InstanceType> {
        self.scenario
            .instance_types
            .iter()
            .find(|t| t.name == name)
            .map(|t| InstanceType {
                name: t.name.clone(),
                description: t.description.clone(),
                gpu_description: t.gpu_description.clone(),
                price_cents_per_hour: t.price_cents_per_hour,
                specs: InstanceTypeSpecs {
                    vcpus: t.vcpus,
                    memory_gib: t.memory_gib,
                    storage_gib: t.storage_gib,
                    gpus: t.gpus,
                },
            })
    }

    fn new_filesystem(&self, name: &str, region: Region) -> Filesystem {
        Filesystem {
            id: new_id(),
            name: name.to_owned(),
            mount_point: format!("/lambda/nfs/{name}"),
            created: OffsetDateTime::now_utc(),
            created_by: self.owner.clone(),
            is_in_use: false,
            region,
            bytes_used: Some(0),
        }
    }

    fn default_images(&self) -> Vec<Image> {
        let created = OffsetDateTime::now_utc() - Duration::from_secs(30 * 24 * 3600);
        self.scenario
            .regions
            .iter()
            .flat_map(|region| {
                [
                    ("lambda-stack-22-04", "22.04"),
                    ("lambda-stack-24-04", "24.04"),
                ]
                .map(|(family, version)| Image {
                    id: new_id(),
                    created_time: created,
                    updated_time: created,
                    name: format!("Lambda Stack {version}"),
                    description: format!("Ubuntu {version} LTS with Lambda Stack"),
                    family: family.into(),
                    version: version.into(),
                    architecture: ImageArchitecture::X86_64,
                    region: Region {
                        name: region.name.clone(),
                        description: region.description.clone(),
                    },
                })
            })
            .collect()
    }

    /// Hands out the next loopback address: 127.0.1.1, 127.0.1.2, …, so that
    /// each instance's services can bind the same ports side by side.
    fn next_ip(&mut self) -> Ipv4Addr {
        loop {
            self.next_address += 1;
            let n = 0x0100 + self.next_address;
            let octets = [127, (n >> 16) as u8, (n >> 8) as u8, n as u8];
            if octets[3] != 0 && octets[3] != 255 {
                return Ipv4Addr::from(octets);
            }
        }
    }

    /// Moves every instance along its lifecycle up to `now` and returns what
    /// happened, for the launch hooks.
    pub fn advance(&mut self, now: Instant) -> Vec<SimEvent> {
        let boot_delay = self.scenario.boot_delay;
        let terminate_delay = self.scenario.terminate_delay;
        let gone_delay = self.scenario.gone_delay;
        let mut events = Vec::new();
        let mut freed = Vec::new();
        for instance in &mut self.instances {
            if instance.status == InstanceStatus::Booting && now >= instance.launched + boot_delay {
                instance.status = if instance.boots_unhealthy {
                    InstanceStatus::Unhealthy
                } else {
                    InstanceStatus::Active
                };
                instance.billing_started = Some(instance.launched + boot_delay);
                events.push(SimEvent::Booted(BootedInstance {
                    id: instance.id.clone(),
                    name: instance.name.clone(),
                    ip: instance.ip,
                    user_data: instance.user_data.clone(),
                    tags: instance.tags.clone(),
                    status: instance.status,
                }));
            }
            if let Some(requested) = instance.terminate_requested
                && instance.status == InstanceStatus::Terminating
                && now >= requested + terminate_delay
            {
                instance.status = InstanceStatus::Terminated;
                instance.terminated_at = Some(now);
                freed.push((
                    instance.instance_type.name.clone(),
                    instance.region.name.clone(),
                ));
                events.push(SimEvent::Terminated {
                    id: instance.id.clone(),
                });
            }
        }
        for slot in freed {
            *self.capacity.entry(slot).or_default() += 1;
        }
        self.instances.retain(|instance| {
            instance
                .terminated_at
                .is_none_or(|at| now < at + gone_delay)
        });
        events
    }

    fn to_api(instance: &SimInstance) -> Instance {
        let running = matches!(
            instance.status,
            InstanceStatus::Active | InstanceStatus::Unhealthy
        );
        let available = |yes: bool, reason: &str| ActionAvailability {
            available: yes,
            reason_code: (!yes).then(|| reason.to_owned()),
            reason_description: None,
        };
        let reason = match instance.status {
            InstanceStatus::Booting => "vm-has-not-launched",
            _ => "vm-is-terminating",
        };
        let mut ip = None;
        let mut private_ip = None;
        let mut hostname = None;
        if running {
            ip = Some(instance.ip.to_string());
            private_ip = Some(instance.private_ip.to_string());
            hostname = Some(
                instance
                    .hostname
                    .clone()
                    .unwrap_or_else(|| instance.ip.to_string().replace('.', "-")),
            );
        }
        Instance {
            id: instance.id.clone(),
            name: instance.name.clone(),
            ip,
            private_ip,
            status: instance.status,
            ssh_key_names: instance.ssh_key_names.clone(),
            file_system_names: instance.file_system_names.clone(),
            file_system_mounts: Vec::new(),
            region: instance.region.clone(),
            instance_type: instance.instance_type.clone(),
            hostname,
            jupyter_token: None,
            jupyter_url: None,
            actions: InstanceActions {
                migrate: available(running, reason),
                rebuild: available(running, reason),
                restart: available(running, reason),
                cold_reboot: available(running, reason),
                terminate: available(
                    !matches!(
                        instance.status,
                        InstanceStatus::Terminating | InstanceStatus::Terminated
                    ),
                    "vm-is-terminating",
                ),
            },
            tags: instance.tags.clone(),
            firewall_rulesets: instance.firewall_rulesets.clone(),
        }
    }

    // ---- instances ----

    /// `GET /instances`.
    pub fn list_instances(&self, now: Instant) -> Vec<Instance> {
        self.instances
            .iter()
            .filter(|i| now >= i.visible_from)
            .map(Self::to_api)
            .collect()
    }

    /// `GET /instances/{id}`.
    pub fn get_instance(&self, id: &str, now: Instant) -> Result<Instance, ApiError> {
        self.instances
            .iter()
            .find(|i| i.id == id && now >= i.visible_from)
            .map(Self::to_api)
            .ok_or_else(ApiError::instance_not_found)
    }

    /// `POST /instances/{id}`.
    pub fn rename_instance(&mut self, id: &str, name: &str) -> Result<Instance, ApiError> {
        if name.chars().count() > 64 {
            return Err(ApiError::invalid_parameters(
                "name must be at most 64 characters.",
            ));
        }
        let index = self
            .instances
            .iter()
            .position(|i| i.id == id)
            .ok_or_else(ApiError::instance_not_found)?;
        self.instances[index].name = Some(name.to_owned());
        Ok(Self::to_api(&self.instances[index]))
    }

    /// `POST /instance-operations/launch`.
    pub fn launch(&mut self, request: &LaunchRequest, now: Instant) -> Result<String, ApiError> {
        validate_launch(request)?;
        let Some(region) = self.region(&request.region_name) else {
            return Err(ApiError::invalid_parameters(format!(
                "Invalid region name '{}'.",
                request.region_name
            )));
        };
        let Some(instance_type) = self.instance_type(&request.instance_type_name) else {
            return Err(ApiError::invalid_parameters(format!(
                "Invalid instance type name '{}'.",
                request.instance_type_name
            )));
        };
        for key in &request.ssh_key_names {
            if !self.ssh_keys.iter().any(|k| &k.name == key) {
                return Err(ApiError::launch_resource_not_found(
                    format!("SSH key '{key}' does not exist."),
                    "Check the SSH key name, or add the key with POST /ssh-keys.",
                ));
            }
        }
        for name in &request.file_system_names {
            let Some(filesystem) = self.filesystems.iter().find(|f| &f.name == name) else {
                return Err(ApiError::launch_resource_not_found(
                    format!("File system '{name}' does not exist."),
                    "Check the file system name, or create it with POST /filesystems.",
                ));
            };
            if filesystem.region.name != region.name {
                return Err(ApiError::filesystem_in_wrong_region(name, &region.name));
            }
        }
        for mount in &request.file_system_mounts {
            if !self
                .filesystems
                .iter()
                .any(|f| f.id == mount.file_system_id)
            {
                return Err(ApiError::launch_resource_not_found(
                    format!("File system '{}' does not exist.", mount.file_system_id),
                    "Check the file system ID.",
                ));
            }
        }
        for ruleset in &request.firewall_rulesets {
            if !self.firewall_rulesets.iter().any(|r| r.id == ruleset.id) {
                return Err(ApiError::launch_resource_not_found(
                    format!("Firewall ruleset '{}' does not exist.", ruleset.id),
                    "Check the firewall ruleset ID.",
                ));
            }
        }
        if let Some(image) = &request.image {
            let known = match image {
                ImageSpec::Id { id } => self.images.iter().any(|i| &i.id == id),
                ImageSpec::Family { family } => self.images.iter().any(|i| &i.family == family),
            };
            if !known {
                return Err(ApiError::launch_resource_not_found(
                    "Image does not exist.",
                    "List images with GET /images.",
                ));
            }
        }
        let slot = (instance_type.name.clone(), region.name.clone());
        let free = self.capacity.get(&slot).copied().unwrap_or(0);
        if free == 0 || self.scenario.faults.refuse_launch {
            return Err(ApiError::insufficient_capacity());
        }
        self.capacity.insert(slot, free - 1);
        let id = new_id();
        let ip = self.next_ip();
        let octets = ip.octets();
        let boots_unhealthy = rand::rng().random_bool(self.scenario.faults.unhealthy_rate);
        self.instances.push(SimInstance {
            id: id.clone(),
            name: request.name.clone(),
            hostname: request.hostname.clone(),
            instance_type,
            region,
            ssh_key_names: request.ssh_key_names.clone(),
            file_system_names: request.file_system_names.clone(),
            tags: request.tags.clone(),
            firewall_rulesets: request.firewall_rulesets.clone(),
            user_data: request.user_data.as_ref().map(|u| u.0.clone()),
            ip,
            private_ip: Ipv4Addr::new(10, octets[1], octets[2], octets[3]),
            status: InstanceStatus::Booting,
            launched: now,
            visible_from: now + self.scenario.faults.not_found_after_launch,
            boots_unhealthy,
            billing_started: None,
            billing_ended: None,
            terminate_requested: None,
            terminated_at: None,
        });
        Ok(id)
    }

    /// `POST /instance-operations/terminate`: all or nothing, like the API.
    pub fn terminate(&mut self, ids: &[String], now: Instant) -> Result<Vec<Instance>, ApiError> {
        if ids.is_empty() {
            return Err(ApiError::invalid_parameters(
                "instance_ids must not be empty.",
            ));
        }
        let mut indexes = Vec::new();
        for id in ids {
            let index = self
                .instances
                .iter()
                .position(|i| &i.id == id && now >= i.visible_from)
                .ok_or_else(ApiError::instance_not_found)?;
            indexes.push(index);
        }
        for &index in &indexes {
            let instance = &mut self.instances[index];
            if !matches!(
                instance.status,
                InstanceStatus::Terminating | InstanceStatus::Terminated
            ) {
                instance.status = InstanceStatus::Terminating;
                instance.terminate_requested = Some(now);
                // A booting instance that never started billing never will.
                instance.billing_ended = Some(now);
            }
        }
        Ok(indexes
            .into_iter()
            .map(|index| Self::to_api(&self.instances[index]))
            .collect())
    }

    /// `POST /instance-operations/restart`.
    pub fn restart(&mut self, ids: &[String], now: Instant) -> Result<Vec<Instance>, ApiError> {
        if ids.is_empty() {
            return Err(ApiError::invalid_parameters(
                "instance_ids must not be empty.",
            ));
        }
        let mut restarted = Vec::new();
        for id in ids {
            let instance = self
                .instances
                .iter()
                .find(|i| &i.id == id && now >= i.visible_from)
                .ok_or_else(ApiError::instance_not_found)?;
            if !matches!(
                instance.status,
                InstanceStatus::Active | InstanceStatus::Unhealthy
            ) {
                return Err(ApiError::conflict(format!(
                    "Instance {id} cannot be restarted while {}.",
                    instance.status
                )));
            }
            restarted.push(Self::to_api(instance));
        }
        Ok(restarted)
    }

    /// Forces an instance's status (sim control, for tests of stuck states).
    pub fn force_status(&mut self, id: &str, status: InstanceStatus, now: Instant) -> bool {
        let Some(instance) = self.instances.iter_mut().find(|i| i.id == id) else {
            return false;
        };
        match status {
            InstanceStatus::Terminating => {
                instance.terminate_requested = Some(now);
                instance.billing_ended.get_or_insert(now);
            }
            InstanceStatus::Active | InstanceStatus::Unhealthy => {
                instance.billing_started.get_or_insert(now);
            }
            _ => {}
        }
        instance.status = status;
        true
    }

    /// Puts an instance straight into the account without going through a
    /// launch (sim control, for test setup). Capacity is not consumed.
    pub fn insert_instance(
        &mut self,
        new: crate::NewInstance,
        now: Instant,
    ) -> Result<String, ApiError> {
        let instance_type = self
            .instance_type(&new.instance_type)
            .ok_or_else(|| ApiError::invalid_parameters("unknown instance type"))?;
        let region = self
            .region(&new.region)
            .ok_or_else(|| ApiError::invalid_parameters("unknown region"))?;
        let id = new_id();
        let ip = self.next_ip();
        let octets = ip.octets();
        let billing = matches!(
            new.status,
            InstanceStatus::Active | InstanceStatus::Unhealthy
        );
        self.instances.push(SimInstance {
            id: id.clone(),
            name: new.name,
            hostname: None,
            instance_type,
            region,
            ssh_key_names: self
                .ssh_keys
                .first()
                .map(|k| k.name.clone())
                .into_iter()
                .collect(),
            file_system_names: Vec::new(),
            tags: new.tags,
            firewall_rulesets: Vec::new(),
            user_data: new.user_data,
            ip,
            private_ip: Ipv4Addr::new(10, octets[1], octets[2], octets[3]),
            status: new.status,
            // Already booted: the boot transition must not fire again.
            launched: now.checked_sub(self.scenario.boot_delay).unwrap_or(now),
            visible_from: now,
            boots_unhealthy: new.status == InstanceStatus::Unhealthy,
            billing_started: billing.then_some(now),
            billing_ended: None,
            terminate_requested: (new.status == InstanceStatus::Terminating).then_some(now),
            terminated_at: None,
        });
        Ok(id)
    }

    /// Every instance's billing meter.
    pub fn billing(&self, now: Instant) -> Vec<BillingRecord> {
        self.instances
            .iter()
            .map(|instance| {
                let seconds = match instance.billing_started {
                    Some(start) => {
                        let end = instance.billing_ended.unwrap_or(now);
                        end.saturating_duration_since(start).as_secs_f64()
                    }
                    None => 0.0,
                };
                let price = instance.instance_type.price_cents_per_hour;
                BillingRecord {
                    instance_id: instance.id.clone(),
                    name: instance.name.clone(),
                    instance_type: instance.instance_type.name.clone(),
                    price_cents_per_hour: price,
                    billed_seconds: seconds,
                    cost_cents: seconds / 3600.0 * price as f64,
                    running: instance.billing_started.is_some() && instance.billing_ended.is_none(),
                }
            })
            .collect()
    }

    // ---- catalogue ----

    /// `GET /instance-types`.
    pub fn instance_types(&self) -> InstanceTypes {
        self.scenario
            .instance_types
            .iter()
            .filter_map(|spec| {
                let instance_type = self.instance_type(&spec.name)?;
                let regions = self
                    .scenario
                    .regions
                    .iter()
                    .filter(|region| {
                        self.capacity
                            .get(&(spec.name.clone(), region.name.clone()))
                            .is_some_and(|free| *free > 0)
                    })
                    .filter_map(|region| self.region(&region.name))
                    .collect();
                Some((
                    spec.name.clone(),
                    InstanceTypeAvailability {
                        instance_type,
                        regions_with_capacity_available: regions,
                    },
                ))
            })
            .collect()
    }

    /// `GET /regions`.
    pub fn regions(&self) -> Vec<Region> {
        self.scenario
            .regions
            .iter()
            .filter_map(|r| self.region(&r.name))
            .collect()
    }

    /// `GET /images`.
    pub fn images(&self) -> Vec<Image> {
        self.images.clone()
    }

    // ---- SSH keys ----

    /// `GET /ssh-keys`.
    pub fn ssh_keys(&self) -> Vec<SshKey> {
        self.ssh_keys.clone()
    }

    /// `POST /ssh-keys`: adds a key, or generates a pair when no public key is given.
    pub fn add_ssh_key(
        &mut self,
        name: &str,
        public_key: Option<&str>,
    ) -> Result<Result<SshKey, GeneratedSshKey>, ApiError> {
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ApiError::invalid_parameters(
                "name must be 1 to 64 characters.",
            ));
        }
        if self.ssh_keys.iter().any(|k| k.name == name) {
            return Err(ApiError::invalid_parameters(format!(
                "An SSH key named '{name}' already exists."
            )));
        }
        if let Some(public_key) = public_key {
            let public_key = public_key.trim();
            let known_type = ["ssh-", "ecdsa-", "sk-"]
                .iter()
                .any(|prefix| public_key.starts_with(prefix));
            if public_key.len() > 4096 || !known_type {
                return Err(ApiError::invalid_parameters("Invalid public key."));
            }
            let key = SshKey {
                id: new_id(),
                name: name.to_owned(),
                public_key: public_key.to_owned(),
            };
            self.ssh_keys.push(key.clone());
            return Ok(Ok(key));
        }
        // A stand-in pair: well-formed text, not a usable key. Nothing in the
        // simulator logs in with it.
        let filler = new_id() + &new_id();
        let key = GeneratedSshKey {
            id: new_id(),
            name: name.to_owned(),
            public_key: format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{filler} {name}"),
            private_key: format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n{filler}\n-----END OPENSSH PRIVATE KEY-----\n"
            ),
        };
        self.ssh_keys.push(SshKey {
            id: key.id.clone(),
            name: key.name.clone(),
            public_key: key.public_key.clone(),
        });
        Ok(Err(key))
    }

    /// `DELETE /ssh-keys/{id}`.
    pub fn delete_ssh_key(&mut self, id: &str) -> Result<(), ApiError> {
        let before = self.ssh_keys.len();
        self.ssh_keys.retain(|k| k.id != id);
        if self.ssh_keys.len() == before {
            return Err(ApiError::not_found("SSH key not found."));
        }
        Ok(())
    }

    // ---- filesystems ----

    fn filesystem_in_use(&self, name: &str) -> bool {
        self.instances.iter().any(|i| {
            i.status != InstanceStatus::Terminated && i.file_system_names.iter().any(|n| n == name)
        })
    }

    /// `GET /file-systems`.
    pub fn filesystems(&self) -> Vec<Filesystem> {
        self.filesystems
            .iter()
            .map(|f| Filesystem {
                is_in_use: self.filesystem_in_use(&f.name),
                ..f.clone()
            })
            .collect()
    }

    /// `POST /filesystems`.
    pub fn create_filesystem(&mut self, name: &str, region: &str) -> Result<Filesystem, ApiError> {
        let valid_name = name.len() <= 60
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid_name {
            return Err(ApiError::invalid_parameters(
                "name must start with a letter and contain only letters, digits and dashes (at most 60).",
            ));
        }
        let Some(region) = self.region(region) else {
            return Err(ApiError::invalid_parameters(format!(
                "Invalid region name '{region}'."
            )));
        };
        if self.filesystems.iter().any(|f| f.name == name) {
            return Err(ApiError::duplicate(format!(
                "A filesystem named '{name}' already exists."
            )));
        }
        let filesystem = self.new_filesystem(name, region);
        self.filesystems.push(filesystem.clone());
        Ok(filesystem)
    }

    /// `DELETE /filesystems/{id}`.
    pub fn delete_filesystem(&mut self, id: &str) -> Result<Vec<String>, ApiError> {
        let filesystem = self
            .filesystems
            .iter()
            .find(|f| f.id == id)
            .ok_or_else(ApiError::filesystem_not_found)?;
        if self.filesystem_in_use(&filesystem.name) {
            return Err(ApiError::filesystem_in_use());
        }
        self.filesystems.retain(|f| f.id != id);
        Ok(vec![id.to_owned()])
    }

    // ---- firewall ----

    /// `GET /firewall-rulesets`.
    pub fn firewall_rulesets(&self) -> Vec<FirewallRuleset> {
        self.firewall_rulesets
            .iter()
            .map(|r| self.with_instances(r))
            .collect()
    }

    fn with_instances(&self, ruleset: &FirewallRuleset) -> FirewallRuleset {
        FirewallRuleset {
            instance_ids: self
                .instances
                .iter()
                .filter(|i| {
                    i.status != InstanceStatus::Terminated
                        && i.firewall_rulesets.iter().any(|r| r.id == ruleset.id)
                })
                .map(|i| i.id.clone())
                .collect(),
            ..ruleset.clone()
        }
    }

    /// `GET /firewall-rulesets/{id}`.
    pub fn firewall_ruleset(&self, id: &str) -> Result<FirewallRuleset, ApiError> {
        self.firewall_rulesets
            .iter()
            .find(|r| r.id == id)
            .map(|r| self.with_instances(r))
            .ok_or_else(ApiError::firewall_ruleset_not_found)
    }

    /// `POST /firewall-rulesets`.
    pub fn create_firewall_ruleset(
        &mut self,
        request: CreateFirewallRulesetRequest,
    ) -> Result<FirewallRuleset, ApiError> {
        validate_rules(&request.rules)?;
        if request.name.chars().count() > 64 {
            return Err(ApiError::invalid_parameters(
                "name must be at most 64 characters.",
            ));
        }
        let region = self.region(&request.region).ok_or_else(|| {
            ApiError::invalid_parameters(format!("Invalid region name '{}'.", request.region))
        })?;
        let ruleset = FirewallRuleset {
            id: new_id(),
            name: request.name,
            region,
            rules: request.rules,
            created: OffsetDateTime::now_utc(),
            instance_ids: Vec::new(),
        };
        self.firewall_rulesets.push(ruleset.clone());
        Ok(ruleset)
    }

    /// `PATCH /firewall-rulesets/{id}`.
    pub fn update_firewall_ruleset(
        &mut self,
        id: &str,
        request: UpdateFirewallRulesetRequest,
    ) -> Result<FirewallRuleset, ApiError> {
        if let Some(rules) = &request.rules {
            validate_rules(rules)?;
        }
        let ruleset = self
            .firewall_rulesets
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(ApiError::firewall_ruleset_not_found)?;
        if let Some(name) = request.name {
            ruleset.name = name;
        }
        if let Some(rules) = request.rules {
            ruleset.rules = rules;
        }
        let ruleset = ruleset.clone();
        Ok(self.with_instances(&ruleset))
    }

    /// `DELETE /firewall-rulesets/{id}`.
    pub fn delete_firewall_ruleset(&mut self, id: &str) -> Result<(), ApiError> {
        let ruleset = self.firewall_ruleset(id)?;
        if !ruleset.instance_ids.is_empty() {
            return Err(ApiError::firewall_ruleset_in_use());
        }
        self.firewall_rulesets.retain(|r| r.id != id);
        Ok(())
    }

    /// `GET /firewall-rulesets/global`.
    pub fn global_firewall_ruleset(&self) -> GlobalFirewallRuleset {
        GlobalFirewallRuleset {
            id: "global".into(),
            name: "Global Firewall Rules".into(),
            rules: self.global_rules.clone(),
        }
    }

    /// `PATCH /firewall-rulesets/global`.
    pub fn update_global_firewall_ruleset(
        &mut self,
        rules: Option<Vec<FirewallRule>>,
    ) -> Result<GlobalFirewallRuleset, ApiError> {
        if let Some(rules) = rules {
            validate_rules(&rules)?;
            self.global_rules = rules;
        }
        Ok(self.global_firewall_ruleset())
    }

    /// `GET /firewall-rules`.
    pub fn legacy_firewall_rules(&self) -> Vec<FirewallRule> {
        self.legacy_rules.clone()
    }

    /// `PUT /firewall-rules`.
    pub fn set_legacy_firewall_rules(
        &mut self,
        rules: Vec<FirewallRule>,
    ) -> Result<Vec<FirewallRule>, ApiError> {
        validate_rules(&rules)?;
        self.legacy_rules = rules;
        Ok(self.legacy_rules.clone())
    }
}

/// The launch request's own constraints, from the spec's request schema.
fn validate_launch(request: &LaunchRequest) -> Result<(), ApiError> {
    if request.ssh_key_names.len() != 1 {
        return Err(ApiError::invalid_parameters(
            "Exactly one SSH key name must be provided.",
        ));
    }
    if let Some(name) = &request.name
        && name.chars().count() > 64
    {
        return Err(ApiError::invalid_parameters(
            "name must be at most 64 characters.",
        ));
    }
    if let Some(hostname) = &request.hostname {
        let valid = !hostname.is_empty()
            && hostname.len() <= 63
            && hostname.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && hostname
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ApiError::invalid_parameters("Invalid hostname."));
        }
    }
    if let Some(user_data) = &request.user_data
        && user_data.0.len() > 1024 * 1024
    {
        return Err(ApiError::invalid_parameters(
            "user_data must be at most 1 MB.",
        ));
    }
    for tag in &request.tags {
        let key_ok = tag.key.len() <= 55
            && tag.key.len() >= 2
            && tag.key.starts_with(|c: char| c.is_ascii_lowercase())
            && tag
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':');
        if !key_ok {
            return Err(ApiError::invalid_parameters(format!(
                "Invalid tag key '{}'.",
                tag.key
            )));
        }
        if tag.value.chars().count() > 128 {
            return Err(ApiError::invalid_parameters(format!(
                "Tag '{}' has a value longer than 128 characters.",
                tag.key
            )));
        }
    }
    for mount in &request.file_system_mounts {
        let valid = mount.mount_point.len() <= 256
            && ["/home", "/lambda/nfs", "/data"]
                .iter()
                .any(|prefix| mount.mount_point.starts_with(prefix));
        if !valid {
            return Err(ApiError::invalid_parameters("Invalid mount point."));
        }
    }
    Ok(())
}

fn validate_rules(rules: &[FirewallRule]) -> Result<(), ApiError> {
    use lambda_cloud::types::NetworkProtocol;
    for rule in rules {
        let ports_ok = match (rule.protocol, rule.port_range) {
            (NetworkProtocol::Icmp, None) => true,
            (NetworkProtocol::Icmp, Some(_)) | (_, None) => false,
            (_, Some([low, high])) => low >= 1 && low <= high,
        };
        if !ports_ok || rule.description.chars().count() > 128 || rule.source_network.is_empty() {
            return Err(ApiError::invalid_parameters("Invalid firewall rule."));
        }
    }
    Ok(())
}
