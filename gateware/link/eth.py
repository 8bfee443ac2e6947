"""A link over Ethernet with LiteEth's UDP/IP core (synfab.linkframe, "The Ethernet link"): data
packets one way, credit packets back.

    EthLinkSender(port, peer)               board k: its output beats go out as data packets
    EthLinkReceiver(port, peer)             board k+1: data packets into its input stream
    EthLinkSender.own_core(phy, link, clk)  an end with a UDP/IP core of its own on `phy`

An end takes a 64-bit user port of a LiteEth UDP crossbar: the sender's at ETH_LINK_CREDIT_PORT,
the receiver's at ETH_LINK_DATA_PORT, so both ends of a board share one core with Etherbone and
the host's stream port (soc.links, the linked Ethernet SoC: every board on one switch), or each
end has a core of its own on a port of its own (`own_core`: a cable per link; the simulated chain).
`peer` is the board index the end talks to (addresses: layouts.eth_board_address).

`phy` is a LiteEth PHY (dw 8, preamble and FCS by the MAC: LiteEthPHYRGMII on a Colorlight board;
BytePHY in a simulation or a synthesis of the end alone). The MAC's datapath runs in the sys clock
domain; the PHY's domains eth_tx and eth_rx come from the board (BytePHY's: the sys clock, see
`eth_clock_domains`).
"""
from __future__ import annotations

from migen import Cat, ClockDomain, ClockSignal, Constant, If, Mux, ResetInserter, ResetSignal, Signal
from migen.genlib.fsm import FSM, NextState, NextValue
from litex.gen import LiteXModule
from litex.soc.interconnect import stream

from synfab import linkframe as lf
from synfab.layouts import STREAM_EVENT, eth_board_address

from ..soc.eth import last_byte_enable
from .core import BEAT, COUNTER_BITS

WORD = 64
EPOCH_BITS = 8
# LiteEth's receive buffer in front of the MAC: room for the bytes that come while the receiver
# moves a checked packet into its FIFO (up to ETH_MAX_BEATS clocks: the port is not ready then).
RX_CDC_DEPTH = 128
# The clock LiteEth's ARP timers assume (a request retried after 100 ms of it, never within a
# frame): the link ends' default, whatever the sys clock.
ETH_CLK_FREQ = 100_000_000


def eth_clock_domains(module) -> None:
    """The PHY clock domains eth_tx and eth_rx on the sys clock (BytePHY's byte per sys clock);
    once per design: every LiteEth core of it uses them."""
    module.cd_eth_tx = ClockDomain()
    module.cd_eth_rx = ClockDomain()
    module.comb += [
        module.cd_eth_tx.clk.eq(ClockSignal()), module.cd_eth_tx.rst.eq(ResetSignal()),
        module.cd_eth_rx.clk.eq(ClockSignal()), module.cd_eth_rx.rst.eq(ResetSignal()),
    ]


class BytePHY(LiteXModule):
    """What the MAC sees of an Ethernet PHY, one byte per clock each way, for a simulation (the
    wire model joins two) or a synthesis of a link end alone.

        sink        in   bytes from the MAC (preamble to FCS)
        source      out  bytes to the MAC; `last` where rx_valid ends
        tx_valid    out  a byte on the forward line
        tx_data     out
        rx_valid    in   a byte on the backward line
        rx_data     in
    """
    dw = 8
    with_preamble_crc = True        # as a real PHY: the MAC adds and checks preamble and FCS

    def __init__(self):
        from liteeth.common import eth_phy_description
        self.sink = stream.Endpoint(eth_phy_description(8))
        self.source = stream.Endpoint(eth_phy_description(8))
        self.tx_valid, self.tx_data = Signal(), Signal(8)
        self.rx_valid, self.rx_data = Signal(), Signal(8)

        # # #

        self.comb += [self.tx_valid.eq(self.sink.valid), self.tx_data.eq(self.sink.data), self.sink.ready.eq(1)]
        self.sync += [self.source.valid.eq(self.rx_valid), self.source.data.eq(self.rx_data)]
        self.comb += [self.source.last.eq(self.source.valid & ~self.rx_valid), last_byte_enable(self.source)]


def udp_core(phy, board: int, clk_freq: int):
    """LiteEth's UDP/IP core on `phy` at board `board`'s addresses, for a link end alone."""
    from liteeth.core import LiteEthUDPIPCore
    mac, ip = eth_board_address(board)
    return LiteEthUDPIPCore(phy, mac, ip, int(clk_freq), with_icmp=False, with_ip_broadcast=False,
                            with_sys_datapath=True, rx_cdc_depth=RX_CDC_DEPTH)


def _to_peer(port_sink, src_port: int, dst_port: int, peer: int | None, words) -> list:
    """The UDP parameters of a packet of `words` 64-bit words to board `peer` (None: nobody; an
    end that never sends)."""
    from liteeth.common import convert_ip
    ip = convert_ip(eth_board_address(peer)[1]) if peer is not None else 0
    return [port_sink.src_port.eq(src_port), port_sink.dst_port.eq(dst_port),
            port_sink.ip_address.eq(ip), port_sink.length.eq(8 * words)]


def _header(word, kind: int, epoch):
    """1 where `word` is a header word of this kind in this epoch."""
    return (word[0:16] == lf.ETH_MAGIC) & (word[16:24] == kind) & (word[24:32] == epoch)


class EthLinkSender(LiteXModule):
    """Board k's end of an Ethernet link (`port`: a UDP user port at ETH_LINK_CREDIT_PORT, `peer`:
    board k+1's index, or None on the last board a chain can have).

        sink           in   the board's output beats (64-bit data)
        clear          in   a new epoch: counters, seq and credits restart (with the receiver's)
        sent           out  beats sent in the epoch (32 bits)
        packets        out  data packets sent (32 bits)
        bytes          out  bytes on the wire, preamble to FCS (32 bits): with `phy_sink` (an end
                            on a PHY of its own) every byte the PHY sent, ARP too; else the bytes
                            of the data packets' frames (a shared port's other traffic out)
        credit_errors  out  packets on the port that were no credit packet of the epoch (32 bits)
        credits        out  beats the receiver has room for
    """

    @classmethod
    def own_core(cls, phy, link: int, clk_freq: int) -> "EthLinkSender":
        """Link `link`'s sender (board `link`) with a UDP/IP core of its own on `phy`."""
        core = udp_core(phy, link, clk_freq)
        end = cls(core.udp.crossbar.get_port(lf.ETH_LINK_CREDIT_PORT, dw=WORD), link + 1, phy_sink=phy.sink)
        end.core = core
        return end

    def __init__(self, port, peer: int, phy_sink=None):
        self.sink = stream.Endpoint(BEAT)
        self.clear = Signal()
        self.sent = Signal(COUNTER_BITS)
        self.packets = Signal(COUNTER_BITS)
        self.bytes = Signal(COUNTER_BITS)
        self.credit_errors = Signal(COUNTER_BITS)
        self.credits = Signal(COUNTER_BITS)

        # # #

        self.fifo = fifo = stream.SyncFIFO(BEAT, 2 * lf.ETH_MAX_BEATS, buffered=True)
        self.comb += self.sink.connect(fifo.sink)
        eof_bit = STREAM_EVENT.offsets["eof"]
        epoch = Signal(EPOCH_BITS)
        seq = Signal(16)
        spent, acked = Signal(COUNTER_BITS), Signal(COUNTER_BITS)
        frame_ends = Signal(max=2 * lf.ETH_MAX_BEATS + 1)      # end-of-frame beats in the FIFO
        waited = Signal(max=lf.ETH_FLUSH_CLOCKS + 1)
        n, left = Signal(16), Signal(16)
        level = fifo.level
        pushed = fifo.sink.valid & fifo.sink.ready
        popped = fifo.source.valid & fifo.source.ready
        self.comb += self.credits.eq(lf.ETH_RX_FIFO_BEATS - (spent - acked))
        self.sync += [
            frame_ends.eq(frame_ends + (pushed & fifo.sink.data[eof_bit]) - (popped & fifo.source.data[eof_bit])),
            If(pushed | (level == 0), waited.eq(0)).Elif(waited != lf.ETH_FLUSH_CLOCKS, waited.eq(waited + 1)),
        ]
        # Whether a packet is due, and of how many beats, decided a clock ahead from registers (the
        # credit subtract and compare were a board SoC's critical path). Only while idle: there
        # nothing leaves the FIFO and credits only grow, so a decision a clock old still holds;
        # a decision made outside IDLE is none, and the FSM stays out of IDLE for three clocks at least.
        room = Signal(COUNTER_BITS)
        idle = Signal()
        due, candidate = Signal(), Signal(16)
        beats = Mux(level >= lf.ETH_MAX_BEATS, lf.ETH_MAX_BEATS, level)     # the packet's size if it left now
        self.sync += [
            room.eq(self.credits),
            candidate.eq(beats),
            due.eq(idle & (level != 0) & ((level >= lf.ETH_MAX_BEATS) | (frame_ends != 0) | (waited == lf.ETH_FLUSH_CLOCKS))
                   & (room >= beats)),
        ]

        tx = port.sink
        self.comb += _to_peer(tx, lf.ETH_LINK_CREDIT_PORT, lf.ETH_LINK_DATA_PORT, peer, n + lf.ETH_DATA_HEADER_WORDS)
        self.fsm = fsm = FSM(reset_state="IDLE")
        self.comb += idle.eq(fsm.ongoing("IDLE"))
        fsm.act("IDLE",
            If(due & ~self.clear,
                NextValue(n, candidate), NextValue(left, candidate), NextValue(spent, spent + candidate),
                NextState("HEADER0")))
        fsm.act("HEADER0",
            tx.valid.eq(1), tx.data.eq(Cat(Constant(lf.ETH_MAGIC, 16), Constant(lf.ETH_DATA, 8), epoch, seq, n)),
            If(tx.ready, NextState("HEADER1")))
        fsm.act("HEADER1",
            tx.valid.eq(1), tx.data.eq(Cat(self.sent, Constant(0, 32))),
            If(tx.ready, NextState("BEATS")))
        fsm.act("BEATS",
            tx.valid.eq(fifo.source.valid), tx.data.eq(fifo.source.data),
            tx.last.eq(left == 1), tx.last_be.eq(Mux(left == 1, 0x80, 0)),
            fifo.source.ready.eq(tx.ready),
            If(popped,
                NextValue(left, left - 1), NextValue(self.sent, Mux(self.clear, 0, self.sent + 1)),
                If(left == 1,
                    NextValue(seq, Mux(self.clear, 0, seq + 1)),
                    NextValue(self.packets, Mux(self.clear, 0, self.packets + 1)),
                    NextState("IDLE"))))

        # Credit packets: one word each; the latest of the epoch says how many beats were freed.
        rx = port.source
        bad = Signal()
        self.comb += rx.ready.eq(1)
        good_credit = _header(rx.data, lf.ETH_CREDIT, epoch) & (rx.length == 8) & (rx.error == 0) & ~bad
        self.sync += If(rx.valid,
            If(rx.last,
                bad.eq(0),
                If(good_credit, acked.eq(rx.data[32:64])).Else(self.credit_errors.eq(self.credit_errors + 1)))
            .Else(bad.eq(1)))

        if phy_sink is not None:
            self.sync += If(phy_sink.valid & phy_sink.ready, self.bytes.eq(self.bytes + 1))
        else:
            self.sync += If(popped & (left == 1), self.bytes.eq(self.bytes + lf.eth_data_bytes(1, 0) + 8 * n))
        # A clear comes between frames (nothing in flight): the epoch tells late packets apart.
        self.sync += If(self.clear,
            epoch.eq(epoch + 1), seq.eq(0), spent.eq(0), acked.eq(0),
            self.sent.eq(0), self.packets.eq(0), self.bytes.eq(0), self.credit_errors.eq(0))


class EthLinkReceiver(LiteXModule):
    """Board k+1's end of an Ethernet link (`port`: a UDP user port at ETH_LINK_DATA_PORT, `peer`:
    board k's index, or None on a board that is first in every chain: it never sends credits).

        source    out  the beats of the good packets, in order, to the board's input stream
        clear     in   a new epoch: counters, expected seq, credits and `broken` restart
        received  out  beats received (32 bits)
        errors    out  packets dropped: malformed, out of sequence, a packet lost before it,
                       an error from LiteEth (FCS), or while broken (32 bits)
        broken    out  a packet was dropped: every later one is dropped until clear
    """

    @classmethod
    def own_core(cls, phy, link: int, clk_freq: int) -> "EthLinkReceiver":
        """Link `link`'s receiver (board `link` + 1) with a UDP/IP core of its own on `phy`."""
        core = udp_core(phy, link + 1, clk_freq)
        end = cls(core.udp.crossbar.get_port(lf.ETH_LINK_DATA_PORT, dw=WORD), link)
        end.core = core
        return end

    def __init__(self, port, peer: int | None):
        self.source = stream.Endpoint(BEAT)
        self.clear = Signal()
        self.received = Signal(COUNTER_BITS)
        self.errors = Signal(COUNTER_BITS)
        self.broken = Signal()

        # # #

        # A packet's beats wait in `held` until its end is checked; then they go to `fifo`.
        self.held = held = stream.SyncFIFO(BEAT, lf.ETH_MAX_BEATS)
        self.fifo = fifo = ResetInserter()(stream.SyncFIFO(BEAT, lf.ETH_RX_FIFO_BEATS, buffered=True))
        self.comb += [fifo.reset.eq(self.clear), fifo.source.connect(self.source)]
        epoch = Signal(EPOCH_BITS)
        expected = Signal(16)
        count, got = Signal(16), Signal(16)
        failed = Signal()
        drop = Signal()
        rx = port.source
        word = rx.data
        header_ok = Signal()
        self.comb += header_ok.eq(_header(word, lf.ETH_DATA, epoch) & (word[48:64] != 0)
                                  & (word[48:64] <= lf.ETH_MAX_BEATS)
                                  & (rx.length == 8 * (word[48:64] + lf.ETH_DATA_HEADER_WORDS))
                                  & (word[32:48] == expected) & ~rx.last & ~self.broken)

        self.fsm = fsm = FSM(reset_state="HEADER0")
        fsm.act("HEADER0",
            rx.ready.eq(1),
            If(rx.valid,
                If(header_ok, NextValue(count, word[48:64]), NextValue(got, 0), NextValue(failed, 0),
                   NextState("HEADER1"))
                .Else(drop.eq(1), If(~rx.last, NextState("SKIP")))))
        fsm.act("HEADER1",
            rx.ready.eq(1),
            If(rx.valid,
                If((word[0:32] == self.received) & ~rx.last, NextState("BEATS"))
                .Else(drop.eq(1), If(~rx.last, NextState("SKIP")))))
        fsm.act("BEATS",
            rx.ready.eq(1),
            held.sink.valid.eq(rx.valid & (got < count)), held.sink.data.eq(rx.data),
            If(rx.valid,
                NextValue(got, got + 1),
                If(rx.last,
                    If((got + 1 == count) & ~failed & (rx.error == 0), NextState("PASS"))
                    .Else(drop.eq(1), NextState("DISCARD")))
                .Elif(got + 1 >= count, NextValue(failed, 1))))
        fsm.act("PASS",
            held.source.connect(fifo.sink),
            If(~held.source.valid,
                NextValue(expected, Mux(self.clear, 0, expected + 1)),
                NextValue(self.received, Mux(self.clear, 0, self.received + count)),
                NextState("HEADER0")))
        fsm.act("DISCARD",
            held.source.ready.eq(1),
            If(~held.source.valid, NextState("HEADER0")))
        fsm.act("SKIP",
            rx.ready.eq(1),
            If(rx.valid & rx.last, NextState("HEADER0")))
        self.sync += If(self.clear,
            epoch.eq(epoch + 1), expected.eq(0), self.received.eq(0), self.errors.eq(0), self.broken.eq(0)
        ).Elif(drop, self.errors.eq(self.errors + 1), self.broken.eq(1))

        # Credits: the beats the FIFO passed on in the epoch, sent back when a quarter of the FIFO
        # is free again or the FIFO ran empty.
        freed, reported = Signal(COUNTER_BITS), Signal(COUNTER_BITS)
        self.sync += If(self.clear, freed.eq(0)).Elif(self.source.valid & self.source.ready, freed.eq(freed + 1))
        tx = port.sink
        value = Signal(COUNTER_BITS)
        self.comb += _to_peer(tx, lf.ETH_LINK_DATA_PORT, lf.ETH_LINK_CREDIT_PORT, peer, 1)
        self.credit_fsm = cfsm = FSM(reset_state="IDLE")
        cfsm.act("IDLE",
            If((freed != reported) & ~self.clear
               & ((freed - reported >= lf.ETH_RX_FIFO_BEATS // 4) | ~fifo.source.valid),
                NextValue(value, freed), NextState("SEND")))
        cfsm.act("SEND",
            tx.valid.eq(1), tx.last.eq(1), tx.last_be.eq(0x80),
            tx.data.eq(Cat(Constant(lf.ETH_MAGIC, 16), Constant(lf.ETH_CREDIT, 8), epoch, value)),
            If(tx.ready, NextValue(reported, Mux(self.clear, 0, value)), NextState("IDLE")))
        self.sync += If(self.clear, reported.eq(0))
