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

from dataclasses import dataclass, field, replace

import numpy as np

from ..config import FabricConfig
from ..frontend.ir import QConnection, QLayer, QNetwork
from ..geometry import Tile, axis_span  # noqa: F401  (axis_span: part of this module's API before geometry.py)
from .checks import (RESOURCES, MappingError, Resources, WeightShape, check_network,  # noqa: F401  (re-exported)
                     check_totals, packing_error, weight_shape, words_per_channel)
from ..layouts import Kind
from .work import LayerWork, Work, column_lane_layer, estimate, part_lanes, predict

STRATEGIES = ("auto", "channel", "spatial")
OBJECTIVES = ("memory", "cost", "throughput", "balanced")
DEFAULT_OBJECTIVE = "balanced"
# "balanced" takes the work-balanced placement only when it predicts a frame at least this much
# shorter than the least-cost one, relatively and in clocks (below that, fewer parts and less
# replication are worth more, and the gain is within the per-phase latencies the prediction leaves out).
BALANCED_MIN_GAIN = 0.10
BALANCED_MIN_GAIN_CYCLES = 1024
# Work selection: splits whose predicted phases are within this of the layer's fastest count as
# equally fast, and the cheapest of them (core equivalents) is taken.
SPLIT_TIME_TOLERANCE = 0.05
# ... and so do splits within this share of the frame's lower bound (total ops / cores): a layer with
# little work is not split over more cores to save a few clocks.
SPLIT_TIME_SLACK = 0.01
# Finer splits tried (max neurons / weight words per part = capacity // g) when parts do not pack.
_GRANULARITIES = (1, 2, 4, 8, 16)
# Meshes larger than this are packed with a sliding window of open cores (O(parts)), not full first fit.
_FULL_FIRST_FIT_CORES = 256
_WINDOW = 32


@dataclass
class Part:
    """One population: a layer's tile (columns x0..x1, rows y0..y1, channels c0..c1) on one core.

    weight_words is what this part adds to its core's weight memory: 0 when it shares the kernel
    slice of another part of the same layer and channel group on that core (wbase is then shared).
    """
    layer: str
    core: int
    tile: Tile
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
    objective: str = DEFAULT_OBJECTIVE
    # compiler/work.predict of this placement, when its objective weighed synaptic work
    prediction: dict | None = None

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


def split_aligned(n: int, k: int, align: int, cap: int) -> np.ndarray:
    """Like `split`, but every interval except the last a multiple of `align` (a fabric's synaptic
    lanes: a channel group of a multiple of lanes keeps every lane busy), near-equal in units of
    align, when that leaves no interval empty or above `cap`; else `split(n, k)`."""
    if align > 1 and k > 1:
        units = -(-n // align)
        if units >= k:
            sizes = (split(units, k)[:, 1] - split(units, k)[:, 0] + 1) * align
            sizes[-1] -= units * align - n
            if sizes[-1] > 0 and sizes.max() <= cap:
                ends = np.cumsum(sizes) - 1
                return np.stack([ends - sizes + 1, ends], axis=1)
    return split(n, k)


def split_odd(n: int, k: int, cap: int) -> np.ndarray:
    """Like `split`, but with odd intervals wherever parity allows (all of them when n and k are
    both even or both odd; else all but one): a depthwise or pooling part of an odd channel count
    gets the ESU's column lanes (work.dw_lanes). Pairs of even intervals trade one position; when
    that leaves an interval above `cap`, `split(n, k)`."""
    bounds = split(n, k)
    sizes = bounds[:, 1] - bounds[:, 0] + 1
    evens = np.flatnonzero(sizes % 2 == 0)
    sizes[evens[0:len(evens) - 1:2]] += 1
    sizes[evens[1::2]] -= 1
    if sizes.min() < 1 or sizes.max() > cap:
        return bounds
    ends = np.cumsum(sizes) - 1
    return np.stack([ends - sizes + 1, ends], axis=1)


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
    """Chooses every layer's grid, last layer first (so each layer's consumers are known).

    selection: how a strategy-"auto" split is chosen among those that fit: "cost" (least core
    equivalents), "memory" (fewest stored weight words, then cost) or "work" (with `layer_work`:
    the shortest predicted phases, near-equal ones by cost; channel groups beyond the fewest that
    fit are tried too, up to one part per core)."""

    def __init__(self, qnet: QNetwork, cfg: FabricConfig, strategy: str, gran: int, selection: str = "cost",
                 layer_work: LayerWork | None = None, align: int = 1):
        self.qnet, self.cfg, self.strategy = qnet, cfg, strategy
        self.align = align      # channel groups in multiples of this where they fit (split_aligned)
        self.selection, self.layer_work = selection, layer_work
        self.nc = max(1, cfg.neurons_per_core // gran)
        self.wc = max(1, cfg.weight_words_per_core // gran)
        self.grids: dict[str, Grid] = {}
        self.channel_cap: dict[tuple[int, int], int] = {}     # per (nx, ny): the most channels of a part
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

        def axis(ax: str, n: int, cap: int = 0):
            """Per axis and tile count: tiles, own-PEG hit counts per tile for every consumer,
            and for every input connection (max, mean, whole-source) tiles reached. Channel groups
            (cap: the most channels a part may have) are multiples of `align` (the fabric's lanes,
            see _map_lanes) where that fits; a depthwise or pooling layer's are odd instead where
            that fits (its parts then get column lanes)."""
            key = (ax, n, cap)
            if key in axis_cache:
                return axis_cache[key]
            length = {"x": W, "y": H, "c": C}[ax]
            if ax != "c":
                tiles = split(length, n)
            elif self.align > 1 and column_lane_layer(layer, self.align):
                tiles = split_odd(length, n, cap)
            else:
                tiles = split_aligned(length, n, self.align, cap)
            own = [_tile_hits(r[ax], tiles).sum(axis=1) for r in out_reach]
            inc = []
            for conn, s in zip(layer.inputs, in_shapes):
                reach = _reach_matrix(conn, ax, s, length, tiles)
                per_pos = reach.sum(axis=0)
                inc.append((int(per_pos.max()), float(per_pos.mean()), int(reach.any(axis=1).sum())))
            axis_cache[key] = (tiles, own, inc)
            return axis_cache[key]

        fits, failure = [], None
        for nx, ny, ng in self._splits(C, H, W, wpc):
            (xt, xo, xi), (yt, yo, yi) = axis("x", nx), axis("y", ny)
            ct, co, ci = axis("c", ng, self.channel_cap[nx, ny])
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
            fits.append(_Split(Grid(xt, yt, ct), fan_new, cost, parts, n_tiles, ng, n_tiles * wpc * C))
        if not fits:
            raise self._no_split_error(layer, failure)
        chosen = self._select(layer, fits)
        grid, fan_new = chosen.grid, chosen.fan_new
        for src, fan in fan_new.items():
            self.fan_known[src] += fan
            self.unchosen[src] -= sum(1 for c in layer.inputs if c.src == src)
        return grid

    def _splits(self, C: int, H: int, W: int, wpc: int):
        """(nx, ny, ng) of every split to try: per tile count pair the fewest channel groups whose
        parts fit the neurons and weight words of a core, and for the "work" selection also more
        groups, up to one part per core (more parts than cores shorten no phase)."""
        for nx in _axis_counts(W):
            tw = -(-W // nx)
            for ny in _axis_counts(H):
                th = -(-H // ny)
                if tw * th > self.nc:
                    continue
                cc_max = min(C, self.nc // (tw * th), max(1, self.wc // wpc) if wpc else C)
                self.channel_cap[nx, ny] = cc_max
                fewest = -(-C // cc_max)
                yield nx, ny, fewest
                if self.selection == "work":
                    most = max(fewest, self.cfg.n_cores // (nx * ny))
                    yield from ((nx, ny, ng) for ng in _axis_counts(C) if fewest < ng <= most)

    def _select(self, layer: QLayer, fits: list["_Split"]) -> "_Split":
        if self.strategy != "auto":
            return min(fits, key=lambda f: {"channel": (f.n_tiles, f.parts, f.cost),
                                            "spatial": (f.groups, f.parts, f.cost)}[self.strategy])
        if self.selection == "memory":
            return min(fits, key=lambda f: (f.weight_words, f.cost, f.parts))
        if self.selection == "work":
            times = [self._phase_cycles(layer, f.grid) for f in fits]
            bound = self.layer_work.work.total_ops() / self.cfg.n_cores
            fast = max(min(times) * (1 + SPLIT_TIME_TOLERANCE), min(times) + SPLIT_TIME_SLACK * bound)
            return min((f for f, t in zip(fits, times) if t <= fast), key=lambda f: (f.cost, f.parts))
        return min(fits, key=lambda f: (f.cost, f.parts))

    def _phase_cycles(self, layer: QLayer, grid: Grid) -> float:
        """Predicted clocks of the layer's work with this split: per phase (a source's, and the
        layer's own evaluation) its parts spread over the cores as evenly as whole parts allow.
        A depthwise or pooling layer's parts take their pairs at the rate of their column lanes
        (work.part_lanes: an odd channel group gets them), so its odd splits count; the other
        layers' splits compare by their synaptic ops alone (their lanes' rate hardly depends on
        the split, and channel groups are aligned to the lanes where they fit)."""
        w, n_lanes = self.layer_work, self.cfg.lanes
        column_lanes = n_lanes > 1 and column_lane_layer(layer, n_lanes)
        groups = grid.cs[:, 1] - grid.cs[:, 0] + 1

        def rate(src):
            return np.array([part_lanes(layer, src, int(cc), n_lanes) for cc in groups]) if column_lanes else 1.0
        loads = [sums.grid(grid.ys, grid.xs, grid.cs) / rate(src) for src, sums in w.ops_by_source(layer).items()]
        loads.append(w.evaluations(layer).grid(grid.ys, grid.xs, grid.cs))
        return sum(_spread_cycles(load.reshape(-1), self.cfg.n_cores) for load in loads)

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


@dataclass
class _Split:
    """One way to split a layer that fits, with what choosing it costs."""
    grid: Grid
    fan_new: dict
    cost: float            # core equivalents (module doc)
    parts: int
    n_tiles: int
    groups: int
    weight_words: int      # stored if no two spatial tiles share a core


def _spread_cycles(loads: np.ndarray, n_cores: int) -> float:
    """The busiest core's load when parts of these loads go, largest first, to the least loaded
    core (longest processing time first)."""
    if len(loads) <= n_cores:
        return float(loads.max(initial=0.0))
    cores = np.zeros(n_cores)
    for load in np.sort(loads)[::-1]:
        cores[cores.argmin()] += load
    return float(cores.max())


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
    need: Resources         # pops = 1; weight_words: its kernel slice, unless shared on its core


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
                    needs.append(_PartNeed(l, k, (x0, x1), (y0, y1), (c0, c1), Resources(
                        neurons=(x1 - x0 + 1) * (y1 - y0 + 1) * (c1 - c0 + 1), weight_words=wpc * (c1 - c0 + 1),
                        peg_entries=int(peg[j, i, k]), esu_descs=int(esu[j, i, k]), pops=1)))
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


class _PhaseBalancer:
    """Ranks the cores for each part by how much it would lengthen the predicted frame: a frame
    lasts the sum over phases of the busiest core's load (compiler/work.py), so a part goes where
    its work adds least to the phases it works in."""

    def __init__(self, qnet: QNetwork, needs: list[_PartNeed], layer_work: LayerWork, n_cores: int):
        phases = [qnet.input_name] + [l.name for l in qnet.layers]
        index = {name: i for i, name in enumerate(phases)}
        self.work = np.zeros((len(needs), len(phases)))     # per part: its load in every phase
        for i, nd in enumerate(needs):
            ys, xs, cs = (np.array([t]) for t in (nd.y, nd.x, nd.c))
            for src, sums in layer_work.ops_by_source(nd.layer).items():
                self.work[i, index[src]] += sums.grid(ys, xs, cs)[0, 0, 0]
            self.work[i, index[nd.layer.name]] += layer_work.evaluations(nd.layer).grid(ys, xs, cs)[0, 0, 0]
        self.load = np.zeros((len(phases), n_cores))

    def order(self, needs: list[_PartNeed]) -> list[int]:
        """Layer by layer in evaluation order (needs come in that order), most work first."""
        first = {}
        for i, nd in enumerate(needs):
            first.setdefault(nd.layer.name, i)
        return sorted(range(len(needs)), key=lambda i: (first[needs[i].layer.name], -self.work[i].sum(), i))

    def cores(self, p: int, used: list[Resources], cap: Resources) -> list[int]:
        busiest = self.load.max(axis=1)
        longer = np.maximum(self.load + self.work[p][:, None] - busiest[:, None], 0).sum(axis=0)
        return sorted(range(self.load.shape[1]), key=lambda c: (longer[c], used[c].load(cap), c))

    def placed(self, p: int, core: int) -> None:
        self.load[:, core] += self.work[p]


def _pack(needs: list[_PartNeed], cfg: FabricConfig, order: list[int], spread: bool = False,
          balancer: _PhaseBalancer | None = None):
    """Assign parts to cores; None if they do not fit.  Returns ((core, nbase, wbase, words) per
    part, Resources used per core).  First fit, or with `spread` the least loaded core that fits
    (worst fit: parallel cores and NoC traffic instead of one crowded core), or with `balancer`
    the core where the part lengthens the predicted frame least."""
    cap = Resources.capacity(cfg)
    n_cores = cfg.n_cores
    used = [Resources() for _ in range(n_cores)]
    slices: list[dict] = [dict() for _ in range(n_cores)]   # (layer, group) -> wbase on that core
    result: list = [None] * len(needs)
    opened = 0
    full = n_cores <= _FULL_FIRST_FIT_CORES
    for p in order:
        nd = needs[p]
        key = (nd.layer.name, nd.group)
        if balancer is not None:
            candidates = balancer.cores(p, used, cap)
        elif spread:
            candidates = sorted(range(n_cores), key=lambda c: (used[c].load(cap), c))
        else:
            candidates = range(0 if full else max(0, opened - _WINDOW), min(opened + 1, n_cores))
        for core in candidates:
            u = used[core]
            shared = key in slices[core]
            need = replace(nd.need, weight_words=0) if shared else nd.need
            if (u + need).fits(cap):
                wbase = slices[core][key] if shared else u.weight_words
                if need.weight_words:
                    slices[core][key] = wbase
                result[p] = (core, u.neurons, wbase if nd.need.weight_words else 0, need.weight_words)
                used[core] = u + need
                opened = max(opened, core + 1)
                if balancer is not None:
                    balancer.placed(p, core)
                break
        else:
            return None
    return result, used


def _packed(needs: list[_PartNeed], cfg: FabricConfig, selection: str, layer_work: LayerWork | None, qnet: QNetwork):
    """The parts on cores as the selection wants them, or None if they do not pack."""
    in_order = list(range(len(needs)))
    small = cfg.n_cores <= _FULL_FIRST_FIT_CORES
    packed = None
    if selection == "work":
        balancer = _PhaseBalancer(qnet, needs, layer_work, cfg.n_cores)
        packed = _pack(needs, cfg, balancer.order(needs), balancer=balancer)
    elif selection == "cost" and small:
        packed = _pack(needs, cfg, in_order, spread=True)   # small fabrics: spread the load if it fits
    # Else, or if that did not fit, pack densely: first fit (the spatial tiles of one channel group
    # are neighbours in this order, so they share a kernel slice where they land on one core),
    # then first fit decreasing.
    packed = packed or _pack(needs, cfg, in_order)
    if packed is None and small:
        cap = Resources.capacity(cfg)
        size = [n.need.without_pops().load(cap) for n in needs]
        packed = _pack(needs, cfg, sorted(in_order, key=lambda i: -size[i]))
    return packed


def _map_lanes(qnet: QNetwork, cfg: FabricConfig, strategy: str, selection: str = "cost",
               layer_work: LayerWork | None = None) -> Placement:
    """_map with channel groups in multiples of the fabric's lanes where they fit (a group of a
    multiple of P keeps every lane of a conv or dense connection busy; a depthwise or pooling
    layer's groups odd instead, for its column lanes: split_odd), unless that does not place
    the network or, balancing work, predicts a longer frame than groups of any size: then _map as
    it is (larger aligned groups can leave the parts harder to pack)."""
    if cfg.lanes == 1:
        return _map(qnet, cfg, strategy, selection, layer_work)
    try:
        aligned = _map(qnet, cfg, strategy, selection, layer_work, align=cfg.lanes)
    except MappingError:
        return _map(qnet, cfg, strategy, selection, layer_work)
    if selection != "work":
        return aligned
    try:
        plain = _map(qnet, cfg, strategy, selection, layer_work)
    except MappingError:
        return aligned
    work = layer_work.work
    fast = predict(qnet, aligned, work)["frame_cycles"] <= predict(qnet, plain, work)["frame_cycles"]
    return aligned if fast else plain


def _map(qnet: QNetwork, cfg: FabricConfig, strategy: str, selection: str = "cost",
         layer_work: LayerWork | None = None, align: int = 1) -> Placement:
    """Choose every layer's split and pack the parts, splitting finer while they do not pack."""
    first_needs = None
    for gran in _GRANULARITIES:
        try:
            grids = _Chooser(qnet, cfg, strategy, gran, selection, layer_work, align).choose_all()
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
        if gran == 1 and packing_error([n.need for n in needs], cfg):
            raise packing_error([n.need for n in needs], cfg)
        packed = _packed(needs, cfg, selection, layer_work, qnet)
        if packed is None:
            continue
        assignment, used = packed
        parts = []
        for nd, (core, nbase, wbase, words) in zip(needs, assignment):
            parts.append(Part(nd.layer.name, core, Tile(nd.x[0], nd.x[1], nd.y[0], nd.y[1], nd.c[0], nd.c[1]),
                              nbase, nd.need.neurons, wbase, words))
        usage = [u.as_dict() for u in used]
        return Placement(cfg, parts, usage, input_peg, pps, grids, part_ids, strategy)
    total = sum((n.need for n in first_needs), Resources())
    raise MappingError(f"the network's {len(first_needs)} parts ({total.neurons} neurons, {total.weight_words} weight words) do "
                       f"not pack onto {cfg.n_cores} core(s) even split finer; use a larger mesh")


def _least_memory(qnet: QNetwork, cfg: FabricConfig) -> Placement:
    """The placement that stores the fewest weight words, or where its parts do not pack (a
    fabric filled to the last neurons) the least-cost one."""
    try:
        return _map_lanes(qnet, cfg, "auto", "memory")
    except MappingError:
        return _map_lanes(qnet, cfg, "auto")


def _work_balanced(qnet: QNetwork, cfg: FabricConfig, work: Work) -> Placement | None:
    """The placement that balances the synaptic work, or None where its parts do not fit."""
    try:
        return _map_lanes(qnet, cfg, "auto", "work", LayerWork(qnet, work))
    except MappingError:
        return None


def _with_prediction(qnet: QNetwork, placement: Placement, work: Work) -> Placement:
    placement.prediction = predict(qnet, placement, work)
    return placement


def map_network(qnet: QNetwork, cfg: FabricConfig, strategy: str = "auto", for_analysis: bool = False,
                objective: str = DEFAULT_OBJECTIVE, sample=None, work: Work | None = None) -> Placement:
    """Split every layer into parts within every per-core capacity and assign the parts to cores.

    strategy: "auto" (as the objective says), "channel" (fewest spatial tiles: least kernel
    replication) or "spatial" (fewest channel groups: least fan-out); the forced strategies ignore
    the objective.
    objective (strategy auto): "memory" (fewest stored weight words: kernels replicated over
    spatial tiles only where a core's neurons or weights force it, tiles of one channel group
    packed together so that they share a kernel slice), "cost" (the least-cost placement of the
    module doc: fewest parts, no work balanced), "throughput" (the synaptic work balanced over the
    cores: layers split into more channel groups or tiles where that shortens the predicted frame,
    compiler/work.py; the least-cost placement where that is not shorter) or "balanced" (the
    least-cost placement unless balancing the work shortens the predicted frame by
    BALANCED_MIN_GAIN or more).
    sample: input frames (T, C, H, W) or one (C, H, W) whose synaptic work is balanced (work:
    that work already estimated); without either, the static estimate (compiler/work.py).
    for_analysis: memory analysis only (e.g. ResNet50's 72 layers): the network need not be
    loadable, so the 64-layer limit and the output-tag width are not checked, and no work is
    balanced (balanced and throughput give the least-cost placement).
    """
    if strategy not in STRATEGIES:
        raise MappingError(f"unknown mapping strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    check_objective(objective)
    check_network(qnet, cfg, for_analysis)
    check_totals(qnet, cfg)
    if strategy != "auto":
        return _map_lanes(qnet, cfg, strategy)
    placement = _place_for(qnet, cfg, objective, for_analysis, sample, work)
    placement.objective = objective
    return placement


def _place_for(qnet: QNetwork, cfg: FabricConfig, objective: str, for_analysis: bool, sample,
               work: Work | None) -> Placement:
    """The placement map_network's objective asks for (strategy auto)."""
    if objective == "memory":
        return _least_memory(qnet, cfg)
    if objective == "cost" or for_analysis:   # an analysis fabric runs no frames: nothing to balance
        return _map_lanes(qnet, cfg, "auto")
    work = work or estimate(qnet, sample, cfg.acc_bits)
    least_cost = _with_prediction(qnet, _map_lanes(qnet, cfg, "auto"), work)
    balanced = _work_balanced(qnet, cfg, work)
    if balanced is None:
        return least_cost
    balanced = _with_prediction(qnet, balanced, work)
    fast, slow = balanced.prediction["frame_cycles"], least_cost.prediction["frame_cycles"]
    if objective == "throughput":
        return balanced if fast < slow else least_cost
    worth_it = fast <= slow * (1 - BALANCED_MIN_GAIN) and fast <= slow - BALANCED_MIN_GAIN_CYCLES
    return balanced if worth_it else least_cost


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise MappingError(f"unknown placement objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
