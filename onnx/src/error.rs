//! The one error type of `qfhe-onnx`.

/// Why an ONNX file cannot be imported. Every message names the tensor, node or field at
/// fault and what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What the system said.
        message: String,
    },
    /// The bytes are not an ONNX model, or exceed a size limit.
    #[error("not a readable ONNX model: {0}")]
    Malformed(String),
    /// The graph's structure is broken: a cycle, a value nobody produces, a duplicate name.
    #[error("the ONNX graph is not well formed: {0}")]
    Graph(String),
    /// Operators qfhe has no lowering for, each listed once.
    #[error("{}", unsupported_message(.0))]
    Unsupported(Vec<UnsupportedOp>),
    /// A node qfhe supports uses it in a way the circuit cannot express.
    #[error("node '{node}' ({op}): {message}")]
    Node {
        /// The node's name (or its first output when unnamed).
        node: String,
        /// Its operator type.
        op: String,
        /// What is wrong and what to change in the model.
        message: String,
    },
    /// The model's description, once read, breaks a rule of qfhe's model descriptions.
    #[error(transparent)]
    Model(#[from] qfhe_core::ModelError),
}

/// One unsupported `(domain, op_type)` of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    /// Operator domain (`""` is the default ONNX domain).
    pub domain: String,
    /// Operator type.
    pub op_type: String,
    /// Nodes of this operator in the graph.
    pub count: usize,
    /// The first such node's name.
    pub first_node: String,
    /// What to rewrite it as, where qfhe supports an equivalent.
    pub hint: Option<&'static str>,
}

fn unsupported_message(ops: &[UnsupportedOp]) -> String {
    let mut s = format!(
        "the graph uses {} operator{} qfhe cannot lower:",
        ops.len(),
        if ops.len() == 1 { "" } else { "s" }
    );
    for op in ops {
        let domain = if op.domain.is_empty() {
            "ai.onnx"
        } else {
            &op.domain
        };
        s.push_str(&format!(
            "\n  - {domain}::{} ({} node{}, first '{}')",
            op.op_type,
            op.count,
            if op.count == 1 { "" } else { "s" },
            op.first_node
        ));
        if let Some(h) = op.hint {
            s.push_str(&format!(": {h}"));
        }
    }
    s.push_str(&format!(
        "\nqfhe lowers: {}",
        crate::ops::supported().join(", ")
    ));
    s
}

/// Result with [`OnnxError`].
pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
