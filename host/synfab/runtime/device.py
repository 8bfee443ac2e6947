"""One Device interface for every backend (model, Verilator sim, PYNQ board, LiteX board).

A device is loaded with compiled tables, then runs frames: a frame is a batch of input events
(x, y, c, d) closed by an end-of-frame marker; the device returns the frame's output events,
spikes per layer and counters.  Register-level backends share `RegisterDevice`, which does the
loading (with read-back), framing and decoding once; a backend only moves words.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ..errors import SynfabError
from ..layouts import (CORE_COUNTERS, EXTENDED_FEATURES, FABRIC_LAYOUT_VERSION, GLOBAL_COUNTERS, ID_MAGIC, LAYOUT_VERSION,
                       STREAM_BITS, STREAM_EVENT, RegisterMap, feature_name)
from ..compiler.tables import GLOBAL_TABLE_REGS
from ..model.golden import EVENT_FIELDS, OUT_DTYPE  # one definition of an output event

BEAT_BYTES = STREAM_BITS // 8          # bytes of one 64-bit stream beat, on any host link


class DeviceError(SynfabError):
    """The device refused an operation or answered something impossible."""


@dataclass
class FrameOutput:
    events: np.ndarray                      # OUT_DTYPE, in arrival order
    layer_spikes: np.ndarray                # spikes per evaluation step
    counters: dict = field(default_factory=dict)   # this frame's global counters + 'cores' list
    cycles: int | None = None               # clock cycles of this frame, where known
    evaluations: np.ndarray | None = None   # neurons evaluated per core (the golden model counts them)
    input_packets: int | None = None        # packets the input port sent into the mesh (the model knows)

    def sorted_events(self) -> np.ndarray:
        return np.sort(self.events, order=["tag", "c", "y", "x", "d"])


def stream_columns(events: dict, event_bits: int) -> dict:
    """x, y, c, d of input events as int64 columns; DeviceError where a value does not fit its
    field of a stream beat (layouts.STREAM_EVENT) or d does not fit the fabric's event_bits (the
    fabric would wrap it): such an event cannot be sent to any backend. Events that fit but lie
    outside the input layer are the fabric's to drop and count."""
    cols = {k: np.asarray(events[k], dtype=np.int64).reshape(-1) for k in EVENT_FIELDS}
    zeros = np.zeros(len(cols["x"]), np.int64)
    try:
        STREAM_EVENT.check({**cols, "tag": zeros, "eof": zeros}, "input event")
    except ValueError as e:
        raise DeviceError(str(e)) from None
    top = 1 << (event_bits - 1)
    bad = cols["d"][(cols["d"] < -top) | (cols["d"] >= top)]
    if bad.size:
        raise DeviceError(f"input event: d={int(bad[0])} does not fit the fabric's {event_bits}-bit events "
                          f"({-top}..{top - 1}); scale the input down")
    return cols


def check_fabric_runs(tables, backend: str) -> None:
    """DeviceError (one line) when the tables need what their fabric's gateware does not run: of the
    version-2 features (layouts.EXTENDED_FEATURES) every fabric runs all but the neuron models it
    does not carry (FabricConfig.neuron_models, layouts.gateware_features); such bundles run on the
    model backend, or on the gateware once compiled for a fabric that carries their models."""
    features = tables.unsupported_features
    if tables.version > FABRIC_LAYOUT_VERSION:
        raise DeviceError(f"{backend}: the fabric does not decode table layout version {tables.version} (it decodes "
                          f"{FABRIC_LAYOUT_VERSION}); run this bundle with --backend model")
    if features:
        shown = "; ".join(features[:4]) + (f"; and {len(features) - 4} more" if len(features) > 4 else "")
        raise DeviceError(f"{backend}: fabric {tables.cfg.name!r} does not carry {shown} (its neuron_models: "
                          f"{', '.join(tables.cfg.models)}); compile for a fabric that carries them (e.g. --fabric "
                          f"loihi) or run this bundle with --backend model")
    if tables.version > LAYOUT_VERSION:
        _check_activations_fit_sent(tables, backend)
        # Output events leave in the stream word's d (the mapper keeps version-1 and geometry-only
        # networks within it; the others' outputs are event_bits wide).
        top = (1 << (STREAM_EVENT.by_name["d"].width - 1)) - 1
        bound = output_event_bound(tables)
        if bound > top:
            raise DeviceError(f"{backend}: output layer {tables.metadata['output']}'s events reach +-{bound} but the "
                              f"output stream carries +-{top}; run this bundle with --backend model")


def _check_activations_fit_sent(tables, backend: str) -> None:
    """A fabric keeps each neuron's last activation in sent (layouts.gateware_word_bits): a
    sigma-delta population whose activation range exceeds it is refused in one line."""
    from ..layouts import gateware_word_bits, state_word_bits
    from ..model.golden import _population_neuron
    bits = gateware_word_bits(tables.cfg)["sent"]
    if bits >= state_word_bits(tables.cfg, tables.version)["sent"]:
        return          # the mapper kept every activation within the tables' sent (checks._check_events)
    lo_min, hi_max = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    names = [l["name"] for l in tables.metadata.get("layers", [])]
    for ct in tables.cores:
        pop = {k: np.asarray(v, dtype=np.int64) for k, v in ct.pop.items()}
        for k in range(ct.pop_count):
            neuron, act = _population_neuron(pop, k)
            if neuron.model != "sigma_delta" or (act.lo is not None and act.hi is not None
                                                 and lo_min <= act.lo and act.hi <= hi_max):
                continue
            layer = int(pop["layer"][k])
            name = names[layer] if layer < len(names) else f"#{layer}"
            raise DeviceError(f"{backend}: layer {name}'s activation range {act.lo}..{act.hi} does not fit fabric "
                              f"{tables.cfg.name!r}'s {bits}-bit sent ({lo_min}..{hi_max}); compile for a fabric with "
                              f"more neuron models (e.g. --fabric loihi: sent of acc_bits + 1) or run this bundle "
                              f"with --backend model")


def output_event_bound(tables) -> int:
    """The largest |value| an output event of the tables' output layer can carry (arith.event_bound
    of its populations; a sigma-delta relay without clamp or scaling: the whole event width)."""
    from .. import arith
    from ..model.golden import _population_neuron
    md, cfg = tables.metadata, tables.cfg
    names = [l["name"] for l in md.get("layers", [])]
    if md.get("output") not in names:
        return 0
    idx, bound = names.index(md["output"]), 0
    for ct in tables.cores:
        pop = {k: np.asarray(v, dtype=np.int64) for k, v in ct.pop.items()}
        for k in np.flatnonzero(pop["layer"][:ct.pop_count] == idx):
            neuron, act = _population_neuron(pop, int(k))
            relay = (neuron.model == "sigma_delta" and neuron.msg_shift == 0 and act.lo is None and act.hi is None
                     and act.mult == 1 and act.shift == 0)
            b = (1 << (cfg.event_bits - 1)) if relay else arith.event_bound(neuron, act, cfg.acc_bits)
            bound = max(bound, min(b, 1 << (cfg.event_bits - 1)))
    return bound


def event_words(cols: dict) -> np.ndarray:
    """Input stream beats (layouts.STREAM_EVENT, uint64) of events x, y, c, d."""
    zeros = np.zeros(len(cols["x"]), np.int64)
    return STREAM_EVENT.pack64({k: np.asarray(cols[k], np.int64) for k in EVENT_FIELDS}
                               | {"tag": zeros, "eof": zeros})


def eof_word() -> np.ndarray:
    """The end-of-frame beat (eof = 1, sent with TLAST)."""
    return STREAM_EVENT.pack64({k: [0] for k in ("x", "y", "c", "d", "tag")} | {"eof": [1]})


def frame_beats(cols: dict) -> tuple[np.ndarray, np.ndarray]:
    """A frame's input beats and their TLAST flags: the events, then the end-of-frame beat."""
    words = np.concatenate([event_words(cols), eof_word()])
    lasts = np.zeros(len(words), dtype=np.uint8)
    lasts[-1] = 1
    return words, lasts


def events_array(x, y, c, d) -> dict:
    return {"x": np.asarray(x, np.int64), "y": np.asarray(y, np.int64),
            "c": np.asarray(c, np.int64), "d": np.asarray(d, np.int64)}


class Device(ABC):
    """What every backend offers."""
    name = "device"

    def __init__(self):
        self.tables = None
        self.threshold = 0

    @abstractmethod
    def load(self, tables) -> None:
        """Put compiled tables and the initial neuron state on the device (all or nothing)."""

    @abstractmethod
    def reset(self) -> None:
        """Back to the state right after load (neuron state = bias, counters cleared)."""

    @abstractmethod
    def set_threshold(self, threshold: int) -> None: ...

    @abstractmethod
    def run_frame(self, events: dict) -> FrameOutput:
        """Send one frame of input events (dict of arrays x, y, c, d) and collect its outputs."""

    @abstractmethod
    def read_state(self) -> list[dict]:
        """Per core: {'acc': int64 array, 'sent': int64 array} over the neurons in use."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _need_tables(self):
        if self.tables is None:
            raise DeviceError(f"{self.name}: no bundle loaded; load one first (synfab run BUNDLE ...)")


def _sext(v, bits):
    v = np.asarray(v, dtype=np.int64) & ((1 << bits) - 1)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)


def frame_output_events(who: str, out_words, out_lasts) -> np.ndarray:
    """One frame's output beats (up to and with its end-of-frame beat) as OUT_DTYPE events;
    DeviceError unless exactly the last beat ends the frame."""
    f = STREAM_EVENT.unpack64(out_words)
    if len(out_words) == 0 or f["eof"][-1] != 1 or not out_lasts[-1]:
        raise DeviceError(f"{who}: frame output did not end with an end-of-frame beat (TLAST)")
    if f["eof"][:-1].any() or out_lasts[:-1].any():
        raise DeviceError(f"{who}: end-of-frame beat in the middle of a frame's output")
    ev = np.zeros(len(out_words) - 1, dtype=OUT_DTYPE)
    for k in OUT_DTYPE.names:
        ev[k] = f[k][:-1]
    return ev


class RegisterDevice(Device):
    """Driver logic over the AXI-Lite register map and the event streams.

    Subclasses implement the transport: `_write`, `_read`, `_exchange`.
    """
    # What a read-back mismatch raises (a verifying link backend: its LinkError, a fault to retry).
    readback_error = DeviceError

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.regmap = RegisterMap(cfg)

    # -- transport ---------------------------------------------------------------------
    @abstractmethod
    def _write(self, addrs: np.ndarray, values: np.ndarray) -> None: ...

    @abstractmethod
    def _read(self, addrs: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _exchange(self, words: np.ndarray, lasts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Send one frame's beats; return (output words, lasts, cycles or None) up to the eof beat."""

    def _read_back(self, addrs: np.ndarray) -> np.ndarray:
        """Words read to compare with what was written (a transport that reads everything twice
        need not here: the comparison sees a changed answer)."""
        return self._read(addrs)

    # -- helpers -------------------------------------------------------------------------
    def write_reg(self, name, value, core=None):
        addr = self.regmap.reg(name) if core is None else self.regmap.core_reg(core, name)
        self._write(np.array([addr]), np.array([value & 0xFFFFFFFF], dtype=np.uint32))

    def read_reg(self, name, core=None) -> int:
        addr = self.regmap.reg(name) if core is None else self.regmap.core_reg(core, name)
        return int(self._read(np.array([addr]))[0])

    def identify(self) -> dict:
        """id, version, config_crc and features of the fabric (DeviceError if it is not the
        fabric this host drives)."""
        ident = {k: self.read_reg(k) for k in ("id", "version", "config_crc")}
        if ident["id"] != ID_MAGIC:
            raise DeviceError(f"{self.name}: no synfab core at this address (id register reads "
                              f"{ident['id']:#010x}, expected {ID_MAGIC:#010x}); check the bitstream")
        if ident["version"] != FABRIC_LAYOUT_VERSION:
            raise DeviceError(f"{self.name}: core has table layout version {ident['version']}, this host "
                              f"speaks {FABRIC_LAYOUT_VERSION}; rebuild the bitstream or update synfab")
        if ident["config_crc"] != self.cfg.crc():
            raise DeviceError(f"{self.name}: core was built for another fabric configuration (crc "
                              f"{ident['config_crc']:#010x} != {self.cfg.crc():#010x}); load the matching bitstream")
        ident["features"] = self.read_reg("features")
        return ident

    def _check_features(self, tables, features: int) -> None:
        """DeviceError (one line) if the tables use a version-2 feature the fabric's `features`
        register does not list."""
        missing = [e for e in tables.extended_features
                   if not features >> EXTENDED_FEATURES.index(feature_name(e)) & 1]
        if missing:
            raise DeviceError(f"{self.name}: this fabric's gateware does not run {'; '.join(missing)} (features "
                              f"register {features:#x}); rebuild the bitstream from this synfab")

    def _window_addrs(self, window, n_entries: int) -> np.ndarray:
        i = np.arange(n_entries)[:, None]
        j = np.arange(window.words)[None, :]
        return (window.base + (i * window.stride + j) * 4).reshape(-1)

    def _table_writes(self, tables):
        """(addresses, words) of every window the bundle fills, in load order."""
        from ..compiler.tables import tables_to_words
        out = []
        # In the fabric's layouts (version-1 tables: square, unshifted, compiler.at_version), and
        # only the per-neuron words the tables' neuron models use.
        for (core, wname), words in tables_to_words(tables, self.regmap.version, tables.state_words).items():
            words = np.asarray(words, dtype=np.uint32)
            if core is None:
                win = getattr(self.regmap, wname)
            else:
                win = self.regmap.core_window(core, wname)
            n = words.shape[0]
            out.append(((core, wname), self._window_addrs(win, n), words.reshape(-1)))
        return out

    # -- Device API -------------------------------------------------------------------------
    def load(self, tables) -> None:
        check_fabric_runs(tables, self.name)
        if tables.cfg != self.cfg:
            raise DeviceError(f"{self.name}: bundle was compiled for fabric {tables.cfg.name!r} "
                              f"(crc {tables.cfg.crc():#010x}) but the device is {self.cfg.name!r} "
                              f"(crc {self.cfg.crc():#010x}); recompile with --fabric matching the device")
        self._check_features(tables, self.identify()["features"])
        # Disable the fabric while tables change: no layer is evaluated, no input is fanned out.
        self.write_reg("n_layers", 0)
        self.write_reg("input_peg_count", 0)
        self.tables = None
        writes = self._table_writes(tables)
        self._write_verified(writes, "; the device is left unloaded")
        for c, ct in enumerate(tables.cores):
            self.write_reg("esu_count", ct.esu_count, core=c)
            self.write_reg("pop_count", ct.pop_count, core=c)
        for name in GLOBAL_TABLE_REGS:
            self.write_reg(name, int(tables.regs[name]))
        self._write_timing(tables)
        self.write_reg("threshold", self.threshold)
        self.write_reg("ctrl", RegisterMap.CTRL_CLEAR_COUNTERS)
        self.tables = tables
        # Every per-neuron word the tables' models use (acc, sent; u, v, ref, bias: Tables.state_words).
        self._state_writes = [w for w in writes if w[0][1] in tables.state_words]

    def _write_timing(self, tables) -> None:
        """Time-step registers (version-2 register map): pipelined order, reset interval, and the
        time step back to 0 (the golden model's step after load or reset)."""
        if "pipelined" in self.regmap.regs:
            self.write_reg("pipelined", int(tables.pipelined))
            self.write_reg("reset_interval", tables.reset_interval)
            self.write_reg("step", 0)

    def reset(self) -> None:
        self._need_tables()
        for _, addrs, words in self._state_writes:
            self._write(addrs, words)
        self._write_timing(self.tables)
        self.write_reg("ctrl", RegisterMap.CTRL_CLEAR_COUNTERS)

    def set_threshold(self, threshold: int) -> None:
        if not 0 <= threshold < (1 << (self.cfg.event_bits - 1)):
            raise DeviceError(f"threshold {threshold} out of range 0..{(1 << (self.cfg.event_bits - 1)) - 1}")
        self.threshold = int(threshold)
        self.write_reg("threshold", self.threshold)

    def read_counters(self) -> dict:
        g = self.regmap.global_counters
        vals = self._read(np.array([g[n] for n in GLOBAL_COUNTERS]))
        out = {n: int(v) for n, v in zip(GLOBAL_COUNTERS, vals)}
        addrs = np.array([self.regmap.core_counter(c, n) for c in range(self.cfg.n_cores) for n in CORE_COUNTERS])
        vals = self._read(addrs).reshape(self.cfg.n_cores, len(CORE_COUNTERS))
        out["cores"] = [{n: int(v) for n, v in zip(CORE_COUNTERS, row)} for row in vals]
        return out

    def read_layer_spikes(self) -> np.ndarray:
        n = int(self.tables.regs["n_layers"])
        w = self.regmap.layer_spikes
        return self._read(w.base + np.arange(n) * 4).astype(np.int64)

    def run_frame(self, events: dict) -> FrameOutput:
        self._need_tables()
        words, lasts = frame_beats(stream_columns(events, self.cfg.event_bits))
        # Counters (and layer_spikes) restart every frame: what we read after it is this frame's.
        self.write_reg("ctrl", RegisterMap.CTRL_CLEAR_COUNTERS)
        out_words, out_lasts, cycles = self._exchange(words, lasts)
        ev = frame_output_events(self.name, out_words, out_lasts)
        return FrameOutput(events=ev, layer_spikes=self.read_layer_spikes(), counters=self.read_counters(), cycles=cycles)

    def read_state(self) -> list[dict]:
        self._need_tables()
        out = [dict() for _ in range(self.cfg.n_cores)]
        for (core, wname), addrs, _ in self._state_writes:
            # The fabric returns every word as its 32-bit value (sign-extended; ref is unsigned; a
            # Loihi current of +2**23 reads as such).
            out[core][wname] = _sext(self._read(addrs), 32)
        return out

    def write_state(self, states: list[dict]) -> None:
        """Write every per-neuron word the tables use (acc, sent; u, v, ref, bias) of every core's
        neurons in use (as read_state gives them, e.g. the
        golden model's before a frame that has to be run again) and verify them by read-back.
        Writing ACC marks a neuron dirty: the next frame evaluates it, and a sigma-delta step
        repeated changes nothing (arith.live)."""
        self._need_tables()
        writes = []
        for key, addrs, _ in self._state_writes:
            core, wname = key
            values = np.asarray(states[core][wname], dtype=np.int64).reshape(-1)
            if len(values) != len(addrs):
                raise DeviceError(f"{self.name}: write_state: core {core} {wname} has {len(values)} values for "
                                  f"{len(addrs)} neurons in use")
            writes.append((key, addrs, (values & 0xFFFFFFFF).astype(np.uint32)))   # as load writes them
        self._write_verified(writes)

    def _write_verified(self, writes, consequence: str = "") -> None:
        """Write every ((core, window), addrs, words), then read all back: readback_error (one line,
        naming the first differing word, plus `consequence`) when one differs."""
        for _, addrs, words in writes:
            self._write(addrs, words)
        for (core, wname), addrs, words in writes:
            back = np.asarray(self._read_back(addrs)).astype(np.uint32)
            if not np.array_equal(back, words):
                k = int(np.flatnonzero(back != words)[0])
                where = f"core {core} " if core is not None else ""
                raise self.readback_error(f"{self.name}: read-back mismatch in {where}{wname} at {addrs[k]:#x}: "
                                          f"wrote {words[k]:#010x}, read {back[k]:#010x}{consequence}")
