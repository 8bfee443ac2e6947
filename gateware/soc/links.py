"""A linked board SoC: two board-to-board link ends (gateware/link/, synfab.linkframe) on the
stream bridge's second port, their registers on the bus (layouts LINK_*).

    add_board_links(soc, prev_end, next_end)      # the UART link (UARTBone SoC)
    add_eth_board_links(soc, udp_stream, board)   # the Ethernet link (Ethernet SoC, board index)

`prev_end` (a LinkReceiver) takes the board before's output beats into this board's input
stream; `next_end` (a LinkSender) sends this board's output beats to the board after while ctrl
LINK_CTRL_TO_NEXT is set (else they stay in the bridge's output FIFO for the host). Every board of
a chain runs the same bitstream: the first takes its input from the host and leaves `prev`
unused, the last sends its output to the host. On the ULX3S the link wires are on the GPIO
header (LINK_PINS); in the LiteX sim each end's bytes go through a synfab_wire module.

On a board with Ethernet (the Colorlight i5 / i9) every board of a chain sits on one switch with
the host: its one UDP/IP core (soc.eth.add_ethernet, at layouts.eth_board_address(board)) carries
Etherbone, the host's UDP stream port and both link ends (their own UDP ports). The bridge's
second port then takes input from the host's stream port or the link from the board before,
whole frames at a time (LiteX's packet.Arbiter), and gives output to the host's stream port or,
while ctrl LINK_CTRL_TO_NEXT is set, to the board after. A board's addresses are built in
(`synfab build --link eth --board-index K`), so each board of a chain has a bitstream of its own.

Only linked SoCs import this (the single-board bitstreams' source key leaves it out with
gateware/link/, soc/toolchain.BOARD_LINKS).
"""
from __future__ import annotations

from migen import Case, Cat, Constant, If, Record, Signal
from litex.gen import LiteXModule
from litex.soc.integration.soc import SoCRegion
from litex.soc.interconnect import packet, stream, wishbone

from synfab import boards as board_data
from synfab import layouts as soc_map
from synfab.layouts import STREAM_EVENT

# The ULX3S's GPIO header pairs (litex-boards' "gpio" resources: p, n): per end, p the wire out,
# n the wire in. Board k's next.p goes to board k+1's prev.n and board k+1's prev.p to board k's next.n.
LINK_PINS = {"ulx3s": {"prev": ("gpio", 0), "next": ("gpio", 1)},
             "ulx3s-45f": {"prev": ("gpio", 0), "next": ("gpio", 1)}}
# Where each link kind runs: the UART link on a board's header pins, the Ethernet link on a board
# whose host link is Ethernet.
LINK_BOARDS = {"uart": tuple(LINK_PINS), "eth": tuple(board_data.ETHERNET_BOARDS)}


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


def _add_link_regs(soc, prev_end, next_end) -> BoardLinkRegs:
    soc.synfab.submodules.link_prev = prev_end
    soc.synfab.submodules.link_next = next_end
    soc.synfab.submodules.link_regs = regs = BoardLinkRegs(prev_end, next_end)
    soc.comb += [prev_end.clear.eq(regs.clear), next_end.clear.eq(regs.clear)]
    soc.bus.add_slave("synfab_links", regs.bus,
                      SoCRegion(origin=soc_map.LINK_BASE, size=soc_map.LINK_SIZE, cached=False))
    return regs


def _with_frame_last(end_source):
    """A link end's beats with `last` on the end-of-frame beat (the bridge releases a frame on it)."""
    beats = stream.Endpoint(end_source.description)
    return beats, [end_source.connect(beats, omit={"last"}),
                   beats.last.eq(end_source.data[STREAM_EVENT.offsets["eof"]])]


def add_board_links(soc, prev_end, next_end) -> BoardLinkRegs:
    """The two ends on soc.synfab.stream_bridge's second port (add_synfab(..., with_ext=True))
    and their registers at LINK_BASE."""
    bridge = soc.synfab.stream_bridge
    regs = _add_link_regs(soc, prev_end, next_end)
    beats, join = _with_frame_last(prev_end.source)
    soc.comb += [
        *join, beats.connect(bridge.ext_sink),
        bridge.ext_source.connect(next_end.sink, omit={"last"}),
        bridge.ext_out.eq(regs.to_next),
    ]
    return regs


def add_eth_board_links(soc, udp_stream, board: int) -> BoardLinkRegs:
    """Board `board`'s two Ethernet link ends on the SoC's UDP core beside the host's stream port
    `udp_stream` (soc.eth.add_ethernet(..., join_bridge=False)), both on the bridge's second port
    (see the module doc), their registers at LINK_BASE."""
    from synfab import linkframe as lf
    from ..link.eth import EthLinkReceiver, EthLinkSender
    from .eth import udp_user_port
    bridge = soc.synfab.stream_bridge
    prev_end = EthLinkReceiver(udp_user_port(soc, lf.ETH_LINK_DATA_PORT), board - 1 if board else None)
    next_end = EthLinkSender(udp_user_port(soc, lf.ETH_LINK_CREDIT_PORT),
                             board + 1 if board + 1 < soc_map.ETH_MAX_BOARDS else None)
    regs = _add_link_regs(soc, prev_end, next_end)
    beats, join = _with_frame_last(prev_end.source)
    soc.synfab.submodules.link_input = packet.Arbiter([udp_stream.source, beats], bridge.ext_sink)
    soc.synfab.submodules.link_output = output = stream.Demultiplexer(bridge.ext_source.description, 2)
    soc.comb += [
        *join,
        bridge.ext_source.connect(output.sink),
        output.sel.eq(regs.to_next),
        output.source0.connect(udp_stream.sink),
        output.source1.connect(next_end.sink, omit={"last"}),
        bridge.ext_out.eq(udp_stream.ext_out | regs.to_next),
    ]
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
