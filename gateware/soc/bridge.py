"""StreamBridge: the fabric's 64-bit event streams as a small wishbone window for a host.

A host on a byte link (UARTBone) writes input beats as word pairs into an alias window and
reads output beats as word triples from another; the register layout lives in
synfab.layouts (BRIDGE_* constants), shared with the host driver (synfab.runtime.litex).

Input is store-and-forward: beats wait in the input FIFO until a whole frame (a beat with
last) is in it, so the fabric sees the frame at full rate and `frame_cycles` (first input
beat released to the output beat with last) is the fabric's own processing time.  A frame
larger than the FIFO is released once the FIFO fills; `flags` then says the count includes
host transfer time.
"""
from __future__ import annotations

from migen import Cat, Case, If, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.layouts import STREAM_BITS
from synfab import layouts as soc_map

BEAT = [("data", STREAM_BITS)]


HEAD_LATENCY = 3   # clocks from a beat written into the input FIFO to the register after it


class _Queue:
    """A FIFO seen as one queue: its sink, the source of the register after it, and their level."""

    def __init__(self, sink, source, level):
        self.sink, self.source, self.level = sink, source, level


def _window(offset: int) -> int:
    """Index of the bridge window holding a byte offset (the two top word-address bits)."""
    return offset // (soc_map.ALIAS_WORDS * 4)


class StreamBridge(LiteXModule):
    def __init__(self, in_depth: int = 512, out_depth: int = 512):
        self.bus = wishbone.Interface(data_width=32, address_width=(soc_map.BRIDGE_SIZE - 1).bit_length(),
                                      addressing="word")
        self.source = stream.Endpoint(BEAT)    # input beats, to the fabric's sink
        self.sink = stream.Endpoint(BEAT)      # output beats, from the fabric's source

        # # #

        self.in_fifo = in_fifo_mem = stream.SyncFIFO(BEAT, in_depth, buffered=True)
        self.out_fifo = out_fifo_mem = stream.SyncFIFO(BEAT, out_depth, buffered=True)
        # Each FIFO (block RAM, 5.8 ns to its output on ECP5) is followed by a register.
        self.in_reg, self.out_reg = stream.PipeValid(BEAT), stream.PipeValid(BEAT)
        self.comb += [in_fifo_mem.source.connect(self.in_reg.sink), out_fifo_mem.source.connect(self.out_reg.sink)]
        in_fifo = _Queue(in_fifo_mem.sink, self.in_reg.source, in_fifo_mem.level + self.in_reg.source.valid)
        out_fifo = _Queue(out_fifo_mem.sink, self.out_reg.source, out_fifo_mem.level + self.out_reg.source.valid)
        self.comb += self.sink.connect(out_fifo.sink)
        # A buffered FIFO holds depth beats in memory plus one in its output register; one more
        # sits in the register after it.
        in_capacity = in_fifo_mem.depth + 2

        # -- frame hold and cycle measurement ---------------------------------------------------
        frames_held = Signal(max=in_capacity + 1)   # beats with last inside the input FIFO
        overflow = Signal()                           # FIFO filled before a whole frame was in
        release = Signal()
        pushed_last = Signal()
        arrived = Signal(HEAD_LATENCY)
        released = Signal()
        released_last = Signal()
        self.comb += [
            release.eq((frames_held != 0) | overflow),
            self.source.valid.eq(in_fifo.source.valid & release),
            self.source.data.eq(in_fifo.source.data),
            self.source.last.eq(in_fifo.source.last),
            in_fifo.source.ready.eq(self.source.ready & release),
            released.eq(self.source.valid & self.source.ready),
            released_last.eq(released & self.source.last),
        ]
        self.sync += [
            # A frame counts as held once its last beat can have reached the head register (block
            # RAM write, read, two registers): released then, it leaves without a bubble.
            arrived.eq(Cat(pushed_last, arrived[:-1])),
            frames_held.eq(frames_held + arrived[-1] - released_last),
            If(released_last, overflow.eq(0)).Elif(~in_fifo.sink.ready, overflow.eq(1)),
        ]

        running = Signal()
        cycles = Signal(32)
        frame_cycles = Signal(32)
        frames_done = Signal(32)
        saw_overflow = Signal()
        saw_stall = Signal()
        frame_flags = Signal(2)
        out_last = Signal()
        self.comb += out_last.eq(self.sink.valid & self.sink.ready & self.sink.last)
        self.sync += [
            If(out_last,
                running.eq(0), cycles.eq(0),
                frame_cycles.eq(cycles + 1),
                frames_done.eq(frames_done + 1),
                frame_flags.eq(Cat(saw_overflow | overflow, saw_stall)),
                saw_overflow.eq(0), saw_stall.eq(0),
            ).Else(
                If(released & ~running, running.eq(1), cycles.eq(1)
                ).Elif(running, cycles.eq(cycles + 1)),
                If(overflow, saw_overflow.eq(1)),
                If(self.sink.valid & ~self.sink.ready, saw_stall.eq(1)),
            ),
        ]

        # -- wishbone slave: one access per two cycles, side effects in the first -------------------
        bus = self.bus
        access = Signal()
        self.comb += access.eq(bus.cyc & bus.stb & ~bus.ack)
        window = bus.adr[-2:]
        index = bus.adr[:-2]
        self.sync += bus.ack.eq(access)

        in_phase = Signal()
        in_lo = Signal(32)
        overrun = Signal()
        resync = Signal()
        self.comb += [
            in_fifo.sink.data.eq(Cat(in_lo, bus.dat_w)),
            in_fifo.sink.last.eq(window == _window(soc_map.IN_LAST)),
        ]
        in_window = (window == _window(soc_map.IN_DATA)) | (window == _window(soc_map.IN_LAST))
        self.comb += If(access & bus.we & in_window & in_phase,
                        in_fifo.sink.valid.eq(1),
                        pushed_last.eq(in_fifo.sink.ready & in_fifo.sink.last))
        self.sync += If(access & bus.we & in_window,
            in_phase.eq(~in_phase),
            If(~in_phase, in_lo.eq(bus.dat_w)).Elif(~in_fifo.sink.ready, overrun.eq(1)),
        )

        out_phase = Signal(2)
        head_valid = Signal()
        out_read = Signal()
        self.comb += out_read.eq(access & ~bus.we & (window == _window(soc_map.OUT_DATA)))
        self.comb += If(out_read & (out_phase == 2) & head_valid, out_fifo.source.ready.eq(1))
        self.sync += If(out_read,
            If(out_phase == 2, out_phase.eq(0)).Else(out_phase.eq(out_phase + 1)),
            If(out_phase == 0, head_valid.eq(out_fifo.source.valid)),
        )
        self.sync += If(resync, in_phase.eq(0), out_phase.eq(0), overrun.eq(0))

        regs = {
            "id": soc_map.BRIDGE_MAGIC,
            "in_free": in_capacity - in_fifo.level,
            "out_level": out_fifo.level,
            "frames_done": frames_done,
            "frame_cycles": frame_cycles,
            "flags": Cat(frame_flags, overrun),
            "ctrl": 0,
            "in_depth": in_capacity,
            "out_depth": out_fifo_mem.depth + 2,
        }
        assert list(regs) == soc_map.BRIDGE_REGS
        self.comb += resync.eq(access & bus.we & (window == _window(soc_map.REGS))
                               & (index == soc_map.BRIDGE_REGS.index("ctrl")) & bus.dat_w[0])
        out_word = Case(out_phase, {
            0: bus.dat_r.eq(out_fifo.source.data[:32]),
            1: bus.dat_r.eq(out_fifo.source.data[32:]),
            "default": bus.dat_r.eq(Cat(head_valid, out_fifo.source.last & head_valid)),
        })
        reg_word = Case(index, {**{i: bus.dat_r.eq(v) for i, v in enumerate(regs.values())},
                                "default": bus.dat_r.eq(0)})
        self.sync += If(access & ~bus.we,
                        Case(window, {_window(soc_map.OUT_DATA): out_word, _window(soc_map.REGS): reg_word,
                                      "default": bus.dat_r.eq(0)}))
