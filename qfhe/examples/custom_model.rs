//! A model that is no preset: convolutions, SiLU and a residual add, fitted on a slice of
//! MNIST, compiled, and run in the clear, through the noise model and under real encryption.
use qfhe::{fit, Dataset, FitConfig, Mode, ModelSpec};

const MODEL: &str = r#"
input = [1, 28, 28]
classes = 10
layers = [
    { kind = "conv2d", out_channels = 4, kernel = 5, stride = 3 }, { kind = "relu" },
    { kind = "conv2d", out_channels = 4, kernel = 3, padding = 1 }, { kind = "silu" },
    { kind = "add", from = 1 },  # layer 1's output + layer 3's (equal shapes, no PBS)
    { kind = "conv2d", out_channels = 4, kernel = 3, padding = 1 }, { kind = "relu" },
    { kind = "flatten" }, { kind = "linear", out = 10 },
]"#;

fn main() -> Result<(), qfhe::Error> {
    let data = Dataset::mnist()?; // fetched and checksummed on first use
    let spec = ModelSpec::from_toml(MODEL)?;
    let mut cfg = FitConfig::default();
    (cfg.train.fp32_epochs, cfg.train.qat_epochs) = (3, 2);
    (cfg.train.max_train, cfg.train.max_eval) = (Some(6000), Some(1000));
    let model = fit(&spec, &data, &cfg)?;
    let compiled = model.compile(&data.train)?;
    let pbs = compiled.circuit().pbs_count();
    println!("{pbs} PBS per image; labels {:?}", &data.test.labels[..3]);
    let (images, seed) = ([0, 1, 2], 1);
    for (name, mode) in [
        ("exact", Mode::Exact),
        ("simulated", Mode::Simulate { seed }),
        ("FHE", Mode::Fhe),
    ] {
        let predictions = compiled.predict(&data.test, &images, mode)?;
        let classes: Vec<usize> = predictions.iter().map(|p| p.class).collect();
        let seconds: f64 = predictions.iter().map(|p| p.seconds).sum();
        println!("{name:>9}: {classes:?} ({seconds:.1} s)");
    }
    Ok(())
}
