"""The shipped LeNet-size MNIST network (tools/train_lenet.py): its shape is the spec of issue 8
item 6, it quantizes well, its avg pools requantize the window sum, and the golden event model
runs it bit-exactly with the dense integer reference on the fabric it fits."""
import importlib
from pathlib import Path

import numpy as np
import pytest

from synfab import api, demo
from synfab.model import reference
from synfab.config import FabricConfig
from synfab.frontend.ir import NetworkError
from synfab.layouts import Kind
from synfab.compiler.mapper import MappingError

# The spec: 28x28x1 -> conv 5x5 x20 -> ReLU -> avg pool 2 -> conv 5x5 x32 -> ReLU -> avg pool 2
# -> conv 3x3 x128 -> ReLU -> avg pool 2 -> flatten -> fc 500 -> ReLU -> fc 10, no bias.
# (population, op, output shape (C, H, W), weight shape or None)
SPEC = [
    ("conv1", "conv", (20, 24, 24), (20, 1, 5, 5)),
    ("pool1", "avgpool", (20, 12, 12), None),
    ("conv2", "conv", (32, 8, 8), (32, 20, 5, 5)),
    ("pool2", "avgpool", (32, 4, 4), None),
    ("conv3", "conv", (128, 2, 2), (128, 32, 3, 3)),
    ("pool3", "avgpool", (128, 1, 1), None),
    ("fc1", "dense", (500, 1, 1), (500, 128)),
    ("fc2", "dense", (10, 1, 1), (10, 500)),
]
OPS = ["input", "conv", "relu", "avgpool", "conv", "relu", "avgpool", "conv", "relu", "avgpool", "flatten",
       "dense", "relu", "dense"]
RELU_LAYERS = {"conv1", "conv2", "conv3", "fc1"}
NEURONS = sum(int(np.prod(shape)) for _, _, shape, _ in SPEC)
WEIGHTS = sum(int(np.prod(w)) for _, _, _, w in SPEC if w)
POOL_K = 2
SHIPPED_DIGITS = 500
QUANT_BOUND = 0.985      # quantized top-1 accuracy the shipped network must reach (the issue's floor)
FLOAT_BOUND_10K = 0.99   # float top-1 on the 10k MNIST test digits, as recorded by the training script
EXACT_FRAMES = 6


@pytest.fixture(scope="module")
def qnet():
    return demo.lenet_qnetwork()


def test_spec_counts_are_the_issues_figures():
    print(f"LeNet spec: {NEURONS} neurons, {WEIGHTS} weights")
    assert round(NEURONS, -2) == 18100 and round(WEIGHTS, -3) == 122000


def test_shipped_float_network_is_the_spec():
    net = demo.load_lenet_network()
    assert [n.op for n in net] == OPS
    got = [(n.name, n.op, tuple(n.shape), n.params["weight"].shape if n.params else None)
           for n in net if n.op in ("conv", "avgpool", "dense")]
    assert got == SPEC
    assert all("bias" not in n.params for n in net)
    assert all(n.attrs.get("stride", 1) == 1 and n.attrs.get("padding", 0) == 0 for n in net if n.op == "conv")
    assert all(n.attrs["kernel"] == POOL_K for n in net if n.op == "avgpool")
    counts = net.count()
    assert (counts["neurons"], counts["weights"]) == (NEURONS, WEIGHTS)


def test_quantized_layers_follow_the_spec(qnet):
    assert [(l.name, l.shape) for l in qnet.layers] == [(name, shape) for name, _, shape, _ in SPEC]
    for layer in qnet.layers:
        assert not np.any(layer.bias), layer.name
        assert (layer.lo == 0) == (layer.name in RELU_LAYERS), layer.name
    for layer in (l for l in qnet.layers if l.op == "avgpool"):
        (conn,) = layer.inputs
        assert (conn.kind, conn.k, conn.wconst, layer.weight) == (Kind.DW, POOL_K, 1, None)


def test_avg_pools_requantize_the_window_sum(qnet):
    """Each pool output = clamp(round(sum of its 2x2 window * mult / 2**shift)), written out here."""
    images, _ = demo.load_demo_digits(3)
    acts = reference.run(qnet, images.astype(np.int64))
    for layer in (l for l in qnet.layers if l.op == "avgpool"):
        src = acts[layer.inputs[0].src]
        n, c, h, w = src.shape
        window_sum = src.reshape(n, c, h // POOL_K, POOL_K, w // POOL_K, POOL_K).sum(axis=(3, 5))
        want = np.clip((window_sum * layer.mult + (1 << (layer.shift - 1))) >> layer.shift, layer.lo, layer.hi)
        np.testing.assert_array_equal(acts[layer.name], want, err_msg=layer.name)
        assert want.any(), layer.name


def test_event_model_equals_dense_reference(qnet):
    """Consecutive shipped digits as frames (between frames only pixel changes travel), threshold 0."""
    images, labels = demo.load_demo_digits(EXACT_FRAMES)
    frames = images.astype(np.int64)
    tables = api.compile_qnetwork(qnet, demo.fabric("lenet"))
    out = api.run_frames(tables, frames, backend="model", threshold=0)
    res = out["result"]
    assert len(res.outputs) == EXACT_FRAMES
    for t, (got, x) in enumerate(zip(res.outputs, frames)):
        np.testing.assert_array_equal(got, reference.run(qnet, x)[qnet.output], err_msg=f"frame {t}")
    assert np.all(np.asarray(res.layer_spikes) > 0)   # every layer took part
    assert np.mean(np.array(out["predictions"]) == labels) >= (EXACT_FRAMES - 1) / EXACT_FRAMES


def test_fits_its_fabric_and_uses_every_core(qnet):
    cfg = demo.fabric("lenet")
    cores = api.bundle_summary(api.compile_qnetwork(qnet, cfg))["cores"]
    assert all(c["populations"] for c in cores) and len(cores) == cfg.n_cores
    assert sum(c["neurons"] for c in cores) == NEURONS
    assert sum(c["weight_words"] for c in cores) >= WEIGHTS   # spatial tiles may replicate a kernel


@pytest.mark.parametrize("cfg, needle", [
    (FabricConfig(), f"{NEURONS} neurons"),
    (FabricConfig(mesh_x=4, mesh_y=4, neurons_per_core=1024), f"{NEURONS} neurons"),
    (FabricConfig(mesh_x=3, mesh_y=3, neurons_per_core=2048, weight_words_per_core=8192), f"{WEIGHTS} weight words"),
])
def test_smaller_fabrics_say_what_is_missing(qnet, cfg, needle):
    with pytest.raises(MappingError, match=needle):
        api.compile_qnetwork(qnet, cfg)


def test_quantized_accuracy_on_the_shipped_digits(qnet):
    images, labels = demo.load_demo_digits(SHIPPED_DIGITS)
    out = reference.output(qnet, images.astype(np.int64))
    accuracy = np.mean(out.reshape(SHIPPED_DIGITS, -1).argmax(axis=1) == labels)
    print(f"LeNet quantized accuracy on {SHIPPED_DIGITS} shipped digits: {accuracy:.3f}")
    assert accuracy >= QUANT_BOUND


def test_training_record():
    meta = demo.lenet_meta()
    assert meta["test_digits"] == 10_000
    assert meta["float_accuracy"] >= FLOAT_BOUND_10K and meta["quant_accuracy"] >= QUANT_BOUND
    assert (meta["neurons"], meta["weights"]) == (NEURONS, WEIGHTS)


def test_unknown_shipped_network():
    with pytest.raises(NetworkError, match="lenet"):
        demo.qnetwork("alexnet")


def test_training_script_model_imports_to_the_shipped_network(monkeypatch):
    """The torch model of tools/train_lenet.py, with the shipped weights, computes what synfab's float
    network computes (AvgPool2d and bias-free layers through the torch importer)."""
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "tools"))
    train_lenet = importlib.import_module("train_lenet")
    from synfab.frontend import quant
    shipped = demo.load_lenet_network()
    model = train_lenet.model()
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    model.load_state_dict({f"{n.name}.weight": torch.from_numpy(n.params["weight"]) for n in shipped if n.params})
    model.eval()
    imported = train_lenet.float_network(model)
    def graph(net):
        return [(n.name, n.op, n.inputs, tuple(n.shape), n.attrs if n.op != "input" else None) for n in net]
    assert graph(imported) == graph(shipped)
    images, _ = demo.load_demo_digits(20)
    x = images / 255.0
    with torch.no_grad():
        want = model(torch.from_numpy(x).float()).double().numpy()
    np.testing.assert_allclose(quant.float_forward(shipped, x).reshape(want.shape), want, rtol=1e-4, atol=1e-4)
