//! `qfhe table`: the results table of linear models, trees and networks, each row one `qfhe run`.

use crate::args::{Cli, Command, TableArgs};
use crate::report::{pct, score, seconds, Report};
use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// Scores published for the same model kind (fp32, quantized, FHE).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Published {
    pub fp32: f64,
    pub quantized: f64,
    pub fhe: f64,
}

/// Concrete ML 1.9 measured on a 2-core machine of this kind (its latency an upper bound:
/// the machine was loaded).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct ConcreteHere {
    pub fp32: f64,
    pub quantized: f64,
    pub latency_s: f64,
    pub pbs_per_sample: usize,
}

/// One row of the table: what to run and what to compare it with.
#[derive(Debug)]
pub struct RowSpec {
    /// Key for `--only` and the row's folder.
    pub key: &'static str,
    /// The model as the table names it.
    pub title: &'static str,
    /// `qfhe run` arguments (without `--fhe-samples` and `--out`).
    pub args: &'static [&'static str],
    /// FHE samples (capped by the test set and `--max-fhe-samples`).
    pub fhe_samples: usize,
    /// Concrete ML's FHE.org 2022 table, where it has this row.
    pub published: Option<Published>,
    /// What the published row used, when its dataset differs.
    pub published_note: Option<&'static str>,
    pub concrete_here: Option<ConcreteHere>,
}

/// The rows, cheapest first.
pub const ROWS: &[RowSpec] = &[
    RowSpec {
        key: "linreg-synthetic",
        title: "Linear Regression",
        args: &["--dataset", "synthetic-regression", "--model", "linreg"],
        fhe_samples: 100,
        published: Some(Published {
            fp32: 0.885,
            quantized: 0.873,
            fhe: 0.873,
        }),
        published_note: None,
        concrete_here: None,
    },
    RowSpec {
        key: "logreg-synthetic",
        title: "Logistic Regression",
        args: &["--dataset", "synthetic-classification", "--model", "logreg"],
        fhe_samples: 100,
        published: Some(Published {
            fp32: 0.90,
            quantized: 0.85,
            fhe: 0.85,
        }),
        published_note: None,
        concrete_here: None,
    },
    RowSpec {
        key: "tree-bc-f1",
        title: "Decision Tree",
        args: &[
            "--dataset",
            "breast-cancer",
            "--model",
            "tree",
            "--metric",
            "f1",
        ],
        fhe_samples: 100,
        published: Some(Published {
            fp32: 0.877,
            quantized: 0.887,
            fhe: 0.887,
        }),
        published_note: Some("spambase"),
        concrete_here: None,
    },
    RowSpec {
        key: "tree-bc",
        title: "Decision Tree",
        args: &["--dataset", "breast-cancer", "--model", "tree"],
        fhe_samples: 100,
        published: None,
        published_note: None,
        concrete_here: Some(ConcreteHere {
            fp32: 0.951,
            quantized: 0.930,
            latency_s: 2.09,
            pbs_per_sample: 100,
        }),
    },
    RowSpec {
        key: "mlp-iris",
        title: "Fully Connected NN",
        args: &[
            "--dataset",
            "iris",
            "--model",
            "mlp",
            "--a-bits",
            "4",
            "--hidden",
            "16",
        ],
        fhe_samples: 30,
        published: Some(Published {
            fp32: 1.0,
            quantized: 0.921,
            fhe: 0.921,
        }),
        published_note: None,
        concrete_here: Some(ConcreteHere {
            fp32: 0.974,
            quantized: 0.868,
            latency_s: 2.56,
            pbs_per_sample: 96,
        }),
    },
    RowSpec {
        key: "boosting-bc",
        title: "Gradient Boosting",
        args: &["--dataset", "breast-cancer", "--model", "boosting"],
        fhe_samples: 30,
        published: None,
        published_note: None,
        concrete_here: None,
    },
    RowSpec {
        key: "forest-bc",
        title: "Random Forest",
        args: &["--dataset", "breast-cancer", "--model", "forest"],
        fhe_samples: 30,
        published: None,
        published_note: None,
        concrete_here: None,
    },
    RowSpec {
        key: "logreg-mnist",
        title: "Logistic Regression",
        args: &["--dataset", "mnist", "--model", "logreg"],
        fhe_samples: 100,
        published: None,
        published_note: None,
        concrete_here: Some(ConcreteHere {
            fp32: 0.9256,
            quantized: 0.925,
            latency_s: 0.20,
            pbs_per_sample: 0,
        }),
    },
    RowSpec {
        key: "mlp-mnist",
        title: "Fully Connected NN",
        args: &[
            "--dataset",
            "mnist",
            "--model",
            "mlp",
            "--qat-noise-scale",
            "1.5",
        ],
        fhe_samples: 100,
        published: Some(Published {
            fp32: 0.98,
            quantized: 0.95,
            fhe: 0.95,
        }),
        published_note: None,
        concrete_here: Some(ConcreteHere {
            fp32: 0.9679,
            quantized: 0.9625,
            latency_s: 15.9,
            pbs_per_sample: 256,
        }),
    },
];

/// A measured row.
#[derive(Serialize, Debug)]
pub struct Row {
    pub key: String,
    pub model: String,
    pub dataset: String,
    pub metric: String,
    pub fp32: Option<f64>,
    pub quantized: f64,
    pub simulated: f64,
    pub fhe: f64,
    pub fhe_samples: usize,
    pub fhe_agreement: f64,
    /// Median FHE latency per sample (encrypt, evaluate, decrypt), seconds.
    pub latency_s: f64,
    pub pbs_per_sample: usize,
    /// Evaluation keys as the server holds them (Fourier BSK + KSK), bytes.
    pub eval_key_bytes: usize,
    /// Wall time of the whole row (training included), seconds.
    pub wall_s: f64,
    pub published: Option<Published>,
    pub published_dataset: Option<String>,
    pub concrete_ml_here: Option<ConcreteHere>,
}

/// The whole table as written to table.json.
#[derive(Serialize, Debug)]
pub struct Table<'a> {
    pub threads: usize,
    pub total_wall_s: f64,
    pub rows: &'a [Row],
}

fn selected(only: Option<&[String]>) -> anyhow::Result<Vec<&'static RowSpec>> {
    let Some(keys) = only else {
        return Ok(ROWS.iter().collect());
    };
    let known = || ROWS.iter().map(|r| r.key).collect::<Vec<_>>().join(", ");
    if keys.iter().any(|k| k == "list") {
        bail!("rows: {}", known());
    }
    keys.iter()
        .map(|k| {
            ROWS.iter()
                .find(|r| r.key == k)
                .with_context(|| format!("no row '{k}'; the rows are {}", known()))
        })
        .collect()
}

fn run_row(spec: &RowSpec, args: &TableArgs) -> anyhow::Result<Report> {
    let samples = args
        .max_fhe_samples
        .map_or(spec.fhe_samples, |m| m.min(spec.fhe_samples));
    let out = args.out.join("rows").join(spec.key);
    let mut argv: Vec<String> = ["qfhe", "run"].iter().map(|s| s.to_string()).collect();
    argv.extend(spec.args.iter().map(|s| s.to_string()));
    argv.extend(["--fhe-samples".into(), samples.to_string()]);
    argv.extend(["--out".into(), out.display().to_string()]);
    if let Some(t) = args.threads {
        argv.extend(["--threads".into(), t.to_string()]);
    }
    let Command::Run(run) = Cli::try_parse_from(&argv)?.command else {
        unreachable!("the argument list starts with `run`")
    };
    crate::eval::run_command(&run)
}

/// `qfhe table`.
pub fn table(args: &TableArgs) -> anyhow::Result<()> {
    let specs = selected(args.only.as_deref())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let start = Instant::now();
    let mut rows = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        eprintln!(
            "\n=== [{}/{}] {} — qfhe run {} ({:.0} s so far)",
            i + 1,
            specs.len(),
            spec.title,
            spec.args.join(" "),
            start.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let report = run_row(spec, args).with_context(|| format!("row {}", spec.key))?;
        rows.push(Row {
            key: spec.key.into(),
            model: spec.title.into(),
            dataset: report.dataset.clone(),
            metric: report.metric.clone(),
            fp32: report.fp32_accuracy,
            quantized: report.quantized_accuracy,
            simulated: report.simulated_accuracy,
            fhe: report.fhe.accuracy,
            fhe_samples: report.fhe.samples,
            fhe_agreement: report.fhe.agreement_with_quantized,
            latency_s: report.fhe.latency_s.median,
            pbs_per_sample: report.fhe.pbs_per_sample,
            eval_key_bytes: report.fhe.eval_key_bytes,
            wall_s: t.elapsed().as_secs_f64(),
            published: spec.published,
            published_dataset: spec.published_note.map(str::to_owned),
            concrete_ml_here: spec.concrete_here,
        });
        // Written after every row, so an interrupted table keeps what it measured.
        let table = Table {
            threads: rayon::current_num_threads(),
            total_wall_s: start.elapsed().as_secs_f64(),
            rows: &rows,
        };
        write(&table, &args.out)?;
    }
    let md = markdown(&rows, rayon::current_num_threads());
    println!("\n{md}");
    println!(
        "table written to {}, table.json and table.svg ({:.1} min)",
        args.out.join("table.md").display(),
        start.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn write(table: &Table, dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("table.json"), serde_json::to_vec_pretty(table)?)?;
    std::fs::write(dir.join("table.md"), markdown(table.rows, table.threads))?;
    crate::table_chart::draw(table.rows, &dir.join("table.svg"))
}

fn mib(bytes: usize) -> String {
    if bytes == 0 {
        return "none".into();
    }
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// table.md: the measured rows, then what they are compared with.
pub fn markdown(rows: &[Row], threads: usize) -> String {
    let mut s = String::from("# qfhe results table\n\n");
    s += "| model | dataset | metric | fp32 | quantized | simulated | FHE (samples) | FHE agreement | latency per sample | PBS per sample | evaluation keys |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in rows {
        let m = r.metric.as_str();
        let _ = writeln!(
            s,
            "| {} | {} | {m} | {} | {} | {} | {} ({}) | {} | {} | {} | {} |",
            r.model,
            r.dataset,
            r.fp32.map_or("–".into(), |v| score(m, v)),
            score(m, r.quantized),
            score(m, r.simulated),
            score(m, r.fhe),
            r.fhe_samples,
            pct(r.fhe_agreement),
            seconds(r.latency_s),
            r.pbs_per_sample,
            mib(r.eval_key_bytes)
        );
    }
    let _ = write!(
        s,
        "\nLatency: median per sample, encryption + evaluation + decryption, {threads} threads. \
         FHE agreement: FHE predictions equal to the exact circuit's (a regression value within \
         1% of the predictions' spread).\n\n## Compared with\n\n\
         | model | dataset | metric | Concrete ML, FHE.org 2022 (fp32 / quantized / FHE) | Concrete ML 1.9 on a 2-core machine (fp32 / quantized, latency, PBS) |\n|---|---|---|---|---|\n"
    );
    for r in rows {
        if r.published.is_none() && r.concrete_ml_here.is_none() {
            continue;
        }
        let m = r.metric.as_str();
        let published = r.published.map_or("–".into(), |p| {
            format!(
                "{} / {} / {}{}",
                score(m, p.fp32),
                score(m, p.quantized),
                score(m, p.fhe),
                r.published_dataset
                    .as_ref()
                    .map_or(String::new(), |d| format!(" (on {d})"))
            )
        });
        let here = r.concrete_ml_here.map_or("–".into(), |c| {
            format!(
                "{} / {}, {}, {} PBS",
                score(m, c.fp32),
                score(m, c.quantized),
                seconds(c.latency_s),
                c.pbs_per_sample
            )
        });
        let _ = writeln!(
            s,
            "| {} | {} | {m} | {published} | {here} |",
            r.model, r.dataset
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_as_run_arguments_and_keys_are_unique() {
        for (i, spec) in ROWS.iter().enumerate() {
            let mut argv = vec!["qfhe", "run"];
            argv.extend(spec.args);
            assert!(
                matches!(Cli::try_parse_from(&argv).unwrap().command, Command::Run(_)),
                "{}",
                spec.key
            );
            assert!(ROWS[..i].iter().all(|r| r.key != spec.key));
        }
    }

    #[test]
    fn unknown_rows_are_named_with_the_known_ones() {
        let only = vec!["tree-bc".to_string(), "nope".into()];
        let e = selected(Some(&only)).unwrap_err().to_string();
        assert!(e.contains("'nope'") && e.contains("mlp-mnist"), "{e}");
        assert_eq!(selected(Some(&only[..1])).unwrap().len(), 1);
        assert_eq!(selected(None).unwrap().len(), ROWS.len());
    }
}
