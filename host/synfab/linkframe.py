"""The board-to-board link's bytes: the one definition the link gateware (gateware/link/) and the
host's checks and tests share.

A link joins board k's output stream to board k+1's input stream (README "Several boards"): every
64-bit stream beat (layouts.STREAM_EVENT, the end-of-frame beat too) crosses as one frame on the
forward wire, in one of two forms:

    SYNC, seq, the beat's 8 bytes (least significant first), CRC-8 over seq and the 8 bytes
    SYNC_PACKED, seq, 4 bytes of a layouts.PACKED_EVENT word, CRC-8 over seq and the 4 bytes

An event that fits PACKED_EVENT (x, y < 256, c < 128, d in -256..255: the events of most cut
layers) goes packed, 7 bytes instead of 11; the receiver widens it back (soc.bridge.widened: tag
0). The tag is what the link does not carry: it names the sending board's layer, and the next
board's input port takes x, y, c, d alone. The end-of-frame beat always goes whole.

seq counts frames modulo 256: the receiver takes a frame only with the seq it expects next and a
matching CRC; any other frame (a flipped bit, a lost or added byte) is dropped and counted, and
the link is *broken* from then on (every later frame is dropped and counted too) until the host
clears it: the receiving board never gets a frame with a gap. Flow control is by credits: the
sender starts with RX_FIFO_BEATS credits (the receiver's FIFO), spends one per frame and gets one
back per CREDIT byte on the backward wire, which the receiver sends for every beat its FIFO passed
on to its fabric and every frame it dropped. Any other byte on the backward wire is counted as a
credit error.
"""
from __future__ import annotations

from dataclasses import dataclass

from .layouts import ETH_MIN_PAYLOAD, ETH_WIRE_OVERHEAD, LINK_KINDS, STREAM_UDP_PORT

SYNC = 0xA5
SYNC_PACKED = 0xA6
CREDIT = 0x5A
BEAT_BYTES = 8
PACKED_BYTES = 4
FRAME_BYTES = 1 + 1 + BEAT_BYTES + 1          # SYNC, seq, beat, CRC
PACKED_FRAME_BYTES = 1 + 1 + PACKED_BYTES + 1
CRC8_POLY = 0x07                              # x^8 + x^2 + x + 1 (CRC-8/SMBUS), initial value 0
RX_FIFO_BEATS = 16                            # the receiver's FIFO: the sender's credits
SEQ_MOD = 256
UART_BITS_PER_BYTE = 10                       # 8N1 on a UART wire: start, 8 data, stop


def crc8_byte(crc: int, byte: int) -> int:
    """CRC-8 (CRC8_POLY, MSB first) after one more byte."""
    crc ^= byte & 0xFF
    for _ in range(8):
        crc = ((crc << 1) ^ CRC8_POLY) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc8(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = crc8_byte(crc, b)
    return crc


def crc8_matrix() -> list[list[int]]:
    """Row j: the bits i of (crc ^ byte) whose XOR is bit j of the next CRC (the byte update is
    linear over GF(2)); the gateware builds its XOR network from this."""
    cols = [crc8_byte(0, 1 << i) for i in range(8)]
    return [[i for i in range(8) if (cols[i] >> j) & 1] for j in range(8)]


def packed_word(word: int) -> int | None:
    """The PACKED_EVENT word of a stream beat that is an event fitting it, else None."""
    import numpy as np
    from .layouts import PACKED_EVENT, STREAM_EVENT
    f = {k: int(v[0]) for k, v in STREAM_EVENT.unpack64(np.array([word], dtype=np.uint64)).items()}
    width = {p.name: p.width for p in PACKED_EVENT.fields}
    fits = all(f[k] < 1 << width[k] for k in ("x", "y", "c"))
    half = 1 << (width["d"] - 1)
    if f["eof"] or not fits or not -half <= f["d"] < half:
        return None
    return int(PACKED_EVENT.pack64({k: [f[k]] for k in PACKED_EVENT.names})[0])


def received(word: int) -> int:
    """The beat the receiver passes on for a beat sent: a packed event widened back (tag 0)."""
    import numpy as np
    from .layouts import PACKED_EVENT, STREAM_EVENT
    packed = packed_word(word)
    if packed is None:
        return int(word)
    f = {k: v for k, v in PACKED_EVENT.unpack64(np.array([packed], dtype=np.uint64)).items()}
    return int(STREAM_EVENT.pack64({**f, "tag": [0], "eof": [0]})[0])


def frame(seq: int, word: int) -> bytes:
    """The forward-wire bytes of one beat (a 64-bit word) sent as frame number `seq`: packed where
    the beat is an event that fits PACKED_EVENT, else whole."""
    packed = packed_word(word)
    sync, data = ((SYNC_PACKED, packed.to_bytes(PACKED_BYTES, "little")) if packed is not None
                  else (SYNC, int(word).to_bytes(BEAT_BYTES, "little")))
    body = bytes([seq % SEQ_MOD]) + data
    return bytes([sync]) + body + bytes([crc8(body)])


def wire_clocks(frame_bytes: int, clocks_per_bit: int) -> int:
    """Clocks `frame_bytes` bytes take on a UART wire with this many clocks per bit."""
    return frame_bytes * UART_BITS_PER_BYTE * clocks_per_bit


def wire_clocks_per_beat(clocks_per_bit: int) -> int:
    """Clocks a whole beat's frame takes on a UART wire with this many clocks per bit."""
    return wire_clocks(FRAME_BYTES, clocks_per_bit)




# -- The Ethernet link (gateware/link/eth.py): LiteEth's UDP/IP core at both ends ------------------
# Between boards with Ethernet, board k's output beats cross as UDP packets to board k+1 (data
# packets to its ETH_LINK_DATA_PORT, credit packets back to board k's ETH_LINK_CREDIT_PORT; board k
# at layouts.eth_board_address(k), whether the boards share a switch with the host or each link
# is a cable of its own), each 64-bit word little-endian (as the host's UDP stream port,
# layouts.UDP_*):
#
#   data packet (board k -> k+1):   word 0  bits 0-15 ETH_MAGIC, 16-23 ETH_DATA, 24-31 epoch,
#                                           32-47 seq, 48-63 beats in the packet (1..ETH_MAX_BEATS)
#                                   word 1  bits 0-31 beats sent in the epoch before this packet
#                                   then the beats, whole (an Ethernet frame has room to spare)
#   credit packet (board k+1 -> k): word 0  bits 0-15 ETH_MAGIC, 16-23 ETH_CREDIT, 24-31 epoch,
#                                           32-63 beats the receiver freed in the epoch
#
# The receiver takes a data packet only whole, with the seq it expects next, the beat count its
# own received count says (no packet lost before it), its own epoch and no error from LiteEth
# (FCS); anything else is dropped and counted, and the link is broken until the host clears it,
# as on the UART link. It holds a packet's beats until the packet's end is checked, so a corrupt
# packet never reaches the fabric. Credits are cumulative counts, so a lost credit packet is made
# good by the next one. A clear starts a new epoch at both ends: packets of the old one still on a
# wire are not taken (stale credits would give the sender room the receiver does not have).
# The sender sends a packet once it holds ETH_MAX_BEATS beats or an end-of-frame beat, or its
# beats have waited ETH_FLUSH_CLOCKS, and the receiver has room for it.
ETH_MAGIC = 0x4C53                # "SL": synfab link
ETH_DATA = 0
ETH_CREDIT = 1
ETH_DATA_HEADER_WORDS = 2
ETH_MAX_BEATS = 32
ETH_RX_FIFO_BEATS = 128           # the receiver's FIFO (block RAM): the sender's credits
ETH_FLUSH_CLOCKS = 64
# The ports after the host's Etherbone and stream ports: the LiteX sim's synfab_udp carries one run.
ETH_LINK_DATA_PORT = STREAM_UDP_PORT + 1
ETH_LINK_CREDIT_PORT = STREAM_UDP_PORT + 2
ETH_GAP_BYTES = 12                # the inter-frame gap: idle on the wire


def eth_data_header(seq: int, beats: int, sent_before: int, epoch: int = 0) -> tuple[int, int]:
    return (ETH_MAGIC | ETH_DATA << 16 | (epoch & 0xFF) << 24 | (seq & 0xFFFF) << 32 | beats << 48,
            sent_before & 0xFFFFFFFF)


def eth_credit_word(freed: int, epoch: int = 0) -> int:
    return ETH_MAGIC | ETH_CREDIT << 16 | (epoch & 0xFF) << 24 | (freed & 0xFFFFFFFF) << 32


def _eth_frame_overhead() -> int:
    """Bytes a UDP packet's Ethernet frame puts on the wire beyond its payload, the gap out
    (layouts.ETH_WIRE_OVERHEAD counts it in)."""
    return ETH_WIRE_OVERHEAD - ETH_GAP_BYTES


def eth_frame_bytes(udp_payload: int) -> int:
    """Bytes a UDP packet's Ethernet frame puts on the wire (preamble and FCS in, the gap out)."""
    return _eth_frame_overhead() + max(udp_payload, ETH_MIN_PAYLOAD)


def eth_data_bytes(packets: int, beats: int) -> int:
    """Forward-wire bytes of `packets` data packets holding `beats` beats in all (none is padded:
    the header words and a beat are over the minimum payload)."""
    return packets * (_eth_frame_overhead() + 8 * ETH_DATA_HEADER_WORDS) + 8 * beats


@dataclass(frozen=True)
class Wire:
    """A simulated cable between two boards' link ends (gateware/sim/chain.py's wire model, the one
    part of a chain that is not gateware): `latency` clocks of delay each way. kind "uart": the
    UART link, a bit every `clocks_per_bit` clocks (LiteX's RS232 PHY samples reliably from 4);
    "eth": the Ethernet link (LiteEth at both ends), a byte a clock each way."""
    latency: int = 8
    clocks_per_bit: int = 4
    kind: str = "uart"

    def __post_init__(self):
        from .errors import SynfabError
        if self.kind not in LINK_KINDS:
            raise SynfabError(f"link wire: kind {self.kind!r} is none of {', '.join(LINK_KINDS)}")
        if self.latency < 1 or self.clocks_per_bit < 4:
            raise SynfabError(f"link wire: latency >= 1 clock and clocks_per_bit >= 4, got {self.latency} and "
                              f"{self.clocks_per_bit}")

    def busy_clocks(self, wire_bytes: float, packets: float = 0) -> float:
        """Clocks the forward wire is busy with `wire_bytes` bytes (a link's `bytes` counter) in
        `packets` packets (Ethernet: each frame is followed by the inter-frame gap)."""
        if self.kind == "uart":
            return wire_clocks(wire_bytes, self.clocks_per_bit)
        return wire_bytes + ETH_GAP_BYTES * packets
