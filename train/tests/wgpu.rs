//! burn-wgpu trains the CNN like the CPU backend. Runs with `--features wgpu`; on a machine
//! without a GPU it needs Mesa's software Vulkan (`apt-get install mesa-vulkan-drivers
//! libvulkan1`), which `scripts/test` installs.
#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::prelude::Device;
use qfhe_datasets::synthetic::quadrants_dataset;
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, train_model, CnnConfig, DeviceChoice, Pooling, QCnn, TrainConfig};

/// A tiny CNN for the 8×8 synthetic images.
fn config(batch_norm: bool) -> CnnConfig {
    CnnConfig {
        input: [1, 8, 8],
        channels: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
        pool: 2,
        pooling: Pooling::Average,
        hidden: vec![8],
        batch_norm,
        classes: 4,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        fp32_epochs: 6,
        qat_epochs: 4,
        batch_size: 64,
        lr: 3e-3,
        // Noise draws differ between backends; the comparison needs identical inputs.
        qat_noise: false,
        ..TrainConfig::default()
    }
}

#[test]
fn wgpu_trains_the_cnn_like_the_cpu_backend() {
    let data = quadrants_dataset();
    // Batch norm off: on wgpu its calibration step still breaks QAT (docs/DESIGN.md).
    let cfg = config(false);
    let tc = train_config();
    // Both backends start from the same weights (drawn on the CPU), so their runs differ only
    // by floating-point reduction order.
    let flex = Device::flex();
    flex.seed(tc.seed);
    let init = QCnn::new(cfg.clone(), &flex);
    let run = |choice| {
        let device = select_device(choice).expect("backend compiled in");
        let build = |d: &Device| QCnn::new(cfg.clone(), d).load_record(init.clone().into_record());
        train_model(build, &tc, &data, &device).expect("training").1
    };
    let cpu = run(DeviceChoice::Flex);
    let gpu = run(DeviceChoice::Wgpu);
    for (name, r) in [("flex", &cpu), ("wgpu", &gpu)] {
        let losses: Vec<f64> = r.epochs.iter().map(|e| e.loss).collect();
        assert!(
            losses[5] < losses[0] && losses[9] < losses[6],
            "{name}: loss does not fall within each phase: {losses:?}"
        );
        assert!(
            r.qat_accuracy > 0.8,
            "{name}: QAT accuracy {}",
            r.qat_accuracy
        );
    }
    for (c, g) in cpu.epochs.iter().zip(&gpu.epochs) {
        assert!(
            (c.loss - g.loss).abs() < 0.05 * c.loss.max(0.1),
            "{} epoch {}: loss flex {} vs wgpu {}",
            c.phase,
            c.epoch,
            c.loss,
            g.loss
        );
    }
    assert!(
        (cpu.qat_accuracy - gpu.qat_accuracy).abs() < 0.1,
        "flex {} vs wgpu {}",
        cpu.qat_accuracy,
        gpu.qat_accuracy
    );
    assert!(
        (cpu.fp32_accuracy - gpu.fp32_accuracy).abs() < 0.1,
        "flex {} vs wgpu {}",
        cpu.fp32_accuracy,
        gpu.fp32_accuracy
    );
}

#[test]
fn wgpu_qat_forward_matches_the_cpu_backend() {
    use burn::prelude::*;
    use qfhe_train::batch::code_inputs;
    let data = quadrants_dataset();
    let cfg = config(true);
    let tc = train_config();
    let flex = Device::flex();
    let (model, _) = train_model(|d| QCnn::new(cfg.clone(), d), &tc, &data, &flex).unwrap();
    let gpu = select_device(DeviceChoice::Wgpu).unwrap();
    let idx: Vec<usize> = (0..64).collect();
    let run = |m: &QCnn, d: &Device| {
        let (_, trace) = m
            .forward_qat_traced(code_inputs(&data.test, &idx, 3, d))
            .unwrap();
        let v = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
        (v(trace.conv_out), v(trace.hidden[0].out_codes.clone()))
    };
    let cpu_out = run(&model, &flex);
    let gpu_out = run(&model.clone().to_device(&gpu), &gpu);
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    assert_eq!(diff(&cpu_out.0, &gpu_out.0), 0, "conv activations differ");
    assert_eq!(diff(&cpu_out.1, &gpu_out.1), 0, "hidden activations differ");
}
