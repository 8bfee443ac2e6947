"""The fabric behind AXI: an AXI4-Lite slave for the RegisterMap and AXI4-Stream in/out for events.

LiteX's AXILite2Wishbone answers OKAY to everything and waits forever for an `ack` that an
error never brings, so this file has its own small bridge that turns a wishbone `err` into
SLVERR on bresp/rresp.
"""
from __future__ import annotations

from migen import If, Signal
from migen.genlib.fsm import FSM, NextState, NextValue
from litex.gen import LiteXModule
from litex.soc.interconnect import stream
from litex.soc.interconnect.axi import AXILiteInterface
from litex.soc.interconnect.axi.axi_common import RESP_OKAY, RESP_SLVERR

from synfab.config import FabricConfig
from synfab.layouts import RegisterMap

from .core.core import NeuronCore
from .fabric import BEAT, WORD, Fabric


class AXILite2WishboneErr(LiteXModule):
    """AXI4-Lite slave -> wishbone master (word addressed), one access at a time; wishbone err
    answers SLVERR. When a read and a write are both waiting they alternate."""

    def __init__(self, axi_lite: AXILiteInterface, wb):
        shift = (WORD - 1).bit_length()
        if axi_lite.address_width != len(wb.adr) + shift:
            raise ValueError(f"AXI-Lite address width {axi_lite.address_width} does not match "
                             f"wishbone {len(wb.adr)} word address bits")

        # # #

        ax = axi_lite
        data = Signal(32)
        resp = Signal(2)
        last_was_read = Signal()
        done = Signal()
        self.comb += done.eq(wb.ack | wb.err)
        write_ready = Signal()
        self.comb += write_ready.eq(ax.aw.valid & ax.w.valid)

        self.fsm = fsm = FSM(reset_state="IDLE")
        fsm.act("IDLE",
            If(ax.ar.valid & (~write_ready | ~last_was_read),
                NextValue(last_was_read, 1), NextState("READ"),
            ).Elif(write_ready,
                NextValue(last_was_read, 0), NextState("WRITE"),
            ),
        )
        fsm.act("READ",
            wb.cyc.eq(1), wb.stb.eq(1), wb.we.eq(0),
            wb.adr.eq(ax.ar.addr[shift:]), wb.sel.eq(0b1111),
            If(done,
                ax.ar.ready.eq(1),
                NextValue(data, wb.dat_r),
                NextValue(resp, RESP_OKAY),
                If(wb.err, NextValue(resp, RESP_SLVERR)),
                NextState("READ_RESP"),
            ),
        )
        fsm.act("READ_RESP",
            ax.r.valid.eq(1), ax.r.data.eq(data), ax.r.resp.eq(resp),
            If(ax.r.ready, NextState("IDLE")),
        )
        fsm.act("WRITE",
            wb.cyc.eq(1), wb.stb.eq(1), wb.we.eq(1),
            wb.adr.eq(ax.aw.addr[shift:]), wb.sel.eq(ax.w.strb), wb.dat_w.eq(ax.w.data),
            If(done,
                ax.aw.ready.eq(1), ax.w.ready.eq(1),
                NextValue(resp, RESP_OKAY),
                If(wb.err, NextValue(resp, RESP_SLVERR)),
                NextState("WRITE_RESP"),
            ),
        )
        fsm.act("WRITE_RESP",
            ax.b.valid.eq(1), ax.b.resp.eq(resp),
            If(ax.b.ready, NextState("IDLE")),
        )


class AXIFabric(LiteXModule):
    """`.axil` AXI4-Lite slave (byte addresses, RegisterMap(cfg).addr_bits wide), `.axis_in` and
    `.axis_out` 64-bit event streams (STREAM_EVENT beats, last = TLAST)."""

    def __init__(self, cfg: FabricConfig, core_factory=NeuronCore):
        self.axil = AXILiteInterface(data_width=32, address_width=RegisterMap(cfg).addr_bits)
        self.axis_in = stream.Endpoint(BEAT)
        self.axis_out = stream.Endpoint(BEAT)

        # # #

        self.fabric = Fabric(cfg, core_factory)
        self.bridge = AXILite2WishboneErr(self.axil, self.fabric.bus)
        self.comb += [self.axis_in.connect(self.fabric.sink), self.fabric.source.connect(self.axis_out)]
