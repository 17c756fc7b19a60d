//! Model descriptions: presets, the file formats, shape inference and the errors a user sees.

use qfhe_core::model::{LayerSpec, ModelError, ModelSpec, Shape};

const LENET_TOML: &str = r#"
input = [1, 28, 28]
classes = 10

[[layers]]
kind = "conv2d"
out_channels = 12
kernel = 5
stride = 2

[[layers]]
kind = "batch_norm"

[[layers]]
kind = "relu"

[[layers]]
kind = "conv2d"
out_channels = 24
kernel = 3
stride = 2

[[layers]]
kind = "batch_norm"

[[layers]]
kind = "relu"

[[layers]]
kind = "flatten"

[[layers]]
kind = "linear"
out = 128

[[layers]]
kind = "relu"

[[layers]]
kind = "linear"
out = 10
"#;

#[test]
fn presets_have_the_documented_shapes() {
    let mnist = [1, 28, 28];
    let mlp = ModelSpec::preset("mlp", mnist, 10).unwrap();
    assert_eq!(mlp.validate().unwrap().last(), Some(&Shape::Flat(10)));
    let cnn = ModelSpec::preset("cnn", mnist, 10).unwrap();
    let shapes = cnn.validate().unwrap();
    assert_eq!(shapes[0], Shape::Image([24, 6, 6]));
    let lenet = ModelSpec::preset("lenet", mnist, 10).unwrap();
    let shapes = lenet.validate().unwrap();
    assert_eq!(shapes[0], Shape::Image([12, 12, 12]));
    assert_eq!(shapes[3], Shape::Image([24, 5, 5]));
    let convs = lenet
        .layers
        .iter()
        .filter(|l| matches!(l, LayerSpec::Conv2d { .. }))
        .count();
    assert_eq!(convs, 2);
    assert!(matches!(
        ModelSpec::preset("resnet", mnist, 10),
        Err(ModelError::UnknownPreset(_))
    ));
}

#[test]
fn a_file_describes_the_same_model_as_its_preset() {
    let from_file = ModelSpec::from_toml(LENET_TOML).unwrap();
    assert_eq!(
        from_file,
        ModelSpec::preset("lenet", [1, 28, 28], 10).unwrap()
    );
    // TOML and JSON round trips.
    assert_eq!(
        ModelSpec::from_toml(&from_file.to_toml()).unwrap(),
        from_file
    );
    let json = serde_json::to_string(&from_file).unwrap();
    assert_eq!(ModelSpec::from_json(&json).unwrap(), from_file);
}

#[test]
fn residual_and_smooth_activations_are_described() {
    let text = r#"
input = [1, 8, 8]
classes = 3
[quant]
a_bits = 4
[[layers]]
kind = "conv2d"
out_channels = 4
kernel = 3
padding = 1
[[layers]]
kind = "silu"
[[layers]]
kind = "conv2d"
out_channels = 4
kernel = 3
padding = 1
[[layers]]
kind = "gelu"
[[layers]]
kind = "add"
from = 1
[[layers]]
kind = "flatten"
[[layers]]
kind = "linear"
out = 3
"#;
    let spec = ModelSpec::from_toml(text).unwrap();
    assert_eq!(spec.quant.a_bits, 4);
    assert_eq!(
        spec.quant.w_bits, 3,
        "defaults fill what the file leaves out"
    );
    let shapes = spec.validate().unwrap();
    assert_eq!(shapes[4], Shape::Image([4, 8, 8]));
    assert!(spec.layers[1].activation().unwrap().signed());
}

fn error(text: &str) -> String {
    ModelSpec::from_toml(text).unwrap_err().to_string()
}

#[test]
fn mistakes_are_errors_that_say_what_to_change() {
    let head = "input = [1, 28, 28]\nclasses = 10\n";
    let layer = |body: &str| format!("{head}{body}\n[[layers]]\nkind = \"linear\"\nout = 10\n");
    let e = error(&layer("[[layers]]\nkind = \"relu\""));
    assert!(e.contains("add a flatten layer"), "{e}");
    let e = error(&layer(
        "[[layers]]\nkind = \"conv2d\"\nout_channels = 4\nkernel = 40\n[[layers]]\nkind = \"relu\"\n[[layers]]\nkind = \"flatten\"",
    ));
    assert!(
        e.contains("kernel 40 is larger than its 28x28 input"),
        "{e}"
    );
    let e = error(&layer(
        "[[layers]]\nkind = \"conv2d\"\nout_channels = 4\nkernel = 3\nstride = 0",
    ));
    assert!(e.contains("layers[0].stride = 0"), "{e}");
    let e = error(&layer(
        "[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"linear\"\nout = 5",
    ));
    assert!(e.contains("only an activation"), "{e}");
    let e = error(&layer(
        "[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"batch_norm\"",
    ));
    assert!(
        e.contains("folded into the linear or conv2d layer right before it"),
        "{e}"
    );
    let e = error(&layer(
        "[[layers]]\nkind = \"relu\"\n[[layers]]\nkind = \"max_pool\"\nk = 3\n[[layers]]\nkind = \"flatten\"",
    ));
    assert!(e.contains("2x2 windows only"), "{e}");
    let e = error(&layer(
        "[[layers]]\nkind = \"max_pool\"\n[[layers]]\nkind = \"flatten\"",
    ));
    assert!(e.contains("right after one"), "{e}");
    let e = error(&layer(
        "[[layers]]\nkind = \"tanh\"\n[[layers]]\nkind = \"avg_pool\"\nk = 2\n[[layers]]\nkind = \"relu\"\n[[layers]]\nkind = \"add\"\nfrom = 1\n[[layers]]\nkind = \"flatten\"",
    ));
    assert!(e.contains("does not output an activation's codes"), "{e}");
    let e = error(&layer("[[layers]]\nkind = \"relu\"\n[[layers]]\nkind = \"add\"\nfrom = 5\n[[layers]]\nkind = \"flatten\""));
    assert!(e.contains("from = 5 must name an earlier layer"), "{e}");
    let e = error(&format!(
        "{head}[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"linear\"\nout = 7\n"
    ));
    assert!(e.contains("linear layer with 10 outputs"), "{e}");
    let e = error(&format!("{head}[quant]\nw_bits = 12\n[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"linear\"\nout = 10\n"));
    assert!(
        e.contains("quant.w_bits = 12") && e.contains("[2, 8]"),
        "{e}"
    );
    let e = error(&format!("{head}[[layers]]\nkind = \"softmax\"\n"));
    assert!(e.contains("TOML") && e.contains("softmax"), "{e}");
    let e = error("input = [1, 0, 28]\nclasses = 10\n[[layers]]\nkind = \"linear\"\nout = 10\n");
    assert!(e.contains("input"), "{e}");
    let huge = "input = [100000, 100000, 100000]\nclasses = 10\n[[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"linear\"\nout = 10\n";
    assert!(error(huge).contains("at most"));
}

#[test]
fn the_readme_example_is_a_valid_model() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("closed");
    let spec = ModelSpec::from_toml(&readme[start..end]).unwrap();
    assert!(spec
        .layers
        .iter()
        .any(|l| matches!(l, qfhe_core::LayerSpec::Add { from: 2 })));
}

#[test]
fn exact_gelu_and_sign_compute_their_definitions() {
    use qfhe_core::Activation;
    // Φ(1) = 0.841344746, Φ(−2) = 0.022750132 (standard normal table).
    let gelu = Activation::GeluErf;
    assert!((gelu.apply_f64(1.0) - 0.841_344_746).abs() < 1e-9);
    assert!((gelu.apply_f64(-2.0) + 2.0 * 0.022_750_132).abs() < 1e-9);
    assert!((gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
    // The tanh form differs from it by at most about 5e-4.
    assert!((Activation::Gelu.apply_f64(1.0) - gelu.apply_f64(1.0)).abs() < 1e-3);
    let sign = Activation::Sign;
    let range = sign.code_range(4);
    assert_eq!(range, (-1, 1));
    for s_out in [0.01f32, 1.0, 7.5] {
        assert_eq!(sign.code(0.3, s_out, range), 1);
        assert_eq!(
            sign.code(0.0, s_out, range),
            1,
            "zero is positive, as in QONNX"
        );
        assert_eq!(sign.code(-1e-6, s_out, range), -1);
        assert_eq!(sign.code_f64(-3.0, s_out as f64, range), -1);
    }
    let text = "input = [4]\nclasses = 2\n[[layers]]\nkind = \"linear\"\nout = 3\n\
                [[layers]]\nkind = \"sign\"\n[[layers]]\nkind = \"linear\"\nout = 2\n\
                [[layers]]\nkind = \"gelu_erf\"\n[[layers]]\nkind = \"linear\"\nout = 2\n";
    let spec: ModelSpec = toml::from_str(text).unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.layers[1].activation(), Some(Activation::Sign));
    assert_eq!(spec.layers[3].activation(), Some(Activation::GeluErf));
}
