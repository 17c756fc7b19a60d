//! Circuit files: JSON of [`Circuit`], `{"format": "qfhe-circuit", "version": 7, …}`, read with
//! the version first and validated before use. Files of versions 1–3 (a chain of hidden layers
//! with monotone threshold tables) are upgraded to the current structure when read; versions 4
//! to 6 read as version 7 without its optional fields.

use crate::error::CircuitError;
use crate::ir::{
    Circuit, Gemm, Input, Meta, Neuron, OutputLayer, Source, Stage, Table, FORMAT_TAG,
    FORMAT_VERSION, OLDEST_READABLE_VERSION,
};
use qfhe_core::EncodingConfig;
use serde::Deserialize;
use std::path::Path;

impl Circuit {
    /// A circuit of the current format version from its parts, [validated](Circuit::validate).
    ///
    /// # Errors
    /// [`CircuitError::Invalid`] naming the first inconsistency.
    pub fn new(
        encoding: EncodingConfig,
        input: Input,
        stages: Vec<Stage>,
        output: OutputLayer,
        meta: Meta,
    ) -> Result<Self, CircuitError> {
        let circuit = Self {
            format: FORMAT_TAG.into(),
            version: FORMAT_VERSION,
            encoding,
            input,
            stages,
            output,
            meta,
        };
        circuit.validate()?;
        Ok(circuit)
    }

    /// The circuit as JSON bytes (the file format).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a circuit is plain data and always serializes")
    }

    /// Write the circuit file.
    ///
    /// # Errors
    /// [`CircuitError::Io`] if the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), CircuitError> {
        std::fs::write(path, self.to_json()).map_err(|source| CircuitError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Load and [`validate`](Circuit::validate) a circuit file.
    ///
    /// # Errors
    /// [`CircuitError`] for unreadable, malformed, other-version or inconsistent files.
    pub fn load(path: &Path) -> Result<Self, CircuitError> {
        let bytes = std::fs::read(path).map_err(|source| CircuitError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// Parse and validate circuit JSON; `origin` names it in errors. Versions 1–3 are upgraded.
    ///
    /// # Errors
    /// As [`Circuit::load`].
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self, CircuitError> {
        // Read the version first so a future format gets the version error, not a parse error.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let parse_err = |source| CircuitError::Parse {
            path: origin.to_owned(),
            source,
        };
        let header: Header = serde_json::from_slice(bytes).map_err(parse_err)?;
        if header.format.as_deref() == Some(FORMAT_TAG) {
            if let Some(v) = header
                .version
                .filter(|v| !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(v))
            {
                return Err(CircuitError::Version { found: v });
            }
        }
        let c = match header.version {
            Some(v) if v < 4 && header.format.as_deref() == Some(FORMAT_TAG) => {
                let legacy: legacy::Circuit = serde_json::from_slice(bytes).map_err(parse_err)?;
                legacy.upgrade()?
            }
            // Versions 4 to 6 are version 7 without its optional fields.
            Some(4..=6) if header.format.as_deref() == Some(FORMAT_TAG) => {
                let mut c: Circuit = serde_json::from_slice(bytes).map_err(parse_err)?;
                c.version = FORMAT_VERSION;
                c
            }
            _ => serde_json::from_slice(bytes).map_err(parse_err)?,
        };
        c.validate()?;
        Ok(c)
    }
}

/// Versions 1–3: a chain of hidden layers, each with the next layer's input scale as its output
/// scale and monotone threshold tables, and an output layer with its own Δ.
mod legacy {
    use super::*;

    fn invalid<T>(m: String) -> Result<T, CircuitError> {
        Err(CircuitError::Invalid(m))
    }

    #[derive(Deserialize)]
    pub(super) struct Circuit {
        version: u32,
        encoding: EncodingConfig,
        features: usize,
        in_bits: u32,
        input_delta: i64,
        hidden: Vec<HiddenLayer>,
        output: OutputLayer,
        meta: Meta,
    }

    #[derive(Deserialize)]
    struct HiddenLayer {
        d_in: usize,
        d_out: usize,
        out_qmax: i32,
        w_bits: u32,
        weights: Vec<i32>,
        #[serde(default)]
        inputs: Option<Vec<u32>>,
        delta_in: i64,
        neurons: Vec<LegacyNeuron>,
        #[serde(default)]
        label: Option<String>,
    }

    #[derive(Deserialize)]
    struct LegacyNeuron {
        mult: i64,
        offset: i64,
        thresholds: Vec<i64>,
    }

    #[derive(Deserialize)]
    struct OutputLayer {
        d_in: usize,
        d_out: usize,
        w_bits: u32,
        weights: Vec<i32>,
        #[serde(default)]
        delta: Option<u64>,
        #[serde(default)]
        delta_log2: Option<u32>,
        scale: Vec<f32>,
        bias: Vec<f32>,
    }

    /// A threshold table (`thresholds[k-1]` = first slot with code `≥ k`, non-decreasing) as
    /// runs over `n` slots.
    fn runs(thresholds: &[i64], n: u32, what: &str) -> Result<Table, CircuitError> {
        if thresholds.windows(2).any(|w| w[0] > w[1]) {
            return invalid(format!("{what}: thresholds must be non-decreasing"));
        }
        // Runs start at slot 0 and at every threshold inside (0, N): O(thresholds), not O(N).
        let mut table = Table {
            starts: vec![0],
            levels: vec![thresholds.partition_point(|&t| t <= 0) as i32],
        };
        for &t in thresholds.iter().filter(|&&t| t > 0 && t < n as i64) {
            if table.starts.last() != Some(&(t as u32)) {
                table.starts.push(t as u32);
                table
                    .levels
                    .push(thresholds.partition_point(|&u| u <= t) as i32);
            }
        }
        Ok(table)
    }

    impl Circuit {
        pub(super) fn upgrade(self) -> Result<super::Circuit, CircuitError> {
            let tpu = self.encoding.torus_per_unit();
            let n = self.encoding.poly_size;
            if !n.is_power_of_two() || !(256..=crate::validate::MAX_POLY_SIZE).contains(&n) {
                return invalid(format!(
                    "encoding.poly_size {n} is not a power of two in [256, {}]",
                    crate::validate::MAX_POLY_SIZE
                ));
            }
            let units = |d: i64, what: &str| {
                u64::try_from(d)
                    .ok()
                    .filter(|&d| d > 0)
                    .and_then(|d| d.checked_mul(tpu))
                    .ok_or_else(|| {
                        CircuitError::Invalid(format!(
                            "{what} {d} is not a positive scale that fits the torus"
                        ))
                    })
            };
            let output_delta = match (self.output.delta, self.output.delta_log2) {
                (Some(d), _) if self.version >= 3 => d,
                (_, Some(d)) if self.version < 3 && (8..=62).contains(&d) => 1u64 << d,
                _ => return invalid("output layer: delta missing or out of range".into()),
            };
            if self.hidden.is_empty() {
                return invalid("a circuit needs at least one hidden layer".into());
            }
            if self.hidden[0].delta_in != self.input_delta {
                return invalid(format!(
                    "hidden layer 1: delta_in {} differs from input_delta {}",
                    self.hidden[0].delta_in, self.input_delta
                ));
            }
            let input = Input {
                features: self.features,
                bits: self.in_bits,
                delta: units(self.input_delta, "input_delta")?,
                quantizer: None,
            };
            let mut stages = Vec::with_capacity(self.hidden.len());
            for (l, h) in self.hidden.iter().enumerate() {
                let what = format!("hidden layer {}", l + 1);
                let delta = match self.hidden.get(l + 1) {
                    Some(next) => {
                        units(next.delta_in, &format!("hidden layer {} delta_in", l + 2))?
                    }
                    None => output_delta,
                };
                let neurons = h
                    .neurons
                    .iter()
                    .map(|nr| {
                        Ok(Neuron {
                            mult: nr.mult,
                            offset: nr.offset,
                            table: runs(&nr.thresholds, n, &what)?,
                        })
                    })
                    .collect::<Result<Vec<_>, CircuitError>>()?;
                if !(1..=255).contains(&h.out_qmax) {
                    return invalid(format!("{what}: out_qmax {} outside [1, 255]", h.out_qmax));
                }
                if h.neurons
                    .iter()
                    .any(|nr| nr.thresholds.len() != h.out_qmax as usize)
                {
                    return invalid(format!(
                        "{what}: thresholds must be {} non-decreasing slots",
                        h.out_qmax
                    ));
                }
                stages.push(Stage {
                    label: h.label.clone(),
                    gemm: Gemm {
                        sources: vec![if l == 0 {
                            Source::Input
                        } else {
                            Source::Stage(l - 1)
                        }],
                        d_in: h.d_in,
                        d_out: h.d_out,
                        w_bits: h.w_bits,
                        weights: h.weights.clone(),
                        inputs: h.inputs.clone(),
                    },
                    neurons,
                    out_min: 0,
                    out_max: h.out_qmax,
                    delta,
                    exclusive: None,
                });
            }
            let o = self.output;
            Ok(super::Circuit {
                format: FORMAT_TAG.into(),
                version: FORMAT_VERSION,
                encoding: self.encoding,
                input,
                output: super::OutputLayer {
                    gemm: Gemm {
                        sources: vec![Source::Stage(stages.len() - 1)],
                        d_in: o.d_in,
                        d_out: o.d_out,
                        w_bits: o.w_bits,
                        weights: o.weights,
                        inputs: None,
                    },
                    scale: o.scale,
                    bias: o.bias,
                    readout: Default::default(),
                },
                stages,
                meta: self.meta,
            })
        }
    }
}
