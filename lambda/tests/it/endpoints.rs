//! Every endpoint of the client, end to end.

use std::time::Duration;

use lambda_cloud::types::{
    CreateFirewallRulesetRequest, FirewallRule, NetworkProtocol, UpdateFirewallRulesetRequest,
};
use lambda_cloud::{InstanceStatus, LaunchRequest, Tag, UserData};

use crate::setup;

fn ssh_rule() -> FirewallRule {
    FirewallRule {
        protocol: NetworkProtocol::Tcp,
        port_range: Some([22, 22]),
        source_network: "0.0.0.0/0".into(),
        description: "ssh".into(),
    }
}

#[tokio::test]
async fn instances_launch_list_get_rename_restart_and_terminate() {
    let (_sim, client) = setup().await;
    let key = client.list_ssh_keys().await.unwrap().remove(0);
    let request = LaunchRequest {
        region_name: "us-west-1".into(),
        instance_type_name: "gpu_1x_a10".into(),
        ssh_key_names: vec![key.name],
        file_system_names: vec!["coding-stack".into()],
        name: Some("soong-test".into()),
        hostname: Some("soong-test".into()),
        user_data: Some(UserData("#cloud-config\n".into())),
        tags: vec![Tag::new("soong:managed", "true")],
        ..LaunchRequest::default()
    };
    let ids = client.launch_instance(&request).await.unwrap();
    assert_eq!(ids.len(), 1);
    let id = &ids[0];

    let listed = client.list_instances().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tag("soong:managed"), Some("true"));
    assert_eq!(listed[0].status, InstanceStatus::Booting);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let instance = client.get_instance(id).await.unwrap();
    assert_eq!(instance.status, InstanceStatus::Active);
    assert!(instance.ip.is_some());
    assert_eq!(instance.hostname.as_deref(), Some("soong-test"));
    assert_eq!(instance.file_system_names, ["coding-stack"]);

    let renamed = client.rename_instance(id, "soong-renamed").await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("soong-renamed"));
    let restarted = client
        .restart_instances(std::slice::from_ref(id))
        .await
        .unwrap();
    assert_eq!(restarted[0].id, *id);
    let terminated = client
        .terminate_instances(std::slice::from_ref(id))
        .await
        .unwrap();
    assert_eq!(terminated[0].status, InstanceStatus::Terminating);
}

#[tokio::test]
async fn the_catalogue_lists_types_with_capacity_regions_and_images() {
    let (_sim, client) = setup().await;
    let types = client.list_instance_types().await.unwrap();
    let a10 = &types["gpu_1x_a10"];
    assert_eq!(a10.instance_type.specs.gpus, 1);
    assert!(a10.instance_type.price_cents_per_hour > 0);
    assert!(!a10.regions_with_capacity_available.is_empty());
    assert!(types.contains_key("gpu_8x_h100_sxm5"));
    let regions = client.list_regions().await.unwrap();
    assert!(
        regions
            .iter()
            .any(|r| r.name == "us-west-1" && !r.description.is_empty())
    );
    let images = client.list_images().await.unwrap();
    assert!(images.iter().any(|i| i.family == "lambda-stack-24-04"));
}

#[tokio::test]
async fn ssh_keys_are_added_generated_and_deleted() {
    let (_sim, client) = setup().await;
    let added = client
        .add_ssh_key("laptop", "ssh-ed25519 AAAAC3Nza laptop")
        .await
        .unwrap();
    let generated = client.generate_ssh_key("fresh").await.unwrap();
    assert!(generated.private_key.contains("PRIVATE KEY"));
    let names: Vec<String> = client
        .list_ssh_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert!(names.contains(&"laptop".to_owned()) && names.contains(&"fresh".to_owned()));
    client.delete_ssh_key(&added.id).await.unwrap();
    client.delete_ssh_key(&generated.id).await.unwrap();
    assert_eq!(client.list_ssh_keys().await.unwrap().len(), 1);
}

#[tokio::test]
async fn filesystems_are_listed_created_and_deleted_across_the_path_quirk() {
    let (_sim, client) = setup().await;
    let created = client
        .create_filesystem("models", "us-east-1")
        .await
        .unwrap();
    assert_eq!(created.mount_point, "/lambda/nfs/models");
    let listed = client.list_filesystems().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|f| f.name == "models" && f.region.name == "us-east-1")
    );
    assert_eq!(
        client.delete_filesystem(&created.id).await.unwrap(),
        [created.id]
    );
}

#[tokio::test]
async fn firewall_rulesets_and_rules_round_trip() {
    let (_sim, client) = setup().await;
    let ruleset = client
        .create_firewall_ruleset(&CreateFirewallRulesetRequest {
            name: "ssh-only".into(),
            region: "us-west-1".into(),
            rules: vec![ssh_rule()],
        })
        .await
        .unwrap();
    assert_eq!(client.list_firewall_rulesets().await.unwrap().len(), 1);
    let updated = client
        .update_firewall_ruleset(
            &ruleset.id,
            &UpdateFirewallRulesetRequest {
                name: Some("renamed".into()),
                rules: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(
        client
            .get_firewall_ruleset(&ruleset.id)
            .await
            .unwrap()
            .rules,
        [ssh_rule()]
    );
    client.delete_firewall_ruleset(&ruleset.id).await.unwrap();
    let global = client
        .update_global_firewall_ruleset(vec![ssh_rule()])
        .await
        .unwrap();
    assert_eq!(global.id, "global");
    assert_eq!(
        client.get_global_firewall_ruleset().await.unwrap().rules,
        [ssh_rule()]
    );
    assert_eq!(
        client.set_firewall_rules(vec![ssh_rule()]).await.unwrap(),
        [ssh_rule()]
    );
    assert_eq!(client.list_firewall_rules().await.unwrap(), [ssh_rule()]);
}
