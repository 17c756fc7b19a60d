//! Batch norm folded into the convolution computes what conv → batch norm computed.

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn::tensor::Distribution;
use qfhe_quant::EncodingConfig;
use qfhe_train::{CnnConfig, Pooling, QCnn, QatModel};

fn config() -> CnnConfig {
    CnnConfig {
        input: [1, 10, 10],
        channels: 5,
        kernel: 3,
        stride: 1,
        padding: 1,
        pool: 2,
        pooling: Pooling::Average,
        hidden: vec![12],
        batch_norm: true,
        classes: 4,
        w_bits: 3,
        out_w_bits: 4,
        a_bits: 3,
        in_bits: 3,
        encoding: EncodingConfig::default(),
    }
}

#[test]
fn folded_batch_norm_equals_unfolded_model() {
    let device = Device::flex();
    device.seed(3);
    let mut model = QCnn::new(config(), &device);
    let rand = |lo: f64, hi: f64| Tensor::<1>::random([5], Distribution::Uniform(lo, hi), &device);
    let bn = model.bn.as_mut().expect("batch norm requested");
    // Statistics far from the identity, so a fold that ignored any of them would show.
    bn.gamma = Param::from_tensor(rand(0.3, 2.5));
    bn.beta = Param::from_tensor(rand(-1.0, 1.0));
    bn.running_mean = RunningState::new(rand(-0.5, 0.5));
    bn.running_var = RunningState::new(rand(0.05, 3.0));
    model.conv.bias = Param::from_tensor(rand(-0.3, 0.3));

    let x = Tensor::<2>::random([16, 100], Distribution::Uniform(0.0, 1.0), &device);
    let (logits, pre) = model.forward_float(x.clone());
    model.fold_batch_norm();
    assert!(model.bn.is_none());
    assert!(
        !model.config.batch_norm,
        "a rebuilt model must not expect a batch norm"
    );
    let (folded_logits, folded_pre) = model.forward_float(x);

    let max_diff = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>();
    let scale = pre[0].clone().abs().max().into_scalar::<f32>();
    assert!(scale > 0.5, "pre-activations too small to test: {scale}");
    let d_pre = max_diff(pre[0].clone(), folded_pre[0].clone());
    let d_logits = max_diff(logits, folded_logits);
    assert!(
        d_pre < 1e-5 * scale.max(1.0),
        "conv outputs differ by {d_pre}"
    );
    assert!(d_logits < 1e-4, "logits differ by {d_logits}");
}

#[test]
fn folding_without_batch_norm_changes_nothing() {
    let device = Device::flex();
    let mut cfg = config();
    cfg.batch_norm = false;
    let mut model = QCnn::new(cfg.clone(), &device);
    let before = model.conv.weight.val();
    model.fold_batch_norm();
    let diff = (model.conv.weight.val() - before)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(diff, 0.0);
    assert_eq!(model.config, cfg);
}
