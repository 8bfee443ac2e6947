"""Bit layouts of every table, packet, stream word and register: defined here, once.

The encoder packs tables with these layouts, the software model reads the decoded
fields, and the gateware builds its memories, packets and CSR decoder from the same
objects.  Widths that depend on the fabric come from a FabricConfig.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .config import FabricConfig

# Version-1 tables: bundles of networks that use nothing of version 2 are written with this
# version, bit for bit as before extended tables existed.
LAYOUT_VERSION = 1
# Version 2: every v1 field where it was, fields appended at the end of the PEG entry, ESU
# descriptor and population descriptor (rectangular geometry, weight shift, neuron models) and
# per-neuron words u, v, ref, bias.
EXTENDED_LAYOUT_VERSION = 2
LAYOUT_VERSIONS = (LAYOUT_VERSION, EXTENDED_LAYOUT_VERSION)
# The table layouts the gateware decodes: its `version` register and the default of RegisterMap
# (the fabric's register map).  A version-1 bundle is written into these layouts by the host with
# the values a version-1 entry means (compiler.at_version: square geometry, no weight shift,
# today's sigma-delta), which the fabric executes exactly as the version-1 fields.
FABRIC_LAYOUT_VERSION = EXTENDED_LAYOUT_VERSION

# Neurons per dirty word: the neuron unit marks touched neurons in 32-bit words of block RAM and
# the evaluation unit scans one word per clock (the compiler's work prediction counts the scan).
DIRTY_WORD = 32


def weight_banks(lanes: int) -> int:
    """Weight memory banks of a core with `lanes` synaptic lanes (32-bit words, word k in bank
    k % NB, read NB consecutive words a clock): enough that the lanes' weights of a clock, from any
    byte, lie in them."""
    return 1 if lanes == 1 else 2 if lanes <= 4 else 4


def column_lane_stride_ok(lanes: int, stride: int) -> bool:
    """Whether the ESU's column lanes read the weights of a depthwise connection with this column
    stride: its lanes' weights w, w - sx, ..., w - (lanes - 1) * sx must lie in the NB words read
    from w's word, from any byte of it: (lanes - 1) * sx <= 4 * NB - 4 (sx 1: always; 2 and 4
    with 2 lanes). A constant weight needs no read: any stride."""
    return (lanes - 1) * stride <= 4 * weight_banks(lanes) - 4

# What a network may use beyond version 1 (QNetwork.extended_features names them, one entry per
# feature with its layers: "weight shift (conv1, fc2)"), in the bit order of the fabric's
# read-only `features` register (version-2 register map).
EXTENDED_FEATURES = (
    "rectangular kernel, stride or padding",
    "weight shift",
    "sigma-delta theta/message shift",
    "unclamped activation",
    "if neurons",
    "cuba_lif neurons",
    "lif neurons",
    "pipelined timing",
    "state reset interval",
    "events input",
    "spikes input",
)
# What a fabric executes (its `features` register): all of version 2 but the neuron models it
# does not carry (FabricConfig.neuron_models; event and spike input are the host's: it sends a
# frame's values as they are).
MODEL_FEATURES = {"if": "if neurons", "cuba_lif": "cuba_lif neurons", "lif": "lif neurons"}
SIGMA_DELTA_ONLY = ("sigma_delta",)
GATEWARE_FEATURES = EXTENDED_FEATURES          # a fabric that carries every neuron model


def gateware_features(cfg=None) -> tuple[str, ...]:
    """The version-2 features a fabric of `cfg` executes (None: one with every neuron model)."""
    if cfg is None:
        return GATEWARE_FEATURES
    absent = {f for m, f in MODEL_FEATURES.items() if m not in cfg.models}
    if cfg.models == SIGMA_DELTA_ONLY:
        absent.add("unclamped activation")      # its sent is event_bits wide (gateware_word_bits)
    return tuple(f for f in EXTENDED_FEATURES if f not in absent)


def gateware_state_words(cfg=None) -> tuple[str, ...]:
    """The per-neuron words a fabric of `cfg` keeps, in window order (the windows of the others
    answer SLVERR); None: one with every neuron model."""
    from .arith import MODEL_WORDS, MODELS, STATE_WORDS
    used = {w for m in (MODELS if cfg is None else cfg.models) for w in MODEL_WORDS[m]}
    return tuple(w for w in STATE_WORDS if w in used)


def feature_name(entry: str) -> str:
    """The feature of an extended_features entry ("weight shift (conv1)" -> "weight shift")."""
    name = entry.split(" (", 1)[0]
    if name not in EXTENDED_FEATURES:
        raise ValueError(f"unknown extended feature {entry!r}; known: {', '.join(EXTENDED_FEATURES)}")
    return name


def feature_mask(names) -> int:
    """The `features` register bits of feature names (or extended_features entries)."""
    return sum(1 << EXTENDED_FEATURES.index(feature_name(n)) for n in set(names))


def unsupported_features(entries, cfg=None) -> list[str]:
    """The extended_features entries a fabric of `cfg` does not execute (None: one with every
    neuron model); they run on the golden model."""
    executed = gateware_features(cfg)
    return [e for e in entries if feature_name(e) not in executed]
ID_MAGIC = 0x53594E46  # "SYNF"
# Vivado IP identity of the packaged fabric (gateware/vivado packages it, the PYNQ driver binds to it).
IP_VLNV = "synfab.org:synfab:synfab_fabric:1.0"


class Kind(IntEnum):
    """Connection kind, shared by PEG entries and ESU descriptors."""
    CONV = 0    # full conv: every destination channel of the part, weights per (c_in, tap, c_out)
    DW = 1      # per channel (depthwise, pooling, upsampling, residual): one synapse per tap
    DENSE = 2   # every destination channel; source index (y*src_w + x)*src_c + c
    HOST = 3    # PEG only: the event leaves the fabric on the output stream


@dataclass(frozen=True)
class Field:
    name: str
    width: int
    signed: bool = False
    doc: str = ""


class Layout:
    """An ordered set of bit fields, LSB first."""

    def __init__(self, name: str, fields: list[Field], doc: str = ""):
        self.name = name
        self.fields = list(fields)
        self.doc = doc
        self.offsets = {}
        off = 0
        for f in self.fields:
            if f.width < 1:
                raise ValueError(f"{name}.{f.name}: width {f.width}")
            self.offsets[f.name] = off
            off += f.width
        self.width = off
        self.by_name = {f.name: f for f in self.fields}

    def __repr__(self):
        return f"Layout({self.name}, {self.width} bits)"

    @property
    def words32(self) -> int:
        return (self.width + 31) // 32

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def migen(self) -> list[tuple[str, int]]:
        """(name, width) pairs for migen Records and LiteX stream endpoints."""
        return [(f.name, f.width) for f in self.fields]

    def field_range(self, f: Field) -> tuple[int, int]:
        if f.signed:
            return -(1 << (f.width - 1)), (1 << (f.width - 1)) - 1
        return 0, (1 << f.width) - 1

    def check(self, values: dict[str, np.ndarray], what: str = "") -> None:
        """Raise ValueError naming the first field whose value does not fit."""
        for f in self.fields:
            v = np.asarray(values[f.name], dtype=np.int64)
            lo, hi = self.field_range(f)
            if v.size and (v.min() < lo or v.max() > hi):
                bad = v[(v < lo) | (v > hi)][0]
                raise ValueError(f"{what or self.name}: field {f.name}={int(bad)} does not fit "
                                 f"{f.width} {'signed ' if f.signed else ''}bits ({lo}..{hi})")

    def pack(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Columns of field values -> array (n, words32) of uint32 words (checked)."""
        self.check(values)
        n = len(np.asarray(values[self.fields[0].name]).reshape(-1))
        words = [0] * n
        for f in self.fields:
            v = np.asarray(values[f.name], dtype=np.int64).reshape(-1)
            mask = (1 << f.width) - 1
            off = self.offsets[f.name]
            for i in range(n):
                words[i] |= (int(v[i]) & mask) << off
        out = np.zeros((n, self.words32), dtype=np.uint32)
        for i, w in enumerate(words):
            for j in range(self.words32):
                out[i, j] = (w >> (32 * j)) & 0xFFFFFFFF
        return out

    def unpack(self, words: np.ndarray) -> dict[str, np.ndarray]:
        """Array (n, words32) of uint32 -> columns of field values (int64)."""
        words = np.asarray(words, dtype=np.uint64).reshape(-1, self.words32)
        ints = [sum(int(words[i, j]) << (32 * j) for j in range(self.words32)) for i in range(len(words))]
        out = {}
        for f in self.fields:
            off = self.offsets[f.name]
            mask = (1 << f.width) - 1
            col = np.array([(w >> off) & mask for w in ints], dtype=np.int64)
            if f.signed:
                col = np.where(col >= (1 << (f.width - 1)), col - (1 << f.width), col)
            out[f.name] = col
        return out

    def pack64(self, values: dict) -> np.ndarray:
        """Vectorised pack of a layout of at most 64 bits -> uint64 array (checked)."""
        assert self.width <= 64, self.name
        self.check(values)
        out = np.zeros(len(np.asarray(values[self.fields[0].name]).reshape(-1)), dtype=np.uint64)
        for f in self.fields:
            v = np.asarray(values[f.name], dtype=np.int64).reshape(-1)
            out |= (v.astype(np.uint64) & np.uint64((1 << f.width) - 1)) << np.uint64(self.offsets[f.name])
        return out

    def unpack64(self, words) -> dict[str, np.ndarray]:
        """Vectorised unpack of uint64 words -> columns (int64)."""
        assert self.width <= 64, self.name
        words = np.asarray(words, dtype=np.uint64)
        out = {}
        for f in self.fields:
            col = ((words >> np.uint64(self.offsets[f.name])) & np.uint64((1 << f.width) - 1)).astype(np.int64)
            if f.signed:
                col = np.where(col >= (1 << (f.width - 1)), col - (1 << f.width), col)
            out[f.name] = col
        return out

    def pack_one(self, **values) -> int:
        w = self.pack({k: [v] for k, v in values.items()})[0]
        return sum(int(x) << (32 * j) for j, x in enumerate(w))

    def unpack_one(self, word: int) -> dict[str, int]:
        words = np.array([[(word >> (32 * j)) & 0xFFFFFFFF for j in range(self.words32)]], dtype=np.uint64)
        return {k: int(v[0]) for k, v in self.unpack(words).items()}


# ---------------------------------------------------------------------------------------
# Tables
def _check_version(version: int) -> None:
    if version not in LAYOUT_VERSIONS:
        raise ValueError(f"unknown table layout version {version}; known: {LAYOUT_VERSIONS}")


# Extended (version 2) fields, appended after the version-1 fields.
WSHIFT_BITS = 4                   # weights times 2**wshift, wshift 0..15
DECAY_FIELD_BITS = 13             # Loihi decay constants 0..4096


def theta_bits(cfg: FabricConfig) -> int:
    """Width of a layer's threshold: a sigma-delta change (acc_bits + 1) or Loihi's vThMant (17 bits,
    and netx's never-firing 2**17)."""
    return max(cfg.acc_bits + 1, 18)


def peg_entry(cfg: FabricConfig, version: int = LAYOUT_VERSION) -> Layout:
    _check_version(version)
    cb, kb = cfg.coord_bits, cfg.kernel_bits
    extended = [
        Field("k_y", kb, doc="v2: kernel height (k is the width)"),
        Field("s_log2_y", 2, doc="v2: log2 vertical stride (s_log2 is the horizontal one)"),
        Field("pad_y", kb, doc="v2: vertical padding (pad is the horizontal one)"),
    ] if version >= EXTENDED_LAYOUT_VERSION else []
    return Layout("peg_entry", [
        Field("kind", 2, doc="Kind: CONV, DW, DENSE or HOST"),
        Field("dest_core", cfg.core_bits, doc="destination core id (y*mesh_x + x)"),
        Field("syn", cfg.esu_addr_bits, doc="ESU descriptor at the destination; for HOST: output tag"),
        Field("k", kb, doc="kernel size K"),
        Field("s_log2", 2, doc="log2 stride"),
        Field("up_log2", 2, doc="log2 nearest-upsampling factor applied before the kernel"),
        Field("pad", kb, doc="padding added after upsampling"),
        Field("x0", cb, doc="destination tile, first column (layer coordinates)"),
        Field("x1", cb, doc="destination tile, last column"),
        Field("y0", cb, doc="destination tile, first row"),
        Field("y1", cb, doc="destination tile, last row"),
        Field("c0", cfg.chan_bits, doc="destination part, first channel (DW channel test)"),
        Field("c1", cfg.chan_bits, doc="destination part, last channel"),
        Field("chan_off", cfg.chan_bits, doc="added to the source channel (concatenation)"),
    ] + extended, doc="Output-axon entry: one per (source population, destination core, connection).")


def esu_desc(cfg: FabricConfig, version: int = LAYOUT_VERSION) -> Layout:
    _check_version(version)
    cb, kb = cfg.coord_bits, cfg.kernel_bits
    extended = [
        Field("k_y", kb, doc="v2: kernel height (k is the width)"),
        Field("s_log2_y", 2, doc="v2: log2 vertical stride"),
        Field("wshift", WSHIFT_BITS, doc="v2: every weight (stored or wval) times 2**wshift"),
    ] if version >= EXTENDED_LAYOUT_VERSION else []
    return Layout("esu_desc", [
        Field("kind", 2, doc="Kind: CONV, DW or DENSE"),
        Field("wconst", 1, doc="1: every synapse has weight wval (no weight memory)"),
        Field("wval", cfg.weight_bits, signed=True, doc="the constant weight"),
        Field("k", kb, doc="kernel size K"),
        Field("s_log2", 2, doc="log2 stride (kx step between neighbouring outputs)"),
        Field("cc", cfg.chan_bits + 1, doc="channels of the destination part (Co)"),
        Field("c0", cfg.chan_bits, doc="first channel of the destination part"),
        Field("tw", cb + 1, doc="destination tile width"),
        Field("nbase", cfg.neuron_addr_bits, doc="neuron address of the part's first neuron"),
        Field("wbase", cfg.weight_addr_bits, doc="weight address of the kernel slice"),
        Field("src_w", cb + 1, doc="DENSE: source width"),
        Field("src_c", cfg.chan_bits + 1, doc="DENSE: source channels"),
    ] + extended, doc="Synapse-type descriptor: how one packet expands into (neuron, weight) pairs.")


NEURON_MODEL_CODES = {"sigma_delta": 0, "if": 1, "cuba_lif": 2, "lif": 3}


def pop_desc(cfg: FabricConfig, version: int = LAYOUT_VERSION) -> Layout:
    _check_version(version)
    cb, ab = cfg.coord_bits, cfg.acc_bits
    extended = [
        Field("model", 2, doc="v2: neuron model (NEURON_MODEL_CODES: sigma_delta, if, cuba_lif, lif)"),
        Field("lo_open", 1, doc="v2 sigma_delta: no lower clamp (lo ignored)"),
        Field("hi_open", 1, doc="v2 sigma_delta: no upper clamp (hi ignored)"),
        Field("theta", theta_bits(cfg), doc="v2: sigma_delta minimum |change|; if threshold; lif vThMant"),
        Field("msg_shift", 5, doc="v2 sigma_delta: events carry the change >> msg_shift"),
        Field("fire_gt", 1, doc="v2 if: fire when v > theta (else v >= theta)"),
        Field("reset_to_value", 1, doc="v2 if: reset v to v_reset (else subtract theta per spike)"),
        Field("v_reset", ab, signed=True, doc="v2 if: value after a spike when reset_to_value"),
        Field("v_min_on", 1, doc="v2 if: v is bounded below by v_min"),
        Field("v_min", ab, signed=True, doc="v2 if: lower bound of v"),
        Field("multi_spike", 1, doc="v2 if: the event value is the number of spikes"),
        Field("du", DECAY_FIELD_BITS, doc="v2 cuba_lif: current decay 0..4096"),
        Field("dv", DECAY_FIELD_BITS, doc="v2 cuba_lif/lif: voltage decay 0..4096"),
        Field("refractory", 6, doc="v2 cuba_lif/lif: steps v is held at 0 after a spike"),
    ] if version >= EXTENDED_LAYOUT_VERSION else []
    return Layout("pop_desc", [
        Field("layer", 6, doc="evaluation step (layers are evaluated in increasing order)"),
        Field("nbase", cfg.neuron_addr_bits, doc="first neuron address"),
        Field("x0", cb, doc="tile origin column (layer coordinates)"),
        Field("y0", cb, doc="tile origin row"),
        Field("tw", cb + 1, doc="tile width"),
        Field("th", cb + 1, doc="tile height"),
        Field("c0", cfg.chan_bits, doc="first channel"),
        Field("cc", cfg.chan_bits + 1, doc="channels"),
        Field("mult", cfg.mult_bits, doc="requantization multiplier"),
        Field("shift", cfg.shift_bits, doc="requantization shift"),
        Field("lo", cfg.event_bits, signed=True, doc="activation minimum (0 for ReLU)"),
        Field("hi", cfg.event_bits, signed=True, doc="activation maximum"),
        Field("peg_base", cfg.peg_addr_bits, doc="first PEG entry of this population"),
        Field("peg_count", cfg.peg_addr_bits + 1, doc="number of PEG entries"),
    ] + extended, doc="Population descriptor: one layer part on one core; neurons are numbered "
                      "((y - y0) * tw + (x - x0)) * cc + (c - c0) from nbase.")


def neuron_state(cfg: FabricConfig) -> Layout:
    return Layout("neuron_state", [
        Field("acc", cfg.acc_bits, signed=True, doc="wrapping accumulator (initial value: bias)"),
        Field("sent", cfg.event_bits, signed=True, doc="last activation sent"),
    ])


UNSIGNED_STATE_WORDS = ("ref",)


def gateware_word_bits(cfg: FabricConfig) -> dict[str, int]:
    """Bits of each per-neuron word a fabric of `cfg` keeps (gateware_state_words): those of its
    layouts (state_word_bits), but a sigma-delta-only fabric keeps sent at event_bits, as before
    version 2 (its activations stay within the events' range: it does not run unclamped
    activations, and a hardware backend refuses tables whose activation range exceeds sent)."""
    bits = state_word_bits(cfg, FABRIC_LAYOUT_VERSION)
    if cfg.models == SIGMA_DELTA_ONLY:
        bits["sent"] = cfg.event_bits
    return {w: bits[w] for w in gateware_state_words(cfg)}


def state_word_bits(cfg: FabricConfig, version: int = LAYOUT_VERSION) -> dict[str, int]:
    """Bits of every per-neuron word a core keeps (one window each, 32-bit sign-extended words
    on the bus).  Version 1: acc and sent (sigma-delta).  Version 2 adds Loihi's 24-bit u and v,
    the refractory count and a per-neuron bias (if/lif models add it every step); sent grows
    to hold an unclamped activation (Lava's SigmaDelta keeps its full activation)."""
    _check_version(version)
    words = {"acc": cfg.acc_bits, "sent": cfg.event_bits}
    if version >= EXTENDED_LAYOUT_VERSION:
        words.update(sent=max(cfg.event_bits, cfg.acc_bits + 1), u=24, v=24, ref=6, bias=max(cfg.acc_bits, 24))
    return words


def model_state_bits(cfg: FabricConfig, model: str = "sigma_delta", version: int = LAYOUT_VERSION) -> int:
    """Bits per neuron of a neuron model: the sum of its words (arith.MODEL_WORDS) at the widths
    of `state_word_bits` (sigma_delta of a version-1 network: acc + sent, as neuron_state)."""
    from .arith import MODEL_WORDS
    if model != "sigma_delta":
        version = EXTENDED_LAYOUT_VERSION
    bits = state_word_bits(cfg, version)
    return sum(bits[w] for w in MODEL_WORDS[model])


def packet(cfg: FabricConfig) -> Layout:
    """Network-on-chip packet. For CONV/DW: x, y are the tile-relative first output and
    nx, ny, kx, ky the clipped kernel window; for DENSE and HOST: x, y are global source
    coordinates."""
    cb, kb = cfg.coord_bits, cfg.kernel_bits
    return Layout("packet", [
        Field("dest", cfg.core_bits),
        Field("host", 1),
        Field("syn", cfg.esu_addr_bits),
        Field("x", cb), Field("y", cb),
        Field("nx", kb), Field("ny", kb),
        Field("kx", kb), Field("ky", kb),
        Field("c", cfg.chan_bits),
        Field("d", cfg.event_bits, signed=True),
    ])


# Stream words on the AXI4-Stream ports (64 bits, fixed across fabric configs).
STREAM_EVENT = Layout("stream_event", [
    Field("x", 12), Field("y", 12), Field("c", 16),
    Field("d", 16, signed=True),
    Field("tag", 6, doc="output: source layer tag; input: 0"),
    Field("eof", 1, doc="1: end-of-frame marker (no event); carries TLAST"),
], doc="One 64-bit AXI4-Stream beat.")
STREAM_BITS = 64
# An input event in one 32-bit word (the stream bridge's packed mode, CTRL_PACKED): for the hosts
# whose link is the limit (UARTBone), half the bytes of a STREAM_EVENT beat.  It holds events of
# inputs up to 256 x 256 pixels and 128 channels with d in -256..255 (the changes of 8-bit image
# levels, event-camera counts); the host sends any other frame as whole beats.  The bridge widens
# it to a STREAM_EVENT beat (tag 0, eof 0, d sign-extended).
PACKED_EVENT = Layout("packed_event", [
    Field("x", 8), Field("y", 8), Field("c", 7), Field("d", 9, signed=True),
], doc="One input event in a 32-bit bridge word.")

CORE_COUNTERS = ["packets_in", "synops", "spikes", "packets_out", "busy_cycles",
                 "stall_cycles", "dropped"]
GLOBAL_COUNTERS = ["cycles", "frames", "events_in", "events_out", "input_dropped"]


# ---------------------------------------------------------------------------------------
# AXI4-Lite register map
@dataclass(frozen=True)
class Window:
    """A table visible over AXI-Lite: entry i, word j at base + (i * stride + j) * 4."""
    name: str
    base: int
    entries: int
    stride: int          # 32-bit words per entry slot (power of two)
    words: int           # 32-bit words used per entry
    layout: Layout | None = None

    def addr(self, i: int, j: int = 0) -> int:
        return self.base + (i * self.stride + j) * 4

    @property
    def size(self) -> int:
        return self.entries * self.stride * 4


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


class RegisterMap:
    """Addresses of everything the host can reach. Byte addresses, 32-bit registers."""

    GLOBAL_REGS = ["id", "version", "config_crc", "ctrl", "status", "threshold",
                   "in_w", "in_h", "in_c", "input_peg_count", "n_layers"]
    # Version 2 appends these (time steps: DESIGN.md "Time steps").
    EXTENDED_REGS = ["features", "pipelined", "reset_interval", "step"]
    CORE_REGS = ["esu_count", "pop_count"]
    MAX_LAYERS = 64
    DOC = {
        "id": "read-only: ID_MAGIC 0x53594E46 ('SYNF')",
        "version": "read-only: the table layout version this fabric decodes (FABRIC_LAYOUT_VERSION)",
        "features": "read-only: version-2 features the fabric executes, bit i = layouts.EXTENDED_FEATURES[i]",
        "pipelined": "v2: 1 evaluates the layers in reverse order (a layer's events reach the next one a step later)",
        "reset_interval": "v2: R > 0 clears layer i's u, v, ref before its step at steps t with t % R == i % R",
        "step": "v2: the time step modulo reset_interval (advances at every end of frame; the host writes 0 at load)",
        "config_crc": "read-only: FabricConfig.crc() the gateware was built from",
        "ctrl": "write 1 to bit 0: clear every counter and layer_spikes",
        "status": "read-only: bit 0 busy (a frame is being processed)",
        "threshold": "sigma-delta threshold: fire when |a - sent| >= threshold (0: any change)",
        "in_w": "input layer width; input events with x >= in_w are dropped and counted",
        "in_h": "input layer height (y range check)",
        "in_c": "input layer channels (c range check)",
        "input_peg_count": "PEG entries of the input port applied to every input event (0 disables input)",
        "n_layers": "evaluation steps run at every end of frame (0 disables evaluation)",
        "esu_count": "ESU descriptors in use; packets with syn >= esu_count are dropped and counted",
        "pop_count": "population descriptors in use",
        "cycles": "clock cycles since the last clear",
        "frames": "frames completed (eof beats sent)",
        "events_in": "input event beats received (in range or not)",
        "events_out": "output event beats sent (eof beats excluded)",
        "input_dropped": "input events outside in_w x in_h x in_c",
        "packets_in": "packets the core received (dropped ones included)",
        "synops": "synaptic operations (neuron, weight) pairs accumulated",
        "spikes": "neurons that fired",
        "packets_out": "packets the core's PEG sent (HOST packets included)",
        "busy_cycles": "cycles the core was not idle",
        "stall_cycles": "cycles the core's output was blocked or its input FIFO refused a packet",
        "dropped": "packets and pairs dropped (unknown synapse type, out-of-range address or channel)",
        "input_peg": "PEG entries of the input port (peg_entry layout)",
        "layer_spikes": "read-only: spikes per evaluation step in the current counting period",
        "pop": "population descriptors (pop_desc layout)",
        "esu": "synapse-type descriptors (esu_desc layout)",
        "peg": "output-axon entries (peg_entry layout)",
        "weights": "int8 weights, four per word, little-endian",
        "acc": "neuron accumulators, sign-extended; a write marks the neuron dirty",
        "sent": "last activation each neuron sent, sign-extended",
        "u": "v2: Loihi current of cuba_lif neurons, in (-2**23, 2**23] (the 24-bit code of -2**23 reads +2**23)",
        "v": "v2: Loihi voltage of cuba_lif/lif neurons, sign-extended",
        "ref": "v2: refractory steps left of cuba_lif/lif neurons",
        "bias": "v2: per-neuron bias added every step by if/lif neurons, sign-extended",
    }
    CTRL_CLEAR_COUNTERS = 1  # ctrl bit 0: write 1 to clear every counter

    def __init__(self, cfg: FabricConfig, version: int = FABRIC_LAYOUT_VERSION):
        """The register map of tables of `version`; the default is the fabric's (what the gateware
        decodes).  Version 2 adds the read-only `features` register and the time-step registers
        (pipelined, reset_interval, step) after the version-1 ones."""
        _check_version(version)
        self.cfg = cfg
        self.version = version
        names = self.GLOBAL_REGS + (self.EXTENDED_REGS if version >= EXTENDED_LAYOUT_VERSION else [])
        self.regs = {name: 4 * i for i, name in enumerate(names)}
        self.global_counters = {name: 0x100 + 4 * i for i, name in enumerate(GLOBAL_COUNTERS)}
        # Spikes per evaluation step (layer), summed over cores: read-only window.
        self.layer_spikes = Window("layer_spikes", 0x200, self.MAX_LAYERS, 1, 1, None)
        pe = peg_entry(cfg, version)
        self.input_peg = Window("input_peg", 0x0, cfg.input_peg_entries, _pow2(pe.words32), pe.words32, pe)
        # Input PEG window sits above the registers, aligned to its own size.
        in_size = max(0x1000, _pow2(self.input_peg.size))
        self.input_peg = Window("input_peg", in_size, cfg.input_peg_entries, _pow2(pe.words32), pe.words32, pe)
        tables = [
            ("pop", cfg.populations_per_core, pop_desc(cfg, version)),
            ("esu", cfg.esu_descriptors_per_core, esu_desc(cfg, version)),
            ("peg", cfg.peg_entries_per_core, pe),
            ("weights", cfg.weight_words_per_core // 4, None),   # four int8 weights per word
        ]
        # Per-neuron words, sign-extended: acc, sent (and in version 2 u, v, ref, bias).
        tables += [(word, cfg.neurons_per_core, None) for word in state_word_bits(cfg, version)]
        # Core-local layout: registers first, then each window aligned to its power-of-two size.
        off = 0x100
        self.core_windows: dict[str, Window] = {}
        for name, n, lay in sorted(tables, key=lambda t: -_pow2(t[1] * _pow2(t[2].words32 if t[2] else 1)) * 4):
            words = lay.words32 if lay else 1
            stride = _pow2(words)
            size = _pow2(n * stride * 4)
            off = (off + size - 1) // size * size
            self.core_windows[name] = Window(name, off, n, stride, words, lay)
            off += size
        self.core_regs = {name: 4 * i for i, name in enumerate(self.CORE_REGS)}
        self.core_counters = {name: 0x40 + 4 * i for i, name in enumerate(CORE_COUNTERS)}
        self.core_stride = _pow2(off)
        self.core_base0 = max(self.core_stride, _pow2(self.input_peg.base + self.input_peg.size))
        self.size = self.core_base0 + cfg.n_cores * self.core_stride
        self.addr_bits = (self.size - 1).bit_length()

    def reg(self, name: str) -> int:
        return self.regs[name]

    def core_base(self, core: int) -> int:
        return self.core_base0 + core * self.core_stride

    def core_reg(self, core: int, name: str) -> int:
        return self.core_base(core) + self.core_regs[name]

    def core_window(self, core: int, name: str) -> Window:
        w = self.core_windows[name]
        return Window(w.name, self.core_base(core) + w.base, w.entries, w.stride, w.words, w.layout)

    def core_counter(self, core: int, name: str) -> int:
        return self.core_base(core) + self.core_counters[name]

    def describe(self) -> list[dict]:
        """Every register and window, for generated register documentation."""
        rows = self._describe()
        for r in rows:
            r["doc"] = self.DOC.get(r["name"].split(".")[-1], "")
        return rows

    def _describe(self) -> list[dict]:
        rows = [{"name": n, "addr": a, "kind": "reg"} for n, a in self.regs.items()]
        rows += [{"name": f"counter.{n}", "addr": a, "kind": "counter"} for n, a in self.global_counters.items()]
        for c in range(self.cfg.n_cores):
            rows += [{"name": f"core{c}.counter.{n}", "addr": self.core_counter(c, n), "kind": "counter"}
                     for n in CORE_COUNTERS]
        rows.append({"name": "layer_spikes", "addr": self.layer_spikes.base, "kind": "window",
                     "entries": self.layer_spikes.entries, "stride_words": 1})
        rows.append({"name": "input_peg", "addr": self.input_peg.base, "kind": "window",
                     "entries": self.input_peg.entries, "stride_words": self.input_peg.stride})
        for c in range(self.cfg.n_cores):
            rows += [{"name": f"core{c}.{n}", "addr": self.core_reg(c, n), "kind": "reg"} for n in self.CORE_REGS]
            for n in self.core_windows:
                w = self.core_window(c, n)
                rows.append({"name": f"core{c}.{n}", "addr": w.base, "kind": "window",
                             "entries": w.entries, "stride_words": w.stride})
        return rows


# -- LiteX SoC address map and stream bridge (synfab_gateware.soc; runtime.litex drives them) ----
# Byte addresses on the SoC's 32-bit wishbone bus.
FABRIC_BASE = 0x8000_0000        # the RegisterMap, at its own byte offsets
BRIDGE_BASE = 0x2000_0000
BRIDGE_SIZE = 0x1000
BRIDGE_MAGIC = 0x53464252        # "SFBR"
DEFAULT_BAUDRATE = 1_000_000
# The system clock a board build asks for unless told otherwise (synfab build --sys-clk-mhz).
DEFAULT_SYS_CLK_MHZ = 50.0

# Bridge windows (byte offsets). Every word of an alias window is the same port, so a host can
# stream into (or out of) it with ordinary incrementing bursts of up to ALIAS_WORDS words.
ALIAS_WORDS = 256
IN_DATA = 0x000     # write: low word, then high word -> one input beat, last = 0
IN_LAST = 0x400     # write: low word, then high word -> one input beat, last = 1
OUT_DATA = 0x800    # read: low word, high word, then flags (bit 0 valid, bit 1 last) -> pops the beat
REGS = 0xC00
BRIDGE_REGS = ["id", "in_free", "out_level", "frames_done", "frame_cycles", "flags", "ctrl",
               "in_depth", "out_depth"]
OUT_WORDS_PER_BEAT = 3
# flags: why a frame's cycle count is not the fabric's own processing time, and lost input.
FLAG_IN_OVERFLOW = 1      # the frame did not fit the input FIFO: cycles include host transfer
FLAG_OUT_STALL = 2        # the output FIFO was full: cycles include host reading time
FLAG_IN_OVERRUN = 4       # a beat was written while the input FIFO was full and was lost
CTRL_RESYNC = 1           # ctrl bit 0: restart the lo/hi word phases, clear FLAG_IN_OVERRUN
CTRL_PACKED = 2           # ctrl bit 1 (kept until the next ctrl write; reads back): each IN_DATA word
                          # is one input beat in PACKED_EVENT (IN_LAST still takes word pairs)


def bridge_reg(name: str) -> int:
    """Byte address of a bridge register on the SoC bus."""
    return BRIDGE_BASE + REGS + 4 * BRIDGE_REGS.index(name)


# -- Ethernet SoC (synfab_gateware.soc.eth; runtime.litex's udp:// link) ------------------------
# The SoC answers Etherbone (LiteEth's, one record per packet) on ETHERBONE_UDP_PORT and takes
# input beats / sends output beats as UDP packets on ETHERBONE_UDP_PORT + 1; a host names the
# Etherbone port: `--port udp://HOST:PORT`, the stream port is PORT + 1.
ETH_SOC_IP = "192.168.1.50"
ETH_SOC_MAC = 0x10E2D5000000
ETH_HOST_IP = "192.168.1.100"     # where a board's Etherbone answers go (its ARP finds the host)
# Boards of a chain on one Ethernet switch (the linked Ethernet SoC, `synfab build --link eth
# --board-index K`): board K answers at ETH_SOC_IP + K with MAC ETH_SOC_MAC + K.
ETH_MAX_BOARDS = 32
ETHERBONE_UDP_PORT = 1234         # LiteX's usual Etherbone port (litex_server --udp)
STREAM_UDP_PORT = ETHERBONE_UDP_PORT + 1
ETHERBONE_MAX_WORDS = 64          # words per Etherbone record the host sends (the SoC buffers twice that)
UDP_STREAM_BASE = 0x2000_1000     # the UDP stream port's registers on the SoC bus
UDP_STREAM_SIZE = 0x100
# Stream packets: a header, then beats; every 64-bit word little-endian on the wire.
#   header word 0: bits 0-15 UDP_MAGIC, 16-23 flags, 24-31 0, 32-47 seq, 48-63 beats in the packet
#   host -> SoC: flags bit 0 (UDP_FLAG_FRAME_END): the packet's last beat carries the frame's TLAST.
#     The SoC takes a packet whole or not at all: it drops (and counts) a packet whose magic,
#     length or beat count is wrong (malformed), whose seq is not the one it expects next
#     (out of sequence: after a lost packet every later one is dropped until the host resends
#     from the lost one), or that does not fit the bridge's input FIFO (no room).
#   SoC -> host: header word 1 = bits 0-31 input beats the bridge has released to the fabric so
#     far (credits: the host keeps beats sent minus beats released within the input FIFO's
#     depth), 32-47 the next input seq it expects, 48-63 input packets dropped so far (all
#     causes, mod 2**16).
#     Output beats are the fabric's own; a frame's last one is its end-of-frame beat (eof = 1).
UDP_MAGIC = 0x5346                # "SF"
UDP_FLAG_FRAME_END = 1
UDP_IN_HEADER_WORDS = 1
UDP_OUT_HEADER_WORDS = 2
UDP_MAX_BEATS = 128               # beats per packet either way: 1 KiB of beats, under any MTU
# Registers (word index * 4 from UDP_STREAM_BASE), all 32 bits.
UDP_STREAM_REGS = ["id", "rx_packets", "rx_malformed", "rx_out_of_seq", "rx_no_room", "rx_beats",
                   "expected_seq", "tx_packets", "tx_beats", "released", "ctrl"]
UDP_STREAM_MAGIC = 0x53465544     # "SFUD"
UDP_CTRL_RESET = 1                # ctrl bit 0: counters and expected seq back to 0
UDP_CTRL_OUTPUT = 2               # ctrl bit 1: output beats go out as UDP packets (else the bridge's OUT_DATA)
# Bytes a frame of a UDP packet costs on a wire beyond its payload: preamble + SFD 8, Ethernet
# header 14, IPv4 20, UDP 8, FCS 4, inter-frame gap 12; payloads under 18 bytes are padded.
ETH_WIRE_OVERHEAD = 8 + 14 + 20 + 8 + 4 + 12
ETH_MIN_PAYLOAD = 18


def eth_board_address(board: int) -> tuple[int, str]:
    """(MAC, IPv4) of board `board` of a chain (board 0: the single-board SoC's ETH_SOC_*)."""
    if not 0 <= board < ETH_MAX_BOARDS:
        raise ValueError(f"board index {board} is outside 0..{ETH_MAX_BOARDS - 1}")
    *net, host = ETH_SOC_IP.split(".")
    return ETH_SOC_MAC + board, ".".join([*net, str(int(host) + board)])


# The board links (synfab.linkframe): the UART link and the Ethernet link; `--link` takes these.
LINK_KINDS = ("uart", "eth")


def soc_has_ethernet(ethernet: bool, link: str) -> bool:
    """Whether a board's SoC carries LiteEth: asked for (`--ethernet`), or its link is the Ethernet link."""
    return ethernet or link == "eth"


def udp_stream_reg(name: str) -> int:
    """Byte address of a UDP stream port register on the SoC bus."""
    return UDP_STREAM_BASE + 4 * UDP_STREAM_REGS.index(name)


# -- Board links (a linked board SoC: synfab_gateware.soc.links; runtime.linked_litex) -----------
# A linked board has two link ends (synfab.linkframe): `prev` takes the board before's output
# beats into this board's input (the stream bridge's second port), `next` sends this board's
# output beats to the board after while ctrl LINK_CTRL_TO_NEXT is set (else they stay in the
# bridge's output FIFO for the host).  Registers (word index * 4 from LINK_BASE), all 32 bits.
LINK_BASE = 0x2000_2000
LINK_SIZE = 0x100
LINK_REGS = ["id", "ctrl", "prev_received", "prev_errors", "prev_broken",
             "next_sent", "next_bytes", "next_packets", "next_credit_errors"]
LINK_MAGIC = 0x53464C4B           # "SFLK"
LINK_CTRL_CLEAR = 1               # ctrl bit 0: both ends' counters and `broken` cleared (a new epoch)
LINK_CTRL_TO_NEXT = 2             # ctrl bit 1: output beats go to the next board


def link_reg(name: str) -> int:
    """Byte address of a board link register on the SoC bus."""
    return LINK_BASE + 4 * LINK_REGS.index(name)
