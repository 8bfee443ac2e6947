"""The bit-exact golden model: executes compiled (or decoded) tables, not the network.

It follows DESIGN.md's PEG, ESU and evaluation pseudo-code, vectorised with numpy: the spikes
of a population go through its PEG entries as one (spikes x entries) broadcast, the packets of
one (core, descriptor) are expanded into their kernel windows together, and the synaptic
contributions are summed per neuron (np.add.reduceat / np.add.at) in int64 and wrapped.
Accumulators wrap in two's complement, so the order of contributions does not change results.

Counters per core (names of layouts.CORE_COUNTERS): packets_in (packets arriving at the core,
dropped ones included), synops ((neuron, weight) pairs), spikes, packets_out (packets the core's
PEG sends, HOST packets included), dropped (packets with syn >= esu_count or a descriptor of
kind HOST, plus pairs whose neuron or weight address lies outside the core's memories and DW
pairs for a channel outside the part: compiled tables never produce the latter).

Time steps (DESIGN.md "Time steps"): one frame is one time step.  A population evaluates the
neurons a synapse touched (dirty) and the live ones (arith.live: their state changes without
input, e.g. a decaying LIF voltage); nothing else, so evaluation stays proportional to activity.
FrameResult.evaluations counts them per core.  Pipelined tables evaluate the layers in reverse
order, so a layer's events reach its consumers (already evaluated this frame) one step later.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import arith, geometry
from ..compiler.tables import Tables, at_version
from ..errors import SynfabError
from ..frontend.ir import INPUT_MODES
from ..layouts import EXTENDED_LAYOUT_VERSION, NEURON_MODEL_CODES, Kind, esu_desc, peg_entry

EVENT_DTYPE = np.dtype([("x", "<i4"), ("y", "<i4"), ("c", "<i4"), ("d", "<i4")])
EVENT_FIELDS = EVENT_DTYPE.names        # ("x", "y", "c", "d")
OUT_DTYPE = np.dtype([("x", "<i4"), ("y", "<i4"), ("c", "<i4"), ("d", "<i4"), ("tag", "<i4")])
MODEL_COUNTERS = ("packets_in", "synops", "spikes", "packets_out", "dropped")
_PACKET_FIELDS = ("dest", "syn", "x", "y", "nx", "ny", "kx", "ky", "c", "d")
# Pairs expanded at once (bounds the memory of one expansion).
_CHUNK_PAIRS = 1 << 21


class ModelError(SynfabError):
    """Tables or events the model cannot execute."""


@dataclass
class FrameResult:
    events: np.ndarray                  # OUT_DTYPE: HOST packets in emission order
    layer_spikes: np.ndarray            # int64 (n_layers,)
    spikes: list[np.ndarray]            # per layer: EVENT_DTYPE spikes (layer coordinates, value d)
    counters: dict[str, np.ndarray]     # MODEL_COUNTERS -> int64 (n_cores,)
    input_dropped: int = 0
    input_packets: int = 0              # packets the input port sent into the fabric
    evaluations: np.ndarray | None = None   # int64 (n_cores,): neurons evaluated (dirty or live)
    synops: int = field(init=False)

    def __post_init__(self):
        self.synops = int(self.counters["synops"].sum())

    def sorted_events(self) -> np.ndarray:
        return np.sort(self.events, order=["tag", "c", "y", "x", "d"])


def event_columns(events) -> dict[str, np.ndarray]:
    """Structured array or mapping with x, y, c, d -> dict of int64 arrays."""
    try:
        cols = {k: np.asarray(events[k], dtype=np.int64).reshape(-1) for k in EVENT_FIELDS}
    except (KeyError, ValueError, IndexError, TypeError):
        raise ModelError("events must have fields x, y, c, d (a structured array or a dict of arrays)") from None
    if len({len(v) for v in cols.values()}) > 1:
        raise ModelError("event fields x, y, c, d have different lengths")
    return cols


# -- what the input port sends: the one definition (DESIGN.md "Time steps") -----------------------
def step_input(prev, cur, mode: str = "levels") -> np.ndarray:
    """The input values one step sends, dense (C, H, W) int64: the changes from prev (levels; prev
    None = zeros, the state after reset), the frame's values as they are (events: Lava messages),
    or 1 for each non-zero value (spikes).  Its non-zero entries are the step's input events."""
    if mode not in INPUT_MODES:
        raise ModelError(f"unknown input mode {mode!r}; use levels, events or spikes")
    cur = np.asarray(cur, dtype=np.int64)
    if mode == "events":
        return cur
    if mode == "spikes":
        return (cur != 0).astype(np.int64)
    return cur - (0 if prev is None else np.asarray(prev, dtype=np.int64))


def changes(values) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, c, d (int64) of the non-zero entries of a (C, H, W) array, in (c, y, x) order."""
    c, y, x = np.nonzero(values)
    return x, y, c, values[c, y, x]


def input_events(prev, cur) -> np.ndarray:
    """EVENT_DTYPE events (d = cur - prev where they differ) turning input activation prev into cur.
    prev None means all zeros (the state after reset)."""
    cur = np.asarray(cur, dtype=np.int64)
    prev = np.zeros_like(cur) if prev is None else np.asarray(prev, dtype=np.int64)
    if prev.shape != cur.shape or cur.ndim != 3:
        raise ModelError(f"input activations must both be (C, H, W), got {prev.shape} and {cur.shape}")
    x, y, c, d = changes(step_input(prev, cur))
    ev = np.zeros(len(c), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["c"], ev["d"] = x, y, c, d
    return ev


def frame_events(prev, cur, mode: str = "levels") -> np.ndarray:
    """The input events of one frame (step_input's non-zero values) as EVENT_DTYPE."""
    if mode == "levels":
        return input_events(prev, cur)
    return input_events(None, step_input(None, cur, mode))


def _concat(parts: list[dict], names) -> dict[str, np.ndarray]:
    if not parts:
        return {k: np.zeros(0, dtype=np.int64) for k in names}
    return {k: np.concatenate([p[k] for p in parts]) for k in names}


_MODEL_NAMES = {code: name for name, code in NEURON_MODEL_CODES.items()}


def _peg_columns(cols: dict, cfg) -> dict[str, np.ndarray]:
    """PEG columns with the version-2 fields (version-1 tables: square, compiler.at_version)."""
    return at_version(peg_entry(cfg, EXTENDED_LAYOUT_VERSION), cols)


def _esu_columns(cols: dict, cfg) -> dict[str, np.ndarray]:
    """ESU columns with the version-2 fields (version-1 tables: square, no weight shift)."""
    return at_version(esu_desc(cfg, EXTENDED_LAYOUT_VERSION), cols)


def _population_neuron(pop: dict, k: int) -> tuple[arith.Neuron, arith.Activation]:
    """The neuron model and requantization of population k (version-1 tables: default sigma-delta)."""
    f = {name: int(col[k]) for name, col in pop.items()}
    lo, hi = f["lo"], f["hi"]
    if "model" not in f:
        return arith.Neuron(), arith.Activation(f["mult"], f["shift"], lo, hi)
    try:
        neuron = arith.Neuron(_MODEL_NAMES[f["model"]], theta=f["theta"], msg_shift=f["msg_shift"],
                              fire_gt=bool(f["fire_gt"]),
                              reset_to=f["v_reset"] if f["reset_to_value"] else None,
                              v_min=f["v_min"] if f["v_min_on"] else None, multi_spike=bool(f["multi_spike"]),
                              du=f["du"], dv=f["dv"], refractory=f["refractory"])
    except arith.NeuronError as e:
        raise ModelError(f"population {k}: {e}") from None
    return neuron, arith.Activation(f["mult"], f["shift"], None if f["lo_open"] else lo, None if f["hi_open"] else hi)


class _Core:
    """Decoded tables of one core as plain int64 columns."""

    def __init__(self, ct, cfg):
        self.pop = {k: np.asarray(v, dtype=np.int64) for k, v in ct.pop.items()}
        self.esu = _esu_columns(ct.esu, cfg)
        self.peg = _peg_columns(ct.peg, cfg)
        self.pop_count, self.esu_count = int(ct.pop_count), int(ct.esu_count)
        self.weights = np.asarray(ct.weights, dtype=np.int64)
        self.neurons_used = ct.neurons_used
        self.neurons = [_population_neuron(self.pop, k) for k in range(self.pop_count)]


class Model:
    """Event-driven execution of Tables; `threshold` is the sigma-delta firing threshold."""

    def __init__(self, tables: Tables, threshold: int = 0):
        self.tables = tables
        self.cfg = cfg = tables.cfg
        self.threshold = int(threshold)
        if self.threshold < 0:
            raise ModelError(f"threshold must be >= 0, got {threshold}")
        self.cores = [_Core(ct, cfg) for ct in tables.cores]
        if len(self.cores) != cfg.n_cores:
            raise ModelError(f"tables have {len(self.cores)} cores but the fabric has {cfg.n_cores}")
        self.input_peg = _peg_columns(tables.input_peg, cfg)
        self.n_layers = int(tables.regs["n_layers"])
        self.in_w, self.in_h, self.in_c = (int(tables.regs[k]) for k in ("in_w", "in_h", "in_c"))
        n_in = int(tables.regs["input_peg_count"])
        self.input_peg = {k: v[:n_in] for k, v in self.input_peg.items()}
        for name, peg in [("input port", self.input_peg)] + [(f"core {i}", c.peg) for i, c in enumerate(self.cores)]:
            bad = (peg["kind"] != Kind.HOST) & (peg["dest_core"] >= cfg.n_cores)
            if bad.any():
                raise ModelError(f"{name}: a PEG entry sends to core {int(peg['dest_core'][bad][0])} of a "
                                 f"{cfg.n_cores}-core fabric")
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """State right after loading the tables: every per-neuron word at its initial value (acc =
        bias of sigma-delta neurons, the bias word of the others, the rest 0), every used neuron
        dirty (the host's write of ACC marks it), none live, time step 0."""
        n = self.cfg.neurons_per_core
        self._words = [{w: np.asarray(v, dtype=np.int64).copy() for w, v in ct.initial_words().items()}
                       for ct in self.tables.cores]
        self._dirty = [np.zeros(n, dtype=bool) for _ in self.cores]
        self._live = [np.zeros(n, dtype=bool) for _ in self.cores]
        for d, core in zip(self._dirty, self.cores):
            d[:core.neurons_used] = True
        self.step = 0

    @property
    def _acc(self) -> list[np.ndarray]:
        return [w["acc"] for w in self._words]

    def acc(self, core: int) -> np.ndarray:
        return self._words[core]["acc"].copy()

    def sent(self, core: int) -> np.ndarray:
        return self._words[core]["sent"].copy()

    def word(self, core: int, name: str) -> np.ndarray:
        """Any per-neuron word of a core (acc, sent; version 2: u, v, ref, bias)."""
        if name not in self._words[core]:
            raise ModelError(f"no per-neuron word {name!r} in these tables; they keep {', '.join(self._words[core])}")
        return self._words[core][name].copy()

    def words(self, core: int) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._words[core].items()}

    def dirty(self, core: int) -> np.ndarray:
        return self._dirty[core].copy()

    def live(self, core: int) -> np.ndarray:
        return self._live[core].copy()

    def _assemble(self, name: str, state: list[np.ndarray]) -> np.ndarray:
        md = self.tables.metadata
        names = [l["name"] for l in md["layers"]]
        if name not in names:
            raise ModelError(f"no layer {name!r} in these tables; layers: {', '.join(names)}")
        idx = names.index(name)
        out = np.zeros(md["layers"][idx]["shape"], dtype=np.int64)
        for ci, core in enumerate(self.cores):
            p = core.pop
            for k in np.flatnonzero(p["layer"][:core.pop_count] == idx):
                nb, x0, y0, tw, th, c0, cc = (int(p[f][k]) for f in ("nbase", "x0", "y0", "tw", "th", "c0", "cc"))
                block = state[ci][nb:nb + tw * th * cc].reshape(th, tw, cc).transpose(2, 0, 1)
                out[c0:c0 + cc, y0:y0 + th, x0:x0 + tw] = block
        return out

    def activation(self, name: str) -> np.ndarray:
        """(C, H, W) `sent` of a layer, assembled from its populations."""
        return self._assemble(name, [w["sent"] for w in self._words])

    def accumulator(self, name: str) -> np.ndarray:
        """(C, H, W) `acc` of a layer, assembled from its populations."""
        return self._assemble(name, self._acc)

    def layer_word(self, name: str, word: str) -> np.ndarray:
        """(C, H, W) of any per-neuron word of a layer (u, v, ref, bias of lif layers...)."""
        if word not in self._words[0]:
            raise ModelError(f"no per-neuron word {word!r} in these tables; they keep {', '.join(self._words[0])}")
        return self._assemble(name, [w[word] for w in self._words])

    def output_state(self) -> np.ndarray:
        return self.activation(self.tables.metadata["output"])

    # -- one frame -------------------------------------------------------------------------
    def run_frame(self, events) -> FrameResult:
        """One time step: the input events are delivered, then every layer is evaluated (in
        order, each layer's events delivered before the next; pipelined: in reverse order, so
        they are seen one step later)."""
        ev = event_columns(events)
        n_cores = self.cfg.n_cores
        self._cnt = {k: np.zeros(n_cores, dtype=np.int64) for k in MODEL_COUNTERS}
        self._evaluations = np.zeros(n_cores, dtype=np.int64)
        self._out: list[dict] = []
        x, y, c, d = ev["x"], ev["y"], ev["c"], ev["d"]
        ok = (x >= 0) & (x < self.in_w) & (y >= 0) & (y < self.in_h) & (c >= 0) & (c < self.in_c)
        packets = self._peg(self.input_peg, x[ok], y[ok], c[ok], d[ok])
        input_packets = len(packets["dest"])
        self._deliver(packets)
        layer_spikes = np.zeros(self.n_layers, dtype=np.int64)
        spikes = [np.zeros(0, dtype=EVENT_DTYPE)] * self.n_layers
        order = range(self.n_layers - 1, -1, -1) if self.tables.pipelined else range(self.n_layers)
        for layer in order:
            spikes[layer] = self._evaluate_layer(layer)
            layer_spikes[layer] = len(spikes[layer])
        self.step += 1
        o = _concat(self._out, ("x", "y", "c", "d", "tag"))
        out = np.zeros(len(o["d"]), dtype=OUT_DTYPE)
        for name in OUT_DTYPE.names:
            out[name] = o[name]
        return FrameResult(out, layer_spikes, spikes, self._cnt, int((~ok).sum()), input_packets,
                           self._evaluations.copy())

    def _evaluate_layer(self, layer: int) -> np.ndarray:
        """Evaluate every population of a layer, then deliver its events (the drain)."""
        batch, fired = [], []
        for ci, core in enumerate(self.cores):
            for k in np.flatnonzero(core.pop["layer"][:core.pop_count] == layer):
                sx, sy, sc, sd = self._evaluate(ci, core, int(k))
                if len(sd) == 0:
                    continue
                self._cnt["spikes"][ci] += len(sd)
                fired.append(dict(x=sx, y=sy, c=sc, d=sd))
                base, count = int(core.pop["peg_base"][k]), int(core.pop["peg_count"][k])
                entries = {f: v[base:base + count] for f, v in core.peg.items()}
                batch.append(self._peg(entries, sx, sy, sc, sd, src_core=ci))
        self._deliver(_concat(batch, _PACKET_FIELDS))
        f = _concat(fired, EVENT_FIELDS)
        arr = np.zeros(len(f["d"]), dtype=EVENT_DTYPE)
        for name in EVENT_FIELDS:
            arr[name] = f[name]
        return arr

    def _resets(self, layer: int) -> bool:
        """Lava's LIFReset: layer i's u, v, ref are cleared at steps t == i (mod reset_interval)."""
        r = self.tables.reset_interval
        return bool(r) and self.step % r == layer % r

    def _evaluate(self, ci: int, core: _Core, k: int):
        """Evaluate the dirty and live neurons of population k: returns its events (x, y, c, d)."""
        p = core.pop
        nb, x0, y0, tw, th, c0, cc = (int(p[f][k]) for f in ("nbase", "x0", "y0", "tw", "th", "c0", "cc"))
        neuron, act = core.neurons[k]
        span = slice(nb, nb + tw * th * cc)
        local = np.flatnonzero(self._dirty[ci][span] | self._live[ci][span])
        idx = nb + local
        self._dirty[ci][idx] = False
        self._evaluations[ci] += len(idx)
        words = self._words[ci]
        state = {w: words[w][idx] for w in neuron.words}
        if self._resets(int(p["layer"][k])):
            state = arith.clear_state(neuron, state)
        state, values = arith.step(neuron, state, self.cfg.acc_bits, act, self.threshold)
        for w, v in state.items():
            words[w][idx] = v
        self._live[ci][idx] = arith.live(neuron, state)
        sent = values != 0
        local, d = local[sent], values[sent]
        pix = local // cc
        return x0 + pix % tw, y0 + pix // tw, c0 + local % cc, d

    def _peg(self, e: dict, x, y, c, d, src_core: int | None = None) -> dict[str, np.ndarray]:
        """DESIGN.md PEG for spikes (x, y, c, d) through entries e: packets, spike-major.
        HOST packets go to the output list."""
        n_e = len(e["kind"])
        if n_e == 0 or len(d) == 0:
            return _concat([], _PACKET_FIELDS)
        per_chunk = max(1, _CHUNK_PAIRS // n_e)
        parts = []
        for s0 in range(0, len(d), per_chunk):
            parts.append(self._peg_chunk(e, x[s0:s0 + per_chunk], y[s0:s0 + per_chunk], c[s0:s0 + per_chunk],
                                         d[s0:s0 + per_chunk], src_core))
        return _concat(parts, _PACKET_FIELDS)

    def _peg_chunk(self, e, x, y, c, d, src_core):
        kind = e["kind"][None]
        geo = (kind == Kind.CONV) | (kind == Kind.DW)
        c_in = c[:, None] + e["chan_off"][None]
        valid = (kind != Kind.DW) | ((e["c0"][None] <= c_in) & (c_in <= e["c1"][None]))
        axes = {}
        for ax, pos, a0, a1, kf, sf, pf in (("x", x, e["x0"], e["x1"], "k", "s_log2", "pad"),
                                            ("y", y, e["y0"], e["y1"], "k_y", "s_log2_y", "pad_y")):
            s_log2 = e[sf][None]
            pu = geometry.padded(pos[:, None], e["up_log2"][None], e[pf][None])
            lo, hi = geometry.reach(pu, e[kf][None], s_log2)
            lo, hi = np.maximum(lo, a0[None]), np.minimum(hi, a1[None])
            valid &= ~geo | (lo <= hi)
            axes[ax] = (np.where(geo, lo - a0[None], pos[:, None]), np.where(geo, hi - lo + 1, 1),
                        np.where(geo, geometry.tap(pu, lo, s_log2), 0))
        si, ei = np.nonzero(valid)
        if src_core is not None:
            self._cnt["packets_out"][src_core] += len(si)
        host = e["kind"][ei] == Kind.HOST
        if host.any():
            hs, he = si[host], ei[host]
            self._out.append(dict(x=x[hs], y=y[hs], c=c[hs], d=d[hs], tag=e["syn"][he]))
            si, ei = si[~host], ei[~host]
        return dict(dest=e["dest_core"][ei], syn=e["syn"][ei],
                    x=axes["x"][0][si, ei], y=axes["y"][0][si, ei], nx=axes["x"][1][si, ei],
                    ny=axes["y"][1][si, ei], kx=axes["x"][2][si, ei], ky=axes["y"][2][si, ei],
                    c=c_in[si, ei], d=d[si])

    # -- ESU and neuron update ---------------------------------------------------------------
    def _deliver(self, pk: dict) -> None:
        if len(pk["dest"]) == 0:
            return
        n_cores = self.cfg.n_cores
        self._cnt["packets_in"] += np.bincount(pk["dest"], minlength=n_cores)
        order = np.lexsort((pk["syn"], pk["dest"]))
        key = pk["dest"][order] * (1 << 20) + pk["syn"][order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        ends = np.r_[starts[1:], len(key)]
        for s0, s1 in zip(starts, ends):
            sel = order[s0:s1]
            core, syn = int(pk["dest"][sel[0]]), int(pk["syn"][sel[0]])
            if syn >= self.cores[core].esu_count:
                self._cnt["dropped"][core] += len(sel)
                continue
            self._esu(core, syn, {k: v[sel] for k, v in pk.items()})
        for words in self._words:
            words["acc"] = arith.wrap(words["acc"], self.cfg.acc_bits)

    def _esu(self, ci: int, syn: int, pk: dict) -> None:
        core = self.cores[ci]
        ds = {k: int(v[syn]) for k, v in core.esu.items()}
        if ds["kind"] == Kind.DENSE:
            self._esu_dense(ci, core, ds, pk)
            return
        if ds["kind"] not in (Kind.CONV, Kind.DW):
            self._cnt["dropped"][ci] += len(pk["d"])
            return
        # Packets are expanded in chunks bounding the number of pairs per step.
        per_packet = int(pk["nx"].max()) * int(pk["ny"].max()) * (ds["cc"] if ds["kind"] == Kind.CONV else 1)
        step = max(1, _CHUNK_PAIRS // max(1, per_packet))
        for s0 in range(0, len(pk["d"]), step):
            self._esu_window(ci, core, ds, {k: v[s0:s0 + step] for k, v in pk.items()})

    def _esu_window(self, ci: int, core: _Core, ds: dict, pk: dict) -> None:
        sx, sy = 1 << ds["s_log2"], 1 << ds["s_log2_y"]
        kw, kh, cc, tw, nbase, wbase = ds["k"], ds["k_y"], ds["cc"], ds["tw"], ds["nbase"], ds["wbase"]
        ny_max, nx_max = int(pk["ny"].max()), int(pk["nx"].max())
        j = np.arange(ny_max)[None, :, None]
        i = np.arange(nx_max)[None, None, :]
        p, jj, ii = np.nonzero((j < pk["ny"][:, None, None]) & (i < pk["nx"][:, None, None]))
        pix = (pk["y"][p] + jj) * tw + pk["x"][p] + ii
        kyp, kxp = pk["ky"][p] - jj * sy, pk["kx"][p] - ii * sx
        d, c = pk["d"][p], pk["c"][p]
        acc, dirty, n_mem = self._acc[ci], self._dirty[ci], self.cfg.neurons_per_core
        w_mem = len(core.weights)
        if ds["kind"] == Kind.DW:
            co = c - ds["c0"]
            neuron = nbase + pix * cc + co
            part = (co >= 0) & (co < cc)   # a DW packet for a channel outside the part: dropped
            self._cnt["dropped"][ci] += int((~part).sum())
            self._pairs_guarded(ci, core, ds, neuron[part], (wbase + (co * kh + kyp) * kw + kxp)[part], d[part])
            return
        # CONV: every position carries cc pairs (one per output channel of the part).
        first = nbase + pix * cc
        row = (c * kh + kyp) * kw + kxp
        in_range = first.min() >= 0 and first.max() + cc <= n_mem
        if not ds["wconst"]:
            in_range = in_range and row.min() >= 0 and wbase + (row.max() + 1) * cc <= w_mem
        co = np.arange(cc)[None]
        if not in_range:   # only malformed tables get here
            self._pairs_guarded(ci, core, ds, (first[:, None] + co).reshape(-1),
                                (wbase + row[:, None] * cc + co).reshape(-1), np.repeat(d, cc))
            return
        self._cnt["synops"][ci] += len(d) * cc
        if ds["wconst"]:
            vals = np.repeat(arith.synapse(ds["wval"], d, ds["wshift"]), cc)
        else:
            wm = core.weights[wbase:wbase + (int(row.max()) + 1) * cc].reshape(-1, cc)
            vals = arith.synapse(wm[row], d[:, None], ds["wshift"]).reshape(-1)
        targets = (first[:, None] + co).reshape(-1)
        np.add.at(acc, targets, vals)
        dirty[targets] = True

    def _pairs_guarded(self, ci: int, core: _Core, ds: dict, neuron, widx, d) -> None:
        """Apply pairs one by one in effect: a pair whose neuron or weight address lies outside
        the core's memories is dropped and counted (as the hardware's guard does)."""
        ok = (neuron >= 0) & (neuron < self.cfg.neurons_per_core)
        if not ds["wconst"]:
            ok &= (widx >= 0) & (widx < len(core.weights))
        self._cnt["dropped"][ci] += int((~ok).sum())
        self._cnt["synops"][ci] += int(ok.sum())
        w = np.full(len(d), ds["wval"], np.int64) if ds["wconst"] else core.weights[np.where(ok, widx, 0)]
        np.add.at(self._acc[ci], neuron[ok], arith.synapse(w[ok], d[ok], ds["wshift"]))
        self._dirty[ci][neuron[ok]] = True

    def _esu_dense(self, ci: int, core: _Core, ds: dict, pk: dict) -> None:
        cc, nbase, wbase = ds["cc"], ds["nbase"], ds["wbase"]
        acc, dirty = self._acc[ci], self._dirty[ci]
        i = (pk["y"] * ds["src_w"] + pk["x"]) * ds["src_c"] + pk["c"]
        d = pk["d"]
        in_range = nbase + cc <= self.cfg.neurons_per_core
        if not ds["wconst"]:
            in_range = in_range and i.min() >= 0 and wbase + (int(i.max()) + 1) * cc <= len(core.weights)
        if not in_range:   # only malformed tables get here
            co = np.arange(cc)[None]
            self._pairs_guarded(ci, core, ds, np.broadcast_to(nbase + co, (len(d), cc)).reshape(-1),
                                (wbase + i[:, None] * cc + co).reshape(-1), np.repeat(d, cc))
            return
        if ds["wconst"]:     # sums of synapses: (w * d1 + w * d2) << s = w * (d1 + d2) << s
            total = np.full(cc, arith.synapse(ds["wval"], int(d.sum()), ds["wshift"]), dtype=np.int64)
        else:
            wm = core.weights[wbase:wbase + (int(i.max()) + 1) * cc].reshape(-1, cc)
            total = arith.synapse(wm[i], d[:, None], ds["wshift"]).sum(axis=0)
        self._cnt["synops"][ci] += len(d) * cc
        acc[nbase:nbase + cc] += total
        dirty[nbase:nbase + cc] = True
