//! Which instances soong may touch, and picking the one a command acts on.
//!
//! Only instances tagged `soong:managed=true` are ever stopped or extended:
//! the account may hold instances soong did not launch, and touching those
//! would be a costly surprise.

use anyhow::Context as _;
use lambda_cloud::{Client, Instance};
use rand::Rng as _;
use soong_protocol::tags::{self, LaunchTags};

use crate::exit::{ExitStatus, UserError};
use crate::settings::Settings;

/// Whether soong launched this instance.
pub fn is_managed(instance: &Instance) -> bool {
    tags::is_managed(
        instance
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    )
}

/// The instance's soong tags, if it has readable ones.
pub fn launch_tags(instance: &Instance) -> Option<LaunchTags> {
    LaunchTags::from_pairs(
        instance
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    )
    .ok()
    .flatten()
}

/// A fresh name: `soong-<model>-<6 hex>`, at most 64 characters, so that a
/// launch whose answer was lost can be found again by name.
pub fn unique_name(model: &str) -> String {
    let suffix: u32 = rand::rng().random_range(0..0x0100_0000);
    let slug: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("soong-{slug}-{suffix:06x}")
}

/// A one-line description for lists and prompts.
pub fn describe(instance: &Instance) -> String {
    format!(
        "{} ({}, {}, {}, {})",
        instance.name.as_deref().unwrap_or("(no name)"),
        instance.id,
        instance.instance_type.name,
        instance.region.name,
        instance.status
    )
}

/// The soong-managed instance a command acts on: the one named by
/// `--instance`, the only one running, or the one the user picks.
pub async fn choose(
    settings: &Settings,
    client: &Client,
    action: &str,
) -> anyhow::Result<Instance> {
    let all = client
        .list_instances()
        .await
        .context("cannot list instances")?;
    if let Some(wanted) = &settings.instance {
        let found = all
            .iter()
            .find(|i| &i.id == wanted || i.name.as_deref() == Some(wanted.as_str()));
        return match found {
            Some(instance) if !is_managed(instance) => Err(UserError::new(format!(
                "instance `{wanted}` was not launched by soong (it has no `soong:managed` tag)"
            ))
            .hint(format!(
                "soong only {action}s instances it launched; use Lambda's console for others"
            ))
            .into()),
            Some(instance) => Ok(instance.clone()),
            None => Err(
                UserError::new(format!("no instance `{wanted}` in the account"))
                    .hint("`soong status` lists soong's instances")
                    .into(),
            ),
        };
    }
    let mut candidates: Vec<Instance> = all
        .into_iter()
        .filter(|i| is_managed(i) && !i.status.is_ending())
        .collect();
    match candidates.len() {
        0 => Err(
            UserError::new(format!("there is no running soong instance to {action}"))
                .hint("`soong start` launches one")
                .into(),
        ),
        1 => Ok(candidates.remove(0)),
        _ => {
            let names: Vec<String> = candidates.iter().map(describe).collect();
            if settings.interactive && !settings.yes {
                eprintln!("Several soong instances are running:");
                if let Some(index) =
                    crate::prompt::choose(&format!("Which one to {action}?"), &names)?
                {
                    return Ok(candidates.remove(index));
                }
                return Err(UserError::new("no instance chosen").into());
            }
            Err(UserError::new(format!(
                "{} soong instances are running; which one to {action} is ambiguous:\n  {}",
                candidates.len(),
                names.join("\n  ")
            ))
            .hint("pass `--instance <ID|NAME>`")
            .status(ExitStatus::Usage)
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_short() {
        let a = unique_name("qwen2.5-coder-32b-int4");
        let b = unique_name("qwen2.5-coder-32b-int4");
        assert_ne!(a, b);
        assert!(a.starts_with("soong-qwen2.5-coder-32b-int4-"), "{a}");
        assert!(unique_name(&"x".repeat(200)).len() <= 64);
    }
}
