//! `qfhe train` and `qfhe export`: argument handling over `qfhe::fit_with`, `Model::save`,
//! `Model::load` and `Model::circuit`.

use crate::args::{DeviceArg, ExportArgs, ModelArgs, TrainArgs};
use anyhow::{bail, Context};
use qfhe::{Dataset, FitConfig, LayerSpec, Model, ModelSpec, TrainConfig};
use std::path::Path;

/// The model `--model` names, fitted to `data`'s images and classes, with the overrides of
/// `args` applied. Returns it and its name.
pub fn resolve_model(data: &Dataset, args: &ModelArgs) -> anyhow::Result<(ModelSpec, String)> {
    let input = [1, data.train.rows, data.train.cols];
    let (mut spec, name) = match args.model.as_str() {
        preset @ ("mlp" | "cnn" | "lenet") => (
            ModelSpec::preset(preset, input, data.num_classes).with_context(|| {
                format!("the {preset} preset does not fit {} images", data.name)
            })?,
            preset.to_owned(),
        ),
        file => {
            let path = Path::new(file);
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("reading the model file {file} (or use a preset: mlp, cnn, lenet)")
            })?;
            let spec = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => ModelSpec::from_json(&text),
                Some("toml") => ModelSpec::from_toml(&text),
                _ => bail!("{file}: a model file ends in .toml or .json"),
            }
            .with_context(|| format!("{file} is not a usable model description"))?;
            let stem = path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().into_owned());
            (spec, stem)
        }
    };
    if let Some(hidden) = &args.hidden {
        let widths: &[usize] = if hidden == &[0] { &[] } else { hidden };
        spec = spec.with_hidden(widths)?;
    }
    if args.no_batch_norm || args.device == DeviceArg::Wgpu {
        if args.device == DeviceArg::Wgpu && spec.layers.contains(&LayerSpec::BatchNorm) {
            // Known bug (docs/DESIGN.md): with batch norm, QAT on wgpu starts from a dead model.
            eprintln!("note: batch norm is off on --device wgpu (QAT after folding it fails there; see docs/DESIGN.md)");
        }
        spec = spec.without_batch_norm();
    }
    let q = &mut spec.quant;
    q.w_bits = args.w_bits.unwrap_or(q.w_bits);
    q.out_w_bits = args.out_w_bits.unwrap_or(q.out_w_bits);
    q.a_bits = args.a_bits.unwrap_or(q.a_bits);
    q.in_bits = args.in_bits.or(args.a_bits).unwrap_or(q.in_bits);
    spec.validate()?;
    Ok((spec, name))
}

/// The library's configuration for `args` (`spec` decides the default QAT epochs).
fn fit_config(args: &ModelArgs, spec: &ModelSpec) -> FitConfig {
    let convolutional = spec
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::Conv2d { .. }));
    FitConfig {
        train: TrainConfig {
            fp32_epochs: args.fp32_epochs.unwrap_or(18),
            qat_epochs: args
                .qat_epochs
                .unwrap_or(if convolutional { 16 } else { 12 }),
            batch_size: args.batch_size,
            lr: args.lr,
            qat_lr: args.qat_lr,
            qat_noise: !args.no_qat_noise,
            qat_noise_scale: args.qat_noise_scale.unwrap_or(if args.model == "lenet" {
                1.5
            } else {
                1.0
            }),
            augment_shift: args
                .augment_shift
                .unwrap_or(if args.model == "lenet" { 2 } else { 0 }),
            select_best: args.select_best.unwrap_or(0),
            distill: args
                .distill
                .unwrap_or(if args.model == "lenet" { 0.7 } else { 0.0 }),
            seed: args.seed,
            ..TrainConfig::default()
        },
        poly_size: args.poly_size,
        min_step_slots: args.min_step_slots.unwrap_or(if args.model == "lenet" {
            36.0
        } else {
            40.0
        }),
        device: args.device.choice(),
    }
}

/// Train the model `args` describes on `data`, drawing progress on stderr.
pub fn fit(data: &Dataset, args: &ModelArgs) -> anyhow::Result<Model> {
    let (spec, name) = resolve_model(data, args)?;
    let cfg = fit_config(args, &spec);
    eprintln!(
        "training {name} ({}) on {} ({} train / {} test images), w{}/a{}, device {}",
        spec.arch(),
        data.name,
        data.train.len(),
        data.test.len(),
        spec.quant.w_bits,
        spec.quant.a_bits,
        args.device.name()
    );
    let mut shown = crate::progress::TrainProgress::default();
    let mut model = qfhe::fit_with(&spec, data, &cfg, &mut |e| shown.show(e))?;
    if let Some(epoch) = model.info().selected_epoch {
        eprintln!(
            "  kept QAT epoch {epoch} (best on the {} held-out training images): test accuracy {:.4}",
            cfg.train.select_best,
            model.info().qat_accuracy
        );
    }
    model.set_name(name);
    Ok(model)
}

/// Load what `qfhe train` saved in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Model> {
    if !dir.join("model.json").is_file() {
        bail!(
            "{} holds no model.json: train a model first with `qfhe train --out {}`",
            dir.display(),
            dir.display()
        );
    }
    Model::load(dir).with_context(|| {
        format!(
            "loading the model in {}; if an older qfhe trained it, train it again with `qfhe train --out {}`",
            dir.display(),
            dir.display()
        )
    })
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let data = crate::data::load(&args.data)?;
    let model = fit(&data, &args.model)?;
    model.save(&args.out)?;
    let info = model.info();
    println!(
        "fp32 accuracy {:.4}, quantized (QAT) accuracy {:.4}; model saved in {}",
        info.fp32_accuracy,
        info.qat_accuracy,
        args.out.display()
    );
    Ok(())
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let circuit = load(&args.model_dir)?.circuit()?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    circuit.save(&args.out)?;
    println!(
        "circuit {} ({} PBS per sample) written to {}",
        circuit.meta.arch,
        circuit.pbs_count(),
        args.out.display()
    );
    Ok(())
}
