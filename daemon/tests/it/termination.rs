//! Termination under a misbehaving API: injected 5xx, 429 and latency are
//! retried until Lambda confirms, without duplicate effective calls; a
//! termination in progress survives a restart; an instance that is already
//! gone counts as terminated.

use std::time::Duration;

use lambda_sim::{Faults, ScriptedFault};
use soong_protocol::ShutdownReason;
use soong_protocol::api::DaemonState;

use crate::support::{InProcess, Policy, TERMINATE_PATH, TestContext, wait_for};

fn scripted(status: u16, count: u32, retry_after: Option<u64>) -> ScriptedFault {
    ScriptedFault {
        method: Some("POST".into()),
        path: "/instance-operations/terminate".into(),
        status,
        count,
        retry_after,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_through_5xx_429_and_latency_eventually_succeeds_exactly_once() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    ctx.sim.set_faults(Faults {
        latency: Duration::from_millis(150),
        scripted: vec![
            scripted(503, 4, None),
            scripted(429, 2, Some(1)),
            scripted(500, 3, None),
        ],
        ..Faults::default()
    });
    let daemon = InProcess::start(&config).await;
    let response = ctx
        .http
        .post(daemon.url("/shutdown"))
        .bearer_auth(crate::support::TOKEN)
        .body(r#"{"reason": "fault test"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    ctx.wait_terminated(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = ctx.terminate_calls();
    assert_eq!(
        ctx.effective_terminates().len(),
        1,
        "exactly one effective terminate"
    );
    assert_eq!(
        calls.len(),
        10,
        "9 injected failures, then one success: {calls:#?}"
    );
    assert!(calls.iter().all(|c| c.path == TERMINATE_PATH));

    // 429 answers were waited out for at least their Retry-After.
    let first_429 = calls.iter().position(|c| c.status == 429).unwrap();
    let gap = calls[first_429 + 1].elapsed_ms - calls[first_429].elapsed_ms;
    assert!(gap >= 1000, "Retry-After: 1 honoured, waited {gap} ms");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_faults_do_not_cause_a_storm_of_duplicate_calls() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    ctx.sim.set_faults(Faults {
        error_rate: 0.4,
        rate_limit_rate: 0.2,
        latency: Duration::from_millis(50),
        ..Faults::default()
    });
    let daemon = InProcess::start(&config).await;
    ctx.http
        .post(daemon.url("/shutdown"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    ctx.wait_terminated(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctx.effective_terminates().len(), 1);
    assert!(
        ctx.terminate_calls().len() < 30,
        "bounded retries, not a storm"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_terminate_is_loud_and_terminating_survives_a_restart() {
    let ctx = TestContext::new().await;
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    ctx.sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let daemon = ctx.spawn(&config).await;
    assert_eq!(ctx.post("/shutdown", "").await.status(), 202);

    // The failure shows in /status and in the log at error level.
    let mut status = ctx.status().await;
    for _ in 0..200 {
        if status.terminate_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = ctx.status().await;
    }
    assert_eq!(status.state, DaemonState::Terminating);
    assert!(status.terminate_error.is_some(), "{status:?}");
    assert!(status.terminate_attempts >= 1);
    assert!(ctx.log().contains("ERROR"), "{}", ctx.log());
    assert!(ctx.effective_terminates().is_empty());

    daemon.kill9();
    ctx.sim.set_faults(Faults::default());
    let _daemon = ctx.spawn(&config).await;
    let status = ctx.status().await;
    assert_eq!(
        status.state,
        DaemonState::Terminating,
        "a restart keeps terminating"
    );
    assert_eq!(
        status.terminate_reason,
        Some(ShutdownReason::ShutdownRequested)
    );
    ctx.wait_terminated(Duration::from_secs(15)).await;
    let status = wait_for_confirmed(&ctx).await;
    assert!(status);
    assert_eq!(ctx.effective_terminates().len(), 1);
}

async fn wait_for_confirmed(ctx: &TestContext) -> bool {
    for _ in 0..100 {
        if ctx.status().await.terminate_confirmed {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_is_already_gone_counts_as_terminated() {
    let mut ctx = TestContext::new().await;
    ctx.instance_id = "0123456789abcdef0123456789abcdef".into();
    let config = ctx.write_config(&ctx.config_text(Policy::default(), ""));
    let daemon = InProcess::start(&config).await;
    ctx.http
        .post(daemon.url("/shutdown"))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    let call = wait_for("a terminate call", Duration::from_secs(10), || {
        ctx.terminate_calls().into_iter().next()
    })
    .await;
    assert_eq!(call.status, 404);
    let confirmed = async {
        for _ in 0..100 {
            let status: soong_protocol::api::StatusResponse = ctx
                .http
                .get(daemon.url("/status"))
                .bearer_auth(crate::support::TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status.terminate_confirmed {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
    .await;
    assert!(confirmed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.terminate_calls().len(), 1, "404 ends the retries");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_404_that_is_not_object_does_not_exist_is_not_taken_for_gone() {
    // A wrong `api_url` answers every call with a 404 that is not Lambda's
    // `global/object-does-not-exist`: the daemon must keep the instance in
    // `terminating` and say the terminate failed, not believe it is gone.
    let ctx = TestContext::new().await;
    let right = ctx.sim.api_url();
    let wrong = format!("{}/v1", ctx.sim.url());
    let text = ctx
        .config_text(Policy::default(), "")
        .replace(&right, &wrong);
    let _daemon = ctx.spawn(&ctx.write_config(&text)).await;
    assert_eq!(ctx.post("/shutdown", "").await.status(), 202);
    let mut status = ctx.status().await;
    for _ in 0..100 {
        if status.terminate_attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = ctx.status().await;
    }
    assert_eq!(status.state, DaemonState::Terminating);
    assert!(!status.terminate_confirmed, "{status:?}");
    assert!(status.terminate_error.is_some(), "{status:?}");
    assert!(
        status.terminate_attempts >= 2,
        "it keeps trying: {status:?}"
    );
}
