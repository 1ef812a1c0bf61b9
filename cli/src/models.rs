//! The model registry and the GPU arithmetic: how much VRAM a model needs,
//! how much an instance type has, and which type to rent.
//!
//! Everything here is a pure function of its inputs (the catalogue comes in
//! as an argument), so the recommendation table is unit-tested without an
//! API. VRAM is counted in GiB throughout; Lambda's "24 GB" GPUs are read as
//! 24 GiB, which matches how the cards are sold (24 GiB of GDDR/HBM).

use std::collections::BTreeMap;

use lambda_cloud::InstanceTypes;
use serde::{Deserialize, Serialize};

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
/// CUDA context, activations and the serving runtime, per GPU, in GiB.
const OVERHEAD_PER_GPU_GIB: f64 = 1.5;
/// Fraction of a type's VRAM a model may plan to use. SGLang reserves the
/// rest for activations and fragmentation (`--mem-fraction-static` ≈ 0.88).
pub const USABLE_FRACTION: f64 = 0.9;
/// KV-cache bytes per token per billion parameters, when the model's shape
/// is unknown: Llama-3.1-8B (32 layers, 8 KV heads of 128, fp16) has 128 KiB
/// per token over 8 B parameters.
const FALLBACK_KV_BYTES_PER_TOKEN_PER_BILLION: f64 = 16.0 * 1024.0;

/// How a model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantization {
    /// bfloat16, 2 bytes a parameter.
    Bf16,
    /// float16, 2 bytes a parameter.
    Fp16,
    /// float8, 1 byte a parameter.
    Fp8,
    /// int8, 1 byte a parameter.
    Int8,
    /// AWQ int4: half a byte plus group scales.
    Awq,
    /// GPTQ int4: half a byte plus group scales.
    GptqInt4,
}

impl Quantization {
    /// Bytes per parameter, scales of grouped quantization included.
    pub fn bytes_per_param(self) -> f64 {
        match self {
            Self::Bf16 | Self::Fp16 => 2.0,
            Self::Fp8 | Self::Int8 => 1.0,
            // 4 bits plus a 16-bit scale and zero per group of 128, and the
            // embeddings and head kept in 16 bits: ~0.56 bytes on average.
            Self::Awq | Self::GptqInt4 => 0.5625,
        }
    }

    /// The flag SGLang takes (`--quantization`), if any.
    pub fn sglang_flag(self) -> Option<&'static str> {
        match self {
            Self::Bf16 | Self::Fp16 => None,
            Self::Fp8 => Some("fp8"),
            Self::Int8 => Some("w8a8_int8"),
            Self::Awq => Some("awq"),
            Self::GptqInt4 => Some("gptq"),
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
            Self::Fp8 => "fp8",
            Self::Int8 => "int8",
            Self::Awq => "awq",
            Self::GptqInt4 => "gptq-int4",
        }
    }

    /// Reads the config spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Self::Bf16,
            "fp16" | "float16" => Self::Fp16,
            "fp8" => Self::Fp8,
            "int8" => Self::Int8,
            "awq" | "int4" | "awq-int4" => Self::Awq,
            "gptq-int4" | "gptq" => Self::GptqInt4,
            _ => return None,
        })
    }
}

/// A model the CLI can serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The id used with `--model`.
    pub id: String,
    /// The Hugging Face repository holding the weights in `quantization`.
    pub hf_path: String,
    /// Parameters, in billions.
    pub params_billions: f64,
    /// Weight format.
    pub quantization: Quantization,
    /// Context length served, in tokens.
    pub context_length: u32,
    /// Transformer layers, when known.
    pub layers: Option<u32>,
    /// Key/value heads, when known.
    pub kv_heads: Option<u32>,
    /// Head dimension, when known.
    pub head_dim: Option<u32>,
    /// Whether it comes from the config.
    pub custom: bool,
}

/// A custom model in the config's `custom_models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomModel {
    /// The Hugging Face repository.
    pub hf_path: String,
    /// Parameters, in billions.
    pub params_billions: f64,
    /// Weight format (`bf16`, `fp16`, `fp8`, `int8`, `awq`, `gptq-int4`).
    #[serde(default = "default_quantization")]
    pub quantization: String,
    /// Context length served.
    #[serde(default = "default_context")]
    pub context_length: u32,
    /// Transformer layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    /// Key/value heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<u32>,
    /// Head dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u32>,
}

fn default_quantization() -> String {
    "bf16".to_owned()
}
fn default_context() -> u32 {
    32768
}

impl CustomModel {
    /// Whether the entry can be used; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if !self.hf_path.contains('/') {
            return Err(format!(
                "`hf_path` must be `owner/repository`, not `{}`",
                self.hf_path
            ));
        }
        if !(self.params_billions.is_finite() && self.params_billions > 0.0) {
            return Err("`params_billions` must be a positive number".to_owned());
        }
        if Quantization::parse(&self.quantization).is_none() {
            return Err(format!(
                "`quantization` must be one of bf16, fp16, fp8, int8, awq, gptq-int4, not `{}`",
                self.quantization
            ));
        }
        if self.context_length == 0 {
            return Err("`context_length` must be positive".to_owned());
        }
        Ok(())
    }

    /// As a registry entry.
    pub fn to_model(&self, id: &str) -> Model {
        Model {
            id: id.to_owned(),
            hf_path: self.hf_path.clone(),
            params_billions: self.params_billions,
            quantization: Quantization::parse(&self.quantization).unwrap_or(Quantization::Bf16),
            context_length: self.context_length,
            layers: self.layers,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            custom: true,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    id: &str,
    hf_path: &str,
    params_billions: f64,
    quantization: Quantization,
    context_length: u32,
    layers: u32,
    kv_heads: u32,
    head_dim: u32,
) -> Model {
    Model {
        id: id.to_owned(),
        hf_path: hf_path.to_owned(),
        params_billions,
        quantization,
        context_length,
        layers: Some(layers),
        kv_heads: Some(kv_heads),
        head_dim: Some(head_dim),
        custom: false,
    }
}

/// The built-in models. Paths are the publishers' own repositories, which
/// hold the weights in exactly the format stated (shapes from each
/// repository's `config.json`).
pub fn builtin_models() -> Vec<Model> {
    use Quantization::{Awq, Bf16};
    vec![
        builtin(
            "deepseek-r1-70b",
            "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
            70.6,
            Bf16,
            // 16k tokens of KV cache (5 GiB) is what leaves room on 2x 80 GB.
            16384,
            80,
            8,
            128,
        ),
        builtin(
            "qwen2.5-coder-32b",
            "Qwen/Qwen2.5-Coder-32B-Instruct",
            32.8,
            Bf16,
            32768,
            64,
            8,
            128,
        ),
        builtin(
            "qwen2.5-coder-32b-int4",
            "Qwen/Qwen2.5-Coder-32B-Instruct-AWQ",
            32.8,
            Awq,
            32768,
            64,
            8,
            128,
        ),
        builtin(
            "llama-3.1-70b",
            "meta-llama/Llama-3.1-70B-Instruct",
            70.6,
            Bf16,
            // 16k tokens of KV cache (5 GiB) is what leaves room on 2x 80 GB.
            16384,
            80,
            8,
            128,
        ),
        builtin(
            "llama-3.1-8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            8.03,
            Bf16,
            32768,
            32,
            8,
            128,
        ),
        builtin(
            "codellama-34b",
            "codellama/CodeLlama-34b-Instruct-hf",
            33.7,
            Quantization::Fp16,
            16384,
            48,
            8,
            128,
        ),
        builtin(
            "mistral-7b",
            "mistralai/Mistral-7B-Instruct-v0.3",
            7.25,
            Bf16,
            32768,
            32,
            8,
            128,
        ),
    ]
}

/// Built-in models plus the config's custom ones (a custom id shadows a
/// built-in one, so a user can retune a built-in).
pub fn registry(custom: &BTreeMap<String, CustomModel>) -> Vec<Model> {
    let mut models: Vec<Model> = builtin_models()
        .into_iter()
        .filter(|m| !custom.contains_key(&m.id))
        .collect();
    models.extend(custom.iter().map(|(id, spec)| spec.to_model(id)));
    models
}

/// Finds a model by id.
pub fn find<'a>(models: &'a [Model], id: &str) -> Option<&'a Model> {
    models.iter().find(|m| m.id == id)
}

/// Ids that look like `wanted`, for "did you mean" hints.
pub fn similar<'a>(candidates: impl IntoIterator<Item = &'a str>, wanted: &str) -> Vec<String> {
    let wanted = wanted.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (distance(&c.to_ascii_lowercase(), &wanted), c))
        .filter(|(d, c)| *d <= 3.max(wanted.len() / 3) || c.contains(wanted.as_str()))
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// A model's VRAM need, in GiB, by part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VramEstimate {
    /// The weights.
    pub weights_gib: f64,
    /// The KV cache for one full context.
    pub kv_cache_gib: f64,
    /// Runtime overhead for one GPU (more GPUs add more).
    pub overhead_gib: f64,
}

impl VramEstimate {
    /// The total on `gpus` GPUs (each carries its own runtime overhead).
    pub fn total_gib(&self, gpus: u32) -> f64 {
        self.weights_gib + self.kv_cache_gib + self.overhead_gib * f64::from(gpus.max(1))
    }
}

/// KV-cache bytes per token: `2 (K and V) × layers × kv_heads × head_dim ×
/// 2 bytes` when the shape is known, else scaled from the parameter count.
pub fn kv_bytes_per_token(model: &Model) -> f64 {
    match (model.layers, model.kv_heads, model.head_dim) {
        (Some(layers), Some(heads), Some(dim)) => {
            2.0 * f64::from(layers) * f64::from(heads) * f64::from(dim) * 2.0
        }
        _ => model.params_billions * FALLBACK_KV_BYTES_PER_TOKEN_PER_BILLION,
    }
}

/// Weights + KV cache for the model's context + runtime overhead.
pub fn estimate(model: &Model) -> VramEstimate {
    let weights = model.params_billions * 1e9 * model.quantization.bytes_per_param();
    let kv = kv_bytes_per_token(model) * f64::from(model.context_length);
    VramEstimate {
        weights_gib: weights / GIB,
        kv_cache_gib: kv / GIB,
        overhead_gib: OVERHEAD_PER_GPU_GIB,
    }
}

/// VRAM of one GPU from Lambda's description: `"A10 (24 GB PCIe)"` → 24.
pub fn gpu_vram_gib(gpu_description: &str) -> Option<f64> {
    let words: Vec<&str> = gpu_description
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).find_map(|pair| {
        let unit = pair[1].to_ascii_uppercase();
        if unit == "GB" || unit == "GIB" {
            pair[0].parse::<f64>().ok().filter(|v| *v > 0.0)
        } else {
            None
        }
    })
}

/// One instance type judged for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// The type's name.
    pub instance_type: String,
    /// Its description.
    pub description: String,
    /// Price in cents per hour.
    pub price_cents_per_hour: i64,
    /// GPUs.
    pub gpus: u32,
    /// Total VRAM.
    pub total_vram_gib: f64,
    /// What the model needs on this many GPUs.
    pub needed_gib: f64,
    /// Whether the need fits in the usable share of the VRAM.
    pub fits: bool,
    /// SGLang's `--tp-size`: the GPUs to shard over.
    pub tensor_parallel: u32,
    /// Regions with capacity now.
    pub regions: Vec<String>,
}

/// Every type in the catalogue judged for `model`, cheapest first.
pub fn fits(model: &Model, types: &InstanceTypes) -> Vec<Fit> {
    let need = estimate(model);
    let mut fits: Vec<Fit> = types
        .values()
        .filter_map(|entry| {
            let t = &entry.instance_type;
            let per_gpu =
                gpu_vram_gib(&t.gpu_description).or_else(|| gpu_vram_gib(&t.description))?;
            let gpus = t.specs.gpus.max(1);
            let total = per_gpu * f64::from(gpus);
            let needed = need.total_gib(gpus);
            Some(Fit {
                instance_type: t.name.clone(),
                description: t.description.clone(),
                price_cents_per_hour: t.price_cents_per_hour,
                gpus,
                total_vram_gib: total,
                needed_gib: needed,
                fits: needed <= total * USABLE_FRACTION,
                // Sharding over every GPU of the type: SGLang's tensor
                // parallelism wants the KV heads (8 for every built-in) to
                // divide evenly, which 1, 2, 4 and 8 do.
                tensor_parallel: gpus,
                regions: entry
                    .regions_with_capacity_available
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
            })
        })
        .collect();
    fits.sort_by(|a, b| {
        a.price_cents_per_hour
            .cmp(&b.price_cents_per_hour)
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    fits
}

/// The cheapest type that fits and has capacity (in `region`, when given).
pub fn recommend(model: &Model, types: &InstanceTypes, region: Option<&str>) -> Option<Fit> {
    fits(model, types).into_iter().find(|fit| {
        fit.fits
            && match region {
                Some(region) => fit.regions.iter().any(|r| r == region),
                None => !fit.regions.is_empty(),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_cloud::types::{InstanceTypeAvailability, InstanceTypeSpecs};
    use lambda_cloud::{InstanceType, Region};

    fn catalogue(entries: &[(&str, &str, u32, i64, &[&str])]) -> InstanceTypes {
        entries
            .iter()
            .map(|(name, gpu, gpus, price, regions)| {
                (
                    (*name).to_owned(),
                    InstanceTypeAvailability {
                        instance_type: InstanceType {
                            name: (*name).to_owned(),
                            description: format!("{gpus}x {gpu}"),
                            gpu_description: (*gpu).to_owned(),
                            price_cents_per_hour: *price,
                            specs: InstanceTypeSpecs {
                                vcpus: 8,
                                memory_gib: 64,
                                storage_gib: 512,
                                gpus: *gpus,
                            },
                        },
                        regions_with_capacity_available: regions
                            .iter()
                            .map(|r| Region {
                                name: (*r).to_owned(),
                                description: String::new(),
                            })
                            .collect(),
                    },
                )
            })
            .collect()
    }

    fn lambda_today() -> InstanceTypes {
        catalogue(&[
            (
                "gpu_1x_a10",
                "A10 (24 GB PCIe)",
                1,
                75,
                &["us-west-1", "us-east-1"],
            ),
            ("gpu_1x_a6000", "RTX A6000 (48 GB)", 1, 80, &["us-west-1"]),
            ("gpu_1x_a100", "A100 (40 GB PCIe)", 1, 129, &["us-west-1"]),
            (
                "gpu_1x_h100_pcie",
                "H100 (80 GB PCIe)",
                1,
                249,
                &["us-west-1"],
            ),
            (
                "gpu_2x_h100_sxm5",
                "H100 (80 GB SXM5)",
                2,
                638,
                &["us-south-1"],
            ),
            ("gpu_4x_a6000", "RTX A6000 (48 GB)", 4, 320, &[]),
            ("gpu_8x_a100", "A100 (40 GB SXM4)", 8, 1032, &["us-east-1"]),
        ])
    }

    fn model(id: &str) -> Model {
        find(&builtin_models(), id).unwrap().clone()
    }

    #[test]
    fn gpu_vram_is_read_from_lambdas_descriptions() {
        assert_eq!(gpu_vram_gib("A10 (24 GB PCIe)"), Some(24.0));
        assert_eq!(gpu_vram_gib("RTX A6000 (48 GB)"), Some(48.0));
        assert_eq!(gpu_vram_gib("B200 (180 GB SXM6)"), Some(180.0));
        assert_eq!(gpu_vram_gib("8x A100 (80 GB SXM4)"), Some(80.0));
        assert_eq!(gpu_vram_gib("mystery accelerator"), None);
    }

    #[test]
    fn kv_cache_follows_the_model_shape() {
        // Llama-3.1-8B: 2 × 32 layers × 8 heads × 128 × 2 bytes = 128 KiB a token.
        assert!((kv_bytes_per_token(&model("llama-3.1-8b")) - 131_072.0).abs() < 1e-6);
        let estimate = estimate(&model("llama-3.1-8b"));
        assert!((estimate.kv_cache_gib - 4.0).abs() < 1e-9, "{estimate:?}");
        assert!((estimate.weights_gib - 14.96).abs() < 0.01, "{estimate:?}");
    }

    #[test]
    fn int4_needs_about_a_quarter_of_bf16() {
        let full = estimate(&model("qwen2.5-coder-32b")).weights_gib;
        let int4 = estimate(&model("qwen2.5-coder-32b-int4")).weights_gib;
        assert!(int4 < full / 3.0 && int4 > full / 4.0, "{full} {int4}");
    }

    /// The recommendation table: each built-in model against today's catalogue.
    #[test]
    fn recommendation_table() {
        let types = lambda_today();
        let table: Vec<(String, Option<(String, u32)>)> = builtin_models()
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    recommend(m, &types, None).map(|f| (f.instance_type, f.tensor_parallel)),
                )
            })
            .collect();
        let expect = |id: &str, ty: Option<(&str, u32)>| {
            let got = table.iter().find(|(m, _)| m == id).unwrap().1.clone();
            assert_eq!(got, ty.map(|(t, n)| (t.to_owned(), n)), "{id}");
        };
        expect("llama-3.1-8b", Some(("gpu_1x_a10", 1)));
        expect("mistral-7b", Some(("gpu_1x_a10", 1)));
        expect("qwen2.5-coder-32b-int4", Some(("gpu_1x_a6000", 1)));
        expect("qwen2.5-coder-32b", Some(("gpu_1x_h100_pcie", 1)));
        expect("codellama-34b", Some(("gpu_1x_h100_pcie", 1)));
        // 70B in bf16 (~132 GiB of weights) needs two 80 GB GPUs at least.
        expect("llama-3.1-70b", Some(("gpu_2x_h100_sxm5", 2)));
        expect("deepseek-r1-70b", Some(("gpu_2x_h100_sxm5", 2)));
    }

    #[test]
    fn a_region_without_capacity_is_skipped() {
        let types = lambda_today();
        let fit = recommend(&model("llama-3.1-8b"), &types, Some("us-south-1")).unwrap();
        assert_eq!(fit.instance_type, "gpu_2x_h100_sxm5");
        assert!(recommend(&model("llama-3.1-8b"), &types, Some("mars-1")).is_none());
    }

    #[test]
    fn custom_models_join_and_shadow_the_registry() {
        let mut custom = BTreeMap::new();
        custom.insert(
            "mistral-7b".to_owned(),
            CustomModel {
                hf_path: "me/mistral-fp8".into(),
                params_billions: 7.25,
                quantization: "fp8".into(),
                context_length: 8192,
                layers: None,
                kv_heads: None,
                head_dim: None,
            },
        );
        let models = registry(&custom);
        assert_eq!(models.len(), builtin_models().len());
        let mistral = find(&models, "mistral-7b").unwrap();
        assert!(mistral.custom);
        assert_eq!(mistral.quantization, Quantization::Fp8);
    }

    #[test]
    fn similar_ids_are_suggested() {
        let models = builtin_models();
        let ids = models.iter().map(|m| m.id.as_str());
        let suggestions = similar(ids, "llama-3.1-7b");
        assert!(
            suggestions.contains(&"llama-3.1-8b".to_owned()),
            "{suggestions:?}"
        );
    }
}
