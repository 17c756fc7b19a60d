//! Mutated circuit files — field edits to 0, negative or huge values, truncation, byte flips,
//! swapped or deleted stages — are an error or a valid circuit, never a panic; and a circuit
//! that loads runs through both simulators and the analysis without panicking.

use proptest::prelude::*;
use proptest::sample::Index;
use qfhe_circuit::fixtures::{chain, residual};
use qfhe_circuit::{analyze, Circuit, NoiseModel};
use qfhe_core::NoiseSpec;
use rand::SeedableRng;
use serde_json::Value;

fn seeds() -> Vec<Vec<u8>> {
    vec![
        chain().to_json(),
        residual().to_json(),
        include_bytes!("data/v3_mlp.json").to_vec(),
    ]
}

/// Paths to every leaf of a JSON value (array index or object key at each level).
fn leaves(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.into());
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                path.push(k.clone().into());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        Value::String(s) => &mut v[s.as_str()],
        _ => unreachable!(),
    })
}

/// Replacement values: 0, ±1, negative, huge, wrapped, doubled, a string.
fn replacement(old: &Value, pick: u8) -> Value {
    let x = old.as_f64().unwrap_or(1.0);
    match pick % 10 {
        0 => 0.into(),
        1 => (-1).into(),
        2 => 1.into(),
        3 => i64::MAX.into(),
        4 => u64::MAX.into(),
        5 => i64::MIN.into(),
        6 => serde_json::json!(x * 2.0 + 1.0),
        7 => serde_json::json!(-x),
        8 => serde_json::json!(1e300),
        _ => "x".into(),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Field(Index, u8),
    Truncate(Index),
    FlipByte(Index, u8),
    SwapStages(Index, Index),
    DeleteElement(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, p)| Mutation::Field(i, p)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapStages(a, b)),
        2 => any::<Index>().prop_map(Mutation::DeleteElement),
    ]
}

fn apply(seed: &[u8], m: &Mutation) -> Vec<u8> {
    let mut json: Value = serde_json::from_slice(seed).unwrap();
    let mut paths = Vec::new();
    leaves(&json, &mut Vec::new(), &mut paths);
    match m {
        Mutation::Field(i, pick) => {
            let path = i.get(&paths);
            let leaf = at(&mut json, path);
            *leaf = replacement(leaf, *pick);
        }
        Mutation::Truncate(i) => return seed[..i.index(seed.len())].to_vec(),
        Mutation::FlipByte(i, b) => {
            let mut bytes = seed.to_vec();
            let k = i.index(bytes.len());
            bytes[k] ^= b | 1;
            return bytes;
        }
        Mutation::SwapStages(a, b) => {
            let key = if json.get("stages").is_some() {
                "stages"
            } else {
                "hidden"
            };
            let list = json[key].as_array_mut().unwrap();
            let (a, b) = (a.index(list.len()), b.index(list.len()));
            list.swap(a, b);
        }
        Mutation::DeleteElement(i) => {
            // Remove the array element that holds a random leaf.
            let path = i.get(&paths).clone();
            if let Some(pos) = path.iter().rposition(|k| k.is_number()) {
                let parent = at(&mut json, &path[..pos]);
                let idx = path[pos].as_u64().unwrap() as usize;
                parent.as_array_mut().unwrap().remove(idx);
            }
        }
    }
    serde_json::to_vec(&json).unwrap()
}

/// Everything a loaded circuit is used for, on a valid input and a few invalid ones.
fn exercise(c: &Circuit) {
    let q = (1i32 << c.input.bits) - 1;
    let x: Vec<i32> = (0..c.features())
        .map(|i| (i as i32 * 7 + 3) % (q + 1))
        .collect();
    c.run_exact(&x)
        .expect("a valid input of a valid circuit runs");
    assert!(c.run_exact(&x[1..]).is_err());
    let spec = NoiseSpec::default();
    let noise = NoiseModel::new(c, &spec);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    noise.run(c, &x, &mut rng).expect("runs");
    analyze(c, &spec, &[x]);
    for j in 0..c.output.d_out() {
        c.decode_output(j, u64::MAX / 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn mutated_circuit_files_are_errors_or_valid(seed in 0usize..3, m in mutation()) {
        let bytes = apply(&seeds()[seed], &m);
        if let Ok(c) = Circuit::from_json(&bytes, "mutated.json") {
            prop_assert!(c.validate().is_ok());
            exercise(&c);
        }
    }
}
