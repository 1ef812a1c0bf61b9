//! Each kind of failure is told apart, with Lambda's code and message kept.

use std::time::Duration;

use lambda_cloud::{ApiKey, Client, ErrorKind, LaunchRequest, Pacing, RetryPolicy, Tag};
use lambda_sim::Faults;

use crate::setup;

fn a10(key: &str) -> LaunchRequest {
    LaunchRequest {
        region_name: "us-west-1".into(),
        instance_type_name: "gpu_1x_a10".into(),
        ssh_key_names: vec![key.into()],
        ..LaunchRequest::default()
    }
}

#[tokio::test]
async fn a_bad_key_is_unauthorized_with_lambdas_message_and_suggestion() {
    let (sim, _) = setup().await;
    let client = Client::builder(sim.api_url(), ApiKey::new("wrong"))
        .pacing(Pacing::none())
        .build()
        .unwrap();
    let error = client.list_instances().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert_eq!(error.status(), Some(401));
    assert_eq!(error.code(), Some("global/invalid-api-key"));
    assert!(error.to_string().contains("API key was invalid"));
    assert!(error.hint().unwrap().contains("API key"));
    assert_eq!(
        crate::count(&sim, "GET", "/instances"),
        1,
        "a 401 is not retried"
    );
}

#[tokio::test]
async fn no_capacity_not_found_and_invalid_requests_are_distinct() {
    let (_sim, client) = setup().await;
    let error = client
        .launch_instance(&LaunchRequest {
            instance_type_name: "gpu_8x_a100".into(),
            ..a10("default")
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoCapacity);
    assert!(error.hint().unwrap().contains("soong available"));

    let error = client.get_instance("0123456789abcdef").await.unwrap_err();
    assert_eq!(
        (error.kind(), error.code()),
        (ErrorKind::NotFound, Some("global/object-does-not-exist"))
    );

    let error = client
        .launch_instance(&LaunchRequest {
            tags: vec![Tag::new("Not Valid", "x")],
            ..a10("default")
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidRequest);

    let error = client.launch_instance(&a10("nobody")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(
        error.hint().is_some(),
        "Lambda's suggestion is carried: {error:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_launch_is_reported_as_such_and_not_resent() {
    let (sim, client) = setup().await;
    sim.set_faults(Faults {
        scripted: vec![lambda_sim::ScriptedFault {
            method: Some("POST".into()),
            path: "/launch".into(),
            status: 429,
            count: 1,
            retry_after: Some(3),
        }],
        ..Faults::default()
    });
    let error = client.launch_instance(&a10("default")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RateLimited);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(crate::count(&sim, "POST", "/launch"), 1);
}

#[tokio::test]
async fn an_unreachable_api_is_a_network_error_and_a_slow_one_a_timeout() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1", closed.local_addr().unwrap());
    drop(closed);
    let client = Client::builder(url, ApiKey::new("k"))
        .pacing(Pacing::none())
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    assert_eq!(
        client.list_instances().await.unwrap_err().kind(),
        ErrorKind::Network
    );

    let (sim, _) = setup().await;
    sim.set_faults(Faults {
        latency: Duration::from_millis(800),
        ..Faults::default()
    });
    let client = Client::builder(sim.api_url(), ApiKey::new(sim.api_key()))
        .pacing(Pacing::none())
        .retry(RetryPolicy::never())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.list_regions().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(error.is_transient());
}

#[test]
fn a_base_url_that_is_not_http_is_rejected() {
    let error = Client::builder("ftp://example.com", ApiKey::new("k"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Other);
    assert!(error.to_string().contains("ftp://example.com"));
    assert!(
        format!("{:?}", ApiKey::new("hunter2"))
            .find("hunter2")
            .is_none()
    );
}
