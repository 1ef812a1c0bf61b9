//! The registry and the catalogue, against the simulator.

use lambda_sim::SimConfig;

use crate::common::TestContext;
use crate::soong_snapshot;

#[test]
fn models_list_shows_builtins_and_custom_models() {
    let context = TestContext::new(Some("valid.yaml"));
    soong_snapshot!(context, ["models", "list"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
         MODEL                   PARAMS  WEIGHTS  CONTEXT  VRAM       HUGGING FACE
         deepseek-r1-70b         70.6B   bf16     16384    138.0 GiB  deepseek-ai/DeepSeek-R1-Distill-Llama-70B
         qwen2.5-coder-32b       32.8B   bf16     32768    70.6 GiB   Qwen/Qwen2.5-Coder-32B-Instruct
         qwen2.5-coder-32b-int4  32.8B   awq      32768    26.7 GiB   Qwen/Qwen2.5-Coder-32B-Instruct-AWQ
         llama-3.1-70b           70.6B   bf16     16384    138.0 GiB  meta-llama/Llama-3.1-70B-Instruct
         llama-3.1-8b            8.0B    bf16     32768    20.5 GiB   meta-llama/Llama-3.1-8B-Instruct
         codellama-34b           33.7B   fp16     16384    67.3 GiB   codellama/CodeLlama-34b-Instruct-hf
         mistral-7b              7.2B    bf16     32768    19.0 GiB   mistralai/Mistral-7B-Instruct-v0.3
         tiny-test               0.5B    bf16     8192     2.5 GiB    Qwen/Qwen2.5-0.5B-Instruct (custom)

        ----- stderr -----
    "#);
}

#[test]
fn models_recommend_picks_the_cheapest_type_with_capacity() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    soong_snapshot!(context, ["models", "recommend"], @r#"
        success: true
        exit_code: 0
        ----- stdout -----
         MODEL                   NEEDS      CHEAPEST FIT      PRICE    TP  REGIONS
         deepseek-r1-70b         138.0 GiB  gpu_1x_b200_sxm6  $4.99/h  1   us-south-3
         qwen2.5-coder-32b       70.6 GiB   gpu_1x_gh200      $1.49/h  1   us-east-3
         qwen2.5-coder-32b-int4  26.7 GiB   gpu_1x_a6000      $0.80/h  1   us-west-1, us-south-1
         llama-3.1-70b           138.0 GiB  gpu_1x_b200_sxm6  $4.99/h  1   us-south-3
         llama-3.1-8b            20.5 GiB   gpu_1x_a10        $0.75/h  1   us-west-1, us-east-1, europe-central-1
         codellama-34b           67.3 GiB   gpu_1x_gh200      $1.49/h  1   us-east-3
         mistral-7b              19.0 GiB   gpu_1x_a10        $0.75/h  1   us-west-1, us-east-1, europe-central-1
         tiny-test               2.5 GiB    gpu_1x_a10        $0.75/h  1   us-west-1, us-east-1, europe-central-1

        ----- stderr -----
    "#);
}

#[test]
fn available_lists_types_prices_and_fitting_models_as_json() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context.run(&["available", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        crate::common::render(&output)
    );
    let types: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let a10 = types
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gpu_1x_a10")
        .unwrap();
    assert_eq!(a10["gpu_vram_gib"], 24.0);
    assert!(
        a10["models_that_fit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "llama-3.1-8b")
    );
}

#[test]
fn a_bad_api_key_exits_with_4() {
    let context = TestContext::with_sim("valid.yaml", SimConfig::for_tests());
    let output = context
        .command(&["available"])
        .env("LAMBDA_API_KEY", "wrong")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        crate::common::render(&output)
    );
}
