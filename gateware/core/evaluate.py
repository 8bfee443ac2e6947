"""Evaluation unit (DESIGN.md, "Arithmetic" and "Evaluation and frames").

On `start`, every population descriptor (table order, p < pop_count) whose layer equals `layer` is
swept in neuron-address order with channel/column/row counters (no division). For each neuron:
  issue  read acc (through the neuron unit, in clocks the ESU leaves free), test-and-clear dirty,
         read sent
  E1     acc * mult
  E2     a = clamp((acc*mult + 2^(shift-1)) >> shift, lo, hi)   (no rounding term if shift = 0)
  E3     only if it was dirty: fire iff a != sent and |a - sent| >= threshold; then sent = a and the
         spike (x0+tx, y0+ty, c0+ci, d = a - sent, peg_base, peg_count) goes to the spike FIFO
The spike FIFO feeds the PEG. A neuron is issued only when the FIFO has room for everything in
flight, so the pipeline itself never stalls. A sweep stops at the end of the neuron memory.
`start` while busy is ignored. The event value d keeps the low event_bits bits of a - sent.
"""
from __future__ import annotations

from migen import If, Memory, Mux, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import pop_desc

from ..common import sync_fifo
from ..tables import TableMemory
from .peg import spike_layout

SPIKE_FIFO_DEPTH = 8


class EvaluationUnit(LiteXModule):
    def __init__(self, cfg: FabricConfig, pop_stride: int | None = None):
        nab, ab, eb = cfg.neuron_addr_bits, cfg.acc_bits, cfg.event_bits
        cb, chb = cfg.coord_bits, cfg.chan_bits
        self.start = Signal()
        self.layer = Signal(6)
        self.threshold = Signal(eb)
        self.pop_count = Signal(cfg.pop_addr_bits + 1)
        self.table = TableMemory(pop_desc(cfg), cfg.populations_per_core, pop_stride)
        # Neuron unit read port (see NeuronUnit.rd_*).
        self.rd_req = Signal()
        self.rd_adr = Signal(nab)
        self.rd_grant = Signal()
        self.rd_acc = Signal((ab, True))
        self.rd_dirty = Signal()
        self.source = stream.Endpoint(spike_layout(cfg))   # to the PEG sink
        self.spike = Signal()
        self.sent_bus = wishbone.Interface(data_width=32, adr_width=nab, addressing="word")
        self.idle = Signal()

        # # #

        sent = Memory(eb, cfg.neurons_per_core, name="sent")
        sent_rd = sent.get_port()
        sent_wr = sent.get_port(write_capable=True)
        self.specials += sent, sent_rd, sent_wr

        fifo = sync_fifo(spike_layout(cfg), SPIKE_FIFO_DEPTH)
        self.fifo = fifo
        self.comb += fifo.source.connect(self.source)

        # ---- population walk ----
        pop = self.table.rd_dat
        p = Signal(cfg.pop_addr_bits + 1)
        layer = Signal(6)
        state = Signal(3)
        IDLE, FETCH, CHECK, SWEEP, DRAIN = range(5)
        # Parameters of the population being swept.
        tw, th, cc = Signal(cb + 1), Signal(cb + 1), Signal(chb + 1)
        x0, y0, c0 = Signal(cb), Signal(cb), Signal(chb)
        mult, shift = Signal(cfg.mult_bits), Signal(cfg.shift_bits)
        lo, hi = Signal((eb, True)), Signal((eb, True))
        peg_base, peg_count = Signal(cfg.peg_addr_bits), Signal(cfg.peg_addr_bits + 1)
        n = Signal(nab + 1)
        ci, tx, ty = Signal(chb + 1), Signal(cb + 1), Signal(cb + 1)
        self.comb += self.table.rd_adr.eq(p)

        # In-flight bookkeeping: E1, E2, E3 valid bits.
        v1, v2, v3 = Signal(), Signal(), Signal()
        in_flight = Signal(2)
        self.comb += in_flight.eq(v1 + v2 + v3)
        room = Signal()
        self.comb += room.eq(fifo.level + in_flight < SPIKE_FIFO_DEPTH)
        issue = Signal()
        last_neuron = Signal()
        self.comb += [
            self.rd_req.eq((state == SWEEP) & room),
            self.rd_adr.eq(n),
            issue.eq(self.rd_grant),
            last_neuron.eq(((ci == cc - 1) & (tx == tw - 1) & (ty == th - 1)) | (n == cfg.neurons_per_core - 1)),
        ]
        pop_ok = Signal()
        self.comb += pop_ok.eq((pop.layer == layer) & (pop.tw != 0) & (pop.th != 0) & (pop.cc != 0)
                               & (pop.nbase < cfg.neurons_per_core))
        self.sync += [
            If(state == IDLE,
                If(self.start, p.eq(0), layer.eq(self.layer), state.eq(FETCH)),
            ).Elif(state == FETCH,
                If((p >= self.pop_count) | (p >= cfg.populations_per_core), state.eq(IDLE)).Else(state.eq(CHECK)),
            ).Elif(state == CHECK,
                If(pop_ok,
                    n.eq(pop.nbase), ci.eq(0), tx.eq(0), ty.eq(0),
                    tw.eq(pop.tw), th.eq(pop.th), cc.eq(pop.cc), x0.eq(pop.x0), y0.eq(pop.y0), c0.eq(pop.c0),
                    mult.eq(pop.mult), shift.eq(pop.shift), lo.eq(pop.lo), hi.eq(pop.hi),
                    peg_base.eq(pop.peg_base), peg_count.eq(pop.peg_count),
                    state.eq(SWEEP),
                ).Else(p.eq(p + 1), state.eq(FETCH)),
            ).Elif(state == SWEEP,
                If(issue,
                    n.eq(n + 1),
                    If(ci != cc - 1, ci.eq(ci + 1)).Else(
                        ci.eq(0),
                        If(tx != tw - 1, tx.eq(tx + 1)).Else(tx.eq(0), ty.eq(ty + 1)),
                    ),
                    If(last_neuron, state.eq(DRAIN)),
                ),
            ).Elif(state == DRAIN,
                # The next population's parameters replace these only when nothing uses them.
                If(in_flight == 0, p.eq(p + 1), state.eq(FETCH)),
            ),
        ]

        # ---- E1: memory outputs, multiply ----
        e1_n, e1_ci, e1_tx, e1_ty = Signal(nab), Signal(chb + 1), Signal(cb + 1), Signal(cb + 1)
        # Stage data registers load only with a valid neuron: nothing reads them otherwise.
        self.sync += v1.eq(issue), If(issue, e1_n.eq(n), e1_ci.eq(ci), e1_tx.eq(tx), e1_ty.eq(ty))
        self.comb += sent_rd.adr.eq(n)
        prod = Signal((ab + cfg.mult_bits + 1, True))
        self.comb += prod.eq(self.rd_acc * mult)
        e2_prod = Signal.like(prod)
        e2_sent = Signal((eb, True))
        e2_n, e2_ci, e2_tx, e2_ty = Signal(nab), Signal(chb + 1), Signal(cb + 1), Signal(cb + 1)
        self.sync += [
            v2.eq(v1 & self.rd_dirty),
            If(v1 & self.rd_dirty, e2_prod.eq(prod), e2_sent.eq(sent_rd.dat_r),
               e2_n.eq(e1_n), e2_ci.eq(e1_ci), e2_tx.eq(e1_tx), e2_ty.eq(e1_ty)),
        ]

        # ---- E2: round, shift, clamp ----
        rnd = Signal(1 << cfg.shift_bits)
        shifted = Signal((len(prod) + 1, True))
        self.comb += rnd.eq((1 << shift) >> 1), shifted.eq((e2_prod + rnd) >> shift)
        a = Signal((eb, True))
        self.comb += If(shifted < lo, a.eq(lo)).Elif(shifted > hi, a.eq(hi)).Else(a.eq(shifted))
        e3_a, e3_sent = Signal((eb, True)), Signal((eb, True))
        e3_n, e3_ci, e3_tx, e3_ty = Signal(nab), Signal(chb + 1), Signal(cb + 1), Signal(cb + 1)
        self.sync += [
            v3.eq(v2),
            If(v2, e3_a.eq(a), e3_sent.eq(e2_sent), e3_n.eq(e2_n), e3_ci.eq(e2_ci), e3_tx.eq(e2_tx), e3_ty.eq(e2_ty)),
        ]

        # ---- E3: fire rule, sent write, spike out ----
        diff = Signal((eb + 1, True))
        mag = Signal(eb + 1)
        fire = Signal()
        self.comb += [
            diff.eq(e3_a - e3_sent),
            mag.eq(Mux(diff < 0, -diff, diff)),
            fire.eq(v3 & (diff != 0) & (mag >= self.threshold)),
            self.spike.eq(fire),
            fifo.sink.valid.eq(fire),
            fifo.sink.x.eq(x0 + e3_tx), fifo.sink.y.eq(y0 + e3_ty), fifo.sink.c.eq(c0 + e3_ci),
            fifo.sink.d.eq(diff), fifo.sink.base.eq(peg_base), fifo.sink.count.eq(peg_count),
        ]

        # ---- sent memory: evaluation first, the host only while idle ----
        bus = self.sent_bus
        pipeline_empty = Signal()
        self.comb += pipeline_empty.eq((state == IDLE) & ~v1 & ~v2 & ~v3)
        host_go = Signal()
        mapped = Signal()
        self.comb += [
            mapped.eq(bus.adr < cfg.neurons_per_core),
            host_go.eq(bus.cyc & bus.stb & ~bus.ack & pipeline_empty),
        ]
        self.sync += bus.ack.eq(host_go)
        sent_signed = Signal((eb, True))
        self.comb += [
            sent_signed.eq(sent_rd.dat_r),
            bus.dat_r.eq(0),
            If(mapped, bus.dat_r.eq(sent_signed)),
            If(pipeline_empty, sent_rd.adr.eq(bus.adr)),
            If(fire,
                sent_wr.adr.eq(e3_n), sent_wr.dat_w.eq(e3_a), sent_wr.we.eq(1),
            ).Else(
                sent_wr.adr.eq(bus.adr), sent_wr.dat_w.eq(bus.dat_w), sent_wr.we.eq(host_go & bus.we & mapped),
            ),
        ]

        self.comb += self.idle.eq(pipeline_empty & ~fifo.source.valid)
