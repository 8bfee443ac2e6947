"""A linked board SoC: two board-to-board link ends (gateware/link/, synfab.linkframe) on the
stream bridge's second port, their registers on the bus (layouts LINK_*).

    add_board_links(soc, prev_end, next_end)

`prev_end` (a LinkReceiver) takes the board before's output beats into this board's input
stream; `next_end` (a LinkSender) sends this board's output beats to the board after while ctrl
LINK_CTRL_TO_NEXT is set (else they stay in the bridge's output FIFO for the host). Every board of
a chain runs the same bitstream: the first takes its input from the host and leaves `prev`
unused, the last sends its output to the host. On the ULX3S the link wires are on the GPIO
header (LINK_PINS); in the LiteX sim each end's bytes go through a synfab_wire module.

Only linked SoCs import this (the single-board bitstreams' source key leaves it out with
gateware/link/, soc/toolchain.BOARD_LINKS).
"""
from __future__ import annotations

from migen import Case, Cat, Constant, If, Record, Signal
from litex.gen import LiteXModule
from litex.soc.integration.soc import SoCRegion
from litex.soc.interconnect import wishbone

from synfab import layouts as soc_map
from synfab.layouts import STREAM_EVENT

# The ULX3S's GPIO header pairs (litex-boards' "gpio" resources: p, n): per end, p the wire out,
# n the wire in. Board k's next.p goes to board k+1's prev.n and board k+1's prev.p to board k's next.n.
LINK_PINS = {"ulx3s": {"prev": ("gpio", 0), "next": ("gpio", 1)},
             "ulx3s-45f": {"prev": ("gpio", 0), "next": ("gpio", 1)}}
LINK_KINDS = ("uart",)


class BoardLinkRegs(LiteXModule):
    """The link ends' registers (layouts.LINK_REGS, word addressed).

        bus       in   wishbone slave
        clear     out  one-clock pulse: both ends' counters and `broken` cleared
        to_next   out  1: output beats go to the next board (ctrl LINK_CTRL_TO_NEXT)
    """

    def __init__(self, prev_end, next_end):
        self.bus = bus = wishbone.Interface(data_width=32, address_width=(soc_map.LINK_SIZE - 1).bit_length(),
                                            addressing="word")
        self.clear = Signal()
        self.to_next = Signal()

        # # #

        access = Signal()
        values = {"id": Constant(soc_map.LINK_MAGIC, 32), "ctrl": Cat(Constant(0, 1), self.to_next),
                  "prev_received": prev_end.received, "prev_errors": prev_end.errors,
                  "prev_broken": prev_end.broken, "next_sent": next_end.sent, "next_bytes": next_end.bytes,
                  "next_packets": next_end.packets,
                  "next_credit_errors": next_end.credit_errors}
        ctrl = soc_map.LINK_REGS.index("ctrl")
        self.comb += [
            access.eq(bus.cyc & bus.stb & ~bus.ack),
            self.clear.eq(access & bus.we & (bus.adr == ctrl) & bus.dat_w[0]),
        ]
        self.sync += [
            bus.ack.eq(access),
            If(access & ~bus.we, Case(bus.adr, {**{i: bus.dat_r.eq(values[n]) for i, n in enumerate(soc_map.LINK_REGS)},
                                                "default": bus.dat_r.eq(0)})),
            If(access & bus.we & (bus.adr == ctrl), self.to_next.eq(bus.dat_w[1])),
        ]


def add_board_links(soc, prev_end, next_end) -> BoardLinkRegs:
    """The two ends on soc.synfab.stream_bridge's second port (add_synfab(..., with_ext=True))
    and their registers at LINK_BASE."""
    bridge = soc.synfab.stream_bridge
    soc.synfab.submodules.link_prev = prev_end
    soc.synfab.submodules.link_next = next_end
    soc.synfab.submodules.link_regs = regs = BoardLinkRegs(prev_end, next_end)
    eof = STREAM_EVENT.offsets["eof"]
    soc.comb += [
        # The end-of-frame beat is the frame's last: the bridge releases the frame on it.
        prev_end.source.connect(bridge.ext_sink, omit={"last"}),
        bridge.ext_sink.last.eq(prev_end.source.data[eof]),
        bridge.ext_source.connect(next_end.sink, omit={"last"}),
        bridge.ext_out.eq(regs.to_next),
        prev_end.clear.eq(regs.clear), next_end.clear.eq(regs.clear),
    ]
    soc.bus.add_slave("synfab_links", regs.bus,
                      SoCRegion(origin=soc_map.LINK_BASE, size=soc_map.LINK_SIZE, cached=False))
    return regs


def uart_link_ends(platform, board_name: str, clocks_per_bit: int):
    """(prev LinkReceiver, next LinkSender) on the board's link pins (LINK_PINS)."""
    from ..link import LinkReceiver, LinkSender

    def pads(end):
        res = platform.request(*LINK_PINS[board_name][end])
        wires = Record([("tx", 1), ("rx", 1)])
        wires.tx.reset = 1
        return wires, [res.p.eq(wires.tx), wires.rx.eq(res.n)]

    (prev_pads, prev_io), (next_pads, next_io) = pads("prev"), pads("next")
    prev_end = LinkReceiver(prev_pads, clocks_per_bit)
    next_end = LinkSender(next_pads, clocks_per_bit)
    return prev_end, next_end, prev_io + next_io


def sim_link_ends(platform):
    """(prev LinkReceiver, next LinkSender) on the LiteX sim's byte pads link_prev / link_next
    (RS232PHYModel: a byte a clock; the synfab_wire module carries them)."""
    from litex.soc.cores.uart import RS232PHYModel
    from ..link import LinkReceiver, LinkSender
    prev_end = LinkReceiver(None, 4, phy=RS232PHYModel(platform.request("link_prev")))
    next_end = LinkSender(None, 4, phy=RS232PHYModel(platform.request("link_next")))
    return prev_end, next_end
