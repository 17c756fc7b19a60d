//! Command-line arguments.

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Train quantized networks and run them under fully homomorphic encryption (TFHE).
#[derive(Parser, Debug)]
#[command(name = "qfhe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train fp32, then QAT, and save the model.
    Train(TrainArgs),
    /// Export a trained model as a circuit file.
    Export(ExportArgs),
    /// Evaluate a circuit: exact and noise-model simulation on the test set, then FHE.
    Eval(EvalArgs),
    /// Train → export → FHE evaluation → accuracy table and report.
    Run(RunArgs),
}

/// Model families.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Multi-layer perceptron: GEMM + one PBS per hidden neuron.
    Mlp,
    /// Convolutional network: conv (one PBS per output position) → optional pooling (average:
    /// folded into the next layer, no PBS; max: 6 PBS per 2×2 window) → fully connected hidden
    /// layer → output layer. Default 1→24 channels, 7×7, stride 4, no pooling, 256 hidden:
    /// 864 + 256 PBS per MNIST sample (docs/DESIGN.md says why).
    Cnn,
}

/// CNN pooling, as `--pooling` takes it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingArg {
    /// Average pooling: folded into the next layer's weights, no PBS.
    Average,
    /// 2×2 max pooling: `max(a, b) = a + relu(b − a)` twice, 6 PBS per window.
    Max,
}

impl From<PoolingArg> for qfhe_train::Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Average => Self::Average,
            PoolingArg::Max => Self::Max,
        }
    }
}

impl ModelKind {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
        }
    }
}

/// Where the data comes from.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset name (`mnist`, fetched and checksummed automatically).
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Use the four IDX files in DIR instead (same names as MNIST's; no checksum).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Model and training options.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model family.
    #[arg(long, value_enum, default_value = "mlp")]
    pub model: ModelKind,
    /// Hidden (fully connected) layer widths, comma-separated; each hidden neuron costs one
    /// PBS per sample. Default: 128 for the MLP, 256 for the CNN; `--hidden 0` for
    /// none (CNN only).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// CNN: convolution output channels.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub conv_channels: usize,
    /// CNN: square kernel size.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=64).map(|v| v as usize))]
    pub kernel: usize,
    /// CNN: convolution stride.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64).map(|v| v as usize))]
    pub stride: usize,
    /// CNN: zero padding on each side.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64).map(|v| v as usize))]
    pub padding: usize,
    /// CNN: pooling window (and stride); 1 for none.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64).map(|v| v as usize))]
    pub pool: usize,
    /// CNN: pooling after the convolution's activations. Max pooling costs 6 PBS per 2×2 window
    /// (shown in the per-layer table), average pooling none.
    #[arg(long, value_enum, default_value = "average")]
    pub pooling: PoolingArg,
    /// CNN: train the fp32 phase without batch norm after the convolution (by default it is
    /// used, then folded into the convolution before QAT).
    #[arg(long)]
    pub no_batch_norm: bool,
    /// Weight bits of the hidden layers (2 to 8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub w_bits: u32,
    /// Weight bits of the output layer (decrypted directly, no PBS; 2 to 8).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub out_w_bits: u32,
    /// Activation bits (2 to 8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub a_bits: u32,
    /// Input bits (1 to 8; default: the activation bits).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub in_bits: Option<u32>,
    /// Epochs of fp32 training (the fp32 column; as many as QAT gets in total, for a fair
    /// comparison).
    #[arg(long, default_value_t = 18)]
    pub fp32_epochs: usize,
    /// Epochs of QAT fine-tuning (default: 12 for the MLP, 16 for the CNN).
    #[arg(long)]
    pub qat_epochs: Option<usize>,
    /// Initial Adam learning rate of the fp32 phase (cosine decay to 5% of it).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Initial Adam learning rate of QAT (cosine decay to 5% of it).
    #[arg(long, default_value_t = 1e-3)]
    pub qat_lr: f64,
    /// QAT on the exact circuit only. By default QAT trains through the FHE noise model (each
    /// PBS input gets its modelled Gaussian noise), so the model learns to tolerate the
    /// off-by-one table reads FHE makes; evaluation always uses the exact circuit.
    #[arg(long)]
    pub no_qat_noise: bool,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1 << 20).map(|v| v as usize))]
    pub batch_size: usize,
    /// Narrowest table step to train for, in PBS slots (accumulator-aware bound): wider steps
    /// mean fewer off-by-one flips and lower gross-error probability, at some accuracy cost.
    #[arg(long, default_value_t = 40.0, value_parser = positive_finite)]
    pub min_step_slots: f64,
    /// PBS polynomial size the circuit is encoded for (2048 or 8192).
    #[arg(long, default_value_t = 2048)]
    pub poly_size: u32,
    /// Training backend: flex (CPU), ndarray (needs the `ndarray` feature), wgpu (needs `wgpu`).
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceArg,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder for model.bpk and model.json.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Folder written by `qfhe train`.
    #[arg(long, default_value = "qfhe-out")]
    pub model_dir: PathBuf,
    /// Circuit file to write.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub out: PathBuf,
}

/// FHE evaluation options.
#[derive(Args, Debug, Clone)]
pub struct FheArgs {
    /// Test samples to run under real encryption.
    #[arg(long, default_value_t = 100)]
    pub fhe_samples: usize,
    /// Samples evaluated together: their PBS share the thread pool, so throughput rises on
    /// narrow layers, and each sample's latency becomes the batch's wall time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub fhe_batch: usize,
    /// Threads for the server's PBS (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub threads: Option<usize>,
    /// Largest acceptable gross-error probability per PBS, as log2 (default 2^-40).
    #[arg(long, default_value_t = -40.0, allow_hyphen_values = true, value_parser = negative_log2)]
    pub p_error_log2: f64,
    /// Decrypt every layer's outputs and compare them with the exact simulator and the noise
    /// model's prediction (for a few samples; a deployed client never sees hidden layers). The
    /// prediction includes the chance of decrypting a PBS output to a neighbouring level when
    /// its level spacing is small against its noise (shown separately).
    #[arg(long)]
    pub trace: bool,
    /// Seed of the noise-model simulation.
    #[arg(long, default_value_t = 7)]
    pub noise_seed: u64,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Circuit file written by `qfhe export`.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub fhe: FheArgs,
    /// Folder for report.json and report.md.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub fhe: FheArgs,
    /// Folder for the model, circuit, report.json and report.md.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

/// Training backends (`--device`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// burn-flex on the CPU.
    Flex,
    /// burn-ndarray on the CPU (needs the `ndarray` cargo feature).
    Ndarray,
    /// burn-wgpu (needs the `wgpu` cargo feature).
    Wgpu,
}

impl DeviceArg {
    /// The trainer's device choice.
    pub fn choice(self) -> qfhe_train::DeviceChoice {
        match self {
            Self::Flex => qfhe_train::DeviceChoice::Flex,
            Self::Ndarray => qfhe_train::DeviceChoice::Ndarray,
            Self::Wgpu => qfhe_train::DeviceChoice::Wgpu,
        }
    }

    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
        }
    }
}

fn positive_finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of slots")),
    }
}

fn negative_log2(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (-200.0..0.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a log2 probability in [-200, 0), e.g. -40"
        )),
    }
}
