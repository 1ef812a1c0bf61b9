//! `soong models [list|info|add|remove|recommend]`: the model registry.

use anyhow::Context as _;
use serde_json::json;

use crate::args::{AddModelArgs, ModelsArgs, ModelsCommand};
use crate::exit::{ExitStatus, UserError};
use crate::models::{self, CustomModel, Model, Quantization};
use crate::output::{Printer, dollars};
use crate::settings::Settings;

/// Runs `soong models …`.
pub async fn run(
    printer: &Printer,
    settings: &Settings,
    args: &ModelsArgs,
) -> anyhow::Result<ExitStatus> {
    match &args.command {
        None | Some(ModelsCommand::List) => Ok(list(printer, settings)),
        Some(ModelsCommand::Info { model }) => info(printer, settings, model),
        Some(ModelsCommand::Add(add_args)) => add(printer, settings, add_args),
        Some(ModelsCommand::Remove { model }) => remove(printer, settings, model),
        Some(ModelsCommand::Recommend { model }) => {
            recommend(printer, settings, model.as_deref()).await
        }
    }
}

/// A model as JSON.
pub fn model_json(model: &Model) -> serde_json::Value {
    let need = models::estimate(model);
    json!({
        "id": model.id,
        "hf_path": model.hf_path,
        "params_billions": model.params_billions,
        "quantization": model.quantization.as_str(),
        "context_length": model.context_length,
        "layers": model.layers,
        "kv_heads": model.kv_heads,
        "head_dim": model.head_dim,
        "custom": model.custom,
        "vram_gib": {
            "weights": round1(need.weights_gib),
            "kv_cache": round1(need.kv_cache_gib),
            "overhead_per_gpu": round1(need.overhead_gib),
            "total_one_gpu": round1(need.total_gib(1)),
        },
    })
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Looks a model up, or fails with the closest ids.
pub fn lookup(settings: &Settings, id: &str) -> anyhow::Result<Model> {
    let registry = models::registry(&settings.config.custom_models);
    if let Some(model) = models::find(&registry, id) {
        return Ok(model.clone());
    }
    let similar = models::similar(registry.iter().map(|m| m.id.as_str()), id);
    let hint = if similar.is_empty() {
        "see `soong models list`, or add it with `soong models add`".to_owned()
    } else {
        format!(
            "did you mean {}? (`soong models list` shows them all)",
            similar
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(UserError::new(format!("unknown model `{id}`"))
        .hint(hint)
        .into())
}

fn list(printer: &Printer, settings: &Settings) -> ExitStatus {
    let registry = models::registry(&settings.config.custom_models);
    if printer.json() {
        printer.json_value(&json!(registry.iter().map(model_json).collect::<Vec<_>>()));
        return ExitStatus::Success;
    }
    let rows = registry
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                format!("{:.1}B", m.params_billions),
                m.quantization.as_str().to_owned(),
                m.context_length.to_string(),
                format!("{:.1} GiB", models::estimate(m).total_gib(1)),
                format!("{}{}", m.hf_path, if m.custom { " (custom)" } else { "" }),
            ]
        })
        .collect();
    printer.data(printer.table(
        &[
            "MODEL",
            "PARAMS",
            "WEIGHTS",
            "CONTEXT",
            "VRAM",
            "HUGGING FACE",
        ],
        rows,
    ));
    ExitStatus::Success
}

fn info(printer: &Printer, settings: &Settings, id: &str) -> anyhow::Result<ExitStatus> {
    let model = lookup(settings, id)?;
    if printer.json() {
        printer.json_value(&model_json(&model));
        return Ok(ExitStatus::Success);
    }
    let need = models::estimate(&model);
    let shape = match (model.layers, model.kv_heads, model.head_dim) {
        (Some(l), Some(h), Some(d)) => format!("{l} layers, {h} KV heads of {d}"),
        _ => "unknown (KV cache estimated from the parameter count)".to_owned(),
    };
    printer.data(format!(
        "{}{}\n  Hugging Face:  {}\n  parameters:    {:.2} B\n  weights:       {}{}\n  context:       {} tokens\n  shape:         {}\n  VRAM:          {:.1} GiB weights + {:.1} GiB KV cache + {:.1} GiB per GPU = {:.1} GiB on one GPU",
        model.id,
        if model.custom { " (custom)" } else { "" },
        model.hf_path,
        model.params_billions,
        model.quantization.as_str(),
        model.quantization.sglang_flag().map(|f| format!(" (SGLang `--quantization {f}`)")).unwrap_or_default(),
        model.context_length,
        shape,
        need.weights_gib,
        need.kv_cache_gib,
        need.overhead_gib,
        need.total_gib(1),
    ));
    Ok(ExitStatus::Success)
}

fn add(printer: &Printer, settings: &Settings, args: &AddModelArgs) -> anyhow::Result<ExitStatus> {
    let quantization = Quantization::parse(&args.quantization).ok_or_else(|| {
        UserError::new(format!("unknown quantization `{}`", args.quantization))
            .hint("use one of bf16, fp16, fp8, int8, awq, gptq-int4")
            .status(ExitStatus::Usage)
    })?;
    let custom = CustomModel {
        hf_path: args.hf_path.clone(),
        params_billions: args.params_billions,
        quantization: quantization.as_str().to_owned(),
        context_length: args.context_length,
        layers: args.layers,
        kv_heads: args.kv_heads,
        head_dim: args.head_dim,
    };
    custom.check().map_err(|message| {
        UserError::new(format!("cannot add `{}`: {message}", args.id)).status(ExitStatus::Usage)
    })?;
    if settings.config.custom_models.contains_key(&args.id) && !args.force {
        return Err(
            UserError::new(format!("a custom model `{}` already exists", args.id))
                .hint("pass `--force` to replace it")
                .into(),
        );
    }
    let mut config = settings.config.clone();
    config.custom_models.insert(args.id.clone(), custom);
    config.save(&settings.config_path)?;
    printer.info(format!(
        "Added `{}` to `{}`",
        args.id,
        settings.config_path.display()
    ));
    Ok(ExitStatus::Success)
}

fn remove(printer: &Printer, settings: &Settings, id: &str) -> anyhow::Result<ExitStatus> {
    if !settings.config.custom_models.contains_key(id) {
        let builtin = models::find(&models::builtin_models(), id).is_some();
        let error = UserError::new(format!("`{id}` is not a custom model"));
        return Err(if builtin {
            error.hint(
                "built-in models cannot be removed; a custom model of the same id overrides one",
            )
        } else {
            error.hint("see `soong models list`")
        }
        .into());
    }
    let mut config = settings.config.clone();
    config.custom_models.remove(id);
    config.save(&settings.config_path)?;
    printer.info(format!(
        "Removed `{id}` from `{}`",
        settings.config_path.display()
    ));
    Ok(ExitStatus::Success)
}

async fn recommend(
    printer: &Printer,
    settings: &Settings,
    id: Option<&str>,
) -> anyhow::Result<ExitStatus> {
    let selected: Vec<Model> = match id {
        Some(id) => vec![lookup(settings, id)?],
        None => models::registry(&settings.config.custom_models),
    };
    let client = settings.client()?;
    let types = client
        .list_instance_types()
        .await
        .context("cannot list instance types")?;
    let region = settings.config.lambda.default_region.as_deref();
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for model in &selected {
        let pick = models::recommend(model, &types, None);
        let in_region = region.and_then(|r| models::recommend(model, &types, Some(r)));
        out.push(json!({
            "model": model.id,
            "vram_gib_one_gpu": round1(models::estimate(model).total_gib(1)),
            "recommended": pick.as_ref().map(|f| json!({
                "instance_type": f.instance_type,
                "price_cents_per_hour": f.price_cents_per_hour,
                "tensor_parallel": f.tensor_parallel,
                "regions": f.regions,
            })),
            "recommended_in_default_region": in_region.as_ref().map(|f| &f.instance_type),
        }));
        rows.push(vec![
            model.id.clone(),
            format!("{:.1} GiB", models::estimate(model).total_gib(1)),
            pick.as_ref().map_or_else(
                || "none with capacity".to_owned(),
                |f| f.instance_type.clone(),
            ),
            pick.as_ref().map_or_else(String::new, |f| {
                format!("{}/h", dollars(f.price_cents_per_hour as f64))
            }),
            pick.as_ref()
                .map_or_else(String::new, |f| f.tensor_parallel.to_string()),
            pick.as_ref()
                .map_or_else(String::new, |f| f.regions.join(", ")),
        ]);
    }
    if printer.json() {
        printer.json_value(&json!(out));
    } else {
        printer.data(printer.table(
            &["MODEL", "NEEDS", "CHEAPEST FIT", "PRICE", "TP", "REGIONS"],
            rows,
        ));
    }
    Ok(ExitStatus::Success)
}
