//! `qfhe run` on a table: fit a linear model, quantize it into a PBS-free circuit, and report
//! fp32 / quantized / simulated / FHE scores like the image models.

use crate::args::RunArgs;
use crate::eval::{evaluate, finish, EvalSet};
use anyhow::{bail, Context};
use qfhe::datasets::{bundled, CsvOptions, Table, TargetColumn, Task};
use qfhe::{fit_linear, LinearConfig, LinearKind, Metric};
use std::time::Instant;

/// The linear model `--model` names.
fn kind(model: &str) -> anyhow::Result<LinearKind> {
    Ok(match model {
        "linreg" => LinearKind::LinearRegression,
        "logreg" => LinearKind::LogisticRegression,
        "svm" => LinearKind::Svm,
        other => bail!(
            "--model {other} does not take tables yet; for tabular data use linreg, logreg or svm"
        ),
    })
}

/// The training and test tables of `--dataset` / `--data-csv` / `--data-dir`, with their
/// name: a table is split, an image set keeps its own split (pixels become features in
/// `[0, 1]`); a CSV's task follows the model.
fn load(args: &RunArgs, task: Task) -> anyhow::Result<(Table, Table, String)> {
    let data = &args.data;
    if !crate::data::is_tabular(data) {
        let images = crate::data::load(data)?;
        let classes = images.num_classes;
        return Ok((
            Table::from_images(&images.train, classes),
            Table::from_images(&images.test, classes),
            images.name,
        ));
    }
    let (table, name) = match &data.data_csv {
        Some(path) => {
            let mut opts = CsvOptions::new(task);
            if let Some(t) = &data.target {
                opts.target = t.parse::<TargetColumn>().expect("infallible");
            }
            let table = Table::load_csv(path, &opts)?;
            let name = path
                .file_name()
                .map_or("table".into(), |s| s.to_string_lossy().into_owned());
            (table, name)
        }
        None => (bundled::load(&data.dataset)?, data.dataset.clone()),
    };
    let (train, test) = table
        .split(data.test_fraction, args.model.seed)
        .with_context(|| format!("splitting {name} into training and test rows"))?;
    Ok((train, test, name))
}

/// Whether `--model` names a model for tables.
pub fn is_tabular_model(model: &str) -> bool {
    kind(model).is_ok()
}

/// `qfhe run` for tables.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let kind = kind(&args.model.model)?;
    let task = if kind.is_classifier() {
        Task::Classification
    } else {
        Task::Regression
    };
    let named = args.data.data_csv.is_none() && args.data.data_dir.is_none();
    let expected = match named {
        true if args.data.dataset == "mnist" => Some(Task::Classification),
        true => bundled::task(&args.data.dataset),
        false => None,
    };
    if let Some(expected) = expected {
        if expected != task {
            bail!(
                "{} is a {} dataset but {} is a {} model; pick a model for that task",
                args.data.dataset,
                task_name(expected),
                kind.name(),
                task_name(task)
            );
        }
    }
    let metric = match args.metric.as_deref() {
        Some(m) => Metric::from_name(m).expect("clap checked the name"),
        None if task == Task::Regression => Metric::R2,
        None => Metric::Accuracy,
    };
    if metric.is_classification() != (task == Task::Classification) {
        bail!(
            "--metric {} does not score a {}: use {}",
            metric.name(),
            task_name(task),
            if task == Task::Regression {
                "r2"
            } else {
                "accuracy or f1"
            }
        );
    }
    let (train, test, name) = load(args, task)?;
    let mut cfg = LinearConfig::new(kind);
    cfg.quant.in_bits = args.model.in_bits.unwrap_or(cfg.quant.in_bits);
    cfg.quant.w_bits = args.model.w_bits.unwrap_or(cfg.quant.w_bits);
    cfg.train.seed = args.model.seed;
    cfg.poly_size = args.model.poly_size;
    eprintln!(
        "fitting {} on {name}: {} training rows, {} test rows, {} features",
        kind.name(),
        train.rows(),
        test.rows(),
        train.width()
    );
    let t = Instant::now();
    let model = fit_linear(&train, &name, &cfg)?;
    let train_s = t.elapsed().as_secs_f64();
    let targets = qfhe::tabular::targets(&test);
    let fp32 = metric.score(&model.predict_float(&test)?, &targets);
    let mut circuit = model.circuit().clone();
    circuit.meta.fp32_accuracy = Some(fp32);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    circuit.save(&args.out.join("circuit.json"))?;
    std::fs::write(
        args.out.join("model.json"),
        serde_json::to_vec_pretty(model.float())?,
    )?;
    eprintln!(
        "trained in {train_s:.1} s (fp32 {} {fp32:.4}); circuit exported ({} inputs of {} bits, {} PBS per sample)",
        metric.name(),
        circuit.features(),
        circuit.input.bits,
        circuit.pbs_count()
    );
    let set = EvalSet {
        name,
        codes: qfhe::tabular::codes(&circuit, &test)?,
        targets,
        metric,
        fp32: Some(fp32),
    };
    let report = evaluate(&circuit, &set, &args.fhe, kind.name())?;
    finish(&report, &args.out)?;
    println!("total wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Classification => "classification",
        Task::Regression => "regression",
    }
}
