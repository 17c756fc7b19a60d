//! Mutated model files — field edits to 0, negative or huge values, truncation, byte flips,
//! swapped or deleted layers — are an error or a valid model, never a panic.

use proptest::prelude::*;
use proptest::sample::Index;
use qfhe_core::model::ModelSpec;
use serde_json::Value;

fn seeds() -> Vec<String> {
    ["mlp", "cnn", "lenet"]
        .iter()
        .map(|p| serde_json::to_string(&ModelSpec::preset(p, [1, 28, 28], 10).unwrap()).unwrap())
        .collect()
}

/// Byte spans of the numbers in a JSON text.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() || bytes[i] == b'-' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || b"-.eE+".contains(&bytes[i])) {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

fn mutate(seed: &str, kind: u8, at: Index, pick: u8, other: Index) -> String {
    let mut json: Value = serde_json::from_str(seed).unwrap();
    match kind % 5 {
        0 => {
            let spans = number_spans(seed);
            let (a, b) = *at.get(&spans);
            let value = [
                "0",
                "-1",
                "18446744073709551615",
                "1099511627776",
                "0.5",
                "7",
            ];
            return format!("{}{}{}", &seed[..a], value[pick as usize % 6], &seed[b..]);
        }
        1 => {
            let layers = json["layers"].as_array_mut().unwrap();
            let (a, b) = (at.index(layers.len()), other.index(layers.len()));
            layers.swap(a, b);
        }
        2 => {
            let layers = json["layers"].as_array_mut().unwrap();
            let i = at.index(layers.len());
            layers.remove(i);
        }
        3 => return seed[..at.index(seed.len())].to_string(),
        _ => {
            let mut bytes = seed.as_bytes().to_vec();
            let i = at.index(bytes.len());
            bytes[i] = b"0-9[]{}\":,x"[pick as usize % 11];
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    json.to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_model_files_are_errors_or_valid(
        seed in 0usize..3, kind in any::<u8>(), at in any::<Index>(), pick in any::<u8>(), other in any::<Index>()
    ) {
        let text = mutate(&seeds()[seed], kind, at, pick, other);
        if let Ok(spec) = ModelSpec::from_json(&text) {
            let shapes = spec.validate().expect("a model that parsed is valid");
            prop_assert_eq!(shapes.len(), spec.layers.len());
            // The TOML form of any valid model reads back as the same model.
            prop_assert_eq!(ModelSpec::from_toml(&spec.to_toml()).unwrap(), spec);
        }
    }
}
