"""Network IR: a float graph (what users import) and a quantized graph (what the compiler maps).

Shapes are (C, H, W) like PyTorch; a vector is (C, 1, 1).

Float graph ops and attributes (kernel, stride, padding: an int for both axes or [h, w]):
  input     shape=(C,H,W)
  conv      out_channels, kernel, stride=1, padding=0, groups=1; params weight (Co,Ci/g,KH,KW), bias (Co,)
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

from ..arith import Neuron
from ..errors import SynfabError
from ..geometry import conv_out  # noqa: F401  (re-exported: the IR's shape rule)
from ..layouts import Kind, feature_name, unsupported_features


class NetworkError(SynfabError, ValueError):
    """An invalid or unsupported network; the message says what and how to fix it."""


INPUT_MODES = ("levels", "events", "spikes")
# Every stored weight and every constant weight of a QNetwork is an int8 (beyond it: wshift).
INT8_RANGE = (-128, 127)
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


def _names(names: list[str], shown: int = 3) -> str:
    """'layer a' / 'layers a, b, c and 4 more'."""
    if len(names) == 1:
        return f"layer {names[0]}"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"layers {', '.join(names[:shown])}{more}"


def pair(value, what: str = "value", where: str = "") -> tuple[int, int]:
    """(h, w) of an attribute given as one int for both axes or as [h, w]."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise NetworkError(f"{where}{what} must be an integer or [h, w], got {value!r}") from None
    return h, w


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
        where = f"layer {n.name!r}: "
        if n.op == "conv":
            (kh, kw), (sh, sw) = pair(a["kernel"], "kernel", where), pair(a.get("stride", 1), "stride", where)
            (ph, pw), g = pair(a.get("padding", 0), "padding", where), a.get("groups", 1)
            co = a["out_channels"]
            if g not in (1, c) or (g == c and g > 1 and co != c):
                raise NetworkError(f"layer {n.name!r}: groups={g} with {c} in / {co} out channels is not "
                                   f"supported; use groups=1 or depthwise (groups = in = out channels)")
            ho, wo = conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw)
            if ho < 1 or wo < 1:
                raise NetworkError(f"layer {n.name!r}: kernel {a['kernel']} stride {a.get('stride', 1)} padding "
                                   f"{a.get('padding', 0)} on {h}x{w} gives no output")
            wt = n.params.get("weight")
            if wt is not None and tuple(wt.shape) != (co, c // g, kh, kw):
                raise NetworkError(f"layer {n.name!r}: weight shape {wt.shape}, expected {(co, c // g, kh, kw)}")
            return (co, ho, wo)
        if n.op == "dense":
            wt = n.params.get("weight")
            if wt is not None and tuple(wt.shape) != (a["out_features"], c * h * w):
                raise NetworkError(f"layer {n.name!r}: weight shape {wt.shape}, expected "
                                   f"{(a['out_features'], c * h * w)}")
            return (a["out_features"], 1, 1)
        if n.op in ("sumpool", "avgpool"):
            (kh, kw) = pair(a["kernel"], "kernel", where)
            (sh, sw) = pair(a.get("stride") or a["kernel"], "stride", where)
            (ph, pw) = pair(a.get("padding", 0), "padding", where)
            return (c, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw))
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
                    kh, kw = pair(n.attrs["kernel"])
                    kk = kh * kw * (c_in[0] // g)
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

    k, stride, pad hold the width (x) axis and, unless k_y, stride_y, pad_y are given, the
    height (y) axis too: a rectangular kernel sets the _y fields (kh, sh, ph / kw, sw, pw read
    them per axis).  A _y field equal to its x field is stored as None, so a square
    connection compares equal however it was written.
    Every weight of the connection (stored or constant) is multiplied by 2**wshift: weights
    beyond int8 that are multiples of a power of two are carried exactly.
    """
    src: str
    kind: Kind
    k: int = 1
    stride: int = 1
    pad: int = 0
    up: int = 1
    chan_off: int = 0
    wconst: int | None = None  # constant weight (pooling, upsampling, residual add); else layer.weight
    k_y: int | None = None
    stride_y: int | None = None
    pad_y: int | None = None
    wshift: int = 0

    def __post_init__(self):
        if self.k_y == self.k:
            self.k_y = None
        if self.stride_y == self.stride:
            self.stride_y = None
        if self.pad_y == self.pad:
            self.pad_y = None

    @property
    def kh(self) -> int:
        return self.k if self.k_y is None else self.k_y

    @property
    def sh(self) -> int:
        return self.stride if self.stride_y is None else self.stride_y

    @property
    def ph(self) -> int:
        return self.pad if self.pad_y is None else self.pad_y

    @property
    def kw(self) -> int:
        return self.k

    @property
    def sw(self) -> int:
        return self.stride

    @property
    def pw(self) -> int:
        return self.pad

    @property
    def square(self) -> bool:
        return self.k_y is None and self.stride_y is None and self.pad_y is None

    def axis(self, axis: str) -> tuple[int, int, int]:
        """(kernel, stride, padding) along axis 'x' (width) or 'y' (height)."""
        return (self.kw, self.sw, self.pw) if axis == "x" else (self.kh, self.sh, self.ph)


@dataclass
class QLayer:
    name: str
    shape: tuple[int, int, int]
    inputs: list[QConnection]
    bias: np.ndarray                  # int64 (C,): sigma_delta: initial accumulator; others: added every step
    mult: int = 1
    shift: int = 0
    lo: int | None = 0                # sigma_delta activation bounds; None: open (no clamp)
    hi: int | None = 255
    # int8 weights shared by the non-constant connections:
    #   CONV (Co, Ci_total, KH, KW); DW (C, 1, KH, KW); DENSE (Co, Ci_total*H*W)
    weight: np.ndarray | None = None
    op: str = ""                      # float op it came from (for reports)
    neuron: Neuron = field(default_factory=Neuron)


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
    # Time: one frame is one time step.  pipelined: a layer's events reach its consumers one
    # step later (Loihi's synaptic delay); otherwise every layer settles within the frame.
    pipelined: bool = False
    # Lava's LIFReset: every reset_interval steps the u, v and refractory count of layer i are
    # cleared at the start of steps t with t % reset_interval == i % reset_interval (0: never).
    reset_interval: int = 0
    # "levels": frames are input values whose changes the host sends (images); "events": frames
    # are event values sent as they are at every step (Lava messages); "spikes": every non-zero
    # value of a frame is sent as a spike of value 1 (Lava's unary input synapse).
    input_mode: str = "levels"
    input_lo: int = 0                 # smallest input value (levels) / event value (events)

    def __post_init__(self):
        if self.input_mode not in INPUT_MODES:
            raise NetworkError(f"input_mode {self.input_mode!r} is not one of {', '.join(INPUT_MODES)}")
        if self.reset_interval < 0:
            raise NetworkError(f"reset_interval must be >= 0, got {self.reset_interval}")

    def extended_features(self) -> list[str]:
        """What this network uses beyond the sigma-delta CNN of table layout version 1, one entry
        per feature (layouts.EXTENDED_FEATURES) naming its layers: such a network compiles to
        version-2 tables.  The gateware runs the features in layouts.GATEWARE_FEATURES (the
        geometry: rectangular kernels, strides and padding, weight shifts); the others run on the
        golden model (`unsupported_features`)."""
        layers: dict[str, list[str]] = {}

        def note(feature: str, layer: str) -> None:
            layers.setdefault(feature, []).append(layer)

        for l in self.layers:
            n = l.neuron
            if n.model != "sigma_delta":
                note(f"{n.model} neurons", l.name)
            elif n.theta or n.msg_shift:
                note("sigma-delta theta/message shift", l.name)
            if l.lo is None or l.hi is None:
                note("unclamped activation", l.name)
            if any(not c.square for c in l.inputs):
                note("rectangular kernel, stride or padding", l.name)
            if any(c.wshift for c in l.inputs):
                note("weight shift", l.name)
        out = [f"{feature} ({_names(names)})" for feature, names in layers.items()]
        if self.pipelined:
            out.append("pipelined timing")
        if self.reset_interval:
            out.append("state reset interval")
        if self.input_mode != "levels":
            out.append(f"{self.input_mode} input")
        for entry in out:
            feature_name(entry)         # every entry names a feature of the features register
        return out

    def unsupported_features(self) -> list[str]:
        """The extended features the gateware does not run yet (the network runs on the golden model)."""
        return unsupported_features(self.extended_features())

    def layer(self, name: str) -> QLayer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    def shape_of(self, name: str) -> tuple[int, int, int]:
        return self.input_shape if name == self.input_name else self.layer(name).shape
