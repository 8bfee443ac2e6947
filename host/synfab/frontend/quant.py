"""From a float graph to a quantized network of neuron populations.

`lower` builds the structure (DESIGN.md "Quantized network"): every conv, dense, pool,
upsample and add becomes a population; ReLU, concat and flatten disappear into
lo/hi, chan_off and DENSE indexing.  `quantize` fills in the numbers:

- activations: a population followed (only) by ReLU is unsigned, 0..255 (lo=0, hi=255);
  a population without ReLU is signed, -128..127.  The float value of one step (its
  scale) is calibrated from sample inputs (a high percentile of the activations).
- inputs: 0..255 (input_hi) in steps of `input_scale`; negative inputs are not
  representable, so fold any input normalisation into the first layer instead.
- weights: int8, symmetric, one scale per layer.  Inputs of one layer may come from
  populations of different scales (concatenation); each input channel's weights are
  multiplied by its source's scale before quantizing, so the accumulator of a layer
  always has a single scale A.
- constant-weight connections (pooling, upsampling, residual add): integer weights
  wconst_i with wconst_i * scale_i ~= A (exactly 1 when all inputs share a scale).
- bias: round(b / A), the initial accumulator.
- requantization: a = (acc * mult + round) >> shift ~= acc * A / scale_out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..config import FabricConfig
from ..geometry import POW2_STEPS
from .ir import INT8_RANGE, Network, NetworkError, Node, QConnection, QLayer, QNetwork, pair
from ..layouts import Kind

# Activation ranges of a population: with a fused ReLU, and without one.
RELU_RANGE = (0, 255)
SIGNED_RANGE = (-128, 127)
INPUT_HI = 255
WEIGHT_MAX = INT8_RANGE[1]  # symmetric int8
WCONST_MAX = INT8_RANGE[1]  # constant weights are stored in the signed 8-bit ESU field
MAX_KERNEL = 15
MAX_PAD = 15


# ---------------------------------------------------------------------------------------
# Lowering
@dataclass(frozen=True)
class _Seg:
    """A channel block of a float tensor: population `src` placed at channel `chan_off`."""
    src: str
    chan_off: int
    relu: bool


@dataclass(frozen=True)
class _View:
    segs: tuple[_Seg, ...]
    flat: bool = False   # flattened from a tensor with H*W > 1: only a dense layer can read it


def _pow2_step(node: Node, what: str, value: int) -> int:
    if value not in POW2_STEPS:
        raise NetworkError(f"layer {node.name!r}: {what} {value} is not supported; the fabric shifts by "
                           f"{what}, so use one of {POW2_STEPS}")
    return value


def _window(node: Node, kernel, stride, padding, out_hw: tuple[int, int]) -> dict:
    """QConnection geometry keywords (k, stride, pad and, where height differs, the _y ones)."""
    where = f"layer {node.name!r}: "
    geo = {}
    for axis, k, s, p, n_out in zip(("y", "x"), pair(kernel, "kernel", where), pair(stride, "stride", where),
                                    pair(padding, "padding", where), out_hw):
        if k > MAX_KERNEL or p > MAX_PAD:
            raise NetworkError(f"layer {node.name!r}: kernel {kernel} / padding {padding} too large; "
                               f"the fabric supports kernel <= {MAX_KERNEL} and padding <= {MAX_PAD}")
        if n_out == 1:
            s = 1  # a single output position never steps: any stride reads the same window
        suffix = "_y" if axis == "y" else ""
        geo.update({f"k{suffix}": k, f"stride{suffix}": _pow2_step(node, "stride", s), f"pad{suffix}": p})
    return geo


def _read_concat(node: Node, view: _View) -> tuple[_Seg, ...]:
    if view.flat:
        raise NetworkError(f"layer {node.name!r}: concatenating flattened tensors is not supported; "
                           f"concatenate on channels before flatten")
    return view.segs


def lower(net: Network) -> QNetwork:
    """Structure of the quantized network: populations, connections, ReLU ranges.

    No numbers: bias zeros, weight None, mult=1, shift=0.  Never touches parameters,
    so shape-only networks lower instantly.
    """
    inp = net.input
    views: dict[str, _View] = {inp.name: _View((_Seg(inp.name, 0, False),))}
    layers: list[QLayer] = []
    used_relu: dict[str, set[bool]] = {}   # population -> ReLU states its readers need

    def read(node: Node, view: _View, dense: bool = False) -> tuple[_Seg, ...]:
        if view.flat and not dense:
            raise NetworkError(f"layer {node.name!r} ({node.op}) reads a flattened tensor; only a dense "
                               f"layer can follow flatten")
        for seg in view.segs:
            if seg.src != inp.name:   # the input is unsigned: ReLU on it changes nothing
                used_relu.setdefault(seg.src, set()).add(seg.relu)
        return view.segs

    for node in net:
        a = node.attrs
        if node.op == "input":
            continue
        ins = [views[i] for i in node.inputs]
        if node.op == "relu":
            v = ins[0]
            views[node.name] = _View(tuple(_Seg(s.src, s.chan_off, True) for s in v.segs), v.flat)
            continue
        if node.op == "flatten":
            c, h, w = net.nodes[node.inputs[0]].shape
            views[node.name] = _View(ins[0].segs, ins[0].flat or h * w > 1)
            continue
        if node.op == "concat":
            segs, off = [], 0
            for name, v in zip(node.inputs, ins):
                segs += [_Seg(s.src, s.chan_off + off, s.relu) for s in _read_concat(node, v)]
                off += net.nodes[name].shape[0]
            views[node.name] = _View(tuple(segs))
            continue
        co, ho, wo = node.shape
        conns: list[QConnection] = []
        if node.op == "conv":
            c_in = net.nodes[node.inputs[0]].shape[0]
            geo = _window(node, a["kernel"], a.get("stride", 1), a.get("padding", 0), (ho, wo))
            kind = Kind.DW if a.get("groups", 1) == c_in > 1 else Kind.CONV
            conns = [QConnection(g.src, kind, chan_off=g.chan_off, **geo) for g in read(node, ins[0])]
        elif node.op == "dense":
            conns = [QConnection(g.src, Kind.DENSE, chan_off=g.chan_off) for g in read(node, ins[0], dense=True)]
        elif node.op in ("sumpool", "avgpool"):
            geo = _window(node, a["kernel"], a.get("stride") or a["kernel"], a.get("padding", 0), (ho, wo))
            conns = [QConnection(g.src, Kind.DW, chan_off=g.chan_off, wconst=1, **geo) for g in read(node, ins[0])]
        elif node.op == "upsample":
            u = _pow2_step(node, "upsampling scale", a["scale"])
            # Nearest upsampling = zero insertion by u, then a u x u box of ones (DESIGN.md).
            conns = [QConnection(g.src, Kind.DW, k=u, pad=u - 1, up=u, chan_off=g.chan_off, wconst=1)
                     for g in read(node, ins[0])]
        elif node.op == "add":
            conns = [QConnection(g.src, Kind.DW, chan_off=g.chan_off, wconst=1)
                     for v in ins for g in read(node, v)]
        lo, hi = SIGNED_RANGE
        layers.append(QLayer(node.name, (co, ho, wo), conns, np.zeros(co, dtype=np.int64),
                             lo=lo, hi=hi, weight=None, op=node.op))
        views[node.name] = _View((_Seg(node.name, 0, False),))

    if not layers:
        raise NetworkError(f"network {net.name!r} has no layers after its input; add at least one conv or dense")
    out_view = views[net.output]
    if len(out_view.segs) != 1 or out_view.segs[0].src == inp.name:
        raise NetworkError(f"network output {net.output!r} must be one layer's output, not a concatenation or the "
                           f"input; end the network with a conv, dense, pool, add or upsample layer")
    out_seg = out_view.segs[0]
    used_relu.setdefault(out_seg.src, set()).add(out_seg.relu)

    for layer in layers:
        states = used_relu.get(layer.name, {False})
        if states == {True, False}:
            raise NetworkError(f"layer {layer.name!r} is read both before and after a ReLU; a population has one "
                               f"activation, so read it after the ReLU everywhere (or add a separate layer)")
        if states == {True}:
            layer.lo, layer.hi = RELU_RANGE
    return QNetwork(net.name, inp.name, inp.shape, layers, out_seg.src, input_hi=INPUT_HI)


# ---------------------------------------------------------------------------------------
# Float forward (numpy), the meaning of the float graph
def _windows(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """(N, C, H, W) -> (N, C, Ho, Wo, KH, KW) windows of the zero-padded input."""
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def _float_node(node: Node, ins: list[np.ndarray]) -> np.ndarray:
    a = node.attrs
    x = ins[0] if ins else None
    if node.op == "conv":
        w = node.params["weight"].astype(np.float64)
        win = _windows(x, a["kernel"], a.get("stride", 1), a.get("padding", 0))
        if a.get("groups", 1) == x.shape[1] > 1:
            y = np.einsum("ncyxij,cij->ncyx", win, w[:, 0])
        else:
            y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        b = node.params.get("bias")
        return y if b is None else y + np.asarray(b, dtype=np.float64)[None, :, None, None]
    if node.op == "dense":
        y = x.reshape(len(x), -1) @ node.params["weight"].astype(np.float64).T
        b = node.params.get("bias")
        if b is not None:
            y = y + np.asarray(b, dtype=np.float64)
        return y[:, :, None, None]
    if node.op in ("sumpool", "avgpool"):
        k = a["kernel"]
        y = _windows(x, k, a.get("stride") or k, a.get("padding", 0)).sum(axis=(4, 5))
        kh, kw = pair(k)
        return y / (kh * kw) if node.op == "avgpool" else y
    if node.op == "add":
        return ins[0] + ins[1]
    if node.op == "concat":
        return np.concatenate(ins, axis=1)
    if node.op == "upsample":
        u = a["scale"]
        return x.repeat(u, axis=2).repeat(u, axis=3)
    if node.op == "flatten":
        return x.reshape(len(x), -1, 1, 1)
    if node.op == "relu":
        return np.maximum(x, 0.0)
    raise NetworkError(f"layer {node.name!r}: no float semantics for op {node.op!r}")


def _check_params(net: Network) -> None:
    for node in net:
        if node.op in ("conv", "dense") and node.params.get("weight") is None:
            raise NetworkError(f"layer {node.name!r} has no weights (a shape-only network); load or import a "
                               f"network with parameters")


def _batch(net: Network, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shape = net.input.shape
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise NetworkError(f"inputs of shape {x.shape} do not match the network input {shape}; "
                           f"pass (N, {', '.join(map(str, shape))})")
    return x


def float_activations(net: Network, x) -> dict[str, np.ndarray]:
    """Float value (N, C, H, W) of every node for inputs x (N, C, H, W) or (C, H, W)."""
    _check_params(net)
    vals: dict[str, np.ndarray] = {}
    for node in net:
        vals[node.name] = _batch(net, x) if node.op == "input" else \
            _float_node(node, [vals[i] for i in node.inputs])
    return vals


def float_forward(net: Network, x) -> np.ndarray:
    """Float output (N, C, H, W) of the network for inputs x (N, C, H, W)."""
    return float_activations(net, x)[net.output]


# ---------------------------------------------------------------------------------------
# Quantization
def _scale_from(values: np.ndarray, percentile: float, levels: int) -> float:
    """Float value of one step so that the `percentile` of |values| maps to `levels`."""
    mag = np.abs(values).reshape(-1)
    top = float(np.percentile(mag, percentile)) if mag.size else 0.0
    if top <= 0.0:
        top = float(mag.max()) if mag.size else 0.0
    return (top if top > 0.0 else 1.0) / levels


def _mult_shift(layer: str, ratio: float, cfg: FabricConfig) -> tuple[int, int]:
    """Largest-precision (mult, shift) with mult < 2**mult_bits, shift < 2**shift_bits and
    mult / 2**shift ~= ratio."""
    limit = 1 << cfg.mult_bits
    for shift in range((1 << cfg.shift_bits) - 1, -1, -1):
        mult = int(round(ratio * 2.0 ** shift))
        if mult < limit:
            if mult == 0:
                raise NetworkError(f"layer {layer!r}: requantization factor {ratio:.3g} is too small for "
                                   f"{cfg.shift_bits}-bit shifts (its output would always be 0); check the "
                                   f"calibration data reaches this layer")
            return mult, shift
    raise NetworkError(f"layer {layer!r}: requantization factor {ratio:.3g} needs a multiplier >= 2**{cfg.mult_bits}; "
                       f"calibrate with data that exercises this layer or widen mult_bits")


def _integer_scales(layer: str, scales: list[float]) -> tuple[list[int], float]:
    """Integer weights w_i in 1..WCONST_MAX and accumulator scale A with w_i * A ~= scales[i],
    so that sum_i w_i * q_i is worth sum_i scales[i] * q_i in units of A.

    All equal scales give w_i = 1 exactly; otherwise the candidate with the smallest
    worst relative error wins (ties: smaller weights)."""
    if len(set(scales)) == 1:
        return [1] * len(scales), scales[0]
    largest = max(scales)
    best = None
    for top in range(1, WCONST_MAX + 1):   # weight of the coarsest-scaled input
        step = largest / top
        ws = [min(WCONST_MAX, max(1, int(round(s / step)))) for s in scales]
        acc_scale = float(np.mean([s / w for w, s in zip(ws, scales)]))
        err = max(abs(w * acc_scale - s) / s for w, s in zip(ws, scales))
        if best is None or err < best[0] - 1e-12:
            best = (err, ws, acc_scale)
    if best[0] > 0.05:
        raise NetworkError(f"layer {layer!r}: its inputs' scales {['%.3g' % s for s in scales]} differ too much to "
                           f"combine with 8-bit integer weights; keep the inputs of add/pool layers in similar ranges")
    return best[1], best[2]


def constant_weight_scale(layer: QLayer, node: Node, scales: dict[str, float]) -> float:
    """A layer of constant weights (pooling, concatenation, identity): each input's integer
    weight from the scales (set on its connection) and the accumulator's scale; an average pool
    sums kh*kw inputs, worth their mean."""
    wconsts, acc_scale = _integer_scales(layer.name, [scales[c.src] for c in layer.inputs])
    for conn, wc in zip(layer.inputs, wconsts):
        conn.wconst = wc
    if node.op == "avgpool":
        kh, kw = pair(node.attrs["kernel"])
        acc_scale /= kh * kw
    return acc_scale


def _quantize_weights(weight: np.ndarray, in_scales: np.ndarray, axis: int) -> tuple[np.ndarray, float]:
    """int8 weights and accumulator scale A for float `weight` whose `axis` runs over
    inputs with the given scales: weight * in_scale ~= w_int8 * A."""
    shape = [1] * weight.ndim
    shape[axis] = -1
    scaled = weight.astype(np.float64) * in_scales.reshape(shape)
    peak = float(np.abs(scaled).max()) if scaled.size else 0.0
    if peak == 0.0:
        return np.zeros(weight.shape, dtype=np.int8), float(in_scales.max())
    acc_scale = peak / WEIGHT_MAX
    q = np.clip(np.round(scaled / acc_scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, acc_scale


def _input_scales(qnet: QNetwork, layer: QLayer, scales: dict[str, float], n_in: int) -> np.ndarray:
    """Scale of each input of a layer's weight: per input channel (CONV, DW) or per flattened
    input index (DENSE, PyTorch order: a channel covers H*W consecutive indices)."""
    per_input = np.zeros(n_in)
    for conn in layer.inputs:
        c, h, w = qnet.shape_of(conn.src)
        unit = h * w if conn.kind == Kind.DENSE else 1
        per_input[conn.chan_off * unit:(conn.chan_off + c) * unit] = scales[conn.src]
    return per_input


def quantize(net: Network, calib, input_scale: float | None = None, cfg: FabricConfig | None = None,
             percentile: float = 99.9) -> QNetwork:
    """Quantized network calibrated on float sample inputs `calib` (N, C, H, W).

    input_scale: float value of one input step (e.g. 1/255 for pixels in [0, 1]); by default
    calibrated like the activations.  cfg gives mult_bits/shift_bits/acc_bits (default fabric).
    """
    cfg = cfg or FabricConfig()
    _check_params(net)
    calib = _batch(net, calib)
    if calib.min() < 0:
        raise NetworkError(f"calibration inputs have negative values (min {calib.min():.3g}); synfab inputs are "
                           f"unsigned 0..{INPUT_HI}: feed raw inputs and fold any normalisation into the first layer")
    qnet = lower(net)
    acts = float_activations(net, calib)
    scales = {qnet.input_name: float(input_scale) if input_scale else _scale_from(calib, percentile, INPUT_HI)}
    for layer in qnet.layers:
        relu = (layer.lo, layer.hi) == RELU_RANGE
        value = np.maximum(acts[layer.name], 0.0) if relu else acts[layer.name]
        scales[layer.name] = _scale_from(value, percentile, layer.hi)

        node = net.nodes[layer.name]
        stored = [c for c in layer.inputs if c.wconst is None]
        if stored:
            weight = node.params["weight"]
            axis = {Kind.DW: 0, Kind.CONV: 1, Kind.DENSE: 1}[stored[0].kind]
            in_scales = _input_scales(qnet, layer, scales, weight.shape[axis])
            layer.weight, acc_scale = _quantize_weights(weight, in_scales, axis)
        else:
            acc_scale = constant_weight_scale(layer, node, scales)

        bias = node.params.get("bias")
        if bias is not None:
            q = np.round(np.asarray(bias, dtype=np.float64) / acc_scale)
            if np.abs(q).max(initial=0) >= 2 ** (cfg.acc_bits - 1):
                raise NetworkError(f"layer {layer.name!r}: bias does not fit the {cfg.acc_bits}-bit accumulator "
                                   f"at this scale; check the layer's weights or calibration data")
            layer.bias = q.astype(np.int64)
        layer.mult, layer.shift = _mult_shift(layer.name, acc_scale / scales[layer.name], cfg)

    qnet.input_scale = scales[qnet.input_name]
    qnet.output_scale = scales[qnet.output]
    _check_headroom(qnet, quantize_input(qnet, calib), cfg)
    return qnet


def _check_headroom(qnet: QNetwork, xq: np.ndarray, cfg: FabricConfig) -> None:
    """The accumulators must not wrap on the calibration data (wrapping is exact but meaningless)."""
    limit = 1 << (cfg.acc_bits - 1)
    from ..model import reference    # the model imports the compiler, which imports the frontend
    unwrapped = reference.run_acc(qnet, xq, acc_bits=62)
    for name, acc in unwrapped.items():
        peak = int(np.abs(acc).max())
        if peak >= limit:
            raise NetworkError(f"layer {name!r}: accumulator reaches {peak} on the calibration data, beyond the "
                               f"{cfg.acc_bits}-bit accumulator; use a fabric with larger acc_bits")


def quantize_input(qnet: QNetwork, x_float) -> np.ndarray:
    """Integer input (same shape as x_float): round(x / input_scale) clamped to 0..input_hi."""
    x = np.asarray(x_float, dtype=np.float64)
    return np.clip(np.round(x / qnet.input_scale), 0, qnet.input_hi).astype(np.int64)


def evaluate(net: Network, qnet: QNetwork, x_float, labels, acc_bits: int = 24,
             batch: int = 256) -> dict[str, float]:
    """Top-1 accuracy of the float and the quantized network, and how often they agree."""
    from ..model import reference
    x = _batch(net, x_float)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(x):
        raise NetworkError(f"{len(x)} inputs but {len(labels)} labels")
    float_pred, quant_pred = [], []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        float_pred.append(float_forward(net, chunk).reshape(len(chunk), -1).argmax(axis=1))
        q = reference.output(qnet, quantize_input(qnet, chunk), acc_bits)
        quant_pred.append(q.reshape(len(chunk), -1).argmax(axis=1))
    fp, qp = np.concatenate(float_pred), np.concatenate(quant_pred)
    return {"float_accuracy": float(np.mean(fp == labels)), "quant_accuracy": float(np.mean(qp == labels)),
            "agreement": float(np.mean(fp == qp))}
