//! The report: accuracy table, per-layer noise table, report.json and report.md.

use qfhe_circuit::LayerReport;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Serialize, Debug)]
pub struct Latency {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(samples: &[f64]) -> Self {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1);
        let median = if v.is_empty() {
            0.0
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v.first().copied().unwrap_or(0.0),
            max: v.last().copied().unwrap_or(0.0),
            mean: v.iter().sum::<f64>() / n as f64,
        }
    }
}

#[derive(Serialize, Debug)]
pub struct TraceLayer {
    pub layer: String,
    pub activations: usize,
    pub measured_flip_rate: f64,
    /// `table + (1 − table) · decode`: what the decrypted activations should show.
    pub predicted_flip_rate: f64,
    /// Noise model: activations whose table output differs from the exact circuit's.
    pub table_flip_rate: f64,
    /// Decrypting one PBS output of this layer to a neighbouring level (its output noise
    /// against the level spacing; see `export::simulate::hidden_decode_error`).
    pub decode_error_rate: f64,
}

#[derive(Serialize, Debug)]
pub struct FheReport {
    pub samples: usize,
    pub accuracy: f64,
    pub agreement_with_quantized: f64,
    pub latency_s: Latency,
    pub threads: usize,
    /// PBS backend, e.g. `cpu (batches of 32)`.
    pub backend: String,
    pub keygen_s: f64,
    pub eval_key_bytes: usize,
    pub pbs_per_sample: usize,
    /// Samples evaluated together (their latency is the batch's wall time).
    pub batch: usize,
    /// Most ciphertexts one sample held at once during evaluation.
    pub peak_ciphertexts: usize,
    /// Bytes per LWE ciphertext.
    pub ciphertext_bytes: usize,
    /// `peak_ciphertexts · ciphertext_bytes`.
    pub memory_per_sample_bytes: usize,
    pub params: String,
    pub log2_p_error: f64,
    pub seconds_per_pbs: f64,
    pub estimated_latency_s: f64,
    pub trace: Option<Vec<TraceLayer>>,
}

#[derive(Serialize, Debug)]
pub struct Report {
    pub dataset: String,
    pub model: String,
    /// What `fp32_accuracy`, `quantized_accuracy`, `simulated_accuracy` and `fhe.accuracy`
    /// measure: `accuracy`, `f1` or `r2`.
    pub metric: String,
    pub arch: String,
    pub w_bits: u32,
    pub a_bits: u32,
    pub fp32_accuracy: Option<f64>,
    pub quantized_accuracy: f64,
    pub simulated_accuracy: f64,
    pub simulated_agreement_with_quantized: f64,
    pub test_samples: usize,
    pub fhe: FheReport,
    pub layers: Vec<LayerReport>,
}

pub fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

/// A score as its metric is read: R² as a number, accuracy and F1 as percentages.
pub fn score(metric: &str, v: f64) -> String {
    match metric {
        "r2" => format!("{v:.4}"),
        _ => pct(v),
    }
}

/// Seconds, in milliseconds below a tenth of a second (linear circuits take a few).
pub fn seconds(v: f64) -> String {
    if v < 0.1 {
        format!("{:.1} ms", v * 1e3)
    } else {
        format!("{v:.2} s")
    }
}

/// The per-layer table printed before FHE runs.
pub fn layer_table(layers: &[LayerReport], seconds_per_pbs: Option<f64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| layer | in→out | acc range | acc bits | PBS | slots/step min (median) | max ‖w‖₂ | noise σ | predicted flips | log2 p_gross | est. latency |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for l in layers {
        let steps = match (l.min_slots_per_step, l.median_slots_per_step) {
            (Some(a), Some(b)) => format!("{a:.0} ({b:.0})"),
            _ => "–".into(),
        };
        let sigma = if l.pbs > 0 {
            format!("{:.2} slots", l.max_sigma)
        } else {
            format!("{:.3} acc units", l.max_sigma)
        };
        // The output layer has no table: its decrypted accumulators are almost always off by a
        // unit or more, which is harmless; what that does to predictions is the simulated
        // accuracy, not a flip rate.
        let flips = if l.pbs > 0 {
            pct(l.predicted_flip_rate)
        } else {
            "–".into()
        };
        let est = seconds_per_pbs.map_or("–".into(), |t| format!("{:.2} s", t * l.pbs as f64));
        let _ = writeln!(
            s,
            "| {} | {}→{} | [{}, {}] | {} | {} | {} | {:.1} | {} | {} | {:.1} | {} |",
            l.name,
            l.d_in,
            l.d_out,
            l.acc_min,
            l.acc_max,
            l.acc_bits,
            l.pbs,
            steps,
            l.max_l2,
            sigma,
            flips,
            l.log2_p_gross,
            est
        );
    }
    s
}

impl Report {
    pub fn accuracy_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| model ({}) | fp32 | quantized (exact circuit, {} test) | simulated (FHE noise model, {} test) | FHE ({} samples) | FHE agreement with quantized | FHE latency median (min–max) |", self.metric, self.test_samples, self.test_samples, self.fhe.samples);
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        let _ = writeln!(
            s,
            "| {} w{}/a{} | {} | {} | {} | {} | {} | {} ({}–{}, {} threads) |",
            self.arch,
            self.w_bits,
            self.a_bits,
            self.fp32_accuracy
                .map_or("–".into(), |v| score(&self.metric, v)),
            score(&self.metric, self.quantized_accuracy),
            score(&self.metric, self.simulated_accuracy),
            score(&self.metric, self.fhe.accuracy),
            pct(self.fhe.agreement_with_quantized),
            seconds(self.fhe.latency_s.median),
            seconds(self.fhe.latency_s.min),
            seconds(self.fhe.latency_s.max),
            self.fhe.threads
        );
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("# qfhe report: {} on {}\n\n", self.arch, self.dataset);
        s += &self.accuracy_table();
        let _ = write!(
            s,
            "\n- parameters: `{}` (128-bit security), {} PBS per sample, gross-error probability per PBS ≤ 2^{:.1}\n- key generation {:.2} s, evaluation keys {:.1} MB\n- measured {:.1} ms per KS+PBS on the pool ({} threads, {}); FHE batch {}\n- memory per sample: {} ciphertexts held at peak × {} bytes = {:.1} MB\n- simulated vs quantized prediction agreement: {}\n\n## Layers\n\n",
            self.fhe.params,
            self.fhe.pbs_per_sample,
            self.fhe.log2_p_error,
            self.fhe.keygen_s,
            self.fhe.eval_key_bytes as f64 / 1e6,
            self.fhe.seconds_per_pbs * 1e3,
            self.fhe.threads,
            self.fhe.backend,
            self.fhe.batch,
            self.fhe.peak_ciphertexts,
            self.fhe.ciphertext_bytes,
            self.fhe.memory_per_sample_bytes as f64 / 1e6,
            pct(self.simulated_agreement_with_quantized),
        );
        s += &layer_table(&self.layers, Some(self.fhe.seconds_per_pbs));
        if let Some(trace) = &self.fhe.trace {
            s += "\n## Trace: activations differing from the exact circuit\n\n| layer | activations | measured | noise model (table flips + decryption) | table flips | decryption |\n|---|---|---|---|---|---|\n";
            for t in trace {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    t.layer,
                    t.activations,
                    pct(t.measured_flip_rate),
                    pct(t.predicted_flip_rate),
                    pct(t.table_flip_rate),
                    pct(t.decode_error_rate)
                );
            }
        }
        s
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }
}
