//! Which instance this daemon guards: `instance.id` from the config, else
//! the one instance whose name is `instance.name`, found through the API.
//!
//! Never a guess. Resolution by name retries (with backoff) until exactly
//! one live instance carries the name; two live instances with one name are
//! refused and retried, since terminating the wrong one would be worse than
//! waiting. No external "what is my IP" service is consulted. Until the id
//! is known, the deadlines are still enforced; a termination due meanwhile
//! waits for the id (and the watchdog worker covers that gap).

use std::sync::Arc;

use lambda_cloud::{Client, ErrorKind, Instance};
use soong_protocol::tags::LaunchTags;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::logging::chain;
use crate::policy::Identity;
use crate::settings::Backoff;
use crate::shared::Shared;

/// How many times to try fetching details (price, tags) of an instance
/// whose id is already known; they are nice to have, not needed.
const DETAIL_ATTEMPTS: u32 = 5;

/// Resolves the identity, publishes it to `publish` and the core, then
/// returns. `known_id` is the configured (or previously resolved) id.
pub async fn run(
    client: Client,
    shared: Arc<Shared>,
    publish: watch::Sender<Option<Identity>>,
    known_id: Option<String>,
    name: Option<String>,
    backoff: Backoff,
) {
    if let Some(id) = known_id {
        let identity = Identity {
            id: id.clone(),
            name: name.clone(),
            price_cents_per_hour: None,
        };
        adopt(&shared, &publish, identity, None);
        for round in 1..=DETAIL_ATTEMPTS {
            match client.get_instance(&id).await {
                Ok(instance) => {
                    let (identity, tagged) = describe(&instance);
                    adopt(&shared, &publish, identity, tagged);
                    return;
                }
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    log::error!(
                        "Lambda does not know instance `{id}` (from the config or state); it may already be terminated"
                    );
                    return;
                }
                Err(err) => {
                    log::warn!("cannot fetch instance `{id}` details: {}", chain(&err));
                    tokio::time::sleep(backoff.delay(round, err.retry_after())).await;
                }
            }
        }
        return;
    }
    let Some(name) = name else {
        // `check()` refuses a config with neither; nothing to resolve.
        log::error!("no instance id or name is configured; termination cannot be called");
        return;
    };
    let mut round = 0;
    loop {
        round += 1;
        let wait = match client.list_instances().await {
            Ok(instances) => match pick(&instances, &name) {
                Ok(instance) => {
                    let (identity, tagged) = describe(instance);
                    log::info!("resolved instance `{name}` to id `{}`", identity.id);
                    adopt(&shared, &publish, identity, tagged);
                    return;
                }
                Err(problem) => {
                    log::warn!("cannot resolve instance `{name}` yet: {problem}; retrying");
                    backoff.delay(round, None)
                }
            },
            Err(err) => {
                log::warn!(
                    "cannot list instances to resolve `{name}`: {}; retrying",
                    chain(&err)
                );
                backoff.delay(round, err.retry_after())
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The one live instance named `name`, or why there is none.
fn pick<'a>(instances: &'a [Instance], name: &str) -> Result<&'a Instance, String> {
    let named: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.name.as_deref() == Some(name))
        .collect();
    let live: Vec<&Instance> = named
        .iter()
        .copied()
        .filter(|i| !i.status.is_ending())
        .collect();
    match (live.as_slice(), named.as_slice()) {
        ([one], _) | ([], [one]) => Ok(one),
        ([], []) => Err("no instance has that name".to_owned()),
        ([], _) => Err(format!(
            "{} ended instances have that name, none live",
            named.len()
        )),
        (many, _) => Err(format!(
            "{} live instances have that name; refusing to guess which one this is",
            many.len()
        )),
    }
}

fn describe(instance: &Instance) -> (Identity, Option<OffsetDateTime>) {
    let pairs = instance
        .tags
        .iter()
        .map(|tag| (tag.key.as_str(), tag.value.as_str()));
    let tagged = match LaunchTags::from_pairs(pairs) {
        Ok(tags) => tags.map(|t| t.launched_at),
        Err(err) => {
            log::warn!(
                "instance `{}` has unreadable soong tags: {err}",
                instance.id
            );
            None
        }
    };
    let identity = Identity {
        id: instance.id.clone(),
        name: instance.name.clone(),
        price_cents_per_hour: u64::try_from(instance.instance_type.price_cents_per_hour).ok(),
    };
    (identity, tagged)
}

fn adopt(
    shared: &Shared,
    publish: &watch::Sender<Option<Identity>>,
    identity: Identity,
    tagged_launch: Option<OffsetDateTime>,
) {
    shared.lock().set_identity(&identity, tagged_launch);
    publish.send_replace(Some(identity));
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, name: &str, status: &str) -> Instance {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "status": status,
            "ssh_key_names": [], "file_system_names": [],
            "region": {"name": "us-west-1", "description": "California"},
            "instance_type": {"name": "gpu_1x_a10", "description": "", "gpu_description": "",
                "price_cents_per_hour": 75, "specs": {"vcpus": 1, "memory_gib": 1, "storage_gib": 1, "gpus": 1}},
        }))
        .unwrap()
    }

    #[test]
    fn the_one_live_instance_with_the_name_is_picked() {
        let list = [
            instance("a", "soong-x", "terminated"),
            instance("b", "soong-x", "active"),
            instance("c", "other", "active"),
        ];
        assert_eq!(pick(&list, "soong-x").unwrap().id, "b");
    }

    #[test]
    fn two_live_instances_with_one_name_are_never_guessed_between() {
        let list = [
            instance("a", "soong-x", "active"),
            instance("b", "soong-x", "booting"),
        ];
        assert!(
            pick(&list, "soong-x")
                .unwrap_err()
                .contains("refusing to guess")
        );
        assert!(pick(&list, "soong-y").is_err());
    }
}
