//! QAT models and training loops on Burn 0.22.
//!
//! * [`model`]: [`QMlp`], an MLP of fake-quantized layers whose QAT forward computes exactly the
//!   integers the exported circuit computes (slot rounding included);
//! * [`batch`]: turning an [`qfhe_datasets::ImageSet`] into Burn tensors;
//! * [`trainer`]: fp32 pre-training, calibration and QAT fine-tuning;
//! * [`progress`]: the events training reports while it runs (the library never prints);
//! * [`device`]: choosing the Burn backend at run time (`flex`, `ndarray`, `wgpu`).

pub mod batch;
pub mod cnn;
pub mod dense;
pub mod device;
pub mod model;
pub mod progress;
pub mod qat;
pub mod trainer;

pub use cnn::{CnnConfig, Pooling, QCnn};
pub use device::{select_device, DeviceChoice};
pub use model::{HiddenTrace, MlpConfig, QMlp, QatTrace};
pub use progress::{Phase, TrainEvent};
pub use qat::{PhaseNoise, QatModel};
pub use trainer::{
    evaluate_float, evaluate_qat, train, train_model, train_model_with, EpochLog, TrainConfig,
    TrainError, TrainReport,
};
