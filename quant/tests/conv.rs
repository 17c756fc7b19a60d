//! Convolution lowering: the Burn convolution of codes equals the sparse rows built by index,
//! per-position worst cases match the rows, sum pooling is exact, and the bound applies.
use burn::module::Param;
use burn::prelude::*;
use qfhe_quant::bounds::RowStats;
use qfhe_quant::conv::{conv_row_stats, sum_pool, QuantConv2d};
use qfhe_quant::layers::AccumulatorBound;
use qfhe_quant::ste::LearnedStep;

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// A conv 2→3 channels, 3x3, stride 2, padding 1 on 7x6 inputs, with integer weights in [-3, 3].
fn layer(device: &Device) -> QuantConv2d {
    let mut conv = QuantConv2d::new(2, 3, 3, 2, 1, 3, device);
    let w: Vec<f32> = (0..54).map(|i| ((i * 5 + 3) % 7) as f32 - 3.0).collect();
    conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [3, 2, 3, 3]), device));
    conv
}

#[test]
fn conv_of_codes_equals_sparse_rows_by_index() {
    let device = Device::flex();
    let conv = layer(&device);
    let g = conv.geometry(7, 6);
    assert_eq!(g.output_hw(), (4, 3));
    let codes = conv.codes(None); // unit scales: the integer weights themselves
    let w = floats(codes.clone());
    assert!(
        w.iter().filter(|v| **v != 0.0).count() > 40,
        "a non-trivial kernel"
    );
    let x: Vec<f32> = (0..2 * 7 * 6).map(|i| ((i * 5 + 1) % 8) as f32).collect();
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 2, 7, 6]), &device);
    let acc = floats(conv.accumulate(xt, codes.clone()));
    let taps = g.taps();
    let stats = conv_row_stats(&codes, &g, 7);
    let per_pos = 4 * 3;
    for c in 0..3 {
        for (p, row_taps) in taps.iter().enumerate() {
            let kernel = &w[c * 18..(c + 1) * 18];
            let expect: f32 = kernel
                .iter()
                .zip(row_taps)
                .map(|(&k, t)| t.map_or(0.0, |i| k * x[i as usize]))
                .sum();
            assert_eq!(acc[c * per_pos + p], expect, "channel {c} position {p}");
            // Padded taps carry weight 0: the worst case is the row's.
            let row: Vec<i32> = kernel
                .iter()
                .zip(row_taps)
                .map(|(&k, t)| if t.is_some() { k as i32 } else { 0 })
                .collect();
            let s = RowStats::of_row(&row, 7);
            let got = stats[c * per_pos + p];
            assert_eq!(
                (got.acc_min, got.acc_max),
                (s.acc_min, s.acc_max),
                "channel {c} position {p}"
            );
            assert!((got.l2 - s.l2).abs() < 1e-9);
        }
    }
    // Border positions see fewer taps than interior ones.
    assert!(stats[0].range() < stats[4].range());
}

#[test]
fn sum_pool_is_exact() {
    let device = Device::flex();
    let x: Vec<f32> = (0..2 * 4 * 4).map(|i| (i % 8) as f32).collect();
    let p = floats(sum_pool(
        Tensor::from_data(TensorData::new(x.clone(), [1, 2, 4, 4]), &device),
        2,
    ));
    assert_eq!(p.len(), 8);
    let at = |c: usize, y: usize, xx: usize| x[c * 16 + y * 4 + xx];
    assert_eq!(p[0], at(0, 0, 0) + at(0, 0, 1) + at(0, 1, 0) + at(0, 1, 1));
    assert_eq!(p[7], at(1, 2, 2) + at(1, 2, 3) + at(1, 3, 2) + at(1, 3, 3));
}

#[test]
fn accumulator_bound_shrinks_each_output_channel() {
    let device = Device::flex();
    let mut conv = layer(&device);
    conv.w_scale = LearnedStep::calibrated(Tensor::from_floats([0.5, 0.5, 0.5], &device));
    // Each kernel's L1 is ~30, x_max 1 and s_out 1: ~30 steps; allow 6.
    let bound = AccumulatorBound {
        x_max: 1.0,
        s_out: Tensor::from_floats([1.0], &device),
        max_steps: Tensor::from_floats([6.0], &device),
    };
    let codes = floats(conv.codes(Some(&bound)));
    for c in 0..3 {
        let l1: f32 = codes[c * 18..(c + 1) * 18]
            .iter()
            .map(|v| v.abs())
            .sum::<f32>()
            * 0.5;
        // Rounding may add up to half a step per weight.
        assert!(l1 <= 6.0 + 18.0 * 0.25, "channel {c}: {l1}");
    }
    let unbounded: f32 = floats(conv.codes(None)).iter().map(|v| v.abs()).sum();
    assert!(unbounded * 0.5 > 3.0 * 20.0);
}
