"""Dense integer reference: THE golden semantics of a quantized network.

Written straight from DESIGN.md ("Arithmetic", "Quantized network", "Neuron models", "Time
steps"), with no event logic.

`run` / `run_acc` / `output`: one static input through a network of default sigma-delta
neurons: for every layer, acc = bias + sum over its connections of the connection's synapses,
then `arith.wrap(acc, acc_bits)`, then `arith.requantize`.  The event-driven model and the
hardware must match this bit for bit at threshold 0.  They accept a batch (N, C, H, W) too.

`simulate`: any network (every neuron model, pipelined or not) over a sequence of frames, one
frame per time step: every neuron of every layer is stepped at every step (dense: no activity
tracking), its synaptic input computed densely from the events its sources sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import arith
from ..frontend.ir import NetworkError, QConnection, QLayer, QNetwork
from ..layouts import Kind


def _geometry_windows(src: np.ndarray, conn: QConnection, out_hw: tuple[int, int]) -> np.ndarray:
    """Kernel windows of the zero-inserted, padded source for every destination position.

    src (N, C, H, W) -> (N, C, Ho, Wo, KH, KW) with
    win[..., oy, ox, ky, kx] = Z[oy*sh + ky - ph, ox*sw + kx - pw] (0 outside Z),
    Z = src zero-inserted by `up` (Z[p] = src[p // up] where p % up == 0).
    """
    n, c, h, w = src.shape
    (kh, sh, ph), (kw, sw, pw), up = conn.axis("y"), conn.axis("x"), conn.up
    ho, wo = out_hw
    zh, zw = (h - 1) * up + 1, (w - 1) * up + 1
    # Canvas = Z shifted by the padding, large enough for every window read; reads outside Z are zeros.
    ch = max(ph + zh, (ho - 1) * sh + kh)
    cw = max(pw + zw, (wo - 1) * sw + kw)
    canvas = np.zeros((n, c, ch, cw), dtype=np.int64)
    canvas[:, :, ph:ph + zh:up, pw:pw + zw:up] = src
    win = sliding_window_view(canvas, (kh, kw), axis=(2, 3))
    return win[:, :, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]


def _connection_weight(layer: QLayer, conn: QConnection, src_shape) -> np.ndarray:
    """The weights this connection uses: the slice of the layer's int8 weight for its
    channels, or the constant `wconst` broadcast to the same shape; times 2**wshift."""
    return _unshifted_weight(layer, conn, src_shape) << np.int64(conn.wshift)


def _unshifted_weight(layer: QLayer, conn: QConnection, src_shape) -> np.ndarray:
    c_src, h, w = src_shape
    co = layer.shape[0]
    c0, c1 = conn.chan_off, conn.chan_off + c_src
    if conn.kind == Kind.CONV:
        shape = (co, c_src, conn.kh, conn.kw)
    elif conn.kind == Kind.DW:
        shape = (c_src, 1, conn.kh, conn.kw)
    elif conn.kind == Kind.DENSE:
        shape = (co, c_src * h * w)
    else:
        raise NetworkError(f"layer {layer.name!r}: connection kind {conn.kind!r} has no synapses; "
                           f"use CONV, DW or DENSE")
    if conn.wconst is not None:
        return np.full(shape, int(conn.wconst), dtype=np.int64)
    if layer.weight is None:
        raise NetworkError(f"layer {layer.name!r} has no weights (a structure-only network); "
                           f"quantize it with synfab.quant.quantize before running it")
    wt = np.asarray(layer.weight, dtype=np.int64)
    if conn.kind == Kind.CONV:
        part = wt[:, c0:c1]
    elif conn.kind == Kind.DW:
        part = wt[c0:c1]
    else:
        part = wt[:, c0 * h * w:c1 * h * w]
    if part.shape != shape:
        raise NetworkError(f"layer {layer.name!r}: weight {wt.shape} has no {conn.kind.name} slice of shape "
                           f"{shape} for input {conn.src!r} at channel offset {conn.chan_off}")
    return part


def _contribution(layer: QLayer, conn: QConnection, src: np.ndarray) -> tuple[slice, np.ndarray]:
    """(destination channel slice, summed synaptic input (N, c, Ho, Wo)) of one connection."""
    n, c_src, h, w = src.shape
    co, ho, wo = layer.shape
    if min(conn.kh, conn.kw, conn.sh, conn.sw, conn.up) < 1 or min(conn.ph, conn.pw, conn.wshift) < 0:
        raise NetworkError(f"layer {layer.name!r}: connection from {conn.src!r} has kernel {conn.kh}x{conn.kw} "
                           f"stride {conn.sh}x{conn.sw} up={conn.up} padding {conn.ph}x{conn.pw} wshift={conn.wshift}; "
                           f"kernel, stride, up must be >= 1, padding and wshift >= 0")
    wt = _connection_weight(layer, conn, (c_src, h, w))
    if conn.kind == Kind.DENSE:
        # PyTorch flatten order of the channel-offset source: index c*H*W + y*W + x.
        total = src.reshape(n, -1) @ wt.T
        return slice(0, co), total.reshape(n, co, 1, 1)
    win = _geometry_windows(src, conn, (ho, wo))
    if conn.kind == Kind.CONV:
        # sum over c_in, ky, kx of win[n, c_in, y, x, ky, kx] * wt[c_out, c_in, ky, kx]
        total = np.tensordot(win, wt, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
        return slice(0, co), total
    total = np.einsum("ncyxij,cij->ncyx", win, wt[:, 0])
    return slice(conn.chan_off, conn.chan_off + c_src), total


def _check_input(qnet: QNetwork, x) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise NetworkError(f"input must be an integer array (use synfab.quant.quantize_input), got {x.dtype}")
    batched = x.ndim == 4
    if tuple(x.shape[batched:]) != tuple(qnet.input_shape):
        raise NetworkError(f"input shape {x.shape} does not match the network input {qnet.input_shape} "
                           f"(or (N, *{qnet.input_shape}) for a batch)")
    x = x.astype(np.int64)
    return (x if batched else x[None]), batched


def _bias(layer: QLayer) -> np.ndarray:
    bias = np.asarray(layer.bias, dtype=np.int64).reshape(-1)
    if bias.shape != (layer.shape[0],):
        raise NetworkError(f"layer {layer.name!r}: bias has shape {bias.shape}, expected ({layer.shape[0]},)")
    return bias


def _static(qnet: QNetwork) -> None:
    """run/run_acc define the settled state of default sigma-delta neurons only."""
    for layer in qnet.layers:
        n = layer.neuron
        if n.model != "sigma_delta" or n.theta or n.msg_shift:
            raise NetworkError(f"layer {layer.name!r} has {n.model} neurons (theta {n.theta}, msg_shift "
                               f"{n.msg_shift}): their output depends on the time steps; use reference.simulate")


def _forward(qnet: QNetwork, xb: np.ndarray, acc_bits: int):
    """Yield (layer, wrapped acc, activation) in evaluation order for a checked batch xb."""
    _static(qnet)
    acts = {qnet.input_name: xb}
    for layer in qnet.layers:
        bias = _bias(layer)
        acc = np.broadcast_to(bias[None, :, None, None], (xb.shape[0], *layer.shape)).copy()
        for conn in layer.inputs:
            if conn.src not in acts:
                raise NetworkError(f"layer {layer.name!r}: input {conn.src!r} is not a layer evaluated before it")
            chans, total = _contribution(layer, conn, acts[conn.src])
            acc[:, chans] += total
        acc = arith.wrap(acc, acc_bits)
        act = arith.requantize(acc, layer.mult, layer.shift, layer.lo, layer.hi)
        acts[layer.name] = act
        yield layer, acc, act


def run(qnet: QNetwork, x, acc_bits: int = 24) -> dict[str, np.ndarray]:
    """Integer activation (C, H, W) int64 of the input and of every layer, by name."""
    xb, batched = _check_input(qnet, x)
    pick = (lambda a: a) if batched else (lambda a: a[0])
    out = {qnet.input_name: pick(xb)}
    for layer, _, act in _forward(qnet, xb, acc_bits):
        out[layer.name] = pick(act)
    return out


def run_acc(qnet: QNetwork, x, acc_bits: int = 24) -> dict[str, np.ndarray]:
    """Wrapped accumulator (C, H, W) int64 of every layer (the final neuron states), by name."""
    xb, batched = _check_input(qnet, x)
    pick = (lambda a: a) if batched else (lambda a: a[0])
    return {layer.name: pick(acc) for layer, acc, _ in _forward(qnet, xb, acc_bits)}


def output(qnet: QNetwork, x, acc_bits: int = 24) -> np.ndarray:
    """Integer activation of the network output (batched like x)."""
    return run(qnet, x, acc_bits)[qnet.output]


# ---------------------------------------------------------------------------------------
# Time steps: every neuron model, every step, densely
@dataclass
class Trace:
    """What `simulate` computed: per layer and step, the event values every neuron sent
    (C, H, W; 0 = none) and, with record_state, its state words after the step (C, H, W each)."""
    steps: int
    events: dict[str, list[np.ndarray]] = field(default_factory=dict)
    states: dict[str, list[dict]] = field(default_factory=dict)

    def spike_counts(self, name: str) -> np.ndarray:
        """Events (non-zero values) the layer sent at every step."""
        return np.array([int(np.count_nonzero(e)) for e in self.events[name]], dtype=np.int64)


def input_step_events(qnet: QNetwork, prev, cur) -> np.ndarray:
    """The input events of one step, dense: golden.step_input in the network's input mode."""
    from .golden import step_input
    return step_input(prev, cur, qnet.input_mode)


def _layer_input(layer: QLayer, events: dict, sources) -> np.ndarray:
    """Summed synaptic input (C*H*W,) of one step from the events of the given sources."""
    total = np.zeros(layer.shape, dtype=np.int64)
    for conn in layer.inputs:
        if conn.src in sources:
            chans, contribution = _contribution(layer, conn, events[conn.src][None])
            total[chans] += contribution[0]
    return total.reshape(-1)


def simulate(qnet: QNetwork, frames, acc_bits: int = 24, threshold: int = 0,
             record_state: bool = True) -> Trace:
    """Run frames (T, C, H, W) ints, one per time step, through qnet (DESIGN.md "Time steps").

    At every step each layer, in order, adds to acc (wrapping) the synaptic input of the events
    its sources sent in this step, clears u, v and ref when the network's reset_interval says
    so, and steps every neuron (arith.step).  Pipelined, the events of layers are added to their
    consumers' acc at the end of the step instead (they are seen one step later); the input's
    events always arrive in their step.  States are recorded at the end of the step."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or tuple(frames.shape[1:]) != tuple(qnet.input_shape):
        raise NetworkError(f"frames of shape {frames.shape}; expected (T, {', '.join(map(str, qnet.input_shape))})")
    if not np.issubdtype(frames.dtype, np.integer):
        raise NetworkError(f"frames must be integers, got {frames.dtype}")
    state = {l.name: arith.initial_state(l.neuron, np.repeat(_bias(l), l.shape[1] * l.shape[2]),
                                         int(np.prod(l.shape)), acc_bits) for l in qnet.layers}
    trace = Trace(len(frames), {l.name: [] for l in qnet.layers}, {l.name: [] for l in qnet.layers})
    at_once = {qnet.input_name} if qnet.pipelined else {qnet.input_name, *(l.name for l in qnet.layers)}
    delayed = {l.name for l in qnet.layers} - at_once
    prev = None
    for t, frame in enumerate(frames):
        sent = {qnet.input_name: input_step_events(qnet, prev, frame)}
        prev = frame
        for i, layer in enumerate(qnet.layers):
            s = state[layer.name]
            s["acc"] = arith.wrap(s["acc"] + _layer_input(layer, sent, at_once), acc_bits)
            if qnet.reset_interval and t % qnet.reset_interval == i % qnet.reset_interval:
                s = arith.clear_state(layer.neuron, s)
            act = arith.Activation(layer.mult, layer.shift, layer.lo, layer.hi)
            s, values = arith.step(layer.neuron, s, acc_bits, act, threshold)
            state[layer.name] = s
            sent[layer.name] = values.reshape(layer.shape)
            trace.events[layer.name].append(sent[layer.name])
        for layer in qnet.layers:
            if delayed:
                s = state[layer.name]
                s["acc"] = arith.wrap(s["acc"] + _layer_input(layer, sent, delayed), acc_bits)
            if record_state:
                trace.states[layer.name].append({k: v.reshape(layer.shape).copy()
                                                 for k, v in state[layer.name].items()})
    return trace
