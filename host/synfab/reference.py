"""Dense integer reference: THE golden semantics of a quantized network.

Written straight from DESIGN.md ("Arithmetic", "Quantized network"), with no event logic:
for every layer, acc = bias + sum over its connections of the connection's synapses,
then `arith.wrap(acc, acc_bits)`, then `arith.requantize`.  The event-driven model and
the hardware must match this bit for bit at threshold 0.

Every function also accepts a batch (N, C, H, W) of inputs; results then carry the batch axis.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import arith
from .ir import NetworkError, QConnection, QLayer, QNetwork
from .layouts import Kind


def _geometry_windows(src: np.ndarray, conn: QConnection, out_hw: tuple[int, int]) -> np.ndarray:
    """Kernel windows of the zero-inserted, padded source for every destination position.

    src (N, C, H, W) -> (N, C, Ho, Wo, K, K) with
    win[..., oy, ox, ky, kx] = Z[oy*stride + ky - pad, ox*stride + kx - pad] (0 outside Z),
    Z = src zero-inserted by `up` (Z[p] = src[p // up] where p % up == 0).
    """
    n, c, h, w = src.shape
    k, s, pad, up = conn.k, conn.stride, conn.pad, conn.up
    ho, wo = out_hw
    zh, zw = (h - 1) * up + 1, (w - 1) * up + 1
    # Canvas = Z shifted by pad, large enough for every window read; reads outside Z are zeros.
    ph = max(pad + zh, (ho - 1) * s + k)
    pw = max(pad + zw, (wo - 1) * s + k)
    canvas = np.zeros((n, c, ph, pw), dtype=np.int64)
    canvas[:, :, pad:pad + zh:up, pad:pad + zw:up] = src
    win = sliding_window_view(canvas, (k, k), axis=(2, 3))
    return win[:, :, : (ho - 1) * s + 1 : s, : (wo - 1) * s + 1 : s]


def _connection_weight(layer: QLayer, conn: QConnection, src_shape) -> np.ndarray:
    """The weights this connection uses: the slice of the layer's int8 weight for its
    channels, or the constant `wconst` broadcast to the same shape."""
    c_src, h, w = src_shape
    co = layer.shape[0]
    c0, c1 = conn.chan_off, conn.chan_off + c_src
    if conn.kind == Kind.CONV:
        shape = (co, c_src, conn.k, conn.k)
    elif conn.kind == Kind.DW:
        shape = (c_src, 1, conn.k, conn.k)
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
    if conn.k < 1 or conn.stride < 1 or conn.up < 1 or conn.pad < 0:
        raise NetworkError(f"layer {layer.name!r}: connection from {conn.src!r} has k={conn.k} stride={conn.stride} "
                           f"up={conn.up} pad={conn.pad}; k, stride, up must be >= 1 and pad >= 0")
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


def _forward(qnet: QNetwork, xb: np.ndarray, acc_bits: int):
    """Yield (layer, wrapped acc, activation) in evaluation order for a checked batch xb."""
    acts = {qnet.input_name: xb}
    for layer in qnet.layers:
        bias = np.asarray(layer.bias, dtype=np.int64).reshape(-1)
        if bias.shape != (layer.shape[0],):
            raise NetworkError(f"layer {layer.name!r}: bias has shape {bias.shape}, expected ({layer.shape[0]},)")
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
