//! `soong available`: instance types, prices, regions with capacity, and
//! which models fit each type.

use anyhow::Context as _;
use serde_json::json;

use crate::exit::ExitStatus;
use crate::models;
use crate::output::{Printer, dollars};
use crate::settings::Settings;

/// Runs `soong available`.
pub async fn run(printer: &Printer, settings: &Settings) -> anyhow::Result<ExitStatus> {
    let client = settings.client()?;
    let types = client
        .list_instance_types()
        .await
        .context("cannot list instance types")?;
    let registry = models::registry(&settings.config.custom_models);
    let mut entries: Vec<_> = types.values().collect();
    entries.sort_by(|a, b| {
        // Types with capacity first, cheapest first within each group.
        a.regions_with_capacity_available
            .is_empty()
            .cmp(&b.regions_with_capacity_available.is_empty())
            .then(
                a.instance_type
                    .price_cents_per_hour
                    .cmp(&b.instance_type.price_cents_per_hour),
            )
    });
    let fitting = |name: &str| -> Vec<String> {
        registry
            .iter()
            .filter(|m| {
                models::fits(m, &types)
                    .iter()
                    .any(|f| f.instance_type == name && f.fits)
            })
            .map(|m| m.id.clone())
            .collect()
    };
    if printer.json() {
        let out: Vec<_> = entries
            .iter()
            .map(|e| {
                let t = &e.instance_type;
                json!({
                    "name": t.name,
                    "description": t.description,
                    "gpus": t.specs.gpus,
                    "gpu_vram_gib": models::gpu_vram_gib(&t.gpu_description),
                    "price_cents_per_hour": t.price_cents_per_hour,
                    "regions_with_capacity": e.regions_with_capacity_available.iter().map(|r| &r.name).collect::<Vec<_>>(),
                    "models_that_fit": fitting(&t.name),
                })
            })
            .collect();
        printer.json_value(&json!(out));
        return Ok(ExitStatus::Success);
    }
    let rows = entries
        .iter()
        .map(|e| {
            let t = &e.instance_type;
            let regions: Vec<&str> = e
                .regions_with_capacity_available
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            vec![
                t.name.clone(),
                t.description.clone(),
                format!("{}/h", dollars(t.price_cents_per_hour as f64)),
                if regions.is_empty() {
                    "no capacity".to_owned()
                } else {
                    regions.join(", ")
                },
                fitting(&t.name).join(", "),
            ]
        })
        .collect();
    printer.data(printer.table(
        &["TYPE", "GPUS", "PRICE", "CAPACITY", "MODELS THAT FIT"],
        rows,
    ));
    Ok(ExitStatus::Success)
}
