"""The integer arithmetic of a neuron, defined once.

The dense reference, the event-driven model and (in hardware) the evaluation unit all
compute exactly this.  Accumulators wrap in two's complement, so the order in which
synaptic contributions arrive never changes the result.
"""
from __future__ import annotations

import numpy as np


def wrap(x, bits: int):
    """Two's-complement wrap of integers (scalar or int64 array) to `bits` bits."""
    x = np.asarray(x, dtype=np.int64)
    m = np.int64(1) << np.int64(bits)
    h = np.int64(1) << np.int64(bits - 1)
    return ((x + h) & (m - 1)) - h


def requantize(acc, mult: int, shift: int, lo: int, hi: int):
    """Activation of a neuron from its (wrapped) accumulator.

    a = clamp((acc * mult + round) >> shift, lo, hi), round = 2**(shift-1) (0 if shift == 0),
    with an arithmetic (flooring) shift.  ReLU is lo = 0.
    """
    acc = np.asarray(acc, dtype=np.int64)
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    y = (acc * np.int64(mult) + np.int64(rnd)) >> np.int64(shift)
    return np.clip(y, lo, hi)


def fires(a, sent, threshold: int):
    """Sigma-delta output rule: send a - sent when it is non-zero and |a - sent| >= threshold."""
    d = np.asarray(a, dtype=np.int64) - np.asarray(sent, dtype=np.int64)
    return (d != 0) & (np.abs(d) >= threshold)
