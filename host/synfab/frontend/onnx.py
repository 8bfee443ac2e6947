"""ONNX and QONNX models (`.onnx`) as synfab networks.

Each ONNX op type has one handler in `OP_HANDLERS` (as hls4ml's converters do): adding an op
is one function decorated with `@handles("OpType")`.  The graph is walked in its stored
order (ONNX requires it topological); every handler turns its node into float `ir` nodes,
an alias of its input (Identity, Dropout, quantizers on activations) or a constant.

A plain float model becomes an `ir.Network` (compile it with calibration inputs, as a float
PyTorch import); so does a model that quantizes only its weights (their quantized values are
its float weights).  A quantized model -- QONNX `Quant` / `BipolarQuant` nodes (Brevitas'
`export_qonnx`) or ONNX `QuantizeLinear` / `DequantizeLinear` pairs -- becomes an
`ir.QNetwork` at its own scales, nothing re-quantized:

- weights quantized to at most 8 bits with one scale per layer are taken as they are: the
  integers the quantizer produces (QONNX: clip(round(w / scale)) in its rounding mode) are
  the layer's int8 weights, bit for bit Brevitas' `int_weight()`;
- the input's quantizer gives input_scale and input_hi; each layer's output quantizer gives
  its scale and its lo/hi (bit width, sign, narrow range); a pool's is its `Trunc`;
- a layer's accumulator is worth weight_scale * input_scale; its bias is the quantized bias
  in those units (Brevitas' Int32Bias is exactly that) or the float bias rounded to them;
- requantization: mult / 2**shift = accumulator scale / output scale, exact when the ratio
  is a power of two (Brevitas' fixed-point quantizers), else the fabric's closest.
  The fabric rounds half up where QONNX's ROUND rounds half to even: an activation exactly
  halfway between two steps (rare) can come out one step higher than in Brevitas.

Refused, in one line naming the node, its op type and what would work: other op types,
per-channel weight scales, non-zero zero points, weights wider than 8 bits, a quantized
layer whose output has no quantizer, a flooring `Trunc` (the fabric rounds) and bipolar
activations.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FabricConfig
from ..errors import SynfabError
from .ir import INT8_RANGE, Network, NetworkError, Node, QNetwork
from .quant import RELU_RANGE, _mult_shift, constant_weight_scale, lower
from . import first_line, register

WEIGHT_BITS = 8   # the fabric's weights: int8


class OnnxImportError(NetworkError):
    """An ONNX model synfab cannot import; the message names node, op type and what works."""


@dataclass(frozen=True)
class QuantizedConstant:
    """A constant (weight or bias) as its quantizer leaves it: value = ints * scale."""
    ints: np.ndarray
    scale: np.ndarray     # scalar or per-channel
    bits: int


@dataclass(frozen=True)
class ActivationQuant:
    """What a quantizer on an activation fixes: the float value of one step and the range."""
    scale: float
    lo: int
    hi: int
    where: str            # the quantizer node, for messages


OP_HANDLERS: dict = {}


def handles(*op_types: str):
    """Decorator: the function handles nodes of these op types."""
    def add(fn):
        for op in op_types:
            OP_HANDLERS[op] = fn
        return fn
    return add


def supported_ops() -> str:
    return ", ".join(sorted(OP_HANDLERS))


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise SynfabError("reading ONNX files needs onnx: pip install 'synfab[onnx]'") from None
    return onnx, numpy_helper


# ---------------------------------------------------------------------------------------
# The graph being built
class _Graph:
    def __init__(self, model, input_shape=None):
        onnx, numpy_helper = _onnx()
        self.onnx, self.to_array = onnx, numpy_helper.to_array
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: _tensor(self.to_array, t) for t in graph.initializer}
        self.quantized: dict[str, QuantizedConstant] = {}   # constant tensor -> its quantizer's integers
        self.alias: dict[str, str] = {}         # ONNX tensor -> ir node computing it
        self.rank: dict[str, int] = {}          # ir node -> tensor rank in ONNX (4: NCHW, 2: NC)
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.weight_quant: dict[str, QuantizedConstant] = {}   # ir layer -> its quantized weight
        self.bias_quant: dict[str, QuantizedConstant] = {}
        self.act_quant: dict[str, ActivationQuant] = {}        # ir node -> its output's quantizer
        self.users: dict[str, int] = {}
        for n in graph.node:
            for t in n.input:
                self.users[t] = self.users.get(t, 0) + 1
        self._add_input(graph, input_shape)

    def _add_input(self, graph, input_shape) -> None:
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise OnnxImportError(f"the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                                  f"synfab networks have one input")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise OnnxImportError(f"input {inp.name!r} has rank {len(dims)}; supported: images (N, C, H, W)")
        if input_shape is not None:
            shape = tuple(int(v) for v in input_shape)
            if len(shape) != 3:
                raise OnnxImportError(f"input_shape must be (C, H, W), got {shape}")
            if any(d is not None and d != s for d, s in zip(dims[1:], shape)):
                raise OnnxImportError(f"input_shape {shape} contradicts the model's input {tuple(dims[1:])}")
        elif None in dims[1:]:
            raise OnnxImportError(f"input {inp.name!r} has symbolic dimensions {dims[1:]}; pass input_shape=(C, H, W)")
        else:
            shape = tuple(dims[1:])
        self.batch = dims[0]            # a Reshape may name it
        name = _ir_name(inp.name)
        self.add(name, "input", [], {"shape": shape})
        self.alias[inp.name] = name

    # -- helpers -------------------------------------------------------------------------
    def add(self, name: str, op: str, inputs: list[str], attrs=None, params=None, rank: int = 4) -> str:
        base, i = name, 1
        while name in self.by_name:
            name, i = f"{base}_{i}", i + 1
        node = Node(name, op, inputs, attrs or {}, params or {})
        self.nodes.append(node)
        self.by_name[name] = node
        self.rank[name] = rank
        return name

    def output(self, node, ir_name: str) -> None:
        self.alias[node.output[0]] = ir_name

    def src(self, node, i: int = 0) -> str:
        tensor = node.input[i]
        if tensor not in self.alias:
            what = "a constant" if tensor in self.consts else "not computed before it"
            raise OnnxImportError(f"node {_label(node)}: input {tensor!r} is {what}; supported: "
                                  f"tensors the network computes from its input")
        return self.alias[tensor]

    def const(self, node, i: int, what: str) -> np.ndarray:
        tensor = node.input[i] if i < len(node.input) else ""
        if tensor not in self.consts:
            raise OnnxImportError(f"node {_label(node)}: {what} {tensor!r} is computed at run time; supported: "
                                  f"a constant (initializer) {what}")
        return self.consts[tensor]

    def optional_const(self, node, i: int, what: str) -> np.ndarray | None:
        return self.const(node, i, what) if i < len(node.input) and node.input[i] else None

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def shape(self, ir_name: str) -> tuple[int, int, int]:
        # The IR's own shape rules (and messages) on the graph built so far.
        return Network(list(self.nodes), output=ir_name).nodes[ir_name].shape

    def need_rank(self, node, ir_name: str, rank: int) -> None:
        if self.rank[ir_name] != rank:
            hint = "flatten before it" if rank == 2 else "it must come before Flatten"
            raise OnnxImportError(f"node {_label(node)} gets a {self.rank[ir_name]}-D tensor; {hint}")

    def population(self, ir_name: str) -> str:
        """The layer whose output an ir node shows (ReLU and flatten are views of it)."""
        node = self.by_name[ir_name]
        while node.op in ("relu", "flatten"):
            node = self.by_name[node.inputs[0]]
        return node.name

    def note_quantized(self, layer: str, weight: str, bias: str | None) -> None:
        if weight in self.quantized:
            self.weight_quant[layer] = self.quantized[weight]
        if bias and bias in self.quantized:
            self.bias_quant[layer] = self.quantized[bias]


def _tensor(to_array, t) -> np.ndarray:
    """An initializer's array; a damaged one (unknown element type, data not matching its dims) is
    refused in one line: onnx raises KeyError, TypeError or ValueError for those."""
    try:
        return to_array(t)
    except (KeyError, TypeError, ValueError) as e:
        raise OnnxImportError(f"initializer {t.name!r}: unreadable tensor ({first_line(e)}); export the model "
                              "again") from None


def _label(node) -> str:
    name = node.name or (node.output[0] if node.output else "")
    return f"{name!r} ({_printable(node.op_type)})"


def _printable(text: str) -> str:
    """A name from the file as written, or quoted when it holds line breaks or other controls."""
    return text if text.isprintable() else repr(text)


def _ir_name(tensor: str) -> str:
    """A layer name from an ONNX tensor name: torch's legacy exporter's '/0/Conv_output_0' -> '0_Conv'."""
    name = re.sub(r"_output_\d+$", "", tensor.lstrip("/"))
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "t"


def _hw(values, what: str, node) -> int | list[int]:
    """An IR kernel/stride/padding: an int when height and width agree, else [h, w]."""
    values = [int(v) for v in values]
    if len(values) != 2:
        raise OnnxImportError(f"node {_label(node)}: {what} {values} is not 2-D; supported: 2-D images")
    return values[0] if values[0] == values[1] else values


def _padding(attrs: dict, node):
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise OnnxImportError(f"node {_label(node)}: auto_pad {attrs['auto_pad']!r} is not supported; "
                              f"supported: explicit pads (NOTSET) or VALID")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise OnnxImportError(f"node {_label(node)}: asymmetric pads {pads} are not supported; supported: "
                              f"equal padding before and after (pads [ph, pw, ph, pw])")
    return _hw(pads[:2], "padding", node)


# ---------------------------------------------------------------------------------------
# Op handlers: one per ONNX op type
@handles("Conv")
def conv(g: _Graph, node) -> None:
    x = g.src(node)
    g.need_rank(node, x, 4)
    a = g.attrs(node)
    weight = g.const(node, 1, "weight").astype(np.float64)
    bias = g.optional_const(node, 2, "bias")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise OnnxImportError(f"node {_label(node)}: dilations {a['dilations']} are not supported; supported: 1")
    co = weight.shape[0]
    name = g.add(_ir_name(node.output[0]), "conv", [x], {
        "out_channels": co, "kernel": _hw(weight.shape[2:], "kernel", node),
        "stride": _hw(a.get("strides", [1, 1]), "stride", node), "padding": _padding(a, node),
        "groups": int(a.get("group", 1))},
        {"weight": weight, "bias": np.zeros(co) if bias is None else bias.astype(np.float64).reshape(co)})
    g.note_quantized(name, node.input[1], node.input[2] if len(node.input) > 2 else None)
    g.output(node, name)


def _dense(g: _Graph, node, weight_tensor: str, transpose: bool, bias_tensor: str | None) -> None:
    """A dense layer; its weight (out, in) in ONNX's row-major flatten order (= PyTorch's)."""
    x = g.src(node)
    g.need_rank(node, x, 2)
    weight = g.const(node, 1, "weight")
    weight = weight.T if transpose else weight
    bias = g.optional_const(node, 2, "bias") if bias_tensor else None
    co = weight.shape[0]
    name = g.add(_ir_name(node.output[0]), "dense", [x], {"out_features": co},
                 {"weight": weight.astype(np.float64),
                  "bias": np.zeros(co) if bias is None else np.asarray(bias, dtype=np.float64).reshape(co)}, rank=2)
    q = g.quantized.get(weight_tensor)
    if q is not None:
        g.weight_quant[name] = QuantizedConstant(q.ints.T if transpose else q.ints, q.scale, q.bits)
    if bias_tensor in g.quantized:
        g.bias_quant[name] = g.quantized[bias_tensor]
    g.output(node, name)


@handles("Gemm")
def gemm(g: _Graph, node) -> None:
    a = g.attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        raise OnnxImportError(f"node {_label(node)}: Gemm with alpha/beta != 1 or transA is not supported; "
                              f"supported: Y = X W^T + b as torch.nn.Linear exports it")
    _dense(g, node, node.input[1], not a.get("transB", 0), node.input[2] if len(node.input) > 2 else None)


@handles("MatMul")
def matmul(g: _Graph, node) -> None:
    if g.const(node, 1, "weight").ndim != 2:
        raise OnnxImportError(f"node {_label(node)}: MatMul by a {g.consts[node.input[1]].ndim}-D tensor is not "
                              f"supported; supported: a 2-D constant weight (in, out)")
    _dense(g, node, node.input[1], True, None)


@handles("Add")
def add(g: _Graph, node) -> None:
    if all(t in g.alias for t in node.input):   # residual add of two computed tensors
        a, b = g.src(node, 0), g.src(node, 1)
        g.output(node, g.add(_ir_name(node.output[0]), "add", [a, b], rank=g.rank[a]))
        return
    # A constant added to a conv/dense output (MatMul + Add): the layer's bias.
    i = 0 if node.input[0] in g.alias else 1
    x = g.src(node, i)
    layer = g.by_name[x]
    value = g.const(node, 1 - i, "addend")
    if layer.op not in ("conv", "dense") or g.users.get(node.input[i], 0) != 1 or layer.params["bias"].any():
        raise OnnxImportError(f"node {_label(node)}: adding a constant is supported only as the bias of the Conv, "
                              f"Gemm or MatMul before it (read by nothing else)")
    co = layer.params["bias"].shape[0]
    if value.size != co:
        raise OnnxImportError(f"node {_label(node)}: constant of shape {value.shape} is not a bias of {co} channels")
    layer.params["bias"] = value.astype(np.float64).reshape(co)
    if node.input[1 - i] in g.quantized:
        g.bias_quant[layer.name] = g.quantized[node.input[1 - i]]
    g.output(node, x)


@handles("Relu")
def relu(g: _Graph, node) -> None:
    x = g.src(node)
    g.output(node, g.add(_ir_name(node.output[0]), "relu", [x], rank=g.rank[x]))


@handles("AveragePool")
def average_pool(g: _Graph, node) -> None:
    x = g.src(node)
    g.need_rank(node, x, 4)
    a = g.attrs(node)
    if a.get("ceil_mode", 0) or _padding(a, node) != 0:
        raise OnnxImportError(f"node {_label(node)}: AveragePool with padding or ceil_mode is not supported; "
                              f"supported: pads 0, ceil_mode 0")
    kernel = _hw(a["kernel_shape"], "kernel", node)
    g.output(node, g.add(_ir_name(node.output[0]), "avgpool", [x],
                         {"kernel": kernel, "stride": _hw(a.get("strides", [1, 1]), "stride", node)}))


@handles("GlobalAveragePool")
def global_average_pool(g: _Graph, node) -> None:
    x = g.src(node)
    g.need_rank(node, x, 4)
    _, h, w = g.shape(x)
    g.output(node, g.add(_ir_name(node.output[0]), "avgpool", [x], {"kernel": _hw([h, w], "kernel", node),
                                                                    "stride": 1}))


def _flatten(g: _Graph, node, x: str) -> None:
    if g.rank[x] == 2:
        g.output(node, x)
        return
    g.output(node, g.add(_ir_name(node.output[0]), "flatten", [x], rank=2))


@handles("Flatten")
def flatten(g: _Graph, node) -> None:
    x = g.src(node)
    if g.attrs(node).get("axis", 1) != 1:
        raise OnnxImportError(f"node {_label(node)}: Flatten on axis {g.attrs(node)['axis']} is not supported; "
                              f"supported: axis 1 (keeping the batch)")
    _flatten(g, node, x)


@handles("Reshape")
def reshape(g: _Graph, node) -> None:
    """Only the reshape torch.flatten / x.view(n, -1) export: (N, ...) -> (N, features)."""
    x = g.src(node)
    target = [int(v) for v in g.const(node, 1, "shape")]
    c, h, w = g.shape(x)
    batch = (0, -1, g.batch) if g.batch is not None else (0, -1, 1)
    if len(target) != 2 or target[0] not in batch or target[1] not in (-1, c * h * w):
        raise OnnxImportError(f"node {_label(node)}: Reshape to {target} is not supported; supported: "
                              f"flattening to (N, {c * h * w}) (torch.flatten(x, 1), x.view(n, -1))")
    _flatten(g, node, x)


@handles("Identity", "Dropout")
def identity(g: _Graph, node) -> None:
    if node.input[0] in g.consts:
        g.consts[node.output[0]] = g.consts[node.input[0]]
        return
    g.output(node, g.src(node))


@handles("Constant")
def constant(g: _Graph, node) -> None:
    a = node.attribute[0]
    if a.name != "value":
        raise OnnxImportError(f"node {_label(node)}: Constant with {a.name!r} is not supported; supported: value")
    g.consts[node.output[0]] = _tensor(g.to_array, a.t)


# -- quantizers ----------------------------------------------------------------------------
def _round(x: np.ndarray, mode: str, node) -> np.ndarray:
    """QONNX's rounding modes (qonnx.custom_op.general.intquant.resolve_rounding_mode)."""
    modes = {"ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil, "DOWN": np.fix,
             "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
             "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5)}
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode.upper() not in modes:
        raise OnnxImportError(f"node {_label(node)}: rounding mode {mode!r} is not supported; supported: "
                              f"{', '.join(modes)}")
    return modes[mode.upper()](x)


def _int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


def _activation_quant(g: _Graph, node, scale: np.ndarray, lo: int, hi: int) -> None:
    """A quantizer on a computed tensor: it fixes the scale and range of the layer it reads."""
    if np.asarray(scale).size != 1:
        raise OnnxImportError(f"node {_label(node)}: per-channel activation scales are not supported; "
                              f"supported: one scale per tensor")
    x = g.src(node)
    layer = g.population(x)
    quant = ActivationQuant(float(np.asarray(scale).reshape(())), lo, hi, node.name or node.output[0])
    seen = g.act_quant.get(layer)
    if seen is not None and (seen.scale, seen.lo, seen.hi) != (quant.scale, quant.lo, quant.hi):
        raise OnnxImportError(f"node {_label(node)}: the output of {layer!r} is quantized twice "
                              f"(also by {g.act_quant[layer].where!r}); supported: one quantizer per layer output")
    g.act_quant.setdefault(layer, quant)   # a view re-quantized alike (Flatten between Q/DQ pairs) changes nothing
    g.output(node, x)


def _zero_point_zero(node, zero_point, what: str) -> None:
    if zero_point is not None and np.any(np.asarray(zero_point) != 0):
        raise OnnxImportError(f"node {_label(node)}: {what} zero point {np.asarray(zero_point).tolist()} is not "
                              f"supported; supported: symmetric quantization (zero point 0)")


@handles("Quant")
def qonnx_quant(g: _Graph, node) -> None:
    """QONNX Quant(x, scale, zeropt, bitwidth): clip(round(x / scale + zeropt)) * scale."""
    a = g.attrs(node)
    scale = g.const(node, 1, "scale").astype(np.float64)
    _zero_point_zero(node, g.const(node, 2, "zero point"), "a")
    bits = int(np.asarray(g.const(node, 3, "bit width")).reshape(()))
    lo, hi = _int_range(bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
    if node.input[0] in g.consts:
        x = g.consts[node.input[0]].astype(np.float64)
        ints = _round(np.clip(x / scale, lo, hi), a.get("rounding_mode", "ROUND"), node).astype(np.int64)
        g.quantized[node.output[0]] = QuantizedConstant(ints, scale, bits)
        g.consts[node.output[0]] = ints * scale
        return
    if a.get("rounding_mode", "ROUND") not in (b"ROUND", "ROUND", b"HALF_EVEN", "HALF_EVEN"):
        raise OnnxImportError(f"node {_label(node)}: activation rounding mode {a['rounding_mode']!r} is not "
                              f"supported; supported: ROUND")
    _activation_quant(g, node, scale, lo, hi)


@handles("BipolarQuant")
def bipolar_quant(g: _Graph, node) -> None:
    """QONNX BipolarQuant(x, scale): +-scale by the sign of x (binary weights)."""
    scale = g.const(node, 1, "scale").astype(np.float64)
    if node.input[0] not in g.consts:
        raise OnnxImportError(f"node {_label(node)}: bipolar (+-1) activations are not supported; supported: "
                              f"bipolar weights, integer activations (Quant)")
    ints = np.where(g.consts[node.input[0]] / scale >= 0, 1, -1).astype(np.int64)
    g.quantized[node.output[0]] = QuantizedConstant(ints, scale, 1)
    g.consts[node.output[0]] = ints * scale


@handles("Trunc")
def trunc(g: _Graph, node) -> None:
    """QONNX Trunc (Brevitas' TruncAvgPool2d): the integer sum of a pool window brought to fewer
    bits, clip(round(x / scale) / 2**k) with 2**k = output_scale / scale: the output quantizer of
    the pool.  v2 inputs: x, scale, zeropt, in_bits, output_scale, out_bits; v1: x, scale,
    zeropt, in_bits, out_bits (output_scale = scale * 2**(in_bits - out_bits))."""
    a = g.attrs(node)
    mode = a.get("rounding_mode", "FLOOR")
    mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
    if mode not in ("ROUND", "HALF_EVEN"):
        raise OnnxImportError(f"node {_label(node)}: Trunc rounding mode {mode} is not supported (the fabric rounds "
                              f"to nearest); supported: ROUND (Brevitas' TruncAvgPool2d default)")
    scale = float(np.asarray(g.const(node, 1, "scale")).reshape(()))
    _zero_point_zero(node, g.const(node, 2, "zero point"), "a")
    in_bits = int(np.asarray(g.const(node, 3, "input bit width")).reshape(()))
    if len(node.input) >= 6:
        out_scale = float(np.asarray(g.const(node, 4, "output scale")).reshape(()))
        out_bits = int(np.asarray(g.const(node, 5, "output bit width")).reshape(()))
    else:
        out_bits = int(np.asarray(g.const(node, 4, "output bit width")).reshape(()))
        out_scale = scale * 2.0 ** (in_bits - out_bits)
    lo, hi = _int_range(out_bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
    _activation_quant(g, node, np.asarray(out_scale), lo, hi)


def _linear_range(zero_point, node) -> tuple[int, int]:
    """The integer range of QuantizeLinear's output type (its zero point's: uint8 by default)."""
    dtype = np.asarray(zero_point).dtype if zero_point is not None else np.dtype(np.uint8)
    if dtype not in (np.int8, np.uint8):
        raise OnnxImportError(f"node {_label(node)}: {dtype} quantization is not supported; supported: int8, uint8")
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@handles("QuantizeLinear")
def quantize_linear(g: _Graph, node) -> None:
    """ONNX QuantizeLinear(x, scale, zero_point): saturate(round_half_even(x / scale) + zero_point)."""
    scale = g.const(node, 1, "scale").astype(np.float64)
    zero_point = g.optional_const(node, 2, "zero point")
    _zero_point_zero(node, zero_point, "a")
    lo, hi = _linear_range(zero_point, node)
    if node.input[0] in g.consts:
        axis = g.attrs(node).get("axis", 1)
        x = g.consts[node.input[0]].astype(np.float64)
        s = _per_axis(scale, x.ndim, axis)
        g.consts[node.output[0]] = np.clip(np.round(x / s), lo, hi).astype(np.asarray(zero_point).dtype
                                                                          if zero_point is not None else np.uint8)
        return
    _activation_quant(g, node, scale, lo, hi)


@handles("DequantizeLinear")
def dequantize_linear(g: _Graph, node) -> None:
    """ONNX DequantizeLinear(x, scale, zero_point): (x - zero_point) * scale.  On integer
    constants: the quantized weights; on activations: the end of a Q/DQ pair (its
    QuantizeLinear fixed the scale)."""
    scale = g.const(node, 1, "scale").astype(np.float64)
    _zero_point_zero(node, g.optional_const(node, 2, "zero point"), "a")
    if node.input[0] not in g.consts:
        g.output(node, g.src(node))
        return
    ints = g.consts[node.input[0]]
    if ints.dtype not in (np.int8, np.uint8, np.int32):
        raise OnnxImportError(f"node {_label(node)}: {ints.dtype} constants are not supported; supported: int8 "
                              f"weights, int32 biases")
    s = _per_axis(scale, ints.ndim, g.attrs(node).get("axis", 1))
    g.quantized[node.output[0]] = QuantizedConstant(ints.astype(np.int64), s, 8 * ints.dtype.itemsize)
    g.consts[node.output[0]] = ints.astype(np.int64) * s


def _per_axis(scale: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if scale.size == 1:
        return scale.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


# ---------------------------------------------------------------------------------------
# A quantized model at its own scales
def _one_scale(q: QuantizedConstant, layer: str, what: str) -> float:
    s = np.unique(np.asarray(q.scale, dtype=np.float64))
    if s.size != 1:
        raise OnnxImportError(f"layer {layer!r}: its {what} has {s.size} different scales (per channel); "
                              f"supported: one scale per layer (Brevitas: a per-tensor weight quantizer)")
    return float(s[0])


def _int8_weight(q: QuantizedConstant, layer: str) -> np.ndarray:
    if q.bits > WEIGHT_BITS or q.ints.min(initial=0) < INT8_RANGE[0] or q.ints.max(initial=0) > INT8_RANGE[1]:
        raise OnnxImportError(f"layer {layer!r}: {q.bits}-bit weights are not supported; supported: at most "
                              f"{WEIGHT_BITS}-bit weights (the fabric's int8)")
    return q.ints.astype(np.int8)


def _bias_in_units(g: _Graph, node: Node, acc_scale: float, acc_bits: int) -> np.ndarray:
    """The bias as the accumulator holds it (exact for a bias quantized at the accumulator's scale)."""
    bias = node.params.get("bias")
    if bias is None:
        return np.zeros(node.shape[0], dtype=np.int64)
    q = g.bias_quant.get(node.name)
    value = q.ints * np.asarray(q.scale, dtype=np.float64) if q is not None else bias
    units = np.round(np.asarray(value, dtype=np.float64).reshape(-1) / acc_scale).astype(np.int64)
    if np.abs(units).max(initial=0) >= 1 << (acc_bits - 1):
        raise OnnxImportError(f"layer {node.name!r}: bias reaches {int(np.abs(units).max())} accumulator steps, "
                              f"beyond the {acc_bits}-bit accumulator; supported: biases within it")
    return units


def _accumulator_scale(g: _Graph, layer, node: Node, scales: dict) -> float:
    """The float value of one accumulator step of `layer`; sets its weights (taken as they are)."""
    stored = [c for c in layer.inputs if c.wconst is None]
    if stored:
        q = g.weight_quant.get(layer.name)
        if q is None:
            raise OnnxImportError(f"layer {layer.name!r}: its weights are float in a quantized model; supported: "
                                  f"weights through a Quant or DequantizeLinear node (Brevitas "
                                  f"QuantConv2d/QuantLinear)")
        in_scales = {scales[c.src] for c in stored}
        if len(in_scales) != 1:
            raise OnnxImportError(f"layer {layer.name!r} reads inputs of different scales {sorted(in_scales)}; "
                                  f"supported: one input scale per layer (share the quantizer of concatenated inputs)")
        layer.weight = _int8_weight(q, layer.name)
        return _one_scale(q, layer.name, "weight") * in_scales.pop()
    return constant_weight_scale(layer, node, scales)


def exact_qnetwork(g: _Graph, net: Network) -> QNetwork:
    """The quantized network of a model whose quantizers fix every scale (none re-quantized);
    mult/shift within the default fabric's widths, as quant.quantize makes them."""
    cfg = FabricConfig()
    qnet = lower(net)
    inq = g.act_quant.get(qnet.input_name)
    if inq is None:
        raise OnnxImportError(f"the input {qnet.input_name!r} of a quantized model has no quantizer; supported: "
                              f"a Quant (Brevitas QuantIdentity) or QuantizeLinear on the input")
    scales = {qnet.input_name: inq.scale}
    for layer in qnet.layers:
        out = g.act_quant.get(layer.name)
        if out is None:
            raise OnnxImportError(f"layer {layer.name!r} ({layer.op}) has no quantizer on its output in a quantized "
                                  f"model; supported: every layer's output quantized (Brevitas: QuantReLU or "
                                  f"QuantIdentity after it)")
        node = net.nodes[layer.name]
        acc_scale = _accumulator_scale(g, layer, node, scales)
        layer.bias = _bias_in_units(g, node, acc_scale, cfg.acc_bits)
        relu = (layer.lo, layer.hi) == RELU_RANGE      # lower() fused a ReLU that reads this layer
        layer.lo, layer.hi = max(out.lo, 0) if relu else out.lo, out.hi
        layer.mult, layer.shift = _mult_shift(layer.name, acc_scale / out.scale, cfg)
        scales[layer.name] = out.scale
    # synfab's inputs are 0..input_hi: a signed input quantizer's negative half goes unused.
    qnet.input_scale, qnet.input_hi = inq.scale, inq.hi
    qnet.output_scale = scales[qnet.output]
    return qnet


# ---------------------------------------------------------------------------------------
def _read_model(path: Path):
    onnx, _ = _onnx()
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError and others for a file that is not ONNX
        raise OnnxImportError(f"{path} is not a readable ONNX model ({first_line(e)})") from None
    _check_names(model, path)
    return model


def _check_names(model, path) -> None:
    """protobuf returns a string field that is not UTF-8 as bytes, which the importer cannot use as
    a name: refuse the model here, naming the field."""
    g = model.graph
    named = [("node", [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)])
             for n in g.node]
    named += [("tensor", [t.name]) for t in (*g.initializer, *g.input, *g.output)]
    for what, names in named:
        raw = [s for s in names if not isinstance(s, str)]
        if raw:
            raise OnnxImportError(f"{path}: a {what} name is not UTF-8 text ({raw[0][:40]!r}); the file is damaged")


@contextlib.contextmanager
def _node_values(node):
    """Attributes and tensors that do not fit the op (a bias of the wrong size, a kernel of the
    wrong rank) fail in numpy or in shape inference; report them against the node."""
    try:
        yield
    except SynfabError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError) as e:
        where = f"node {_label(node)}" if node is not None else "the graph"
        raise OnnxImportError(f"{where}: a tensor or attribute does not fit the op ({first_line(e)})") from None


def from_model(model, name: str = "onnx", input_shape=None):
    """The synfab network of an `onnx.ModelProto`: an `ir.Network`, or an `ir.QNetwork` when the
    model quantizes its tensors (QONNX Quant, QuantizeLinear/DequantizeLinear)."""
    g = _Graph(model, input_shape)
    for node in model.graph.node:
        handler = OP_HANDLERS.get(node.op_type)
        if handler is None:
            raise OnnxImportError(f"node {_label(node)}: op type {_printable(node.op_type)} is not supported; "
                                  f"supported: {supported_ops()}")
        with _node_values(node):
            handler(g, node)
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        raise OnnxImportError(f"the model has {len(outputs)} outputs; synfab networks have one")
    out = outputs[0].name
    if out not in g.alias:
        raise OnnxImportError(f"the model's output {out!r} is not computed from its input")
    with _node_values(None):
        net = Network(g.nodes, output=g.alias[out], name=name)
    # Quantized activations fix every scale; weights quantized alone (their float values are in
    # the graph) leave the activations to calibration, as in a float model.
    return exact_qnetwork(g, net) if g.act_quant else net


@register("ONNX / QONNX", (".onnx",), options=("input_shape",), requires=("onnx",), extra="onnx")
def load(path, input_shape=None):
    """The network of an ONNX or QONNX file (see the module doc)."""
    p = Path(path)
    return from_model(_read_model(p), name=p.stem, input_shape=input_shape)
