//! Noise-aware slot rounding: zero noise is the exact circuit; otherwise the read slot moves by
//! the requested std.
use burn::prelude::*;
use qfhe_quant::layers::{round_to_noisy_slots, round_to_slots};
use qfhe_quant::{LayerEncoding, NeuronEncoding};

const FRAC_BITS: u32 = 10;

/// Two neurons with 8 and 32 slots per accumulator unit.
fn encoding() -> LayerEncoding {
    LayerEncoding {
        delta_in: 1,
        neurons: vec![
            NeuronEncoding {
                mult: 8 << FRAC_BITS,
                offset: 64 << FRAC_BITS,
            },
            NeuronEncoding {
                mult: 32 << FRAC_BITS,
                offset: 64 << FRAC_BITS,
            },
        ],
    }
}

fn accumulators(device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..20_000).map(|i| ((i * 37) % 50) as f32).collect();
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([10_000, 2])
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn zero_noise_reads_the_exact_slots() {
    let device = Device::flex();
    let acc = accumulators(&device);
    let exact = values(round_to_slots(acc.clone(), &encoding(), FRAC_BITS));
    let noisy = values(round_to_noisy_slots(
        acc,
        &encoding(),
        FRAC_BITS,
        &[0.0, 0.0],
    ));
    assert_eq!(exact, noisy);
}

#[test]
fn noise_moves_the_read_by_its_std_in_slots() {
    let device = Device::flex();
    device.seed(7);
    let acc = accumulators(&device);
    let sigma_slots = [16.0, 16.0];
    let exact = values(round_to_slots(acc.clone(), &encoding(), FRAC_BITS));
    let noisy = values(round_to_noisy_slots(
        acc,
        &encoding(),
        FRAC_BITS,
        &sigma_slots,
    ));
    // In accumulator units the shift has std σ / (slots per unit): 2 and 0.5.
    for (j, slots_per_unit) in [(0usize, 8.0f64), (1, 32.0)] {
        let d: Vec<f64> = (0..10_000)
            .map(|s| (noisy[2 * s + j] - exact[2 * s + j]) as f64)
            .collect();
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let std = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
        let want = sigma_slots[j] / slots_per_unit;
        assert!(mean.abs() < 0.05 * want, "neuron {j}: mean shift {mean}");
        assert!(
            (std / want - 1.0).abs() < 0.05,
            "neuron {j}: std {std} vs {want}"
        );
    }
}
