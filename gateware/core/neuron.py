"""Neuron unit: acc[n] = wrap(acc[n] + w * d); dirty[n] = 1, one pair per clock.

Two-stage read-modify-write on the accumulator memory:
  A  read acc[n] (synchronous), multiply w * d
  B  acc_old + product -> write acc[n], set dirty[n]
The pair right behind a write reads the memory in the same clock as that write, so stage B takes
its operand from the previous write when the neuron addresses match (hazard forwarding): pairs that
hit the same neuron back to back still run at one per clock.

The ESU owns the memory ports whenever it has a pair. The evaluation unit reads acc (and
test-and-clears dirty) in the other clocks; the host reaches acc through `.acc_bus` only when the
pipeline is empty and evaluation is not running (`host_block`), so it never races either of them.
"""
from __future__ import annotations

from migen import If, Memory, READ_FIRST, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone

from synfab.config import FabricConfig


class NeuronUnit(LiteXModule):
    def __init__(self, cfg: FabricConfig):
        nab, ab = cfg.neuron_addr_bits, cfg.acc_bits
        # Pair input (from the ESU; no backpressure).
        self.valid = Signal()
        self.n = Signal(nab)
        self.w = Signal((cfg.weight_bits, True))
        self.d = Signal((cfg.event_bits, True))
        # Evaluation read: granted in clocks without a pair; data (and the dirty bit, which the
        # granted read clears) one clock later.
        self.rd_req = Signal()
        self.rd_adr = Signal(nab)
        self.rd_grant = Signal()
        self.rd_acc = Signal((ab, True))
        self.rd_dirty = Signal()
        # Host access (acc window: sign-extended acc; a write also marks the neuron dirty).
        self.host_block = Signal()
        self.acc_bus = wishbone.Interface(data_width=32, adr_width=nab, addressing="word")
        self.synop = Signal()    # pulse: one synapse applied
        self.idle = Signal()

        # # #

        acc = Memory(ab, cfg.neurons_per_core, name="acc")
        dirty = Memory(1, cfg.neurons_per_core, name="dirty")
        acc_rd = acc.get_port()
        acc_wr = acc.get_port(write_capable=True)
        dirty_set = dirty.get_port(write_capable=True)
        dirty_tc = dirty.get_port(write_capable=True, mode=READ_FIRST)
        self.specials += acc, dirty, acc_rd, acc_wr, dirty_set, dirty_tc

        # Stage A: read and multiply.
        b_valid = Signal()
        b_n = Signal(nab)
        b_prod = Signal((cfg.weight_bits + cfg.event_bits, True))
        # Stage data registers load only with a valid pair: nothing reads them otherwise.
        self.sync += b_valid.eq(self.valid), If(self.valid, b_n.eq(self.n), b_prod.eq(self.w * self.d))

        # Stage B: forward, add, write.
        fwd_valid = Signal()
        fwd_n = Signal(nab)
        fwd_acc = Signal((ab, True))
        old = Signal((ab, True))
        new = Signal((ab, True))
        self.comb += [
            old.eq(acc_rd.dat_r),
            If(fwd_valid & (fwd_n == b_n), old.eq(fwd_acc)),
            new.eq(old + b_prod),
            self.synop.eq(b_valid),
        ]
        self.sync += fwd_valid.eq(b_valid), If(b_valid, fwd_n.eq(b_n), fwd_acc.eq(new))

        # Host access, only when nothing else can touch the neuron state.
        bus = self.acc_bus
        host_go = Signal()
        mapped = Signal()
        self.comb += [
            mapped.eq(bus.adr < cfg.neurons_per_core),
            host_go.eq(bus.cyc & bus.stb & ~bus.ack & ~self.host_block & ~self.valid & ~b_valid & ~self.rd_req),
        ]
        self.sync += bus.ack.eq(host_go)
        acc_signed = Signal((ab, True))
        self.comb += acc_signed.eq(acc_rd.dat_r), bus.dat_r.eq(0), If(mapped, bus.dat_r.eq(acc_signed))
        host_write = Signal()
        self.comb += host_write.eq(host_go & bus.we & mapped)

        # Port arbitration: the ESU pair first, then evaluation, then the host.
        self.comb += [
            self.rd_grant.eq(self.rd_req & ~self.valid),
            If(self.valid, acc_rd.adr.eq(self.n)).Elif(self.rd_req, acc_rd.adr.eq(self.rd_adr)).Else(
                acc_rd.adr.eq(bus.adr)),
            self.rd_acc.eq(acc_rd.dat_r),
            If(b_valid,
                acc_wr.adr.eq(b_n), acc_wr.dat_w.eq(new), acc_wr.we.eq(1),
                dirty_set.adr.eq(b_n), dirty_set.dat_w.eq(1), dirty_set.we.eq(1),
            ).Else(
                acc_wr.adr.eq(bus.adr), acc_wr.dat_w.eq(bus.dat_w), acc_wr.we.eq(host_write),
                dirty_set.adr.eq(bus.adr), dirty_set.dat_w.eq(1), dirty_set.we.eq(host_write),
            ),
            dirty_tc.adr.eq(self.rd_adr),
            dirty_tc.dat_w.eq(0),
            dirty_tc.we.eq(self.rd_grant),
            self.rd_dirty.eq(dirty_tc.dat_r),
        ]
        self.comb += self.idle.eq(~self.valid & ~b_valid)
