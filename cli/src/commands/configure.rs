//! `soong configure`: write the config file, from flags or by asking.
//!
//! It starts from the existing file and changes only what it is given (or
//! asked and answered), so settings it does not know about survive. Given
//! an API key it checks every Lambda setting against the account before
//! writing, so a typo is caught here rather than at the first launch.

use std::io::{BufRead, Write};

use anyhow::Context as _;
use soong_protocol::config::Secret;

use crate::args::ConfigureArgs;
use crate::exit::{ExitStatus, UserError};
use crate::models;
use crate::output::Printer;
use crate::settings::{Access, ConfigFile, ENV_API_KEY, Settings};

/// Runs `soong configure`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &ConfigureArgs,
) -> anyhow::Result<ExitStatus> {
    let mut config = settings.config.clone();
    let flags_given = args.api_key.is_some()
        || args.api_url.is_some()
        || args.region.is_some()
        || args.filesystem.is_some()
        || args.ssh_key.is_some()
        || args.model.is_some()
        || args.gpu.is_some()
        || args.lease_hours.is_some()
        || args.idle_minutes.is_some()
        || args.access.is_some()
        || args.rotate_token;
    let mut create_filesystem = args.create_filesystem;
    if !flags_given && settings.interactive && !settings.yes {
        create_filesystem |= ask(printer, settings, &mut config).await?;
    } else {
        apply(&mut config, args);
    }
    if config.status_daemon.token.is_none() || args.rotate_token {
        config.status_daemon.token = Some(Secret::new(crate::settings::generate_token()));
        printer.info("Generated a new daemon token.");
    }
    if let Some(model) = &config.defaults.model {
        let registry = models::registry(&config.custom_models);
        if models::find(&registry, model).is_none() {
            return Err(UserError::new(format!("unknown model `{model}`"))
                .hint("see `soong models list`")
                .status(ExitStatus::Usage)
                .into());
        }
    }
    if !args.no_check {
        check(printer, settings, &mut config, create_filesystem).await?;
    }
    config.save(&settings.config_path)?;
    printer.info(format!(
        "Wrote `{}` (mode 0600): key {}, region {}, filesystem {}, SSH key {}, model {}, lease {} h, idle {} min, daemon access {}.",
        settings.config_path.display(),
        if config.lambda.api_key.is_some() { "set" } else { "not set" },
        config.lambda.default_region.as_deref().unwrap_or("-"),
        config.lambda.filesystem_name.as_deref().unwrap_or("-"),
        config.lambda.ssh_key_name.as_deref().unwrap_or("-"),
        config.defaults.model.as_deref().unwrap_or("-"),
        config.defaults.lease_hours,
        config.defaults.idle_timeout_minutes,
        match config.status_daemon.access {
            Access::Ssh => "ssh",
            Access::Direct => "direct",
        }
    ));
    Ok(ExitStatus::Success)
}

fn apply(config: &mut ConfigFile, args: &ConfigureArgs) {
    let set = |target: &mut Option<String>, value: &Option<String>| {
        if let Some(value) = value {
            *target = Some(value.clone());
        }
    };
    if let Some(key) = &args.api_key {
        config.lambda.api_key = Some(Secret::new(key.trim()));
    }
    set(&mut config.lambda.api_url, &args.api_url);
    set(&mut config.lambda.default_region, &args.region);
    set(&mut config.lambda.filesystem_name, &args.filesystem);
    set(&mut config.lambda.ssh_key_name, &args.ssh_key);
    set(&mut config.defaults.model, &args.model);
    set(&mut config.defaults.gpu, &args.gpu);
    if let Some(hours) = args.lease_hours {
        config.defaults.lease_hours = hours;
    }
    if let Some(minutes) = args.idle_minutes {
        config.defaults.idle_timeout_minutes = minutes;
    }
    if let Some(access) = &args.access {
        config.status_daemon.access = if access == "direct" {
            Access::Direct
        } else {
            Access::Ssh
        };
    }
}

/// One question with the current value as the default.
fn question(label: &str, current: Option<&str>) -> anyhow::Result<Option<String>> {
    match current {
        Some(current) => eprint!("{label} [{current}]: "),
        None => eprint!("{label}: "),
    }
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let answer = answer.trim();
    Ok(if answer.is_empty() {
        None
    } else {
        Some(answer.to_owned())
    })
}

/// The wizard: each answer left empty keeps the current value. Once the
/// key works, the questions show what the account has (SSH keys, regions,
/// filesystems, the recommended GPU). Returns whether to create the
/// filesystem.
async fn ask(
    printer: &Printer,
    settings: &Settings,
    config: &mut ConfigFile,
) -> anyhow::Result<bool> {
    eprintln!("Press Enter to keep the value in brackets.");
    let masked = config.lambda.api_key.as_ref().map(|_| "********");
    if let Some(key) = question("Lambda API key", masked)? {
        config.lambda.api_key = Some(Secret::new(key));
    }
    let client = client_for(settings, config)?;
    if let Some(client) = &client {
        let spinner = printer.spinner("Checking the API key");
        let keys = client.list_ssh_keys().await;
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        let keys = keys.context("the API key does not work")?;
        eprintln!("The API key works.");
        if config.lambda.ssh_key_name.is_none() && keys.len() == 1 {
            config.lambda.ssh_key_name = Some(keys[0].name.clone());
        }
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let label = format!("SSH key to launch with (your keys: {})", names.join(", "));
        text(&label, &mut config.lambda.ssh_key_name)?;
    } else {
        text(
            "SSH key name (in your Lambda account)",
            &mut config.lambda.ssh_key_name,
        )?;
    }
    text("Region", &mut config.lambda.default_region)?;
    let mut create_filesystem = false;
    text(
        "Persistent filesystem name",
        &mut config.lambda.filesystem_name,
    )?;
    if let (Some(client), Some(name)) = (&client, config.lambda.filesystem_name.clone()) {
        let filesystems = client
            .list_filesystems()
            .await
            .context("cannot list filesystems")?;
        if !filesystems.iter().any(|fs| fs.name == name) {
            let region = config.lambda.default_region.clone().unwrap_or_default();
            let answer = question(
                &format!("There is no filesystem `{name}`. Create it in `{region}`? [y/N]"),
                None,
            )?;
            create_filesystem = matches!(answer.as_deref(), Some("y" | "Y" | "yes"));
        }
    }
    let registry = models::registry(&config.custom_models);
    let ids: Vec<&str> = registry.iter().map(|m| m.id.as_str()).collect();
    text(
        &format!("Default model ({})", ids.join(", ")),
        &mut config.defaults.model,
    )?;
    if let (Some(client), Some(model)) = (
        &client,
        config
            .defaults
            .model
            .as_deref()
            .and_then(|id| models::find(&registry, id)),
    ) {
        let types = client
            .list_instance_types()
            .await
            .context("cannot list instance types")?;
        let region = config.lambda.default_region.as_deref();
        let now = models::recommend(model, &types, region).map_or_else(
            || "none has capacity now".to_owned(),
            |fit| format!("now `{}`", fit.instance_type),
        );
        text(
            &format!("Default GPU type (empty: the cheapest that fits at launch time; {now})"),
            &mut config.defaults.gpu,
        )?;
    }
    if let Some(hours) = question(
        "Lease hours (1-8)",
        Some(&config.defaults.lease_hours.to_string()),
    )? {
        config.defaults.lease_hours = hours
            .parse::<u8>()
            .ok()
            .filter(|h| (1..=8).contains(h))
            .ok_or_else(|| {
                UserError::new(format!("`{hours}` is not a number of hours from 1 to 8"))
            })?;
    }
    if let Some(minutes) = question(
        "Idle timeout in minutes",
        Some(&config.defaults.idle_timeout_minutes.to_string()),
    )? {
        config.defaults.idle_timeout_minutes = minutes
            .parse::<u32>()
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| UserError::new(format!("`{minutes}` is not a number of minutes")))?;
    }
    Ok(create_filesystem)
}

/// Asks for a text setting; an empty answer keeps it.
fn text(label: &str, target: &mut Option<String>) -> anyhow::Result<()> {
    if let Some(value) = question(label, target.as_deref())? {
        *target = Some(value);
    }
    Ok(())
}

/// A client for the key being configured (the environment's wins, as it
/// does everywhere), or `None` without a key.
fn client_for(
    settings: &Settings,
    config: &ConfigFile,
) -> anyhow::Result<Option<lambda_cloud::Client>> {
    let key = std::env::var(ENV_API_KEY)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new)
        .or_else(|| config.lambda.api_key.clone());
    let Some(key) = key else {
        return Ok(None);
    };
    let url = std::env::var(crate::settings::ENV_API_URL)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(|| config.lambda.api_url.clone())
        .unwrap_or_else(|| lambda_cloud::DEFAULT_API_URL.to_owned());
    let mut builder = lambda_cloud::Client::builder(url, lambda_cloud::ApiKey::new(key.expose()));
    if settings.no_pacing {
        builder = builder.pacing(lambda_cloud::Pacing::none());
    }
    Ok(Some(builder.build()?))
}

/// Checks the Lambda settings against the account (when a key is known).
async fn check(
    printer: &Printer,
    settings: &Settings,
    config: &mut ConfigFile,
    create_filesystem: bool,
) -> anyhow::Result<()> {
    let Some(client) = client_for(settings, config)? else {
        printer.warn("no API key given, so nothing was checked against Lambda");
        return Ok(());
    };
    let spinner = printer.spinner("Checking the API key");
    let keys = client.list_ssh_keys().await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let keys = keys.context("the API key does not work")?;
    printer.info("The API key works.");
    if let Some(wanted) = &config.lambda.ssh_key_name
        && !keys.iter().any(|k| &k.name == wanted)
    {
        return Err(UserError::new(format!(
            "there is no SSH key `{wanted}` in the Lambda account"
        ))
        .hint(format!(
            "use one of {}, or add yours at https://cloud.lambda.ai/ssh-keys",
            keys.iter()
                .map(|k| format!("`{}`", k.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    if let Some(region) = &config.lambda.default_region {
        let regions = client.list_regions().await.context("cannot list regions")?;
        if !regions.iter().any(|r| &r.name == region) {
            let similar = models::similar(regions.iter().map(|r| r.name.as_str()), region);
            return Err(UserError::new(format!("unknown region `{region}`"))
                .hint(similar.first().map_or_else(
                    || "`soong available` lists regions with capacity".to_owned(),
                    |s| format!("did you mean `{s}`?"),
                ))
                .status(ExitStatus::Usage)
                .into());
        }
    }
    if let Some(name) = config.lambda.filesystem_name.clone() {
        let filesystems = client
            .list_filesystems()
            .await
            .context("cannot list filesystems")?;
        match filesystems.iter().find(|fs| fs.name == name) {
            Some(fs) => match &config.lambda.default_region {
                Some(region) if region != &fs.region.name => {
                    return Err(UserError::new(format!(
                        "filesystem `{name}` is in `{}`, not in the default region `{region}`",
                        fs.region.name
                    ))
                    .hint(format!(
                        "use `--region {}`, or another filesystem",
                        fs.region.name
                    ))
                    .into());
                }
                Some(_) => {}
                None => config.lambda.default_region = Some(fs.region.name.clone()),
            },
            None if create_filesystem => {
                let region = config.lambda.default_region.clone().ok_or_else(|| {
                    UserError::new("a filesystem needs a region").hint("pass `--region`")
                })?;
                client
                    .create_filesystem(&name, &region)
                    .await
                    .with_context(|| format!("cannot create filesystem `{name}` in `{region}`"))?;
                printer.info(format!("Created filesystem `{name}` in `{region}`."));
            }
            None => {
                return Err(UserError::new(format!(
                    "there is no filesystem `{name}` in the Lambda account"
                ))
                .hint("pass `--create-filesystem` to create it in the region")
                .into());
            }
        }
    }
    Ok(())
}
