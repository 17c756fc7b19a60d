//! burn-wgpu trains the CNN like the CPU backend. Runs with `--features wgpu`; on a machine
//! without a GPU it needs Mesa's software Vulkan (`apt-get install mesa-vulkan-drivers
//! libvulkan1`), which `.ci/run` installs.
#![cfg(feature = "wgpu")]

use qfhe_datasets::synthetic::quadrants_dataset;
use qfhe_quant::EncodingConfig;
use qfhe_train::{select_device, train_model, CnnConfig, DeviceChoice, QCnn, TrainConfig};

#[test]
fn wgpu_trains_the_cnn_like_the_cpu_backend() {
    let data = quadrants_dataset();
    let cfg = CnnConfig {
        input: [1, 8, 8],
        channels: 4,
        kernel: 3,
        stride: 1,
        padding: 1,
        pool: 2,
        hidden: vec![8],
        batch_norm: true,
        classes: 4,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    };
    let tc = TrainConfig {
        fp32_epochs: 6,
        qat_epochs: 4,
        batch_size: 64,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let run = |choice| {
        let device = select_device(choice).expect("backend compiled in");
        train_model(|d| QCnn::new(cfg.clone(), d), &tc, &data, &device)
            .expect("training")
            .1
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
    // Different backends draw different initial weights, so compare outcomes, not bits.
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
