//! `qfhe train` and `qfhe export`.

use crate::args::{ExportArgs, ModelArgs, ModelKind, TrainArgs};
use anyhow::{bail, Context};
use burn::module::Module;
use qfhe_circuit::Circuit;
use qfhe_datasets::Dataset;
use qfhe_export::{export_cnn, export_mlp};
use qfhe_quant::EncodingConfig;
use qfhe_train::{
    select_device, train_model_with, CnnConfig, MlpConfig, QCnn, QMlp, TrainConfig, TrainReport,
};
use std::path::Path;

/// Architecture of a trained model.
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub enum ModelSpec {
    /// An MLP.
    Mlp(MlpConfig),
    /// A CNN.
    Cnn(CnnConfig),
}

/// A trained model in evaluation mode.
pub enum Trained {
    Mlp(QMlp),
    Cnn(Box<QCnn>),
}

impl Trained {
    pub fn spec(&self) -> ModelSpec {
        match self {
            Self::Mlp(m) => ModelSpec::Mlp(m.config.clone()),
            Self::Cnn(m) => ModelSpec::Cnn(m.config.clone()),
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Mlp(_) => ModelKind::Mlp,
            Self::Cnn(_) => ModelKind::Cnn,
        }
    }

    /// Export as a circuit carrying its provenance.
    pub fn to_circuit(&self, dataset: &str, fp32_accuracy: f64) -> anyhow::Result<Circuit> {
        let mut c = match self {
            Self::Mlp(m) => export_mlp(m, dataset)?,
            Self::Cnn(m) => export_cnn(m, dataset)?,
        };
        c.meta.fp32_accuracy = Some(fp32_accuracy);
        Ok(c)
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let r = match self {
            Self::Mlp(m) => m.clone().save_file(path),
            Self::Cnn(m) => (**m).clone().save_file(path),
        };
        r.map_err(|e| anyhow::anyhow!("saving model weights to {}: {e:?}", path.display()))
    }
}

/// What `qfhe train` writes beside the weights.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub dataset: String,
    pub model: ModelSpec,
    pub train: TrainConfig,
    pub fp32_accuracy: f64,
    pub qat_accuracy: f64,
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
    let tc = TrainConfig {
        fp32_epochs: args.fp32_epochs,
        qat_epochs: args.qat_epochs.unwrap_or(match args.model {
            ModelKind::Mlp => 12,
            ModelKind::Cnn => 16,
        }),
        batch_size: args.batch_size,
        lr: args.lr,
        qat_lr: args.qat_lr,
        qat_noise: !args.no_qat_noise,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let device = select_device(args.device.choice()).map_err(anyhow::Error::msg)?;
    let in_bits = args.in_bits.unwrap_or(args.a_bits);
    let (trained, report) = match args.model {
        ModelKind::Mlp => {
            let hidden = args.hidden.clone().unwrap_or(vec![128]);
            if hidden.is_empty() || hidden.contains(&0) {
                bail!("--hidden needs at least one non-zero width, e.g. --hidden 128");
            }
            let config = MlpConfig {
                inputs: data.train.pixels(),
                hidden,
                classes: data.num_classes,
                w_bits: args.w_bits,
                out_w_bits: args.out_w_bits,
                a_bits: args.a_bits,
                in_bits,
                encoding,
            };
            announce(&config.arch(), data, args);
            let mut shown = crate::progress::TrainProgress::default();
            let (m, r) =
                train_model_with(|d| QMlp::new(config, d), &tc, data, &device, &mut |e| {
                    shown.show(e)
                })?;
            (Trained::Mlp(m), r)
        }
        ModelKind::Cnn => {
            let (h, w) = (data.train.rows, data.train.cols);
            if args.kernel > h + 2 * args.padding || args.kernel > w + 2 * args.padding {
                bail!(
                    "--kernel {} does not fit {h}x{w} images with --padding {}",
                    args.kernel,
                    args.padding
                );
            }
            // Known bug (docs/DESIGN.md): with batch norm, QAT on wgpu starts from a dead model.
            let wgpu = args.device == crate::args::DeviceArg::Wgpu;
            if wgpu && !args.no_batch_norm {
                eprintln!("note: batch norm is off on --device wgpu (QAT after folding it fails there; see docs/DESIGN.md)");
            }
            let hidden = match args.hidden.as_deref() {
                None => vec![256],
                Some([0]) => vec![],
                Some(h) if h.contains(&0) => {
                    bail!("--hidden widths must be non-zero (a single 0 means no hidden layer)")
                }
                Some(h) => h.to_vec(),
            };
            let config = CnnConfig {
                input: [1, h, w],
                channels: args.conv_channels,
                kernel: args.kernel,
                stride: args.stride,
                padding: args.padding,
                pool: args.pool,
                pooling: args.pooling.into(),
                hidden,
                batch_norm: !args.no_batch_norm && !wgpu,
                classes: data.num_classes,
                w_bits: args.w_bits,
                out_w_bits: args.out_w_bits,
                a_bits: args.a_bits,
                in_bits,
                encoding,
            };
            config.validate()?;
            announce(&config.arch(), data, args);
            let mut shown = crate::progress::TrainProgress::default();
            let (m, r) =
                train_model_with(|d| QCnn::new(config, d), &tc, data, &device, &mut |e| {
                    shown.show(e)
                })?;
            (Trained::Cnn(Box::new(m)), r)
        }
    };
    Ok((trained, report, tc))
}

fn announce(arch: &str, data: &Dataset, args: &ModelArgs) {
    eprintln!(
        "training {arch} on {} ({} train / {} test images), w{}/a{}, device {}",
        data.name,
        data.train.len(),
        data.test.len(),
        args.w_bits,
        args.a_bits,
        args.device.name()
    );
}

pub fn save_model(dir: &Path, model: &Trained, info: &ModelInfo) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    model.save(&dir.join("model.bpk"))?;
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
    let info: ModelInfo = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a qfhe model description", info_path.display()))?;
    let device = burn::prelude::Device::flex();
    let weights = dir.join("model.bpk");
    // A model saved by an older qfhe lacks tensors this build's layers have (e.g. the
    // `multiplier`/`reference` pair of the LSQ steps): say so rather than only list them.
    let err = |e| {
        anyhow::anyhow!(
            "loading {}: {e:?}\nif this model was trained by an older qfhe, its layers differ from \
             this build's: train it again with `qfhe train --out {}`",
            weights.display(),
            dir.display()
        )
    };
    match &info.model {
        ModelSpec::Mlp(c) => c.validate(),
        ModelSpec::Cnn(c) => c.validate(),
    }
    .with_context(|| {
        format!(
            "{} describes a model qfhe cannot build",
            info_path.display()
        )
    })?;
    let model = match &info.model {
        ModelSpec::Mlp(c) => Trained::Mlp(
            QMlp::new(c.clone(), &device)
                .try_load_file(&weights)
                .map_err(err)?,
        ),
        ModelSpec::Cnn(c) => Trained::Cnn(Box::new(
            QCnn::new(c.clone(), &device)
                .try_load_file(&weights)
                .map_err(err)?,
        )),
    };
    Ok((model, info))
}

pub fn info(data: &Dataset, model: &Trained, tc: TrainConfig, report: &TrainReport) -> ModelInfo {
    ModelInfo {
        dataset: data.name.clone(),
        model: model.spec(),
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
