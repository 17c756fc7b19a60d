//! The HTTP halves: `serve` (the server), `predict` and `load-test` (clients).

use crate::args::{LoadTestArgs, PredictArgs};
use anyhow::{bail, Context};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::{Client, ClientKey};
use qfhe_server::{Remote, RemoteModel};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn serve(args: &qfhe_server::cli::ServeArgs) -> anyhow::Result<()> {
    qfhe_server::cli::run(args, |line| eprintln!("{line}"))?;
    eprintln!("stopped");
    Ok(())
}

/// A connected client: the circuit, and the remote model under this client's keys.
fn connect(
    server: &str,
    circuit_path: &Path,
    keys: &Path,
    timeout_s: u64,
) -> anyhow::Result<(Arc<Circuit>, RemoteModel)> {
    let circuit = Arc::new(Circuit::load(circuit_path)?);
    let ck = ClientKey::load(&keys.join("client.key"), &circuit)
        .with_context(|| format!("run `qfhe keygen --out {}` first", keys.display()))?;
    let client = Client::new(Arc::new(ck), circuit.clone())?;
    let remote = Remote::new(server, Duration::from_secs(timeout_s))?;
    let model = RemoteModel::connect(remote, circuit.clone(), client, keys)?;
    Ok((circuit, model))
}

/// A sample to send: its test-set index (if any), label (if known) and input codes.
struct Sample {
    index: Option<usize>,
    label: Option<u8>,
    codes: Vec<i32>,
}

fn test_samples(
    circuit: &Circuit,
    data: &crate::args::DataArgs,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<Sample>> {
    let data = crate::data::load(data)?;
    let codes = crate::deploy::test_codes(circuit, &data, range.clone())?;
    Ok(range
        .zip(codes)
        .map(|(i, codes)| Sample {
            index: Some(i),
            label: Some(data.test.labels[i]),
            codes,
        })
        .collect())
}

pub fn predict(args: &PredictArgs) -> anyhow::Result<()> {
    let (circuit, model) = connect(&args.server, &args.circuit, &args.keys, args.timeout_s)?;
    let samples = match &args.image {
        Some(path) => vec![Sample {
            index: None,
            label: None,
            codes: circuit.input_codes(&crate::image::gray_pixels(path, circuit.features())?),
        }],
        None => test_samples(&circuit, &args.data, args.test_index.clone())?,
    };
    let mut latencies = Vec::with_capacity(samples.len());
    let (mut agree, mut correct, mut labelled) = (0usize, 0usize, 0usize);
    for s in &samples {
        let exact = circuit.run_exact(&s.codes)?.prediction;
        let start = Instant::now();
        let answer = model.predict(std::slice::from_ref(&s.codes))?;
        let latency = start.elapsed().as_secs_f64();
        let logits = circuit.output.logits(&answer.accumulators[0]);
        let prediction = qfhe_circuit::argmax(&logits);
        latencies.push(latency);
        agree += usize::from(prediction == exact);
        if let Some(l) = s.label {
            labelled += 1;
            correct += usize::from(prediction == l as usize);
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "index": s.index,
                    "prediction": prediction,
                    "exact_prediction": exact,
                    "latency_s": latency,
                    "upload_bytes": answer.upload_bytes,
                    "download_bytes": answer.download_bytes,
                    "label": s.label,
                    "server_s": answer.server_seconds,
                    "logits": logits,
                })
            );
        } else {
            let shown: Vec<String> = logits.iter().map(|l| format!("{l:.2}")).collect();
            let name = s
                .index
                .map_or("image".to_owned(), |i| format!("test image {i}"));
            println!(
                "{name}: class {prediction} (exact circuit: {exact})  logits [{}]  {latency:.2} s, {} B up, {} B down",
                shown.join(", "),
                answer.upload_bytes,
                answer.download_bytes
            );
        }
    }
    if samples.len() > 1 {
        let n = samples.len();
        eprintln!(
            "{n} samples: agreement with the exact circuit {:.3}{}, latency median {:.2} s (min {:.2}, max {:.2})",
            agree as f64 / n as f64,
            if labelled > 0 {
                format!(", accuracy {:.3}", correct as f64 / labelled as f64)
            } else {
                String::new()
            },
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.0),
            percentile(&latencies, 1.0)
        );
    }
    Ok(())
}

/// The `q`-quantile of `values` (nearest rank), 0 when empty.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// One load-test request's result.
struct Outcome {
    latency_s: f64,
    equals_exact: bool,
    correct: bool,
}

pub fn load_test(args: &LoadTestArgs) -> anyhow::Result<()> {
    let (circuit, model) = connect(&args.server, &args.circuit, &args.keys, args.timeout_s)?;
    let total = args
        .clients
        .checked_mul(args.requests)
        .context("--clients × --requests overflows")?;
    let samples = test_samples(&circuit, &args.data, 0..total)?;
    let exact: Vec<usize> = samples
        .iter()
        .map(|s| circuit.run_exact(&s.codes).map(|t| t.prediction))
        .collect::<Result<_, _>>()?;
    let bar = crate::progress::bar(
        total,
        "requests",
        "{prefix:>8} [{bar:30}] {pos}/{len} (eta {eta})",
    );
    let start = Instant::now();
    let results: Vec<Vec<Result<Outcome, String>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                let (model, samples, exact, bar, circuit) =
                    (&model, &samples, &exact, &bar, &circuit);
                scope.spawn(move || {
                    (c * args.requests..(c + 1) * args.requests)
                        .map(|i| {
                            let t = Instant::now();
                            let r = model
                                .predict(std::slice::from_ref(&samples[i].codes))
                                .map_err(|e| e.to_string())
                                .map(|a| {
                                    let p = qfhe_circuit::argmax(
                                        &circuit.output.logits(&a.accumulators[0]),
                                    );
                                    let label = samples[i].label.map(usize::from);
                                    Outcome {
                                        latency_s: t.elapsed().as_secs_f64(),
                                        equals_exact: p == exact[i],
                                        correct: Some(p) == label,
                                    }
                                });
                            bar.inc(1);
                            r
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mut latencies = Vec::new();
    let (mut agree, mut correct, mut errors) = (0, 0, Vec::new());
    for r in results.into_iter().flatten() {
        match r {
            Ok(o) => {
                latencies.push(o.latency_s);
                agree += usize::from(o.equals_exact);
                correct += usize::from(o.correct);
            }
            Err(e) => errors.push(e),
        }
    }
    let health = model.remote().health().ok();
    println!(
        "load test: {} clients × {} requests (1 sample each) on {}",
        args.clients, args.requests, args.server
    );
    println!(
        "  answers: {} ok, {} failed; equal to the exact circuit: {agree}/{total} (a difference is PBS noise, as in `qfhe eval`); correct labels: {correct}/{total}",
        latencies.len(),
        errors.len()
    );
    println!(
        "  latency p50 {:.2} s, p95 {:.2} s, max {:.2} s; throughput {:.3} samples/s ({total} in {wall:.1} s)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 1.0),
        latencies.len() as f64 / wall
    );
    match health {
        Some(h) => println!(
            "  server: {} threads, peak RSS {}, {} keys cached ({:.1} MB)",
            h.threads,
            h.peak_rss_bytes
                .map_or("unknown".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
            h.keys_cached,
            h.key_cache_bytes as f64 / 1e6
        ),
        None => println!("  server: health not available"),
    }
    if let Some(e) = errors.first() {
        bail!("{} requests failed; the first: {e}", errors.len());
    }
    Ok(())
}
