"""Memory footprint of a network under four connectivity schemes.

Every scheme is evaluated on the same neuron placement (`synfab.mapper`, on a fabric
configuration sized for analysis), the same weight width b_w and the same neuron state (per
layer, the bits of the words its neuron model keeps, `layouts.model_state_bits`: acc + sent
for sigma-delta), so only the way synapses are stored differs.
Each scheme reports `connectivity_bytes` (addresses, routing, tables: everything but
weight values), `weight_bytes` (stored weight values, replication included) and
`total_bytes` (both plus the common neuron state).

Counts (common to all schemes):
- neurons: every population neuron (the input is not on the fabric);
- synapses: exact (source neuron, destination neuron) pairs of every connection, constant
  ones (pooling, residual add, upsampling) included; taps that fall on padding or on
  inserted zeros are not synapses, so this is slightly below the MAC count;
- weights: distinct trainable weights (conv, depthwise, dense).

A source neuron "hits" a destination core when at least one synapse joins it to a neuron
placed there; R = sum over source neurons (input included) of the cores they hit, plus one
per output neuron for the host. R is what per-neuron routing tables store.

Schemes (b_i = ceil(log2 Nc), E = table_entry_bits):

explicit (TrueNorth / SpiNNaker style): every synapse stores b_w weight bits and a b_i-bit
    target index; every source neuron has one E-bit routing entry per core it hits.
    connectivity = S*b_i + R*E, weights = S*b_w.

loihi (nengo-loihi `conv2d_loihi_weights` with population axons): for each destination
    part and incoming conv connection, source pixels are grouped by their border mask (the
    kernel rows and columns that reach the part, per axis; strides and padding included).
    Each group stores, per input channel, one synapse list of |rows|*|cols|*cc synapses
    (cc = channels of the part). Depthwise and constant connections store |rows|*|cols|
    synapses per channel (nengo-loihi has no depthwise mapping; this is the most favourable
    generalisation), dense connections one list of cc synapses per source neuron. Lists are
    stored as in nengo-loihi's `SynapseConfig.bits_per_axon`: blocks of at most 64 synapses,
    each block 10 header bits (4 format + 6 count) + n*(b_w + idx) bits rounded up to a
    64-bit word; idx = 0 for dense lists (compression 3), otherwise the smallest Loihi index
    width (6..12 bits, wider if needed) covering the list's largest neuron offset
    ((rows-1)*tw + cols-1)*cc + cc-1 in the part's channel-last numbering. Plus one E-bit
    axon entry per source neuron per core it hits (R*E).
    weights = stored synapses * b_w; connectivity = the rest of the synapse memory + R*E.

dynapcnn (SynSense DYNAP-CNN, formulas of sinabs' `DynapcnnLayer.memory_summary`): per
    layer and weight tensor (f out, c in, kx, ky; a dense layer is a conv whose kernel is its
    whole input map) kernel memory c * 2^(ceil(log2(kx*ky)) + ceil(log2 f)) words of b_w
    bits; neuron memory f * 2^(ceil(log2 fy) + ceil(log2 fx)) words of the common neuron
    state. Constant connections use no kernel memory (pooling is a fixed hardware stage).
    Addresses are implicit (concatenated power-of-two fields), so connectivity is the
    padding those fields leave unused: (kernel words - weights)*b_w + (neuron words -
    neurons)*state bits; weights = weights*b_w. Inter-layer routing (two destination
    registers per layer) is negligible and not counted. The formula assumes every layer's
    kernels and neurons sit in one core of unlimited size: no replication, no fan-out.

pegesu (this project): PEG entries (input port included), ESU descriptors and population
    descriptors at the widths of `synfab.layouts` for the smallest fabric that holds the
    placement, plus the weight words the mapper places (kernel slices replicated per
    spatial tile).

Compared with SCHEME.md's first estimate (explicit S*(b_w+b_i) against PEG/ESU ~ P*b_w),
the explicit scheme here also pays R*E for routing, and PEG/ESU pays for kernel replication
and for one PEG entry per (source part, destination part): both depend on the placement,
so the "synaptic" ratios differ from that estimate in either direction, network by network.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import layouts
from ..config import FabricConfig
from ..errors import SynfabError
from ..geometry import Tile, taps as _taps
from ..frontend.ir import Network, QConnection, QLayer, QNetwork
from ..layouts import Kind
from ..compiler.mapper import (DEFAULT_OBJECTIVE, MappingError, check_objective, connection_hits, map_network,
                               weight_shape, words_per_channel)
from ..frontend.quant import lower

SCHEMES = ("explicit", "loihi", "dynapcnn", "pegesu")
# Loihi synapse-memory format (nengo-loihi SynapseConfig): index widths it can encode,
# header bits per block (synapse format id + synapse count), synapses per block, word size.
LOIHI_INDEX_BITS = (6, 7, 8, 9, 10, 11, 12)
LOIHI_BLOCK_HEADER_BITS = 4 + 6
LOIHI_SYNAPSES_PER_BLOCK = 64
LOIHI_WORD_BITS = 64


class FootprintError(SynfabError, ValueError):
    """Analysis parameters that make no sense."""


def _log2_ceil(n: int) -> int:
    return max(0, (int(n) - 1).bit_length())


# ---------------------------------------------------------------------------------------
# Geometry: which kernel taps join a source coordinate to a destination range, per axis
# (geometry.taps).
@functools.lru_cache(maxsize=None)
def _mask_sizes(n_src: int, k: int, stride: int, pad: int, up: int, t0: int, t1: int) -> np.ndarray:
    """Sizes of the distinct non-empty border masks along one axis (Loihi weight groups)."""
    taps = _taps(n_src, k, stride, pad, up, t0, t1)
    rows = taps[taps.any(axis=1)]
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    return np.unique(rows, axis=0).sum(axis=1).astype(np.int64)


def _axis_args(conn: QConnection, src_shape, tile: Tile):
    _, h, w = src_shape
    return (h, *conn.axis("y"), conn.up, tile.y0, tile.y1), (w, *conn.axis("x"), conn.up, tile.x0, tile.x1)


def _channel_hits(conn: QConnection, n_src_channels: int, tile: Tile) -> np.ndarray:
    """bool per source channel: it has synapses into the tile's channels."""
    c = np.arange(n_src_channels)
    if conn.kind == Kind.DW:
        return (c + conn.chan_off >= tile.c0) & (c + conn.chan_off <= tile.c1)
    return np.ones(n_src_channels, dtype=bool)


def _synapses(conn: QConnection, src_shape, tile: Tile) -> int:
    cs, h, w = src_shape
    if conn.kind == Kind.DENSE:
        return cs * h * w * tile.cc
    ay, ax = _axis_args(conn, src_shape, tile)
    per_channel = int(_taps(*ay).sum()) * int(_taps(*ax).sum())
    if conn.kind == Kind.DW:
        return per_channel * int(_channel_hits(conn, cs, tile).sum())
    return per_channel * cs * tile.cc


def _source_box(conn: QConnection, src_shape, tile: Tile):
    """(channel, row, column) hit masks of the source neurons with synapses into the tile."""
    cs, h, w = src_shape
    if conn.kind == Kind.DENSE:
        return np.ones(cs, bool), np.ones(h, bool), np.ones(w, bool)
    ay, ax = _axis_args(conn, src_shape, tile)
    return _channel_hits(conn, cs, tile), _taps(*ay).any(axis=1), _taps(*ax).any(axis=1)


def _union_size(boxes) -> int:
    """Neurons in the union of boxes (cmask, ymask, xmask) over one source layer."""
    if len(boxes) == 1:
        cm, ym, xm = boxes[0]
        return int(cm.sum()) * int(ym.sum()) * int(xm.sum())
    cms = np.stack([b[0] for b in boxes])             # (boxes, channels)
    signatures, counts = np.unique(cms.T, axis=0, return_counts=True)
    total = 0
    for sig, n_channels in zip(signatures, counts):   # channels covered by the same boxes
        members = [b for b, inside in zip(boxes, sig) if inside]
        if members:
            spatial = np.zeros((len(members[0][1]), len(members[0][2])), dtype=bool)
            for _, ym, xm in members:
                spatial |= np.outer(ym, xm)
            total += int(n_channels) * int(spatial.sum())
    return total


# ---------------------------------------------------------------------------------------
# Loihi synapse memory
def _loihi_list_bits(n_synapses: np.ndarray, bits_per_synapse: int) -> np.ndarray:
    """Bits of synapse lists of the given lengths (nengo-loihi bits_per_axon, vectorised)."""
    n = np.asarray(n_synapses, dtype=np.int64)

    def block(m):
        bits = m * bits_per_synapse + LOIHI_BLOCK_HEADER_BITS
        return -(-bits // LOIHI_WORD_BITS) * LOIHI_WORD_BITS

    full, rest = n // LOIHI_SYNAPSES_PER_BLOCK, n % LOIHI_SYNAPSES_PER_BLOCK
    return full * block(LOIHI_SYNAPSES_PER_BLOCK) + np.where(rest > 0, block(rest), 0)


def _loihi_index_bits(max_index: int) -> int:
    need = _log2_ceil(max_index + 1)
    return next((b for b in LOIHI_INDEX_BITS if b >= need), need)


def _loihi(conn: QConnection, src_shape, tile: Tile, weight_bits: int) -> tuple[int, int]:
    """(synapse-memory bits, stored synapses) of one connection into one destination part."""
    cs, h, w = src_shape
    if conn.kind == Kind.DENSE:
        rows = cs * h * w
        return rows * int(_loihi_list_bits(tile.cc, weight_bits)), rows * tile.cc
    ay, ax = _axis_args(conn, src_shape, tile)
    sy, sx = _mask_sizes(*ay), _mask_sizes(*ax)
    if not len(sy) or not len(sx):
        return 0, 0
    if conn.kind == Kind.DW:
        rows, per_tap = int(_channel_hits(conn, cs, tile).sum()), 1
    else:
        rows, per_tap = cs, tile.cc
    max_index = ((int(sy.max()) - 1) * tile.tw + int(sx.max()) - 1) * tile.cc + tile.cc - 1
    lengths = np.outer(sy, sx).reshape(-1) * per_tap          # one list per border-mask group
    bits = int(_loihi_list_bits(lengths, weight_bits + _loihi_index_bits(max_index)).sum())
    return rows * bits, rows * int(lengths.sum())


# ---------------------------------------------------------------------------------------
# DYNAP-CNN memory (sinabs DynapcnnLayer.memory_summary)
def _dynapcnn_kernel_words(f: int, c: int, kx: int, ky: int) -> int:
    return c * 2 ** (_log2_ceil(kx * ky) + _log2_ceil(f))


def _dynapcnn_neuron_words(shape) -> int:
    f, fy, fx = shape
    return f * 2 ** (_log2_ceil(fy) + _log2_ceil(fx))


def _weight_tensor(qnet: QNetwork, layer: QLayer):
    """(f, c, kx, ky) of a layer's stored weights, or None when all its inputs are constant."""
    ws = weight_shape(qnet, layer)
    if ws is None:
        return None
    f = layer.shape[0]
    return {Kind.CONV: (f, ws.ci, ws.kw, ws.kh), Kind.DW: (f, 1, ws.kw, ws.kh), Kind.DENSE: (f, ws.ci, ws.w, ws.h)}[ws.kind]


# ---------------------------------------------------------------------------------------
# Analysis fabric
def analysis_config(qnet: QNetwork, neurons_per_core: int = 1024,
                    weight_words_per_core: int | None = None) -> FabricConfig:
    """The fabric the analysis maps onto: the largest mesh, `neurons_per_core`, and per-core
    weight memory of 16 words per neuron (at least one output channel of the widest layer).

    Every table gets the same bit budget as the weight memory (capacity = budget / entry bits),
    so the mapper's cost, which counts each resource as a fraction of its per-core capacity,
    weighs PEG entries, descriptors and weight words by the memory they occupy. Coordinate and
    channel fields keep the default widths unless the network needs wider ones. (`analyze`
    doubles the PEG budget when a fan-out does not fit it.)
    """
    default = FabricConfig()
    dims = [qnet.input_shape] + [l.shape for l in qnet.layers]
    coord_bits = max(default.coord_bits, _log2_ceil(max(max(h, w) for _, h, w in dims)))
    chan_bits = max(default.chan_bits, _log2_ceil(max(c for c, _, _ in dims)))
    if coord_bits > 12 or chan_bits > 16:
        raise FootprintError(f"network {qnet.name}: maps up to 4096 pixels wide and 65536 channels can be analysed; "
                             f"reduce the input resolution or the channel count")
    if weight_words_per_core is None:
        widest = max(words_per_channel(qnet, l) for l in qnet.layers)
        weight_words_per_core = max(16 * neurons_per_core, widest)
    weight_words_per_core = max(4, -(-int(weight_words_per_core) // 4) * 4)
    side = 256  # 65536 cores, the most a core id can address
    cfg = default.with_(mesh_x=side, mesh_y=side, neurons_per_core=int(neurons_per_core),
                        weight_words_per_core=weight_words_per_core, coord_bits=coord_bits, chan_bits=chan_bits,
                        name="analysis")
    budget = weight_words_per_core * cfg.weight_bits

    def capacity(layout: layouts.Layout) -> int:
        return max(1, budget // layout.width)

    # The input port is one table in front of the mesh, not a core: it may reach every core.
    return cfg.with_(peg_entries_per_core=capacity(layouts.peg_entry(cfg)), input_peg_entries=cfg.n_cores,
                     esu_descriptors_per_core=capacity(layouts.esu_desc(cfg)),
                     populations_per_core=capacity(layouts.pop_desc(cfg)))


def _fitted_config(placement) -> FabricConfig:
    """The smallest fabric that holds `placement`: table widths for what it really uses."""
    cfg = placement.cfg
    used = [u for u in placement.usage if u["pops"]]
    n = len(used)
    mesh_x = math.isqrt(n - 1) + 1 if n > 1 else 1
    return cfg.with_(mesh_x=mesh_x, mesh_y=-(-n // mesh_x),
                     weight_words_per_core=max(4, -(-max(u["weight_words"] for u in used) // 4) * 4),
                     peg_entries_per_core=max(1, max(u["peg_entries"] for u in used)),
                     esu_descriptors_per_core=max(1, max(u["esu_descs"] for u in used)),
                     populations_per_core=max(1, max(u["pops"] for u in used)),
                     input_peg_entries=max(1, placement.input_peg_entries))


def _place(qnet: QNetwork, cfg: FabricConfig, strategy: str, objective: str):
    """Map onto the analysis fabric; while the mapper reports a different shortfall each time
    (a fan-out beyond the PEG budget), double the PEG entries per core and map again."""
    previous = None
    while True:
        try:
            return map_network(qnet, cfg, strategy, for_analysis=True, objective=objective)
        except MappingError as e:
            if str(e) == previous or cfg.peg_entries_per_core >= cfg.n_cores:
                raise
            previous = str(e)
            cfg = cfg.with_(peg_entries_per_core=2 * cfg.peg_entries_per_core)


# ---------------------------------------------------------------------------------------
# The analysis
def _lowered(net_or_qnet) -> QNetwork:
    if isinstance(net_or_qnet, QNetwork):
        return net_or_qnet
    if isinstance(net_or_qnet, Network):
        return lower(net_or_qnet)
    raise FootprintError(f"footprint.analyze takes an ir.Network or ir.QNetwork, not {type(net_or_qnet).__name__}; "
                         f"build one with synfab.zoo.get(name) or load a network file")


class _Row:
    """Bit counts of one row of the report (the input port or a layer)."""

    def __init__(self, name, op, shape, neurons=0, state_bits=0, model=""):
        self.name, self.op, self.shape, self.neurons = name, op, tuple(shape), neurons
        self.state_bits, self.model = state_bits, model     # per neuron
        self.synapses = self.weights = self.parts = self.routing_entries = 0
        self.peg_entries = self.esu_descs = self.weight_words = 0
        self.conn = dict.fromkeys(SCHEMES, 0)
        self.wbits = dict.fromkeys(SCHEMES, 0)


def analyze(net_or_qnet, neurons_per_core: int = 1024, weight_bits: int = 8, table_entry_bits: int = 48,
            weight_words_per_core: int | None = None, strategy: str = "auto",
            objective: str = DEFAULT_OBJECTIVE) -> dict:
    """Memory footprint of a network under the four schemes of the module doc.

    neurons_per_core: Nc (placement and index widths); weight_bits: b_w for every scheme;
    table_entry_bits: E, width of a per-neuron routing (explicit) or axon (loihi) entry;
    weight_words_per_core / strategy / objective: passed to the analysis fabric and the mapper
    (objective memory: kernels replicated least, at the price of more PEG entries; balanced or
    throughput: the least-cost placement, an analysis fabric runs no frames to balance).
    Returns {"network", "neurons", "synapses", "weights", "neuron_state_bytes",
    "neurons_per_core", "objective", "weight_replication", "schemes", "layers", "ratios"} with byte
    counts (bits / 8); weight_replication = stored weight words / distinct weights.
    """

    for name, value, lo in (("neurons_per_core", neurons_per_core, 1), ("weight_bits", weight_bits, 1),
                            ("table_entry_bits", table_entry_bits, 1)):
        if int(value) != value or value < lo:
            raise FootprintError(f"{name} must be a positive integer, got {value!r}")
    check_objective(objective)
    qnet = _lowered(net_or_qnet)
    placement = _place(qnet, analysis_config(qnet, neurons_per_core, weight_words_per_core), strategy, objective)
    cfg = _fitted_config(placement)
    version = layouts.EXTENDED_LAYOUT_VERSION if qnet.extended_features() else layouts.LAYOUT_VERSION
    peg_bits, esu_bits, pop_bits = (layouts.peg_entry(cfg, version).width, layouts.esu_desc(cfg, version).width,
                                    layouts.pop_desc(cfg, version).width)
    index_bits = _log2_ceil(neurons_per_core)

    rows = {qnet.input_name: _Row(qnet.input_name, "input", qnet.input_shape)}
    for layer in qnet.layers:
        rows[layer.name] = _Row(layer.name, layer.op, layer.shape, int(np.prod(layer.shape)),
                                layouts.model_state_bits(cfg, layer.neuron.model, version), layer.neuron.model)
    parts_of: dict[str, list] = {}
    for part in placement.parts:
        parts_of.setdefault(part.layer, []).append(part)

    # Sources' boxes per destination core, for the per-neuron routing count R.
    boxes: dict[tuple[str, int], list] = {}
    for layer in qnet.layers:
        row = rows[layer.name]
        for conn in layer.inputs:
            src_shape = qnet.shape_of(conn.src)
            row.synapses += _synapses(conn, src_shape, Tile.whole(layer.shape))
            for part in parts_of[layer.name]:
                tile = part.tile
                box = _source_box(conn, src_shape, tile)
                if box[0].any() and box[1].any() and box[2].any():
                    boxes.setdefault((conn.src, part.core), []).append(box)
                bits, stored = _loihi(conn, src_shape, tile, weight_bits)
                row.conn["loihi"] += bits - stored * weight_bits
                row.wbits["loihi"] += stored * weight_bits
            # PEG entries of the source's parts that reach this layer's parts (mapper's rule).
            hx, hy, hc = connection_hits(qnet, layer, conn, placement.grids.get(conn.src), placement.grids[layer.name])
            if conn.src != qnet.input_name:
                rows[conn.src].peg_entries += int(hx.sum()) * int(hy.sum()) * int(hc.sum())
            whole_hx, whole_hy, whole_hc = connection_hits(qnet, layer, conn, None, placement.grids[layer.name])
            row.esu_descs += int((whole_hy[0][:, None, None] & whole_hx[0][None, :, None]
                                  & whole_hc[0][None, None, :]).sum())
        row.parts = len(parts_of[layer.name])
        row.weight_words = sum(p.weight_words for p in parts_of[layer.name])
        tensor = _weight_tensor(qnet, layer)
        if tensor is not None:
            f, c, kx, ky = tensor
            row.weights = f * c * kx * ky
            kernel_words = _dynapcnn_kernel_words(f, c, kx, ky)
        else:
            kernel_words = 0
        neuron_words = _dynapcnn_neuron_words(layer.shape)
        row.conn["dynapcnn"] = ((kernel_words - row.weights) * weight_bits
                                + (neuron_words - row.neurons) * row.state_bits)
        row.wbits["dynapcnn"] = row.weights * weight_bits
        row.conn["explicit"] = row.synapses * index_bits
        row.wbits["explicit"] = row.synapses * weight_bits
        row.wbits["pegesu"] = row.weight_words * weight_bits
    rows[qnet.output].peg_entries += rows[qnet.output].parts   # one HOST entry per output part
    rows[qnet.input_name].peg_entries = placement.input_peg_entries

    for (src, _core), group in boxes.items():
        rows[src].routing_entries += _union_size(group)
    rows[qnet.output].routing_entries += rows[qnet.output].neurons   # to the host
    for row in rows.values():
        route = row.routing_entries * table_entry_bits
        row.conn["explicit"] += route
        row.conn["loihi"] += route
        row.conn["pegesu"] = row.peg_entries * peg_bits + row.esu_descs * esu_bits + row.parts * pop_bits

    _check_against_usage(placement, rows.values())
    return _report(qnet, neurons_per_core, list(rows.values()), objective)


def _check_against_usage(placement, rows) -> None:
    """The per-layer table counts must add up to what the mapper placed on the cores."""
    used = {k: sum(u[k] for u in placement.usage) for k in ("peg_entries", "esu_descs", "pops", "weight_words")}
    mine = {"peg_entries": sum(r.peg_entries for r in rows) - placement.input_peg_entries,
            "esu_descs": sum(r.esu_descs for r in rows), "pops": sum(r.parts for r in rows),
            "weight_words": sum(r.weight_words for r in rows)}
    if mine != used:
        raise RuntimeError(f"footprint table counts {mine} disagree with the placement's usage {used}")


def _bytes(bits: int) -> float:
    return bits / 8


def _schemes(conn: dict, wbits: dict, state_bits_total: int) -> dict:
    return {s: {"connectivity_bytes": _bytes(conn[s]), "weight_bytes": _bytes(wbits[s]),
                "total_bytes": _bytes(conn[s] + wbits[s] + state_bits_total)} for s in SCHEMES}


def _ratios(schemes: dict) -> dict:
    measures = {"total": lambda s: s["total_bytes"],
                "synaptic": lambda s: s["connectivity_bytes"] + s["weight_bytes"],
                "connectivity": lambda s: s["connectivity_bytes"]}
    out = {}
    for measure, value in measures.items():
        base = value(schemes["pegesu"])
        ratios = {f"{s}/pegesu": value(schemes[s]) / base for s in SCHEMES if s != "pegesu"}
        ratios["best_prior/pegesu"] = min(ratios.values())
        out[measure] = ratios
    return out


def _replication(stored_words: int, weights: int) -> float:
    """Stored weight words per distinct weight (1.0 without weights)."""
    return round(stored_words / weights, 4) if weights else 1.0


def _report(qnet: QNetwork, neurons_per_core: int, rows: list[_Row], objective: str) -> dict:
    layers = []
    for r in rows:
        entry = {"name": r.name, "op": r.op, "shape": list(r.shape), "neurons": r.neurons,
                 "synapses": r.synapses, "weights": r.weights, "parts": r.parts,
                 "routing_entries": r.routing_entries, "peg_entries": r.peg_entries,
                 "esu_descs": r.esu_descs, "weight_words": r.weight_words,
                 "weight_replication": _replication(r.weight_words, r.weights),
                 "neuron_state_bytes": _bytes(r.neurons * r.state_bits),
                 "schemes": _schemes(r.conn, r.wbits, r.neurons * r.state_bits)}
        if r.model:
            entry.update(neuron_model=r.model, state_bits_per_neuron=r.state_bits)
        layers.append(entry)
    neurons = sum(r.neurons for r in rows)
    state_total = sum(r.neurons * r.state_bits for r in rows)
    total_conn = {s: sum(r.conn[s] for r in rows) for s in SCHEMES}
    total_w = {s: sum(r.wbits[s] for r in rows) for s in SCHEMES}
    schemes = _schemes(total_conn, total_w, state_total)
    weights = sum(r.weights for r in rows)
    return {"network": qnet.name, "neurons": neurons, "synapses": sum(r.synapses for r in rows),
            "weights": weights, "neuron_state_bytes": _bytes(state_total),
            "neurons_per_core": neurons_per_core, "objective": objective,
            "weight_replication": _replication(sum(r.weight_words for r in rows), weights),
            "schemes": schemes, "layers": layers, "ratios": _ratios(schemes)}


# ---------------------------------------------------------------------------------------
# Presentation
def _human(n_bytes: float) -> str:
    """SI units (1 kB = 1000 bytes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes:.1f} B" if n_bytes != int(n_bytes) else f"{int(n_bytes)} B"


def format_table(result: dict) -> str:
    """The four schemes side by side with their ratios to PEG/ESU (sizes in SI units)."""
    r = result
    lines = [f"{r['network']}: {r['neurons']:,} neurons, {r['synapses']:,} synapses, {r['weights']:,} weights, "
             f"{r['neurons_per_core']} neurons/core",
             f"neuron state (in every total): {_human(r['neuron_state_bytes'])}",
             f"placement objective {r['objective']}: PEG/ESU stores {r['weight_replication']:.3f}x the distinct "
             f"weights (kernel slices replicated over spatial tiles)",
             "",
             f"{'scheme':<10}{'connectivity':>14}{'weights':>12}{'total':>12}"
             f"{'total/pegesu':>15}{'synaptic/pegesu':>18}{'connect./pegesu':>18}"]
    for s in SCHEMES:
        v = r["schemes"][s]
        if s == "pegesu":
            ratios = ("1.00x",) * 3
        else:
            ratios = tuple(f"{r['ratios'][m][f'{s}/pegesu']:.2f}x" for m in ("total", "synaptic", "connectivity"))
        lines.append(f"{s:<10}{_human(v['connectivity_bytes']):>14}{_human(v['weight_bytes']):>12}"
                     f"{_human(v['total_bytes']):>12}{ratios[0]:>15}{ratios[1]:>18}{ratios[2]:>18}")
    best = r["ratios"]
    lines.append(f"best prior scheme / pegesu: total {best['total']['best_prior/pegesu']:.2f}x, synaptic "
                 f"(connectivity + weights) {best['synaptic']['best_prior/pegesu']:.2f}x, connectivity "
                 f"{best['connectivity']['best_prior/pegesu']:.2f}x")
    return "\n".join(lines)


def plot(result: dict, path) -> None:
    """Bar chart (log scale) of connectivity, weights and total bytes per scheme, saved to `path`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise FootprintError("footprint.plot needs matplotlib; install it with: pip install 'synfab[plots]'")
    measures = ("connectivity_bytes", "weight_bytes", "total_bytes")
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(measures)
    for i, m in enumerate(measures):
        values = [max(result["schemes"][s][m], 1.0) for s in SCHEMES]   # log scale: no zero bars
        ax.bar(np.arange(len(SCHEMES)) + (i - 1) * width, values, width, label=m.replace("_bytes", ""))
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(SCHEMES)), SCHEMES)
    ax.set_ylabel("bytes")
    ax.set_title(f"{result['network']}: memory footprint, {result['neurons_per_core']} neurons/core")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
