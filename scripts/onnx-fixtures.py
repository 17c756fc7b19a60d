#!/usr/bin/env python3
"""Train small quantization-aware MNIST models with Brevitas and export them to ONNX.

Writes, for each quantization-aware model, the QONNX export (`*.qonnx.onnx`, Brevitas's
`export_qonnx`) and the QCDQ export (`*.qcdq.onnx`, `export_onnx_qcdq`), at several opsets, and
for the float CNN its plain `torch.onnx.export` (opset 17), plus the first test images
(`mnist_test_x.npy`, float32 `[n, 1, 28, 28]`, pixels / 255) and PyTorch's logits for each model
(`<model>.logits.npy`, float32 `[n, 10]`) and its accuracy on the 10k test images
(`<model>.json`).

Set-up (CPU only; torch from PyPI brings its CUDA libraries, about 5.5 GB):

    python3 -m venv venv && venv/bin/pip install torch==2.15.0 brevitas==0.13.4 \
        'setuptools<81' onnx==1.23.2 onnxscript onnxoptimizer
    venv/bin/python scripts/onnx-fixtures.py --mnist ~/.cache/qfhe/mnist \
        --iris datasets/data/iris.csv --out onnx/tests/fixtures/brevitas

The MNIST folder holds the four uncompressed IDX files (`qfhe run --dataset mnist` puts them in
`~/.cache/qfhe/mnist`).
"""

import argparse
import json
import pathlib

import numpy as np
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.export import export_onnx_qcdq, export_qonnx
from brevitas.quant import (
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    Uint8ActPerTensorFloat,
)


def read_idx(path: pathlib.Path) -> np.ndarray:
    data = path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_mnist(folder: pathlib.Path):
    def images(name):
        return torch.from_numpy(read_idx(folder / name).astype(np.float32) / 255.0).unsqueeze(1)

    def labels(name):
        return torch.from_numpy(read_idx(folder / name).astype(np.int64))

    return (
        images("train-images-idx3-ubyte"),
        labels("train-labels-idx1-ubyte"),
        images("t10k-images-idx3-ubyte"),
        labels("t10k-labels-idx1-ubyte"),
    )


# qfhe reads an accumulator exactly when its worst-case range (sum of |weight codes| times the
# input code range) fits the usable slots of its PBS at one slot per value (1920 at N = 2048),
# and reads it reliably under noise when each step of the next activation spans ~40 slots, so
# at most ~48 activation steps over that range. Layers are projected onto both bounds after
# each optimizer step (the bound qfhe's own training applies). Brevitas's accumulator-aware
# quantizers (A2Q) bound the range too, but their QONNX export writes the float weights and a
# plain Quant, which does not reproduce A2Q's codes; their QCDQ export does.
ACCUMULATOR_RANGE = 1900
STEPS = 48


@torch.no_grad()
def bound_accumulators(layer, input_range, s_in, s_out, bn=None):
    """Soft-threshold the rows of `layer` whose worst-case accumulator range (sum of |codes|
    times `input_range`) exceeds ACCUMULATOR_RANGE or STEPS steps of the next activation
    (step `s_out`; an accumulator unit is `s_in · s_w · |γ/σ|` after batch norm `bn`), with the
    smallest threshold that fits (bisection): small weights go to code 0."""
    w0 = layer.weight.clone()
    rows = w0.shape[0]
    flat = w0.reshape(rows, -1)
    g = torch.ones(rows)
    if bn is not None:
        g = (bn.weight / (bn.running_var + bn.eps).sqrt()).abs()

    def over_by(lam):
        shrunk = flat.sign() * (flat.abs() - lam[:, None]).clamp_min(0)
        layer.weight.copy_(shrunk.reshape(w0.shape))
        q = layer.quant_weight()
        span = q.int().float().reshape(rows, -1).abs().sum(1) * input_range
        unit = s_in * q.scale.reshape(-1).expand(rows) * g
        limit = torch.minimum(torch.full_like(span, ACCUMULATOR_RANGE), STEPS * s_out / unit)
        return span > limit

    none = torch.zeros(rows)
    over = over_by(none)
    if not over.any():
        layer.weight.copy_(w0)
        return
    lo, hi = none.clone(), flat.abs().max(1).values
    for _ in range(16):
        mid = (lo + hi) / 2
        fits = ~over_by(torch.where(over, mid, none))
        hi, lo = torch.where(fits, mid, hi), torch.where(fits, lo, mid)
    over_by(torch.where(over, hi, none))


class Mlp(nn.Module):
    """784-128-10: signed 3-bit input quantizer, 3-bit per-channel weights (accumulator range
    bounded) and ReLU, 4-bit output weights."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.quant_in = qnn.QuantIdentity(bit_width=3, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(
            784, 128, bias=True, weight_bit_width=3, weight_scaling_per_output_channel=True
        )
        self.relu1 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(128, 10, bias=True, weight_bit_width=4)

    def forward(self, x):
        x = self.quant_in(self.flatten(x))
        h = self.relu1(self.fc1(x))
        self.scales = (x.scale.detach(), h.scale.detach())
        return self.fc2(h)

    def project(self):
        s_in, s_h = self.scales
        bound_accumulators(self.fc1, 7, s_in, s_h)


class Cnn(nn.Module):
    """conv 1→8 k5 s3, batch norm, ReLU, conv 8→16 k3 s2 p1, batch norm, ReLU, dense 256→10:
    unsigned 3-bit input, 3-bit weights and activations, 4-bit output weights (768 PBS)."""

    def __init__(self):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(
            bit_width=3, act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True
        )
        self.conv1 = qnn.QuantConv2d(1, 8, 5, stride=3, bias=True, weight_bit_width=3)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(8, 16, 3, stride=2, padding=1, bias=True, weight_bit_width=3)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.flatten = nn.Flatten()
        self.fc = qnn.QuantLinear(16 * 4 * 4, 10, bias=True, weight_bit_width=4)

    def forward(self, x):
        x = self.quant_in(x)
        h1 = self.relu1(self.bn1(self.conv1(x)))
        h2 = self.relu2(self.bn2(self.conv2(h1)))
        self.scales = (x.scale.detach(), h1.scale.detach(), h2.scale.detach())
        return self.fc(self.flatten(h2))

    def project(self):
        s_in, s_1, s_2 = self.scales
        bound_accumulators(self.conv1, 7, s_in, s_1, self.bn1)
        bound_accumulators(self.conv2, 7, s_1, s_2, self.bn2)


class ResCnn(nn.Module):
    """A residual block and max pooling: conv 1→4 k5 s3, batch norm, ReLU; conv 4→4 k3 p1,
    batch norm, ReLU sharing the first ReLU's quantizer (the two addends of a residual sum
    need one scale); add; ReLU; 2×2 max pooling; dense 64→10."""

    def __init__(self):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(
            bit_width=3, act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True
        )
        self.conv1 = qnn.QuantConv2d(1, 4, 5, stride=3, bias=True, weight_bit_width=3)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu1 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, bias=True, weight_bit_width=3)
        self.bn2 = nn.BatchNorm2d(4)
        self.relu2 = qnn.QuantReLU(act_quant=self.relu1.act_quant, return_quant_tensor=True)
        self.relu3 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = qnn.QuantLinear(4 * 4 * 4, 10, bias=True, weight_bit_width=4)

    def forward(self, x):
        h1 = self.relu1(self.bn1(self.conv1(self.quant_in(x))))
        h2 = self.relu2(self.bn2(self.conv2(h1)))
        return self.fc(torch.flatten(self.pool(self.relu3(h1 + h2)), 1))

    def project(self):
        pass


class PoolCnn(nn.Module):
    """Truncating average pooling (Brevitas's TruncAvgPool2d, rounding to nearest): conv 1→8
    k5 s3, batch norm, ReLU, 2×2 average pooling requantized to 3 bits, dense 128→10."""

    def __init__(self):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(
            bit_width=3, act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True
        )
        self.conv1 = qnn.QuantConv2d(1, 8, 5, stride=3, bias=True, weight_bit_width=3)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.pool = qnn.TruncAvgPool2d(
            kernel_size=2, stride=2, bit_width=3, float_to_int_impl_type="round",
            return_quant_tensor=True,
        )
        self.fc = qnn.QuantLinear(8 * 4 * 4, 10, bias=True, weight_bit_width=4)

    def forward(self, x):
        h = self.pool(self.relu1(self.bn1(self.conv1(self.quant_in(x)))))
        return self.fc(torch.flatten(h, 1))

    def project(self):
        pass


class FloatCnn(nn.Module):
    """The CNN's architecture in plain PyTorch, no quantizers: a float model for
    post-training import (`qfhe import --calibrate`)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, stride=3)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))

    def project(self):
        pass


class GeluMlp(nn.Module):
    """784-64-10 with PyTorch's default (erf) GELU: signed 3-bit input, 3-bit per-channel
    weights (accumulator range bounded), GELU then a signed 4-bit quantizer, 4-bit output
    weights. Below opset 20 the GELU exports as Div/Erf/Add/Mul/Mul; at 20 as one Gelu."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.quant_in = qnn.QuantIdentity(bit_width=3, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(
            784, 64, bias=True, weight_bit_width=3, weight_scaling_per_output_channel=True
        )
        self.gelu = nn.GELU()
        self.quant_h = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(64, 10, bias=True, weight_bit_width=4)

    def forward(self, x):
        x = self.quant_in(self.flatten(x))
        h = self.quant_h(self.gelu(self.fc1(x)))
        self.scales = (x.scale.detach(), h.scale.detach())
        return self.fc2(h)

    def project(self):
        s_in, s_h = self.scales
        bound_accumulators(self.fc1, 7, s_in, s_h)


class BinaryMlp(nn.Module):
    """784-128-64-10 with bipolar (±1) hidden activations and bipolar weights after the first
    layer (QONNX BipolarQuant): signed 3-bit input, 3-bit per-channel first-layer weights,
    batch norms before each sign."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.quant_in = qnn.QuantIdentity(bit_width=3, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(
            784, 128, bias=False, weight_bit_width=3, weight_scaling_per_output_channel=True
        )
        self.bn1 = nn.BatchNorm1d(128)
        self.sign1 = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        self.fc2 = qnn.QuantLinear(
            128, 64, bias=False, weight_quant=SignedBinaryWeightPerTensorConst
        )
        self.bn2 = nn.BatchNorm1d(64)
        self.sign2 = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        self.fc3 = qnn.QuantLinear(64, 10, bias=True, weight_quant=SignedBinaryWeightPerTensorConst)

    def forward(self, x):
        x = self.quant_in(self.flatten(x))
        self.s_in = x.scale.detach()
        h = self.sign1(self.bn1(self.fc1(x)))
        h = self.sign2(self.bn2(self.fc2(h)))
        return self.fc3(h)

    def project(self):
        # Only the first layer's range needs bounding (a sign reads no step).
        bound_accumulators(self.fc1, 7, self.s_in, torch.tensor(1e9), self.bn1)


class IrisMlp(nn.Module):
    """4-16-3 on Iris's raw features: signed 4-bit input quantizer, 3-bit weights and ReLU,
    4-bit output weights."""

    def __init__(self):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(4, 16, bias=True, weight_bit_width=3)
        self.relu1 = qnn.QuantReLU(bit_width=3, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(16, 3, bias=True, weight_bit_width=4)

    def forward(self, x):
        return self.fc2(self.relu1(self.fc1(self.quant_in(x))))


def iris(csv: pathlib.Path, out: pathlib.Path, seed: int):
    """The Iris MLP, trained on all 150 rows (classes in sorted order of their names)."""
    rows = [line.split(",") for line in csv.read_text().splitlines()[1:] if line]
    names = sorted({r[-1] for r in rows})
    x = torch.tensor([[float(v) for v in r[:-1]] for r in rows])
    y = torch.tensor([names.index(r[-1]) for r in rows])
    torch.manual_seed(seed)
    model = IrisMlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
    acc = (logits.argmax(1) == y).float().mean().item()
    print(f"iris: training accuracy {acc:.4f}", flush=True)
    np.save(out / "iris_x.npy", x.numpy())
    np.save(out / "iris_mlp.logits.npy", logits.numpy())
    for name, export in (("qonnx", export_qonnx), ("qcdq", export_onnx_qcdq)):
        path = out / f"iris_mlp.opset17.{name}.onnx"
        export(model, x[:1], export_path=str(path), opset_version=17, dynamo=False)
    meta = {"model": "iris_mlp", "rows": len(rows), "classes": names, "train_accuracy": acc}
    (out / "iris_mlp.json").write_text(json.dumps(meta, indent=2) + "\n")


def train(model, x, y, epochs, seed):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            model.project()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}", flush=True)


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    logits = torch.cat([model(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    return logits, (logits.argmax(1) == y).float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mnist", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--samples", type=int, default=100, help="test images kept as references")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="mlp,cnn,cnn_float,res,pool,gelu,bnn")
    ap.add_argument("--iris", type=pathlib.Path, help="datasets/data/iris.csv: also the Iris MLP")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    if args.iris:
        iris(args.iris, args.out, args.seed)
    if not args.models:
        return
    x_train, y_train, x_test, y_test = load_mnist(args.mnist)
    np.save(args.out / "mnist_test_x.npy", x_test[: args.samples].numpy())
    np.save(args.out / "mnist_test_y.npy", y_test[: args.samples].numpy().astype(np.int64))
    for name in args.models.split(","):
        model = {
            "mlp": Mlp, "cnn": Cnn, "cnn_float": FloatCnn, "res": ResCnn, "pool": PoolCnn,
            "gelu": GeluMlp, "bnn": BinaryMlp,
        }[name]()
        print(f"{name}: training {args.epochs} epochs", flush=True)
        train(model, x_train, y_train, args.epochs, args.seed)
        logits, acc = evaluate(model, x_test, y_test)
        print(f"{name}: test accuracy {acc:.4f}", flush=True)
        np.save(args.out / f"{name}.logits.npy", logits[: args.samples].numpy())
        model.eval()
        example = x_test[:1]
        exports = {}
        if name == "cnn_float":
            path = args.out / f"{name}.opset17.onnx"
            torch.onnx.export(model, example, str(path), opset_version=17, dynamo=False)
            exports[path.name] = path.stat().st_size
            opsets = ()
        elif name in ("res", "pool", "bnn"):
            opsets = (17,)
        elif name == "gelu":
            opsets = (17, 20)
        else:
            opsets = (13, 17, 21)
        for opset in opsets:
            path = args.out / f"{name}.opset{opset}.qonnx.onnx"
            export_qonnx(model, example, export_path=str(path), opset_version=opset, dynamo=False)
            exports[path.name] = path.stat().st_size
            if name == "bnn":
                continue  # QCDQ has no 1-bit form
            path = args.out / f"{name}.opset{opset}.qcdq.onnx"
            export_onnx_qcdq(model, example, export_path=str(path), opset_version=opset, dynamo=False)
            exports[path.name] = path.stat().st_size
        meta = {
            "model": name,
            "epochs": args.epochs,
            "seed": args.seed,
            "torch": torch.__version__,
            "test_accuracy": acc,
            "reference_samples": args.samples,
            "files": exports,
        }
        (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
