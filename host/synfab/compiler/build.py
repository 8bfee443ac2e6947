"""Table compiler: QNetwork + Placement -> the exact tables every core is loaded with.

PEG entries, ESU descriptors, population descriptors, kernel slices and initial neuron state,
built as DESIGN.md ("Placement", "PEG", "ESU") defines them and checked against the bit layouts
of `synfab.layouts`, by one builder each: `compile_network` runs them in order.  The tables and
their words are in tables.py.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import numpy as np

from .. import arith
from ..config import FabricConfig
from ..frontend.ir import INT8_RANGE, QConnection, QNetwork
from ..geometry import Tile, log2
from ..layouts import (EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, Kind, esu_desc, peg_entry, pop_desc,
                       state_word_bits)
from .mapper import Part, Placement, connection_hits, map_network, weight_shape
from .tables import (BASE_WORDS, GLOBAL_TABLE_REGS, V1_MEANING_CONSTANT, V1_MEANING_COPIED, CompileError,  # noqa: F401
                     CoreTables, Tables, _model_fields, at_version, columns, empty_columns, records,
                     tables_to_words, weights_to_words, words_to_weights)

# Entries are built with every field of the latest layouts; `columns` keeps the version's own.
_ALL_FIELDS = {name: layout(FabricConfig(), EXTENDED_LAYOUT_VERSION).names
               for name, layout in (("peg", peg_entry), ("esu", esu_desc), ("pop", pop_desc))}
# A part's row in the build's part table: its core, its tile's fields, its bases.
_PART_FIELDS = ("core", *(f.name for f in fields(Tile)), "nbase", "wbase")


def _slice_words(qnet: QNetwork, layer, c0: int, c1: int) -> np.ndarray:
    """The kernel slice of output channels c0..c1 in ESU order (DESIGN.md 'Placement')."""
    ws = weight_shape(qnet, layer)
    if layer.weight is None:
        raise CompileError(f"layer {layer.name} has no weights (a structure-only network); quantize it first "
                           f"(synfab.quant.quantize)")
    wt = np.asarray(layer.weight)
    expect = ws.tensor(layer.shape[0])
    if wt.shape != expect:
        raise CompileError(f"layer {layer.name}: weight shape {wt.shape}, expected {expect} for its "
                           f"{ws.kind.name} connections")
    if wt.size and (wt.min() < INT8_RANGE[0] or wt.max() > INT8_RANGE[1] or not np.all(wt == np.round(wt))):
        raise CompileError(f"layer {layer.name}: weights must be int8 (-128..127); quantize the network, or carry "
                           f"wider weights that are multiples of 2**s as weight / 2**s with the connection's wshift s")
    wt = wt.astype(np.int64)[c0:c1 + 1]
    if ws.kind == Kind.CONV:      # ((c_in*KH + ky)*KW + kx)*cc + co
        return wt.transpose(1, 2, 3, 0).reshape(-1)
    if ws.kind == Kind.DW:        # (co*KH + ky)*KW + kx
        return wt[:, 0].reshape(-1)
    # DENSE: i*cc + co with i = (y*src_w + x)*src_c + c (PyTorch column c*H*W + y*W + x)
    return wt.reshape(len(wt), ws.ci, ws.h, ws.w).transpose(2, 3, 1, 0).reshape(-1)


def _neuron_fields(layer) -> dict:
    """The version-2 population fields of a layer's neuron model (DESIGN.md "Neuron models")."""
    return _model_fields(layer.neuron, layer.lo is None, layer.hi is None)


@dataclass
class _Build:
    """What every builder reads: the network, the fabric, the placement and what follows from them."""
    qnet: QNetwork
    cfg: FabricConfig
    placement: Placement
    features: list
    version: int
    order: dict             # layer name -> evaluation step
    grid_pos: dict          # part id -> (layer, iy, ix, ig)
    on_core: list           # per core: part ids in population order (layer order, then part id)
    consumers: dict         # source name -> [(layer, connection index, connection)]
    parts: np.ndarray       # per part id: _PART_FIELDS
    syn: np.ndarray         # (part id, connection index) -> ESU descriptor index on the part's core, -1: none

    @property
    def layouts(self):
        return (peg_entry(self.cfg, self.version), esu_desc(self.cfg, self.version),
                pop_desc(self.cfg, self.version))


def _start(qnet: QNetwork, cfg: FabricConfig, placement: Placement) -> _Build:
    features = qnet.extended_features()
    version = EXTENDED_LAYOUT_VERSION if features else LAYOUT_VERSION
    if placement.cfg != cfg:
        raise CompileError(f"placement was made for fabric {placement.cfg.name!r}, not {cfg.name!r}; map again")
    missing = [l.name for l in qnet.layers if l.name not in placement.part_ids]
    if missing:
        raise CompileError(f"placement has no parts for layer(s) {missing}; map this network (map_network)")
    order = {l.name: i for i, l in enumerate(qnet.layers)}
    parts: list[Part] = placement.parts
    grid_pos = {}
    for name, ids in placement.part_ids.items():
        for (iy, ix, ig), pid in np.ndenumerate(ids):
            grid_pos[int(pid)] = (name, iy, ix, ig)
    on_core = [[] for _ in range(cfg.n_cores)]
    for pid in sorted(range(len(parts)), key=lambda i: (order[parts[i].layer], i)):
        on_core[parts[pid].core].append(pid)
    consumers = {qnet.input_name: []}
    for l in qnet.layers:
        consumers[l.name] = []
    for l in qnet.layers:
        for j, conn in enumerate(l.inputs):
            consumers[conn.src].append((l, j, conn))
    table = records(_PART_FIELDS, len(parts))
    for pid, p in enumerate(parts):
        table[pid] = (p.core, *astuple(p.tile), p.nbase, p.wbase)
    n_conn = max((len(l.inputs) for l in qnet.layers), default=0)
    return _Build(qnet, cfg, placement, features, version, order, grid_pos, on_core, consumers, table,
                  np.full((len(parts), n_conn), -1, dtype=np.int64))


def _esu_descriptors(b: _Build) -> list[np.ndarray]:
    """Per core: one descriptor per (part, incoming connection that reaches it), in population
    order; records each one's index in b.syn."""
    qnet, parts = b.qnet, b.placement.parts
    reach_in = {(l.name, j): connection_hits(qnet, l, conn, None, b.placement.grids[l.name])
                for l in qnet.layers for j, conn in enumerate(l.inputs)}
    out = []
    for pids in b.on_core:
        rows = []
        for pid in pids:
            p = parts[pid]
            layer = qnet.layer(p.layer)
            _, iy, ix, ig = b.grid_pos[pid]
            ws = weight_shape(qnet, layer)
            for j, conn in enumerate(layer.inputs):
                hx, hy, hc = reach_in[(layer.name, j)]
                if not (hx[0, ix] and hy[0, iy] and hc[0, ig]):
                    continue
                b.syn[pid, j] = len(rows)
                rows.append(_esu_row(qnet, p, conn, ws))
        out.append(np.array(rows, dtype=records(_ALL_FIELDS["esu"]).dtype))
    return out


def _esu_row(qnet: QNetwork, p: Part, conn: QConnection, ws) -> tuple:
    src_c, _, src_w = qnet.shape_of(conn.src)
    dense = conn.kind == Kind.DENSE
    row = dict(kind=int(conn.kind), wconst=int(conn.wconst is not None), wval=int(conn.wconst or 0), k=conn.kw,
                s_log2=log2(conn.sw), cc=p.tile.cc, c0=p.tile.c0, tw=p.tile.tw, nbase=p.nbase,
                wbase=p.wbase if conn.wconst is None else 0, src_w=src_w if dense else 0,
                src_c=(ws.ci if ws else src_c) if dense else 0, k_y=conn.kh, s_log2_y=log2(conn.sh),
                wshift=conn.wshift)
    return tuple(row[name] for name in _ALL_FIELDS["esu"])


def _peg_entries(b: _Build, src: str, hits: list, iy: int, ix: int, ig: int, host: bool) -> np.ndarray:
    """The PEG entries of one source part (grid position iy, ix, ig; the input port: 0, 0, 0): one
    per reached destination part and connection, consumers in order, then the HOST entry."""
    chunks = []
    for (dl, j, conn), (hx, hy, hc) in zip(b.consumers[src], hits):
        jy, jx, jg = np.nonzero(hy[iy][:, None, None] & hx[ix][None, :, None] & hc[ig][None, None, :])
        dest = b.placement.part_ids[dl.name][jy, jx, jg]
        e = records(_ALL_FIELDS["peg"], len(dest))
        e["kind"], e["dest_core"], e["syn"] = int(conn.kind), b.parts["core"][dest], b.syn[dest, j]
        e["k"], e["s_log2"], e["up_log2"], e["pad"] = conn.kw, log2(conn.sw), log2(conn.up), conn.pw
        for f in ("x0", "x1", "y0", "y1", "c0", "c1"):
            e[f] = b.parts[f][dest]
        e["chan_off"], e["k_y"], e["s_log2_y"], e["pad_y"] = conn.chan_off, conn.kh, log2(conn.sh), conn.ph
        assert (e["syn"] >= 0).all(), "a PEG entry reaches a part without its ESU descriptor"
        chunks.append(e)
    if host:
        e = records(_ALL_FIELDS["peg"], 1)          # every field 0 but these
        e["kind"], e["syn"] = int(Kind.HOST), b.order[b.qnet.output]
        chunks.append(e)
    return np.concatenate(chunks) if chunks else records(_ALL_FIELDS["peg"])


def _population(b: _Build, p: Part, peg_base: int, peg_count: int) -> tuple:
    layer = b.qnet.layer(p.layer)
    row = dict(layer=b.order[p.layer], nbase=p.nbase, x0=p.tile.x0, y0=p.tile.y0, tw=p.tile.tw, th=p.tile.th,
               c0=p.tile.c0, cc=p.tile.cc, mult=layer.mult, shift=layer.shift, lo=layer.lo or 0, hi=layer.hi or 0,
               peg_base=peg_base, peg_count=peg_count, **_neuron_fields(layer))
    return tuple(row[name] for name in _ALL_FIELDS["pop"])


def _initial_state(b: _Build, p: Part, acc: np.ndarray, words: dict) -> None:
    """The part's neurons' initial words: the bias as the initial accumulator (sigma-delta) or as
    the per-neuron bias word (every other model)."""
    layer, cfg = b.qnet.layer(p.layer), b.cfg
    bias = np.zeros(layer.shape[0], np.int64) if layer.bias is None else np.asarray(layer.bias)
    if bias.shape != (layer.shape[0],) or not np.all(bias == np.round(bias)):
        raise CompileError(f"layer {layer.name}: bias must be {layer.shape[0]} integers, got shape "
                           f"{bias.shape}")
    tiles = p.tile.tw * p.tile.th
    neurons = slice(p.nbase, p.nbase + p.tile.neurons)
    part_bias = np.tile(bias.astype(np.int64)[p.tile.c0:p.tile.c1 + 1], tiles)
    if layer.neuron.model == "sigma_delta":     # the bias is the initial accumulator
        acc[neurons] = arith.wrap(part_bias, cfg.acc_bits)
    else:                                       # added every step: a per-neuron word
        top = 1 << (state_word_bits(cfg, b.version)["bias"] - 1)
        if part_bias.size and (part_bias.min() < -top or part_bias.max() >= top):
            raise CompileError(f"layer {layer.name}: bias does not fit the {top.bit_length()}-bit per-neuron "
                               f"bias word ({-top}..{top - 1})")
        words["bias"][neurons] = part_bias


def _core_tables(b: _Build, core: int, esu: np.ndarray, hits_out: dict) -> CoreTables:
    """One core: its populations with their PEG entries, kernel slices and initial neuron state."""
    cfg = b.cfg
    pe, ed, pd = b.layouts
    pegs, pops = [], []
    weights = np.zeros(cfg.weight_words_per_core, dtype=np.int8)
    acc = np.zeros(cfg.neurons_per_core, dtype=np.int64)
    words = {w: np.zeros(cfg.neurons_per_core, dtype=np.int64)
             for w in state_word_bits(cfg, b.version) if w not in BASE_WORDS}
    weights_used, n_peg = 0, 0
    for pid in b.on_core[core]:
        p = b.placement.parts[pid]
        _, iy, ix, ig = b.grid_pos[pid]
        entries = _peg_entries(b, p.layer, hits_out[p.layer], iy, ix, ig, p.layer == b.qnet.output)
        pops.append(_population(b, p, n_peg, len(entries)))
        pegs.append(entries)
        n_peg += len(entries)
        if p.weight_words:
            kernel = _slice_words(b.qnet, b.qnet.layer(p.layer), p.tile.c0, p.tile.c1)
            weights[p.wbase:p.wbase + len(kernel)] = kernel
            weights_used = max(weights_used, p.wbase + len(kernel))
        _initial_state(b, p, acc, words)
    pop = np.array(pops, dtype=records(_ALL_FIELDS["pop"]).dtype)
    peg = np.concatenate(pegs) if pegs else records(_ALL_FIELDS["peg"])
    ct = CoreTables(pop=columns(pd, pop, f"core {core} population table"),
                    esu=columns(ed, esu, f"core {core} ESU table"),
                    peg=columns(pe, peg, f"core {core} PEG table"),
                    esu_count=len(esu), pop_count=len(pop), weights=weights, acc_init=acc,
                    sent_init=np.zeros(cfg.neurons_per_core, dtype=np.int64), weights_used=weights_used,
                    words_init=words)
    for what, n, cap in (("PEG entries", len(peg), cfg.peg_entries_per_core),
                         ("ESU descriptors", len(esu), cfg.esu_descriptors_per_core),
                         ("populations", len(pop), cfg.populations_per_core)):
        if n > cap:
            raise CompileError(f"core {core}: placement needs {n} {what} but a core has {cap}; map again")
    return ct


def _input_peg(b: _Build, hits_out: dict) -> dict[str, np.ndarray]:
    entries = _peg_entries(b, b.qnet.input_name, hits_out[b.qnet.input_name], 0, 0, 0, False)
    if len(entries) > b.cfg.input_peg_entries:
        raise CompileError(f"the input port needs {len(entries)} PEG entries but input_peg_entries is "
                           f"{b.cfg.input_peg_entries}; map again")
    return columns(b.layouts[0], entries, "input PEG table")


def _metadata(b: _Build) -> dict:
    qnet = b.qnet
    out = qnet.layer(qnet.output)
    metadata = dict(
        network=qnet.name, input_name=qnet.input_name, input_shape=list(qnet.input_shape),
        input_scale=float(qnet.input_scale), input_hi=int(qnet.input_hi),
        layers=[dict(name=l.name, shape=list(l.shape), tag=i) for i, l in enumerate(qnet.layers)],
        output=qnet.output, output_shape=list(out.shape), output_tag=b.order[qnet.output],
        output_scale=float(qnet.output_scale))
    if b.features:  # only extended tables carry these: version-1 bundles stay bit-identical
        for entry, layer in zip(metadata["layers"], qnet.layers):
            entry["model"] = layer.neuron.model
        metadata.update(extended=b.features, pipelined=bool(qnet.pipelined), reset_interval=int(qnet.reset_interval),
                        input_mode=qnet.input_mode, input_lo=int(qnet.input_lo))
    return metadata


def compile_network(qnet: QNetwork, cfg: FabricConfig, placement: Placement | None = None) -> Tables:
    """Tables for every core and the input port; placement defaults to map_network(qnet, cfg)."""
    b = _start(qnet, cfg, placement or map_network(qnet, cfg))
    esu = _esu_descriptors(b)
    hits_out = {name: [connection_hits(qnet, dl, conn, None if name == qnet.input_name else b.placement.grids[name],
                                       b.placement.grids[dl.name]) for dl, j, conn in cons]
                for name, cons in b.consumers.items()}
    cores = [_core_tables(b, core, esu[core], hits_out) for core in range(cfg.n_cores)]
    input_peg = _input_peg(b, hits_out)
    in_c, in_h, in_w = qnet.input_shape
    regs = dict(in_w=in_w, in_h=in_h, in_c=in_c, input_peg_count=len(input_peg["kind"]), n_layers=len(qnet.layers))
    return Tables(cfg, regs, input_peg, cores, _metadata(b), b.version)
