//! Trained circuits under real encryption compute what the circuit defines. Each stage the
//! server evaluates is compared with the exact table read of the values it actually received
//! (the decrypted earlier stages): they agree except for the off-by-one table reads the noise
//! model predicts, in the number it predicts; decrypted output accumulators lie within the
//! noise model's spread of the exact ones.

use qfhe::{fit, FitConfig, LayerSpec, LayerSpec::*, ModelSpec, QuantSpec};
use qfhe_circuit::{NoiseModel, Source};
use qfhe_fhe_runtime::{Client, ClientKey, Server};
use std::sync::Arc;

/// Burn's random generator is global: the tests of this binary train one at a time.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(input: Vec<usize>, layers: Vec<LayerSpec>, samples: usize) {
    let data = qfhe::datasets::synthetic::quadrants_dataset();
    let spec = ModelSpec {
        input,
        classes: 4,
        quant: QuantSpec::default(),
        layers,
    };
    let mut cfg = FitConfig::default();
    cfg.train.fp32_epochs = 3;
    cfg.train.qat_epochs = 2;
    cfg.train.batch_size = 64;
    cfg.train.lr = 3e-3;
    let model = {
        let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
        fit(&spec, &data, &cfg).unwrap()
    };
    let compiled = model.compile(&data.train).unwrap();
    let c = compiled.circuit();
    let noise = NoiseModel::new(c, &compiled.report().noise);
    let (client_key, eval_key) = ClientKey::generate(*compiled.params());
    let server = Server::new(Arc::new(c.clone()), Arc::new(eval_key)).unwrap();
    let client = Client::new(Arc::new(client_key), Arc::new(c.clone())).unwrap();
    let r = c.encoding.frac_bits;
    let (mut values, mut differing, mut expected) = (0usize, 0usize, 0f64);
    let mut distinct = std::collections::BTreeSet::new();
    for i in 0..samples {
        let x = c.input_codes(data.test.image(i));
        let out = server.evaluate(&client.encrypt(&x).unwrap()).unwrap();
        let decrypted: Vec<Vec<i32>> = (out.stages.iter().enumerate())
            .map(|(s, cts)| client.decrypt_stage(s, cts).unwrap())
            .collect();
        let read = |src| match src {
            Source::Input => x.as_slice(),
            Source::Stage(k) => decrypted[k].as_slice(),
        };
        for (s, stage) in c.stages.iter().enumerate() {
            let input = c.gather(&stage.gemm, read);
            for (j, n) in stage.neurons.iter().enumerate() {
                let acc = stage.gemm.accumulate(j, &input);
                let defined = n.level_at(n.encoding().slot(acc, r));
                values += 1;
                differing += usize::from(decrypted[s][j] != defined);
                expected += noise.flip_probability(c, s, j, acc);
                distinct.insert(defined);
            }
        }
        let o = &c.output;
        let input = c.gather(&o.gemm, read);
        let got = client.decrypt_output(&out.output).unwrap();
        for (j, &g) in got.iter().enumerate() {
            let exact = o.gemm.accumulate(j, &input);
            let spread = 7.0 * noise.output_sigma[j] + 1.0;
            assert!(
                (g - exact).abs() as f64 <= spread,
                "output {j}: {g} vs {exact}"
            );
        }
    }
    eprintln!("{values} activations, {differing} off the definition, {expected:.1} predicted");
    // The comparison is of real tables: they take several codes.
    assert!(distinct.len() > 2, "{distinct:?}");
    let bound = expected + 4.0 * expected.sqrt() + 3.0;
    assert!(
        differing as f64 <= bound,
        "{differing} differ, noise model: {expected:.1}"
    );
}

#[test]
fn gelu_and_silu_model_under_encryption() {
    let layers = vec![
        Linear { out: 16 },
        Gelu,
        Linear { out: 12 },
        Silu,
        Linear { out: 4 },
    ];
    check(vec![64], layers, 16);
}

#[test]
fn residual_model_under_encryption() {
    let conv = |out_channels| Conv2d {
        out_channels,
        kernel: 3,
        stride: 2,
        padding: 1,
    };
    // conv → relu (1) → conv (stride 1) → silu → add(1) → conv → relu → dense.
    let layers = vec![
        conv(2),
        Relu,
        Conv2d {
            out_channels: 2,
            kernel: 3,
            stride: 1,
            padding: 1,
        },
        Silu,
        Add { from: 1 },
        conv(2),
        Relu,
        Flatten,
        Linear { out: 4 },
    ];
    check(vec![1, 8, 8], layers, 8);
}
