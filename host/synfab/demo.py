"""The demo network: a small MNIST CNN shipped with synfab (trained by tools/train_demo.py).

28x28x1 -> conv3x3 s2 p1 (8) -> relu -> conv3x3 s2 p1 (16) -> relu -> flatten -> dense 10.
Float inputs are pixels / 255, so the quantized input is the raw grey level.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import netfile, quant
from .ir import Network, NetworkError, QNetwork

DATA = Path(__file__).parent / "data"
NETWORK_FILE = "demo_mnist.json"
DIGITS_FILE = "mnist_test_subset.npz"
CALIBRATION_DIGITS = 100
INPUT_SCALE = 1 / 255   # one grey level


def load_demo_network() -> Network:
    """The float demo network."""
    return netfile.load(DATA / NETWORK_FILE)


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


def demo_qnetwork() -> QNetwork:
    """The demo network quantized, calibrated on the first 100 shipped digits (deterministic)."""
    images, _ = load_demo_digits(CALIBRATION_DIGITS)
    qnet = quant.quantize(load_demo_network(), images / 255.0, input_scale=INPUT_SCALE)
    qnet.name = "demo_mnist"
    return qnet
