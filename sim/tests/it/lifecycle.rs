//! Lifecycle, capacity, billing, rate limits and faults, seen through the API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_sim::{Faults, Scenario, Sim, SimConfig, SimEvent};
use serde_json::json;

use crate::support::Raw;

fn launch_body(name: &str) -> serde_json::Value {
    json!({"region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
           "ssh_key_names": ["default"], "name": name, "user_data": "#cloud-config\nhello: 1\n"})
}

#[tokio::test]
async fn an_instance_boots_gets_its_own_loopback_ip_and_bills_only_until_terminated() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&events);
    let config = SimConfig::for_tests()
        .with_hook(Arc::new(move |event| recorded.lock().unwrap().push(event)));
    let sim = Sim::start(config).await.unwrap();
    let api = Raw::new(&sim);

    let (_, first) = api
        .post("/instance-operations/launch", launch_body("one"))
        .await;
    let (_, second) = api
        .post("/instance-operations/launch", launch_body("two"))
        .await;
    let first = first["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let second = second["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let (_, booting) = api.get(&format!("/instances/{first}")).await;
    assert_eq!(booting["data"]["status"], "booting");
    assert!(booting["data"].get("ip").is_none(), "no ip before active");
    assert!(
        sim.billing()[0].billed_seconds.abs() < f64::EPSILON,
        "no billing while booting"
    );

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, one) = api.get(&format!("/instances/{first}")).await;
    let (_, two) = api.get(&format!("/instances/{second}")).await;
    assert_eq!(one["data"]["status"], "active");
    let (ip_one, ip_two) = (
        one["data"]["ip"].as_str().unwrap(),
        two["data"]["ip"].as_str().unwrap(),
    );
    assert_ne!(ip_one, ip_two);
    assert!(ip_one.starts_with("127."));
    // The address is usable for binding right away: that is the point.
    let listener = std::net::TcpListener::bind((ip_one, 0)).unwrap();
    drop(listener);

    {
        let events = events.lock().unwrap();
        let booted: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                SimEvent::Booted(instance) => Some(instance),
                SimEvent::Terminated { .. } => None,
            })
            .collect();
        assert_eq!(booted.len(), 2);
        assert_eq!(
            booted[0].user_data.as_deref(),
            Some("#cloud-config\nhello: 1\n")
        );
    }

    api.post(
        "/instance-operations/terminate",
        json!({"instance_ids": [first]}),
    )
    .await;
    let billed_at_terminate = sim
        .billing()
        .iter()
        .find(|b| b.instance_id == first)
        .unwrap()
        .billed_seconds;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let billing = sim.billing();
    let one = billing.iter().find(|b| b.instance_id == first).unwrap();
    let two = billing.iter().find(|b| b.instance_id == second).unwrap();
    assert!(!one.running);
    assert!(
        (one.billed_seconds - billed_at_terminate).abs() < 1e-9,
        "billing stopped at terminate"
    );
    assert!(two.running && two.billed_seconds > one.billed_seconds);
    assert!(
        events
            .lock()
            .unwrap()
            .contains(&SimEvent::Terminated { id: first.clone() })
    );
    let (_, terminated) = api.get(&format!("/instances/{first}")).await;
    assert_eq!(terminated["data"]["status"], "terminated");
}

#[tokio::test]
async fn capacity_is_consumed_by_launches_and_drives_the_type_listing() {
    let mut config = SimConfig::for_tests();
    config.scenario.capacity = [(
        "gpu_1x_a10".to_owned(),
        [("us-west-1".to_owned(), 1)].into(),
    )]
    .into();
    let sim = Sim::start(config).await.unwrap();
    let api = Raw::new(&sim);
    let (_, types) = api.get("/instance-types").await;
    assert_eq!(
        types["data"]["gpu_1x_a10"]["regions_with_capacity_available"][0]["name"],
        "us-west-1"
    );
    assert_eq!(
        api.post("/instance-operations/launch", launch_body("a"))
            .await
            .0,
        200
    );
    let (status, error) = api
        .post("/instance-operations/launch", launch_body("b"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        error["error"]["code"],
        "instance-operations/launch/insufficient-capacity"
    );
    let (_, types) = api.get("/instance-types").await;
    assert_eq!(
        types["data"]["gpu_1x_a10"]["regions_with_capacity_available"],
        json!([])
    );
}

#[tokio::test]
async fn listed_but_refused_capacity_fails_the_launch() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    sim.set_faults(Faults {
        refuse_launch: true,
        ..Faults::default()
    });
    let api = Raw::new(&sim);
    let (_, types) = api.get("/instance-types").await;
    assert!(
        !types["data"]["gpu_1x_a10"]["regions_with_capacity_available"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (status, error) = api
        .post("/instance-operations/launch", launch_body("a"))
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (
            400,
            Some("instance-operations/launch/insufficient-capacity")
        )
    );
}

#[tokio::test]
async fn instances_can_end_unhealthy_and_be_missing_for_a_while_after_launch() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    sim.set_faults(Faults {
        unhealthy_rate: 1.0,
        not_found_after_launch: Duration::from_millis(300),
        ..Faults::default()
    });
    let api = Raw::new(&sim);
    let (_, launched) = api
        .post("/instance-operations/launch", launch_body("sick"))
        .await;
    let id = launched["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(api.get(&format!("/instances/{id}")).await.0, 404);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, instance) = api.get(&format!("/instances/{id}")).await;
    assert_eq!(instance["data"]["status"], "unhealthy");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_like_the_real_api() {
    // A slow refill (a token every 2 s) and a long launch interval keep the
    // test's outcome independent of how loaded the machine is.
    let mut scenario = Scenario::default();
    scenario.rate_limit.requests_per_second = 0.5;
    scenario.rate_limit.launch_interval = Duration::from_secs(60);
    let sim = Sim::start(SimConfig::new(scenario)).await.unwrap();
    let api = Raw::new(&sim);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = api
            .http
            .get(format!("{}/regions", sim.api_url()))
            .bearer_auth(sim.api_key())
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 429, 429],
        "a burst of two, then the sustained rate"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        api.post("/instance-operations/launch", launch_body("a"))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = api
        .post("/instance-operations/launch", launch_body("b"))
        .await;
    assert_eq!(status, 429, "one launch per interval: {body}");
    assert_eq!(body["error"]["code"], "global/too-many-requests");
}

#[tokio::test]
async fn latency_is_injected_into_every_response() {
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    let api = Raw::new(&sim);
    let started = std::time::Instant::now();
    api.get("/regions").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}
