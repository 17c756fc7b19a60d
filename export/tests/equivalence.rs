//! The Burn QAT forward and the exported circuit's simulator compute the same integers.
mod common;

use qfhe_export::export_mlp;
use qfhe_train::batch::code_inputs;

#[test]
fn burn_forward_and_circuit_simulator_agree_on_integers_and_predictions() {
    let data = common::dataset();
    let (model, report) = common::trained_model(&data);
    // The model learned something (4 classes: chance is 0.25).
    assert!(
        report.qat_accuracy > 0.8,
        "QAT accuracy {}",
        report.qat_accuracy
    );
    let circuit = export_mlp(&model, "synthetic").unwrap();

    let idx: Vec<usize> = (0..data.test.len()).collect();
    let x = code_inputs(&data.test, &idx, 3, &model.device());
    let (logits, trace) = model.forward_qat_traced(x).unwrap();
    let logits = logits.into_data().try_into_vec::<f32>().unwrap();
    let burn_preds = qfhe_train::batch::argmax_rows(&logits, 4);

    let mut values = 0usize;
    let mut mismatches = 0usize;
    let mut pred_mismatches = 0usize;
    for (s, &i) in idx.iter().enumerate() {
        let sim = circuit
            .run_exact(&circuit.input_codes(data.test.image(i)))
            .unwrap();
        for (l, t) in trace.hidden.iter().enumerate() {
            let d = t.out_codes.dims()[1];
            let burn_row = t
                .out_codes
                .clone()
                .slice([s..s + 1, 0..d])
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            for (b, &q) in burn_row.iter().zip(&sim.stages[l]) {
                values += 1;
                mismatches += (*b as i32 != q) as usize;
            }
        }
        for (j, (&b, &q)) in logits[s * 4..(s + 1) * 4]
            .iter()
            .zip(&sim.logits)
            .enumerate()
        {
            assert_eq!(
                b.to_bits(),
                q.to_bits(),
                "sample {s} logit {j}: burn {b} vs simulator {q}"
            );
        }
        pred_mismatches += (burn_preds[s] != sim.prediction) as usize;
    }
    assert!(values > 10_000);
    // Float ties may differ in principle; the design computes the same f32 operations, so none
    // are expected, and at most 0.1% are tolerated.
    assert!(
        mismatches * 1000 <= values,
        "{mismatches} of {values} activations differ"
    );
    assert_eq!(pred_mismatches, 0);
}
