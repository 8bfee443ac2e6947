"""Small random quantized networks (and fabric configs) for property tests and co-simulation.

`random_qnetwork(source, cfg)` builds a QNetwork that maps onto `cfg`, from a numpy Generator,
an int seed or a hypothesis `draw`: structure decisions are drawn one by one (so hypothesis can
shrink them), weight and bias arrays come from a seeded numpy generator.  Across draws every
layer kind appears: conv with padding and stride 1/2, zero-inserting (up=2) conv, depthwise,
pointwise, dense after flatten (also over a concatenation), sum and average pooling, residual
add with integer scales, channel concatenation, nearest upsampling, layers without ReLU.
Requantization is sized from a statistical estimate of each accumulator so activations neither
vanish nor all saturate; small acc_bits make some accumulators wrap, which is tested too.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from . import arith
from .config import FabricConfig
from .errors import SynfabError
from .frontend.ir import QConnection, QLayer, QNetwork, conv_out
from .layouts import Kind
from .compiler.mapper import STRATEGIES, MappingError, map_network

BLOCKS = ("conv", "conv_s2", "tconv", "dw", "pw", "sumpool", "avgpool", "upsample", "add", "concat",
          "dense", "dense_concat")
# Drawn only when asked for (BLOCKS keeps its draws: seeded co-simulation cases stay the same).
EXTRA_BLOCKS = ("rect", "rect_pool")
# More of version 2's geometry (also drawn only when asked): a rectangular depthwise conv with
# strides up to 8 and kernels up to 7, and a rectangular zero-inserting (up=2) conv.
GEOMETRY_BLOCKS = ("rect_dw", "rect_up")
# Every block of the geometry the gateware runs beyond square kernels (with_weight_shifts adds
# the weight shift).
GEOMETRY_KINDS = EXTRA_BLOCKS + GEOMETRY_BLOCKS


class _Source:
    """One interface over numpy Generators and hypothesis draws."""

    def __init__(self, source):
        if isinstance(source, _Source):
            self.rng, self.draw = source.rng, source.draw
            return
        if isinstance(source, (int, np.integer)):
            source = np.random.default_rng(int(source))
        self.rng = source if isinstance(source, np.random.Generator) else None
        self.draw = None if self.rng is not None else source

    def int(self, lo: int, hi: int) -> int:
        """Uniform integer in lo..hi (inclusive)."""
        if self.rng is not None:
            return int(self.rng.integers(lo, hi + 1))
        from hypothesis import strategies as st
        return self.draw(st.integers(lo, hi))

    def pick(self, options):
        return options[self.int(0, len(options) - 1)]

    def flag(self, p_true: float = 0.5) -> bool:
        return self.int(0, 999) < p_true * 1000

    def arrays(self) -> np.random.Generator:
        return np.random.default_rng(self.int(0, 2 ** 32 - 1))


class _Builder:
    def __init__(self, src: _Source, cfg: FabricConfig, size: int):
        self.src, self.cfg, self.size = src, cfg, size
        self.arr = src.arrays()
        self.layers: list[QLayer] = []
        self.shapes: dict[str, tuple] = {}
        self.mag: dict[str, float] = {}        # typical |activation| of every tensor
        self.kmax = min(5, (1 << cfg.kernel_bits) - 1)
        self.max_hw = min(1 << cfg.coord_bits, 4 + 4 * size)
        self.max_c = min(1 << cfg.chan_bits, 2 + 2 * size)

    def name(self, op: str) -> str:
        return f"{op}{len(self.layers)}"

    def add_layer(self, op: str, shape, conns, weight, fan_in: float, w_rms: float, mag_in: float,
                  relu: bool | None = None, requant: tuple | None = None) -> str:
        """Append a layer; requantization sized so a typical accumulator lands mid-range."""
        src, cfg = self.src, self.cfg
        relu = src.flag(0.7) if relu is None else relu
        lo, hi = (0, src.pick([255, 255, 127, 15])) if relu else (-128, 127)
        acc_typ = max(1.0, math.sqrt(max(fan_in, 1.0)) * max(w_rms, 1e-3) * max(mag_in, 1.0))
        if requant is None:
            scale = (hi / 3.0) / acc_typ
            shift = min((1 << cfg.shift_bits) - 1, max(0, int(math.floor(math.log2((1 << cfg.mult_bits) - 1)
                                                                             - math.log2(max(scale, 1e-9))))))
            shift = src.int(max(0, shift - 3), shift)
            mult = int(min((1 << cfg.mult_bits) - 1, max(1, round(scale * (1 << shift)))))
        else:
            mult, shift = requant
        c = shape[0]
        bias = self.arr.integers(-int(acc_typ // 2) - 1, int(acc_typ // 2) + 2, size=c).astype(np.int64)
        name = self.name(op)
        self.layers.append(QLayer(name, tuple(shape), conns, bias, mult, shift, lo, hi, weight, op))
        self.shapes[name] = tuple(shape)
        self.mag[name] = max(1.0, min(hi, acc_typ * mult / (1 << shift)) / (2.0 if relu else 1.0))
        return name

    def weights(self, shape) -> tuple[np.ndarray, float]:
        wmax = self.src.pick([1, 7, 31, 127])
        return self.arr.integers(-wmax, wmax + 1, size=shape).astype(np.int8), wmax / math.sqrt(3.0)

    # -- blocks: each takes the current tensor and returns the new one (or None if not applicable)
    def conv(self, cur: str, k: int, s: int, pad: int, co: int | None = None, up: int = 1, op="conv"):
        c, h, w = self.shapes[cur]
        zh, zw = (h - 1) * up + 1, (w - 1) * up + 1
        ho, wo = conv_out(zh, k, s, pad), conv_out(zw, k, s, pad)
        if min(ho, wo) < 1 or max(ho, wo) > self.max_hw:
            return None
        co = co or self.src.int(1, self.max_c)
        wt, rms = self.weights((co, c, k, k))
        conn = QConnection(cur, Kind.CONV, k=k, stride=s, pad=pad, up=up)
        return self.add_layer(op, (co, ho, wo), [conn], wt, c * k * k / (up * up), rms, self.mag[cur])

    def rect(self, cur: str, pool: bool):
        """A rectangular conv (or sum pool): kernel, stride and padding differ between the axes."""
        src, (c, h, w) = self.src, self.shapes[cur]
        kmax = min(self.kmax, 5)
        kh, kw = src.int(1, kmax), src.int(1, kmax)
        sh, sw = src.pick([1, 2]), src.pick([1, 2])
        ph, pw = src.int(0, kh - 1), src.int(0, kw - 1)
        ho, wo = conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw)
        if min(ho, wo) < 1:
            return None
        geo = dict(k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh, pad_y=ph)
        if pool:
            return self.add_layer("rpool", (c, ho, wo), [QConnection(cur, Kind.DW, wconst=1, **geo)], None,
                                  kh * kw, 1, self.mag[cur])
        co = self.src.int(1, self.max_c)
        wt, rms = self.weights((co, c, kh, kw))
        return self.add_layer("rconv", (co, ho, wo), [QConnection(cur, Kind.CONV, **geo)], wt, c * kh * kw, rms,
                              self.mag[cur])

    def rect_dw(self, cur: str):
        """A rectangular depthwise conv with stored weights: kernels up to 7, strides up to 8."""
        src, (c, h, w) = self.src, self.shapes[cur]
        kmax = min((1 << self.cfg.kernel_bits) - 1, 7)
        kh, kw = src.int(1, kmax), src.int(1, kmax)
        sh, sw = src.pick([1, 2, 4, 8]), src.pick([1, 2, 4, 8])
        ph, pw = src.int(0, kh - 1), src.int(0, kw - 1)
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if min(ho, wo) < 1:
            return None
        wt, rms = self.weights((c, 1, kh, kw))
        conn = QConnection(cur, Kind.DW, k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh, pad_y=ph)
        return self.add_layer("rdw", (c, ho, wo), [conn], wt, kh * kw, rms, self.mag[cur])

    def rect_up(self, cur: str):
        """A rectangular conv over the source zero-inserted by 2 (a transposed conv)."""
        src, (c, h, w) = self.src, self.shapes[cur]
        kmax = min(self.kmax, 5)
        kh, kw = src.int(1, kmax), src.int(1, kmax)
        sh, sw = src.pick([1, 2]), src.pick([1, 2])
        ph, pw = src.int(0, kh - 1), src.int(0, kw - 1)
        zh, zw = 2 * h - 1, 2 * w - 1
        ho, wo = (zh + 2 * ph - kh) // sh + 1, (zw + 2 * pw - kw) // sw + 1
        if min(ho, wo) < 1 or max(ho, wo) > self.max_hw:
            return None
        co = self.src.int(1, self.max_c)
        wt, rms = self.weights((co, c, kh, kw))
        conn = QConnection(cur, Kind.CONV, k=kw, stride=sw, pad=pw, k_y=kh, stride_y=sh, pad_y=ph, up=2)
        return self.add_layer("rtconv", (co, ho, wo), [conn], wt, c * kh * kw / 4, rms, self.mag[cur])

    def block(self, kind: str, cur: str):
        src = self.src
        c, h, w = self.shapes[cur]
        if kind in ("rect", "rect_pool"):
            return self.rect(cur, kind == "rect_pool")
        if kind == "rect_dw":
            return self.rect_dw(cur)
        if kind == "rect_up":
            return self.rect_up(cur)
        if kind in ("conv", "conv_s2"):
            k = src.pick([kk for kk in (1, 3, 5) if kk <= self.kmax])
            return self.conv(cur, k, 2 if kind == "conv_s2" else 1, src.int(0, min(k - 1, 2)))
        if kind == "tconv":
            return self.conv(cur, 3, 1, src.int(1, 2), up=2, op="tconv")
        if kind == "pw":
            return self.conv(cur, 1, 1, 0, op="pw")
        if kind == "dw":
            k = src.pick([kk for kk in (1, 3) if kk <= self.kmax])
            s, pad = src.pick([1, 2]), src.int(0, k // 2)
            ho, wo = conv_out(h, k, s, pad), conv_out(w, k, s, pad)
            if min(ho, wo) < 1:
                return None
            wt, rms = self.weights((c, 1, k, k))
            return self.add_layer("dw", (c, ho, wo), [QConnection(cur, Kind.DW, k=k, stride=s, pad=pad)], wt,
                                  k * k, rms, self.mag[cur])
        if kind in ("sumpool", "avgpool"):
            k = src.pick([kk for kk in (2, 4) if kk <= min(h, w, self.kmax)] or [1])
            if k == 1:
                return None
            conn = QConnection(cur, Kind.DW, k=k, stride=k, pad=0, wconst=1)
            shape = (c, (h - k) // k + 1, (w - k) // k + 1)
            if kind == "avgpool":   # 1/k^2 as a shift: the requantization of an average pool
                return self.add_layer("avgpool", shape, [conn], None, 1, 1, self.mag[cur] * k,
                                      relu=True, requant=(1, 2 * int(math.log2(k))))
            return self.add_layer("sumpool", shape, [conn], None, k * k, 1, self.mag[cur])
        if kind == "upsample":
            u = 2
            if max(h, w) * u > self.max_hw:
                return None
            conn = QConnection(cur, Kind.DW, k=u, stride=1, pad=u - 1, up=u, wconst=1)
            return self.add_layer("up", (c, h * u, w * u), [conn], None, 1, 1, self.mag[cur],
                                  relu=src.flag(), requant=(1, 0))
        if kind == "add":
            branch = self.conv(cur, 3 if self.kmax >= 3 else 1, 1, 1 if self.kmax >= 3 else 0, co=c, op="res")
            if branch is None:
                return None
            scales = [src.pick([1, 1, 2, 3, -1]) for _ in range(2)]
            conns = [QConnection(cur, Kind.DW, k=1, wconst=scales[0]), QConnection(branch, Kind.DW, k=1,
                                                                                    wconst=scales[1])]
            return self.add_layer("add", (c, h, w), conns, None, 2, 2, max(self.mag[cur], self.mag[branch]))
        if kind in ("concat", "dense_concat"):
            branch = self.conv(cur, 1, 1, 0, op="br")
            if branch is None:
                return None
            cb = self.shapes[branch][0]
            ct = c + cb
            if ct > self.max_c * 2:
                return None
            mag = max(self.mag[cur], self.mag[branch])
            if kind == "dense_concat":
                co = self.src.int(1, self.max_c)
                wt, rms = self.weights((co, ct * h * w))
                conns = [QConnection(cur, Kind.DENSE), QConnection(branch, Kind.DENSE, chan_off=c)]
                return self.add_layer("fc", (co, 1, 1), conns, wt, ct * h * w, rms, mag)
            if src.flag(0.3):   # a sum pool over the concatenation (per-channel connections)
                conns = [QConnection(cur, Kind.DW, k=1, wconst=1), QConnection(branch, Kind.DW, k=1, chan_off=c,
                                                                               wconst=1)]
                return self.add_layer("cat", (ct, h, w), conns, None, 1, 1, mag)
            k = 3 if self.kmax >= 3 else 1
            co = self.src.int(1, self.max_c)
            wt, rms = self.weights((co, ct, k, k))
            conns = [QConnection(cur, Kind.CONV, k=k, pad=k // 2), QConnection(branch, Kind.CONV, k=k,
                                                                                pad=k // 2, chan_off=c)]
            return self.add_layer("catconv", (co, h, w), conns, wt, ct * k * k, rms, mag)
        if kind == "dense":
            co = self.src.int(1, self.max_c * 2)
            wt, rms = self.weights((co, c * h * w))
            return self.add_layer("fc", (co, 1, 1), [QConnection(cur, Kind.DENSE)], wt, c * h * w, rms,
                                  self.mag[cur])
        raise ValueError(kind)


def _build(src: _Source, cfg: FabricConfig, size: int, kinds, blocks: tuple[int, int] | None = None) -> QNetwork:
    b = _Builder(src, cfg, size)
    # Lower bounds well above the minimum: hypothesis draws favour the low end of every range.
    c = src.int(1, min(3, b.max_c))
    hw_max = min(b.max_hw, 4 + 2 * size)
    h, w = src.int(min(hw_max, 2 + size), hw_max), src.int(min(hw_max, 2 + size), hw_max)
    input_hi = src.pick([255, 255, 15, 1])
    b.shapes["in"] = (c, h, w)
    b.mag["in"] = input_hi / 2
    budget = max(1, min(8, cfg.n_cores * cfg.populations_per_core - 1, (1 << cfg.esu_addr_bits) - 1))
    fewest, most = blocks or (1 + size, 2 + size)
    most = max(1, min(budget, most))
    n_blocks = src.int(min(most, fewest), most)
    cur = "in"
    for _ in range(n_blocks):
        kind = src.pick(list(kinds))
        if b.shapes[cur][1:] == (1, 1) and kind not in ("dense", "pw", "add"):
            if blocks:      # a chosen depth: end at a classifier rather than stack dense layers
                break
            kind = "dense"
        new = b.block(kind, cur)
        if new is not None:
            cur = new
        if len(b.layers) >= budget:
            break
    if not b.layers:
        cur = b.block("pw", cur)
    return QNetwork("random", "in", (c, h, w), b.layers, cur, input_scale=1.0 / max(1, input_hi),
                    output_scale=1.0, input_hi=input_hi)


def random_qnetwork(source, cfg: FabricConfig, kinds=BLOCKS, tries: int = 30, size: int = 3,
                   blocks: tuple[int, int] | None = None) -> QNetwork:
    """A random quantized network that maps onto `cfg` (source: Generator, seed or hypothesis draw).
    `size` scales the input, the widths and (unless `blocks` bounds the number of blocks) the
    depth; it shrinks when a network does not map.  A kind listed twice in `kinds` is drawn twice
    as often."""
    src = _Source(source)
    known = BLOCKS + EXTRA_BLOCKS + GEOMETRY_BLOCKS
    unknown = set(kinds) - set(known)
    if unknown:
        raise SynfabError(f"unknown block kinds {sorted(unknown)}; known: {', '.join(known)}")
    for attempt in range(tries):
        # The last tries build a single pointwise conv on a tiny input: it fits any fabric.
        last = attempt >= tries - 2
        qnet = _build(src, cfg, 0 if last else size, ("pw",) if last else kinds, None if last else blocks)
        try:
            map_network(qnet, cfg)
            return qnet
        except MappingError:
            size = max(0, size - 1) if attempt % 2 else size
    raise SynfabError(f"no random network fitting fabric {cfg.name!r} in {tries} tries; the fabric is too small")


def with_weight_shifts(source, qnet: QNetwork, cfg: FabricConfig, shifts=(0, 1, 2, 3, 15)) -> QNetwork:
    """qnet with a random weight shift per connection (weights times 2**wshift, every layer's
    drawn from `shifts`, a connection's that or one less), requantization and bias scaled along
    where the layer's shift field allows, so activations keep their size."""
    src = _Source(source)
    top = (1 << cfg.shift_bits) - 1
    layers = []
    for layer in qnet.layers:
        ws = src.pick(list(shifts))
        conns = [replace(c, wshift=max(0, ws - src.int(0, 1))) for c in layer.inputs]
        most = max(c.wshift for c in conns)
        if layer.shift + most <= top:
            bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.int64) << most
            layer = replace(layer, shift=layer.shift + most, bias=bias)
        layers.append(replace(layer, inputs=conns))
    return replace(qnet, layers=layers)


# -- neuron models and time -----------------------------------------------------------------------
def _typical_acc(layer: QLayer) -> float:
    """The accumulator magnitude the builder sized the layer's requantization for (a third of hi)."""
    hi = layer.hi if layer.hi is not None else 255
    return max(1.0, (hi / 3.0) * (1 << layer.shift) / max(1, layer.mult))


def _random_sigma_delta(src: _Source, layer: QLayer, cfg: FabricConfig) -> QLayer:
    neuron = arith.Neuron("sigma_delta", theta=src.pick([0, 0, 1, 2, 5]), msg_shift=src.pick([0, 0, 1, 2]))
    out = replace(layer, neuron=neuron)
    if src.flag(0.3):       # Lava's bounds: ReLU without an upper clamp, or no clamp at all
        mult = min(layer.mult, 1 << layer.shift)
        opened = replace(out, mult=mult, lo=0 if layer.lo == 0 else None, hi=None)
        act = arith.Activation(opened.mult, opened.shift, opened.lo, opened.hi)
        if arith.event_bound(neuron, act, cfg.acc_bits) < 1 << (cfg.event_bits - 1):
            out = opened
    return out


def _random_if(src: _Source, layer: QLayer, cfg: FabricConfig) -> QLayer:
    theta = max(1, int(_typical_acc(layer) * src.pick([0.3, 1.0, 3.0])))
    low = -(1 << (cfg.acc_bits - 1))       # v_reset and v_min are acc_bits-wide table fields
    neuron = arith.Neuron("if", theta=theta, fire_gt=src.flag(),
                          reset_to=src.pick([None, None, 0, max(low, -theta // 2)]),
                          v_min=src.pick([None, None, max(low, -2 * theta), 0]))
    multi = neuron.with_(multi_spike=True)
    if src.flag() and arith.event_bound(multi, arith.Activation(), cfg.acc_bits) < 1 << (cfg.event_bits - 1):
        neuron = multi
    return replace(layer, neuron=neuron)


def _random_lif(src: _Source, layer: QLayer, model: str) -> QLayer:
    # Inputs may be spikes (1) rather than sigma-delta changes: thresholds from a fraction of the
    # typical accumulator up, and a bias on the voltage's scale (<< 6) so that layers fire.
    theta = int(min(arith.LOIHI_VTH_MAX, max(1, _typical_acc(layer) * src.pick([0.02, 0.2, 1.0]))))
    decays = [0, 1, 410, 1024, 4095, 4096]
    kw = dict(theta=theta, dv=src.pick(decays), refractory=src.pick([0, 0, 1, 3]))
    if model == "cuba_lif":
        kw["du"] = src.pick(decays)
    bias = np.asarray(layer.bias, dtype=np.int64) << src.pick([0, 6])
    return replace(layer, neuron=arith.Neuron(model, **kw), bias=bias)


def with_random_neurons(source, qnet: QNetwork, cfg: FabricConfig, models=arith.MODELS) -> QNetwork:
    """qnet with a random neuron model (and random parameters) per layer, random timing (pipelined or
    not, a reset interval) and input mode (levels or events)."""
    src = _Source(source)
    layers = []
    for layer in qnet.layers:
        model = src.pick(list(models))
        if model == "sigma_delta":
            layers.append(_random_sigma_delta(src, layer, cfg))
        elif model == "if":
            layers.append(_random_if(src, layer, cfg))
        else:
            layers.append(_random_lif(src, layer, model))
    for layer in layers:        # weights beyond int8: multiples of 2**wshift
        layer.inputs = [replace(c, wshift=src.pick([0, 0, 0, 1, 3])) for c in layer.inputs]
    return replace(qnet, layers=layers, pipelined=src.flag(), reset_interval=src.pick([0, 0, 2, 3, 5]),
                   input_mode=src.pick(["levels", "levels", "events", "spikes"]))


NEURON_KINDS = BLOCKS + EXTRA_BLOCKS + ("rect",)


def random_neuron_qnetwork(source, cfg: FabricConfig, models=arith.MODELS, size: int = 2,
                           kinds=NEURON_KINDS) -> QNetwork:
    """A random network (rectangular layers included) of random neuron models that maps onto cfg
    (see with_random_neurons)."""
    src = _Source(source)
    for _ in range(10):
        qnet = with_random_neurons(src, random_qnetwork(src, cfg, kinds, size=size), cfg, models)
        try:
            map_network(qnet, cfg)
            return qnet
        except MappingError:
            continue
    raise SynfabError(f"no random neuron network fitting fabric {cfg.name!r}; the fabric's events are too narrow")


def random_frames(qnet: QNetwork, rng: np.random.Generator, steps: int, change: float = 0.3) -> np.ndarray:
    """(steps, C, H, W) input frames: levels that change in a fraction of places, or sparse events."""
    if qnet.input_mode in ("events", "spikes"):
        x = rng.integers(qnet.input_lo, qnet.input_hi + 1, size=(steps, *qnet.input_shape))
        return np.where(rng.random(x.shape) < change, x, 0).astype(np.int64)
    frames, prev = [], None
    for _ in range(steps):
        prev = random_input(qnet, rng, prev, change)
        frames.append(prev)
    return np.stack(frames)


def random_input(qnet: QNetwork, rng: np.random.Generator, prev: np.ndarray | None = None,
                 change: float = 1.0) -> np.ndarray:
    """A random input activation; with prev, only a fraction `change` of the values differ from it."""
    x = rng.integers(qnet.input_lo, qnet.input_hi + 1, size=qnet.input_shape).astype(np.int64)
    if prev is None or change >= 1.0:
        return x
    keep = rng.random(qnet.input_shape) >= change
    return np.where(keep, prev, x)


# -- random fabrics and co-simulation cases ---------------------------------------------------------
# The values drawn for every FabricConfig field: each legal range from its narrowest to its widest
# end, powers of two and not, the simplest value first (hypothesis shrinks towards it).  Memories
# stay small enough that one Verilator build of a fabric takes well under a minute.
FABRIC_CHOICES = {
    "mesh_x": (1, 2, 3, 4),
    "mesh_y": (1, 2),
    "neurons_per_core": (256, 32, 64, 96, 128, 200, 512, 1024, 2048),
    "weight_words_per_core": (1024, 256, 512, 768, 2048, 4096, 8192),
    "peg_entries_per_core": (32, 16, 24, 64),
    "esu_descriptors_per_core": (32, 8, 16, 64),
    "populations_per_core": (8, 4, 16),
    "input_peg_entries": (32, 16, 64),
    "event_bits": (16, 9, 12, 24),
    "acc_bits": (24, 16, 20, 32),
    "coord_bits": (8, 4, 5, 6, 12),
    "chan_bits": (8, 4, 5, 12, 16),
    "kernel_bits": (4, 3),
    "mult_bits": (16, 8, 12),
    "shift_bits": (5, 4),
    "event_fifo_depth": (16, 2, 4),
}
# Co-simulation networks: every block kind, the convolutional ones twice as likely, so layers are
# big and split into spatial tiles and channel groups over several cores (not mostly dense layers).
COSIM_KINDS = BLOCKS + ("conv", "conv_s2", "tconv", "dw", "pw", "add", "concat")
COSIM_SIZE = 5
COSIM_BLOCKS = (3, 5)           # few wide layers rather than many narrow ones: layers outgrow a core
COSIM_NETWORK_TRIES = 8
THRESHOLDS = (1, 0, 2, 3, 5, 8, 20)        # mostly above 0 (hypothesis favours the first)
GAP_PROBABILITIES = (0.0, 0.2, 0.5, 0.8)
INPUT_CHANGES = (0.1, 0.4, 1.0)


def random_fabric_config(source, name: str = "random") -> FabricConfig:
    """A legal FabricConfig with every field drawn from FABRIC_CHOICES (source: Generator, seed or draw)."""
    src = _Source(source)
    return FabricConfig(name=name, **{f: src.pick(options) for f, options in FABRIC_CHOICES.items()})


@dataclass(frozen=True, repr=False)
class CosimCase:
    """One co-simulation example on a fabric: the network, how it is mapped and run, and the seeds
    of its input frames and of the stalls on both streams (independent of the network)."""
    qnet: QNetwork
    strategy: str
    threshold: int
    p_in: float                 # probability that the input stream holds back a beat in a cycle
    p_out: float                # probability that the output stream is not ready in a cycle
    gap_seed: int
    input_seed: int
    frames: int
    change: float               # fraction of input values that change from one frame to the next

    def __repr__(self) -> str:          # what hypothesis prints for a falsifying example
        return f"CosimCase({self.describe()})"

    def describe(self) -> dict:
        return {"network_layers": [l.name for l in self.qnet.layers], "input_shape": list(self.qnet.input_shape),
                "strategy": self.strategy, "threshold": self.threshold, "p_in": self.p_in, "p_out": self.p_out,
                "gap_seed": self.gap_seed, "input_seed": self.input_seed, "frames": self.frames,
                "change": self.change}


def spans_cores_and_tiles(qnet: QNetwork, cfg: FabricConfig, strategy: str) -> bool:
    """Whether qnet, mapped with `strategy`, splits a layer into several parts and (on a fabric of
    several cores) uses more than one core."""
    try:
        placement = map_network(qnet, cfg, strategy)
    except MappingError:
        return False
    parts_per_layer = Counter(p.layer for p in placement.parts)
    cores = {p.core for p in placement.parts}
    return max(parts_per_layer.values()) > 1 and len(cores) >= min(2, cfg.n_cores)


def random_cosim_case(source, cfg: FabricConfig, size: int = COSIM_SIZE, geometry: bool = False,
                      kinds: tuple | None = None) -> CosimCase:
    """A CosimCase on cfg; of up to COSIM_NETWORK_TRIES random networks, the first that spans
    several cores and tiles (else the last: a fabric may be too small for any to).  geometry:
    rectangular blocks (GEOMETRY_KINDS) besides the others, and mostly weight shifts (version-2
    tables the gateware runs); kinds: the blocks to draw from instead."""
    src = _Source(source)
    strategy = src.pick(STRATEGIES)
    # Geometry blocks first: hypothesis draws favour the low end of a range.
    if kinds is None:
        kinds = 2 * GEOMETRY_KINDS + COSIM_KINDS if geometry else COSIM_KINDS
    for _ in range(COSIM_NETWORK_TRIES):
        qnet = random_qnetwork(src, cfg, kinds, size=size, blocks=COSIM_BLOCKS)
        if geometry and src.flag(0.7):
            shifted = with_weight_shifts(src, qnet, cfg)
            try:
                map_network(shifted, cfg, strategy)
                qnet = shifted
            except MappingError:
                pass
        if spans_cores_and_tiles(qnet, cfg, strategy):
            break
    top = (1 << (cfg.event_bits - 1)) - 1
    return CosimCase(qnet, strategy, min(src.pick(THRESHOLDS), top),
                     src.pick(GAP_PROBABILITIES), src.pick(GAP_PROBABILITIES), src.int(0, 2 ** 32 - 1),
                     src.int(0, 2 ** 32 - 1), src.int(2, 4), src.pick(INPUT_CHANGES))


# -- hypothesis strategies (hypothesis is a test dependency: imported lazily) -------------------
def fabric_configs():
    """Strategy of legal FabricConfigs (1..8 cores, 32..2048 neurons: small cores force split layers)."""
    from hypothesis import strategies as st
    return st.composite(lambda draw: random_fabric_config(draw))()


def cosim_cases(cfg: FabricConfig, geometry: bool = False, kinds: tuple | None = None):
    """Strategy of CosimCases on cfg (geometry: with rectangular blocks and weight shifts; kinds:
    only these blocks)."""
    from hypothesis import strategies as st
    return st.composite(lambda draw: random_cosim_case(draw, cfg, geometry=geometry, kinds=kinds))()


def qnetworks(cfg: FabricConfig | None = None, kinds=BLOCKS, weight_shifts: bool = False):
    """Strategy of random QNetworks that map onto cfg (default: the 'small' preset); with
    weight_shifts, a random weight shift on every connection (with_weight_shifts)."""
    from hypothesis import strategies as st
    from .config import PRESETS
    cfg = cfg or PRESETS["small"]

    def draw_network(draw):
        qnet = random_qnetwork(draw, cfg, kinds)
        if weight_shifts:
            shifted = with_weight_shifts(draw, qnet, cfg)
            try:
                map_network(shifted, cfg)
                return shifted
            except MappingError:
                pass
        return qnet
    return st.composite(draw_network)()


def configs_and_qnetworks(kinds=BLOCKS):
    """Strategy of (FabricConfig, QNetwork mapping onto it)."""
    from hypothesis import strategies as st

    @st.composite
    def both(draw):
        cfg = draw(fabric_configs())
        return cfg, random_qnetwork(draw, cfg, kinds)
    return both()
