//! `qfhe run` on a table: fit a linear model (quantized into a PBS-free circuit) or a tree
//! ensemble (comparison and leaf PBS), and report fp32 / quantized / simulated / FHE scores like
//! the image models.

use crate::args::{DataArgs, RunArgs};
use crate::eval::{evaluate, finish, EvalSet};
use crate::report::Report;
use anyhow::{bail, Context};
use qfhe::datasets::{bundled, CsvOptions, Table, TargetColumn, Task};
use qfhe::{
    fit_linear, fit_trees, import_trees, load_xgboost, FitOn, LinearConfig, LinearKind, Metric,
    Readout, TreeKind, TreesConfig,
};
use qfhe_circuit::Circuit;
use std::time::Instant;

/// A model for tables.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Linear(LinearKind),
    Trees(TreeKind),
    /// A neural network (preset or model file) on the table's features.
    Network,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Linear(k) => k.name(),
            Self::Trees(k) => k.name(),
            Self::Network => "network",
        }
    }
}

/// The model `--model` names.
fn kind(model: &str) -> anyhow::Result<Kind> {
    Ok(match model {
        "linreg" => Kind::Linear(LinearKind::LinearRegression),
        "logreg" => Kind::Linear(LinearKind::LogisticRegression),
        "svm" => Kind::Linear(LinearKind::Svm),
        "tree" => Kind::Trees(TreeKind::Tree),
        "forest" => Kind::Trees(TreeKind::Forest),
        "boosting" => Kind::Trees(TreeKind::Boosting),
        "mlp" => Kind::Network,
        file if file.ends_with(".toml") || file.ends_with(".json") => Kind::Network,
        other => bail!(
            "--model {other} does not take tables yet; for tabular data use linreg, logreg, svm, tree, forest or boosting"
        ),
    })
}

/// The training and test tables of `--dataset` / `--data-csv` / `--data-dir`, with their
/// name: a table is split, an image set keeps its own split (pixels become features in
/// `[0, 1]`); a CSV's task follows the model.
pub fn load(data: &DataArgs, seed: u64, task: Task) -> anyhow::Result<(Table, Table, String)> {
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
        .split(data.test_fraction, seed)
        .with_context(|| format!("splitting {name} into training and test rows"))?;
    Ok((train, test, name))
}

/// The test rows of the table `data` names, split as `qfhe run --seed seed` split them, for
/// `circuit` (a regression when its readout is a value), scored by `metric` (default accuracy,
/// or r2 for a regression).
pub fn eval_set(
    circuit: &Circuit,
    data: &DataArgs,
    seed: u64,
    metric: Option<&str>,
) -> anyhow::Result<EvalSet> {
    let task = match circuit.output.readout {
        Readout::Value => Task::Regression,
        _ => Task::Classification,
    };
    let metric = metric_for(task, metric)?;
    let (_, test, name) = load(data, seed, task)?;
    Ok(EvalSet {
        name,
        codes: qfhe::tabular::codes(circuit, &test)?,
        targets: qfhe::tabular::targets(&test),
        metric,
        fp32: circuit.meta.fp32_accuracy,
    })
}

/// Whether `--model` names a model only tables take (a network takes both).
pub fn is_tabular_model(model: &str) -> bool {
    matches!(kind(model), Ok(Kind::Linear(_) | Kind::Trees(_)))
}

/// Hidden widths of a network on a table when `--hidden` is not given: one PBS per neuron, and
/// tables have few features.
const TABLE_HIDDEN: usize = 32;
/// Adam steps a network on a table gets in its fp32 phase when `--fp32-epochs` is not given
/// (tables are small: epochs are counted to reach this many steps), and QAT half as many.
const TABLE_FP32_STEPS: usize = 2000;

/// `qfhe run` for tables.
pub fn run(args: &RunArgs) -> anyhow::Result<Report> {
    let start = Instant::now();
    let imported = match &args.import_xgboost {
        Some(path) => Some(load_xgboost(path)?),
        None => None,
    };
    let model_name = match &imported {
        Some(_) => "xgboost",
        None => match kind(&args.model.model)? {
            Kind::Network => args.model.model.as_str(),
            k => k.name(),
        },
    };
    let kind = match &imported {
        Some(_) => Kind::Trees(TreeKind::Boosting),
        None => kind(&args.model.model)?,
    };
    let named = args.data.data_csv.is_none() && args.data.data_dir.is_none();
    let dataset_task = match named {
        true if args.data.dataset == "mnist" => Some(Task::Classification),
        true => bundled::task(&args.data.dataset),
        false if args.data.data_dir.is_some() => Some(Task::Classification),
        false => None,
    };
    let task = match kind {
        _ if imported.is_some() => match imported.as_ref().map(|e| e.readout) {
            Some(Readout::Value) => Task::Regression,
            _ => Task::Classification,
        },
        Kind::Linear(LinearKind::LinearRegression) => Task::Regression,
        Kind::Linear(_) | Kind::Network => Task::Classification,
        Kind::Trees(_) => dataset_task.unwrap_or(if args.metric.as_deref() == Some("r2") {
            Task::Regression
        } else {
            Task::Classification
        }),
    };
    if let Some(expected) = dataset_task {
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
    let metric = metric_for(task, args.metric.as_deref())?;
    let (train, test, name) = load(&args.data, args.model.seed, task)?;
    eprintln!(
        "fitting {model_name} on {name}: {} training rows, {} test rows, {} features",
        train.rows(),
        test.rows(),
        train.width()
    );
    let t = Instant::now();
    let targets = qfhe::tabular::targets(&test);
    let (mut circuit, fp32, model_json) = match kind {
        Kind::Linear(kind) => {
            let mut cfg = LinearConfig::new(kind);
            cfg.quant.in_bits = args.model.in_bits.unwrap_or(cfg.quant.in_bits);
            cfg.quant.w_bits = args.model.w_bits.unwrap_or(cfg.quant.w_bits);
            cfg.train.seed = args.model.seed;
            cfg.poly_size = args.model.poly_size;
            let model = fit_linear(&train, &name, &cfg)?;
            let fp32 = metric.score(&model.predict_float(&test)?, &targets);
            let json = serde_json::to_vec_pretty(model.float())?;
            (model.circuit().clone(), fp32, json)
        }
        Kind::Trees(kind) => {
            let mut cfg = TreesConfig::new(kind);
            cfg.quant.in_bits = args.model.in_bits.unwrap_or(cfg.quant.in_bits);
            cfg.quant.leaf_bits = args.model.w_bits.unwrap_or(cfg.quant.leaf_bits);
            cfg.trees.trees = args.trees.unwrap_or(cfg.trees.trees);
            cfg.trees.max_depth = args.max_depth.unwrap_or(cfg.trees.max_depth);
            cfg.trees.seed = args.model.seed;
            if let Some(leaf) = args.min_samples_leaf {
                cfg.trees.min_samples_leaf = leaf;
                cfg.leaf_candidates.clear();
            }
            cfg.fit_on = match args.tree_fit.as_str() {
                "codes" => FitOn::Codes,
                _ => FitOn::Values,
            };
            cfg.poly_size = args.model.poly_size;
            let model = match imported {
                Some(ensemble) => import_trees(ensemble, &train, &name, &cfg)?,
                None => fit_trees(&train, &name, &cfg)?,
            };
            if let Some(s) = model.leaf_selection() {
                let scores: Vec<String> = s
                    .scores
                    .iter()
                    .map(|(leaf, score)| format!("{leaf}: {score:.4}"))
                    .collect();
                eprintln!(
                    "min_samples_leaf {} chosen by {}-fold cross-validation on the training rows ({})",
                    s.chosen,
                    qfhe::FOLDS,
                    scores.join(", ")
                );
            }
            let float = model.predict_float(&test)?.unwrap_or_default();
            let fp32 = metric.score(&float, &targets);
            let json = serde_json::to_vec_pretty(model.codes())?;
            (model.circuit().clone(), fp32, json)
        }
        Kind::Network => {
            let (data, pixels) = qfhe::table_images(&train, &test, &name)?;
            let mut model_args = args.model.clone();
            model_args.hidden = model_args.hidden.or(Some(vec![TABLE_HIDDEN]));
            let batch = model_args.batch_size.min(train.rows().div_ceil(8)).max(1);
            model_args.batch_size = batch;
            let steps_per_epoch = train.rows().div_ceil(batch);
            model_args.fp32_epochs = model_args
                .fp32_epochs
                .or(Some(TABLE_FP32_STEPS.div_ceil(steps_per_epoch)));
            model_args.qat_epochs = model_args
                .qat_epochs
                .or(Some((TABLE_FP32_STEPS / 2).div_ceil(steps_per_epoch)));
            let model = crate::train_cmd::fit(&data, &model_args)?;
            model.save(&args.out)?;
            let mut circuit = model.circuit()?;
            qfhe::attach_feature_quantizer(&mut circuit, &pixels)?;
            let fp32 = model.info().fp32_accuracy;
            (circuit, fp32, Vec::new())
        }
    };
    let train_s = t.elapsed().as_secs_f64();
    circuit.meta.fp32_accuracy = Some(fp32);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    circuit.save(&args.out.join("circuit.json"))?;
    if !model_json.is_empty() {
        std::fs::write(args.out.join("model.json"), model_json)?;
    }
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
    let report = evaluate(&circuit, &set, &args.fhe, model_name)?;
    finish(&report, &args.out)?;
    println!("total wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(report)
}

/// The score `--metric` names for `task` (default accuracy, or r2 for a regression).
fn metric_for(task: Task, name: Option<&str>) -> anyhow::Result<Metric> {
    let metric = match name {
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
    Ok(metric)
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Classification => "classification",
        Task::Regression => "regression",
    }
}
