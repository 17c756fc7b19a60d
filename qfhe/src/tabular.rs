//! Tables in and out of circuits: rows as `f32`, input codes through a circuit's feature
//! quantizer, targets as the numbers a [`Metric`] scores, and [`Compiled`]'s table methods.

use crate::compiled::{Compiled, Evaluation, Mode, Prediction};
use crate::{Error, Result};
use qfhe_circuit::{Circuit, Metric};
use qfhe_datasets::{Table, Target};

/// The table's features as `f32`, row-major `[rows, width]`.
pub fn float_rows(table: &Table) -> Vec<f32> {
    table.features.iter().map(|&v| v as f32).collect()
}

/// The class of every row (empty for a regression table).
pub fn labels(table: &Table) -> Vec<u32> {
    match &table.target {
        Target::Classes { labels, .. } => labels.clone(),
        Target::Values(_) => Vec::new(),
    }
}

/// The target of every row as a number: the class index, or the value.
pub fn targets(table: &Table) -> Vec<f64> {
    match &table.target {
        Target::Classes { labels, .. } => labels.iter().map(|&l| l as f64).collect(),
        Target::Values(v) => v.clone(),
    }
}

/// Input codes of every row of `table` through `circuit`'s feature quantizer.
///
/// # Errors
/// [`Error::Circuit`] when the circuit takes images or a row has another width.
pub fn codes(circuit: &Circuit, table: &Table) -> Result<Vec<Vec<i32>>> {
    let rows = float_rows(table);
    rows.chunks_exact(table.width().max(1))
        .map(|row| Ok(circuit.encode_features(row)?))
        .collect()
}

impl Compiled {
    /// Predict rows `idx` of `table` in `mode` (as [`Compiled::predict`] for images).
    ///
    /// # Errors
    /// [`Error::Mismatch`] for an index past the table; [`Error::Circuit`] when the circuit
    /// takes images or the rows have another width; [`Error::Runtime`] from the runtime.
    pub fn predict_table(
        &self,
        table: &Table,
        idx: &[usize],
        mode: Mode,
    ) -> Result<Vec<Prediction>> {
        if let Some(&i) = idx.iter().find(|&&i| i >= table.rows()) {
            return Err(Error::Mismatch {
                what: "row index (the table's rows)",
                expected: table.rows(),
                found: i,
            });
        }
        let rows = float_rows(table);
        let d = table.width();
        let samples = idx
            .iter()
            .map(|&i| {
                let codes = self.circuit().encode_features(&rows[i * d..(i + 1) * d])?;
                Ok((i as u64, codes))
            })
            .collect::<Result<Vec<_>>>()?;
        self.predict_codes(&samples, mode)
    }

    /// The metric table on `table`: exact and simulated (seed `seed`) on every row, FHE on the
    /// first `fhe_samples` (0: none); agreement counts FHE predictions equal to the exact
    /// circuit's (same class, or the same value for regression).
    ///
    /// # Errors
    /// As [`Compiled::predict_table`].
    pub fn evaluate_table(
        &self,
        table: &Table,
        metric: Metric,
        fhe_samples: usize,
        seed: u64,
    ) -> Result<Evaluation> {
        let all: Vec<usize> = (0..table.rows()).collect();
        let exact = self.predict_table(table, &all, Mode::Exact)?;
        let simulated = self.predict_table(table, &all, Mode::Simulate { seed })?;
        let first = &all[..fhe_samples.min(table.rows())];
        let fhe = self.predict_table(table, first, Mode::Fhe)?;
        Ok(Evaluation::of(
            metric,
            &targets(table),
            &exact,
            &simulated,
            &fhe,
        ))
    }
}
