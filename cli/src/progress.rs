//! Progress bars and per-epoch lines for the library's training events.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use qfhe::TrainEvent;
use std::io::IsTerminal;

/// A progress bar of `len` steps labelled `label` on stderr (hidden when stderr is not a
/// terminal).
pub fn bar(len: usize, label: &str, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

/// Draws training: one bar per epoch, a line per finished epoch.
#[derive(Default)]
pub struct TrainProgress {
    bar: Option<ProgressBar>,
}

impl TrainProgress {
    /// Show one event.
    pub fn show(&mut self, event: TrainEvent<'_>) {
        match event {
            TrainEvent::EpochStart {
                phase,
                epoch,
                epochs,
                steps,
            } => {
                let label = format!("{} {epoch}/{epochs}", phase.name());
                self.bar = Some(bar(
                    steps,
                    &label,
                    "{prefix:>10} [{bar:30}] {pos}/{len} {msg}",
                ));
            }
            TrainEvent::Step { mean_loss, lr } => {
                if let Some(pb) = &self.bar {
                    pb.inc(1);
                    if pb.position().is_multiple_of(20) {
                        pb.set_message(format!("loss {mean_loss:.4}  lr {lr:.2e}"));
                    }
                }
            }
            TrainEvent::EpochEnd(e) => {
                if let Some(pb) = self.bar.take() {
                    pb.finish_and_clear();
                }
                let validation = e
                    .validation_accuracy
                    .map_or(String::new(), |v| format!("  validation {v:.4}"));
                eprintln!(
                    "  {:>4} epoch {:>2}: loss {:.4}  test accuracy {:.4}{validation}  ({:.1} s)",
                    e.phase, e.epoch, e.loss, e.test_accuracy, e.seconds
                );
            }
            TrainEvent::Calibrated { qat_accuracy } => {
                eprintln!(
                    "  calibrated quantizers: QAT accuracy before fine-tuning {qat_accuracy:.4}"
                );
            }
        }
    }
}
