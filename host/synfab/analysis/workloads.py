"""Real workloads for the whole-frame figures of `synfab bench`: a quantized network and its input
frames, by name.

Each entry of WORKLOADS gives a description, a loader `load(frames) -> (qnet, x)` with x the
input frames (T, C, H, W) of non-negative integers, the default number of frames, and the fabric
it runs on unless `synfab bench --fabric` names another (the shipped networks' own fabrics,
synfab.demo.fabric: the default 2x2 fabric, and a 3x3 one for the LeNet-size CNN).  A workload
`boards_only` fits no single board preset: it runs split over boards (`synfab partition`,
`synfab bench --boards`), and the whole-frame figures of every workload (`synfab bench`) leave it
out (SINGLE_BOARD_WORKLOADS).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import demo
from ..config import FabricConfig
from ..frontend.ir import Network, Node, QNetwork

# The DVS workload: the DVXplorer sample (320x240), its central 256x240 cropped and downsampled 8x
# to 32x30, declared a 32x32 sensor (the events keep their coordinates: two empty rows).
DVS_SAMPLE = "dvxplorer"
DVS_CROP = (32, 0, 256, 240)
DVS_DOWNSAMPLE = 8
DVS_SHAPE = (2, 32, 32)             # polarity channels x rows x columns
DVS_WINDOW_MS = 20
DVS_CALIBRATION_FRAMES = 10


@dataclass(frozen=True)
class Workload:
    description: str
    load: Callable[[int], tuple[QNetwork, np.ndarray]]
    frames: int                     # how many frames `synfab bench` runs by default
    fabric: FabricConfig = FabricConfig()   # where it runs unless `synfab bench --fabric` says otherwise
    boards_only: bool = False               # fits no board preset alone: for several boards only


def mnist(qnet: QNetwork, n: int) -> tuple[QNetwork, np.ndarray]:
    """The first n shipped MNIST test digits as qnet's input frames (each digit is a frame)."""
    from ..demo import load_demo_digits
    from ..frontend.quant import quantize_input
    images, _ = load_demo_digits(n)
    return qnet, np.stack([quantize_input(qnet, im.astype(np.float32) / 255.0) for im in images])


def demo_mnist(n: int) -> tuple[QNetwork, np.ndarray]:
    return mnist(demo.qnetwork("demo"), n)


def lenet_mnist(n: int) -> tuple[QNetwork, np.ndarray]:
    return mnist(demo.qnetwork("lenet"), n)


def lenet_wide_mnist(n: int) -> tuple[QNetwork, np.ndarray]:
    return mnist(demo.qnetwork("lenet_wide"), n)


def dvs_network(seed: int = 0) -> Network:
    """A small CNN on 2x32x32 polarity histograms with seeded random weights: its outputs classify
    nothing, its activity is that of a CNN on real events."""
    rng = np.random.default_rng(seed)

    def conv(name, inp, ci, co, k=3, s=2, p=1):
        return Node(name, "conv", [inp], {"out_channels": co, "kernel": k, "stride": s, "padding": p},
                    {"weight": rng.normal(0, 1 / np.sqrt(ci * k * k), (co, ci, k, k)).astype(np.float32),
                     "bias": rng.normal(0, 0.05, co).astype(np.float32)})
    return Network([
        Node("in", "input", attrs={"shape": DVS_SHAPE}),
        conv("c1", "in", 2, 8), Node("r1", "relu", ["c1"]),
        conv("c2", "r1", 8, 16), Node("r2", "relu", ["c2"]),
        Node("p", "avgpool", ["r2"], {"kernel": 2}),
        Node("f", "flatten", ["p"]),
        Node("fc", "dense", ["f"], {"out_features": 4},
             {"weight": rng.normal(0, 0.1, (4, 256)).astype(np.float32), "bias": np.zeros(4, np.float32)}),
    ], name="dvs_cnn")


def dvs_frames(n: int | None = None) -> np.ndarray:
    """Per-pixel event counts of the real DVXplorer recording in DVS_WINDOW_MS windows (T, 2, 32, 32)."""
    from .. import events
    from ..api import recording_frames
    rec = events.read(events.samples.fetch(DVS_SAMPLE))
    rec = events.Compose([events.Crop(*DVS_CROP), events.Downsample(factor=DVS_DOWNSAMPLE)])(rec)
    rec = rec.replace(width=DVS_SHAPE[2], height=DVS_SHAPE[1])
    return recording_frames(rec, DVS_SHAPE, window_ms=DVS_WINDOW_MS, max_frames=n)


def dvs_dvxplorer(n: int) -> tuple[QNetwork, np.ndarray]:
    from ..frontend import quant
    x = dvs_frames(n)
    qnet = quant.quantize(dvs_network(), x[:DVS_CALIBRATION_FRAMES].astype(np.float32), input_scale=1.0)
    return qnet, np.stack([quant.quantize_input(qnet, xi.astype(np.float32)) for xi in x])


WORKLOADS = {
    "demo_mnist": Workload("demo CNN (1x28x28 -> conv 8 s2 -> conv 16 s2 -> dense 10) on real MNIST test digits",
                           demo_mnist, 20, demo.fabric("demo")),
    "lenet_mnist": Workload("LeNet-size CNN (1x28x28 -> conv5x5 20 -> avgpool 2 -> conv5x5 32 -> avgpool 2 -> "
                            "conv3x3 128 -> avgpool 2 -> dense 500 -> dense 10) on real MNIST test digits",
                            lenet_mnist, 5, demo.fabric("lenet")),
    "dvs_dvxplorer": Workload(f"CNN (2x32x32 -> conv 8 s2 -> conv 16 s2 -> avgpool -> dense 4, seeded random "
                              f"weights) on the real DVXplorer recording, {DVS_WINDOW_MS} ms frames", dvs_dvxplorer, 12),
    "lenet_wide_mnist": Workload("LeNet with every channel count x 1.75 (conv5x5 35 -> avgpool 2 -> conv5x5 56 -> "
                                 "avgpool 2 -> conv3x3 224 -> avgpool 2 -> dense 875 -> dense 10; 31.7 k neurons, "
                                 "more than any board preset holds) on real MNIST test digits",
                                 lenet_wide_mnist, 3, demo.fabric("lenet_wide"), boards_only=True),
}
SINGLE_BOARD_WORKLOADS = [name for name, w in WORKLOADS.items() if not w.boards_only]
