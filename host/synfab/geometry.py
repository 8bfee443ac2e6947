"""Connection geometry, per axis: the ONE definition of which kernel tap joins a source position
to an output (DESIGN.md "Quantized network" and "PEG").

A source position x sits at z = x*up + pad in the zero-inserted, padded input; output o reads
z = o*stride + tap for tap in 0..k-1.  So z reaches the outputs lo..hi with
lo = ceil((z - k + 1) / stride), hi = floor(z / stride), through tap z - o*stride.  Strides and
`up` are powers of two (shifts in hardware); every function here takes numpy arrays or ints.
The shape inference of the IR, the mapper, the golden model's PEG and the footprint analysis
use these functions; the dense reference (model/reference.py) is kept independent on purpose:
it reads the same windows by slicing, and the tests compare the two.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


# Strides and upsampling factors the PEG and ESU shift by (DESIGN.md "Quantized network").
POW2_STEPS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Tile:
    """Neurons of a layer: columns x0..x1, rows y0..y1, channels c0..c1 (inclusive), as a
    mapper part holds them (`Part.tile`) and the footprint analysis counts them."""
    x0: int
    x1: int
    y0: int
    y1: int
    c0: int
    c1: int

    @classmethod
    def whole(cls, shape) -> "Tile":
        """Every neuron of a (C, H, W) layer."""
        c, h, w = shape
        return cls(0, w - 1, 0, h - 1, 0, c - 1)

    @property
    def tw(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def th(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def cc(self) -> int:
        return self.c1 - self.c0 + 1

    @property
    def neurons(self) -> int:
        return self.tw * self.th * self.cc


def conv_out(n: int, k: int, s: int, p: int) -> int:
    """Output length of a kernel window k with stride s and padding p over n inputs (one axis)."""
    return (n + 2 * p - k) // s + 1


def padded(x, up_log2, pad):
    """Position of source coordinate x in the zero-inserted (by 2**up_log2), padded input."""
    return (x << up_log2) + pad


def reach(z, k, s_log2):
    """First and last output whose k-tap window (stride 2**s_log2) covers padded position z,
    unclipped (lo > hi: none).  lo = ceil((z-k+1)/s) as a floor shift, hi = floor(z/s)."""
    return (z - k + (1 << s_log2)) >> s_log2, z >> s_log2


def tap(z, o, s_log2):
    """The kernel tap joining padded position z to output o."""
    return z - (o << s_log2)


def log2(v: int) -> int:
    """log2 of a power of two (a stride or an upsampling factor; the mapper refuses others)."""
    v = int(v)
    if v < 1 or v & (v - 1):
        raise ValueError(f"{v} is not a power of two")
    return v.bit_length() - 1


def axis_span(n_src: int, n_dst: int, k: int, stride: int, pad: int, up: int):
    """For every source position 0..n_src-1, the first and last output 0..n_dst-1 it reaches,
    clipped to the layer; lo > hi where it reaches nothing."""
    lo, hi = reach(padded(np.arange(n_src, dtype=np.int64), log2(up), pad), k, log2(stride))
    return np.maximum(lo, 0), np.minimum(hi, n_dst - 1)


@functools.lru_cache(maxsize=None)
def taps(n_src: int, k: int, stride: int, pad: int, up: int, t0: int, t1: int) -> np.ndarray:
    """bool (n_src, k), read-only: tap j of source position p reaches an output in t0..t1 (t0 >= 0)."""
    z = padded(np.arange(n_src, dtype=np.int64), log2(up), pad)[:, None]
    lo, hi = axis_span(n_src, t1 + 1, k, stride, pad, up)
    o = np.arange(t0, t1 + 1, dtype=np.int64)[None, :]
    out = np.zeros((n_src, k), dtype=bool)
    p, j = np.nonzero((o >= np.maximum(lo, t0)[:, None]) & (o <= hi[:, None]))
    out[p, tap(z[p, 0], o[0, j], log2(stride))] = True
    out.setflags(write=False)
    return out
