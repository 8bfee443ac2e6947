"""Table compiler: QNetwork + Placement -> the exact tables every core is loaded with.

PEG entries, ESU descriptors, population descriptors, kernel slices and initial neuron state,
built as DESIGN.md ("Placement", "PEG", "ESU") defines them and checked against the bit layouts
of `synfab.layouts`.  `tables_to_words` turns them into the 32-bit words of every RegisterMap
window, which is what a device is loaded with over AXI-Lite and what a bundle stores.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import arith
from ..config import FabricConfig
from ..errors import SynfabError
from ..frontend.ir import QNetwork
from ..layouts import (EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, NEURON_MODEL_CODES, Kind, esu_desc, peg_entry,
                      pop_desc, state_word_bits, unsupported_features)
from .mapper import Placement, connection_hits, map_network, weight_shape

GLOBAL_TABLE_REGS = ("in_w", "in_h", "in_c", "input_peg_count", "n_layers")


class CompileError(SynfabError):
    """A network that passed mapping but has values the tables cannot hold (weights, bias, fields)."""


def _cols_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def empty_columns(layout) -> dict[str, np.ndarray]:
    return {f.name: np.zeros(0, dtype=np.int64) for f in layout.fields}


@dataclass(eq=False)
class CoreTables:
    """Everything loaded into one core.  pop/esu/peg: columns (field -> int64 array) of the
    entries in use; weights/acc_init/sent_init: whole memories (unused = 0)."""
    pop: dict[str, np.ndarray]
    esu: dict[str, np.ndarray]
    peg: dict[str, np.ndarray]
    esu_count: int
    pop_count: int
    weights: np.ndarray        # int8 (weight_words_per_core,)
    acc_init: np.ndarray       # int64 (neurons_per_core,): wrapped bias of every sigma-delta neuron
    sent_init: np.ndarray      # int64 (neurons_per_core,): zeros
    weights_used: int = 0      # weight words in use (the rest is never read)
    # Version 2: the other per-neuron words (u, v, ref, bias) -> int64 (neurons_per_core,)
    words_init: dict = field(default_factory=dict)

    @property
    def neurons_used(self) -> int:
        if not self.pop_count:
            return 0
        p = self.pop
        return int((p["nbase"] + p["tw"] * p["th"] * p["cc"]).max())

    @property
    def peg_count(self) -> int:
        return len(self.peg["kind"])

    def __eq__(self, other) -> bool:
        if not isinstance(other, CoreTables):
            return NotImplemented
        return (_cols_equal(self.pop, other.pop) and _cols_equal(self.esu, other.esu)
                and _cols_equal(self.peg, other.peg) and self.esu_count == other.esu_count
                and self.pop_count == other.pop_count and self.weights_used == other.weights_used
                and np.array_equal(self.weights, other.weights) and np.array_equal(self.acc_init, other.acc_init)
                and np.array_equal(self.sent_init, other.sent_init) and _cols_equal(self.words_init, other.words_init))

    def initial_words(self) -> dict[str, np.ndarray]:
        """Every per-neuron word's initial value: acc, sent and (version 2) u, v, ref, bias."""
        return {"acc": self.acc_init, "sent": self.sent_init, **self.words_init}


@dataclass(eq=False)
class Tables:
    """A compiled network: what a bundle holds and what the model and the devices execute.

    metadata: network, input_name, input_shape, input_scale, input_hi, layers (evaluation order:
    name, shape, tag = evaluation step), output (name), output_shape, output_tag, output_scale.
    Version 2 (extended) tables add: extended (what the fabric does not run yet), pipelined,
    reset_interval, input_mode, input_lo, and per layer its neuron model.
    """
    cfg: FabricConfig
    regs: dict[str, int]                   # in_w, in_h, in_c, input_peg_count, n_layers
    input_peg: dict[str, np.ndarray]
    cores: list[CoreTables]
    metadata: dict = field(default_factory=dict)
    version: int = LAYOUT_VERSION

    def __eq__(self, other) -> bool:
        if not isinstance(other, Tables):
            return NotImplemented
        return (self.cfg == other.cfg and self.regs == other.regs and _cols_equal(self.input_peg, other.input_peg)
                and self.cores == other.cores and self.metadata == other.metadata and self.version == other.version)

    @property
    def extended_features(self) -> list[str]:
        """What these tables use beyond version 1 (empty for version-1 tables)."""
        return list(self.metadata.get("extended", []))

    @property
    def unsupported_features(self) -> list[str]:
        """The extended features the gateware does not run (these tables run on the golden model)."""
        return unsupported_features(self.extended_features)

    @property
    def state_words(self) -> tuple[str, ...]:
        """The per-neuron words the tables' neuron models use (arith.MODEL_WORDS), in window order."""
        used = {w for l in self.metadata.get("layers", []) for w in arith.MODEL_WORDS[l.get("model", "sigma_delta")]}
        return tuple(w for w in arith.STATE_WORDS if w in used | {"acc", "sent"})

    @property
    def pipelined(self) -> bool:
        return bool(self.metadata.get("pipelined", False))

    @property
    def reset_interval(self) -> int:
        return int(self.metadata.get("reset_interval", 0))

    @property
    def input_mode(self) -> str:
        return self.metadata.get("input_mode", "levels")


def _checked(layout, cols: dict, what: str) -> dict[str, np.ndarray]:
    cols = {f.name: np.asarray(cols[f.name], dtype=np.int64).reshape(-1) for f in layout.fields}
    try:
        layout.check(cols, what)
    except ValueError as e:
        raise CompileError(f"{e}; the network exceeds what this fabric's table fields hold") from None
    return cols


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
    if wt.size and (wt.min() < -128 or wt.max() > 127 or not np.all(wt == np.round(wt))):
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


def _model_fields(n: arith.Neuron, lo_open: bool = False, hi_open: bool = False) -> dict:
    return dict(model=NEURON_MODEL_CODES[n.model], lo_open=int(lo_open), hi_open=int(hi_open),
                theta=n.theta, msg_shift=n.msg_shift, fire_gt=int(n.fire_gt),
                reset_to_value=int(n.reset_to is not None), v_reset=n.reset_to or 0, v_min_on=int(n.v_min is not None),
                v_min=n.v_min or 0, multi_spike=int(n.multi_spike), du=n.du, dv=n.dv, refractory=n.refractory)


# What a version-1 entry means in the fields version 2 appends: the y axis is the x axis (square
# kernel, stride and padding), no weight shift, today's sigma-delta neuron with its clamps.
V1_MEANING_COPIED = {"k_y": "k", "s_log2_y": "s_log2", "pad_y": "pad"}
V1_MEANING_CONSTANT = dict(wshift=0, **_model_fields(arith.Neuron()))


def at_version(layout, cols: dict) -> dict[str, np.ndarray]:
    """Columns of a table for `layout` (a PEG, ESU or population layout of any version) from
    columns of the same entries at version 1 or `layout`'s version: fields version 2 appends
    that `cols` lacks get what a version-1 entry means (V1_MEANING_*).  The fabric decodes the
    version-2 layouts (layouts.FABRIC_LAYOUT_VERSION) and executes such entries exactly as the
    version-1 fields say."""
    out = {}
    for f in layout.fields:
        if f.name in cols:
            out[f.name] = np.asarray(cols[f.name], dtype=np.int64)
        elif f.name in V1_MEANING_COPIED:
            out[f.name] = np.asarray(cols[V1_MEANING_COPIED[f.name]], dtype=np.int64)
        else:
            n = len(np.asarray(next(iter(cols.values()))).reshape(-1)) if cols else 0
            out[f.name] = np.full(n, V1_MEANING_CONSTANT[f.name], dtype=np.int64)
    return out


def compile_network(qnet: QNetwork, cfg: FabricConfig, placement: Placement | None = None) -> Tables:
    """Tables for every core and the input port; placement defaults to map_network(qnet, cfg)."""
    placement = placement or map_network(qnet, cfg)
    features = qnet.extended_features()
    version = EXTENDED_LAYOUT_VERSION if features else LAYOUT_VERSION
    if placement.cfg != cfg:
        raise CompileError(f"placement was made for fabric {placement.cfg.name!r}, not {cfg.name!r}; map again")
    missing = [l.name for l in qnet.layers if l.name not in placement.part_ids]
    if missing:
        raise CompileError(f"placement has no parts for layer(s) {missing}; map this network (map_network)")
    order = {l.name: i for i, l in enumerate(qnet.layers)}
    parts = placement.parts
    grid_pos = {}  # part id -> (layer, iy, ix, ig)
    for name, ids in placement.part_ids.items():
        for (iy, ix, ig), pid in np.ndenumerate(ids):
            grid_pos[int(pid)] = (name, iy, ix, ig)
    on_core = [[] for _ in range(cfg.n_cores)]
    for pid in sorted(range(len(parts)), key=lambda i: (order[parts[i].layer], i)):
        on_core[parts[pid].core].append(pid)

    # ESU descriptors: one per (part, incoming connection that reaches it), in population order.
    reach_in = {}   # (layer, conn index) -> (hx, hy, hc) from the whole source
    for l in qnet.layers:
        for j, conn in enumerate(l.inputs):
            reach_in[(l.name, j)] = connection_hits(qnet, l, conn, None, placement.grids[l.name])
    syn_of = {}     # (part id, conn index) -> (core, syn)
    esu_rows = [[] for _ in range(cfg.n_cores)]
    for core, pids in enumerate(on_core):
        for pid in pids:
            p = parts[pid]
            layer = qnet.layer(p.layer)
            _, iy, ix, ig = grid_pos[pid]
            ws = weight_shape(qnet, layer)
            for j, conn in enumerate(layer.inputs):
                hx, hy, hc = reach_in[(layer.name, j)]
                if not (hx[0, ix] and hy[0, iy] and hc[0, ig]):
                    continue
                src_c, src_h, src_w = qnet.shape_of(conn.src)
                syn_of[(pid, j)] = (core, len(esu_rows[core]))
                dense = conn.kind == Kind.DENSE
                esu_rows[core].append(dict(
                    kind=int(conn.kind), wconst=int(conn.wconst is not None),
                    wval=int(conn.wconst or 0), k=conn.kw, s_log2=conn.sw.bit_length() - 1,
                    cc=p.c1 - p.c0 + 1, c0=p.c0, tw=p.x1 - p.x0 + 1, nbase=p.nbase,
                    wbase=p.wbase if conn.wconst is None else 0,
                    src_w=src_w if dense else 0, src_c=(ws.ci if ws else src_c) if dense else 0,
                    k_y=conn.kh, s_log2_y=conn.sh.bit_length() - 1, wshift=conn.wshift))

    # PEG entries: per source part, one per reached destination part and connection (+ HOST).
    consumers = {qnet.input_name: []}
    for l in qnet.layers:
        consumers[l.name] = []
    for l in qnet.layers:
        for j, conn in enumerate(l.inputs):
            consumers[conn.src].append((l, j, conn))
    out_tag = order[qnet.output]

    def entries(src: str, hits: list, iy: int, ix: int, ig: int, host: bool) -> list[dict]:
        rows = []
        for (dl, j, conn), (hx, hy, hc) in zip(consumers[src], hits):
            ids = placement.part_ids[dl.name]
            for jy, jx, jg in zip(*np.nonzero(hy[iy][:, None, None] & hx[ix][None, :, None] & hc[ig][None, None, :])):
                dpid = int(ids[jy, jx, jg])
                dp = parts[dpid]
                core, syn = syn_of[(dpid, j)]
                rows.append(dict(kind=int(conn.kind), dest_core=core, syn=syn, k=conn.kw,
                                 s_log2=conn.sw.bit_length() - 1, up_log2=conn.up.bit_length() - 1,
                                 pad=conn.pw, x0=dp.x0, x1=dp.x1, y0=dp.y0, y1=dp.y1, c0=dp.c0, c1=dp.c1,
                                 chan_off=conn.chan_off, k_y=conn.kh, s_log2_y=conn.sh.bit_length() - 1,
                                 pad_y=conn.ph))
        if host:
            rows.append(dict(kind=int(Kind.HOST), dest_core=0, syn=out_tag, k=0, s_log2=0, up_log2=0, pad=0,
                             x0=0, x1=0, y0=0, y1=0, c0=0, c1=0, chan_off=0, k_y=0, s_log2_y=0, pad_y=0))
        return rows

    pe, ed, pd = peg_entry(cfg, version), esu_desc(cfg, version), pop_desc(cfg, version)
    extra_words = [w for w in state_word_bits(cfg, version) if w not in ("acc", "sent")]
    hits_out = {name: [connection_hits(qnet, dl, conn, placement.grids[name] if name != qnet.input_name else None,
                                       placement.grids[dl.name]) for dl, j, conn in cons]
                for name, cons in consumers.items()}
    cores = []
    for core, pids in enumerate(on_core):
        peg_rows, pop_rows = [], []
        weights = np.zeros(cfg.weight_words_per_core, dtype=np.int8)
        acc = np.zeros(cfg.neurons_per_core, dtype=np.int64)
        neuron_words = {w: np.zeros(cfg.neurons_per_core, dtype=np.int64) for w in extra_words}
        weights_used = 0
        for pid in pids:
            p = parts[pid]
            layer = qnet.layer(p.layer)
            _, iy, ix, ig = grid_pos[pid]
            rows = entries(p.layer, hits_out[p.layer], iy, ix, ig, p.layer == qnet.output)
            tw, th, cc = p.x1 - p.x0 + 1, p.y1 - p.y0 + 1, p.c1 - p.c0 + 1
            pop_rows.append(dict(layer=order[p.layer], nbase=p.nbase, x0=p.x0, y0=p.y0, tw=tw, th=th, c0=p.c0,
                                 cc=cc, mult=layer.mult, shift=layer.shift, lo=layer.lo or 0, hi=layer.hi or 0,
                                 peg_base=len(peg_rows), peg_count=len(rows), **_neuron_fields(layer)))
            peg_rows += rows
            if p.weight_words:
                words = _slice_words(qnet, layer, p.c0, p.c1)
                weights[p.wbase:p.wbase + len(words)] = words
                weights_used = max(weights_used, p.wbase + len(words))
            bias = np.zeros(layer.shape[0], np.int64) if layer.bias is None else np.asarray(layer.bias)
            if bias.shape != (layer.shape[0],) or not np.all(bias == np.round(bias)):
                raise CompileError(f"layer {layer.name}: bias must be {layer.shape[0]} integers, got shape "
                                   f"{bias.shape}")
            neurons = slice(p.nbase, p.nbase + tw * th * cc)
            part_bias = np.tile(bias.astype(np.int64)[p.c0:p.c1 + 1], tw * th)
            if layer.neuron.model == "sigma_delta":     # the bias is the initial accumulator
                acc[neurons] = arith.wrap(part_bias, cfg.acc_bits)
            else:                                       # added every step: a per-neuron word
                top = 1 << (state_word_bits(cfg, version)["bias"] - 1)
                if part_bias.size and (part_bias.min() < -top or part_bias.max() >= top):
                    raise CompileError(f"layer {layer.name}: bias does not fit the {top.bit_length()}-bit per-neuron "
                                       f"bias word ({-top}..{top - 1})")
                neuron_words["bias"][neurons] = part_bias
        cols = lambda rows, lay: {f.name: [r[f.name] for r in rows] for f in lay.fields}  # noqa: E731
        cores.append(CoreTables(
            pop=_checked(pd, cols(pop_rows, pd), f"core {core} population table"),
            esu=_checked(ed, cols(esu_rows[core], ed), f"core {core} ESU table"),
            peg=_checked(pe, cols(peg_rows, pe), f"core {core} PEG table"),
            esu_count=len(esu_rows[core]), pop_count=len(pop_rows), weights=weights, acc_init=acc,
            sent_init=np.zeros(cfg.neurons_per_core, dtype=np.int64), weights_used=weights_used, words_init=neuron_words))
        for what, n, cap in (("PEG entries", len(peg_rows), cfg.peg_entries_per_core),
                             ("ESU descriptors", len(esu_rows[core]), cfg.esu_descriptors_per_core),
                             ("populations", len(pop_rows), cfg.populations_per_core)):
            if n > cap:
                raise CompileError(f"core {core}: placement needs {n} {what} but a core has {cap}; map again")
    in_rows = entries(qnet.input_name, hits_out[qnet.input_name], 0, 0, 0, False)
    if len(in_rows) > cfg.input_peg_entries:
        raise CompileError(f"the input port needs {len(in_rows)} PEG entries but input_peg_entries is "
                           f"{cfg.input_peg_entries}; map again")
    in_c, in_h, in_w = qnet.input_shape
    regs = dict(in_w=in_w, in_h=in_h, in_c=in_c, input_peg_count=len(in_rows), n_layers=len(qnet.layers))
    out = qnet.layer(qnet.output)
    metadata = dict(
        network=qnet.name, input_name=qnet.input_name, input_shape=list(qnet.input_shape),
        input_scale=float(qnet.input_scale), input_hi=int(qnet.input_hi),
        layers=[dict(name=l.name, shape=list(l.shape), tag=i) for i, l in enumerate(qnet.layers)],
        output=qnet.output, output_shape=list(out.shape), output_tag=out_tag,
        output_scale=float(qnet.output_scale))
    if features:    # only extended tables carry these: version-1 bundles stay bit-identical
        for entry, layer in zip(metadata["layers"], qnet.layers):
            entry["model"] = layer.neuron.model
        metadata.update(extended=features, pipelined=bool(qnet.pipelined), reset_interval=int(qnet.reset_interval),
                        input_mode=qnet.input_mode, input_lo=int(qnet.input_lo))
    return Tables(cfg, regs, _checked(pe, {f.name: [r[f.name] for r in in_rows] for f in pe.fields},
                                      "input PEG table"), cores, metadata, version)


# ---------------------------------------------------------------------------------------
# Words for the RegisterMap windows
def _to_u32(v: np.ndarray) -> np.ndarray:
    """Signed values -> their 32-bit two's-complement words (sign-extended)."""
    return (np.asarray(v, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).reshape(-1, 1)


def weights_to_words(weights: np.ndarray, used: int) -> np.ndarray:
    """int8 weights -> (n, 1) uint32, four per word, little-endian (weight 4i in bits 7..0)."""
    n = -(-used // 4) * 4
    b = np.asarray(weights[:n], dtype=np.int8).view(np.uint8).astype(np.uint32).reshape(-1, 4)
    return (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)).astype(np.uint32).reshape(-1, 1)


def words_to_weights(words: np.ndarray, size: int) -> np.ndarray:
    w = np.asarray(words, dtype=np.uint32).reshape(-1)
    b = np.stack([(w >> s) & 0xFF for s in (0, 8, 16, 24)], axis=1).astype(np.uint8).reshape(-1)
    out = np.zeros(size, dtype=np.int8)
    out[:len(b)] = b.view(np.int8)
    return out


def tables_to_words(tables: Tables, version: int | None = None, words=None) -> dict[tuple, np.ndarray]:
    """{(core or None, window name): uint32 array (entries, window words)} to write at
    RegisterMap(cfg, version) window addresses (entry i, word j at window.addr(i, j)).

    `version` (default: the tables' own) may be later than the tables' (version-1 tables in the
    fabric's version-2 layouts, `at_version`); `words` names the per-neuron words to write
    (default: every word of the version).

    Only what is used is written: the entries of every table, weight words up to the last used
    one, and acc/sent of the neurons up to the last one in a population (writing ACC marks those
    neurons dirty, so the first frame evaluates all of them)."""
    cfg, v = tables.cfg, tables.version if version is None else version
    if v < tables.version:
        raise ValueError(f"version-{tables.version} tables cannot be written as version {v}")
    pe, ed, pd = peg_entry(cfg, v), esu_desc(cfg, v), pop_desc(cfg, v)
    out = {(None, "input_peg"): pe.pack(at_version(pe, tables.input_peg))}
    for c, ct in enumerate(tables.cores):
        n = ct.neurons_used
        out[(c, "pop")] = pd.pack(at_version(pd, ct.pop))
        out[(c, "esu")] = ed.pack(at_version(ed, ct.esu))
        out[(c, "peg")] = pe.pack(at_version(pe, ct.peg))
        out[(c, "weights")] = weights_to_words(ct.weights, ct.weights_used)
        initial = ct.initial_words()
        for word in state_word_bits(cfg, v):
            if words is None or word in words:
                out[(c, word)] = _to_u32(initial.get(word, np.zeros(n, np.int64))[:n])
    return out
