"""ONNX / QONNX import, checked against the frameworks that wrote and run the files: torch's
ONNX exporter and onnxruntime for float models, Brevitas' QONNX export and its own integer
weights for quantized ones (expected values come from them, never from synfab)."""
import warnings

import numpy as np
import pytest

import onnxruntime as ort
import torch
from torch import nn

from synfab import api
from synfab.frontend import quant
from synfab.model import reference
from synfab.frontend import load_model
from synfab.frontend.ir import Network, NetworkError, QNetwork
from synfab.frontend.torch_import import from_torch

SHAPE = (1, 16, 16)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 10)).eval()


def export_onnx(module, path, n: int = 4, dynamo: bool = True):
    x = torch.rand(n, *SHAPE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # the legacy exporter's deprecation notice
        torch.onnx.export(module, (x,), str(path), dynamo=dynamo)
    return path


def onnxruntime_outputs(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo-exporter", "torchscript-exporter"])
def test_float_cnn_computes_what_onnxruntime_computes(tmp_path, dynamo):
    path = export_onnx(small_cnn(), tmp_path / "cnn.onnx", dynamo=dynamo)
    net = load_model(path)
    assert isinstance(net, Network)
    assert [n.op for n in net] == ["input", "conv", "relu", "avgpool", "conv", "relu", "flatten", "dense"]
    x = np.random.default_rng(1).random((4, *SHAPE)).astype(np.float32)
    want = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(quant.float_forward(net, x).reshape(want.shape), want, rtol=1e-5, atol=1e-6)


class ResidualGap(nn.Module):
    """Residual add and a global average pool (GlobalAveragePool in ONNX)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(y) + y)
        return self.fc(torch.flatten(self.pool(y), 1))


def test_residual_add_and_global_average_pool(tmp_path):
    torch.manual_seed(3)
    path = export_onnx(ResidualGap().eval(), tmp_path / "res.onnx", dynamo=False)
    net = load_model(path)
    assert {"add", "avgpool"} <= {n.op for n in net}
    x = np.random.default_rng(2).random((4, *SHAPE)).astype(np.float32)
    want = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(quant.float_forward(net, x).reshape(want.shape), want, rtol=1e-5, atol=1e-6)


def test_quantized_onnx_import_equals_the_torch_import_path(tmp_path):
    """The same model through ONNX and through torch_import quantizes to the same numbers and
    the same integer outputs."""
    module = small_cnn(seed=5)
    net = load_model(export_onnx(module, tmp_path / "cnn.onnx"))
    calib = np.random.default_rng(3).random((32, *SHAPE)).astype(np.float32)
    q_onnx = quant.quantize(net, calib)
    q_torch = quant.quantize(from_torch(module, SHAPE), calib)
    assert len(q_onnx.layers) == len(q_torch.layers) == 4
    for a, b in zip(q_onnx.layers, q_torch.layers):
        assert (a.op, a.shape, a.mult, a.shift, a.lo, a.hi) == (b.op, b.shape, b.mult, b.shift, b.lo, b.hi)
        np.testing.assert_array_equal(a.bias, b.bias)
        if b.weight is not None:
            np.testing.assert_array_equal(a.weight, b.weight)
    assert q_onnx.input_scale == q_torch.input_scale
    xq = quant.quantize_input(q_torch, calib[:8])
    np.testing.assert_array_equal(reference.output(q_onnx, xq), reference.output(q_torch, xq))


# ---------------------------------------------------------------------------------------
# Brevitas -> QONNX
brevitas_nn = pytest.importorskip("brevitas.nn")
from brevitas.export import export_qonnx  # noqa: E402
from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias,  # noqa: E402
                            Uint8ActPerTensorFixedPoint)


def brevitas_cnn(seed: int = 0) -> nn.Module:
    """int8 weights and activations, power-of-two scales (Brevitas' fixed-point quantizers)."""
    torch.manual_seed(seed)
    q = dict(weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int32Bias, return_quant_tensor=True)
    act = dict(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
    return nn.Sequential(
        brevitas_nn.QuantIdentity(**act),
        brevitas_nn.QuantConv2d(1, 4, 3, padding=1, **q), brevitas_nn.QuantReLU(**act),
        brevitas_nn.QuantConv2d(4, 6, 3, stride=2, **q), brevitas_nn.QuantReLU(**act),
        nn.Flatten(),
        brevitas_nn.QuantLinear(6 * 7 * 7, 10, **q),
        brevitas_nn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint))


@pytest.fixture(scope="module")
def brevitas_model(tmp_path_factory):
    module = brevitas_cnn()
    x = torch.rand(64, *SHAPE)
    module.train()
    with torch.no_grad():
        module(x)                       # calibrates the activation scales
    module.eval()
    path = tmp_path_factory.mktemp("qonnx") / "bcnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(module, torch.rand(1, *SHAPE), export_path=str(path))
    return module, path


def test_brevitas_qonnx_keeps_its_integer_weights_exactly(brevitas_model):
    module, path = brevitas_model
    qnet = load_model(path)
    assert isinstance(qnet, QNetwork)
    weighted = [m for m in module if isinstance(m, (brevitas_nn.QuantConv2d, brevitas_nn.QuantLinear))]
    assert len(qnet.layers) == len(weighted) == 3
    for layer, m in zip(qnet.layers, weighted):
        want = m.quant_weight().int().numpy()
        np.testing.assert_array_equal(layer.weight, want.reshape(layer.weight.shape))
        np.testing.assert_array_equal(layer.bias, m.quant_bias().int().numpy())   # Int32Bias: accumulator units
    in_scale = float(module[0](torch.rand(1, *SHAPE)).scale)
    assert qnet.input_scale == in_scale and qnet.input_hi == 255
    # Power-of-two scales: every requantization is an exact shift.
    for layer in qnet.layers:
        assert layer.mult & (layer.mult - 1) == 0


def test_brevitas_qonnx_computes_brevitas_integer_outputs(brevitas_model):
    module, path = brevitas_model
    qnet = load_model(path)
    x = torch.rand(32, *SHAPE)
    with torch.no_grad():
        xq = module[0](x)
        out = module(x)
    x_int = (xq.value / xq.scale).round().numpy().astype(np.int64)
    want = torch.round(out / qnet.output_scale).numpy().astype(np.int64)
    got = reference.output(qnet, x_int).reshape(want.shape)
    # Exact but for activations exactly halfway between two steps: the fabric rounds them up,
    # Brevitas to even (the module doc says so); at most one output step apart.
    assert np.abs(got - want).max() <= 1
    assert np.mean(got == want) >= 0.95


def test_qonnx_compiles_through_the_api_and_the_command_line(brevitas_model, tmp_path):
    from synfab.cli import main
    _, path = brevitas_model
    tables = api.compile_file(path, out=tmp_path / "api.sfb")
    assert [l["name"] for l in tables.metadata["layers"]] == [l.name for l in load_model(path).layers]
    assert main(["compile", str(path), "-o", str(tmp_path / "cli.sfb")]) == 0     # no --calib: its own scales
    assert (tmp_path / "cli.sfb").read_bytes() == (tmp_path / "api.sfb").read_bytes()


def test_brevitas_trunc_avg_pool_is_the_pool_layers_output_quantizer(tmp_path):
    """TruncAvgPool2d exports AveragePool + Trunc: the pool's sum of int8 inputs brought back to
    8 bits by a shift.  Every pooled value equals Brevitas' but for exact ties (window sums
    2 mod 4), which the fabric rounds up and Brevitas to even."""
    torch.manual_seed(1)
    q = dict(weight_quant=Int8WeightPerTensorFixedPoint, bias_quant=Int32Bias, return_quant_tensor=True)
    act = dict(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
    module = nn.Sequential(brevitas_nn.QuantIdentity(**act), brevitas_nn.QuantConv2d(1, 4, 3, padding=1, **q),
                           brevitas_nn.QuantReLU(**act), brevitas_nn.TruncAvgPool2d(2, return_quant_tensor=True),
                           nn.Flatten(), brevitas_nn.QuantLinear(4 * 8 * 8, 10, **q),
                           brevitas_nn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint))
    x = torch.rand(32, *SHAPE)
    module.train()
    with torch.no_grad():
        module(x)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(module, torch.rand(1, *SHAPE), export_path=str(tmp_path / "trunc.onnx"))
    qnet = load_model(tmp_path / "trunc.onnx")
    pool = next(l for l in qnet.layers if l.op == "avgpool")
    assert (pool.lo, pool.hi) == (0, 255) and pool.mult / 2 ** pool.shift == 1 / 4
    with torch.no_grad():
        xq, relu, pooled = module[0](x), module[:3](x), module[:4](x)
    want = (pooled.value / pooled.scale).round().numpy().astype(np.int64)
    relu_int = (relu.value / relu.scale).round()
    window_sums = relu_int.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2)).numpy()
    acts = reference.run(qnet, (xq.value / xq.scale).round().numpy().astype(np.int64))
    got, conv = acts[pool.name], acts[qnet.layers[0].name]
    # Where the conv's own ties made its outputs differ, the pool reads other inputs: compare
    # the pool where all four of its inputs agree with Brevitas'.
    same_inputs = torch.from_numpy(conv == relu_int.numpy()).unfold(2, 2, 2).unfold(3, 2, 2).all(-1).all(-1).numpy()
    assert same_inputs.mean() > 0.9
    ties = window_sums % 4 == 2
    np.testing.assert_array_equal(got[same_inputs & ~ties], want[same_inputs & ~ties])
    assert set(np.unique(got[same_inputs & ties] - want[same_inputs & ties])) == {0, 1}


def test_brevitas_binary_weights_come_through_bipolar_quant(tmp_path):
    from brevitas.quant import SignedBinaryWeightPerTensorConst
    torch.manual_seed(2)
    binary = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False, return_quant_tensor=True)
    act = dict(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
    module = nn.Sequential(brevitas_nn.QuantIdentity(**act), brevitas_nn.QuantConv2d(1, 4, 3, padding=1, **binary),
                           brevitas_nn.QuantReLU(**act), nn.Flatten(), brevitas_nn.QuantLinear(4 * 16 * 16, 10, **binary),
                           brevitas_nn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint))
    module.train()
    with torch.no_grad():
        module(torch.rand(16, *SHAPE))
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(module, torch.rand(1, *SHAPE), export_path=str(tmp_path / "binary.onnx"))
    qnet = load_model(tmp_path / "binary.onnx")
    for layer, m in zip(qnet.layers, (module[1], module[4])):
        want = m.quant_weight().int().numpy()
        assert set(np.unique(want)) == {-1, 1}
        np.testing.assert_array_equal(layer.weight, want.reshape(layer.weight.shape))


def test_report_reads_an_onnx_file(tmp_path, capsys):
    import json
    from synfab.cli import main
    path = export_onnx(small_cnn(), tmp_path / "cnn.onnx", dynamo=False)
    assert main(["report", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == "cnn"


# ---------------------------------------------------------------------------------------
# onnxruntime's static quantization -> QuantizeLinear / DequantizeLinear (QDQ)
def test_onnxruntime_qdq_model_keeps_its_integers_and_computes_what_onnxruntime_computes(tmp_path):
    from onnx import load as load_onnx, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    torch.manual_seed(7)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
                           nn.Flatten(), nn.Linear(6 * 7 * 7, 10)).eval()
    float_path = export_onnx(module, tmp_path / "f.onnx", n=1, dynamo=False)
    calib = np.random.default_rng(4).random((16, 1, *SHAPE)).astype(np.float32)
    name = ort.InferenceSession(str(float_path)).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter({name: x} for x in calib)

        def get_next(self):
            return next(self.batches, None)

    qdq_path = tmp_path / "q.onnx"
    # Symmetric int8 everywhere: synfab's quantization has no zero points.
    quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    qnet = load_model(qdq_path)
    stored = {t.name: numpy_helper.to_array(t) for t in load_onnx(str(qdq_path)).graph.initializer}
    for layer, key in zip(qnet.layers, ("0", "2", "5")):
        np.testing.assert_array_equal(layer.weight, stored[f"{key}.weight_quantized"])
        np.testing.assert_array_equal(layer.bias, stored[f"{key}.bias_quantized"])
    x = np.random.default_rng(5).random((32, 1, *SHAPE)).astype(np.float32)
    sess = ort.InferenceSession(str(qdq_path), providers=["CPUExecutionProvider"])
    want = np.stack([sess.run(None, {name: xi})[0][0] for xi in x])
    got = reference.output(qnet, quant.quantize_input(qnet, x[:, 0])).reshape(want.shape) * qnet.output_scale
    steps = np.round((got - want) / qnet.output_scale)
    # onnxruntime requantizes with a float multiplier and rounds half to even; the fabric with a
    # 16-bit multiplier and a shift, rounding half up: values within a hair of a half step differ.
    assert np.abs(steps).max() <= 1
    assert np.mean(steps == 0) >= 0.95


# ---------------------------------------------------------------------------------------
# Refusals: one line naming the node, its op type and what works
def test_unsupported_op_names_node_op_and_what_works(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(2 * 14 * 14, 3)).eval()
    path = export_onnx(module, tmp_path / "sig.onnx", dynamo=False)
    with pytest.raises(NetworkError) as e:
        load_model(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "(Sigmoid)" in msg and "op type Sigmoid is not supported" in msg
    assert "supported: " in msg and "Conv" in msg and "Gemm" in msg and "Quant" in msg


def test_not_an_onnx_file_is_one_line(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01not a protobuf model\xff" * 10)
    with pytest.raises(NetworkError, match="not a readable ONNX model") as e:
        load_model(path)
    assert "\n" not in str(e.value)
