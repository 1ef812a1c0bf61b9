//! The `lambda-sim` binary: serves a scenario from its file and runs the
//! launch hook command per instance.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// Kills the simulator when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lambda-sim"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();
    (Guard(child), url)
}

#[tokio::test]
async fn the_binary_serves_the_scenario_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.yaml");
    std::fs::write(
        &scenario,
        "api_keys: [file-key]\nrate_limit: {enabled: false}\nboot_delay: 100ms\n\
         capacity: {gpu_1x_h100_sxm5: {us-south-1: 3}}\n\
         ssh_keys: [{name: laptop, public_key: 'ssh-ed25519 AAAA laptop'}]\n",
    )
    .unwrap();
    let marker = dir.path().join("booted");
    let hook = format!(
        "echo \"$SIM_INSTANCE_ID $SIM_INSTANCE_IP\" > {} && cat \"$SIM_USER_DATA_FILE\" >> {} && sleep 30",
        marker.display(),
        marker.display()
    );
    let (_guard, url) = start(&["--scenario", scenario.to_str().unwrap(), "--on-boot", &hook]);
    let http = reqwest::Client::new();
    let types: serde_json::Value = http
        .get(format!("{url}/api/v1/instance-types"))
        .bearer_auth("file-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        types["data"]["gpu_1x_h100_sxm5"]["regions_with_capacity_available"][0]["name"],
        "us-south-1"
    );
    assert_eq!(
        types["data"]["gpu_1x_a10"]["regions_with_capacity_available"],
        json!([])
    );
    let unauthorized = http
        .get(format!("{url}/api/v1/instances"))
        .bearer_auth("sim-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauthorized.status(),
        401,
        "only the scenario's keys are accepted"
    );

    let launched: serde_json::Value = http
        .post(format!("{url}/api/v1/instance-operations/launch"))
        .bearer_auth("file-key")
        .json(
            &json!({"region_name": "us-south-1", "instance_type_name": "gpu_1x_h100_sxm5",
                      "ssh_key_names": ["laptop"], "user_data": "#cloud-config\n"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = launched["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let mut contents = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        contents = std::fs::read_to_string(&marker).unwrap_or_default();
        if contents.contains("#cloud-config") {
            break;
        }
    }
    assert!(
        contents.starts_with(&format!("{id} 127.")),
        "hook ran with the instance's identity: {contents:?}"
    );
    assert!(contents.contains("#cloud-config"), "hook saw the user-data");
}

#[test]
fn a_scenario_with_an_unknown_key_is_refused_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("typo.yaml");
    std::fs::write(&scenario, "boot_dely: 1s\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lambda-sim"))
        .args(["--scenario", scenario.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("boot_dely") && stderr.contains("typo.yaml"),
        "{stderr}"
    );
}
