//! Files qfhe cannot import are errors that say why — unsupported operators listed once each,
//! refused quantizers named, malformed graphs explained — and no mutation of a valid file makes
//! the reader panic or allocate without bound.

use proptest::prelude::*;
use prost::Message;
use qfhe_onnx::proto::{
    attribute_type, data_type, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};
use qfhe_onnx::{import, Graph, OnnxError};

fn node(op: &str, domain: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        domain: domain.into(),
        attribute: vec![],
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: values,
        ..Default::default()
    }
}

fn input(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: d,
                            dim_param: String::new(),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "test".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![input("x", &[1, 4])],
            output: vec![ValueInfoProto {
                name: output.into(),
                r#type: None,
            }],
        }),
    }
    .encode_to_vec()
}

fn import_bytes(bytes: &[u8]) -> Result<qfhe_onnx::Imported, OnnxError> {
    import(&Graph::from_bytes(bytes)?)
}

#[test]
fn unsupported_operators_are_listed_once_each_with_counts_and_a_hint() {
    let bytes = model(
        vec![
            node("Gather", "", "g0", &["x", "idx"], &["a"]),
            node("LSTM", "", "lstm", &["a", "w", "r"], &["b"]),
            node("Gather", "", "g1", &["b", "idx"], &["c"]),
            node("Relu", "", "r", &["c"], &["y"]),
        ],
        vec![
            floats("idx", &[1], vec![0.0]),
            floats("w", &[1], vec![0.0]),
            floats("r", &[1], vec![0.0]),
        ],
        "y",
    );
    let err = import_bytes(&bytes).unwrap_err();
    let OnnxError::Unsupported(ops) = &err else {
        panic!("{err}")
    };
    assert_eq!(ops.len(), 2);
    assert_eq!((ops[0].op_type.as_str(), ops[0].count), ("Gather", 2));
    assert_eq!(ops[0].first_node, "g0");
    assert_eq!((ops[1].op_type.as_str(), ops[1].count), ("LSTM", 1));
    let text = err.to_string();
    assert!(
        text.contains("ai.onnx::Gather (2 nodes, first 'g0')"),
        "{text}"
    );
    assert!(
        text.contains("ai.onnx::LSTM (1 node, first 'lstm')"),
        "{text}"
    );
    assert!(text.contains("recurrent"), "{text}");
    assert!(text.contains("qfhe lowers: Gemm"), "{text}");
}

#[test]
fn an_erf_outside_gelu_and_tanh_gelus_pow_say_how_to_export() {
    // x · (1 + erf(x/√2)) without the ½ is not GELU: the Erf stays and is listed.
    let bytes = model(
        vec![
            node("Div", "", "div", &["x", "sqrt2"], &["d"]),
            node("Erf", "", "erf", &["d"], &["e"]),
            node("Add", "", "add", &["e", "one"], &["a"]),
            node("Mul", "", "mul", &["x", "a"], &["m"]),
            node("Pow", "", "pow", &["m", "three"], &["y"]),
        ],
        vec![
            floats("sqrt2", &[], vec![std::f32::consts::SQRT_2]),
            floats("one", &[], vec![1.0]),
            floats("three", &[], vec![3.0]),
        ],
        "y",
    );
    let err = import_bytes(&bytes).unwrap_err();
    let OnnxError::Unsupported(ops) = &err else {
        panic!("{err}")
    };
    let listed: Vec<&str> = ops.iter().map(|o| o.op_type.as_str()).collect();
    assert_eq!(listed, ["Div", "Erf", "Pow"]);
    let text = err.to_string();
    assert!(text.contains("nn.GELU()"), "{text}");
    assert!(text.contains("opset_version=20"), "{text}");
}

#[test]
fn a_float_quant_and_blocked_dequantization_are_refused_by_name() {
    let float_quant = model(
        vec![node(
            "FloatQuant",
            "qonnx.custom_op.general",
            "fq",
            &["x", "s"],
            &["y"],
        )],
        vec![floats("s", &[], vec![1.0])],
        "y",
    );
    let err = import_bytes(&float_quant).unwrap_err().to_string();
    assert!(err.contains("FloatQuant") && err.contains("'fq'"), "{err}");
    assert!(err.contains("floating-point quantization"), "{err}");

    let mut dq = node("DequantizeLinear", "", "dq", &["w", "s"], &["y"]);
    dq.attribute.push(int_attr("block_size", 2));
    let blocked = model(
        vec![dq],
        vec![
            TensorProto {
                name: "w".into(),
                dims: vec![4],
                data_type: data_type::INT8,
                int32_data: vec![1, -1, 2, 0],
                ..Default::default()
            },
            floats("s", &[2], vec![0.5, 0.25]),
        ],
        "y",
    );
    let err = import_bytes(&blocked).unwrap_err().to_string();
    assert!(err.contains("'dq'") && err.contains("block_size"), "{err}");
}

#[test]
fn malformed_graphs_are_explained() {
    // A cycle: a reads b, b reads a.
    let cycle = model(
        vec![
            node("Relu", "", "n1", &["b"], &["a"]),
            node("Relu", "", "n2", &["a"], &["b"]),
        ],
        vec![],
        "b",
    );
    let err = import_bytes(&cycle).unwrap_err().to_string();
    assert!(err.contains("cycle"), "{err}");

    let missing = model(
        vec![node("Add", "", "add", &["x", "bias"], &["y"])],
        vec![],
        "y",
    );
    let err = import_bytes(&missing).unwrap_err().to_string();
    assert!(
        err.contains("'bias'") && err.contains("missing initializer"),
        "{err}"
    );

    let mut external = floats("w", &[2], vec![]);
    external.data_location = 1;
    external.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "weights.bin".into(),
    }];
    let err = import_bytes(&model(vec![], vec![external], "x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("external file"), "{err}");

    // Dimensions claiming far more elements than the data holds: refused before allocating.
    let huge = floats("w", &[1 << 20, 1 << 20], vec![1.0]);
    let err = import_bytes(&model(vec![], vec![huge], "x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'w'"), "{err}");

    let err = import_bytes(b"not an onnx file").unwrap_err().to_string();
    assert!(err.contains("not a readable ONNX model"), "{err}");

    // A graph whose output is not the logits of a dense layer.
    let relu_out = model(vec![node("Relu", "", "r", &["x"], &["y"])], vec![], "y");
    let err = import_bytes(&relu_out).unwrap_err().to_string();
    assert!(err.contains("activation function must read"), "{err}");
}

#[test]
fn a_layer_reading_unquantized_floats_says_which_quantizer_is_missing() {
    // Quantized weights, but the Gemm reads the float input directly.
    let bytes = model(
        vec![
            node(
                "Quant",
                "qonnx.custom_op.general",
                "wq",
                &["w", "s", "z", "b"],
                &["wq"],
            ),
            node("Gemm", "", "/fc1/Gemm", &["x", "wq"], &["y"]),
        ],
        vec![
            floats("w", &[4, 2], vec![0.1; 8]),
            floats("s", &[], vec![0.05]),
            floats("z", &[], vec![0.0]),
            floats("b", &[], vec![3.0]),
        ],
        "y",
    );
    let err = import_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("'/fc1/Gemm'"), "{err}");
    assert!(err.contains("QuantIdentity"), "{err}");

    // Without any quantizer the same graph is a float model, left to calibration.
    let float = model(
        vec![node("Gemm", "", "/fc1/Gemm", &["x", "w"], &["y"])],
        vec![floats("w", &[4, 2], vec![0.1; 8])],
        "y",
    );
    let imported = import_bytes(&float).unwrap();
    assert!(!imported.quantized);
    assert_eq!(imported.spec.arch(), "4 linear2");
}

fn fixture() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/brevitas/cnn.opset13.qcdq.onnx"),
    )
    .unwrap()
}

/// A structural edit of a decoded model: a numeric field of a tensor, attribute or node set to
/// an extreme, an entry removed, or two nodes swapped.
#[derive(Debug, Clone)]
enum Edit {
    Dim(usize, usize, i64),
    AttrInt(usize, usize, i64),
    AttrFloat(usize, usize, f32),
    TensorValue(usize, usize, f32),
    DropInitializer(usize),
    DropNode(usize),
    DropInput(usize, usize),
    SwapNodes(usize, usize),
    Opset(i64),
    DataType(usize, i32),
}

fn extreme() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(1),
        Just(2),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(1 << 31),
        Just(1 << 40),
        -100i64..100,
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let f = prop_oneof![
        Just(0f32),
        Just(-1.0),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(1e30),
        Just(1e-30),
        -10f32..10.0,
    ];
    prop_oneof![
        (any::<usize>(), any::<usize>(), extreme()).prop_map(|(a, b, v)| Edit::Dim(a, b, v)),
        (any::<usize>(), any::<usize>(), extreme()).prop_map(|(a, b, v)| Edit::AttrInt(a, b, v)),
        (any::<usize>(), any::<usize>(), f.clone()).prop_map(|(a, b, v)| Edit::AttrFloat(a, b, v)),
        (any::<usize>(), any::<usize>(), f).prop_map(|(a, b, v)| Edit::TensorValue(a, b, v)),
        any::<usize>().prop_map(Edit::DropInitializer),
        any::<usize>().prop_map(Edit::DropNode),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::DropInput(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapNodes(a, b)),
        extreme().prop_map(Edit::Opset),
        (any::<usize>(), 0i32..20).prop_map(|(a, t)| Edit::DataType(a, t)),
    ]
}

/// Every tensor of the graph, initializers and `Constant` nodes' values.
fn tensors(g: &mut GraphProto) -> Vec<&mut TensorProto> {
    let mut out: Vec<&mut TensorProto> = g.initializer.iter_mut().collect();
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                out.push(t);
            }
        }
    }
    out
}

fn apply(m: &mut ModelProto, e: &Edit) {
    let g = m.graph.as_mut().unwrap();
    let pick = |i: usize, n: usize| (n > 0).then(|| i % n);
    match *e {
        Edit::Dim(t, d, v) => {
            let mut ts = tensors(g);
            if let Some(t) = pick(t, ts.len()) {
                let dims = &mut ts[t].dims;
                if let Some(d) = pick(d, dims.len()) {
                    dims[d] = v;
                } else {
                    dims.push(v);
                }
            }
        }
        Edit::AttrInt(n, a, v) => {
            if let Some(n) = pick(n, g.node.len()) {
                if let Some(a) = pick(a, g.node[n].attribute.len()) {
                    let attr = &mut g.node[n].attribute[a];
                    attr.i = v;
                    attr.ints.iter_mut().for_each(|x| *x = v);
                }
            }
        }
        Edit::AttrFloat(n, a, v) => {
            if let Some(n) = pick(n, g.node.len()) {
                if let Some(a) = pick(a, g.node[n].attribute.len()) {
                    g.node[n].attribute[a].f = v;
                }
            }
        }
        Edit::TensorValue(t, i, v) => {
            let mut ts = tensors(g);
            if let Some(t) = pick(t, ts.len()) {
                let t = &mut ts[t];
                if let Some(i) = pick(i, t.float_data.len()) {
                    t.float_data[i] = v;
                } else if let Some(i) = pick(i, t.raw_data.len() / 4) {
                    t.raw_data[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        Edit::DropInitializer(i) => {
            if let Some(i) = pick(i, g.initializer.len()) {
                g.initializer.remove(i);
            }
        }
        Edit::DropNode(i) => {
            if let Some(i) = pick(i, g.node.len()) {
                g.node.remove(i);
            }
        }
        Edit::DropInput(n, i) => {
            if let Some(n) = pick(n, g.node.len()) {
                if let Some(i) = pick(i, g.node[n].input.len()) {
                    g.node[n].input.remove(i);
                }
            }
        }
        Edit::SwapNodes(a, b) => {
            if let (Some(a), Some(b)) = (pick(a, g.node.len()), pick(b, g.node.len())) {
                let (oa, ob) = (g.node[a].output.clone(), g.node[b].output.clone());
                g.node[a].output = ob;
                g.node[b].output = oa;
            }
        }
        Edit::Opset(v) => m.opset_import[0].version = v,
        Edit::DataType(t, d) => {
            let mut ts = tensors(g);
            if let Some(t) = pick(t, ts.len()) {
                ts[t].data_type = d;
            }
        }
    }
}

/// What the reader must do with any input: an error or a valid model, never a panic.
fn check(bytes: &[u8]) {
    if let Ok(imported) = import_bytes(bytes) {
        imported.params.validate(&imported.spec).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn structural_mutations_are_refused_or_valid(edits in prop::collection::vec(edit(), 1..4)) {
        let mut m = ModelProto::decode(&fixture()[..]).unwrap();
        for e in &edits {
            apply(&mut m, e);
        }
        check(&m.encode_to_vec());
    }

    #[test]
    fn byte_mutations_are_refused_or_valid(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<usize>()),
    ) {
        let mut bytes = fixture();
        for (i, b) in &flips {
            let k = i % bytes.len();
            bytes[k] ^= b | 1;
        }
        if let Some(c) = cut {
            bytes.truncate(c % bytes.len());
        }
        check(&bytes);
    }
}
