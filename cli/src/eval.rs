//! `qfhe eval` and `qfhe run`: simulation, compilation, real FHE, and the report.

use crate::args::{EvalArgs, FheArgs, RunArgs};
use crate::report::{layer_table, FheReport, Latency, Report, TraceLayer};
use anyhow::Context;
use qfhe::Dataset;
use qfhe_circuit::simulate::{stage_decode_error, ExactTrace};
use qfhe_circuit::{Circuit, Metric, NoiseModel};
use qfhe_fhe_runtime::{compile, Client, ClientKey, FheParams, Server};
use rand::SeedableRng;
use rayon::prelude::*;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

/// Number of samples the trace compares (each decrypts every stage).
const TRACE_SAMPLES: usize = 10;
/// Noise draws per traced sample for the noise model's prediction.
const TRACE_DRAWS: u64 = 200;

/// The test samples an evaluation runs: input codes, targets and how to score them.
pub struct EvalSet {
    /// Dataset name for the report.
    pub name: String,
    /// Input codes per sample.
    pub codes: Vec<Vec<i32>>,
    /// Target per sample (class index or value).
    pub targets: Vec<f64>,
    /// The score reported.
    pub metric: Metric,
    /// The fp32 model's score on the same samples, when known.
    pub fp32: Option<f64>,
}

impl EvalSet {
    /// The test images of `data`, scored by accuracy.
    pub fn images(circuit: &Circuit, data: &Dataset) -> anyhow::Result<Self> {
        if data.test.pixels() != circuit.features() {
            anyhow::bail!(
                "test images have {} pixels but the circuit takes {} inputs",
                data.test.pixels(),
                circuit.features()
            );
        }
        Ok(Self {
            name: data.name.clone(),
            codes: (0..data.test.len())
                .map(|i| circuit.input_codes(data.test.image(i)))
                .collect(),
            targets: data.test.labels.iter().map(|&l| l as f64).collect(),
            metric: Metric::Accuracy,
            fp32: circuit.meta.fp32_accuracy,
        })
    }
}

/// Simulate, compile, run FHE, and build the report.
pub fn evaluate(
    circuit: &Circuit,
    set: &EvalSet,
    fhe: &FheArgs,
    model: &str,
) -> anyhow::Result<Report> {
    let threads = fhe
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The pool may already exist (tests, a second call): then it is reused as it is.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let threads = rayon::current_num_threads();
    let backend = fhe.backend.backend()?;
    let codes = &set.codes;
    let targets = &set.targets;
    let metric = set.metric;
    let value = |logits: &[f32]| circuit.output.predicted_value(logits);

    let exact: Vec<ExactTrace> = codes
        .par_iter()
        .map(|x| circuit.run_exact(x))
        .collect::<Result<_, _>>()?;
    let exact_pred: Vec<f64> = exact.iter().map(|t| value(&t.logits)).collect();
    let quantized_accuracy = metric.score(&exact_pred, targets);

    let params = FheParams::by_poly_size(circuit.encoding.poly_size).with_context(|| {
        format!(
            "no vetted parameter set for N = {}",
            circuit.encoding.poly_size
        )
    })?;
    let analysis_samples: Vec<Vec<i32>> = codes.iter().take(1000).cloned().collect();
    let compiled = compile(circuit, &params, fhe.p_error_log2, &analysis_samples)?;
    let noise = NoiseModel::new(circuit, &compiled.noise);
    let sim_pred: Vec<f64> = codes
        .par_iter()
        .enumerate()
        .map(|(i, x)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                fhe.noise_seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add(i as u64),
            );
            noise.run(circuit, x, &mut rng).map(|t| value(&t.logits))
        })
        .collect::<Result<_, _>>()?;
    let simulated_accuracy = metric.score(&sim_pred, targets);
    println!(
        "\n{} on {}: quantized (exact circuit) {} {:.4}, simulated (noise model) {:.4} on {} test samples",
        circuit.meta.arch,
        set.name,
        metric.name(),
        quantized_accuracy,
        simulated_accuracy,
        targets.len()
    );

    eprintln!("generating keys ({})…", params.name);
    let t = Instant::now();
    let (client_key, eval_key) = ClientKey::generate_for(params, circuit);
    let keygen_s = t.elapsed().as_secs_f64();
    let shared = std::sync::Arc::new(circuit.clone());
    let server = Server::with_backend(shared.clone(), std::sync::Arc::new(eval_key), backend)?;
    let client = Client::new(std::sync::Arc::new(client_key), shared)?;
    // ~0.3 s per thread. 8 PBS measured 9.8 ms per PBS against 10.9 ms over a whole CNN sample
    // (1344 PBS); 32 measured 9.7 ms against 10.3 ms (1120 PBS): the estimate stays a lower bound.
    let seconds_per_pbs = server.seconds_per_pbs(16 * threads);
    let estimated = seconds_per_pbs * circuit.pbs_count() as f64;
    println!(
        "\nparameters {} (N = {}), noise at a PBS input: σ = {:.2} slots (KS + centered MS), PBS output σ = {:.3} slots",
        params.name,
        params.poly_size(),
        compiled.noise.base_sigma_slots,
        compiled.noise.pbs_sigma_slots
    );
    println!("keys generated in {keygen_s:.2} s; evaluation keys {:.1} MB; measured {:.1} ms per KS+PBS over {threads} threads, {}\n", server.key().size_bytes() as f64 / 1e6, seconds_per_pbs * 1e3, backend.describe());
    print!("{}", layer_table(&compiled.layers, Some(seconds_per_pbs)));
    println!(
        "\nworst gross-error probability per PBS 2^{:.1} (target 2^{:.0}); estimated FHE latency {:.2} s per sample ({} PBS)\n",
        compiled.log2_p_error,
        fhe.p_error_log2,
        estimated,
        circuit.pbs_count()
    );

    let n = fhe.fhe_samples.min(codes.len());
    let pb = crate::progress::bar(
        n,
        "FHE",
        "{prefix:>8} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
    );
    let mut latencies = Vec::with_capacity(n);
    let mut fhe_pred = Vec::with_capacity(n);
    let mut hidden_decrypted = Vec::new();
    let batch = fhe.fhe_batch.max(1);
    let mut peak_ciphertexts = 0;
    for (chunk_idx, chunk) in codes[..n].chunks(batch).enumerate() {
        let first = chunk_idx * batch;
        let keep_hidden = fhe.trace && first < TRACE_SAMPLES;
        let t = Instant::now();
        let cts = chunk
            .iter()
            .map(|x| client.encrypt(x))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[_]> = cts.iter().map(Vec::as_slice).collect();
        let outs = server.evaluate_batch(&refs, keep_hidden)?;
        let preds: Vec<f64> = outs
            .iter()
            .map(|out| {
                let acc = client.decrypt_output(&out.output)?;
                Ok(value(&circuit.output.logits(&acc)))
            })
            .collect::<anyhow::Result<_>>()?;
        let seconds = t.elapsed().as_secs_f64();
        for (k, (out, pred)) in outs.iter().zip(preds).enumerate() {
            let i = first + k;
            latencies.push(seconds);
            fhe_pred.push(pred);
            peak_ciphertexts = peak_ciphertexts.max(out.peak_ciphertexts);
            if keep_hidden && i < TRACE_SAMPLES {
                hidden_decrypted.push(
                    out.stages
                        .iter()
                        .enumerate()
                        .map(|(l, c)| client.decrypt_stage(l, c))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
        }
        let i = first + chunk.len() - 1;
        let agree = qfhe::agreement(set.metric, &fhe_pred, &exact_pred);
        pb.set_message(format!(
            "agreement {:.3}, last {:.2} s",
            agree, latencies[i]
        ));
        pb.inc(chunk.len() as u64);
        if !std::io::stderr().is_terminal() && ((i + 1) / 10 > first / 10 || i + 1 == n) {
            eprintln!(
                "  FHE {}/{n}: agreement with exact {:.3}, last {} {:.2} s",
                i + 1,
                agree,
                if batch > 1 { "batch" } else { "sample" },
                latencies[i]
            );
        }
    }
    pb.finish_and_clear();

    let trace = fhe.trace.then(|| {
        trace_report(
            circuit,
            &noise,
            codes,
            &exact,
            &hidden_decrypted,
            fhe.noise_seed,
            compiled.noise.pbs_sigma_slots,
        )
    });
    if let Some(t) = &trace {
        println!(
            "trace over {} samples: activations differing from the exact circuit",
            hidden_decrypted.len()
        );
        println!("| layer | activations | measured (FHE) | predicted (noise model) | ratio | of which table flips | decryption of the PBS output |\n|---|---|---|---|---|---|---|");
        for l in t {
            println!(
                "| {} | {} | {:.2}% | {:.2}% | {:.2} | {:.2}% | {:.2}% |",
                l.layer,
                l.activations,
                100.0 * l.measured_flip_rate,
                100.0 * l.predicted_flip_rate,
                l.measured_flip_rate / l.predicted_flip_rate.max(1e-12),
                100.0 * l.table_flip_rate,
                100.0 * l.decode_error_rate
            );
        }
        println!();
    }
    let fhe_report = FheReport {
        samples: n,
        accuracy: metric.score(&fhe_pred, &targets[..n]),
        agreement_with_quantized: qfhe::agreement(set.metric, &fhe_pred, &exact_pred),
        latency_s: Latency::of(&latencies),
        threads,
        backend: backend.describe(),
        keygen_s,
        eval_key_bytes: server.key().size_bytes(),
        pbs_per_sample: circuit.pbs_count(),
        batch,
        peak_ciphertexts,
        ciphertext_bytes: server.ciphertext_bytes(),
        memory_per_sample_bytes: peak_ciphertexts * server.ciphertext_bytes(),
        params: params.name.to_owned(),
        log2_p_error: compiled.log2_p_error,
        seconds_per_pbs,
        estimated_latency_s: estimated,
        trace,
    };
    Ok(Report {
        dataset: set.name.clone(),
        model: model.to_owned(),
        metric: metric.name().to_owned(),
        arch: circuit.meta.arch.clone(),
        w_bits: circuit.meta.w_bits,
        a_bits: circuit.meta.a_bits,
        fp32_accuracy: set.fp32,
        quantized_accuracy,
        simulated_accuracy,
        simulated_agreement_with_quantized: qfhe::agreement(set.metric, &sim_pred, &exact_pred),
        test_samples: targets.len(),
        fhe: fhe_report,
        layers: compiled.layers,
    })
}

/// Per stage: the fraction of decrypted activations that differ from the exact circuit,
/// beside the noise model's expected fraction (Monte Carlo over the same inputs, so differences
/// propagated from earlier layers are predicted too).
fn trace_report(
    circuit: &Circuit,
    noise: &NoiseModel,
    codes: &[Vec<i32>],
    exact: &[ExactTrace],
    decrypted: &[Vec<Vec<i32>>],
    seed: u64,
    pbs_sigma_slots: f64,
) -> Vec<TraceLayer> {
    let layers = circuit.stages.len();
    let mut measured = vec![0usize; layers];
    let mut predicted = vec![0f64; layers];
    let mut count = vec![0usize; layers];
    for (s, dec) in decrypted.iter().enumerate() {
        for l in 0..layers {
            measured[l] += dec[l]
                .iter()
                .zip(&exact[s].stages[l])
                .filter(|(a, b)| a != b)
                .count();
            count[l] += dec[l].len();
        }
        let diffs: Vec<Vec<usize>> = (0..TRACE_DRAWS)
            .into_par_iter()
            .map(|d| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (s as u64) << 20 ^ d);
                let t = noise
                    .run(circuit, &codes[s], &mut rng)
                    .expect("the sample ran exactly, so it fits the circuit");
                (0..layers)
                    .map(|l| {
                        t.stages[l]
                            .iter()
                            .zip(&exact[s].stages[l])
                            .filter(|(a, b)| a != b)
                            .count()
                    })
                    .collect()
            })
            .collect();
        for d in diffs {
            for l in 0..layers {
                predicted[l] += d[l] as f64 / TRACE_DRAWS as f64;
            }
        }
    }
    (0..layers)
        .map(|l| {
            let table = predicted[l] / count[l].max(1) as f64;
            let decode = stage_decode_error(circuit, l, pbs_sigma_slots);
            TraceLayer {
                layer: circuit.stages[l].name(l),
                activations: count[l],
                measured_flip_rate: measured[l] as f64 / count[l].max(1) as f64,
                predicted_flip_rate: table + (1.0 - table) * decode,
                table_flip_rate: table,
                decode_error_rate: decode,
            }
        })
        .collect()
}

pub fn finish(report: &Report, out: &Path) -> anyhow::Result<()> {
    report.write(out)?;
    println!("{}", report.accuracy_table());
    println!(
        "report written to {} and {}",
        out.join("report.json").display(),
        out.join("report.md").display()
    );
    Ok(())
}

pub fn eval_command(args: &EvalArgs) -> anyhow::Result<()> {
    args.fhe.backend.backend()?;
    if let (Some(inputs), Some(outputs)) = (&args.inputs, &args.outputs) {
        return crate::arrays::eval_arrays(args, inputs, outputs);
    }
    let circuit = Circuit::load(&args.circuit)?;
    let set = if crate::data::is_tabular(&args.data) {
        crate::tabular::eval_set(&circuit, &args.data, args.seed, args.metric.as_deref())?
    } else {
        EvalSet::images(&circuit, &crate::data::load(&args.data)?)?
    };
    let name = args
        .circuit
        .file_stem()
        .map_or("circuit".into(), |s| s.to_string_lossy().into_owned());
    let report = evaluate(&circuit, &set, &args.fhe, &name)?;
    finish(&report, &args.out)
}

/// `qfhe run`: train, export, evaluate; the report is also written under `args.out`.
pub fn run_command(args: &RunArgs) -> anyhow::Result<Report> {
    // Refuse an unavailable backend before hours of training, not after.
    args.fhe.backend.backend()?;
    if crate::data::is_tabular(&args.data)
        || crate::tabular::is_tabular_model(&args.model.model)
        || args.import_xgboost.is_some()
    {
        return crate::tabular::run(args);
    }
    let start = Instant::now();
    let data = crate::data::load(&args.data)?;
    let model = crate::train_cmd::fit(&data, &args.model)?;
    model.save(&args.out)?;
    let circuit = model.circuit()?;
    circuit.save(&args.out.join("circuit.json"))?;
    eprintln!(
        "trained in {:.1} s; circuit exported ({} PBS per sample)",
        model.info().train_seconds,
        circuit.pbs_count()
    );
    let set = EvalSet::images(&circuit, &data)?;
    let report = evaluate(&circuit, &set, &args.fhe, &model.info().name)?;
    finish(&report, &args.out)?;
    println!("total wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(report)
}
