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


@dataclass(frozen=True)
class Wire:
    """A simulated cable between two boards' link ends (gateware/sim/chain.py's wire model, the one
    part of a chain that is not gateware): `latency` clocks of delay each way, a UART bit every
    `clocks_per_bit` clocks (LiteX's RS232 PHY samples reliably from 4)."""
    latency: int = 8
    clocks_per_bit: int = 4

    def __post_init__(self):
        if self.latency < 1 or self.clocks_per_bit < 4:
            from .errors import SynfabError
            raise SynfabError(f"link wire: latency >= 1 clock and clocks_per_bit >= 4, got {self.latency} and "
                              f"{self.clocks_per_bit}")
