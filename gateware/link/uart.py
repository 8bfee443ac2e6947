"""A link over two UART wires, with LiteX's RS232 PHY (the stream UART: for ECP5 boards that have
nothing faster between them): forward frames one way, CREDIT bytes back.

    pads = link_pads()            # tx, rx: this board's two wires of the link
    LinkSender(pads, clocks_per_bit)     board k: its output stream goes out on pads.tx
    LinkReceiver(pads, clocks_per_bit)   board k+1: pads.rx into its input stream

Wire board k's tx to board k+1's rx and board k+1's tx to board k's rx. The bit rate is the sys
clock over clocks_per_bit (LiteX's phase accumulator; 4 and more sample reliably).
"""
from __future__ import annotations

from migen import If, Record, Signal
from litex.gen import LiteXModule
from litex.soc.cores.uart import RS232PHYRX, RS232PHYTX
from litex.soc.interconnect import stream

from synfab import linkframe as lf

from .core import BEAT, COUNTER_BITS, LinkRX, LinkTX

PADS = [("tx", 1), ("rx", 1)]


def link_pads() -> Record:
    pads = Record(PADS)
    pads.tx.reset = 1       # a UART line idles high
    return pads


def tuning_word(clocks_per_bit: int) -> int:
    if clocks_per_bit < 4:
        raise ValueError(f"clocks_per_bit {clocks_per_bit}: a UART link needs at least 4 clocks per bit")
    return int(2 ** 32 / clocks_per_bit)


class UARTPHY(LiteXModule):
    """LiteX's RS232 PHY both ways on a link's two wires, as byte streams.

        sink     in   bytes to send on pads.tx
        source   out  bytes received on pads.rx
    """

    def __init__(self, pads, clocks_per_bit: int):
        self.phy_tx = RS232PHYTX(pads, tuning_word(clocks_per_bit))
        self.phy_rx = RS232PHYRX(pads, tuning_word(clocks_per_bit))
        self.sink, self.source = self.phy_tx.sink, self.phy_rx.source


def _byte_phy(pads, clocks_per_bit, phy):
    """The byte PHY of a link end: `phy` when given (any module with byte streams sink and source,
    such as LiteX's RS232PHYModel in a LiteX sim), else UARTPHY on `pads`."""
    return phy if phy is not None else UARTPHY(pads, clocks_per_bit)


class LinkSender(LiteXModule):
    """Board k's end of a link.

        sink           in   the board's output beats (64-bit data)
        pads.tx        out  forward wire (frames)
        pads.rx        in   backward wire (CREDIT bytes)
        clear          in   clears the counters
        sent           out  beats sent (32 bits)
        packets        out  frames sent: one a beat, = sent (the Ethernet sender's packets hold several)
        bytes          out  bytes sent on the forward wire (32 bits)
        credit_errors  out  bytes on the backward wire that were not CREDIT (32 bits)

    `phy` instead of pads: a byte PHY of its own (sink: forward bytes, source: backward bytes).
    """

    def __init__(self, pads, clocks_per_bit: int, phy=None):
        self.sink = stream.Endpoint(BEAT)
        self.clear = Signal()
        self.credit_errors = Signal(COUNTER_BITS)

        # # #

        self.tx = tx = LinkTX()
        self.phy = phy = _byte_phy(pads, clocks_per_bit, phy)
        self.sent, self.bytes = tx.sent, tx.bytes
        self.packets = tx.sent
        self.comb += [
            self.sink.connect(tx.sink),
            tx.source.connect(phy.sink),
            tx.clear.eq(self.clear),
            phy.source.ready.eq(1),
            tx.credit.eq(phy.source.valid & (phy.source.data == lf.CREDIT)),
        ]
        self.sync += If(self.clear, self.credit_errors.eq(0)).Elif(
            phy.source.valid & (phy.source.data != lf.CREDIT), self.credit_errors.eq(self.credit_errors + 1))


class LinkReceiver(LiteXModule):
    """Board k+1's end of a link.

        pads.rx   in   forward wire (frames)
        pads.tx   out  backward wire (CREDIT bytes)
        source    out  the good beats, in order, to the board's input stream (64-bit data)
        clear     in   clears the counters and a broken link
        received  out  good frames (32 bits)
        errors    out  frames dropped (32 bits)
        broken    out  a frame was lost: later frames are dropped until clear

    `phy` instead of pads: a byte PHY of its own (source: forward bytes, sink: backward bytes).
    """

    def __init__(self, pads, clocks_per_bit: int, phy=None):
        self.source = stream.Endpoint(BEAT)
        self.clear = Signal()

        # # #

        self.rx = rx = LinkRX()
        self.phy = phy = _byte_phy(pads, clocks_per_bit, phy)
        self.received, self.errors, self.broken = rx.received, rx.errors, rx.broken
        # Credits owed to the sender: one per rx.credit pulse, one leaves per CREDIT byte sent.
        owed = Signal(max=2 * lf.RX_FIFO_BEATS + 1)
        sending = Signal()
        self.comb += [
            phy.source.connect(rx.sink),
            rx.source.connect(self.source),
            rx.clear.eq(self.clear),
            phy.sink.valid.eq(owed != 0),
            phy.sink.data.eq(lf.CREDIT),
            sending.eq(phy.sink.valid & phy.sink.ready),
        ]
        self.sync += owed.eq(owed + rx.credit - sending)
