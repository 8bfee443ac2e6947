"""The fuzz targets: one per reader or loader of user files, each with a small valid seed corpus
built in code (small files, so each load is fast and a mutation hits structure, not bulk data)."""
from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import numpy as np

from .fuzz import Target

SIDE = 6


def _files_of(write, *names: str) -> dict[str, bytes]:
    """Run write(dir) and read back the named files it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp))
        return {n: (Path(tmp) / n).read_bytes() for n in names}


# ---------------------------------------------------------------------------------------------
# Events
def _recording(n: int = 40, side: int = 8):
    from .events import Recording, make_events
    i = np.arange(n)
    return Recording(make_events(i % side, (i * 3) % side, i * 50 + (i // 10) * 5000, i % 2), side, side)


def _events_seeds(name: str):
    from .events import write
    return [_files_of(lambda d: write(d / name, _recording(n, s)), name) for n, s in ((40, 8), (3, 4), (0, 2))]


def _evt3_seed() -> dict[str, bytes]:
    header = b"% evt 3.0\n% format EVT3;height=8;width=16\n% end\n"
    w = lambda kind, payload: (kind << 12) | payload            # noqa: E731
    words = [w(8, 1), w(6, 5), w(0, 3), w(2, 2 | 1 << 11), w(3, 0), w(4, 0b101), w(5, 0b11), w(6, 9),
             w(0, 7), w(2, 7)]
    return {"e.raw": header + np.array(words, "<u2").tobytes()}


def _dat_seed(version: str) -> dict[str, bytes]:
    header = f"% Date 2024-01-01\n% Version {version}\n% Width 8\n% Height 8\n% end\n".encode()
    t = np.arange(1, 6, dtype=np.uint64) * 100
    x, y, p = np.arange(5, dtype=np.uint64), np.arange(5, dtype=np.uint64)[::-1], np.arange(5, dtype=np.uint64) % 2
    data = x | (y << np.uint64(14)) | (p << np.uint64(28)) if version == "2" else x | (y << np.uint64(9)) | (
        p << np.uint64(17))
    return {"e.dat": header + bytes([0x0C, 8]) + (t | (data << np.uint64(32))).astype("<u8").tobytes()}


def _aedat4_seeds():
    import faery
    out = []
    for n, side in ((30, 8), (1, 4)):
        ev = np.zeros(n, faery.EVENTS_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["on"] = np.arange(n) * 10, np.arange(n) % side, 1, np.arange(n) % 2 == 0
        out.append(_files_of(lambda d: faery.events_stream_from_array(ev, dimensions=(side, side)).to_file(
            str(d / "e.aedat4")), "e.aedat4"))
    return out


def _read_events(path: Path):
    from . import events
    return events.read(path)


# ---------------------------------------------------------------------------------------------
# Networks
def tiny_network():
    """input (1, 6, 6) -> conv 2x3x3 -> relu -> avgpool 2 -> flatten -> dense 3."""
    from .frontend.ir import Network, Node
    rng = np.random.default_rng(0)
    return Network([
        Node("input", "input", attrs=dict(shape=[1, SIDE, SIDE])),
        Node("conv", "conv", ["input"], dict(out_channels=2, kernel=3, padding=1),
             dict(weight=rng.normal(size=(2, 1, 3, 3)), bias=rng.normal(size=2))),
        Node("relu", "relu", ["conv"]),
        Node("pool", "avgpool", ["relu"], dict(kernel=2)),
        Node("flat", "flatten", ["pool"]),
        Node("fc", "dense", ["flat"], dict(out_features=3),
             dict(weight=rng.normal(size=(3, 18)), bias=rng.normal(size=3))),
    ], output="fc", name="tiny")


@functools.lru_cache(maxsize=None)
def tiny_qnetwork():
    from .frontend import quant
    images = np.random.default_rng(1).integers(0, 256, (8, 1, SIDE, SIDE))
    return quant.quantize(tiny_network(), images / 255.0)


def _netfile_seed() -> dict[str, bytes]:
    from .frontend import netfile
    return _files_of(lambda d: netfile.save(tiny_network(), d / "net.json"), "net.json", "net.npz")


def _netfile_q_seed() -> dict[str, bytes]:
    from .frontend import netfile
    return _files_of(lambda d: netfile.save_q(tiny_qnetwork(), d / "q.json"), "q.json", "q.npz")


def _nir_seeds() -> list[dict[str, bytes]]:
    from .frontend import nir_export
    return [_files_of(lambda d: nir_export.export(tiny_network(), d / "n.nir"), "n.nir"),
            _files_of(lambda d: nir_export.export(tiny_qnetwork(), d / "n.nir"), "n.nir")]


def _netx_seed() -> dict[str, bytes]:
    """A netx file written as lava-dl's slayer writes one: input, conv, dense (sigma-delta)."""
    from .frontend import netx
    rng = np.random.default_rng(2)
    sdnn = {"type": "SDNN", "activation": "relu", "vThMant": 20}
    layers = [{"type": "input", "shape": [2, SIDE, SIDE], "neuron": sdnn},
              {"type": "conv", "shape": [3, 4, 4], "weight": rng.integers(-20, 20, (3, 2, 3, 3)),
               "bias": rng.integers(-5, 5, 3), "kernelSize": [3, 3], "stride": [1, 1], "padding": [0, 0],
               "dilation": [1, 1], "groups": 1, "neuron": sdnn},
              {"type": "flatten", "shape": [48]},
              {"type": "dense", "shape": [4], "inFeatures": 48, "outFeatures": 4,
               "weight": rng.integers(-20, 20, (4, 48)), "neuron": sdnn}]
    buf = io.BytesIO()
    netx.write_layers(buf, layers)
    return {"n.net": buf.getvalue()}


def _onnx_seed() -> dict[str, bytes]:
    """Conv -> Relu -> Flatten -> Gemm, built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(size=(2, 1, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=2).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(size=(3, 2 * SIDE * SIDE)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                              [1, 1, SIDE, SIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return {"m.onnx": helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()}


def _netfile_load(path):
    from .frontend import netfile
    return netfile.load_q(path) if path.name.startswith("q") else netfile.load(path)


def _netx_load(path):
    from .frontend import netx
    return netx.load(path)


def _nir_load(path):
    from .frontend import nir
    return nir.load(path)


def _onnx_load(path):
    from .frontend import onnx
    return onnx.load(path)


def _load_model(path):
    from .frontend import load_model
    return load_model(path)


# ---------------------------------------------------------------------------------------------
# Bundles, fabric configs, images
def _bundle_seed() -> dict[str, bytes]:
    from .compiler import bundle
    from .compiler.build import compile_network
    from .config import FabricConfig
    return {"b.bundle": bundle.encode(compile_network(tiny_qnetwork(), FabricConfig()))}


def _bundle_load(path):
    from .compiler import bundle
    return bundle.load(path)


def _config_seeds() -> list[dict[str, bytes]]:
    from .config import PRESETS
    return [{"f.json": PRESETS[name].to_json().encode()} for name in ("default", "tiny")]


def _config_load(path):
    from .config import FabricConfig
    return FabricConfig.load(path)


def _image_seeds() -> list[dict[str, bytes]]:
    imgs = np.random.default_rng(4).integers(0, 256, (3, 1, SIDE, SIDE)).astype(np.uint8)
    npz, npy = io.BytesIO(), io.BytesIO()
    np.savez(npz, images=imgs, labels=np.arange(3))
    np.save(npy, imgs[:, 0])
    return [{"i.npz": npz.getvalue()}, {"i.npy": npy.getvalue()}]


def _images_load(path):
    from .api import load_images
    return load_images(path)


# ---------------------------------------------------------------------------------------------
def _cached(fn):
    """Seeds are built once per process; a seed list of one file dict may be given as the dict."""
    @functools.lru_cache(maxsize=None)
    def seeds():
        out = fn()
        return [out] if isinstance(out, dict) else out
    return seeds


def targets() -> dict[str, Target]:
    ts = [
        Target("aedat4", _cached(_aedat4_seeds), _read_events),
        Target("evt2", _cached(lambda: _events_seeds("e.raw")), _read_events),
        Target("evt3", _cached(_evt3_seed), _read_events),
        Target("dat", _cached(lambda: [_dat_seed("2"), _dat_seed("1")]), _read_events),
        Target("npy-events", _cached(lambda: _events_seeds("e.npy")), _read_events),
        Target("npz-events", _cached(lambda: _events_seeds("e.npz")), _read_events),
        Target("netfile", _cached(lambda: [_netfile_seed(), _netfile_q_seed()]), _netfile_load, "json"),
        Target("netx", _cached(_netx_seed), _netx_load, "hdf5"),
        Target("nir", _cached(_nir_seeds), _nir_load, "hdf5"),
        Target("onnx", _cached(_onnx_seed), _onnx_load),
        Target("load_model", _cached(lambda: [_netfile_seed(), _netx_seed(), _nir_seeds()[0], _onnx_seed()]),
               _load_model),
        Target("bundle", _cached(_bundle_seed), _bundle_load),
        Target("fabric-config", _cached(_config_seeds), _config_load, "json"),
        Target("images", _cached(_image_seeds), _images_load),
    ]
    return {t.name: t for t in ts}
