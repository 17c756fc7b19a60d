//! `qfhe train` and `qfhe export`.

use crate::args::{ExportArgs, ModelArgs, TrainArgs};
use anyhow::{bail, Context};
use burn::module::Module;
use qfhe_datasets::Dataset;
use qfhe_export::{export_mlp, Circuit};
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, MlpConfig, QMlp, TrainConfig, TrainReport};
use std::path::Path;

/// What `qfhe train` writes beside the weights.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub dataset: String,
    pub config: MlpConfig,
    pub train: TrainConfig,
    pub fp32_accuracy: f64,
    pub qat_accuracy: f64,
}

/// Train the model `args` describes on `data`.
pub fn train_model(
    data: &Dataset,
    args: &ModelArgs,
) -> anyhow::Result<(QMlp, TrainReport, TrainConfig)> {
    let params = qfhe_fhe_runtime::FheParams::by_poly_size(args.poly_size).with_context(|| {
        format!(
            "no parameter set with N = {}: use --poly-size 2048 or 8192",
            args.poly_size
        )
    })?;
    for (name, bits) in [
        ("--w-bits", args.w_bits),
        ("--out-w-bits", args.out_w_bits),
        ("--a-bits", args.a_bits),
    ] {
        if !(2..=8).contains(&bits) {
            bail!("{name} {bits} is out of range: use 2 to 8 bits");
        }
    }
    if args.hidden.is_empty() || args.hidden.contains(&0) {
        bail!("--hidden needs at least one non-zero width, e.g. --hidden 128");
    }
    let encoding = EncodingConfig {
        poly_size: params.poly_size(),
        min_step_slots: args.min_step_slots,
        noise: params.noise_spec(),
        ..EncodingConfig::default()
    };
    let config = MlpConfig {
        inputs: data.train.pixels(),
        hidden: args.hidden.clone(),
        classes: data.num_classes,
        w_bits: args.w_bits,
        out_w_bits: args.out_w_bits,
        a_bits: args.a_bits,
        in_bits: args.in_bits.unwrap_or(args.a_bits),
        encoding,
    };
    let tc = TrainConfig {
        fp32_epochs: args.fp32_epochs,
        qat_epochs: args.qat_epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let device = select_device(args.device.parse().map_err(anyhow::Error::msg)?)
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "training {} on {} ({} train / {} test images), w{}/a{}, device {}",
        config.arch(),
        data.name,
        data.train.len(),
        data.test.len(),
        config.w_bits,
        config.a_bits,
        args.device
    );
    let (model, report) = qfhe_train::train(config, &tc, data, &device)?;
    Ok((model, report, tc))
}

pub fn save_model(dir: &Path, model: &QMlp, info: &ModelInfo) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    model
        .clone()
        .save_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("saving model weights: {e:?}"))?;
    std::fs::write(dir.join("model.json"), serde_json::to_vec_pretty(info)?)?;
    Ok(())
}

pub fn load_model(dir: &Path) -> anyhow::Result<(QMlp, ModelInfo)> {
    let info_path = dir.join("model.json");
    let bytes = std::fs::read(&info_path).with_context(|| {
        format!(
            "reading {}: train a model first with `qfhe train --out {}`",
            info_path.display(),
            dir.display()
        )
    })?;
    let info: ModelInfo = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a qfhe model description", info_path.display()))?;
    let device = burn::prelude::Device::flex();
    let model = QMlp::new(info.config.clone(), &device)
        .try_load_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", dir.join("model.bpk").display()))?;
    Ok((model, info))
}

pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let data = crate::data::load(&args.data)?;
    let (model, report, tc) = train_model(&data, &args.model)?;
    let info = ModelInfo {
        dataset: data.name.clone(),
        config: model.config.clone(),
        train: tc,
        fp32_accuracy: report.fp32_accuracy,
        qat_accuracy: report.qat_accuracy,
    };
    save_model(&args.out, &model, &info)?;
    println!(
        "fp32 accuracy {:.4}, quantized (QAT) accuracy {:.4}; model saved in {}",
        report.fp32_accuracy,
        report.qat_accuracy,
        args.out.display()
    );
    Ok(())
}

/// Export `model` as a circuit carrying its provenance.
pub fn to_circuit(model: &QMlp, dataset: &str, fp32_accuracy: f64) -> anyhow::Result<Circuit> {
    let mut c = export_mlp(model, dataset)?;
    c.meta.fp32_accuracy = Some(fp32_accuracy);
    Ok(c)
}

pub fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let (model, info) = load_model(&args.model_dir)?;
    let circuit = to_circuit(&model, &info.dataset, info.fp32_accuracy)?;
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
