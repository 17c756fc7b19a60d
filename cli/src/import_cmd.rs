//! `qfhe import`: a quantization-aware model from an ONNX file, compiled and evaluated like a
//! model trained here.

use crate::args::ImportArgs;
use crate::eval::{evaluate, finish, EvalSet};
use crate::report::Report;
use anyhow::{anyhow, Context};
use qfhe::datasets::Task;
use qfhe::{Dataset, FitConfig, Metric, Model, QuantSpec};
use qfhe_fhe_runtime::CompileError;
use std::time::Instant;

/// Import, lower, evaluate; the report and circuit go to `args.out`.
pub fn import(args: &ImportArgs) -> anyhow::Result<Report> {
    args.fhe.backend.backend()?;
    let start = Instant::now();
    let tabular = crate::data::is_tabular(&args.data);
    if tabular && args.calibrate {
        anyhow::bail!(
            "--calibrate reads images (pixels / 255): a float model on a table is not calibrated \
             here yet; export it with quantizers (Brevitas) and import it without --calibrate"
        );
    }
    let images = match tabular {
        false => Some(crate::data::load(&args.data)?),
        true => None,
    };
    let (mut model, notes) = match &images {
        Some(data) if args.calibrate => calibrate(args, data)?,
        _ => Model::from_onnx_with(&args.model, args.poly_size).map_err(|e| {
            let float = matches!(&e, qfhe::Error::Config { field: "model", value, .. } if value.contains("float graph"));
            let e = anyhow::Error::new(e).context(format!("importing {}", args.model.display()));
            if float {
                e.context("a float model (no quantizers in the file) is quantized here: pass --calibrate, and --fine-tune-epochs N to fine-tune it")
            } else {
                e
            }
        })?,
    };
    eprintln!("imported {}:", args.model.display());
    for n in &notes {
        eprintln!("  {n}");
    }
    eprintln!("  model: {}", model.info().model.arch());
    let inputs: usize = model.info().model.input.iter().product();
    let (set_source, fp32) = match &images {
        Some(data) => {
            if inputs != data.test.pixels() {
                anyhow::bail!(
                    "the model takes {inputs} inputs but {} images have {} pixels",
                    data.name,
                    data.test.pixels()
                );
            }
            model.set_dataset(data.name.clone());
            let fp32 = model.reference_accuracy(&data.test)?;
            (Source::Images(data), fp32)
        }
        None => {
            let (_, test, name) =
                crate::tabular::load(&args.data, args.seed, Task::Classification)?;
            if inputs != test.width() {
                anyhow::bail!(
                    "the model takes {inputs} inputs but {name} has {} features per row",
                    test.width()
                );
            }
            model.set_dataset(name.clone());
            let fp32 = model.reference_accuracy_table(&test)?;
            (Source::Table(test, name), fp32)
        }
    };
    let fp32 = fp32.expect("an imported model has a float reference");
    eprintln!(
        "the file's model in floating point (every quantizer applied): accuracy {fp32:.4} on the test {}",
        if tabular { "rows" } else { "images" }
    );
    let circuit = model.circuit()?;
    model.save(&args.out)?;
    circuit.save(&args.out.join("circuit.json"))?;
    eprintln!(
        "circuit exported ({} PBS per sample) to {}",
        circuit.pbs_count(),
        args.out.join("circuit.json").display()
    );
    let set = match set_source {
        Source::Images(data) => EvalSet::images(&circuit, data)?,
        Source::Table(test, name) => EvalSet {
            name,
            codes: qfhe::tabular::codes(&circuit, &test)?,
            targets: qfhe::tabular::targets(&test),
            metric: Metric::Accuracy,
            fp32: Some(fp32),
        },
    };
    let report =
        evaluate(&circuit, &set, &args.fhe, &model.info().name).map_err(advice_for_imports)?;
    finish(&report, &args.out)?;
    println!("total wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(report)
}

/// Where the test samples come from.
enum Source<'a> {
    Images(&'a Dataset),
    Table(qfhe::Table, String),
}

/// A float model quantized here: calibration, then `--fine-tune-epochs` of QAT.
fn calibrate(args: &ImportArgs, data: &Dataset) -> anyhow::Result<(Model, Vec<String>)> {
    let quant = QuantSpec {
        w_bits: args.w_bits,
        out_w_bits: args.out_w_bits,
        a_bits: args.a_bits,
        in_bits: args.in_bits,
    };
    let mut cfg = FitConfig {
        poly_size: args.poly_size,
        ..FitConfig::default()
    };
    cfg.train.qat_epochs = args.fine_tune_epochs;
    cfg.train.seed = args.seed;
    eprintln!(
        "calibrating {} on {} ({} training images), w{}/a{}, then {} fine-tuning epochs",
        args.model.display(),
        data.name,
        data.train.len(),
        quant.w_bits,
        quant.a_bits,
        args.fine_tune_epochs
    );
    let mut shown = crate::progress::TrainProgress::default();
    let (model, notes) =
        Model::calibrate_onnx(&args.model, quant, data, &cfg, &mut |e| shown.show(e))
            .with_context(|| format!("importing {}", args.model.display()))?;
    eprintln!(
        "quantized forward after calibration{}: accuracy {:.4}",
        if args.fine_tune_epochs > 0 {
            " and fine-tuning"
        } else {
            ""
        },
        model.info().qat_accuracy
    );
    Ok((model, notes))
}

/// A model trained elsewhere cannot be retrained with a wider minimum table step: say what an
/// importer can change instead.
fn advice_for_imports(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<CompileError>() {
        Some(CompileError::NoiseTooHigh {
            layer,
            neuron,
            log2_p,
            target,
            ..
        }) => anyhow!(
            "{layer}, neuron {neuron}: gross-error probability per PBS is 2^{log2_p:.1}, above \
             the target 2^{target:.0}: the model's activation steps are narrow against the FHE \
             noise, which it was not trained with. Accept a higher probability per PBS \
             (--p-error-log2 {:.0}; Concrete ML's default is about 2^-14), use the parameter set \
             with 4× wider table steps (--poly-size 8192; each PBS about 7× slower), or retrain \
             with every activation step spanning more accumulator units (see \"Bring a PyTorch \
             model\" in the README)",
            (log2_p + 1.0).ceil()
        ),
        _ => e,
    }
}
