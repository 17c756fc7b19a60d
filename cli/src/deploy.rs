//! The client and server halves as separate commands over files: `keygen`, `encrypt`, `infer`
//! (server side), `decrypt`.

use crate::args::{DecryptArgs, EncryptArgs, InferArgs, KeygenArgs};
use anyhow::{bail, Context};
use qfhe_circuit::Circuit;
use qfhe_fhe_runtime::keys::params_of;
use qfhe_fhe_runtime::wire::hex;
use qfhe_fhe_runtime::{Client, ClientKey, CompressedEvalKey, InputBatch, OutputBatch, Server};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// `A..B` (B exclusive) as a range of test-set indices.
pub fn parse_range(text: &str) -> Result<Range<usize>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("'{text}' is not a range; write A..B, e.g. 0..10"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("'{a}' in '{text}' is not an index"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("'{b}' in '{text}' is not an index"))?;
    if a >= b {
        return Err(format!(
            "the range {a}..{b} is empty; write A..B with A < B"
        ));
    }
    Ok(a..b)
}

/// The input codes of test images `range` of `data` for `circuit`, after checking that the
/// range exists and the images have the circuit's input width.
pub fn test_codes(
    circuit: &Circuit,
    data: &qfhe::Dataset,
    range: Range<usize>,
) -> anyhow::Result<Vec<Vec<i32>>> {
    if range.end > data.test.len() {
        bail!(
            "test images {}..{} go past the {} test images",
            range.start,
            range.end,
            data.test.len()
        );
    }
    if data.test.pixels() != circuit.features() {
        bail!(
            "test images have {} pixels but the circuit takes {} inputs",
            data.test.pixels(),
            circuit.features()
        );
    }
    Ok(range
        .map(|i| circuit.input_codes(data.test.image(i)))
        .collect())
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

pub fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let circuit = Circuit::load(&args.circuit)?;
    let params = params_of(&circuit)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let client_path = args.out.join("client.key");
    if client_path.exists() && !args.force {
        bail!(
            "{} exists; keep it, or pass --force to replace it (ciphertexts under the old key will no longer decrypt)",
            client_path.display()
        );
    }
    eprintln!("generating keys ({})…", params.name);
    let t = Instant::now();
    let (ck, ek) = ClientKey::generate_compressed_for(params, &circuit);
    let eval_path = args.out.join("eval.key");
    ck.save(&client_path, &circuit)?;
    ek.save(&eval_path, &circuit)?;
    println!(
        "key {} generated in {:.2} s\n  {} ({} bytes, secret: keep it on the client)\n  {} ({} bytes, send it to the server)",
        hex(&ck.key_id()),
        t.elapsed().as_secs_f64(),
        client_path.display(),
        file_size(&client_path),
        eval_path.display(),
        file_size(&eval_path)
    );
    Ok(())
}

pub fn encrypt(args: &EncryptArgs) -> anyhow::Result<()> {
    let circuit = Arc::new(Circuit::load(&args.circuit)?);
    let ck = Arc::new(ClientKey::load(&args.keys.join("client.key"), &circuit)?);
    let client = Client::new(ck.clone(), circuit.clone())?;
    let data = crate::data::load(&args.data)?;
    let samples = test_codes(&circuit, &data, args.test_index.clone())?;
    let batch = client.encrypt_batch(&samples)?;
    batch.save(&args.out, &circuit)?;
    let bytes = file_size(&args.out);
    println!(
        "{} samples encrypted under key {} → {} ({bytes} bytes, {:.0} bytes per sample)",
        samples.len(),
        hex(&ck.key_id()),
        args.out.display(),
        bytes as f64 / samples.len() as f64
    );
    Ok(())
}

pub fn infer(args: &InferArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global();
    }
    let circuit = Arc::new(Circuit::load(&args.circuit)?);
    let t = Instant::now();
    let key = CompressedEvalKey::load(&args.eval_key, &circuit)?.decompress();
    let load_s = t.elapsed().as_secs_f64();
    let server = Server::with_backend(circuit.clone(), Arc::new(key), args.backend.backend()?)?;
    let inputs = InputBatch::load(&args.inputs, &circuit, args.max_batch)?;
    let t = Instant::now();
    let outputs = server.evaluate_message(&inputs)?;
    let eval_s = t.elapsed().as_secs_f64();
    outputs.save(&args.out, &circuit)?;
    println!(
        "{} samples evaluated in {eval_s:.2} s ({:.2} s per sample; key loaded in {load_s:.2} s) → {} ({} bytes)",
        inputs.len(),
        eval_s / inputs.len() as f64,
        args.out.display(),
        file_size(&args.out)
    );
    Ok(())
}

pub fn decrypt(args: &DecryptArgs) -> anyhow::Result<()> {
    let circuit = Arc::new(Circuit::load(&args.circuit)?);
    let ck = Arc::new(ClientKey::load(&args.keys.join("client.key"), &circuit)?);
    let client = Client::new(ck.clone(), circuit.clone())?;
    let outputs = OutputBatch::load(
        &args.outputs,
        &circuit,
        qfhe_fhe_runtime::messages::MAX_BATCH,
    )?;
    for (i, acc) in client.decrypt_batch(&outputs)?.iter().enumerate() {
        let logits = circuit.output.logits(acc);
        let prediction = qfhe_circuit::argmax(&logits);
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "sample": i, "prediction": prediction, "logits": logits })
            );
        } else {
            let shown: Vec<String> = logits.iter().map(|l| format!("{l:.2}")).collect();
            println!(
                "sample {i}: class {prediction}  logits [{}]",
                shown.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_and_bad_ones_say_why() {
        assert_eq!(parse_range("0..10"), Ok(0..10));
        assert_eq!(parse_range(" 5 .. 7"), Ok(5..7));
        assert!(parse_range("7..7").unwrap_err().contains("empty"));
        assert!(parse_range("10").unwrap_err().contains("A..B"));
        assert!(parse_range("a..3").unwrap_err().contains("not an index"));
        assert!(parse_range("-1..3").unwrap_err().contains("not an index"));
    }
}
