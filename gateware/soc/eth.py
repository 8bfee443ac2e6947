"""Ethernet for the synfab SoC: Etherbone for the bus, a UDP port for the fabric's streams.

    add_ethernet(soc, phy)     # LiteEth UDP/IP core + Etherbone + UDPStreamPort on the bridge

The UDP stream port feeds the same StreamBridge (its FIFOs, frame hold and cycle count) as the
UARTBone path; the packet layout, ports and addresses are in synfab.layouts (UDP_*, ETH_*).
"""
from __future__ import annotations

from migen import Case, Cat, Constant, If, Mux, Signal
from litex.gen import LiteXModule
from litex.soc.integration.soc import SoCRegion
from litex.soc.interconnect import stream, wishbone
from migen.genlib.fsm import FSM, NextState, NextValue

from synfab import layouts as soc_map

from .bridge import BEAT

WORD = 64                       # the stream port's data width: one beat (or header word) per word
ETH_DATAPATH_BITS = 32          # the UDP/IP core's datapath (32: in the sys clock domain, see add_ethernet)
# Etherbone's record FIFOs hold a whole record (LiteEth's PacketFIFO: a record larger than its
# buffer never completes): room for the host's largest (runtime.litex.EtherboneLink).
ETHERBONE_BUFFER = 2 * soc_map.ETHERBONE_MAX_WORDS


def _udp_user(dw: int):
    from liteeth.common import eth_udp_user_description
    return eth_udp_user_description(dw)


class UDPStreamPort(LiteXModule):
    """Input beats from UDP packets into the bridge, output beats back as UDP packets.

    Ports:
      udp_sink    LiteEth UDP user stream, 64-bit (in)   packets from the UDP core (crossbar port source)
      udp_source  LiteEth UDP user stream, 64-bit (out)  packets to the UDP core (crossbar port sink)
      source      BEAT stream (out)    input beats, to StreamBridge.ext_sink
      sink        BEAT stream (in)     output beats, from StreamBridge.ext_source
      in_free     Signal (in)          beats the bridge's input FIFO can take
      out_level   Signal (in)          beats in the bridge's output FIFO
      out_frames  Signal (in)          end-of-frame beats in the bridge's output FIFO
      released    Signal (in)          input beats the bridge released to the fabric (32 bits)
      ext_out     Signal (out)         1: output beats come here (ctrl UDP_CTRL_OUTPUT)
      bus         wishbone slave (in)  the registers, UDP_STREAM_REGS

    An input packet is taken whole or dropped whole at its header (malformed, out of sequence,
    no room in the input FIFO), so a drop never puts part of a packet into the fabric's stream;
    every drop is counted.  Output packets go to the address and port the last taken input
    packet came from: up to UDP_MAX_BEATS beats, sent once the output FIFO holds that many or an
    end-of-frame beat.
    """

    def __init__(self, in_capacity: int, out_capacity: int):
        self.udp_sink = stream.Endpoint(_udp_user(WORD))
        self.udp_source = stream.Endpoint(_udp_user(WORD))
        self.source = stream.Endpoint(BEAT)
        self.sink = stream.Endpoint(BEAT)
        self.in_free = Signal(max=in_capacity + 1)
        self.out_level = Signal(max=out_capacity + 1)
        self.out_frames = Signal(max=out_capacity + 1)
        self.released = Signal(32)
        self.ext_out = Signal()
        self.bus = wishbone.Interface(data_width=32, address_width=(soc_map.UDP_STREAM_SIZE - 1).bit_length(),
                                      addressing="word")

        # # #

        max_beats = soc_map.UDP_MAX_BEATS
        counters = {n: Signal(32) for n in ("rx_packets", "rx_malformed", "rx_out_of_seq", "rx_no_room",
                                             "rx_beats", "tx_packets", "tx_beats")}
        expected_seq = Signal(16)
        tx_seq = Signal(16)
        reset = Signal()
        peer_ip = Signal(32)
        peer_port = Signal(16)
        peer_known = Signal()

        # -- receive: header checks, then the packet's beats into the bridge --------------------
        rx = self.udp_sink
        hdr = rx.data
        magic, flags, seq, count = hdr[0:16], hdr[16:24], hdr[32:48], hdr[48:64]
        frame_end = Signal()
        remaining = Signal(16)
        malformed = Signal()
        self.comb += malformed.eq((magic != soc_map.UDP_MAGIC) | (hdr[24:32] != 0) | (flags[1:] != 0)
                                  | (count == 0) | (count > max_beats)
                                  | (rx.length != 8 * (count + soc_map.UDP_IN_HEADER_WORDS)) | rx.last)
        self.rx_fsm = rx_fsm = FSM(reset_state="HEADER")
        rx_fsm.act("HEADER",
            rx.ready.eq(1),
            If(rx.valid,
                If(malformed,
                    NextValue(counters["rx_malformed"], counters["rx_malformed"] + 1),
                    If(~rx.last, NextState("DROP")),
                ).Elif(seq != expected_seq,
                    NextValue(counters["rx_out_of_seq"], counters["rx_out_of_seq"] + 1),
                    NextState("DROP"),
                ).Elif(count > self.in_free,
                    NextValue(counters["rx_no_room"], counters["rx_no_room"] + 1),
                    NextState("DROP"),
                ).Else(
                    NextValue(counters["rx_packets"], counters["rx_packets"] + 1),
                    NextValue(expected_seq, expected_seq + 1),
                    NextValue(remaining, count),
                    NextValue(frame_end, flags[0]),
                    NextValue(peer_ip, rx.ip_address),
                    NextValue(peer_port, rx.src_port),
                    NextValue(peer_known, 1),
                    NextState("BEATS"),
                )
            )
        )
        # The room was there at the header and only this port and the fabric touch the input
        # FIFO while a packet streams in (a wishbone push would be lost and flagged), so the
        # bridge takes every beat.
        rx_fsm.act("BEATS",
            self.source.valid.eq(rx.valid),
            self.source.data.eq(rx.data),
            self.source.last.eq(frame_end & (remaining == 1)),
            rx.ready.eq(self.source.ready),
            If(rx.valid & self.source.ready,
                NextValue(remaining, remaining - 1),
                NextValue(counters["rx_beats"], counters["rx_beats"] + 1),
                If(remaining == 1,
                    If(rx.last, NextState("HEADER")).Else(NextState("DROP"))
                ).Elif(rx.last,
                    # Shorter than its UDP length (LiteEth ends a packet the IP layer cut short):
                    # counted; the beats that came are in the frame (the golden check sees it).
                    NextValue(counters["rx_malformed"], counters["rx_malformed"] + 1),
                    NextState("HEADER"),
                )
            )
        )
        rx_fsm.act("DROP",
            rx.ready.eq(1),
            If(rx.valid & rx.last, NextState("HEADER"))
        )

        # -- send: header words, then beats from the bridge's output FIFO -----------------------
        tx = self.udp_source
        n = Signal(max=max_beats + 1)
        left = Signal(max=max_beats + 1)
        dropped = Signal(16)
        self.comb += [
            dropped.eq(counters["rx_malformed"] + counters["rx_out_of_seq"] + counters["rx_no_room"]),
            tx.src_port.eq(soc_map.STREAM_UDP_PORT),
            tx.dst_port.eq(peer_port),
            tx.ip_address.eq(peer_ip),
            tx.length.eq(8 * (n + soc_map.UDP_OUT_HEADER_WORDS)),
        ]
        self.tx_fsm = tx_fsm = FSM(reset_state="IDLE")
        tx_fsm.act("IDLE",
            If(self.ext_out & peer_known & ((self.out_frames != 0) | (self.out_level >= max_beats)),
                NextValue(n, Mux(self.out_level >= max_beats, max_beats, self.out_level)),
                NextState("HEADER0"),
            )
        )
        tx_fsm.act("HEADER0",
            tx.valid.eq(1),
            tx.data.eq(Cat(Constant(soc_map.UDP_MAGIC, 16), Constant(0, 16), tx_seq, n)),
            If(tx.ready,
                NextValue(left, n),
                NextState("HEADER1"),
            )
        )
        tx_fsm.act("HEADER1",
            tx.valid.eq(1),
            tx.data.eq(Cat(self.released, expected_seq, dropped)),
            If(tx.ready, NextState("BEATS"))
        )
        tx_fsm.act("BEATS",
            tx.valid.eq(self.sink.valid),
            tx.data.eq(self.sink.data),
            tx.last.eq(left == 1),
            tx.last_be.eq(Mux(left == 1, 0x80, 0)),
            self.sink.ready.eq(tx.ready),
            If(self.sink.valid & tx.ready,
                NextValue(left, left - 1),
                NextValue(counters["tx_beats"], counters["tx_beats"] + 1),
                If(left == 1,
                    NextValue(tx_seq, tx_seq + 1),
                    NextValue(counters["tx_packets"], counters["tx_packets"] + 1),
                    NextState("IDLE"),
                )
            )
        )

        # -- registers ----------------------------------------------------------------------------
        bus = self.bus
        access = Signal()
        ctrl_out = Signal()
        self.comb += [access.eq(bus.cyc & bus.stb & ~bus.ack), self.ext_out.eq(ctrl_out)]
        self.sync += bus.ack.eq(access)
        values = {"id": soc_map.UDP_STREAM_MAGIC, **counters, "expected_seq": expected_seq,
                  "released": self.released, "ctrl": Cat(Constant(0, 1), ctrl_out)}
        regs = [values[name] for name in soc_map.UDP_STREAM_REGS]
        self.sync += If(access & ~bus.we, Case(bus.adr, {**{i: bus.dat_r.eq(v) for i, v in enumerate(regs)},
                                                          "default": bus.dat_r.eq(0)}))
        ctrl_index = soc_map.UDP_STREAM_REGS.index("ctrl")
        self.comb += reset.eq(access & bus.we & (bus.adr == ctrl_index) & bus.dat_w[0])
        self.sync += [
            If(access & bus.we & (bus.adr == ctrl_index), ctrl_out.eq(bus.dat_w[1])),
            If(reset, expected_seq.eq(0), tx_seq.eq(0), *[c.eq(0) for c in counters.values()]),
        ]


def last_byte_enable(phy_source):
    """The statement marking a byte PHY's last byte of a frame in `last_be`. LiteEth 2024.12's CRC
    checker flags an error only on a byte its last_be enables, and with an 8-bit datapath neither an
    8-bit PHY nor the MAC sets it (LiteEthMACRXLastBE serves wider datapaths, as add_ethernet's):
    without this a frame with a wrong FCS passes as good (found with the board links' BytePHY,
    tests/test_boardlink.py)."""
    return phy_source.last_be.eq(phy_source.last)


def add_ethernet(soc, phy, phy_cd: str = "eth", board: int = 0, join_bridge: bool = True) -> UDPStreamPort:
    """LiteEth's UDP/IP core on `phy` at board `board`'s addresses (layouts.eth_board_address) with
    Etherbone (a bus master) on ETHERBONE_UDP_PORT and a UDPStreamPort on STREAM_UDP_PORT; with
    `join_bridge` the port feeds soc.synfab.stream_bridge's second port (add_synfab(...,
    with_ext=True)) alone, else the caller joins them (soc.links: the board links share it)."""
    mac, ip = soc_map.eth_board_address(board)
    # A 32-bit datapath puts the UDP/IP core in the sys clock domain (LiteX: with_sys_datapath);
    # only the PHY, an 8-to-32-bit converter and the clock-domain FIFOs run at the PHY's 125 MHz.
    # The 8-bit datapath ran the whole UDP/IP core (MAC, ARP, IP, ICMP, UDP, the user ports'
    # converters) at 125 MHz: on a Colorlight i9 it made 57.8 MHz.
    soc.add_etherbone(phy=phy, phy_cd=phy_cd, data_width=ETH_DATAPATH_BITS, mac_address=mac, ip_address=ip,
                      udp_port=soc_map.ETHERBONE_UDP_PORT, buffer_depth=ETHERBONE_BUFFER)
    bridge = soc.synfab.stream_bridge
    port = UDPStreamPort(bridge.in_capacity, bridge.out_capacity)
    soc.synfab.submodules.udp_stream = port
    user = udp_user_port(soc, soc_map.STREAM_UDP_PORT)
    soc.comb += [
        user.source.connect(port.udp_sink),
        port.udp_source.connect(user.sink),
        port.in_free.eq(bridge.in_free),
        port.out_level.eq(bridge.out_level),
        port.out_frames.eq(bridge.out_frames),
        port.released.eq(bridge.released),
    ]
    if join_bridge:
        soc.comb += [
            port.source.connect(bridge.ext_sink),
            bridge.ext_source.connect(port.sink),
            bridge.ext_out.eq(port.ext_out),
        ]
    soc.bus.add_slave("synfab_udp", port.bus,
                      SoCRegion(origin=soc_map.UDP_STREAM_BASE, size=soc_map.UDP_STREAM_SIZE, cached=False))
    return port


def udp_user_port(soc, udp_port: int):
    """A 64-bit user port of the SoC's UDP core (add_ethernet) on `udp_port`, in the sys clock (the
    core's own)."""
    return soc.ethcore_etherbone.udp.crossbar.get_port(udp_port, dw=WORD)
