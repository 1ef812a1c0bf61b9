//! Instance identity: without `instance.id`, the daemon finds its instance
//! by name through the API, and never guesses between two live ones.

use std::time::Duration;

use lambda_cloud::InstanceStatus;
use lambda_sim::NewInstance;
use soong_protocol::api::StatusResponse;

use crate::support::{InProcess, Policy, TOKEN, TestContext};

fn without_id(ctx: &TestContext) -> String {
    ctx.config_text(Policy::default(), "")
        .replace(&format!("  id: {}\n", ctx.instance_id), "")
}

async fn status(ctx: &TestContext, daemon: &InProcess) -> StatusResponse {
    ctx.http
        .get(daemon.url("/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_instance_is_resolved_by_name_when_no_id_is_configured() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&without_id(&ctx));
    let daemon = InProcess::start(&config).await;
    let mut resolved = None;
    for _ in 0..100 {
        let status = status(&ctx, &daemon).await;
        if status.instance_id.is_some() {
            resolved = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = resolved.expect("resolved");
    assert_eq!(
        status.instance_id.as_deref(),
        Some(ctx.instance_id.as_str())
    );
    assert_eq!(
        status.price_cents_per_hour,
        Some(75),
        "the price comes from the API"
    );

    ctx.http
        .post(daemon.url("/shutdown"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    ctx.wait_terminated(Duration::from_secs(10)).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_live_instances_with_one_name_are_never_guessed_between() {
    let ctx = TestContext::new().await;
    let twin = ctx
        .sim
        .insert_instance(NewInstance {
            name: Some(ctx.instance_name.clone()),
            ..NewInstance::default()
        })
        .unwrap();
    let config = ctx.write_config(&without_id(&ctx));
    let daemon = InProcess::start(&config).await;
    ctx.http
        .post(daemon.url("/shutdown"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = status(&ctx, &daemon).await;
    assert_eq!(waiting.instance_id, None);
    assert!(
        waiting.terminate_error.is_some(),
        "the wait is visible: {waiting:?}"
    );
    assert!(
        ctx.terminate_calls().is_empty(),
        "nothing is terminated on a guess"
    );

    // Once the twin is gone, the name is unambiguous.
    assert!(ctx.sim.force_status(&twin, InstanceStatus::Terminated));
    ctx.wait_terminated(Duration::from_secs(15)).await;
    daemon.stop().await;
}
