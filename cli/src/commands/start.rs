//! `soong start`: validate, estimate, confirm, launch, and wait until the
//! instance's daemon is guarding it.
//!
//! Everything that can be checked before money is spent is checked first
//! (key, SSH key, filesystem and its region, region, type, fit, capacity),
//! each failure with a suggestion. A launch is never blindly repeated: when
//! its answer is lost (timeout, 5xx), the instance list is searched for the
//! launch's unique name before trying again.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use lambda_cloud::{Client, Instance, InstanceStatus, InstanceTypes, LaunchRequest, Tag, UserData};
use serde_json::json;
use soong_protocol::config::{DaemonConfig, InstanceConfig, LambdaConfig, Secret, WorkerConfig};
use soong_protocol::lease::{self, Policy};
use soong_protocol::tags::LaunchTags;
use time::OffsetDateTime;

use crate::args::{Provision, StartArgs};
use crate::daemon_client::DaemonClient;
use crate::exit::{ExitStatus, UserError};
use crate::instances;
use crate::models::{self, Model};
use crate::output::{Printer, dollars, human_duration};
use crate::settings::{Access, Settings, WorkerSection};
use crate::ssh;
use crate::user_data::{self, Secrets};

/// How long an instance may take to boot (Lambda: usually 3–10 minutes).
const BOOT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long the daemon may take to answer once the instance is active
/// (cloud-init runs first).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Polling interval for both waits.
const POLL: Duration = Duration::from_secs(5);
/// Launch attempts when answers are lost.
const LAUNCH_ATTEMPTS: u32 = 3;

/// What `start` launched.
#[derive(Debug, Clone)]
pub struct Launched {
    /// The instance as last seen.
    pub instance: Instance,
    /// Whether its daemon answered `/health`.
    pub healthy: bool,
}

/// Runs `soong start`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &StartArgs,
) -> anyhow::Result<ExitStatus> {
    let launched = start(printer, settings, args, None).await?;
    Ok(match launched {
        Some(launched) if !launched.healthy && !args.no_wait => ExitStatus::Failure,
        _ => ExitStatus::Success,
    })
}

/// Everything decided before launching.
struct Plan {
    model: Model,
    fit: models::Fit,
    region: String,
    name: String,
    ssh_key: String,
    filesystem: Option<String>,
    policy: Policy,
}

/// The flow behind `soong start`; `policy` overrides the user's durations
/// (the demo uses seconds). Returns `None` for `--dry-run`.
pub async fn start(
    printer: &Printer,
    settings: &Settings,
    args: &StartArgs,
    policy: Option<Policy>,
) -> anyhow::Result<Option<Launched>> {
    let token = settings.require_token()?.clone();
    let api_key = settings.require_api_key()?;
    let ssh_key = settings
        .require(
            settings.config.lambda.ssh_key_name.as_ref(),
            "lambda.ssh_key_name",
        )?
        .to_owned();
    let model_id = args
        .model
        .clone()
        .or_else(|| settings.config.defaults.model.clone())
        .ok_or_else(|| {
            UserError::new("no model given")
                .hint("pass `--model <ID>` (see `soong models list`) or set `defaults.model` in the config")
                .status(ExitStatus::Usage)
        })?;
    let model = crate::commands::models::lookup(settings, &model_id)?;
    if args.no_wait && args.provision == Provision::Ansible && !args.dry_run {
        return Err(UserError::new(
            "`--no-wait` cannot be used with `--provision ansible`: the playbook installs the daemon after boot, so the instance would have no cost guard",
        )
        .hint("leave out `--no-wait`, or use `--provision cloud-init`")
        .status(ExitStatus::Usage)
        .into());
    }
    // What the instance installs must be known before anything is spent.
    let daemon_binary = daemon_binary(settings, args.dry_run)?;
    let ansible = match args.provision {
        Provision::Ansible if !args.dry_run => Some(crate::ansible::Playbook::find()?),
        _ => None,
    };
    let client = settings.client()?;

    printer.verbose("Checking the account: instance types, SSH keys, filesystems, instances");
    let types = client
        .list_instance_types()
        .await
        .context("cannot list instance types")?;
    check_ssh_key(&client, &ssh_key).await?;
    let filesystem = match settings.config.lambda.filesystem_name.as_deref() {
        Some(name) if !name.is_empty() => Some(find_filesystem(&client, name).await?),
        _ => None,
    };
    let region = args
        .region
        .clone()
        .or_else(|| settings.config.lambda.default_region.clone())
        .or_else(|| filesystem.as_ref().map(|fs| fs.region.name.clone()))
        .ok_or_else(|| {
            UserError::new("no region given")
                .hint("pass `--region` or set `lambda.default_region` in the config")
                .status(ExitStatus::Usage)
        })?;
    check_region(&client, &region).await?;
    if let Some(fs) = &filesystem
        && fs.region.name != region
    {
        return Err(UserError::new(format!(
            "filesystem `{}` is in `{}`, but the launch is in `{region}`; it could not be attached",
            fs.name, fs.region.name
        ))
        .hint(format!(
            "launch with `--region {}`, or change `lambda.filesystem_name` to a filesystem in `{region}`",
            fs.region.name
        ))
        .into());
    }
    let gpu = args
        .gpu
        .clone()
        .or_else(|| settings.config.defaults.gpu.clone());
    let fit = match choose_type(&model, &types, gpu.as_deref(), &region) {
        Err(error) if crate::exit::status_of(&error) == ExitStatus::NoCapacity => {
            match args.wait_for_capacity {
                Some(patience) => {
                    printer.info(format!(
                        "{error}; waiting up to {} for capacity",
                        human_duration(patience.as_secs() as i64)
                    ));
                    wait_for_capacity(
                        printer,
                        settings,
                        &client,
                        &model,
                        gpu.as_deref(),
                        &region,
                        patience,
                    )
                    .await?
                }
                None => return Err(error),
            }
        }
        other => other?,
    };
    let existing = client
        .list_instances()
        .await
        .context("cannot list instances")?;
    let name = match &args.name {
        Some(name) => {
            if name.is_empty() || name.len() > 64 {
                return Err(UserError::new("`--name` must be 1 to 64 characters")
                    .status(ExitStatus::Usage)
                    .into());
            }
            name.clone()
        }
        None => instances::unique_name(&model.id),
    };
    // The name is how a lost launch is found again, so it must be unique.
    if existing
        .iter()
        .any(|i| i.name.as_deref() == Some(name.as_str()) && !i.status.is_ending())
    {
        return Err(
            UserError::new(format!("an instance named `{name}` is already running"))
                .hint("choose another `--name`, or leave it out for a unique one")
                .into(),
        );
    }
    let policy = match policy {
        Some(policy) => policy,
        None => Policy {
            idle_timeout: Duration::from_secs(
                60 * u64::from(
                    args.idle_minutes
                        .unwrap_or(settings.config.defaults.idle_timeout_minutes),
                ),
            ),
            lease: Duration::from_secs(
                3600 * u64::from(args.hours.unwrap_or(settings.config.defaults.lease_hours)),
            ),
            ..Policy::default()
        },
    };
    let plan = Plan {
        model,
        fit,
        region,
        name,
        ssh_key,
        filesystem: filesystem.map(|fs| fs.name),
        policy,
    };

    // Tags and config need `launched_at` before the launch call exists; the
    // moment just before it is the conservative choice (deadlines can only
    // come earlier than the truth, never later).
    let launched_at = OffsetDateTime::now_utc();
    let Built {
        request,
        masked,
        host_key,
        ansible_vars,
        daemon_config,
    } = build_request(
        settings,
        &plan,
        launched_at,
        &token,
        &api_key,
        daemon_binary.as_ref(),
        args.provision,
    )?;
    print_plan(printer, &plan, launched_at);
    // A second instance is sometimes meant, often forgotten: say so before
    // the question (or the `-y`) that starts billing another one.
    let running: Vec<String> = existing
        .iter()
        .filter(|i| instances::is_managed(i) && !i.status.is_ending())
        .map(|i| {
            format!(
                "`{}` ({}/h)",
                i.name.as_deref().unwrap_or(&i.id),
                dollars(i.instance_type.price_cents_per_hour as f64)
            )
        })
        .collect();
    if !running.is_empty() && !args.dry_run {
        printer.warn(format!(
            "already running: {}; this launch adds another",
            running.join(", ")
        ));
    }
    if args.dry_run {
        let mut shown = serde_json::to_value(&request)?;
        shown["user_data"] = json!(masked);
        if printer.json() {
            printer.json_value(&shown);
        } else {
            shown["user_data"] = json!("<below>");
            printer.data(serde_json::to_string_pretty(&shown)?);
            printer.data("--- user-data (secrets masked) ---");
            printer.data(masked.trim_end());
            printer.data(format!(
                "--- {} (daemon_config_b64, decoded) ---",
                user_data::DAEMON_CONFIG_PATH
            ));
            printer.data(daemon_config.trim_end());
        }
        printer.info("Dry run: nothing was launched.");
        return Ok(None);
    }
    let price = plan.fit.price_cents_per_hour;
    if !crate::prompt::confirm(
        settings,
        &format!(
            "Launch `{}` at {}/h?",
            plan.fit.instance_type,
            dollars(price as f64)
        ),
        "launch a billed instance",
    )? {
        return Err(UserError::new("not launched").into());
    }

    // Pinned before the launch: an instance that exists always has its
    // host key on record, whatever happens to this process afterwards.
    let known_hosts = ssh::known_hosts_path(settings);
    ssh::pin(&known_hosts, &plan.name, &host_key.public).with_context(|| {
        format!(
            "cannot record the instance's host key in `{}`",
            known_hosts.display()
        )
    })?;
    let id = match launch(printer, settings, &client, &request).await {
        Ok(id) => id,
        Err(error) => {
            // Nothing was launched under this name: forget its key.
            let _ = ssh::unpin(&known_hosts, &plan.name);
            return Err(error);
        }
    };
    crate::history::record(
        printer,
        settings,
        &crate::history::Entry {
            instance_name: Some(plan.name.clone()),
            instance_type: Some(plan.fit.instance_type.clone()),
            region: Some(plan.region.clone()),
            model: Some(plan.model.id.clone()),
            price_cents_per_hour: Some(plan.fit.price_cents_per_hour),
            lease_deadline: Some(
                lease::initial_lease_deadline(launched_at, &plan.policy).unix_timestamp(),
            ),
            hard_deadline: Some(lease::hard_deadline(launched_at, &plan.policy).unix_timestamp()),
            source: Some("local".to_owned()),
            ..crate::history::Entry::new(
                launched_at.unix_timestamp(),
                crate::history::Kind::Launch,
                &id,
            )
        },
    );
    printer.info(format!("Launched `{}` ({id}).", plan.name));
    if args.no_wait {
        let instance = client.get_instance(&id).await.ok();
        if let Some(instance) = &instance {
            bind_address(printer, settings, instance);
        }
        if printer.json() {
            printer.json_value(&json!({"id": id, "name": plan.name, "status": instance.as_ref().map(|i| i.status.as_str())}));
        } else {
            printer.info("Not waiting (`--no-wait`); `soong status` shows when its daemon is up.");
        }
        return Ok(instance.map(|instance| Launched {
            instance,
            healthy: false,
        }));
    }
    // Interrupting the wait does not stop the instance: say so, and how.
    let waited = tokio::select! {
        waited = async {
            match wait_active(printer, settings, &client, &id).await? {
                Boot::Active(instance) => {
                    if let (Some(playbook), Some(vars)) = (&ansible, &ansible_vars)
                        && let Err(error) = playbook.run(printer, settings, &instance, vars).await
                    {
                        return anyhow::Ok((Some(*instance), false, Some(format!("{error:#}"))));
                    }
                    let healthy = wait_healthy(printer, settings, &token, &instance).await;
                    anyhow::Ok((Some(*instance), healthy, None))
                }
                Boot::Failed(why) => anyhow::Ok((None, false, Some(why))),
            }
        } => waited,
        _ = tokio::signal::ctrl_c() => {
            return Err(UserError::new(format!(
                "interrupted; `{}` ({id}) is launched and may be billing",
                plan.name
            ))
            .hint(if ansible.is_some() {
                format!(
                    "`soong status` shows it; `soong stop --instance {id}` terminates it. The playbook was stopped, so it may never get a daemon: nothing but the watchdog worker (if deployed) enforces its hard deadline"
                )
            } else {
                format!(
                    "`soong status` shows it; `soong stop --instance {id}` terminates it. Its daemon, once up, enforces the idle timeout and lease"
                )
            })
            .into());
        }
    };
    match waited? {
        (Some(instance), true, _) => {
            report_ready(printer, settings, &plan, &instance, launched_at);
            Ok(Some(Launched {
                instance,
                healthy: true,
            }))
        }
        (_, _, why) => {
            let why = why.unwrap_or_else(|| "its soong daemon never answered".to_owned());
            Err(unguarded(printer, settings, &client, &id, &plan.name, &why).await)
        }
    }
}

/// Records the instance's address on its pinned host key, once it has one.
fn bind_address(printer: &Printer, settings: &Settings, instance: &Instance) {
    let (Some(ip), Some(name)) = (&instance.ip, &instance.name) else {
        return;
    };
    let file = ssh::known_hosts_path(settings);
    let pattern = ssh::host_pattern(ip, settings.config.ssh.port);
    if let Err(error) = ssh::bind(&file, name, &pattern) {
        printer.warn(format!(
            "cannot record `{pattern}` in `{}`: {error}",
            file.display()
        ));
    }
}

async fn check_ssh_key(client: &Client, wanted: &str) -> anyhow::Result<()> {
    let keys = client
        .list_ssh_keys()
        .await
        .context("cannot list SSH keys")?;
    if keys.iter().any(|k| k.name == wanted) {
        return Ok(());
    }
    let names: Vec<String> = keys.iter().map(|k| format!("`{}`", k.name)).collect();
    Err(UserError::new(format!(
        "there is no SSH key `{wanted}` in the Lambda account"
    ))
    .hint(if names.is_empty() {
        "add one at https://cloud.lambda.ai/ssh-keys and set `lambda.ssh_key_name`".to_owned()
    } else {
        format!("set `lambda.ssh_key_name` to one of {}", names.join(", "))
    })
    .into())
}

async fn find_filesystem(
    client: &Client,
    wanted: &str,
) -> anyhow::Result<lambda_cloud::Filesystem> {
    let all = client
        .list_filesystems()
        .await
        .context("cannot list filesystems")?;
    if let Some(fs) = all.iter().find(|fs| fs.name == wanted) {
        return Ok(fs.clone());
    }
    let names: Vec<String> = all
        .iter()
        .map(|fs| format!("`{}` ({})", fs.name, fs.region.name))
        .collect();
    Err(UserError::new(format!(
        "there is no filesystem `{wanted}` in the Lambda account"
    ))
    .hint(if names.is_empty() {
        "create one at https://cloud.lambda.ai/file-systems, or remove `lambda.filesystem_name`"
            .to_owned()
    } else {
        format!(
            "set `lambda.filesystem_name` to one of {}",
            names.join(", ")
        )
    })
    .into())
}

async fn check_region(client: &Client, region: &str) -> anyhow::Result<()> {
    let regions = client.list_regions().await.context("cannot list regions")?;
    if regions.iter().any(|r| r.name == region) {
        return Ok(());
    }
    let similar = models::similar(regions.iter().map(|r| r.name.as_str()), region);
    Err(UserError::new(format!("unknown region `{region}`"))
        .hint(if similar.is_empty() {
            format!(
                "regions: {}",
                regions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("did you mean `{}`?", similar[0])
        })
        .status(ExitStatus::Usage)
        .into())
}

/// The instance type: the one asked for (if it exists, fits and has
/// capacity here) or the cheapest that fits with capacity here.
fn choose_type(
    model: &Model,
    types: &InstanceTypes,
    wanted: Option<&str>,
    region: &str,
) -> anyhow::Result<models::Fit> {
    let fits = models::fits(model, types);
    let elsewhere = |fit: &models::Fit| {
        if fit.regions.is_empty() {
            "it has no capacity anywhere right now".to_owned()
        } else {
            format!("it has capacity in {}", fit.regions.join(", "))
        }
    };
    let alternatives = || -> Vec<String> {
        fits.iter()
            .filter(|f| f.fits && f.regions.iter().any(|r| r == region))
            .take(3)
            .map(|f| {
                format!(
                    "`{}` ({}/h)",
                    f.instance_type,
                    dollars(f.price_cents_per_hour as f64)
                )
            })
            .collect()
    };
    let Some(wanted) = wanted else {
        return models::recommend(model, types, Some(region)).ok_or_else(|| {
            let hint = match models::recommend(model, types, None) {
                Some(fit) => format!(
                    "the cheapest type that fits, `{}`, has capacity in {}: try `--region {}`",
                    fit.instance_type,
                    fit.regions.join(", "),
                    fit.regions[0]
                ),
                None => "no type that fits has capacity anywhere now; try a smaller model (e.g. an int4 one) or later".to_owned(),
            };
            UserError::new(format!(
                "no instance type that fits `{}` ({:.1} GiB) has capacity in `{region}`",
                model.id,
                models::estimate(model).total_gib(1)
            ))
            .hint(hint)
            .status(ExitStatus::NoCapacity)
            .into()
        });
    };
    let Some(fit) = fits.iter().find(|f| f.instance_type == wanted) else {
        let similar = models::similar(types.keys().map(String::as_str), wanted);
        return Err(UserError::new(format!("unknown instance type `{wanted}`"))
            .hint(if similar.is_empty() {
                "`soong available` lists the types".to_owned()
            } else {
                format!(
                    "did you mean `{}`? (`soong available` lists the types)",
                    similar[0]
                )
            })
            .status(ExitStatus::Usage)
            .into());
    };
    if !fit.fits {
        return Err(UserError::new(format!(
            "`{}` needs about {:.1} GiB of VRAM; `{wanted}` has {:.0} GiB ({:.0} GiB usable)",
            model.id,
            fit.needed_gib,
            fit.total_vram_gib,
            fit.total_vram_gib * models::USABLE_FRACTION
        ))
        .hint(match models::recommend(model, types, Some(region)) {
            Some(better) => format!(
                "`{}` fits and has capacity in `{region}`",
                better.instance_type
            ),
            None => "`soong models recommend` shows the types that fit".to_owned(),
        })
        .status(ExitStatus::Usage)
        .into());
    }
    if !fit.regions.iter().any(|r| r == region) {
        let others = alternatives();
        let mut hint = elsewhere(fit);
        if !others.is_empty() {
            let _ = write!(
                hint,
                "; types that fit with capacity in `{region}`: {}",
                others.join(", ")
            );
        }
        return Err(
            UserError::new(format!("`{wanted}` has no capacity in `{region}`"))
                .hint(hint)
                .status(ExitStatus::NoCapacity)
                .into(),
        );
    }
    Ok(fit.clone())
}

/// How often to look for capacity: the types list is one cheap call, well
/// within the API's limit of about one request a second.
const CAPACITY_POLL: Duration = Duration::from_secs(30);

/// Polls the catalogue until a type that fits has capacity in the region
/// (the one asked for, when `--gpu` was given), or `patience` runs out.
async fn wait_for_capacity(
    printer: &Printer,
    settings: &Settings,
    client: &Client,
    model: &Model,
    gpu: Option<&str>,
    region: &str,
    patience: Duration,
) -> anyhow::Result<models::Fit> {
    let deadline = tokio::time::Instant::now() + patience;
    let spinner = printer.spinner(format!("Waiting for capacity in `{region}`"));
    let result = loop {
        tokio::time::sleep(scaled(settings, CAPACITY_POLL)).await;
        let types = match client.list_instance_types().await {
            Ok(types) => types,
            Err(error) if error.is_transient() => {
                printer.verbose(format!("cannot list types now: {error}"));
                continue;
            }
            Err(error) => {
                break Err(anyhow::Error::new(error).context("cannot list instance types"));
            }
        };
        match choose_type(model, &types, gpu, region) {
            Ok(fit) => break Ok(fit),
            Err(error) if crate::exit::status_of(&error) == ExitStatus::NoCapacity => {
                if tokio::time::Instant::now() >= deadline {
                    break Err(error.context(format!(
                        "no capacity appeared within {}",
                        human_duration(patience.as_secs() as i64)
                    )));
                }
                printer.verbose(format!("still no capacity: {error}"));
            }
            Err(error) => break Err(error),
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let fit = result?;
    printer.info(format!(
        "Capacity appeared: `{}` in `{region}`.",
        fit.instance_type
    ));
    Ok(fit)
}

/// The daemon binary instances install: `provision.daemon_binary_url` and
/// `provision.daemon_binary_sha256`, else this build's. Missing is an error,
/// except for `--dry-run` (which shows a placeholder).
fn daemon_binary(
    settings: &Settings,
    dry_run: bool,
) -> anyhow::Result<Option<user_data::DaemonBinary>> {
    match settings.config.provision.daemon_binary() {
        (Some(url), Some(sha256)) => Ok(Some(user_data::DaemonBinary {
            url: url.to_owned(),
            sha256: sha256.to_owned(),
        })),
        _ if dry_run => Ok(None),
        (url, sha256) => {
            let missing: Vec<&str> = [
                url.is_none().then_some("`provision.daemon_binary_url`"),
                sha256
                    .is_none()
                    .then_some("`provision.daemon_binary_sha256`"),
            ]
            .into_iter()
            .flatten()
            .collect();
            Err(UserError::new(format!(
                "no soong-daemon binary to install: {} not set, and this build of soong has no release default",
                missing.join(" and ")
            ))
            .hint(format!(
                "set {} in `{}` (the URL of a soong-daemon x86_64 Linux binary and its sha256, 64 lowercase hex digits: `sha256sum soong-daemon`); nothing was launched",
                missing.join(" and "),
                settings.config_path.display()
            ))
            .into())
        }
    }
}

/// The config key (or flag) behind a user-data variable, for errors.
fn source_of(variable: &str) -> &'static str {
    match variable {
        "daemon_binary_url" => "`provision.daemon_binary_url`",
        "daemon_binary_sha256" => "`provision.daemon_binary_sha256`",
        "sglang_version" => "`provision.sglang_version`",
        "n8n_version" => "`provision.n8n_version`",
        "hf_token_b64" => "`provision.hf_token`",
        "service_user" => "`ssh.user`",
        "filesystem_mount_path" => "`lambda.filesystem_name`",
        "worker_token_b64" => "`worker.secret`",
        name if name.starts_with("model_") => "`--model` (or its `custom_models` entry)",
        name if name.starts_with("ssh_host") => "the generated host key",
        _ => "the config",
    }
}

fn render_error(error: user_data::RenderError) -> anyhow::Error {
    match &error {
        user_data::RenderError::Invalid { name, .. } => UserError::new(error.to_string())
            .hint(format!(
                "the value comes from {}; fix it and try again (nothing was launched)",
                source_of(name)
            ))
            .into(),
        _ => anyhow::Error::new(error).context("cannot render the user-data"),
    }
}

/// What `build_request` decided.
struct Built {
    request: LaunchRequest,
    /// The user-data with its secrets masked, for `--dry-run`.
    masked: String,
    host_key: ssh::HostKey,
    /// The playbook's variables, secrets included (`--provision ansible`).
    ansible_vars: Option<crate::ansible::Vars>,
    /// The daemon config YAML (no secrets: it names their files).
    daemon_config: String,
}

/// The launch request, and the user-data with its secrets masked.
fn build_request(
    settings: &Settings,
    plan: &Plan,
    launched_at: OffsetDateTime,
    token: &Secret,
    api_key: &lambda_cloud::ApiKey,
    daemon_binary: Option<&user_data::DaemonBinary>,
    provision: Provision,
) -> anyhow::Result<Built> {
    let tags = LaunchTags {
        launched_at,
        hard_deadline: lease::hard_deadline(launched_at, &plan.policy),
        lease_deadline: lease::initial_lease_deadline(launched_at, &plan.policy),
        model: Some(plan.model.id.clone()),
    }
    .to_pairs()
    .context("cannot build the launch tags")?;
    let (token_file, api_key_file) = user_data::secret_paths();
    let mut config = DaemonConfig::parse(
        std::path::Path::new("generated"),
        "lambda: {}\ninstance: {}\n",
    )?;
    config.listen = user_data::listen_address(
        settings.config.status_daemon.access == Access::Direct,
        settings.config.status_daemon.port,
    );
    config.token_file = Some(token_file);
    config.lambda = LambdaConfig {
        api_url: settings.api_url.clone(),
        api_key_file: Some(api_key_file),
        api_key: None,
    };
    config.instance = InstanceConfig {
        id: None,
        name: Some(plan.name.clone()),
        launched_at: Some(launched_at),
    };
    config.policy = plan.policy;
    // The watchdog worker, when deployed, gets this instance's heartbeats.
    let worker = settings
        .config
        .worker
        .as_ref()
        .and_then(WorkerSection::heartbeats);
    config.worker = worker.map(|(url, _)| WorkerConfig {
        url: url.to_owned(),
        token_file: Some(user_data::WORKER_TOKEN_PATH.into()),
        token: None,
        heartbeat_interval: soong_protocol::config::DEFAULT_HEARTBEAT_INTERVAL,
    });
    let problems = config.check();
    if !problems.is_empty() {
        anyhow::bail!(
            "the generated daemon config is invalid: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let host_key = ssh::generate_host_key(&plan.name)?;
    let secrets = Secrets {
        token: token.clone(),
        api_key: Secret::new(api_key.expose()),
        worker_token: worker.map(|(_, secret)| user_data::worker_token(secret, &plan.name)),
        host_key: host_key.clone(),
        hf_token: settings
            .config
            .provision
            .hf_token
            .clone()
            .filter(|t| !t.expose().is_empty()),
    };
    let model = user_data::ModelVariables {
        id: plan.model.id.clone(),
        hf_path: plan.model.hf_path.clone(),
        quantization: plan
            .model
            .quantization
            .sglang_flag()
            .unwrap_or_default()
            .to_owned(),
        tensor_parallel_size: plan.fit.tensor_parallel.max(1),
        context_length: plan.model.context_length,
        served_name: plan.model.id.clone(),
    };
    let filesystem_mount_path = match &plan.filesystem {
        Some(name) => format!("/lambda/nfs/{name}"),
        None => format!("/home/{}", settings.config.ssh.user),
    };
    let provision_section = &settings.config.provision;
    let inputs = user_data::Inputs {
        config: &config,
        secrets: &secrets,
        daemon_binary,
        service_user: &settings.config.ssh.user,
        model: &model,
        sglang_version: provision_section
            .sglang_version
            .as_deref()
            .unwrap_or(user_data::DEFAULT_SGLANG_VERSION),
        n8n_version: provision_section
            .n8n_version
            .as_deref()
            .unwrap_or(user_data::DEFAULT_N8N_VERSION),
        filesystem_mount_path: &filesystem_mount_path,
    };
    // Every value is checked against the template's contract, whatever the
    // provisioning, so a bad value fails here and not on the instance.
    let masked_full = user_data::render_masked(&inputs).map_err(render_error)?;
    let (real, masked, ansible_vars) = match provision {
        Provision::CloudInit => (
            daemon_binary
                .map(|_| user_data::render(&inputs))
                .transpose()
                .map_err(render_error)?,
            masked_full,
            None,
        ),
        Provision::Ansible => (
            Some(user_data::render_host_key_only(&host_key, false).map_err(render_error)?),
            user_data::render_host_key_only(&host_key, true).map_err(render_error)?,
            daemon_binary
                .map(|binary| crate::ansible::Vars::new(settings, &inputs, binary))
                .transpose()?,
        ),
    };
    let request = LaunchRequest {
        region_name: plan.region.clone(),
        instance_type_name: plan.fit.instance_type.clone(),
        // The API takes exactly one key.
        ssh_key_names: vec![plan.ssh_key.clone()],
        file_system_names: plan.filesystem.iter().cloned().collect(),
        name: Some(plan.name.clone()),
        user_data: real.map(UserData),
        tags: tags.into_iter().map(|(k, v)| Tag::new(k, v)).collect(),
        ..LaunchRequest::default()
    };
    Ok(Built {
        request,
        masked,
        host_key,
        ansible_vars,
        daemon_config: serde_yaml::to_string(&config)?,
    })
}

fn print_plan(printer: &Printer, plan: &Plan, launched_at: OffsetDateTime) {
    let price = plan.fit.price_cents_per_hour as f64;
    let hours = |d: Duration| d.as_secs_f64() / 3600.0;
    let lease_end = lease::initial_lease_deadline(launched_at, &plan.policy);
    let hard = lease::hard_deadline(launched_at, &plan.policy);
    printer.info(format!(
        "Model:     {} ({:.1} GiB of VRAM needed)\nInstance:  {} ({}) in {}{}\nName:      {}\nPrice:     {}/h\nLease:     {} (until {}), extendable to {}; hard stop at {}\nIdle stop: after {} without activity\nCost:      at most {} for the lease, {} if extended to the maximum",
        plan.model.id,
        plan.fit.needed_gib,
        plan.fit.instance_type,
        plan.fit.description,
        plan.region,
        if plan.fit.tensor_parallel > 1 { format!(", tensor parallel {}", plan.fit.tensor_parallel) } else { String::new() },
        plan.name,
        dollars(price),
        human_duration(plan.policy.lease.as_secs() as i64),
        clock(lease_end),
        human_duration(plan.policy.max_lease.as_secs() as i64),
        clock(hard),
        human_duration(plan.policy.idle_timeout.as_secs() as i64),
        dollars(price * hours(plan.policy.lease)),
        dollars(price * hours(plan.policy.max_lease.min(plan.policy.hard_timeout))),
    ));
}

/// `14:05:09 UTC`.
pub fn clock(at: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02} UTC", at.hour(), at.minute(), at.second())
}

/// Launches, recovering from lost answers by looking for the name.
async fn launch(
    printer: &Printer,
    settings: &Settings,
    client: &Client,
    request: &LaunchRequest,
) -> anyhow::Result<String> {
    let name = request.name.clone().unwrap_or_default();
    let pause = scaled(settings, Duration::from_secs(3));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let spinner = printer.spinner(format!("Launching `{name}`"));
        let result = client.launch_instance(request).await;
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        match result {
            Ok(ids) => {
                return ids.into_iter().next().ok_or_else(|| {
                    anyhow::anyhow!("the launch succeeded but returned no instance id")
                });
            }
            Err(error) if error.is_transient() => {
                printer.warn(format!(
                    "the launch's answer was lost ({error}); looking for `{name}` before trying again"
                ));
                // The list may lag the launch; look a few times.
                for _ in 0..3 {
                    tokio::time::sleep(pause).await;
                    if let Ok(list) = client.list_instances().await
                        && let Some(found) = list
                            .iter()
                            .find(|i| i.name.as_deref() == Some(name.as_str()))
                    {
                        printer.info(format!(
                            "The launch went through: found `{name}` ({}).",
                            found.id
                        ));
                        return Ok(found.id.clone());
                    }
                }
                if attempt >= LAUNCH_ATTEMPTS {
                    return Err(anyhow::Error::new(error).context(format!(
                        "the launch failed {attempt} times and `{name}` is not in the instance list"
                    )));
                }
                printer.info(format!("`{name}` is not in the account; launching again."));
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot launch `{}` in `{}`",
                    request.instance_type_name, request.region_name
                )));
            }
        }
    }
}

fn scaled(settings: &Settings, duration: Duration) -> Duration {
    duration
        .mul_f64(settings.wait_scale)
        .max(Duration::from_millis(100))
}

/// How a boot ended.
enum Boot {
    /// Active, with an address.
    Active(Box<Instance>),
    /// Not active in time, or in a status it will not leave for `active`;
    /// it may be billing all the same.
    Failed(String),
}

/// Waits for `booting → active`. An error means the instance could not be
/// followed at all (its state is unknown).
async fn wait_active(
    printer: &Printer,
    settings: &Settings,
    client: &Client,
    id: &str,
) -> anyhow::Result<Boot> {
    let deadline = tokio::time::Instant::now() + scaled(settings, BOOT_TIMEOUT);
    let spinner = printer.spinner("Booting");
    if spinner.is_none() {
        printer.info("Waiting for the instance to boot…");
    }
    let result = loop {
        match client.get_instance(id).await {
            Ok(instance) => match instance.status {
                InstanceStatus::Active if instance.ip.is_some() => {
                    break Ok(Boot::Active(Box::new(instance)));
                }
                InstanceStatus::Booting | InstanceStatus::Active => {}
                status => {
                    break Ok(Boot::Failed(format!(
                        "it became `{status}` instead of `active`"
                    )));
                }
            },
            // Just after a launch the instance may not be listed yet.
            Err(error)
                if error.kind() == lambda_cloud::ErrorKind::NotFound || error.is_transient() =>
            {
                printer.verbose(format!("not visible yet: {error}"));
            }
            Err(error) => {
                // Launched, state unknown: the one thing to say is that
                // it may be billing, and how to find and stop it.
                break Err(anyhow::Error::new(error).context(
                    UserError::new(format!(
                        "cannot follow the boot of instance `{id}`, which may be billing"
                    ))
                    .hint(format!(
                        "`soong status` shows it; `soong stop --instance {id}` terminates it"
                    )),
                ));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break Ok(Boot::Failed(format!(
                "it did not become active within {}",
                human_duration(scaled(settings, BOOT_TIMEOUT).as_secs() as i64)
            )));
        }
        tokio::time::sleep(scaled(settings, POLL)).await;
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let boot = result?;
    if let Boot::Active(instance) = &boot {
        printer.info(format!(
            "Active at {}.",
            instance.ip.as_deref().unwrap_or("?")
        ));
    }
    Ok(boot)
}

/// Waits for the daemon's `/health`; false if it never answers.
async fn wait_healthy(
    printer: &Printer,
    settings: &Settings,
    token: &Secret,
    instance: &Instance,
) -> bool {
    let deadline = tokio::time::Instant::now() + scaled(settings, HEALTH_TIMEOUT);
    let spinner = printer.spinner("Waiting for the soong daemon");
    if spinner.is_none() {
        printer.info("Waiting for the soong daemon…");
    }
    let name = instance.name.as_deref();
    // Over SSH the forward itself may fail while sshd is still starting:
    // keep trying until the deadline.
    let mut connected: Option<DaemonClient> = None;
    let healthy = loop {
        if connected.is_none() {
            match DaemonClient::for_instance(settings, token, instance, Duration::from_secs(3))
                .await
            {
                Ok(daemon) => connected = Some(daemon),
                Err(error) => printer.verbose(format!("daemon not reachable yet: {error}")),
            }
        }
        let Some(daemon) = &connected else {
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(scaled(settings, POLL).min(Duration::from_secs(2))).await;
            continue;
        };
        // `/health` answers anyone; `/status` proves the daemon has our
        // token and guards this very instance (not some other process that
        // happens to listen at that address).
        match daemon.health().await {
            Ok(health) if health.status == "ok" => match daemon.status().await {
                Ok(status)
                    if status.instance_id.as_deref() == Some(instance.id.as_str())
                        || (name.is_some() && status.instance_name.as_deref() == name) =>
                {
                    break true;
                }
                Ok(status) => printer.verbose(format!(
                    "the daemon at {} guards `{}`, not this instance",
                    daemon.url(),
                    status.instance_name.as_deref().unwrap_or("?")
                )),
                Err(error) => printer.verbose(format!("daemon not ready yet: {error}")),
            },
            Ok(_) => {}
            Err(error) => {
                printer.verbose(format!("daemon not up yet: {error}"));
                // A forward whose other end is gone is set up afresh.
                if settings.config.status_daemon.access == Access::Ssh {
                    connected = None;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(scaled(settings, POLL).min(Duration::from_secs(2))).await;
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    healthy
}

fn report_ready(
    printer: &Printer,
    settings: &Settings,
    plan: &Plan,
    instance: &Instance,
    launched_at: OffsetDateTime,
) {
    let ip = instance.ip.as_deref().unwrap_or("?");
    let shutdown_at = lease::initial_lease_deadline(launched_at, &plan.policy);
    if printer.json() {
        printer.json_value(&json!({
            "id": instance.id,
            "name": plan.name,
            "ip": ip,
            "instance_type": plan.fit.instance_type,
            "region": plan.region,
            "model": plan.model.id,
            "launched_at": launched_at.unix_timestamp(),
            "lease_deadline": shutdown_at.unix_timestamp(),
            "daemon_healthy": true,
        }));
        return;
    }
    let user = &settings.config.ssh.user;
    printer.info(format!(
        "{} `{}` is up and guarded by its daemon.\n  Connect:  soong ssh   ({user}@{ip}, its host key pinned in `{}`)\n  Model:    {} (SGLang on port 8000: `soong tunnel` forwards it, n8n and the dashboard)\n  Stops:    at {} when the lease ends (`soong extend <hours>` adds time), or after {} idle\n  Done?     `soong stop`",
        printer.green("Ready:"),
        plan.name,
        ssh::known_hosts_path(settings).display(),
        plan.model.id,
        clock(shutdown_at),
        human_duration(plan.policy.idle_timeout.as_secs() as i64),
    ));
}

/// The loud outcome: a launched instance, possibly billing, that nobody
/// guards. Offers to terminate it (`--yes` does); returns the error to exit with.
async fn unguarded(
    printer: &Printer,
    settings: &Settings,
    client: &Client,
    id: &str,
    name: &str,
    why: &str,
) -> anyhow::Error {
    printer.warn(format!(
        "{} `{name}` ({id}) may be billing, but {why}: nothing enforces its idle timeout or lease",
        printer.red_bold("UNGUARDED:"),
    ));
    let terminate = if settings.yes {
        Ok(true)
    } else if settings.interactive {
        crate::prompt::confirm(settings, &format!("Terminate `{name}` now?"), "terminate")
    } else {
        Ok(false)
    };
    match terminate {
        Ok(true) => {
            if let Err(error) = client.terminate_instances(&[id.to_owned()]).await {
                return anyhow::Error::new(error).context(format!(
                    "cannot terminate `{name}` ({id}); terminate it in Lambda's console"
                ));
            }
            UserError::new(format!("`{name}` never became healthy and was terminated"))
                .hint("check the user-data with `soong start --dry-run`, then try again")
                .into()
        }
        Ok(false) => UserError::new(format!("`{name}` never became healthy and is still running"))
            .hint(format!(
                "terminate it with `soong stop --instance {id}`; its hard-deadline tag lets the watchdog worker stop it too, if one is deployed"
            ))
            .into(),
        Err(error) => error,
    }
}
