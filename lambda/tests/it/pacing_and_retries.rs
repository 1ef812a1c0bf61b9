//! Pacing shared by clones, retries of what is safe, and nothing else.

use std::time::Duration;

use lambda_cloud::{ErrorKind, InstanceStatus, LaunchRequest, Pacing};
use lambda_sim::{Faults, NewInstance, ScriptedFault, Sim, SimConfig};

use crate::{client_for, count, setup};

fn fail(path: &str, status: u16, count: u32) -> ScriptedFault {
    ScriptedFault {
        method: None,
        path: path.into(),
        status,
        count,
        retry_after: None,
    }
}

#[tokio::test]
async fn clones_share_one_pacing_budget() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    let pacing = Pacing {
        request_interval: Duration::from_millis(150),
        launch_interval: Duration::from_secs(1),
    };
    let client = client_for(&sim, pacing);
    // Only lower bounds on elapsed time: load can delay requests, never
    // hurry them, so these cannot flake. Unshared budgets would let all four
    // go at once.
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let clone = client.clone();
        tasks.spawn(async move { clone.list_regions().await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(3 * 150));
    assert_eq!(sim.request_log().len(), 4);
}

#[tokio::test]
async fn launches_are_spaced_by_the_launch_interval() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    let pacing = Pacing {
        request_interval: Duration::ZERO,
        launch_interval: Duration::from_millis(600),
    };
    let client = client_for(&sim, pacing);
    let request = LaunchRequest {
        region_name: "us-west-1".into(),
        instance_type_name: "gpu_1x_a10".into(),
        ssh_key_names: vec!["default".into()],
        ..LaunchRequest::default()
    };
    let started = std::time::Instant::now();
    client.launch_instance(&request).await.unwrap();
    client.list_regions().await.unwrap();
    client.launch_instance(&request).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(crate::count(&sim, "POST", "/launch"), 2);
}

#[tokio::test]
async fn terminate_is_retried_through_5xx_and_429_until_it_succeeds() {
    let (sim, client) = setup().await;
    let id = sim.insert_instance(NewInstance::default()).unwrap();
    sim.set_faults(Faults {
        scripted: vec![
            fail("/terminate", 503, 2),
            ScriptedFault {
                retry_after: Some(1),
                ..fail("/terminate", 429, 1)
            },
        ],
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let terminated = client
        .terminate_instances(std::slice::from_ref(&id))
        .await
        .unwrap();
    assert_eq!(terminated[0].status, InstanceStatus::Terminating);
    assert_eq!(
        count(&sim, "POST", "/terminate"),
        4,
        "three failures, one success, nothing more"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn reads_are_retried_but_give_up_after_the_policy_allows() {
    let (sim, client) = setup().await;
    sim.set_faults(Faults {
        scripted: vec![fail("/instances", 502, 2)],
        ..Faults::default()
    });
    client.list_instances().await.unwrap();
    assert_eq!(count(&sim, "GET", "/instances"), 3);

    sim.set_faults(Faults {
        scripted: vec![fail("/regions", 500, 100)],
        ..Faults::default()
    });
    let limited = client_for(&sim, Pacing::none());
    let error = limited.list_regions().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(
        count(&sim, "GET", "/regions"),
        crate::quick_retries().max_attempts as usize
    );
}

#[tokio::test]
async fn a_launch_is_never_resent_after_a_server_error() {
    let (sim, client) = setup().await;
    sim.set_faults(Faults {
        scripted: vec![fail("/launch", 503, 1)],
        ..Faults::default()
    });
    let request = LaunchRequest {
        region_name: "us-west-1".into(),
        instance_type_name: "gpu_1x_a10".into(),
        ssh_key_names: vec!["default".into()],
        ..LaunchRequest::default()
    };
    let error = client.launch_instance(&request).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(count(&sim, "POST", "/launch"), 1);
    let restart = client.restart_instances(&["x".into()]).await.unwrap_err();
    assert_eq!(restart.kind(), ErrorKind::NotFound);
}
