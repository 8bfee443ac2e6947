"""The networks shipped with synfab, trained on real MNIST, and the MNIST test digits they run on.

demo  (tools/train_demo.py): 28x28x1 -> conv3x3 s2 p1 (8) -> relu -> conv3x3 s2 p1 (16) -> relu
      -> flatten -> dense 10.
lenet (tools/train_lenet.py): 28x28x1 -> conv5x5 (20) -> relu -> avgpool 2 -> conv5x5 (32) -> relu
      -> avgpool 2 -> conv3x3 (128) -> relu -> avgpool 2 -> flatten -> dense 500 -> relu -> dense 10,
      no bias; its measured accuracies are in lenet_mnist.meta.json.
lenet_wide (tools/train_lenet.py --wide): LeNet with every channel count x 1.75 (35, 56, 224,
      fc 875; 31.7 k neurons, 368 k weights): more neurons than the largest board preset holds
      (ULX3S-85F: 3 x 8192), the network that runs split over several boards (README "Several
      boards"); its measured accuracies are in lenet_wide_mnist.meta.json.
Float inputs are pixels / 255, so the quantized input is the raw grey level.  Both networks are
quantized the same way: calibrated on the first 100 shipped digits (deterministic).

event_digits (tools/train_event_digits.py): N-MNIST-style event digits (synfab.events.digits),
      2x34x34 OFF/ON event counts -> conv5x5 s2 p2 (16) -> relu -> conv3x3 s2 p1 (32) -> relu
      -> conv3x3 s2 p1 (64) -> relu -> flatten -> dense 10, no bias; float input = counts / 16, so the
      quantized input is the raw count; calibrated on the shipped frames of 100 training digits
      (event_digits_calib.npz); its measured accuracies are in event_digits.meta.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .frontend import netfile, quant
from .config import FabricConfig
from .frontend.ir import Network, NetworkError, QNetwork

DATA = Path(__file__).parent / "data"
NETWORK_FILES = {"demo": "demo_mnist.json", "lenet": "lenet_mnist.json", "lenet_wide": "lenet_wide_mnist.json"}
NETWORK_FILE = NETWORK_FILES["demo"]
META_FILES = {"lenet": "lenet_mnist.meta.json", "lenet_wide": "lenet_wide_mnist.meta.json"}
LENET_META_FILE = META_FILES["lenet"]
# Output channels of conv1, conv2, conv3 and fc1 (tools/train_lenet.py's model).
LENET_CHANNELS = (20, 32, 128, 500)
WIDE_CHANNELS = (35, 56, 224, 875)
DIGITS_FILE = "mnist_test_subset.npz"
CALIBRATION_DIGITS = 100
INPUT_SCALE = 1 / 255   # one grey level
EVENT_NETWORK_FILE = "event_digits.json"
EVENT_META_FILE = "event_digits.meta.json"
EVENT_INPUT_SCALE = 1 / 16   # one event

# The fabric each shipped network runs on in `synfab demo`.  LeNet (18.1 k neurons) needs more
# cores than the default 2x2 fabric: of 3x3 and 4x4 meshes with 1024/2048 neurons and 8192/16384
# weight words per core, this is the smallest it fits (README).

LENET_FABRIC = FabricConfig(mesh_x=3, mesh_y=3, neurons_per_core=2048, weight_words_per_core=16384, name="lenet")
# lenet_wide fits no board preset; this fabric (12 cores, 49 k neurons) holds it whole: the golden
# model the boards it is split over are checked against, and `synfab demo --network lenet_wide`.
LENET_WIDE_FABRIC = FabricConfig(mesh_x=4, mesh_y=3, neurons_per_core=4096, weight_words_per_core=32768,
                                 name="lenet_wide")
FABRICS = {"demo": FabricConfig(), "lenet": LENET_FABRIC, "lenet_wide": LENET_WIDE_FABRIC}


def _check_name(name: str) -> None:
    if name not in NETWORK_FILES:
        raise NetworkError(f"unknown shipped network {name!r}; choose {' or '.join(NETWORK_FILES)}")


def load_network(name: str = "demo") -> Network:
    """A shipped float network: 'demo' or 'lenet'."""
    _check_name(name)
    return netfile.load(DATA / NETWORK_FILES[name])


def qnetwork(name: str = "demo") -> QNetwork:
    """A shipped network quantized, calibrated on the first 100 shipped digits (deterministic)."""
    net = load_network(name)
    images, _ = load_demo_digits(CALIBRATION_DIGITS)
    qnet = quant.quantize(net, images / 255.0, input_scale=INPUT_SCALE)
    qnet.name = net.name
    return qnet


def fabric(name: str = "demo") -> FabricConfig:
    """The fabric config a shipped network runs on in the demo."""
    _check_name(name)
    return FABRICS[name]


def load_demo_network() -> Network:
    """The float demo network."""
    return load_network("demo")


def demo_qnetwork() -> QNetwork:
    """The demo network quantized."""
    return qnetwork("demo")


def load_lenet_network() -> Network:
    """The float LeNet-size network."""
    return load_network("lenet")


def lenet_qnetwork() -> QNetwork:
    """The LeNet-size network quantized."""
    return qnetwork("lenet")


def lenet_meta(name: str = "lenet") -> dict:
    """What tools/train_lenet.py measured for `lenet` or `lenet_wide`: accuracies on the 10k MNIST
    test digits, training time..."""
    return json.loads((DATA / META_FILES[name]).read_text())


def load_demo_digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first n shipped MNIST test digits: images uint8 (n, 1, 28, 28) and labels (n,)."""
    path = DATA / DIGITS_FILE
    if not path.is_file():
        raise NetworkError(f"demo digits {path} not found; regenerate them with tools/train_demo.py")
    with np.load(path) as z:
        images, labels = z["images"], z["labels"]
    if n is not None:
        if not 0 < n <= len(images):
            raise NetworkError(f"asked for {n} demo digits; there are {len(images)} (use 1..{len(images)})")
        images, labels = images[:n], labels[:n]
    return images, labels.astype(np.int64)


def load_event_network() -> Network:
    """The float event-digit network."""
    return netfile.load(DATA / EVENT_NETWORK_FILE)


def event_qnetwork() -> QNetwork:
    """The event-digit network quantized: input step = one event (EVENT_INPUT_SCALE), calibrated on the
    shipped frames of 100 training digits (deterministic)."""
    from .events import digits
    net = load_event_network()
    qnet = quant.quantize(net, digits.load_calibration() * EVENT_INPUT_SCALE, input_scale=EVENT_INPUT_SCALE)
    qnet.name = net.name
    return qnet


def event_fabric() -> FabricConfig:
    """The fabric the event-digit network runs on in the demo: the default 2x2 fabric."""
    return FabricConfig()


def event_meta() -> dict:
    """What tools/train_event_digits.py measured: accuracies on the 10k held-out event digits, ..."""
    return json.loads((DATA / EVENT_META_FILE).read_text())
