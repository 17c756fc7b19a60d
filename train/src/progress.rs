//! What training reports while it runs: events for a caller to show (the library never prints).

use crate::trainer::EpochLog;

/// The two training phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// fp32 training of the float model.
    Fp32,
    /// Quantization-aware fine-tuning.
    Qat,
}

impl Phase {
    /// `fp32` or `qat`, as in [`EpochLog::phase`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Qat => "qat",
        }
    }
}

/// One thing that happened during training.
#[derive(Debug, Clone)]
pub enum TrainEvent<'a> {
    /// Epoch `epoch` of `epochs` of `phase` begins, with `steps` mini-batches.
    EpochStart {
        /// The phase.
        phase: Phase,
        /// 1-based epoch number.
        epoch: usize,
        /// Epochs in the phase.
        epochs: usize,
        /// Mini-batches in the epoch.
        steps: usize,
    },
    /// One mini-batch done.
    Step {
        /// Mean training cross-entropy of the epoch so far.
        mean_loss: f64,
        /// The learning rate used.
        lr: f64,
    },
    /// An epoch finished, with its numbers.
    EpochEnd(&'a EpochLog),
    /// The quantizers were calibrated from the fp32 model.
    Calibrated {
        /// Accuracy of the quantized model before fine-tuning, in `[0, 1]`.
        qat_accuracy: f64,
    },
}
