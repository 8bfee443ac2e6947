"""Network IR: a float graph (what users import) and a quantized graph (what the compiler maps).

Shapes are (C, H, W) like PyTorch; a vector is (C, 1, 1).

Float graph ops and attributes:
  input     shape=(C,H,W)
  conv      out_channels, kernel, stride=1, padding=0, groups=1; params weight (Co,Ci/g,K,K), bias (Co,)
  dense     out_features; params weight (Co, Ci*H*W), bias (Co,)      (PyTorch flatten order)
  sumpool / avgpool  kernel, stride (default = kernel), padding=0 (zeros; counts in the average)
  add       (two inputs)
  concat    (channel concatenation of its inputs)
  upsample  scale (nearest)
  flatten
  relu
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SynfabError
from .layouts import Kind


class NetworkError(SynfabError, ValueError):
    """An invalid or unsupported network; the message says what and how to fix it."""


OPS = ("input", "conv", "dense", "sumpool", "avgpool", "add", "concat", "upsample", "flatten", "relu")
UNSUPPORTED_HINT = ("supported layers: Conv2d (groups 1 or depthwise), Linear, AvgPool2d, sum pooling, "
                    "residual add, torch.cat on channels, nearest Upsample, Flatten, ReLU, BatchNorm2d after a conv")


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)   # name -> np.ndarray (float)
    shape: tuple[int, int, int] | None = None


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


class Network:
    """A float DAG in topological order with inferred shapes."""

    def __init__(self, nodes: list[Node], output: str | None = None, name: str = "net"):
        self.name = name
        self.nodes: dict[str, Node] = {}
        for n in nodes:
            if n.name in self.nodes:
                raise NetworkError(f"duplicate layer name {n.name!r}")
            self.nodes[n.name] = n
        self.output = output or nodes[-1].name
        self.infer_shapes()

    def __iter__(self):
        return iter(self.nodes.values())

    @property
    def input(self) -> Node:
        ins = [n for n in self if n.op == "input"]
        if len(ins) != 1:
            raise NetworkError(f"a network needs exactly one input, found {len(ins)}")
        return ins[0]

    def infer_shapes(self) -> None:
        for n in self:
            if n.op not in OPS:
                raise NetworkError(f"layer {n.name!r}: unsupported op {n.op!r}; {UNSUPPORTED_HINT}")
            for i in n.inputs:
                if i not in self.nodes or self.nodes[i].shape is None:
                    raise NetworkError(f"layer {n.name!r}: input {i!r} is not defined before it")
            ins = [self.nodes[i].shape for i in n.inputs]
            n.shape = self._shape(n, ins)

    def _shape(self, n: Node, ins):
        a = n.attrs
        want = {"input": 0, "add": 2}.get(n.op, None if n.op == "concat" else 1)
        if want is not None and len(ins) != want:
            raise NetworkError(f"layer {n.name!r} ({n.op}) takes {want} input(s), got {len(ins)}")
        if n.op == "input":
            s = tuple(int(v) for v in a["shape"])
            if len(s) != 3 or min(s) < 1:
                raise NetworkError(f"input {n.name!r}: shape must be (C, H, W), got {a['shape']}")
            return s
        c, h, w = ins[0] if ins else (0, 0, 0)
        if n.op == "conv":
            k, s, p, g = a["kernel"], a.get("stride", 1), a.get("padding", 0), a.get("groups", 1)
            co = a["out_channels"]
            if g not in (1, c) or (g == c and g > 1 and co != c):
                raise NetworkError(f"layer {n.name!r}: groups={g} with {c} in / {co} out channels is not "
                                   f"supported; use groups=1 or depthwise (groups = in = out channels)")
            ho, wo = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
            if ho < 1 or wo < 1:
                raise NetworkError(f"layer {n.name!r}: kernel {k} stride {s} padding {p} on {h}x{w} gives no output")
            wt = n.params.get("weight")
            if wt is not None and tuple(wt.shape) != (co, c // g, k, k):
                raise NetworkError(f"layer {n.name!r}: weight shape {wt.shape}, expected {(co, c // g, k, k)}")
            return (co, ho, wo)
        if n.op == "dense":
            wt = n.params.get("weight")
            if wt is not None and tuple(wt.shape) != (a["out_features"], c * h * w):
                raise NetworkError(f"layer {n.name!r}: weight shape {wt.shape}, expected "
                                   f"{(a['out_features'], c * h * w)}")
            return (a["out_features"], 1, 1)
        if n.op in ("sumpool", "avgpool"):
            k = a["kernel"]
            s = a.get("stride") or k
            p = a.get("padding", 0)
            return (c, _conv_out(h, k, s, p), _conv_out(w, k, s, p))
        if n.op == "add":
            if ins[0] != ins[1]:
                raise NetworkError(f"layer {n.name!r}: add of different shapes {ins[0]} and {ins[1]}")
            return ins[0]
        if n.op == "concat":
            if len(ins) < 2 or any(i[1:] != ins[0][1:] for i in ins):
                raise NetworkError(f"layer {n.name!r}: concat needs >= 2 inputs of equal H, W; got {ins}")
            return (sum(i[0] for i in ins), h, w)
        if n.op == "upsample":
            u = a["scale"]
            return (c, h * u, w * u)
        if n.op == "flatten":
            return (c * h * w, 1, 1)
        return (c, h, w)  # relu

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self if name in n.inputs]

    def count(self) -> dict:
        """Weights, MACs (= synapses) and neurons of conv/dense layers (shape-only)."""
        weights = macs = neurons = 0
        for n in self:
            if n.op in ("conv", "dense"):
                c_in = self.nodes[n.inputs[0]].shape
                co, ho, wo = n.shape
                if n.op == "conv":
                    g = n.attrs.get("groups", 1)
                    kk = n.attrs["kernel"] ** 2 * (c_in[0] // g)
                else:
                    kk = c_in[0] * c_in[1] * c_in[2]
                weights += co * kk
                macs += co * ho * wo * kk
            if n.op not in ("input", "relu", "flatten", "concat"):
                neurons += int(np.prod(n.shape))
        return {"weights": weights, "macs": macs, "neurons": neurons}


# ---------------------------------------------------------------------------------------
# Quantized graph: only neuron populations; ReLU fused, flatten and concat resolved into
# connection attributes.  This is what the mapper, the encoder and the dense reference use.
@dataclass
class QConnection:
    """Synapses from population `src` into a QLayer.

    Geometry per axis (the dense reference defines it exactly): the source is
    zero-inserted by `up` (Z[p] = src[p // up] where p % up == 0), then
    out[o] += sum_k w[k] * Z[o * stride + k - pad].
    DENSE ignores the geometry: input index in PyTorch flatten order of the
    (channel-offset) concatenated source.
    """
    src: str
    kind: Kind
    k: int = 1
    stride: int = 1
    pad: int = 0
    up: int = 1
    chan_off: int = 0
    wconst: int | None = None  # constant weight (pooling, upsampling, residual add); else layer.weight


@dataclass
class QLayer:
    name: str
    shape: tuple[int, int, int]
    inputs: list[QConnection]
    bias: np.ndarray                  # int64 (C,): initial accumulator
    mult: int = 1
    shift: int = 0
    lo: int = 0
    hi: int = 255
    # int8 weights shared by the non-constant connections:
    #   CONV (Co, Ci_total, K, K); DW (C, 1, K, K); DENSE (Co, Ci_total*H*W)
    weight: np.ndarray | None = None
    op: str = ""                      # float op it came from (for reports)


@dataclass
class QNetwork:
    name: str
    input_name: str
    input_shape: tuple[int, int, int]
    layers: list[QLayer]              # topological order = evaluation order
    output: str
    input_scale: float = 1.0          # float value of one input step
    output_scale: float = 1.0         # float value of one output step
    input_hi: int = 255

    def layer(self, name: str) -> QLayer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def shape_of(self, name: str) -> tuple[int, int, int]:
        return self.input_shape if name == self.input_name else self.layer(name).shape
