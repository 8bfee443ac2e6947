"""The link's framing, sequence check and credits over byte streams (synfab.linkframe).

LinkTX turns stream beats into frames while it holds credits; LinkRX checks frames and passes
the good ones, in order, through its FIFO. Both are PHY-agnostic: bytes in and out as LiteX
streams (gateware/link/uart.py puts them on UART wires).
"""
from __future__ import annotations

from migen import Case, If, Mux, ResetInserter, Signal
from migen.genlib.fsm import FSM, NextState, NextValue
from litex.gen import LiteXModule, Reduce
from litex.soc.interconnect import stream

from synfab import linkframe as lf
from synfab.layouts import PACKED_EVENT, STREAM_BITS, STREAM_EVENT

from ..soc.bridge import widened

BEAT = [("data", STREAM_BITS)]
BYTE = [("data", 8)]
COUNTER_BITS = 32


def crc8_next(crc, byte) -> tuple[Signal, list]:
    """(the CRC-8 after `byte`, the statements computing it): linkframe.crc8_matrix's XOR network."""
    v = Signal(8)
    out = Signal(8)
    stmts = [v.eq(crc ^ byte)]
    for j, taps in enumerate(lf.crc8_matrix()):
        stmts.append(out[j].eq(Reduce("XOR", [v[i] for i in taps])))
    return out, stmts


def packable(beat) -> tuple[Signal, Signal, list]:
    """(1 where the 64-bit beat is an event that fits layouts.PACKED_EVENT, its PACKED_EVENT word,
    the statements computing them): linkframe.packed_word in gateware."""
    ok, word = Signal(), Signal(32)
    field = {f.name: beat[STREAM_EVENT.offsets[f.name]:STREAM_EVENT.offsets[f.name] + f.width]
             for f in STREAM_EVENT.fields}
    fits = [~field["eof"]]
    for name in ("x", "y", "c"):
        width = PACKED_EVENT.by_name[name].width
        fits.append(field[name][width:] == 0)
    d, dw = field["d"], PACKED_EVENT.by_name["d"].width
    # d fits dw signed bits: its bits from dw - 1 up are all its sign
    fits.append((d[dw - 1:] == 0) | (d[dw - 1:] == (1 << (len(d) - dw + 1)) - 1))
    stmts = [ok.eq(Reduce("AND", fits))]
    for f in PACKED_EVENT.fields:
        at = PACKED_EVENT.offsets[f.name]
        stmts.append(word[at:at + f.width].eq(field[f.name][:f.width]))
    return ok, word, stmts


class LinkTX(LiteXModule):
    """Sender: one frame per beat while the receiver has room (packed where the beat is an event
    that fits layouts.PACKED_EVENT, linkframe's spec).

        sink     in   stream beats (64-bit data), taken when a credit is left
        source   out  the frames' bytes, to the forward PHY
        credit   in   one pulse per CREDIT byte from the backward wire: one beat's room freed
        clear    in   clears `sent` and `bytes` and restarts seq at 0 (with the receiver's clear,
                      between frames)
        sent     out  beats sent (32 bits)
        bytes    out  bytes sent (32 bits)
        credits  out  credits held (0: the receiver's FIFO may be full)
    """

    def __init__(self, depth: int = lf.RX_FIFO_BEATS):
        self.sink = stream.Endpoint(BEAT)
        self.source = stream.Endpoint(BYTE)
        self.credit = Signal()
        self.clear = Signal()
        self.sent = Signal(COUNTER_BITS)
        self.bytes = Signal(COUNTER_BITS)
        self.credits = Signal(max=depth + 1, reset=depth)

        # # #

        word = Signal(STREAM_BITS)
        packed = Signal()
        seq = Signal(8)
        crc = Signal(8)
        index = Signal(3)
        take = Signal()
        crc_after, crc_stmts = crc8_next(crc, self.source.data)
        fits, packed_word, pack_stmts = packable(self.sink.data)
        self.comb += crc_stmts + pack_stmts
        # More credits than the receiver's FIFO holds can only come from a broken backward wire:
        # they saturate (the receiver drops and counts what would not fit).
        self.sync += If(~(self.credit & ~take & (self.credits == depth)),
                        self.credits.eq(self.credits + self.credit - take))
        # clear restarts the frame numbers with the receiver's (the host clears both ends between frames)
        self.sync += If(self.clear, self.sent.eq(0), self.bytes.eq(0), seq.eq(0)).Elif(
            self.source.valid & self.source.ready, self.bytes.eq(self.bytes + 1))
        data_byte = Signal(8)
        self.comb += Case(index, {i: data_byte.eq(word[8 * i:8 * i + 8]) for i in range(lf.BEAT_BYTES)})

        self.fsm = fsm = FSM(reset_state="IDLE")
        fsm.act("IDLE",
            If(self.sink.valid & (self.credits != 0),
                take.eq(1), self.sink.ready.eq(1),
                NextValue(word, Mux(fits, packed_word, self.sink.data)), NextValue(packed, fits),
                NextState("SYNC")))
        fsm.act("SYNC",
            self.source.valid.eq(1), self.source.data.eq(Mux(packed, lf.SYNC_PACKED, lf.SYNC)),
            If(self.source.ready, NextValue(crc, 0), NextState("SEQ")))
        fsm.act("SEQ",
            self.source.valid.eq(1), self.source.data.eq(seq),
            If(self.source.ready, NextValue(crc, crc_after), NextValue(index, 0), NextState("DATA")))
        fsm.act("DATA",
            self.source.valid.eq(1), self.source.data.eq(data_byte),
            If(self.source.ready,
                NextValue(crc, crc_after), NextValue(index, index + 1),
                If(index == Mux(packed, lf.PACKED_BYTES - 1, lf.BEAT_BYTES - 1), NextState("CHECK"))))
        fsm.act("CHECK",
            self.source.valid.eq(1), self.source.data.eq(crc),
            If(self.source.ready,
                If(~self.clear, NextValue(seq, seq + 1), NextValue(self.sent, self.sent + 1)),
                NextState("IDLE")))


class LinkRX(LiteXModule):
    """Receiver: checks each frame, passes the good ones through its FIFO (a packed event widened
    back to a beat, tag 0), drops the rest.

        sink      in   bytes from the forward PHY (always taken: a UART cannot wait)
        source    out  the good beats, in order (64-bit data)
        credit    out  one pulse per beat's room freed: a beat the FIFO passed on, or a frame dropped
        clear     in   clears the counters and `broken`, restarts the expected seq at 0 and the
                       frame parser at HUNT
        received  out  good frames (32 bits)
        errors    out  frames dropped: bad CRC, out of sequence, no room, or while broken (32 bits)
        broken    out  a frame was dropped or a byte came outside a frame: every later frame is
                       dropped until clear (the fabric never sees a frame with a gap)
    """

    def __init__(self, depth: int = lf.RX_FIFO_BEATS):
        self.sink = stream.Endpoint(BYTE)
        self.source = stream.Endpoint(BEAT)
        self.credit = Signal()
        self.clear = Signal()
        self.received = Signal(COUNTER_BITS)
        self.errors = Signal(COUNTER_BITS)
        self.broken = Signal()

        # # #

        self.fifo = fifo = stream.SyncFIFO(BEAT, depth, buffered=True)
        self.comb += fifo.source.connect(self.source)
        byte = self.sink.data
        got = self.sink.valid
        self.comb += self.sink.ready.eq(1)
        seq, expected, crc = Signal(8), Signal(8), Signal(8)
        word = Signal(STREAM_BITS)
        packed = Signal()
        index = Signal(3)
        crc_after, crc_stmts = crc8_next(crc, byte)
        self.comb += crc_stmts
        good = Signal()
        drop = Signal()
        self.comb += [
            good.eq((byte == crc) & (seq == expected) & ~self.broken & fifo.sink.ready),
            fifo.sink.data.eq(Mux(packed, widened(word[:32]), word)),
            self.credit.eq((self.source.valid & self.source.ready) | drop),
        ]
        stray = Signal()

        # clear also puts the frame parser back to HUNT: after a fault it may wait inside a frame
        # whose bytes will never all come, and would take the next frame's SYNC for data.
        self.fsm = fsm = ResetInserter()(FSM(reset_state="HUNT"))
        self.comb += fsm.reset.eq(self.clear)
        fsm.act("HUNT",
            If(got,
                If((byte == lf.SYNC) | (byte == lf.SYNC_PACKED),
                    NextValue(crc, 0), NextValue(packed, byte == lf.SYNC_PACKED), NextState("SEQ"))
                .Else(stray.eq(1))))
        fsm.act("SEQ",
            If(got, NextValue(seq, byte), NextValue(crc, crc_after), NextValue(index, 0), NextState("DATA")))
        fsm.act("DATA",
            If(got,
                NextValue(crc, crc_after), NextValue(index, index + 1),
                Case(index, {i: NextValue(word[8 * i:8 * i + 8], byte) for i in range(lf.BEAT_BYTES)}),
                If(index == Mux(packed, lf.PACKED_BYTES - 1, lf.BEAT_BYTES - 1), NextState("CHECK"))))
        fsm.act("CHECK",
            If(got,
                If(good, fifo.sink.valid.eq(1)).Else(drop.eq(1)),
                NextState("HUNT")))
        self.sync += [
            If(self.clear,
                self.received.eq(0), self.errors.eq(0), self.broken.eq(0), expected.eq(0))
            .Else(
                If(fifo.sink.valid, self.received.eq(self.received + 1), expected.eq(expected + 1)),
                If(drop, self.errors.eq(self.errors + 1)),
                If(drop | stray, self.broken.eq(1))),
        ]
