//! Batch norm folded into the layer before it computes what that layer → batch norm computed.

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn::tensor::Distribution;
use qfhe_core::{LayerSpec::*, ModelSpec, QuantSpec};
use qfhe_quant::EncodingConfig;
use qfhe_train::QSequential;

/// conv → batch norm → relu → avg_pool → flatten → linear → batch norm → relu → linear: both
/// kinds of weighted layer carry a batch norm.
fn spec() -> ModelSpec {
    ModelSpec {
        input: vec![1, 10, 10],
        classes: 4,
        quant: QuantSpec::default(),
        layers: vec![
            Conv2d {
                out_channels: 5,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            BatchNorm,
            Relu,
            AvgPool { k: 2 },
            Flatten,
            Linear { out: 12 },
            BatchNorm,
            Relu,
            Linear { out: 4 },
        ],
    }
}

#[test]
fn folded_batch_norms_equal_the_unfolded_model() {
    let device = Device::flex();
    device.seed(3);
    let mut model = QSequential::new(spec(), EncodingConfig::default(), &device).unwrap();
    assert_eq!(model.norms.len(), 2);
    for bn in &mut model.norms {
        let [n] = bn.gamma.val().dims();
        let rand =
            |lo: f64, hi: f64| Tensor::<1>::random([n], Distribution::Uniform(lo, hi), &device);
        // Statistics far from the identity, so a fold that ignored any of them would show.
        bn.gamma = Param::from_tensor(rand(0.3, 2.5));
        bn.beta = Param::from_tensor(rand(-1.0, 1.0));
        bn.running_mean = RunningState::new(rand(-0.5, 0.5));
        bn.running_var = RunningState::new(rand(0.05, 3.0));
    }
    let bias = Tensor::<1>::random([5], Distribution::Uniform(-0.3, 0.3), &device);
    model.convs[0].bias = Param::from_tensor(bias);

    let x = Tensor::<2>::random([16, 100], Distribution::Uniform(0.0, 1.0), &device);
    let (logits, acts) = model.forward_float(x.clone());
    model.fold_batch_norms();
    assert!(model.norms.is_empty() && model.folded);
    let (folded_logits, folded_acts) = model.forward_float(x);

    let max_diff = |a: Tensor<2>, b: Tensor<2>| (a - b).abs().max().into_scalar::<f32>();
    for (a, (u, f)) in acts.iter().zip(&folded_acts).enumerate() {
        let scale = u.clone().abs().max().into_scalar::<f32>();
        assert!(scale > 0.5, "activation {a} too small to test: {scale}");
        let d = max_diff(u.clone(), f.clone());
        assert!(d < 1e-5 * scale.max(1.0), "activation {a} differs by {d}");
    }
    let d_logits = max_diff(logits, folded_logits);
    assert!(d_logits < 1e-4, "logits differ by {d_logits}");

    // A folded model's weights load into a model built folded from the same description.
    let record = model.clone().into_record();
    let rebuilt = QSequential::new_folded(spec(), EncodingConfig::default(), &device)
        .unwrap()
        .load_record(record);
    let w = |m: &QSequential| m.linears[0].weight.val();
    assert_eq!(max_diff(w(&model), w(&rebuilt)), 0.0);
}

#[test]
fn folding_a_model_without_batch_norm_changes_nothing() {
    let device = Device::flex();
    let spec = spec().without_batch_norm();
    let mut model = QSequential::new(spec.clone(), EncodingConfig::default(), &device).unwrap();
    let before = model.convs[0].weight.val();
    model.fold_batch_norms();
    let diff = (model.convs[0].weight.val() - before)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(diff, 0.0);
    assert_eq!(model.spec, spec);
}
