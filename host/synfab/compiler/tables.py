"""Compiled tables: what every core and the input port are loaded with, as columns of entries,
and the 32-bit words of every RegisterMap window they become.

A table (PEG entries, ESU descriptors, population descriptors) is built as a numpy structured
array of int64 fields (`records`, one field per layout field) and kept as checked columns
(`columns`: field -> int64 array), the form the golden model, the bundle and the devices read.
`pack` / `unpack` turn columns into window words and back, vectorised over the entries (the
layouts' own pack/unpack loop over them); they give the same words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import arith
from ..config import FabricConfig
from ..errors import SynfabError
from ..layouts import (LAYOUT_VERSION, NEURON_MODEL_CODES, Layout, esu_desc, peg_entry, pop_desc, state_word_bits,
                       unsupported_features)

# The per-neuron words every core has (CoreTables.acc_init, sent_init); the others are per model.
BASE_WORDS = ("acc", "sent")
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
        return unsupported_features(self.extended_features, self.cfg)

    @property
    def state_words(self) -> tuple[str, ...]:
        """The per-neuron words the tables' neuron models use (arith.MODEL_WORDS), in window order."""
        used = {w for l in self.metadata.get("layers", []) for w in arith.MODEL_WORDS[l.get("model", "sigma_delta")]}
        return tuple(w for w in arith.STATE_WORDS if w in used | set(BASE_WORDS))

    @property
    def pipelined(self) -> bool:
        return bool(self.metadata.get("pipelined", False))

    @property
    def reset_interval(self) -> int:
        return int(self.metadata.get("reset_interval", 0))

    @property
    def input_mode(self) -> str:
        return self.metadata.get("input_mode", "levels")


# ---------------------------------------------------------------------------------------
# Entries as structured arrays, kept as checked columns
def record_dtype(names) -> np.dtype:
    """One int64 field per name (a table's entries as a structured array)."""
    return np.dtype([(n, np.int64) for n in names])


def records(names, n: int = 0) -> np.ndarray:
    """n zeroed entries with the fields `names`."""
    return np.zeros(n, dtype=record_dtype(names))


def columns(layout: Layout, entries: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """The layout's fields of structured `entries` as int64 columns, checked against their widths."""
    return _checked(layout, {f.name: entries[f.name] for f in layout.fields}, what)


def _checked(layout, cols: dict, what: str) -> dict[str, np.ndarray]:
    cols = {f.name: np.asarray(cols[f.name], dtype=np.int64).reshape(-1) for f in layout.fields}
    try:
        layout.check(cols, what)
    except ValueError as e:
        raise CompileError(f"{e}; the network exceeds what this fabric's table fields hold") from None
    return cols



# ---------------------------------------------------------------------------------------
# Version-1 entries in version-2 layouts
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


# ---------------------------------------------------------------------------------------
# Vectorised pack / unpack (the same words as Layout.pack / Layout.unpack)
def pack(layout: Layout, cols: dict) -> np.ndarray:
    """Columns of field values -> (n, words32) uint32, checked like Layout.pack."""
    layout.check(cols)
    n = len(np.asarray(cols[layout.fields[0].name]).reshape(-1))
    out = np.zeros((n, layout.words32), dtype=np.uint64)
    low32 = np.uint64(0xFFFFFFFF)
    for f in layout.fields:
        v = np.asarray(cols[f.name], dtype=np.int64).reshape(-1).astype(np.uint64) & np.uint64((1 << f.width) - 1)
        off = layout.offsets[f.name]
        for j in range(off // 32, (off + f.width - 1) // 32 + 1):
            shift = off - 32 * j
            part = v << np.uint64(shift) if shift >= 0 else v >> np.uint64(-shift)
            out[:, j] |= part & low32
    return out.astype(np.uint32)


def unpack(layout: Layout, words) -> dict[str, np.ndarray]:
    """(n, words32) uint32 -> columns of field values (int64), as Layout.unpack."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1, layout.words32)
    out = {}
    for f in layout.fields:
        off = layout.offsets[f.name]
        v = np.zeros(len(w), dtype=np.uint64)
        for j in range(off // 32, (off + f.width - 1) // 32 + 1):
            shift = off - 32 * j
            v |= w[:, j] >> np.uint64(shift) if shift >= 0 else w[:, j] << np.uint64(-shift)
        col = (v & np.uint64((1 << f.width) - 1)).astype(np.int64)
        if f.signed:
            col = np.where(col >= (1 << (f.width - 1)), col - (1 << f.width), col)
        out[f.name] = col
    return out


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
    out = {(None, "input_peg"): pack(pe, at_version(pe, tables.input_peg))}
    for c, ct in enumerate(tables.cores):
        n = ct.neurons_used
        out[(c, "pop")] = pack(pd, at_version(pd, ct.pop))
        out[(c, "esu")] = pack(ed, at_version(ed, ct.esu))
        out[(c, "peg")] = pack(pe, at_version(pe, ct.peg))
        out[(c, "weights")] = weights_to_words(ct.weights, ct.weights_used)
        initial = ct.initial_words()
        for word in state_word_bits(cfg, v):
            if words is None or word in words:
                out[(c, word)] = _to_u32(initial.get(word, np.zeros(n, np.int64))[:n])
    return out
