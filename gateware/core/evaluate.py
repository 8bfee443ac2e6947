"""Evaluation unit (DESIGN.md, "Arithmetic" and "Evaluation and frames").

On `start`, every population descriptor (table order, p < pop_count) whose layer equals `layer` is
evaluated; its dirty neurons, and only those, in neuron-address order:

  scan     the population's dirty words (32 neurons each, in the neuron unit) are taken one per
           clock: the bits inside the population's range come back and are cleared
  emit     the set bits of the non-empty words, one neuron per clock, lowest address first
  E1..E9   acc and sent read; local index r = n - nbase split into channel, column and row by
           multiplying with reciprocals (exact for every r < neurons_per_core; the reciprocals of
           cc and tw and the population's end are computed once, when the host writes the
           descriptor); a = clamp((acc*mult + 2^(shift-1)) >> shift, lo, hi) (no rounding term if
           shift = 0); fire iff a != sent and |a - sent| >= threshold; then sent = a and the spike
           (x0+tx, y0+ty, c0+ci, d = a - sent, peg_base, peg_count) goes to the spike FIFO
The spike FIFO feeds the PEG. A neuron is emitted only when the FIFO has room for everything in
flight, so the pipeline never stalls. A population ends at the end of the neuron memory.
A population costs about (its dirty neurons) + (its neurons / 32) + a few clocks; an empty one
(no dirty neuron) only its words. `start` while busy is ignored. The event value d keeps the low
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

from migen import READ_FIRST, Cat, If, Memory, Mux, Signal
from migen.genlib.fsm import FSM, NextState, NextValue
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import FABRIC_LAYOUT_VERSION, pop_desc, state_word_bits

from ..common import PipeStage, combine_split, product, split_multiply, sync_fifo
from ..serial import SerialMultiplier, SerialReciprocal
from ..tables import SerialTableMemory, block_ram
from .neuron import DIRTY_WORD, acc_read_layout, dirty_take_layout, dirty_word_bits
from .peg import spike_layout

SPIKE_FIFO_DEPTH = 16
WORD_FIFO_DEPTH = 4
PIPELINE_STAGES = 11         # E1..E10 and E7b: neurons in flight after the emit register (E11 holds spikes)


def derived_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """What the population table stores beside each descriptor (see PopulationDerive)."""
    nab = cfg.neuron_addr_bits
    return [("cc_mul", nab + 2), ("cc_shift", 6), ("tw_mul", nab + 2), ("tw_shift", 6), ("n_end", nab + 1)]


class PopulationDerive(LiteXModule):
    """Computed once per descriptor write: reciprocals of cc and tw (SerialReciprocal, exact for any
    local index below neurons_per_core) and n_end = min(nbase + tw*th*cc, neurons_per_core).

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
        waiting = Signal(3)    # the reciprocals and the count still to come
        n_end = Signal(nab + 1)
        end = Signal(len(count.product) + 1)
        self.comb += end.eq(e.nbase + count.product)
        self.sync += [
            If(self.start, waiting.eq(0b111)).Else(
                waiting.eq(waiting & ~Cat(cc_rec.done, tw_rec.done, count.done))),
            If(count.done, n_end.eq(Mux(end > cfg.neurons_per_core, cfg.neurons_per_core, end))),
        ]
        self.sync += self.done.eq((waiting != 0) & ((waiting & ~Cat(cc_rec.done, tw_rec.done, count.done)) == 0))
        values = dict(cc_mul=cc_rec.multiplier, cc_shift=cc_rec.shift, tw_mul=tw_rec.multiplier,
                      tw_shift=tw_rec.shift, n_end=n_end)
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
    """Dirty words (word, bits) in, one neuron address out per clock (lowest bit first), into a
    registered request `out` (valid, n) that moves when `advance`.

    Whether bits remain (`pending`) and whether exactly one does (`single`) are registers kept
    beside the bits, so taking the next word (the FIFO read and the bits' load) depends on no
    carry chain over the bits."""

    def __init__(self, m, cfg, words, out_valid, out_n, advance, allow):
        cw = Signal(DIRTY_WORD)           # bits still to emit
        cb = Signal(dirty_word_bits(cfg))  # their word
        pending, single = Signal(), Signal()   # cw != 0; cw has exactly one bit set
        lowest = Signal(DIRTY_WORD)        # cw's lowest set bit, isolated
        rest = Signal(DIRTY_WORD)
        index = Signal(5)
        self.busy = pending
        m.comb += [
            lowest.eq(cw & (~cw + 1)),
            rest.eq(cw ^ lowest),
        ]
        # Index of the isolated bit: an OR of the positions (no priority chain).
        m.comb += index.eq(0)
        for b in range(5):
            m.comb += index[b].eq(Cat(*[lowest[i] for i in range(DIRTY_WORD) if i >> b & 1]) != 0)
        take = Signal()
        self.emit = emit = Signal()       # a neuron goes into the request register this clock
        m.comb += [
            emit.eq(advance & allow & pending),
            # A word is loaded when nothing of the current one would remain.
            take.eq(words.valid & (~pending | (emit & single))),
            words.ready.eq(take),
        ]
        new_any, new_several = _any_and_several([words.bits[i] for i in range(DIRTY_WORD)])
        rest_any, rest_several = _any_and_several([rest[i] for i in range(DIRTY_WORD)])
        n = Cat(index, cb) if cfg.neuron_addr_bits > 5 else index
        m.sync += [
            If(advance, out_valid.eq(emit), If(emit, out_n.eq(n))),
            If(take,
                cw.eq(words.bits), cb.eq(words.word),
                pending.eq(new_any), single.eq(new_any & ~new_several),
            ).Elif(emit,
                cw.eq(rest),
                pending.eq(rest_any), single.eq(rest_any & ~rest_several),
            ),
        ]


class EvaluationUnit(LiteXModule):
    def __init__(self, cfg: FabricConfig, pop_stride: int | None = None):
        nab, ab, eb = cfg.neuron_addr_bits, cfg.acc_bits, cfg.event_bits
        cb, chb = cfg.coord_bits, cfg.chan_bits
        dwb = dirty_word_bits(cfg)
        self.start = Signal()
        self.layer = Signal(6)
        self.threshold = Signal(eb)
        self.pop_count = Signal(cfg.pop_addr_bits + 1)
        # The fabric's population layout; of its fields the unit executes the version-1 ones (the
        # sigma-delta neuron; the neuron-model fields version 2 appends are stored, not executed).
        self.layout = pop_desc(cfg, FABRIC_LAYOUT_VERSION)
        self.table = SerialTableMemory(self.layout, cfg.populations_per_core, pop_stride,
                                       derive=PopulationDerive(cfg))
        self.acc_rd = stream.Endpoint(acc_read_layout(cfg))
        self.acc_out = stream.Endpoint([("acc", ab)])
        self.dirty_rd = stream.Endpoint(dirty_take_layout(cfg))
        self.dirty_out = stream.Endpoint([("word", dwb), ("bits", DIRTY_WORD)])
        self.source = stream.Endpoint(spike_layout(cfg))   # to the PEG sink
        self.spike = Signal()
        self.sent_bus = wishbone.Interface(data_width=32, adr_width=nab, addressing="word")
        self.idle = Signal()

        # # #

        # sent holds an unclamped activation too (lo_open/hi_open: acc_bits + 1 bits).
        sb = state_word_bits(cfg, FABRIC_LAYOUT_VERSION)["sent"]
        sent = block_ram(sb, cfg.neurons_per_core, "sent")
        sent_rd = sent.get_port(mode=READ_FIRST)
        sent_wr = sent.get_port(write_capable=True)
        self.specials += sent, sent_rd, sent_wr

        self.spikes = spikes = sync_fifo(spike_layout(cfg), SPIKE_FIFO_DEPTH)
        self.comb += spikes.source.connect(self.source)
        self.words = words = sync_fifo([("word", dwb), ("bits", DIRTY_WORD)], WORD_FIFO_DEPTH)

        # ---- the population being evaluated ----
        pop, extra = self.table.rd_dat, self.table.rd_extra
        dl = dict(derived_layout(cfg))
        p = Signal(cfg.pop_addr_bits + 1)
        layer = Signal(6)
        P = {name: Signal(width, name=f"pop_{name}") for name, width in self.layout.migen()}
        D = {name: Signal(width, name=f"pop_{name}") for name, width in derived_layout(cfg)}
        rnd = Signal(1 << cfg.shift_bits)
        self.comb += self.table.rd_adr.eq(p)
        extra_fields, off = {}, 0
        for name, width in derived_layout(cfg):
            extra_fields[name] = extra[off:off + width]
            off += width
        n_end = extra_fields["n_end"]
        pop_ok = Signal()
        self.comb += pop_ok.eq((pop.layer == layer) & (pop.tw != 0) & (pop.th != 0) & (pop.cc != 0)
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
        self.comb += [
            self.dirty_rd.valid.eq(scanning & (words.level + takes_in_flight < WORD_FIFO_DEPTH)),
            self.dirty_rd.word.eq(word), self.dirty_rd.mask.eq(mask),
            take.eq(self.dirty_rd.valid & self.dirty_rd.ready),
            # Only words with something to evaluate are kept.
            words.sink.valid.eq(self.dirty_out.valid & (self.dirty_out.bits != 0)),
            words.sink.word.eq(self.dirty_out.word), words.sink.bits.eq(self.dirty_out.bits),
        ]
        self.sync += takes_in_flight.eq(takes_in_flight + take - self.dirty_out.valid)

        # ---- emit: one dirty neuron per clock into the request register ----
        in_flight = Signal(max=PIPELINE_STAGES + 2)
        room = Signal()
        e_last_valid = Signal(2)     # neurons in the stages after in_flight's (E10, E11)
        req = self.acc_rd
        advance = Signal()
        self.comb += [
            advance.eq(~req.valid | req.ready),
        ]
        # Registered, with a margin of two for the emits made while it is being computed.
        self.sync += room.eq(spikes.level + in_flight + e_last_valid + 2 < SPIKE_FIFO_DEPTH)
        emitter = _Emitter(self, cfg, words.source, req.valid, req.n, advance, room)
        issue = Signal()
        self.comb += issue.eq(req.valid & req.ready)

        # ---- population walk ----
        self.fsm = fsm = FSM(reset_state="IDLE")
        fsm.act("IDLE",
            If(self.start, NextValue(p, 0), NextValue(layer, self.layer), NextState("FETCH")),
        )
        fsm.act("FETCH",
            If((p >= self.pop_count) | (p >= cfg.populations_per_core), NextState("IDLE")).Else(
                self.table.rd_start.eq(1), NextState("READ")),
        )
        fsm.act("READ",    # the descriptor arrives word by word
            If(self.table.rd_done, NextState("CHECK")),
        )
        fsm.act("CHECK",
            If(pop_ok,
                *[NextValue(P[name], getattr(pop, name)) for name in P],
                *[NextValue(D[name], extra_fields[name]) for name in D],
                NextValue(rnd, (1 << pop.shift) >> 1),
                NextValue(word, pop.nbase[5:] if nab > 5 else 0),
                NextValue(first_word, pop.nbase[5:] if nab > 5 else 0),
                NextValue(first_bit, pop.nbase[:5]),
                NextValue(last_word, (n_end - 1)[5:] if nab > 5 else 0),
                NextValue(last_bit, (n_end - 1)[:5]),
                NextState("SCAN"),
            ).Else(NextValue(p, p + 1), NextState("FETCH")),
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

        # ---- E1..E11: the neuron pipeline (every multiply alone in its stage) ----
        self.comb += sent_rd.adr.eq(req.n)
        e1 = PipeStage(self, issue, n=req.n)
        r = Signal(nab)
        self.comb += r.eq(e1.n - P["nbase"])
        sent1 = Signal((sb, True))
        self.comb += sent1.eq(sent_rd.dat_r)
        e2 = PipeStage(self, e1.valid, n=e1.n, r=r, sent=sent1)
        # acc arrives from the neuron unit with e2 (ACC_READ_LATENCY = 2).
        acc2 = Signal((ab, True))
        self.comb += acc2.eq(self.acc_out.acc)
        e3 = PipeStage(self, e2.valid, n=e2.n, r=e2.r, sent=e2.sent, acc=acc2, q_c=product(e2.r, D["cc_mul"]))
        # acc * mult as two products of at most 18 x 18 bits (one DSP block each), summed next stage.
        p_lo, p_hi = split_multiply(self, e3.acc, P["mult"])
        e4 = PipeStage(self, e3.valid, n=e3.n, r=e3.r, sent=e3.sent, p_lo=p_lo, p_hi=p_hi,
                       pix=(e3.q_c >> D["cc_shift"])[:nab])
        e5 = PipeStage(self, e4.valid, n=e4.n, r=e4.r, sent=e4.sent, pix=e4.pix,
                       prod=combine_split(self, e4.p_lo, e4.p_hi),
                       q_t=product(e4.pix, D["tw_mul"]), pcc=product(e4.pix, P["cc"]))
        rnd_s = Signal((len(rnd) + 1, True))
        prod5 = Signal((len(e5.prod), True))
        self.comb += rnd_s.eq(rnd), prod5.eq(e5.prod)
        e6 = PipeStage(self, e5.valid, n=e5.n, sent=e5.sent, pix=e5.pix, rounded=prod5 + rnd_s,
                       ty=(e5.q_t >> D["tw_shift"])[:nab], ci=(e5.r - e5.pcc[:nab])[:nab])
        rounded6 = Signal((len(e6.rounded), True))
        self.comb += rounded6.eq(e6.rounded)
        e7 = PipeStage(self, e6.valid, n=e6.n, sent=e6.sent, pix=e6.pix, ty=e6.ty, ci=e6.ci,
                       shifted=rounded6 >> P["shift"], tyw=product(e6.ty, P["tw"]))
        lo_s, hi_s = Signal((eb, True)), Signal((eb, True))
        shifted7 = Signal((len(e7.shifted), True))
        self.comb += lo_s.eq(P["lo"]), hi_s.eq(P["hi"]), shifted7.eq(e7.shifted)
        # The clamp's two wide compares get a stage of their own; the select follows in E8. An open
        # bound (Lava's ReLU without a ceiling, or no clamp) never clamps: the activation then fits
        # acc_bits + 1 bits (the mapper allows an open bound only with mult <= 2^shift).
        e7b = PipeStage(self, e7.valid, n=e7.n, sent=e7.sent, shifted=e7.shifted,
                        below=~P["lo_open"] & (shifted7 < lo_s), above=~P["hi_open"] & (shifted7 > hi_s),
                        ty=e7.ty, ci=e7.ci, tx=(e7.pix - e7.tyw[:nab])[:nab])
        a = Signal((sb, True))
        self.comb += If(e7b.below, a.eq(lo_s)).Elif(e7b.above, a.eq(hi_s)).Else(a.eq(e7b.shifted))
        e8 = PipeStage(self, e7b.valid, n=e7b.n, sent=e7b.sent, a=a, ty=e7b.ty, ci=e7b.ci, tx=e7b.tx)
        a8, sent8 = Signal((sb, True)), Signal((sb, True))
        self.comb += a8.eq(e8.a), sent8.eq(e8.sent)
        e9 = PipeStage(self, e8.valid, n=e8.n, a=e8.a, diff=a8 - sent8, x=P["x0"] + e8.tx, y=P["y0"] + e8.ty,
                       c=P["c0"] + e8.ci)
        diff9 = Signal((sb + 1, True))
        mag = Signal(sb + 1)
        fire = Signal()
        # fire iff d != 0 and |d| >= max(threshold register, theta) (arith._sigma_delta): two compares
        # side by side. The event carries d >> msg_shift (arithmetic), computed beside them.
        self.comb += [
            diff9.eq(e9.diff),
            mag.eq(Mux(diff9 < 0, -diff9, diff9)),
            fire.eq(e9.valid & (diff9 != 0) & (mag >= self.threshold) & (mag >= P["theta"])),
        ]
        e10 = PipeStage(self, fire, n=e9.n, a=e9.a, d=diff9 >> P["msg_shift"], x=e9.x, y=e9.y, c=e9.c)
        # A fire whose shifted change is 0 records sent but sends nothing (and counts no spike).
        d10 = Signal((eb, True))
        self.comb += d10.eq(e10.d)
        e11 = PipeStage(self, e10.valid & (d10 != 0), d=d10, x=e10.x, y=e10.y, c=e10.c)
        self.comb += [
            e_last_valid.eq(e10.valid + e11.valid),
            self.spike.eq(e11.valid),
            spikes.sink.valid.eq(e11.valid),
            spikes.sink.x.eq(e11.x), spikes.sink.y.eq(e11.y), spikes.sink.c.eq(e11.c), spikes.sink.d.eq(e11.d),
            spikes.sink.base.eq(P["peg_base"]), spikes.sink.count.eq(P["peg_count"]),
        ]
        e9_last = e9
        # Neurons in flight from the request register to E9 (E10's spike counts apart, then in the
        # FIFO's level).
        leave = Signal()
        self.comb += leave.eq(e9_last.valid)
        self.sync += in_flight.eq(in_flight + emitter.emit - leave)
        self.comb += drained.eq(~scanning & (takes_in_flight == 0) & ~words.source.valid & ~emitter.busy
                                & ~req.valid & (in_flight == 0) & ~e10.valid & ~e11.valid)

        # ---- sent memory: evaluation first, the host only while idle ----
        bus = self.sent_bus
        pipeline_empty = Signal()
        self.comb += pipeline_empty.eq(fsm.ongoing("IDLE") & (in_flight == 0) & ~e10.valid & ~e11.valid)
        host_go = Signal()
        mapped = Signal()
        read_mapped = Signal()
        reading = Signal(2)
        self.comb += [
            mapped.eq(bus.adr < cfg.neurons_per_core),
            host_go.eq(bus.cyc & bus.stb & ~bus.ack & pipeline_empty & (reading == 0)),
        ]
        sent_q = Signal((sb, True))
        self.sync += [
            sent_q.eq(sent_rd.dat_r),
            If(host_go, read_mapped.eq(mapped)),
            reading.eq(Cat(host_go & ~bus.we, reading[0])),
            bus.ack.eq((host_go & bus.we) | reading[1]),
            bus.dat_r.eq(Mux(reading[1] & read_mapped, sent_q, 0)),
        ]
        self.comb += [
            If(pipeline_empty, sent_rd.adr.eq(bus.adr)),
            If(e10.valid,
                sent_wr.adr.eq(e10.n), sent_wr.dat_w.eq(e10.a), sent_wr.we.eq(1),
            ).Else(
                sent_wr.adr.eq(bus.adr), sent_wr.dat_w.eq(bus.dat_w), sent_wr.we.eq(host_go & bus.we & mapped),
            ),
        ]

        self.comb += self.idle.eq(pipeline_empty & ~spikes.source.valid & ~self.start)

