//! `qfhe train` and `qfhe export`.

use crate::args::{ExportArgs, ModelArgs, TrainArgs};
use anyhow::{bail, Context};
use burn::module::Module;
use qfhe_circuit::Circuit;
use qfhe_core::{LayerSpec, ModelSpec};
use qfhe_datasets::Dataset;
use qfhe_export::lower;
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, train_model_with, QSequential, TrainConfig, TrainReport};
use std::path::Path;

/// What `qfhe train` writes beside the weights.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub dataset: String,
    /// The model's name: its preset, or its file's stem.
    pub name: String,
    pub model: ModelSpec,
    pub encoding: EncodingConfig,
    pub train: TrainConfig,
    pub fp32_accuracy: f64,
    pub qat_accuracy: f64,
}

/// A trained model with its description.
pub struct Trained {
    pub model: QSequential,
    pub name: String,
}

impl Trained {
    /// Lower to a circuit carrying its provenance.
    pub fn to_circuit(&self, dataset: &str, fp32_accuracy: f64) -> anyhow::Result<Circuit> {
        let mut c = lower(&self.model, dataset)?;
        c.meta.fp32_accuracy = Some(fp32_accuracy);
        Ok(c)
    }
}

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
    if args.no_batch_norm || args.device == crate::args::DeviceArg::Wgpu {
        if args.device == crate::args::DeviceArg::Wgpu
            && spec.layers.contains(&LayerSpec::BatchNorm)
        {
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
    let features: usize = spec.input.iter().product();
    if features != data.train.pixels() {
        bail!(
            "the model takes {:?} inputs ({features} values) but {} images have {} pixels",
            spec.input,
            data.name,
            data.train.pixels()
        );
    }
    Ok((spec, name))
}

/// Train the model `args` describes on `data`.
pub fn train_model_cmd(
    data: &Dataset,
    args: &ModelArgs,
) -> anyhow::Result<(Trained, TrainReport, TrainConfig)> {
    let params = qfhe_fhe_runtime::FheParams::by_poly_size(args.poly_size).with_context(|| {
        format!(
            "no parameter set with N = {}: use --poly-size 2048 or 8192",
            args.poly_size
        )
    })?;
    let encoding = EncodingConfig {
        poly_size: params.poly_size(),
        min_step_slots: args.min_step_slots,
        noise: params.noise_spec(),
        ..EncodingConfig::default()
    };
    let (spec, name) = resolve_model(data, args)?;
    let convolutional = spec
        .layers
        .iter()
        .any(|l| matches!(l, LayerSpec::Conv2d { .. }));
    let tc = TrainConfig {
        fp32_epochs: args.fp32_epochs,
        qat_epochs: args
            .qat_epochs
            .unwrap_or(if convolutional { 16 } else { 12 }),
        batch_size: args.batch_size,
        lr: args.lr,
        qat_lr: args.qat_lr,
        qat_noise: !args.no_qat_noise,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let device = select_device(args.device.choice()).map_err(anyhow::Error::msg)?;
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
    // Built (and validated) once here so a bad model is an error, not a panic in the trainer.
    QSequential::new(spec.clone(), encoding, &device)?;
    let mut shown = crate::progress::TrainProgress::default();
    let build = |d: &burn::prelude::Device| {
        QSequential::new(spec.clone(), encoding, d).expect("validated above")
    };
    let (model, report) = train_model_with(build, &tc, data, &device, &mut |e| shown.show(e))?;
    Ok((Trained { model, name }, report, tc))
}

pub fn save_model(dir: &Path, model: &Trained, info: &ModelInfo) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let weights = dir.join("model.bpk");
    model
        .model
        .clone()
        .save_file(&weights)
        .map_err(|e| anyhow::anyhow!("saving model weights to {}: {e:?}", weights.display()))?;
    std::fs::write(dir.join("model.json"), serde_json::to_vec_pretty(info)?)?;
    Ok(())
}

pub fn load_model(dir: &Path) -> anyhow::Result<(Trained, ModelInfo)> {
    let info_path = dir.join("model.json");
    let bytes = std::fs::read(&info_path).with_context(|| {
        format!(
            "reading {}: train a model first with `qfhe train --out {}`",
            info_path.display(),
            dir.display()
        )
    })?;
    let retrain = format!(
        "if this model was trained by an older qfhe, train it again with `qfhe train --out {}`",
        dir.display()
    );
    let info: ModelInfo = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a qfhe model description; {retrain}",
            info_path.display()
        )
    })?;
    let device = burn::prelude::Device::flex();
    let weights = dir.join("model.bpk");
    let model = QSequential::new_folded(info.model.clone(), info.encoding, &device)
        .with_context(|| {
            format!(
                "{} describes a model qfhe cannot build",
                info_path.display()
            )
        })?
        .try_load_file(&weights)
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}\n{retrain}", weights.display()))?;
    let name = info.name.clone();
    Ok((Trained { model, name }, info))
}

pub fn info(data: &Dataset, model: &Trained, tc: TrainConfig, report: &TrainReport) -> ModelInfo {
    ModelInfo {
        dataset: data.name.clone(),
        name: model.name.clone(),
        model: model.model.spec.clone(),
        encoding: model.model.encoding,
        train: tc,
        fp32_accuracy: report.fp32_accuracy,
        qat_accuracy: report.qat_accuracy,
    }
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let data = crate::data::load(&args.data)?;
    let (model, report, tc) = train_model_cmd(&data, &args.model)?;
    save_model(&args.out, &model, &info(&data, &model, tc, &report))?;
    println!(
        "fp32 accuracy {:.4}, quantized (QAT) accuracy {:.4}; model saved in {}",
        report.fp32_accuracy,
        report.qat_accuracy,
        args.out.display()
    );
    Ok(())
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let (model, info) = load_model(&args.model_dir)?;
    let circuit = model.to_circuit(&info.dataset, info.fp32_accuracy)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
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
