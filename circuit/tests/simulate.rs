//! The simulators compute the circuit's semantics: checked against plain loops over the
//! residual fixture, and the noise model against its own limits.

use qfhe_circuit::fixtures::{all_inputs, chain, dip, residual};
use qfhe_circuit::{Circuit, CircuitError, NoiseModel};
use qfhe_core::NoiseSpec;
use rand::SeedableRng;

/// The residual fixture's semantics written out by hand.
fn by_hand(c: &Circuit, x: &[i32]) -> (Vec<Vec<i32>>, Vec<i64>) {
    let dot =
        |w: &[i32], v: &[i32]| -> i64 { w.iter().zip(v).map(|(&a, &b)| a as i64 * b as i64).sum() };
    let w0 = &c.stages[0].gemm.weights;
    let s0: Vec<i32> = (0..4).map(|j| dip(dot(&w0[j * 3..j * 3 + 3], x))).collect();
    let w1 = &c.stages[1].gemm.weights;
    let s1: Vec<i32> = (0..4)
        .map(|j| dot(&w1[j * 4..j * 4 + 4], &s0).clamp(0, 3) as i32)
        .collect();
    let s2: Vec<i32> = (0..4).map(|j| s0[j] + s1[j]).collect();
    let wo = &c.output.gemm.weights;
    let out = (0..3).map(|j| dot(&wo[j * 4..j * 4 + 4], &s2)).collect();
    (vec![s0, s1, s2], out)
}

#[test]
fn residual_and_non_monotone_tables_compute_their_definition() {
    let c = residual();
    let inputs = all_inputs(&c, 64);
    assert_eq!(inputs.len(), 64);
    let mut negative = 0;
    let mut outputs = std::collections::HashSet::new();
    for x in &inputs {
        let t = c.run_exact(x).unwrap();
        let (stages, out) = by_hand(&c, x);
        assert_eq!(t.stages, stages, "input {x:?}");
        assert_eq!(t.out_acc, out, "input {x:?}");
        negative += stages[0].iter().filter(|&&v| v < 0).count();
        outputs.insert(out);
    }
    // The inputs reach the dip of the table and many different outputs.
    assert!(negative > 20, "{negative}");
    assert!(outputs.len() > 20, "{}", outputs.len());
}

#[test]
fn inputs_that_do_not_fit_are_errors() {
    let c = chain();
    let err = c.run_exact(&[0, 1, 2]).unwrap_err();
    assert!(matches!(err, CircuitError::Input(_)));
    assert!(err
        .to_string()
        .contains("3 input codes, the circuit takes 4"));
    assert!(c
        .run_exact(&[0, 1, 2, 4])
        .unwrap_err()
        .to_string()
        .contains("outside [0, 3]"));
    let noise = NoiseModel::new(&c, &NoiseSpec::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    assert!(noise.run(&c, &[0, -1, 2, 3], &mut rng).is_err());
}

#[test]
fn without_noise_the_noise_model_is_the_exact_circuit() {
    let silent = NoiseSpec {
        base_sigma_slots: 0.0,
        pbs_sigma_slots: 0.0,
        fresh_sigma_slots: 0.0,
        output_wire_sigma_slots: 0.0,
    };
    for c in [chain(), residual()] {
        let noise = NoiseModel::new(&c, &silent);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for x in all_inputs(&c, 200) {
            assert_eq!(
                noise.run(&c, &x, &mut rng).unwrap(),
                c.run_exact(&x).unwrap()
            );
        }
    }
}

#[test]
fn noise_std_follows_the_weights_and_row_multipliers() {
    let c = residual();
    let spec = NoiseSpec::default();
    let noise = NoiseModel::new(&c, &spec);
    // Stage 0 reads fresh encryptions: essentially the keyswitch + modulus-switch noise.
    for &s in &noise.stage_sigma[0] {
        assert!((s - spec.base_sigma_slots).abs() < 1e-6, "{s}");
    }
    // Stage 2 adds two PBS outputs with weight 1 and row multiplier 1: √2 · σ_PBS more.
    let add = (spec.base_sigma_slots.powi(2) + 2.0 * spec.pbs_sigma_slots.powi(2)).sqrt();
    for &s in &noise.stage_sigma[2] {
        assert!((s - add).abs() < 1e-9, "{s} vs {add}");
    }
    // Every wide fixture neuron sits 10 σ from its steps: flips are negligible.
    let x = [1, 2, 3];
    let t = c.run_exact(&x).unwrap();
    let acc = c.stages[1].gemm.accumulate(0, &t.stages[0]);
    let p = noise.flip_probability(&c, 1, 0, acc);
    assert!(p < 1e-15, "{p}");
    let report = qfhe_circuit::analyze(&c, &spec, &all_inputs(&c, 10));
    assert_eq!(report.len(), 4);
    assert!(report.iter().all(|l| l.log2_p_gross < -60.0), "{report:?}");
    assert_eq!(report[0].min_slots_per_step, Some(100.0));
}

#[test]
fn jumping_a_narrow_run_is_gross_only_when_it_skips_a_level() {
    let spec = NoiseSpec::default();
    let inputs = all_inputs(&residual(), 10);
    // `dip`'s runs: 0, −1, 0, 1, 2. Shrink one of them to 2 slots (its right neighbour grows).
    let narrowed = |run: usize| {
        let mut c = residual();
        let t = &mut c.stages[0].neurons[0].table;
        assert_eq!(t.levels, [0, -1, 0, 1, 2]);
        t.starts[run + 1] = t.starts[run] + 2;
        qfhe_circuit::analyze(&c, &spec, &inputs)[0].log2_p_gross
    };
    // Past the dip's −1 lies 0 again, where the jump started: no error at all.
    assert!(narrowed(1) < -60.0, "{}", narrowed(1));
    // Past the 1 between 0 and 2 lies a code two levels away.
    assert!(narrowed(3) > -10.0, "{}", narrowed(3));
}
