"""Evaluation unit (DESIGN.md, "Arithmetic" and "Evaluation and frames").

On `start`, every population descriptor (table order, p < pop_count) whose layer equals `layer` is
evaluated; its dirty neurons, and only those, in neuron-address order:

  scan     the population's dirty words (32 neurons each, in the neuron unit) are taken one per
           clock: the bits inside the population's range come back and are cleared
  emit     the non-empty lane groups of the words (with FabricConfig.lanes = P: the neurons
           a * P + b, b < P, one per bank of the neuron unit and of the memories here), one group
           per clock, lowest address first
  E1..E9   in P lanes side by side (lane b: neuron a * P + b when its bit is set), acc and sent read; local index r = n - nbase split into channel, column and row by
           multiplying with reciprocals (exact for every r < neurons_per_core; the reciprocals of
           cc and tw and the population's end are computed once, when the host writes the
           descriptor); a = clamp((acc*mult + 2^(shift-1)) >> shift, lo, hi) (no rounding term if
           shift = 0); fire iff a != sent and |a - sent| >= threshold; then sent = a and the spike
           (x0+tx, y0+ty, c0+ci, d = a - sent, peg_base, peg_count) goes to the spike FIFO
A group's spikes are one entry of the spike FIFO; the SpikeSerializer hands them to the PEG one
per clock, lowest lane first (so in neuron-address order). A group is emitted only when the FIFO
has room for everything in flight, so the pipeline never stalls. A population ends at the end of
the neuron memory. A population costs about (its groups with a dirty neuron: its dirty neurons / P
where they lie together) + (its neurons / 32) + a few clocks; an empty one (no dirty neuron) only
its words. `start` while busy is ignored. The event value d keeps the low
event_bits bits of a - sent.

    start, layer, threshold, pop_count   in   from the sequencer and the core's registers
    table                                     population descriptors (TableMemory, host-written)
    acc_rd (out) / acc_out (in)               acc reads through the neuron unit
    dirty_rd (out) / dirty_out (in)           dirty-word takes through the neuron unit
    source                               out  spikes to the PEG
    spike                                out  a neuron fired this clock
    sent_bus                             in   host window of sent (only while idle)
    idle                                 out
"""
from __future__ import annotations

from types import SimpleNamespace

from migen import READ_FIRST, Array, Cat, Constant, If, Memory, Mux, Signal
from migen.genlib.fsm import FSM, NextState, NextValue
from litex.gen import LiteXModule, Reduce
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.arith import LOIHI_ACT_SHIFT, LOIHI_DECAY_BITS, LOIHI_DECAY_UNITY, LOIHI_VTH_SHIFT
from synfab.layouts import (DIRTY_WORD, FABRIC_LAYOUT_VERSION, NEURON_MODEL_CODES, UNSIGNED_STATE_WORDS,
                            gateware_state_words, gateware_word_bits, pop_desc, state_word_bits)

from ..common import PipeStage, as_signed, combine_split, product, split_multiply, sync_fifo
from ..serial import SerialMultiplier, SerialReciprocal
from ..tables import SerialTableMemory, block_ram
from .neuron import (acc_read_layout, acc_result_layout, bank_bits, dirty_take_layout, dirty_word_bits,
                     lane_bits, write_back_layout)
from .peg import spike_layout

# The FIFOs take a spike / write-back of every neuron in flight (the pipeline never stalls), so
# they are deeper than the pipeline: emits go on at one per clock.
SPIKE_FIFO_DEPTH = 32
WRITE_BACK_FIFO_DEPTH = 32
WORD_FIFO_DEPTH = 4
PIPELINE_STAGES = 17         # E1..E9, E7b, L10..L14 and Z: neurons in flight after the emit register
# The per-neuron words this unit can keep (acc is the neuron unit's), in window order; a fabric
# keeps those of the neuron models it carries (layouts.gateware_state_words).
EVAL_WORDS = ("sent", "u", "v", "ref", "bias")


def eval_words(cfg: FabricConfig) -> tuple[str, ...]:
    """The per-neuron words a core of `cfg` keeps in its evaluation unit."""
    kept = gateware_state_words(cfg)
    return tuple(w for w in EVAL_WORDS if w in kept)


def derived_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """What the population table stores beside each descriptor (see PopulationDerive)."""
    nab, ab = cfg.neuron_addr_bits, cfg.acc_bits
    fields = [("cc_mul", nab + 2), ("cc_shift", 6), ("tw_mul", nab + 2), ("tw_shift", 6), ("n_end", nab + 1)]
    if "if" in cfg.models:      # the multi-spike count divides by theta
        fields += [("theta_mul", ab + 1), ("theta_shift", 7)]
    return fields


class PopulationDerive(LiteXModule):
    """Computed once per descriptor write: reciprocals of cc and tw (SerialReciprocal, exact for any
    local index below neurons_per_core), n_end = min(nbase + tw*th*cc, neurons_per_core) and the
    reciprocal of theta (exact for any v below 2^(acc_bits-1): the multi-spike if neuron's count).

        entry   in   the descriptor being written (pop_desc record)
        start   in   pulse
        extra   out  derived_layout fields
        done    out  pulse
    """

    def __init__(self, cfg: FabricConfig):
        from ..common import record
        lay = pop_desc(cfg, FABRIC_LAYOUT_VERSION)
        nab = cfg.neuron_addr_bits
        self.entry = e = record(lay)
        self.start = Signal()
        self.done = Signal()
        fields = derived_layout(cfg)
        self.extra = Signal(sum(w for _, w in fields))

        # # #

        w = dict(lay.migen())
        self.cc_rec = cc_rec = SerialReciprocal(nab, w["cc"])
        self.tw_rec = tw_rec = SerialReciprocal(nab, w["tw"])
        self.tw_th = tw_th = SerialMultiplier(w["tw"], w["th"])
        self.count = count = SerialMultiplier(w["tw"] + w["th"], w["cc"])
        self.comb += [
            cc_rec.divisor.eq(e.cc), tw_rec.divisor.eq(e.tw),
            tw_th.a.eq(e.tw), tw_th.b.eq(e.th),
            count.a.eq(tw_th.product), count.b.eq(e.cc),
            cc_rec.start.eq(self.start), tw_rec.start.eq(self.start), tw_th.start.eq(self.start),
            count.start.eq(tw_th.done),
        ]
        dones = [cc_rec.done, tw_rec.done, count.done]
        n_end = Signal(nab + 1)
        values = dict(cc_mul=cc_rec.multiplier, cc_shift=cc_rec.shift, tw_mul=tw_rec.multiplier,
                      tw_shift=tw_rec.shift, n_end=n_end)
        if "if" in cfg.models:
            self.theta_rec = theta_rec = SerialReciprocal(cfg.acc_bits - 1, w["theta"])
            self.comb += theta_rec.divisor.eq(Mux(e.theta == 0, 1, e.theta)), theta_rec.start.eq(self.start)
            dones.append(theta_rec.done)
            values.update(theta_mul=theta_rec.multiplier, theta_shift=theta_rec.shift)
        waiting = Signal(len(dones))    # the reciprocals and the count still to come
        end = Signal(len(count.product) + 1)
        self.comb += end.eq(e.nbase + count.product)
        self.sync += [
            If(self.start, waiting.eq((1 << len(dones)) - 1)).Else(waiting.eq(waiting & ~Cat(*dones))),
            If(count.done, n_end.eq(Mux(end > cfg.neurons_per_core, cfg.neurons_per_core, end))),
        ]
        self.sync += self.done.eq((waiting != 0) & ((waiting & ~Cat(*dones)) == 0))
        padded = []
        for name, width in fields:
            field = Signal(width, name=f"derived_{name}")
            self.comb += field.eq(values[name])
            padded.append(field)
        self.comb += self.extra.eq(Cat(*padded))


def _any_and_several(bits) -> tuple:
    """(any bit set, more than one bit set) of `bits` as a balanced tree of small gates: no carry
    chain, so it is cheap to compute in front of a register."""
    level = [(b, 0) for b in bits]
    while len(level) > 1:
        pairs = []
        for i in range(0, len(level), 2):
            if i + 1 == len(level):
                pairs.append(level[i])
                continue
            (a_any, a_sev), (b_any, b_sev) = level[i], level[i + 1]
            pairs.append((a_any | b_any, a_sev | b_sev | (a_any & b_any)))
        level = pairs
    return level[0]


class _Emitter:
    """Dirty words (word, bits) in, one lane group per clock out, lowest first: the neurons
    a * lanes + b (b < lanes) of the word's lowest group with a set bit, into a registered request
    (valid, a, on: the group's bank address and its set bits) that moves when `advance`.

    Whether groups remain (`pending`) and whether exactly one does (`single`) are registers kept
    beside the groups, so taking the next word (the FIFO read and the bits' load) depends on no
    carry chain over the bits."""

    def __init__(self, m, cfg, words, out_valid, out_a, out_on, advance, allow):
        L = cfg.lanes
        G = DIRTY_WORD // L                # lane groups per dirty word
        cw = Signal(DIRTY_WORD)            # the word's bits
        cg = Signal(G)                     # its groups still to emit
        cb = Signal(dirty_word_bits(cfg))  # their word
        pending, single = Signal(), Signal()   # cg != 0; cg has exactly one bit set
        lowest = Signal(G)                 # cg's lowest set bit, isolated
        rest = Signal(G)
        index = Signal(max(1, (G - 1).bit_length()))
        on = Signal(L)
        self.busy = pending
        m.comb += [
            lowest.eq(cg & (~cg + 1)),
            rest.eq(cg ^ lowest),
            # The group's bits: an OR of the groups' bits, each gated by its one-hot select.
            on.eq(Reduce("OR", [Mux(lowest[g], cw[g * L:(g + 1) * L], 0) for g in range(G)])),
        ]
        # Index of the isolated bit: an OR of the positions (no priority chain).
        m.comb += index.eq(0)
        for b in range(len(index)):
            m.comb += index[b].eq(Cat(*[lowest[i] for i in range(G) if i >> b & 1]) != 0)
        take = Signal()
        self.emit = emit = Signal()       # a group goes into the request register this clock
        m.comb += [
            emit.eq(advance & allow & pending),
            # A word is loaded when nothing of the current one would remain.
            take.eq(words.valid & (~pending | (emit & single))),
            words.ready.eq(take),
        ]
        groups = [words.bits[g * L:(g + 1) * L] != 0 for g in range(G)]
        new_groups = Signal(G)
        m.comb += new_groups.eq(Cat(*groups))
        new_any, new_several = _any_and_several(groups)
        rest_any, rest_several = _any_and_several([rest[i] for i in range(G)])
        a = Cat(index, cb)[:bank_bits(cfg)]
        m.sync += [
            If(advance, out_valid.eq(emit), If(emit, out_a.eq(a), out_on.eq(on))),
            If(take,
                cw.eq(words.bits), cg.eq(new_groups), cb.eq(words.word),
                pending.eq(new_any), single.eq(new_any & ~new_several),
            ).Elif(emit,
                cg.eq(rest),
                pending.eq(rest_any), single.eq(rest_any & ~rest_several),
            ),
        ]


def spike_group_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """One lane group's spikes: lane b's (x, y, c, d) when on{b}; the population's PEG range shared."""
    fields = dict(spike_layout(cfg))
    lay = [("base", fields["base"]), ("count", fields["count"])]
    for b in range(cfg.lanes):
        lay += [(f"on{b}", 1)] + [(f"{k}{b}", fields[k]) for k in SPIKE_FIELDS]
    return lay


SPIKE_FIELDS = ("x", "y", "c", "d")     # a spike's own fields (base and count are its population's)


class SpikeSerializer(LiteXModule):
    """A lane group's spikes in, one spike per clock out, lowest lane first (so in neuron-address
    order); with one lane a wire.

        sink    in   groups (spike_group_layout), at least one on{b} set
        source  out  spikes (spike_layout), registered (LiteX PipeValid) with more than one lane
        busy    out  a spike is in the output register
    """

    def __init__(self, cfg: FabricConfig):
        L = cfg.lanes
        self.sink = sink = stream.Endpoint(spike_group_layout(cfg))
        self.source = stream.Endpoint(spike_layout(cfg))
        self.busy = Signal()

        # # #

        if L == 1:
            self.comb += [
                self.source.valid.eq(sink.valid), sink.ready.eq(self.source.ready),
                *[getattr(self.source, k).eq(getattr(sink, f"{k}0")) for k in SPIKE_FIELDS],
                self.source.base.eq(sink.base), self.source.count.eq(sink.count),
            ]
            return
        done = Signal(L)        # lanes of the head group already handed out
        left, lowest = Signal(L), Signal(L)
        self.pipe = pipe = stream.PipeValid(spike_layout(cfg))
        self.comb += [
            left.eq(Cat(*[getattr(sink, f"on{b}") for b in range(L)]) & ~done),
            lowest.eq(left & (~left + 1)),
            pipe.sink.valid.eq(sink.valid & (left != 0)),
            *[getattr(pipe.sink, k).eq(Reduce("OR", [Mux(lowest[b], getattr(sink, f"{k}{b}"), 0) for b in range(L)]))
              for k in SPIKE_FIELDS],
            pipe.sink.base.eq(sink.base), pipe.sink.count.eq(sink.count),
            # The group leaves with its last spike.
            sink.ready.eq((pipe.sink.ready & ((left ^ lowest) == 0)) | (left == 0)),
            pipe.source.connect(self.source),
            self.busy.eq(pipe.source.valid),
        ]
        self.sync += If(sink.valid & sink.ready, done.eq(0)).Elif(pipe.sink.valid & pipe.sink.ready,
                                                                   done.eq(done | lowest))


def _wide_product(module, a, b) -> list:
    """The partial products of unsigned a * b, each operand split into 17-bit chunks so that every
    product fits one DSP block: [(product, shift)], for one PipeStage (each registered in its block)
    and `_sum_partials` over the next stages."""
    def chunks(v):
        return [(v[i:i + SPLIT], i) for i in range(0, len(v), SPLIT)]
    return [(product(x, y), i + j) for x, i in chunks(a) for y, j in chunks(b)]


SPLIT = 17


class EvaluationUnit(LiteXModule):
    def __init__(self, cfg: FabricConfig, pop_stride: int | None = None):
        nab, ab, eb = cfg.neuron_addr_bits, cfg.acc_bits, cfg.event_bits
        cb, chb = cfg.coord_bits, cfg.chan_bits
        dwb = dirty_word_bits(cfg)
        self.start = Signal()
        self.layer = Signal(6)
        self.reset = Signal()      # with start: Lava's LIFReset, u, v, ref read as 0 (arith.clear_state)
        self.threshold = Signal(eb)
        self.pop_count = Signal(cfg.pop_addr_bits + 1)
        # The fabric's population layout (version 2: the neuron model and its parameters).
        self.layout = pop_desc(cfg, FABRIC_LAYOUT_VERSION)
        self.table = SerialTableMemory(self.layout, cfg.populations_per_core, pop_stride,
                                       derive=PopulationDerive(cfg))
        self.acc_rd = stream.Endpoint(acc_read_layout(cfg))
        self.acc_out = stream.Endpoint(acc_result_layout(cfg))
        self.dirty_rd = stream.Endpoint(dirty_take_layout(cfg))
        self.dirty_out = stream.Endpoint([("word", dwb), ("bits", DIRTY_WORD)])
        self.wb = stream.Endpoint(write_back_layout(cfg))  # to the neuron unit
        self.source = stream.Endpoint(spike_layout(cfg))   # to the PEG sink
        self.spike = Signal()
        # Which models' arithmetic this unit has (FabricConfig.neuron_models): sigma_delta always.
        models = cfg.models
        has_if, has_cuba = "if" in models, "cuba_lif" in models
        has_loihi = has_cuba or "lif" in models
        leaky = has_if or has_loihi      # state that changes without input: the pipeline past E9
        kept = eval_words(cfg)
        self.buses = {w: wishbone.Interface(data_width=32, adr_width=nab, addressing="word") for w in kept}
        self.sent_bus = self.buses["sent"]
        self.idle = Signal()

        # # #

        # Per-neuron words kept here (layouts.state_word_bits): sent (an unclamped activation too:
        # acc_bits + 1 bits), Loihi's u and v, the refractory count and the bias. u holds values in
        # (-2^23, 2^23] (Lava's fold), stored modulo 2^24: the code of -2^23 stands for +2^23.
        wbits = dict(state_word_bits(cfg, FABRIC_LAYOUT_VERSION))
        wbits.update(gateware_word_bits(cfg))      # a sigma-delta-only fabric's sent is event_bits wide
        sb, bb = wbits["sent"], wbits["bias"]
        # In `lanes` banks like the neuron unit's (neuron n in bank n % lanes at n // lanes): lane b
        # reads and writes bank b.
        L, lg = cfg.lanes, lane_bits(cfg)
        depth = -(-cfg.neurons_per_core // L)
        mems, rd, wr = {}, {}, {}
        for w in EVAL_WORDS:
            if w not in kept:       # a word of a model this fabric does not carry reads 0
                rd[w] = [SimpleNamespace(adr=Signal(nab, name=f"{w}_absent_adr"), dat_r=Constant(0, wbits[w]))] * L
                continue
            mems[w] = [block_ram(wbits[w], depth, w if L == 1 else f"{w}{b}") for b in range(L)]
            rd[w] = [mem.get_port(mode=READ_FIRST) for mem in mems[w]]
            wr[w] = [mem.get_port(write_capable=True) for mem in mems[w]]
            self.specials += *mems[w], *rd[w], *wr[w]
        ub = wbits["u"]
        u_top = 1 << (ub - 1)

        def u_value(raw):
            """The current a stored u word stands for (one more bit than the word)."""
            v = Signal((ub + 1, True))
            raw_s, top = Signal((ub, True)), Signal((ub + 1, True))
            self.comb += raw_s.eq(raw), top.eq(u_top), v.eq(Mux(raw == u_top, top, raw_s))
            return v

        # A group's spikes are one FIFO entry; the serializer hands them to the PEG one per clock,
        # lowest lane first (neuron-address order, as the model sends them).
        self.spikes = spikes = sync_fifo(spike_group_layout(cfg), SPIKE_FIFO_DEPTH)
        self.serializer = serializer = SpikeSerializer(cfg)
        self.comb += [
            spikes.source.connect(serializer.sink),
            serializer.source.connect(self.source),
            self.spike.eq(self.source.valid & self.source.ready),
        ]
        if leaky:
            self.wbq = wbq = sync_fifo(write_back_layout(cfg), WRITE_BACK_FIFO_DEPTH)
            self.comb += wbq.source.connect(self.wb)
        self.words = words = sync_fifo([("word", dwb), ("bits", DIRTY_WORD)], WORD_FIFO_DEPTH)

        # ---- the population being evaluated ----
        pop, extra = self.table.rd_dat, self.table.rd_extra
        p = Signal(cfg.pop_addr_bits + 1)
        layer = Signal(6)
        clearing = Signal()
        P = {name: Signal(width, name=f"pop_{name}") for name, width in self.layout.migen()}
        D = {name: Signal(width, name=f"pop_{name}") for name, width in derived_layout(cfg)}
        rnd = Signal(1 << cfg.shift_bits)
        # Per population: the model and constants of its arithmetic (set with the descriptor).
        is_sd, is_if, is_cuba, is_lif = Signal(), Signal(), Signal(), Signal()
        if not leaky:
            self.comb += is_sd.eq(1)
        loihi = Signal()
        ku, kv = Signal(LOIHI_DECAY_BITS + 1), Signal(LOIHI_DECAY_BITS + 1)   # 4096 - du, 4096 - dv
        self.comb += self.table.rd_adr.eq(p)
        extra_fields, off = {}, 0
        for name, width in derived_layout(cfg):
            extra_fields[name] = extra[off:off + width]
            off += width
        n_end = extra_fields["n_end"]
        # Registered: the descriptor is whole in the clock of rd_done (READ), so CHECK takes the
        # compares from a flip-flop; the table's shift register -> compares (a carry chain) -> the
        # FSM's next state was the 2x2 fabric's critical path at one placement seed.
        pop_ok = Signal()
        self.sync += pop_ok.eq((pop.layer == layer) & (pop.tw != 0) & (pop.th != 0) & (pop.cc != 0)
                               & (pop.nbase < n_end))

        # ---- scan: take the population's dirty words ----
        word, first_word, last_word = Signal(dwb), Signal(dwb), Signal(dwb)
        first_bit, last_bit = Signal(5), Signal(5)
        scanning = Signal()
        takes_in_flight = Signal(max=WORD_FIFO_DEPTH + 1)
        lo_bit = Mux(word == first_word, first_bit, 0)
        hi_bit = Mux(word == last_word, last_bit, DIRTY_WORD - 1)
        mask = Signal(DIRTY_WORD)
        self.comb += mask.eq(Cat(*[(i >= lo_bit) & (i <= hi_bit) for i in range(DIRTY_WORD)]))
        take = Signal()
        word_room = Signal(reset=1)
        self.comb += [
            self.dirty_rd.valid.eq(scanning & word_room),
            self.dirty_rd.word.eq(word), self.dirty_rd.mask.eq(mask),
            take.eq(self.dirty_rd.valid & self.dirty_rd.ready),
            # Only words with something to evaluate are kept.
            words.sink.valid.eq(self.dirty_out.valid & (self.dirty_out.bits != 0)),
            words.sink.word.eq(self.dirty_out.word), words.sink.bits.eq(self.dirty_out.bits),
        ]
        self.sync += takes_in_flight.eq(takes_in_flight + take - self.dirty_out.valid)
        # Room for one more take next clock, as a register (its sum is no path to the neuron unit):
        # the words kept plus those in flight can only grow by this clock's take.
        self.sync += word_room.eq(words.level + takes_in_flight + take < WORD_FIFO_DEPTH)

        # ---- emit: one dirty neuron per clock into the request register ----
        # Every emitted neuron leaves at the last stage Z and may put one spike and one write-back
        # into their FIFOs: it is emitted only when both have room for every neuron in flight.
        in_flight = Signal(max=PIPELINE_STAGES + 2)
        room = Signal()
        req = self.acc_rd
        advance = Signal()
        self.comb += [
            advance.eq(~req.valid | req.ready),
            req.clear.eq(loihi),           # the Loihi models consume the step's input (acc = 0)
        ]
        # Registered, with a margin of two for the emits made while it is being computed.
        tail = Signal(2)             # sigma_delta's spikes in E10, E11 (after in_flight's count)
        spike_room = spikes.level + in_flight + tail + 2 < SPIKE_FIFO_DEPTH
        self.sync += room.eq(spike_room & (wbq.level + in_flight + 2 < WRITE_BACK_FIFO_DEPTH) if leaky else spike_room)
        emitter = _Emitter(self, cfg, words.source, req.valid, req.a, req.on, advance, room)
        issue = Signal()
        self.comb += issue.eq(req.valid & req.ready)

        # ---- population walk ----
        self.fsm = fsm = FSM(reset_state="IDLE")
        fsm.act("IDLE",
            If(self.start, NextValue(p, 0), NextValue(layer, self.layer), NextValue(clearing, self.reset),
               NextState("FETCH")),
        )
        fsm.act("FETCH",
            If((p >= self.pop_count) | (p >= cfg.populations_per_core), NextState("IDLE")).Else(
                self.table.rd_start.eq(1), NextState("READ")),
        )
        fsm.act("READ",    # the descriptor arrives word by word
            If(self.table.rd_done, NextState("CHECK")),
        )
        codes = NEURON_MODEL_CODES
        # The descriptor's registers load in CHECK whether or not it is taken (pop_ok): the
        # pipeline has drained, nothing reads them until SCAN, and pop_ok's compares then steer
        # only the state and p, not the clock enables of some hundred flip-flops.
        fsm.act("CHECK",
            *[NextValue(P[name], getattr(pop, name)) for name in P],
            *[NextValue(D[name], extra_fields[name]) for name in D],
            NextValue(rnd, (1 << pop.shift) >> 1),
            # Only the models this fabric carries (the others' flags stay 0; the host refuses
            # tables that use them).
            *([NextValue(is_sd, pop.model == codes["sigma_delta"])] if leaky else []),
            *([NextValue(is_if, pop.model == codes["if"])] if has_if else []),
            *([NextValue(is_cuba, pop.model == codes["cuba_lif"])] if has_cuba else []),
            *([NextValue(is_lif, pop.model == codes["lif"])] if "lif" in models else []),
            *([NextValue(loihi, (pop.model == codes["cuba_lif"]) | (pop.model == codes["lif"])),
               NextValue(ku, LOIHI_DECAY_UNITY - pop.du), NextValue(kv, LOIHI_DECAY_UNITY - pop.dv)]
              if has_loihi else []),
            NextValue(word, pop.nbase[5:] if nab > 5 else 0),
            NextValue(first_word, pop.nbase[5:] if nab > 5 else 0),
            NextValue(first_bit, pop.nbase[:5]),
            NextValue(last_word, (n_end - 1)[5:] if nab > 5 else 0),
            NextValue(last_bit, (n_end - 1)[:5]),
            If(pop_ok, NextState("SCAN")).Else(NextValue(p, p + 1), NextState("FETCH")),
        )
        fsm.act("SCAN",
            scanning.eq(1),
            If(take,
                NextValue(word, word + 1),
                If(word == last_word, NextState("DRAIN")),
            ),
        )
        drained = Signal()
        fsm.act("DRAIN",
            # The next population's parameters replace these only when nothing uses them.
            If(drained, NextValue(p, p + 1), NextState("FETCH")),
        )

        self.comb += self.table.host_ok.eq(fsm.ongoing("IDLE"))

        # ---- E1..Z: the neuron pipeline, one per lane (every multiply, add and wide compare alone
        # in its stage). All models' arithmetic runs side by side; the population's model picks what
        # is written and sent. sigma_delta writes sent and sends at E10/E11, the others at Z. The
        # lanes take one group per clock and move in lockstep: a group's neurons reach every stage
        # in the same clock.
        for w in EVAL_WORDS:
            for port in rd[w]:
                self.comb += port.adr.eq(req.a)

        def lane(b):
            """Lane b's E1..Z: neuron a * lanes + b of the group issued, when its mask bit is set."""
            e1 = PipeStage(self, issue & req.on[b], adr=req.a)
            n = Signal(nab)
            self.comb += n.eq(Cat(Constant(b, lg), e1.adr) if lg else e1.adr)
            r = Signal(nab)
            self.comb += r.eq(n - P["nbase"])
            sent1, v1, bias1 = Signal((sb, True)), Signal((wbits["v"], True)), Signal((bb, True))
            self.comb += sent1.eq(rd["sent"][b].dat_r), v1.eq(rd["v"][b].dat_r), bias1.eq(rd["bias"][b].dat_r)
            # E2 loads every clock (always): RAM outputs reach its registers with nothing between
            # (a load-enable LUT after a `sent` RAM was the ULX3S-85F preset's critical path).
            e2 = PipeStage(self, e1.valid, always=True, adr=e1.adr, r=r, sent=sent1, u_raw=rd["u"][b].dat_r, v=v1,
                           ref=rd["ref"][b].dat_r, bias=bias1)
            # acc arrives from the neuron unit with e2 (ACC_READ_LATENCY = 2).
            acc2 = Signal((ab, True))
            self.comb += acc2.eq(getattr(self.acc_out, f"acc{b}"))
            # A reset step (reset interval) starts from u = v = ref = 0 (only the Loihi models read them).
            e3 = PipeStage(self, e2.valid, adr=e2.adr, r=e2.r, sent=e2.sent, acc=acc2, q_c=product(e2.r, D["cc_mul"]),
                           u=Mux(clearing, 0, u_value(e2.u_raw)), v=Mux(clearing, 0, e2.v), ref=Mux(clearing, 0, e2.ref),
                           bias=e2.bias)
            # acc * mult as two products of at most 18 x 18 bits (one DSP block each), summed next stage;
            # likewise Loihi's decays u * (4096 - du) and v * (4096 - dv).
            p_lo, p_hi = split_multiply(self, e3.acc, P["mult"])
            zero = (Constant(0, 1), Constant(0, 1))
            pu_lo, pu_hi = split_multiply(self, e3.u, ku) if has_cuba else zero
            pv_lo, pv_hi = split_multiply(self, e3.v, kv) if has_loihi else zero
            acc3 = Signal((ab, True))
            self.comb += acc3.eq(e3.acc)
            e4 = PipeStage(self, e3.valid, adr=e3.adr, r=e3.r, sent=e3.sent, p_lo=p_lo, p_hi=p_hi,
                           pix=(e3.q_c >> D["cc_shift"])[:nab],
                           pu_lo=pu_lo, pu_hi=pu_hi, pv_lo=pv_lo, pv_hi=pv_hi, acc=e3.acc, v=e3.v, ref=e3.ref,
                           bias=e3.bias, vsum=acc3 + e3.bias)
            # if: v = wrap(acc + bias); fire iff v >= theta (v > theta with fire_gt); v' = v - fire_gt
            # is what the multi-spike count divides.
            vw4 = Signal((ab, True))
            theta_s = Signal((len(P["theta"]) + 1, True))
            self.comb += vw4.eq(e4.vsum[:ab]), theta_s.eq(P["theta"])
            e5 = PipeStage(self, e4.valid, adr=e4.adr, r=e4.r, sent=e4.sent, pix=e4.pix,
                           prod=combine_split(self, e4.p_lo, e4.p_hi),
                           q_t=product(e4.pix, D["tw_mul"]), pcc=product(e4.pix, P["cc"]),
                           up=combine_split(self, e4.pu_lo, e4.pu_hi), vp=combine_split(self, e4.pv_lo, e4.pv_hi),
                           acc=e4.acc, v=e4.v, ref=e4.ref, bias=e4.bias,
                           vw=vw4, if_fire=Mux(P["fire_gt"], vw4 > theta_s, vw4 >= theta_s), vq=vw4 - P["fire_gt"])
            rnd_s = Signal((len(rnd) + 1, True))
            prod5 = Signal((len(e5.prod), True))
            up5, vp5 = Signal((len(e5.up), True)), Signal((len(e5.vp), True))
            self.comb += rnd_s.eq(rnd), prod5.eq(e5.prod), up5.eq(e5.up), vp5.eq(e5.vp)
            mask12 = (1 << LOIHI_DECAY_BITS) - 1

            def toward_zero(x):
                """x >> 12 rounded toward zero (arith.loihi_decay): the rounding term only when negative."""
                return (x + Mux(x < 0, mask12, 0)) >> LOIHI_DECAY_BITS

            vq5 = e5.vq[:ab - 1]        # >= theta > 0 whenever the count is used
            # The multi-spike count's product (if neurons only).
            count_parts = _wide_product(self, vq5, D["theta_mul"]) if has_if else []
            e6 = PipeStage(self, e5.valid, adr=e5.adr, sent=e5.sent, pix=e5.pix, rounded=prod5 + rnd_s,
                           ty=(e5.q_t >> D["tw_shift"])[:nab], ci=(e5.r - e5.pcc[:nab])[:nab],
                           ud=toward_zero(up5), vd=toward_zero(vp5), acc=e5.acc, v=e5.v, ref=e5.ref, bias=e5.bias,
                           vw=e5.vw, if_fire=e5.if_fire,
                           **{f"pq{i}": pp for i, (pp, _) in enumerate(count_parts)})
            q_parts = [(getattr(e6, f"pq{i}"), sh) for i, (_, sh) in enumerate(count_parts)]
            rounded6 = Signal((len(e6.rounded), True))
            acc6, ud6, vd6 = Signal((ab, True)), Signal((len(e6.ud), True)), Signal((len(e6.vd), True))
            self.comb += rounded6.eq(e6.rounded), acc6.eq(e6.acc), ud6.eq(e6.ud), vd6.eq(e6.vd)
            # Loihi: u = fold(decay(u) + (acc << 6)) (lif: fold(acc << 6)); v's decay plus the bias beside it.
            synaptic = Signal((ab + LOIHI_ACT_SHIFT, True))
            self.comb += synaptic.eq(acc6 << LOIHI_ACT_SHIFT)
            q_sum1 = _sum_partials(q_parts)
            e7 = PipeStage(self, e6.valid, adr=e6.adr, sent=e6.sent, pix=e6.pix, ty=e6.ty, ci=e6.ci,
                           shifted=rounded6 >> P["shift"], tyw=product(e6.ty, P["tw"]),
                           usum=Mux(is_cuba, ud6, 0) + synaptic, vb=vd6 + e6.bias, v=e6.v, ref=e6.ref, bias=e6.bias,
                           vw=e6.vw, if_fire=e6.if_fire, **{f"qs{i}": t for i, t in enumerate(q_sum1)})
            lo_s, hi_s = Signal((eb, True)), Signal((eb, True))
            shifted7 = Signal((len(e7.shifted), True))
            usum7 = Signal((len(e7.usum), True))
            # +2^23 as a signed signal: Verilator got a signed compare with a zero-extended literal wrong.
            u_top_s = Signal((ub + 1, True))
            self.comb += u_top_s.eq(u_top)
            self.comb += lo_s.eq(P["lo"]), hi_s.eq(P["hi"]), shifted7.eq(e7.shifted), usum7.eq(e7.usum)
            q_sum2 = _sum_partials([(getattr(e7, f"qs{i}"), sh) for i, (_, sh) in enumerate(q_sum1_shifts(q_parts))])
            # The clamp's two wide compares get a stage of their own; the select follows in E8. An open
            # bound (Lava's ReLU without a ceiling, or no clamp) never clamps: the activation then fits
            # acc_bits + 1 bits (the mapper allows an open bound only with mult <= 2^shift).
            e7b = PipeStage(self, e7.valid, adr=e7.adr, sent=e7.sent, shifted=e7.shifted,
                            below=~P["lo_open"] & (shifted7 < lo_s), above=~P["hi_open"] & (shifted7 > hi_s),
                            ty=e7.ty, ci=e7.ci, tx=(e7.pix - e7.tyw[:nab])[:nab],
                            uw=usum7[:ub], u_min=usum7[:ub] == u_top, vb=e7.vb, v=e7.v, ref=e7.ref,
                            bias=e7.bias, vw=e7.vw, if_fire=e7.if_fire, **{f"qt{i}": t for i, t in enumerate(q_sum2)})
            a = Signal((sb, True))
            self.comb += If(e7b.below, a.eq(lo_s)).Elif(e7b.above, a.eq(hi_s)).Else(a.eq(e7b.shifted))
            q_total = _sum_partials([(getattr(e7b, f"qt{i}"), sh) for i, (_, sh) in
                                     enumerate(q_sum1_shifts(q_sum1_shifts(q_parts)))])
            assert len(q_total) == (1 if has_if else 0)
            # Loihi's 24-bit current (arith.loihi_wrap_current): the sum modulo 2^24 (its low ub bits,
            # signed) in (-2^23, 2^23]: the code of -2^23 stands for +2^23. Within +-3 * 2^23 that is
            # Lava's one fold.
            uw7b = Signal((ub, True))
            u_new = Signal((ub + 1, True))
            self.comb += uw7b.eq(e7b.uw), If(e7b.u_min, u_new.eq(u_top_s)).Else(u_new.eq(uw7b))
            e8 = PipeStage(self, e7b.valid, adr=e7b.adr, sent=e7b.sent, a=a, ty=e7b.ty, ci=e7b.ci, tx=e7b.tx,
                           u=u_new, vb=e7b.vb, v=e7b.v, ref=e7b.ref, bias=e7b.bias, vw=e7b.vw, if_fire=e7b.if_fire,
                           qfull=q_total[0] if has_if else Constant(0, 1))
            a8, sent8 = Signal((sb, True)), Signal((sb, True))
            vb8 = Signal((len(e8.vb), True))
            self.comb += a8.eq(e8.a), sent8.eq(e8.sent), vb8.eq(e8.vb)
            e9 = PipeStage(self, e8.valid, adr=e8.adr, a=e8.a, diff=a8 - sent8, x=P["x0"] + e8.tx, y=P["y0"] + e8.ty,
                           c=P["c0"] + e8.ci, u=e8.u, vpre=vb8 + e8.u, v=e8.v, ref=e8.ref, bias=e8.bias,
                           vw=e8.vw, if_fire=e8.if_fire, q=(e8.qfull >> D["theta_shift"])[:eb] if has_if else Constant(0, eb))
            diff9 = Signal((sb + 1, True))
            mag = Signal(sb + 1)
            fire = Signal()
            # fire iff d != 0 and |d| >= max(threshold register, theta) (arith._sigma_delta): two compares
            # side by side. The event carries d >> msg_shift (arithmetic), computed beside them.
            self.comb += [
                diff9.eq(e9.diff),
                mag.eq(Mux(diff9 < 0, -diff9, diff9)),
                fire.eq(e9.valid & is_sd & (diff9 != 0) & (mag >= self.threshold) & (mag >= P["theta"])),
            ]
            e10 = PipeStage(self, fire, always=True, adr=e9.adr, a=e9.a, d=diff9 >> P["msg_shift"], x=e9.x, y=e9.y, c=e9.c)
            # A fire whose shifted change is 0 records sent but sends nothing (and counts no spike).
            d10 = Signal((eb, True))
            self.comb += d10.eq(e10.d)
            e11 = PipeStage(self, e10.valid & (d10 != 0), always=True, d=d10, x=e10.x, y=e10.y, c=e10.c)


            # -- the other models go on from E9 (L10..L14, Z): only on fabrics that carry them --
            if leaky:
                z, zspike, wb = self._leaky_stages(cfg, P, wbits, e9, is_sd, is_if, is_cuba, loihi, theta_s, has_if)
            else:
                z, zspike, wb = None, Constant(0, 1), None
            return SimpleNamespace(e9=e9, e10=e10, e11=e11, z=z, zspike=zspike, wb=wb)

        lanes = [lane(b) for b in range(L)]

        # Spikes: sigma_delta's from E11, the others' from Z (a population has one model, and the
        # pipeline drains between populations, so the two never meet): one FIFO entry per group.
        group = spikes.sink
        for b, ln in enumerate(lanes):
            fields = {k: getattr(group, f"{k}{b}") for k in ("x", "y", "c", "d")}
            e11, z = ln.e11, ln.z
            if leaky:
                source = If(e11.valid, *[fields[k].eq(getattr(e11, k)) for k in ("x", "y", "c", "d")]).Else(
                    fields["x"].eq(z.x), fields["y"].eq(z.y), fields["c"].eq(z.c),
                    fields["d"].eq(z.value[:len(fields["d"])]))
            else:
                source = [fields[k].eq(getattr(e11, k)) for k in ("x", "y", "c", "d")]
            self.comb += getattr(group, f"on{b}").eq(e11.valid | ln.zspike), source
        self.comb += [
            group.valid.eq(Reduce("OR", [ln.e11.valid | ln.zspike for ln in lanes])),
            group.base.eq(P["peg_base"]), group.count.eq(P["peg_count"]),
        ]
        if leaky:   # write-back: every lane's at Z, one entry per group
            self.comb += [
                wbq.sink.valid.eq(Reduce("OR", [ln.wb["on"] for ln in lanes])),
                wbq.sink.a.eq(Reduce("OR", [Mux(ln.z.valid, ln.z.adr, 0) for ln in lanes])), wbq.sink.set.eq(is_if),
                *[getattr(wbq.sink, f"{k}{b}").eq(ln.wb[k]) for b, ln in enumerate(lanes)
                  for k in ("on", "value", "mark")],
            ]
        # Every neuron passes E9 (sigma_delta leaves there: E10/E11 hold only its spikes) and the
        # others Z; groups in flight are counted from the emit until then.
        e9_any, e10_any, e11_any = (Reduce("OR", [getattr(ln, e).valid for ln in lanes]) for e in ("e9", "e10", "e11"))
        leave = Signal(2)
        self.comb += leave.eq((e9_any & is_sd) + (Reduce("OR", [ln.z.valid for ln in lanes]) if leaky else 0))
        self.sync += in_flight.eq(in_flight + emitter.emit - leave)
        self.comb += tail.eq(e10_any + e11_any)
        self.comb += drained.eq(~scanning & (takes_in_flight == 0) & ~words.source.valid & ~emitter.busy
                                & ~req.valid & (in_flight == 0) & (tail == 0))

        # ---- the memories kept here: evaluation writes, the host only while idle ----
        pipeline_empty = Signal()
        self.comb += pipeline_empty.eq(fsm.ongoing("IDLE") & (in_flight == 0) & (tail == 0))

        def evals(ln):
            z = ln.z
            out = {"sent": (ln.e10.valid, ln.e10.adr, ln.e10.a), "bias": (0, 0, 0)}
            if leaky:
                out.update(u=(z.valid & is_cuba, z.adr, z.u), v=(z.valid & loihi, z.adr, z.v_new),
                           ref=(z.valid & loihi, z.adr, z.ref_new))
            return out
        lane_writes = [evals(ln) for ln in lanes]
        for w in kept:
            self._host_port(cfg, self.buses[w], rd[w], wr[w], pipeline_empty, [lw[w] for lw in lane_writes],
                            signed=w not in UNSIGNED_STATE_WORDS, decode=u_value if w == "u" else None)

        self.comb += self.idle.eq(pipeline_empty & ~spikes.source.valid & ~serializer.busy & ~self.start
                                  & (~wbq.source.valid if leaky else 1))

    def _leaky_stages(self, cfg, P, wbits, e9, is_sd, is_if, is_cuba, loihi, theta_s, has_if):
        """L10..L14 and Z: the if, cuba_lif and lif neurons' step after E9 (their threshold, reset,
        refractory count, liveness) for one lane. Returns (z, its spike, its write-back: on, value, mark)."""
        ab, eb, ub, bb = cfg.acc_bits, cfg.event_bits, wbits["u"], wbits["bias"]
        vmax = (1 << (wbits["v"] - 1)) - 1
        vpre9 = Signal((len(e9.vpre), True))
        # The clip bounds as signed signals (a negative constant in a select may print unsigned).
        v_top, v_bottom = Signal((wbits["v"], True)), Signal((wbits["v"], True))
        self.comb += vpre9.eq(e9.vpre), v_top.eq(vmax), v_bottom.eq(-vmax)
        nq = Signal(eb)
        self.comb += nq.eq(e9.q)
        # if, multi-spike: count * theta as partial products (at most four with event_bits <= 34 and
        # acc_bits <= 33), summed over L11 and L12.
        nt_parts = _wide_product(self, nq, P["theta"]) if has_if else []
        assert len(nt_parts) <= 4, "the multi-spike product needs another adder stage"
        l10 = PipeStage(self, e9.valid & ~is_sd, adr=e9.adr, x=e9.x, y=e9.y, c=e9.c, u=e9.u, vpre=e9.vpre,
                        v_hi=vpre9 > v_top, v_lo=vpre9 < v_bottom, v=e9.v, held=e9.ref != 0, ref=e9.ref,
                        bias=e9.bias, vw=e9.vw, if_fire=e9.if_fire, q=e9.q,
                        **{f"nt{i}": pp for i, (pp, _) in enumerate(nt_parts)})
        nt1 = [(getattr(l10, f"nt{i}"), sh) for i, (_, sh) in enumerate(nt_parts)]
        nt1_sums = _sum_partials(nt1)
        vclip = Mux(l10.v_hi, v_top, Mux(l10.v_lo, v_bottom, l10.vpre))
        l11 = PipeStage(self, l10.valid, adr=l10.adr, x=l10.x, y=l10.y, c=l10.c, u=l10.u, vclip=vclip,
                        v=l10.v, held=l10.held, ref=l10.ref, bias=l10.bias, vw=l10.vw, if_fire=l10.if_fire,
                        q=l10.q, **{f"nts{i}": t for i, t in enumerate(nt1_sums)})
        nt2 = _sum_partials([(getattr(l11, f"nts{i}"), sh) for i, (_, sh) in enumerate(_pair_up(nt1))])
        nt3 = _sum_partials([(t, sh) for t, (_, sh) in zip(nt2, _pair_up(_pair_up(nt1)))])
        assert len(nt3) == (1 if has_if else 0)
        # Loihi: fire iff not refractory and v > theta << 6.
        vclip11 = Signal((len(l11.vclip), True))
        vth = Signal((len(P["theta"]) + LOIHI_VTH_SHIFT + 1, True))
        self.comb += vclip11.eq(l11.vclip), vth.eq(P["theta"] << LOIHI_VTH_SHIFT)
        l12 = PipeStage(self, l11.valid, adr=l11.adr, x=l11.x, y=l11.y, c=l11.c, u=l11.u, vclip=l11.vclip,
                        l_fire=~l11.held & (vclip11 > vth), v=l11.v, held=l11.held, ref=l11.ref, bias=l11.bias,
                        vw=l11.vw, if_fire=l11.if_fire, q=l11.q, ntheta=nt3[0] if has_if else Constant(0, 1))
        # if: n spikes (multi-spike: the count; else 1) subtract n * theta, or v is reset to v_reset.
        vw12 = Signal((ab, True))
        sub12 = Signal((max(len(l12.ntheta), len(P["theta"])) + 1, True))
        self.comb += vw12.eq(l12.vw), sub12.eq(Mux(P["multi_spike"], l12.ntheta, P["theta"]))
        v_after = Mux(l12.if_fire, Mux(P["reset_to_value"], as_signed(self, P["v_reset"]), vw12 - sub12), vw12)
        ref_m1 = Signal(len(l12.ref))
        self.comb += ref_m1.eq(l12.ref - 1)
        l13 = PipeStage(self, l12.valid, adr=l12.adr, x=l12.x, y=l12.y, c=l12.c, u=l12.u,
                        v_new=Mux(l12.held, l12.v, Mux(l12.l_fire, 0, l12.vclip)),
                        ref_new=Mux(l12.held, ref_m1, Mux(l12.l_fire, P["refractory"], 0)),
                        l_fire=l12.l_fire, bias=l12.bias, v_after=v_after,
                        count=Mux(l12.if_fire, Mux(P["multi_spike"], l12.q, 1), 0))
        v_after13 = Signal((len(l13.v_after), True))
        v_min_s = as_signed(self, P["v_min"])
        self.comb += v_after13.eq(l13.v_after)

        def if_fires(v):
            return Mux(P["fire_gt"], v > theta_s, v >= theta_s)

        u13, v13, bias13 = Signal((ub + 1, True)), Signal((wbits["v"], True)), Signal((bb, True))
        self.comb += u13.eq(l13.u), v13.eq(l13.v_new), bias13.eq(l13.bias)
        # arith.live on the new state: Loihi: any of u (cuba_lif), v, ref, bias non-zero; if: a bias,
        # or v still at the threshold (decided for both outcomes of the v_min bound, picked in Z).
        l14 = PipeStage(self, l13.valid, adr=l13.adr, x=l13.x, y=l13.y, c=l13.c, u=l13.u, v_new=l13.v_new,
                        ref_new=l13.ref_new, l_fire=l13.l_fire, v_after=l13.v_after,
                        below=P["v_min_on"] & (v_after13 < v_min_s), count=l13.count,
                        after_fires=if_fires(v_after13), min_fires=if_fires(v_min_s),
                        l_live=(is_cuba & (u13 != 0)) | (v13 != 0) | (l13.ref_new != 0) | (bias13 != 0),
                        bias_nz=bias13 != 0)
        z = PipeStage(self, l14.valid, adr=l14.adr, x=l14.x, y=l14.y, c=l14.c, u=l14.u, v_new=l14.v_new,
                      ref_new=l14.ref_new, value=Mux(loihi, l14.l_fire, l14.count),
                      v_fin=Mux(l14.below, v_min_s, l14.v_after)[:ab],     # max(v, v_min), wrapped
                      live=Mux(loihi, l14.l_live, l14.bias_nz | Mux(l14.below, l14.min_fires, l14.after_fires)))
        value_z = Signal((eb, True))
        self.comb += value_z.eq(z.value)
        zspike = Signal()
        self.comb += [
            zspike.eq(z.valid & (value_z != 0)),
        ]
        # Write-back: the if neuron's v into acc; a live neuron marks itself dirty.
        wb = {"on": z.valid & (is_if | z.live), "value": z.v_fin, "mark": z.live}
        return z, zspike, wb

    def _host_port(self, cfg, bus, rds, wrs, pipeline_empty, lane_writes, signed, decode):
        """Host window of one memory in banks (neuron n in bank n % lanes at n // lanes): accesses
        go while the pipeline is empty; lane b's evaluation write (we, adr, dat) has bank b's write
        port otherwise. Reads answer the word's value as 32 bits."""
        lg = lane_bits(cfg)
        host_go = Signal()
        mapped = Signal()
        read_mapped = Signal()
        read_bank = Signal(max(1, lg))
        reading = Signal(2)
        bank = bus.adr[:lg] if lg else 0
        in_bank = bus.adr[lg:] if lg else bus.adr
        self.comb += [
            mapped.eq(bus.adr < cfg.neurons_per_core),
            host_go.eq(bus.cyc & bus.stb & ~bus.ack & pipeline_empty & (reading == 0)),
        ]
        # Each bank's output lands in a register of its own, free-running (nothing between the
        # RAM's 5.8 ns clock-to-output and it); the bank is chosen after it. A bank select before
        # the register was the ULX3S-85F preset's critical path.
        landed = [Signal(len(rd.dat_r)) for rd in rds]
        self.sync += [q_b.eq(rd.dat_r) for q_b, rd in zip(landed, rds)]
        q = Signal(len(rds[0].dat_r))
        self.comb += q.eq(Array(landed)[read_bank] if lg else landed[0])
        if decode is not None:
            value = decode(q)
        else:
            value = Signal((len(q), signed))
            self.comb += value.eq(q)
        self.sync += [
            If(host_go, read_mapped.eq(mapped), read_bank.eq(bank)),
            reading.eq(Cat(host_go & ~bus.we, reading[0])),
            bus.ack.eq((host_go & bus.we) | reading[1]),
            bus.dat_r.eq(Mux(reading[1] & read_mapped, value, 0)),
        ]
        for b, (rd, wr, (ev_we, ev_adr, ev_dat)) in enumerate(zip(rds, wrs, lane_writes)):
            self.comb += [
                If(pipeline_empty, rd.adr.eq(in_bank)),
                If(ev_we,
                    wr.adr.eq(ev_adr), wr.dat_w.eq(ev_dat), wr.we.eq(1),
                ).Else(
                    wr.adr.eq(in_bank), wr.dat_w.eq(bus.dat_w), wr.we.eq(host_go & bus.we & mapped & (bank == b)),
                ),
            ]


def q_sum1_shifts(parts):
    """The (value, shift) pairs `_sum_partials` turns `parts` into (the shifts only matter)."""
    return _pair_up(parts)


def _pair_up(parts):
    out = []
    for i in range(0, len(parts), 2):
        out.append(parts[i] if i + 1 == len(parts) else (None, min(parts[i][1], parts[i + 1][1])))
    return out


def _sum_partials(parts) -> list:
    """One adder level over (value, shift) partial products: neighbours summed pairwise, each sum
    relative to the smaller shift; returns the values (their shifts: `_pair_up`)."""
    out = []
    for i in range(0, len(parts), 2):
        if i + 1 == len(parts):
            out.append(parts[i][0] << 0)
            continue
        (a, sa), (b, sb) = parts[i], parts[i + 1]
        lo = min(sa, sb)
        out.append((a << (sa - lo)) + (b << (sb - lo)))
    return out
