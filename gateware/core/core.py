"""NeuronCore: event FIFO -> ESU -> neuron unit; evaluation unit -> PEG -> packets out.

`.bus` is the core's window of the RegisterMap (the fabric's, layouts.FABRIC_LAYOUT_VERSION;
core-local word address = (byte address - core base) >> 2): the core registers and counters, and
the pop/esu/peg/weights windows and one window per neuron word (acc in the neuron unit; sent, u, v,
ref, bias in the evaluation unit). Unused words inside a table window read 0 and ignore writes; the
gaps between windows answer a bus error.

Counters (32 bits, wrapping, cleared by `clear_counters`):
  packets_in    packets taken from `.sink`
  synops        synapses applied (acc updates)
  spikes        neurons that fired
  packets_out   packets sent on `.source`
  busy_cycles   clocks with the core not idle
  stall_cycles  clocks with `.source` blocked (valid & ~ready) or `.sink` refused (valid & ~ready:
                the event FIFO is full because the ESU is busy)
  dropped       packets with syn >= esu_count or a HOST-kind descriptor, plus pairs whose neuron
                or weight address lies outside the memories (and DW pairs outside the part's channels)
"""
from __future__ import annotations

from migen import Case, If, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import CORE_COUNTERS, FABRIC_LAYOUT_VERSION, RegisterMap, _pow2, packet

from ..common import decode, sync_fifo
from .esu import ESU
from .evaluate import EvaluationUnit
from .neuron import NeuronUnit
from .peg import PEG

COUNTER_BITS = 32


class NeuronCore(LiteXModule):
    def __init__(self, cfg: FabricConfig, core_id: int):
        self.cfg = cfg
        self.core_id = core_id
        rm = RegisterMap(cfg, FABRIC_LAYOUT_VERSION)
        win = rm.core_windows
        self.sink = stream.Endpoint(packet(cfg).migen())
        self.source = stream.Endpoint(packet(cfg).migen())
        self.bus = wishbone.Interface(data_width=32, adr_width=(rm.core_stride // 4 - 1).bit_length(),
                                      addressing="word")
        self.eval_start = Signal()
        self.eval_layer = Signal(6)
        self.eval_reset = Signal()      # with eval_start: clear the layer's u, v, ref first (reset interval)
        self.threshold = Signal(cfg.event_bits)
        self.clear_counters = Signal()
        self.idle = Signal()            # low already in the clock of eval_start (the fabric's drain check counts on it)
        self.spike = Signal()

        # # #

        self.fifo = fifo = sync_fifo(packet(cfg).migen(), cfg.event_fifo_depth)
        self.esu = esu = ESU(cfg, win["esu"].stride)
        self.neurons = nu = NeuronUnit(cfg)
        self.evaluation = ev = EvaluationUnit(cfg, win["pop"].stride)
        self.peg = peg = PEG(cfg, cfg.peg_entries_per_core, win["peg"].stride)

        self.comb += [
            self.sink.connect(fifo.sink),
            fifo.source.connect(esu.sink),
            esu.source.connect(nu.sink),
            ev.acc_rd.connect(nu.acc_rd), nu.acc_out.connect(ev.acc_out),
            ev.dirty_rd.connect(nu.dirty_rd), nu.dirty_out.connect(ev.dirty_out),
            ev.wb.connect(nu.wb),
            ev.start.eq(self.eval_start), ev.layer.eq(self.eval_layer), ev.threshold.eq(self.threshold),
            ev.reset.eq(self.eval_reset),
            ev.source.connect(peg.sink),
            peg.source.connect(self.source),
            self.spike.eq(ev.spike),
        ]

        # Registered, so the evaluation unit's pipeline state and the neuron unit's choice of
        # the clock's operation never meet in one clock; the unit arbitrates the clock in which a
        # start and a host access coincide.
        self.sync += nu.host_block.eq(~ev.idle | self.eval_start)

        # Core registers.
        esu_count = Signal(cfg.esu_addr_bits + 1)
        pop_count = Signal(cfg.pop_addr_bits + 1)
        self.comb += esu.esu_count.eq(esu_count), ev.pop_count.eq(pop_count)

        # Idle: nothing anywhere that could still produce work.
        self.comb += self.idle.eq(~self.sink.valid & ~fifo.source.valid & esu.idle & nu.idle & ev.idle
                                  & peg.idle & ~self.eval_start)

        # Counters.
        events = {
            "packets_in": self.sink.valid & self.sink.ready,
            "synops": nu.synop,
            "spikes": ev.spike,
            "packets_out": self.source.valid & self.source.ready,
            "busy_cycles": ~self.idle,
            "stall_cycles": (self.source.valid & ~self.source.ready) | (self.sink.valid & ~self.sink.ready),
            "dropped": esu.dropped,
        }
        assert list(events) == CORE_COUNTERS
        self.counters = {name: Signal(COUNTER_BITS, name=name) for name in CORE_COUNTERS}
        for name, event in events.items():
            # Registered (a counter counts its event one clock later: nothing reads it that soon),
            # through a signal of the event's own width: `~idle` must count 1, not widen to -1.
            inc = Signal(len(esu.dropped) if name == "dropped" else len(nu.synop) if name == "synops" else 1,
                         name=f"{name}_inc")
            c = self.counters[name]
            self.sync += [
                inc.eq(event),
                If(self.clear_counters, c.eq(0), inc.eq(0)).Else(c.eq(c + inc)),
            ]

        # Register window: core registers and counters (read-only).
        regs_words = _pow2(max([*rm.core_regs.values(), *rm.core_counters.values()]) // 4 + 1)
        regs = wishbone.Interface(data_width=32, adr_width=(regs_words - 1).bit_length(), addressing="word")
        self.sync += regs.ack.eq(regs.cyc & regs.stb & ~regs.ack)
        # (word, register, largest value): writes saturate to the table size, like the fabric's registers.
        writable = [(rm.core_regs["esu_count"] // 4, esu_count, cfg.esu_descriptors_per_core),
                    (rm.core_regs["pop_count"] // 4, pop_count, cfg.populations_per_core)]
        readable = {a: s for a, s, _ in writable}
        readable.update({rm.core_counters[name] // 4: c for name, c in self.counters.items()})
        self.sync += If(regs.cyc & regs.stb & ~regs.ack & regs.we, Case(regs.adr, {
            a: If(regs.dat_w > top, s.eq(top)).Else(s.eq(regs.dat_w)) for a, s, top in writable}))
        self.comb += Case(regs.adr, {**{a: regs.dat_r.eq(s) for a, s in readable.items()},
                                     "default": regs.dat_r.eq(0)})

        slaves = {"pop": ev.table.bus, "esu": esu.table.bus, "peg": peg.table.bus,
                  "weights": esu.weights.bus, "acc": nu.acc_bus, **ev.buses}
        windows = [(0, regs_words, regs)] + [(w.base // 4, _pow2(w.entries * w.stride), slaves[name])
                                             for name, w in win.items() if name in slaves]
        decode(self, self.bus, windows)
