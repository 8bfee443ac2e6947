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

STRATEGIES = ("auto", "channel", "spatial")
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


def _pack(needs: list[_PartNeed], cfg: FabricConfig, order: list[int], spread: bool = False):
    """Assign parts to cores; None if they do not fit.  Returns ((core, nbase, wbase, words) per
    part, Resources used per core).  First fit, or with `spread` the least loaded core that fits
    (worst fit: parallel cores and NoC traffic instead of one crowded core)."""
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
        if spread:
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
                break
        else:
            return None
    return result, used


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
    check_totals(qnet, cfg)
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
        if gran == 1 and packing_error([n.need for n in needs], cfg):
            raise packing_error([n.need for n in needs], cfg)
        in_order = list(range(len(needs)))
        small = cfg.n_cores <= _FULL_FIRST_FIT_CORES
        # Small fabrics: spread the load if it fits; else pack densely (first fit, then decreasing).
        packed = (small and _pack(needs, cfg, in_order, spread=True)) or _pack(needs, cfg, in_order)
        if packed is None and small:
            cap = Resources.capacity(cfg)
            size = [n.need.without_pops().load(cap) for n in needs]
            packed = _pack(needs, cfg, sorted(in_order, key=lambda i: -size[i]))
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
