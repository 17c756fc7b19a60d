//! `qfhe eval --inputs X.npy --outputs Y.npy`: a circuit run on inputs given as a NumPy array,
//! so a model's predictions can be checked against the framework it was trained in.

use crate::args::{EvalArgs, EvalMode};
use anyhow::{bail, Context};
use npyz::WriterBuilder;
use qfhe_circuit::{Circuit, NoiseModel};
use qfhe_fhe_runtime::{Client, ClientKey, FheParams, Server};
use rand::SeedableRng;
use rayon::prelude::*;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

/// Largest input array read, in bytes (1 GiB).
const MAX_NPY_BYTES: u64 = 1 << 30;

/// Read `path` as float32 (or float64) samples `[n, …]` whose trailing dimensions hold
/// `features` values: the values, row-major, and `n`.
fn read_inputs(path: &Path, features: usize) -> anyhow::Result<(Vec<f32>, usize)> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_NPY_BYTES {
        bail!(
            "{} is {len} bytes; inputs are read up to {MAX_NPY_BYTES} bytes (split the array)",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a NumPy .npy file", path.display()))?;
    let shape = file.shape().to_vec();
    let elements = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .filter(|&e| e.saturating_mul(4) <= len)
        .with_context(|| {
            format!(
                "{}: shape {shape:?} holds more values than the file",
                path.display()
            )
        })?;
    let n = *shape
        .first()
        .context("a 0-dimensional array has no samples")? as usize;
    if n == 0 || elements as usize != n * features {
        bail!(
            "{}: shape {shape:?}; the circuit takes samples of {features} values: give [n, {features}] or [n, channels, height, width] with n ≥ 1",
            path.display()
        );
    }
    let values: Vec<f32> = match file.try_data::<f32>() {
        Ok(data) => data.collect::<std::io::Result<_>>()?,
        Err(file) => match file.try_data::<f64>() {
            Ok(data) => data
                .map(|v| v.map(|x| x as f32))
                .collect::<std::io::Result<_>>()?,
            Err(file) => bail!(
                "{}: element type {}; give float32 (np.float32) inputs",
                path.display(),
                file.dtype().descr()
            ),
        },
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: sample {} value {} is not a finite number",
            path.display(),
            i / features,
            i % features
        );
    }
    Ok((values, n))
}

/// The input codes of one sample: through the circuit's input quantizer, or, for a circuit
/// that reads 8-bit images, as pixels `round(255 · x)` of values on `[0, 1]`.
fn codes(circuit: &Circuit, x: &[f32]) -> anyhow::Result<Vec<i32>> {
    if circuit.input.quantizer.is_some() {
        return Ok(circuit.encode_features(x)?);
    }
    let pixels: Vec<u8> = x
        .iter()
        .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    Ok(circuit.input_codes(&pixels))
}

/// Evaluate `args.circuit` on the samples of `inputs` in `args.mode` and write their outputs
/// (the dequantized logits, `[n, outputs]` float32) to `outputs`.
pub fn eval_arrays(args: &EvalArgs, inputs: &Path, outputs: &Path) -> anyhow::Result<()> {
    let circuit = Circuit::load(&args.circuit)?;
    let features = circuit.features();
    let (x, n) = read_inputs(inputs, features)?;
    let codes: Vec<Vec<i32>> = x
        .chunks_exact(features)
        .map(|row| codes(&circuit, row))
        .collect::<anyhow::Result<_>>()?;
    let params = FheParams::by_poly_size(circuit.encoding.poly_size)
        .with_context(|| format!("no parameter set for N = {}", circuit.encoding.poly_size))?;
    let logits: Vec<Vec<f32>> = match args.mode {
        EvalMode::Exact => codes
            .par_iter()
            .map(|c| Ok(circuit.run_exact(c)?.logits))
            .collect::<anyhow::Result<_>>()?,
        EvalMode::Simulate => {
            let noise = NoiseModel::new(&circuit, &params.noise_spec());
            codes
                .par_iter()
                .enumerate()
                .map(|(i, c)| {
                    let seed = args.fhe.noise_seed.wrapping_mul(1_000_003) + i as u64;
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                    Ok(noise.run(&circuit, c, &mut rng)?.logits)
                })
                .collect::<anyhow::Result<_>>()?
        }
        EvalMode::Fhe => fhe_logits(&circuit, params, &codes, args)?,
    };
    let classes = logits.first().map_or(0, Vec::len);
    let file = std::fs::File::create(outputs)
        .with_context(|| format!("creating {}", outputs.display()))?;
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[n as u64, classes as u64])
        .writer(BufWriter::new(file))
        .begin_nd()?;
    writer.extend(logits.iter().flatten().copied())?;
    writer.finish()?;
    let predicted: Vec<usize> = logits
        .iter()
        .map(|l| circuit.output.predicted_value(l) as usize)
        .collect();
    println!(
        "{n} samples evaluated ({}) → {} ([{n}, {classes}] float32); predictions of the first {}: {:?}",
        args.mode.name(),
        outputs.display(),
        predicted.len().min(10),
        &predicted[..predicted.len().min(10)]
    );
    Ok(())
}

fn fhe_logits(
    circuit: &Circuit,
    params: FheParams,
    codes: &[Vec<i32>],
    args: &EvalArgs,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let backend = args.fhe.backend.backend()?;
    eprintln!("generating keys ({})…", params.name);
    let (client_key, eval_key) = ClientKey::generate_for(params, circuit);
    let shared = Arc::new(circuit.clone());
    let server = Server::with_backend(shared.clone(), Arc::new(eval_key), backend)?;
    let client = Client::new(Arc::new(client_key), shared)?;
    let pb = crate::progress::bar(
        codes.len(),
        "FHE",
        "{prefix:>8} [{bar:30}] {pos}/{len} (eta {eta})",
    );
    let mut out = Vec::with_capacity(codes.len());
    for c in codes {
        let ct = client.encrypt(c)?;
        let result = server.evaluate_batch(&[ct.as_slice()], false)?;
        let acc = client.decrypt_output(&result[0].output)?;
        out.push(circuit.output.logits(&acc));
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(out)
}
