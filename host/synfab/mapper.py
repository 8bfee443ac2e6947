"""Placement: split every layer into parts (spatial tile x channel group) and put them on cores.

Only shapes, connection kinds and geometry are used (weights may be None), and the work is
O(parts + tiles per axis^2) per layer, never per neuron: the memory analysis maps shape-only
ResNet50 onto thousands of cores with it.

A layer's parts form a grid: x tiles x y tiles x channel groups (DESIGN.md "Placement").  Which
destination parts a source part must reach is separable per axis (x, y, channel), so PEG entry
counts, ESU descriptors and fan-out are computed per axis and multiplied.

Layers are chosen in reverse evaluation order: when a layer is split, the parts of all its
consumers are already known, so its own PEG entries per part are exact.  The split minimises a
cost in "core equivalents" (every resource used divided by its per-core capacity, plus the PEG
entries its sources will need to reach it), so replicated kernels (many spatial tiles) are
weighed against fan-out (many channel groups).  Parts are then put on cores: on small meshes
spread over the least loaded cores (parallelism), else packed densely (first fit in evaluation
order for locality; first fit decreasing as a fallback), with finer splits tried when the parts
do not fit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import FabricConfig
from .errors import SynfabError
from .ir import QConnection, QLayer, QNetwork
from . import arith
from .layouts import (EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, STREAM_EVENT, WSHIFT_BITS, Kind, RegisterMap, feature_name,
                      state_word_bits)

STRATEGIES = ("auto", "channel", "spatial")
RESOURCES = ("neurons", "weight_words", "peg_entries", "esu_descs", "pops")
# Finer splits tried (max neurons / weight words per part = capacity // g) when parts do not pack.
_GRANULARITIES = (1, 2, 4, 8, 16)
# Meshes larger than this are packed with a sliding window of open cores (O(parts)), not full first fit.
_FULL_FIRST_FIT_CORES = 256
_WINDOW = 32


class MappingError(SynfabError):
    """The network does not fit the fabric; the message names the resource, the need and the capacity."""


@dataclass
class Part:
    """One population: layer tile x0..x1, y0..y1 (inclusive) x channels c0..c1 on one core.

    weight_words is what this part adds to its core's weight memory: 0 when it shares the kernel
    slice of another part of the same layer and channel group on that core (wbase is then shared).
    """
    layer: str
    core: int
    x0: int
    x1: int
    y0: int
    y1: int
    c0: int
    c1: int
    nbase: int
    neurons: int
    wbase: int
    weight_words: int


@dataclass
class Grid:
    """Split of one layer: per axis an (n, 2) int array of inclusive [first, last] intervals."""
    xs: np.ndarray
    ys: np.ndarray
    cs: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.ys), len(self.xs), len(self.cs)


@dataclass
class Placement:
    cfg: FabricConfig
    parts: list[Part]
    usage: list[dict]                      # per core: neurons, weight_words, peg_entries, esu_descs, pops
    input_peg_entries: int
    packets_per_spike: dict[str, float]    # per source (layer or input): mean packets one spike sends
    grids: dict[str, Grid] = field(default_factory=dict)
    # layer -> (ny, nx, ng) int array: index into parts of the part at (tile y, tile x, group)
    part_ids: dict[str, np.ndarray] = field(default_factory=dict)
    strategy: str = "auto"

    def layer_parts(self, name: str) -> list[Part]:
        return [self.parts[i] for i in self.part_ids[name].reshape(-1)]


# ---------------------------------------------------------------------------------------
# Per-axis geometry shared with the compiler
def split(n: int, k: int) -> np.ndarray:
    """n positions in k near-equal consecutive intervals: (k, 2) inclusive bounds."""
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    ends = np.cumsum(sizes) - 1
    return np.stack([ends - sizes + 1, ends], axis=1)


def axis_span(n_src: int, n_dst: int, k: int, stride: int, pad: int, up: int):
    """For every source position, the first and last destination position it reaches
    (DESIGN.md PEG: lo = ceil((x*up + pad - k + 1) / s), hi = floor((x*up + pad) / s)),
    clipped to the layer; lo > hi where it reaches nothing."""
    xu = np.arange(n_src, dtype=np.int64) * up + pad
    lo = np.maximum((xu - k + stride) // stride, 0)
    hi = np.minimum(xu // stride, n_dst - 1)
    return lo, hi


def _reach_matrix(conn: QConnection, axis: str, src_shape, dst_len: int, dst_tiles: np.ndarray) -> np.ndarray:
    """bool (destination tiles, source positions): does the source position reach the tile."""
    c_src, h, w = src_shape
    if axis == "c":
        pos = np.arange(c_src, dtype=np.int64)
        if conn.kind != Kind.DW:  # every source channel feeds every output channel
            return np.ones((len(dst_tiles), c_src), dtype=bool)
        c_in = pos + conn.chan_off
        return (dst_tiles[:, :1] <= c_in[None]) & (c_in[None] <= dst_tiles[:, 1:])
    n_src = w if axis == "x" else h
    if conn.kind == Kind.DENSE:
        return np.ones((len(dst_tiles), n_src), dtype=bool)
    k, stride, pad = conn.axis(axis)
    lo, hi = axis_span(n_src, dst_len, k, stride, pad, conn.up)
    return np.maximum(lo[None], dst_tiles[:, :1]) <= np.minimum(hi[None], dst_tiles[:, 1:])


def _tile_hits(reach: np.ndarray, src_tiles: np.ndarray) -> np.ndarray:
    """bool (source tiles, destination tiles): some position of the source tile reaches the tile."""
    cum = np.concatenate([np.zeros((reach.shape[0], 1), np.int64), np.cumsum(reach, axis=1)], axis=1)
    return (cum[:, src_tiles[:, 1] + 1] - cum[:, src_tiles[:, 0]] > 0).T


def connection_hits(qnet: QNetwork, dst: QLayer, conn: QConnection, src_grid: Grid | None,
                    dst_grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per axis (x, y, channel) bool matrices (source tiles, destination tiles) of which source
    part reaches which destination part through `conn`; the source is one tile if src_grid is None
    (the input port).  A source part needs one PEG entry per reached destination part."""
    src_shape = qnet.shape_of(conn.src)
    c, h, w = src_shape
    whole = Grid(np.array([[0, w - 1]]), np.array([[0, h - 1]]), np.array([[0, c - 1]]))
    sg = src_grid or whole
    out = []
    for axis, s_t, d_t, dlen in (("x", sg.xs, dst_grid.xs, dst.shape[2]), ("y", sg.ys, dst_grid.ys, dst.shape[1]),
                                 ("c", sg.cs, dst_grid.cs, dst.shape[0])):
        out.append(_tile_hits(_reach_matrix(conn, axis, src_shape, dlen, d_t), s_t))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Network checks (shapes, kinds, geometry: what the table fields can hold)
def _pow2_log(v: int) -> int | None:
    return {1: 0, 2: 1, 4: 2, 8: 3}.get(int(v))


@dataclass(frozen=True)
class WeightShape:
    """A layer's stored weight tensor: kind, kernel kh x kw, ci_total input channels, and the
    source's h, w (DENSE).  Words per output channel: CONV ci*kh*kw, DW kh*kw, DENSE h*w*ci."""
    kind: Kind
    kh: int
    kw: int
    ci: int
    h: int
    w: int

    @property
    def words_per_channel(self) -> int:
        return {Kind.CONV: self.ci * self.kh * self.kw, Kind.DW: self.kh * self.kw,
                Kind.DENSE: self.h * self.w * self.ci}[self.kind]

    def tensor(self, co: int) -> tuple:
        """Shape of the layer's weight array (QLayer.weight) for co output channels."""
        return {Kind.CONV: (co, self.ci, self.kh, self.kw), Kind.DW: (co, 1, self.kh, self.kw),
                Kind.DENSE: (co, self.ci * self.h * self.w)}[self.kind]


def weight_shape(qnet: QNetwork, layer: QLayer) -> WeightShape | None:
    """The layer's stored weight tensor, or None if every connection has a constant weight."""
    wc = [c for c in layer.inputs if c.wconst is None]
    if not wc:
        return None
    kinds, ks = {c.kind for c in wc}, {(c.kh, c.kw) for c in wc}
    if len(kinds) > 1 or len(ks) > 1:
        raise MappingError(f"layer {layer.name}: its weighted connections mix kinds/kernels "
                           f"({sorted(k.name for k in kinds)}, kernels {sorted(ks)}); they share one weight "
                           f"tensor, so give them one kind and kernel (or constant weights)")
    kind, (kh, kw) = wc[0].kind, (wc[0].kh, wc[0].kw)
    shapes = [qnet.shape_of(c.src) for c in wc]
    h, w = shapes[0][1], shapes[0][2]
    ci = max(c.chan_off + s[0] for c, s in zip(wc, shapes))
    if layer.weight is not None:
        ws = tuple(np.shape(layer.weight))
        if kind == Kind.CONV and len(ws) == 4:
            ci = max(ci, ws[1])
        elif kind == Kind.DENSE and len(ws) == 2 and h * w:
            ci = max(ci, ws[1] // (h * w))
    return WeightShape(kind, kh, kw, ci, h, w)


def words_per_channel(qnet: QNetwork, layer: QLayer) -> int:
    ws = weight_shape(qnet, layer)
    return 0 if ws is None else ws.words_per_channel


# The version-2 features whose networks keep outputs within the stream word's d (see check_network).
STREAM_LIMITED_FEATURES = ("rectangular kernel, stride or padding", "weight shift")


def _check_input_range(qnet: QNetwork, dmax: int, lim: int, cfg: FabricConfig) -> None:
    """Input events (changes of levels, or the values themselves) must fit the event fields."""
    lo, hi = qnet.input_lo, qnet.input_hi
    if qnet.input_mode == "spikes":
        return                      # every input event is a 1
    if lo == 0 and qnet.input_mode == "levels":
        if not 0 <= hi <= lim:
            raise MappingError(f"input range 0..{hi} does not fit {lim.bit_length() + 1}-bit events; "
                               f"use input_hi <= {lim}")
        return
    # Levels send changes (lo - hi .. hi - lo); events send the values themselves.
    fits = hi - lo <= lim if qnet.input_mode == "levels" else (-lim - 1 <= lo and hi <= lim)
    if lo > hi or not fits:
        raise MappingError(f"input range {lo}..{hi} ({qnet.input_mode}) does not fit {lim.bit_length() + 1}-bit "
                           f"events (values up to +-{lim}); narrow the input range or use larger event_bits")


def _modular_relay(l: QLayer) -> bool:
    """A sigma-delta layer whose activation is its accumulator itself (no clamp, no scaling,
    no message shift)."""
    return (l.neuron.model == "sigma_delta" and l.neuron.msg_shift == 0 and l.lo is None and l.hi is None
            and l.mult == 1 and l.shift == 0)


def _check_events(l: QLayer, cfg: FabricConfig, lim: int, extended: bool) -> None:
    """The activation a layer keeps (sent) and the events it sends must fit their fields."""
    n = l.neuron
    act = arith.Activation(l.mult, l.shift, l.lo, l.hi)
    if n.model == "sigma_delta":
        if (l.lo is None or l.hi is None) and l.mult > 1 << l.shift:
            raise MappingError(f"layer {l.name}: an open activation bound needs mult <= 2**shift (got {l.mult}, "
                               f"shift {l.shift}) so that the activation stays within the accumulator range")
        sent_bits = state_word_bits(cfg, EXTENDED_LAYOUT_VERSION if extended else LAYOUT_VERSION)["sent"]
        top = (1 << (sent_bits - 1)) - 1
        lo, hi = (-top - 1 if l.lo is None else l.lo), (top if l.hi is None else l.hi)
        if not extended:
            # A change d = a - sent spans hi - lo; output events also travel in the stream's d field.
            if not (lo <= hi and lo >= -top - 1 and hi <= top and hi - lo <= lim):
                raise MappingError(f"layer {l.name}: activation range {l.lo}..{l.hi} does not fit events of "
                                   f"{lim.bit_length() + 1} bits (changes up to +-{lim}); narrow the range or use "
                                   f"larger event_bits")
            return
        if not (lo <= hi and lo >= -top - 1 and hi <= top):
            raise MappingError(f"layer {l.name}: activation range {l.lo}..{l.hi} does not fit the {sent_bits}-bit "
                               f"activation a neuron keeps; narrow the range")
    if _modular_relay(l) and cfg.event_bits >= cfg.acc_bits:
        # a = acc: a change is the difference of two wrapped accumulators; carried modulo
        # 2**event_bits it still adds up exactly in every receiver's accumulator (which wraps at
        # acc_bits <= event_bits), and at the host.  Lava's Sigma output is such a layer.
        return
    bound = arith.event_bound(n, act, cfg.acc_bits)
    if bound > lim:
        raise MappingError(f"layer {l.name}: {n.model} events reach +-{bound} but events hold +-{lim} "
                           f"({lim.bit_length() + 1} bits); use larger event_bits"
                           + (", a larger msg_shift or a narrower activation range" if n.model == "sigma_delta"
                              else ", or a larger theta" if n.multi_spike else ""))


def check_network(qnet: QNetwork, cfg: FabricConfig, for_analysis: bool = False) -> None:
    """Raise MappingError if a shape, kernel, stride, range or count cannot be expressed in the tables.
    for_analysis skips the limits of loading a fabric that do not change sizes (layer count, output tag)."""
    if len(qnet.layers) > RegisterMap.MAX_LAYERS and not for_analysis:
        raise MappingError(f"network {qnet.name}: {len(qnet.layers)} layers but the fabric evaluates at most "
                           f"{RegisterMap.MAX_LAYERS}; merge or drop layers")
    if not qnet.layers:
        raise MappingError(f"network {qnet.name} has no layers")
    names = [qnet.input_name] + [l.name for l in qnet.layers]
    if len(set(names)) != len(names):
        raise MappingError(f"network {qnet.name}: layer names are not unique")
    if qnet.output not in names[1:]:
        raise MappingError(f"network {qnet.name}: output {qnet.output!r} is not a layer")
    cb, chb, kmax = cfg.coord_bits, cfg.chan_bits, (1 << cfg.kernel_bits) - 1
    dmax = (1 << (cfg.event_bits - 1)) - 1
    stream_dmax = (1 << (STREAM_EVENT.by_name["d"].width - 1)) - 1
    for name, (c, h, w) in [(qnet.input_name, qnet.input_shape)] + [(l.name, l.shape) for l in qnet.layers]:
        if min(c, h, w) < 1:
            raise MappingError(f"layer {name}: shape {(c, h, w)} is empty; every dimension must be >= 1")
        if max(h, w) > 1 << cb:
            raise MappingError(f"layer {name}: {w}x{h} pixels but coordinates have {cb} bits (at most {1 << cb}); "
                               f"use a fabric with coord_bits >= {max(h, w).bit_length()} or a smaller input")
        if c > 1 << chb:
            raise MappingError(f"layer {name}: {c} channels but channels have {chb} bits (at most {1 << chb}); "
                               f"use a fabric with chan_bits >= {(c - 1).bit_length()}")
    # Outputs of version-1 networks and of version 2's geometry alone travel in the stream word's
    # 16-bit d (as they always did); networks with the other extended features (neuron models,
    # time steps: netx networks) keep event_bits-wide outputs, and a hardware backend refuses at
    # load those whose outputs may not fit the stream (runtime.device.check_fabric_runs).
    extended = any(feature_name(e) not in STREAM_LIMITED_FEATURES for e in qnet.extended_features())
    out_lim = dmax if extended else min(dmax, stream_dmax)
    if not for_analysis:        # value ranges do not change sizes: the memory analysis skips them
        _check_input_range(qnet, dmax, out_lim, cfg)
    seen = {qnet.input_name}
    for idx, l in enumerate(qnet.layers):
        if not l.inputs:
            raise MappingError(f"layer {l.name} has no inputs; every population needs a connection")
        for conn in l.inputs:
            if conn.src not in seen:
                raise MappingError(f"layer {l.name}: input {conn.src!r} is not the input or an earlier layer")
            if conn.kind not in (Kind.CONV, Kind.DW, Kind.DENSE):
                raise MappingError(f"layer {l.name}: connection from {conn.src} has kind {Kind(conn.kind).name}; "
                                   f"use CONV, DW or DENSE")
            src_c = qnet.shape_of(conn.src)[0]
            where = f"layer {l.name} (from {conn.src})"
            for axis in ("x", "y"):
                k, stride, pad = conn.axis(axis)
                if _pow2_log(stride) is None or _pow2_log(conn.up) is None:
                    raise MappingError(f"{where}: {axis} stride {stride} / upsampling {conn.up} must be 1, 2, 4 or 8")
                if not 1 <= k <= kmax or not 0 <= pad <= kmax:
                    raise MappingError(f"{where}: {axis} kernel {k} / padding {pad} do not fit {cfg.kernel_bits}-bit "
                                       f"fields (kernel 1..{kmax}, padding 0..{kmax}); use a fabric with larger "
                                       f"kernel_bits")
            if not 0 <= conn.wshift < 1 << WSHIFT_BITS:
                raise MappingError(f"{where}: weight shift {conn.wshift} does not fit {WSHIFT_BITS} bits "
                                   f"(0..{(1 << WSHIFT_BITS) - 1})")
            if conn.chan_off < 0 or conn.chan_off + src_c > 1 << chb:
                raise MappingError(f"{where}: channel offset {conn.chan_off} + {src_c} channels exceeds "
                                   f"{1 << chb} ({chb} channel bits); use a fabric with larger chan_bits")
            if conn.kind == Kind.DW and conn.chan_off + src_c > l.shape[0]:
                raise MappingError(f"{where}: per-channel connection reaches channel {conn.chan_off + src_c - 1} "
                                   f"of a {l.shape[0]}-channel layer")
            if conn.kind == Kind.DENSE and l.shape[1:] != (1, 1):
                raise MappingError(f"{where}: a dense layer must have shape (C, 1, 1), got {l.shape}")
            if conn.wconst is not None and not -128 <= conn.wconst <= 127:
                raise MappingError(f"{where}: constant weight {conn.wconst} is not an int8")
        if not (0 <= l.mult < 1 << cfg.mult_bits and 0 <= l.shift < 1 << cfg.shift_bits):
            raise MappingError(f"layer {l.name}: mult {l.mult} / shift {l.shift} do not fit {cfg.mult_bits}/"
                               f"{cfg.shift_bits} bits; requantize with a smaller multiplier")
        if not for_analysis:
            # Version-2 tables (any extended feature) keep the wider sent and check the event bound.
            _check_events(l, cfg, out_lim if l.name == qnet.output else dmax, bool(qnet.extended_features()))
        seen.add(l.name)
    out_idx = names.index(qnet.output) - 1
    tag_max = min((1 << cfg.esu_addr_bits) - 1, (1 << STREAM_EVENT.by_name["tag"].width) - 1)
    if out_idx > tag_max and not for_analysis:
        raise MappingError(f"output layer {qnet.output} is evaluation step {out_idx} but output tags hold at "
                           f"most {tag_max} (esu_descriptors_per_core={cfg.esu_descriptors_per_core}); use "
                           f"esu_descriptors_per_core >= {out_idx + 1}")
    for l in qnet.layers:
        wpc = words_per_channel(qnet, l)
        if wpc > cfg.weight_words_per_core:
            raise MappingError(f"layer {l.name}: a part needs {wpc} weight words (one output channel) but a "
                               f"core has {cfg.weight_words_per_core}; use a fabric with weight_words_per_core "
                               f">= {wpc} or fewer input channels / a smaller kernel")
        if len(l.inputs) > cfg.esu_descriptors_per_core:
            raise MappingError(f"layer {l.name}: a part needs {len(l.inputs)} ESU descriptors (one per input) but a "
                               f"core has {cfg.esu_descriptors_per_core}; use esu_descriptors_per_core >= "
                               f"{len(l.inputs)}")


# ---------------------------------------------------------------------------------------
# Choosing each layer's split
@dataclass
class _Consumer:
    layer: QLayer
    conn: QConnection


def _axis_counts(n: int) -> list[int]:
    """Distinct numbers of near-equal tiles of n positions (one per distinct max tile size)."""
    out, seen = [], set()
    for k in range(1, n + 1):
        t = -(-n // k)
        if t not in seen:
            seen.add(t)
            out.append(-(-n // t))
    return out


class _Chooser:
    """Chooses every layer's grid, last layer first (so each layer's consumers are known)."""

    def __init__(self, qnet: QNetwork, cfg: FabricConfig, strategy: str, gran: int):
        self.qnet, self.cfg, self.strategy = qnet, cfg, strategy
        self.nc = max(1, cfg.neurons_per_core // gran)
        self.wc = max(1, cfg.weight_words_per_core // gran)
        self.grids: dict[str, Grid] = {}
        self.consumers: dict[str, list[_Consumer]] = {qnet.input_name: []}
        for l in qnet.layers:
            self.consumers[l.name] = []
        for l in qnet.layers:
            for c in l.inputs:
                self.consumers[c.src].append(_Consumer(l, c))
        # PEG entries one neuron of a source already needs for the consumers chosen so far.
        self.fan_known = {name: 0 for name in self.consumers}
        self.fan_known[qnet.output] = 1  # the HOST entry
        self.unchosen = {name: len(cs) for name, cs in self.consumers.items()}

    def peg_cap(self, src: str) -> int:
        return self.cfg.input_peg_entries if src == self.qnet.input_name else self.cfg.peg_entries_per_core

    def choose_all(self) -> dict[str, Grid]:
        for layer in reversed(self.qnet.layers):
            self.grids[layer.name] = self.choose(layer)
        return self.grids

    def choose(self, layer: QLayer) -> Grid:
        cfg, qnet = self.cfg, self.qnet
        C, H, W = layer.shape
        wpc = words_per_channel(qnet, layer)
        n_conn = len(layer.inputs)
        host = 1 if layer.name == qnet.output else 0
        outs = self.consumers[layer.name]
        out_reach = [{ax: _reach_matrix(o.conn, ax, layer.shape, dl, t)
                      for ax, dl, t in (("x", o.layer.shape[2], self.grids[o.layer.name].xs),
                                        ("y", o.layer.shape[1], self.grids[o.layer.name].ys),
                                        ("c", o.layer.shape[0], self.grids[o.layer.name].cs))} for o in outs]
        in_shapes = [qnet.shape_of(c.src) for c in layer.inputs]
        src_parts_est = [1 if c.src == qnet.input_name else -(-int(np.prod(s)) // cfg.neurons_per_core)
                         for c, s in zip(layer.inputs, in_shapes)]
        axis_cache: dict = {}

        def axis(ax: str, n: int):
            """Per axis and tile count: tiles, own-PEG hit counts per tile for every consumer,
            and for every input connection (max, mean, whole-source) tiles reached."""
            key = (ax, n)
            if key in axis_cache:
                return axis_cache[key]
            length = {"x": W, "y": H, "c": C}[ax]
            tiles = split(length, n)
            own = [_tile_hits(r[ax], tiles).sum(axis=1) for r in out_reach]
            inc = []
            for conn, s in zip(layer.inputs, in_shapes):
                reach = _reach_matrix(conn, ax, s, length, tiles)
                per_pos = reach.sum(axis=0)
                inc.append((int(per_pos.max()), float(per_pos.mean()), int(reach.any(axis=1).sum())))
            axis_cache[key] = (tiles, own, inc)
            return axis_cache[key]

        best, best_key, failure = None, None, None
        for nx in _axis_counts(W):
            tw = -(-W // nx)
            for ny in _axis_counts(H):
                th = -(-H // ny)
                if tw * th > self.nc:
                    continue
                cc_max = min(C, self.nc // (tw * th), max(1, self.wc // wpc) if wpc else C)
                ng = -(-C // cc_max)
                (xt, xo, xi), (yt, yo, yi), (ct, co, ci) = axis("x", nx), axis("y", ny), axis("c", ng)
                n_tiles, parts = nx * ny, nx * ny * ng
                # Own PEG entries: one per reached consumer part, plus the HOST entry.
                own_total = host * parts + sum(float(a.sum()) * b.sum() * g.sum() for a, b, g in zip(xo, yo, co))
                own_max = host + sum(int(a.max()) * int(b.max()) * int(g.max()) for a, b, g in zip(xo, yo, co))
                if own_max > cfg.peg_entries_per_core and len(outs) > 1:
                    own_max = host + int(sum(a[None, :, None] * b[:, None, None] * g[None, None, :]
                                             for a, b, g in zip(xo, yo, co)).max())
                if own_max > cfg.peg_entries_per_core:
                    failure = _worse(failure, ("own", own_max, cfg.peg_entries_per_core, None))
                    continue
                # What the sources need to reach these parts.
                in_cost, bad = 0.0, None
                fan_new: dict[str, int] = {}
                for j, conn in enumerate(layer.inputs):
                    if conn.src == qnet.input_name:
                        fan = xi[j][2] * yi[j][2] * ci[j][2]
                    else:
                        fan = xi[j][0] * yi[j][0] * ci[j][0]
                    fan_new[conn.src] = fan_new.get(conn.src, 0) + fan
                    pps = xi[j][1] * yi[j][1] * ci[j][1]
                    in_cost += src_parts_est[j] * pps / self.peg_cap(conn.src)
                for src, fan in fan_new.items():
                    others = self.unchosen[src] - sum(1 for c in layer.inputs if c.src == src)
                    need = self.fan_known[src] + fan + others
                    if need > self.peg_cap(src):
                        bad = ("in", need, self.peg_cap(src), src)
                        break
                if bad:
                    failure = _worse(failure, bad)
                    continue
                cost = (n_tiles * wpc * C / cfg.weight_words_per_core + parts / cfg.populations_per_core
                        + parts * n_conn / cfg.esu_descriptors_per_core + own_total / cfg.peg_entries_per_core
                        + in_cost)
                key = {"auto": (cost, parts), "channel": (n_tiles, parts, cost),
                       "spatial": (ng, parts, cost)}[self.strategy]
                if best_key is None or key < best_key:
                    best_key, best = key, (Grid(xt, yt, ct), fan_new)
        if best is None:
            raise self._no_split_error(layer, failure)
        grid, fan_new = best
        for src, fan in fan_new.items():
            self.fan_known[src] += fan
            self.unchosen[src] -= sum(1 for c in layer.inputs if c.src == src)
        return grid

    def _no_split_error(self, layer: QLayer, failure) -> MappingError:
        # Single-pixel tiles always fit the neurons, so every rejected split recorded a PEG failure.
        what, need, cap, src = failure
        if what == "own":
            names = ", ".join(sorted({o.layer.name for o in self.consumers[layer.name]}))
            return MappingError(f"layer {layer.name}: a part needs {need} PEG entries to reach the parts of "
                                f"{names or 'the host'} but a core has {cap}; use peg_entries_per_core >= {need} "
                                f"or more neurons / weight words per core (fewer parts to reach)")
        if src == self.qnet.input_name:
            return MappingError(f"the input port needs {need} PEG entries to reach the parts of {layer.name} (and "
                                f"its other consumers) but input_peg_entries is {cap}; use input_peg_entries >= "
                                f"{need} or more neurons / weight words per core")
        return MappingError(f"layer {src}: one neuron needs {need} PEG entries to reach the parts of {layer.name} "
                            f"(and its other consumers) but a core has {cap}; use peg_entries_per_core >= {need} "
                            f"or more neurons / weight words per core (fewer parts to reach)")


def _worse(old, new):
    """Keep the failure closest to fitting (smallest need/capacity)."""
    if old is None or new[1] / new[2] < old[1] / old[2]:
        return new
    return old


# ---------------------------------------------------------------------------------------
# Parts, their resources, packing
@dataclass
class _PartNeed:
    layer: QLayer
    group: int
    x: tuple
    y: tuple
    c: tuple
    neurons: int
    words: int
    peg: int
    esu: int


def _part_needs(qnet: QNetwork, grids: dict[str, Grid]) -> tuple[list[_PartNeed], dict[str, np.ndarray], int, dict]:
    consumers: dict[str, list] = {qnet.input_name: []}
    for l in qnet.layers:
        consumers[l.name] = []
    for l in qnet.layers:
        for c in l.inputs:
            consumers[c.src].append((l, c))
    needs, part_ids = [], {}
    for l in qnet.layers:
        g = grids[l.name]
        ny, nx, ng = g.shape
        peg = np.zeros((ny, nx, ng), dtype=np.int64)
        if l.name == qnet.output:
            peg += 1
        for dl, conn in consumers[l.name]:
            hx, hy, hc = connection_hits(qnet, dl, conn, g, grids[dl.name])
            peg += (hy.sum(1)[:, None, None] * hx.sum(1)[None, :, None] * hc.sum(1)[None, None, :])
        esu = np.zeros((ny, nx, ng), dtype=np.int64)
        for conn in l.inputs:
            hx, hy, hc = connection_hits(qnet, l, conn, None, g)
            esu += hy[0][:, None, None] & hx[0][None, :, None] & hc[0][None, None, :]
        wpc = words_per_channel(qnet, l)
        ids = np.zeros((ny, nx, ng), dtype=np.int64)
        # Group-major order: spatial tiles of one channel group are neighbours (they can share weights).
        for k in range(ng):
            c0, c1 = (int(v) for v in g.cs[k])
            for j in range(ny):
                for i in range(nx):
                    x0, x1 = (int(v) for v in g.xs[i])
                    y0, y1 = (int(v) for v in g.ys[j])
                    ids[j, i, k] = len(needs)
                    needs.append(_PartNeed(l, k, (x0, x1), (y0, y1), (c0, c1),
                                           (x1 - x0 + 1) * (y1 - y0 + 1) * (c1 - c0 + 1), wpc * (c1 - c0 + 1),
                                           int(peg[j, i, k]), int(esu[j, i, k])))
        part_ids[l.name] = ids
    input_peg = 0
    for dl, conn in consumers[qnet.input_name]:
        hx, hy, hc = connection_hits(qnet, dl, conn, None, grids[dl.name])
        input_peg += int(hx.sum() * hy.sum() * hc.sum())
    # Mean packets per spike, averaged over the source's neurons (separable per axis).
    pps = {}
    for src, cons in consumers.items():
        shape = qnet.shape_of(src)
        total = 1.0 if src == qnet.output else 0.0
        for dl, conn in cons:
            g = grids[dl.name]
            f = 1.0
            for ax, t, dlen in (("x", g.xs, dl.shape[2]), ("y", g.ys, dl.shape[1]), ("c", g.cs, dl.shape[0])):
                f *= float(_reach_matrix(conn, ax, shape, dlen, t).sum(axis=0).mean())
            total += f
        pps[src] = total
    return needs, part_ids, input_peg, pps


def _caps(cfg: FabricConfig) -> np.ndarray:
    return np.array([cfg.neurons_per_core, cfg.weight_words_per_core, cfg.peg_entries_per_core,
                     cfg.esu_descriptors_per_core, cfg.populations_per_core], dtype=np.int64)


def _pack(needs: list[_PartNeed], cfg: FabricConfig, order: list[int], spread: bool = False):
    """Assign parts to cores; None if they do not fit.  Returns ((core, nbase, wbase, words) per
    part, used resources per core).  First fit, or with `spread` the least loaded core that fits
    (worst fit: parallel cores and NoC traffic instead of one crowded core)."""
    cn, cw, cp, ce, cq = (int(v) for v in _caps(cfg))
    n_cores = cfg.n_cores
    used = [[0, 0, 0, 0, 0] for _ in range(n_cores)]
    slices: list[dict] = [dict() for _ in range(n_cores)]   # (layer, group) -> wbase on that core
    result: list = [None] * len(needs)
    opened = 0
    full = n_cores <= _FULL_FIRST_FIT_CORES
    load = lambda u: max(u[0] / cn, u[1] / cw, u[2] / cp, u[3] / ce, u[4] / cq)  # noqa: E731
    for p in order:
        nd = needs[p]
        key = (nd.layer.name, nd.group)
        if spread:
            candidates = sorted(range(n_cores), key=lambda c: (load(used[c]), c))
        else:
            candidates = range(0 if full else max(0, opened - _WINDOW), min(opened + 1, n_cores))
        for core in candidates:
            u = used[core]
            shared = key in slices[core]
            words = 0 if shared else nd.words
            if (u[0] + nd.neurons <= cn and u[1] + words <= cw and u[2] + nd.peg <= cp
                    and u[3] + nd.esu <= ce and u[4] + 1 <= cq):
                wbase = slices[core][key] if shared else u[1]
                if words:
                    slices[core][key] = wbase
                result[p] = (core, u[0], wbase if nd.words else 0, words)
                u[0] += nd.neurons
                u[1] += words
                u[2] += nd.peg
                u[3] += nd.esu
                u[4] += 1
                opened = max(opened, core + 1)
                break
        else:
            return None
    return result, np.array(used, dtype=np.int64).reshape(n_cores, 5)


def _packing_error(needs: list[_PartNeed], cfg: FabricConfig) -> MappingError | None:
    """The error for parts that do not fit; None if the totals fit (packing may still succeed)."""
    caps = _caps(cfg)
    total = np.array([sum(n.neurons for n in needs), sum(n.words for n in needs), sum(n.peg for n in needs),
                      sum(n.esu for n in needs), len(needs)])
    fields = ["neurons_per_core", "weight_words_per_core", "peg_entries_per_core", "esu_descriptors_per_core",
              "populations_per_core"]
    what = ["neurons", "weight words", "PEG entries", "ESU descriptors", "populations"]
    for r in range(5):
        if total[r] > caps[r] * cfg.n_cores:
            cores = -(-int(total[r]) // int(caps[r]))
            per = -(-int(total[r]) // cfg.n_cores)
            return MappingError(f"the network needs {total[r]} {what[r]} in {len(needs)} parts but the fabric has "
                                f"{cfg.n_cores} core(s) x {caps[r]} {fields[r]}; use a mesh of >= {cores} cores "
                                f"or {fields[r]} >= {per}")
    return None


def _check_totals(qnet: QNetwork, cfg: FabricConfig) -> None:
    """Lower bounds on the whole network (every split needs at least this): fail early and plainly."""
    n = cfg.n_cores
    neurons = [int(np.prod(l.shape)) for l in qnet.layers]
    need = [("neurons", sum(neurons), cfg.neurons_per_core, "neurons_per_core"),
            ("weight words", sum(words_per_channel(qnet, l) * l.shape[0] for l in qnet.layers),
             cfg.weight_words_per_core, "weight_words_per_core"),
            ("populations", sum(-(-v // cfg.neurons_per_core) for v in neurons), cfg.populations_per_core,
             "populations_per_core")]
    for what, total, cap, name in need:
        if total > cap * n:
            raise MappingError(f"the network needs at least {total} {what} but the fabric has {n} core(s) x {cap} "
                               f"{name}; use a mesh of >= {-(-total // cap)} cores or {name} >= {-(-total // n)}")


def map_network(qnet: QNetwork, cfg: FabricConfig, strategy: str = "auto", for_analysis: bool = False) -> Placement:
    """Split every layer into parts within every per-core capacity and assign the parts to cores.

    strategy: "auto" (least cost in core equivalents, see module doc), "channel" (fewest spatial
    tiles: least kernel replication) or "spatial" (fewest channel groups: least fan-out).
    for_analysis: memory analysis only (e.g. ResNet50's 72 layers): the network need not be
    loadable, so the 64-layer limit and the output-tag width are not checked.
    """
    if strategy not in STRATEGIES:
        raise MappingError(f"unknown mapping strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    check_network(qnet, cfg, for_analysis)
    _check_totals(qnet, cfg)
    first_needs = None
    for gran in _GRANULARITIES:
        try:
            grids = _Chooser(qnet, cfg, strategy, gran).choose_all()
        except MappingError:
            if gran == 1:
                raise
            break
        needs, part_ids, input_peg, pps = _part_needs(qnet, grids)
        first_needs = first_needs or needs
        if input_peg > cfg.input_peg_entries:
            if gran == 1:
                raise MappingError(f"the input port needs {input_peg} PEG entries but input_peg_entries is "
                                   f"{cfg.input_peg_entries}; use input_peg_entries >= {input_peg}")
            break
        if gran == 1 and _packing_error(needs, cfg):
            raise _packing_error(needs, cfg)
        in_order = list(range(len(needs)))
        small = cfg.n_cores <= _FULL_FIRST_FIT_CORES
        # Small fabrics: spread the load if it fits; else pack densely (first fit, then decreasing).
        packed = (small and _pack(needs, cfg, in_order, spread=True)) or _pack(needs, cfg, in_order)
        if packed is None and small:
            caps = _caps(cfg)
            size = [max(n.neurons / caps[0], n.words / caps[1], n.peg / caps[2], n.esu / caps[3]) for n in needs]
            packed = _pack(needs, cfg, sorted(in_order, key=lambda i: -size[i]))
        if packed is None:
            continue
        assignment, used = packed
        parts = []
        for nd, (core, nbase, wbase, words) in zip(needs, assignment):
            parts.append(Part(nd.layer.name, core, nd.x[0], nd.x[1], nd.y[0], nd.y[1], nd.c[0], nd.c[1],
                              nbase, nd.neurons, wbase, words))
        usage = [dict(zip(RESOURCES, (int(v) for v in row))) for row in used]
        return Placement(cfg, parts, usage, input_peg, pps, grids, part_ids, strategy)
    total = [sum(getattr(n, f) for n in first_needs) for f in ("neurons", "words")]
    raise MappingError(f"the network's {len(first_needs)} parts ({total[0]} neurons, {total[1]} weight words) do "
                       f"not pack onto {cfg.n_cores} core(s) even split finer; use a larger mesh")
