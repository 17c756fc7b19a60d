//! Which ONNX operators qfhe lowers, and the listing of those it does not.

use crate::error::UnsupportedOp;
use crate::graph::Node;

/// The QONNX operator domains qfhe reads (Brevitas ≥ 0.11, older Brevitas, FINN).
pub const QONNX_DOMAINS: [&str; 3] = [
    "qonnx.custom_op.general",
    "onnx.brevitas",
    "finn.custom_op.general",
];

const DEFAULT_OPS: [&str; 22] = [
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Conv",
    "Pad",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "AveragePool",
    "GlobalAveragePool",
    "MaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Identity",
    "Clip",
    "QuantizeLinear",
    "DequantizeLinear",
];

const QONNX_OPS: [&str; 4] = ["Quant", "IntQuant", "BipolarQuant", "Trunc"];

/// Every operator qfhe reads, as listed in errors: the default domain's, `Constant` (folded
/// into constants before the walk), and the QONNX ones.
pub fn supported() -> Vec<String> {
    DEFAULT_OPS
        .iter()
        .chain(&["Constant"])
        .map(|op| op.to_string())
        .chain(QONNX_OPS.iter().map(|op| format!("{op} (QONNX)")))
        .collect()
}

/// Whether qfhe knows `(domain, op_type)`.
pub fn is_supported(domain: &str, op_type: &str) -> bool {
    if domain.is_empty() {
        DEFAULT_OPS.contains(&op_type)
    } else {
        QONNX_DOMAINS.contains(&domain) && QONNX_OPS.contains(&op_type)
    }
}

/// What to rewrite an operator as, where qfhe has an equivalent.
fn hint(domain: &str, op_type: &str) -> Option<&'static str> {
    Some(match (domain, op_type) {
        ("", "Gather") => "index with a constant slice or a Reshape/Flatten before export, or move the lookup out of the model",
        ("", "Concat") => "replace the concatenation by a residual Add of equal shapes, or by one wider Gemm/Conv",
        ("", "Sub") => "fold the constant into the preceding layer's bias (an Add of a constant)",
        ("", "Softmax" | "LogSoftmax") => "remove it from the exported model: qfhe reads the class from the logits (argmax), which softmax does not change",
        ("", "Squeeze" | "Unsqueeze") => "export without it: qfhe reads NCHW images and flat vectors, use Flatten",
        ("", "LSTM" | "GRU" | "RNN") => "recurrent layers are not supported; unroll a fixed-length sequence into Gemm layers",
        ("", "Resize" | "Upsample" | "DepthToSpace") => "upsampling is not supported; use a strided Conv or pooling instead",
        ("", "Erf") => "qfhe reads Erf only inside GELU's x·½·(1 + erf(x/√2)) as nn.GELU() exports it, whose intermediate values nothing else reads; use nn.GELU(), or export at opset_version=20 (one Gelu node)",
        ("", "Pow" | "Div") => "GELU's tanh form (nn.GELU(approximate='tanh')) exports below opset 20 as Pow/Mul/Tanh: export at opset_version=20 (one Gelu node) or use nn.GELU(); fold other constant divisions into the preceding layer",
        ("", "HardSwish" | "HardSigmoid" | "Elu" | "Selu" | "Celu" | "Softplus" | "Mish" | "PRelu") => "use ReLU, LeakyReLU, Sigmoid or Tanh before the activation quantizer",
        (d, "FloatQuant") if QONNX_DOMAINS.contains(&d) => "floating-point quantization (minifloat) is not supported: use an integer quantizer (Brevitas Int*/Uint* quantizers)",
        (d, "MultiThreshold") if QONNX_DOMAINS.contains(&d) => "export the model before FINN's streamlining (as Brevitas writes it)",
        _ => return None,
    })
}

/// Every `(domain, op_type)` among `nodes` (a graph's, in order) that qfhe does not lower,
/// once each with its count and first node, in the order they first appear.
pub fn unsupported(nodes: &[Node]) -> Vec<UnsupportedOp> {
    let mut found: Vec<UnsupportedOp> = Vec::new();
    for n in nodes {
        if is_supported(&n.domain, &n.op_type) {
            continue;
        }
        match found
            .iter_mut()
            .find(|o| o.domain == n.domain && o.op_type == n.op_type)
        {
            Some(o) => o.count += 1,
            None => found.push(UnsupportedOp {
                domain: n.domain.clone(),
                op_type: n.op_type.clone(),
                count: 1,
                first_node: n.name.clone(),
                hint: hint(&n.domain, &n.op_type),
            }),
        }
    }
    found
}
