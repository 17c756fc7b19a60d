//! Straight-through estimators and fake quantization: forward values and gradients.
use burn::prelude::*;
use qfhe_quant::layers::{ActQuant, QuantLinear};
use qfhe_quant::ste::{floor_ste, grad_scale, round_ste, LearnedStep};

fn ad() -> Device {
    Device::flex().autodiff()
}

fn vec1(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn round_and_floor_ste_are_exact_forward_and_identity_backward() {
    let x = Tensor::<1>::from_floats([0.4, 1.5, 2.5, -1.6, 3.99], &ad()).require_grad();
    let r = round_ste(x.clone());
    assert_eq!(vec1(r.clone()), vec![0.0, 2.0, 2.0, -2.0, 4.0]); // ties to even
    let f = floor_ste(x.clone());
    assert_eq!(vec1(f.clone()), vec![0.0, 1.0, 2.0, -2.0, 3.0]);
    let w = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0], &ad());
    let grads = (r * w.clone() + f * w).sum().backward();
    // d/dx (round(x)·w + floor(x)·w) under the STE is 2w.
    assert_eq!(
        vec1(x.grad(&grads).unwrap()),
        vec![2.0, 4.0, 6.0, 8.0, 10.0]
    );
}

#[test]
fn grad_scale_keeps_the_value_and_scales_the_gradient() {
    let s = Tensor::<1>::from_floats([0.3], &ad()).require_grad();
    let g = grad_scale(s.clone(), 0.25);
    assert_eq!(vec1(g.clone()), vec![0.3]);
    let grads = g.mul_scalar(2.0).sum().backward();
    assert_eq!(vec1(s.grad(&grads).unwrap()), vec![0.5]);
}

#[test]
fn activation_quantizer_clamps_with_zero_gradient_outside_and_lsq_step_gradient() {
    let dev = ad();
    let mut q = ActQuant::new(3, &dev);
    q.scale = LearnedStep::calibrated(Tensor::from_floats([0.5], &dev));
    let z = Tensor::<2>::from_floats([[-1.0, 0.6, 1.3, 10.0]], &dev).require_grad();
    let step = q.step(4);
    let codes = q.quantize(z.clone(), step);
    assert_eq!(
        codes.clone().into_data().try_into_vec::<f32>().unwrap(),
        vec![0.0, 1.0, 3.0, 7.0]
    );
    let grads = codes.sum().backward();
    let dz = z
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    // Clipped STE: gradient 1/s inside the range, 0 where clamped.
    assert_eq!(dz, vec![0.0, 2.0, 2.0, 0.0]);
    // LSQ: the step receives a gradient.
    let ds = q
        .scale
        .multiplier
        .val()
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert!(ds[0].abs() > 0.0);
}

#[test]
fn weight_codes_are_per_channel_symmetric_integers() {
    let dev = ad();
    let mut l = QuantLinear::new(6, 3, 3, &dev);
    l.weight = burn::module::Param::from_tensor(Tensor::from_floats(
        [
            [0.1, -0.5, 2.0],
            [0.3, 0.5, -2.0],
            [-0.2, 0.0, 0.9],
            [0.05, 0.2, 0.4],
            [0.0, -0.1, -0.3],
            [0.25, 0.7, 0.1],
        ],
        &dev,
    ));
    l.w_scale = LearnedStep::calibrated(Tensor::from_floats([0.1, 0.2, 0.5], &dev));
    let codes = l.codes(None).into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(
        codes,
        vec![
            1.0, -2.0, 3.0, 3.0, 2.0, -3.0, -2.0, 0.0, 2.0, 0.0, 1.0, 1.0, 0.0, -0.0, -1.0, 2.0,
            3.0, 0.0
        ]
    );
    // Gradients reach the float weights (inside the range) and the per-channel steps.
    let grads = l.codes(None).sum().backward();
    assert!(l.weight.val().grad(&grads).is_some());
    let ds = l
        .w_scale
        .multiplier
        .val()
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert!(ds.iter().all(|v| v.is_finite()) && ds.iter().any(|v| *v != 0.0));
}
