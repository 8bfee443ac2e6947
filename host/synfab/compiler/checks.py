"""What a network and a fabric must satisfy before and while it is placed.

- `check_network`: every shape, kind, kernel, stride, range and count must fit the table fields;
- `Resources`: what a part, a core or a network uses of the five per-core resources, and the
  capacities of a core (`Resources.capacity(cfg)`), with `fits` and `load`;
- `check_totals` / `packing_error`: a network larger than the whole fabric, said plainly.

Every failure is a one-line `MappingError` naming the resource, the need and the capacity.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import arith
from ..config import FabricConfig
from ..errors import SynfabError
from ..frontend.ir import INT8_RANGE, QLayer, QNetwork
from ..geometry import POW2_STEPS
from ..layouts import (EXTENDED_LAYOUT_VERSION, LAYOUT_VERSION, STREAM_EVENT, WSHIFT_BITS, Kind, RegisterMap,
                       feature_name, state_word_bits)


class MappingError(SynfabError):
    """The network does not fit the fabric; the message names the resource, the need and the capacity."""


# ---------------------------------------------------------------------------------------
# Network checks (shapes, kinds, geometry: what the table fields can hold)
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
                if stride not in POW2_STEPS or conn.up not in POW2_STEPS:
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
            if conn.wconst is not None and not INT8_RANGE[0] <= conn.wconst <= INT8_RANGE[1]:
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
# Per-core resources and the capacity checks
@dataclass(frozen=True)
class Resource:
    name: str           # the field of Resources (and the key of Placement.usage)
    what: str           # in messages
    capacity: str       # the FabricConfig field that holds a core's capacity


RESOURCE_INFO = (Resource("neurons", "neurons", "neurons_per_core"),
                 Resource("weight_words", "weight words", "weight_words_per_core"),
                 Resource("peg_entries", "PEG entries", "peg_entries_per_core"),
                 Resource("esu_descs", "ESU descriptors", "esu_descriptors_per_core"),
                 Resource("pops", "populations", "populations_per_core"))
RESOURCES = tuple(r.name for r in RESOURCE_INFO)


@dataclass(frozen=True, slots=True)
class Resources:
    """Amounts of every per-core resource: what a part needs, what a core uses, or (capacity)
    what a core holds."""
    neurons: int = 0
    weight_words: int = 0
    peg_entries: int = 0
    esu_descs: int = 0
    pops: int = 0

    @classmethod
    def capacity(cls, cfg: FabricConfig) -> "Resources":
        return cls(*(int(getattr(cfg, r.capacity)) for r in RESOURCE_INFO))

    def values(self) -> tuple[int, int, int, int, int]:
        return self.neurons, self.weight_words, self.peg_entries, self.esu_descs, self.pops

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.neurons + other.neurons, self.weight_words + other.weight_words,
                         self.peg_entries + other.peg_entries, self.esu_descs + other.esu_descs,
                         self.pops + other.pops)

    def fits(self, capacity: "Resources") -> bool:
        # written out: the packer asks this for every (part, candidate core)
        c = capacity
        return (self.neurons <= c.neurons and self.weight_words <= c.weight_words
                and self.peg_entries <= c.peg_entries and self.esu_descs <= c.esu_descs and self.pops <= c.pops)

    def load(self, capacity: "Resources") -> float:
        """The largest share of a capacity used."""
        c = capacity
        return max(self.neurons / c.neurons, self.weight_words / c.weight_words, self.peg_entries / c.peg_entries,
                   self.esu_descs / c.esu_descs, self.pops / c.pops)

    def without_pops(self) -> "Resources":
        return replace(self, pops=0)

    def as_dict(self) -> dict[str, int]:
        return {r.name: int(v) for r, v in zip(RESOURCE_INFO, self.values())}


def packing_error(needs: list[Resources], cfg: FabricConfig) -> MappingError | None:
    """The error for parts that do not fit; None if the totals fit (packing may still succeed)."""
    cap = Resources.capacity(cfg)
    total = sum(needs, Resources())
    for r in RESOURCE_INFO:
        need, per_core = getattr(total, r.name), getattr(cap, r.name)
        if need > per_core * cfg.n_cores:
            cores = -(-need // per_core)
            per = -(-need // cfg.n_cores)
            return MappingError(f"the network needs {need} {r.what} in {len(needs)} parts but the fabric has "
                                f"{cfg.n_cores} core(s) x {per_core} {r.capacity}; use a mesh of >= {cores} cores "
                                f"or {r.capacity} >= {per}")
    return None


def check_totals(qnet: QNetwork, cfg: FabricConfig) -> None:
    """Lower bounds on the whole network (every split needs at least this): fail early and plainly."""
    n = cfg.n_cores
    neurons = [int(np.prod(l.shape)) for l in qnet.layers]
    bound = Resources(neurons=sum(neurons),
                      weight_words=sum(words_per_channel(qnet, l) * l.shape[0] for l in qnet.layers),
                      pops=sum(-(-v // cfg.neurons_per_core) for v in neurons))
    cap = Resources.capacity(cfg)
    for r in RESOURCE_INFO:
        total, per_core = getattr(bound, r.name), getattr(cap, r.name)
        if r.name in ("neurons", "weight_words", "pops") and total > per_core * n:
            raise MappingError(f"the network needs at least {total} {r.what} but the fabric has {n} core(s) x "
                               f"{per_core} {r.capacity}; use a mesh of >= {-(-total // per_core)} cores or "
                               f"{r.capacity} >= {-(-total // n)}")
