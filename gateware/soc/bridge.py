"""StreamBridge: the fabric's 64-bit event streams as a small wishbone window for a host.

A host on a byte link (UARTBone) writes input beats as word pairs into an alias window (or, in
packed mode, one PACKED_EVENT word per beat) and reads output beats as word triples from another; the register layout lives in
synfab.layouts (BRIDGE_* constants), shared with the host driver (synfab.runtime.litex).

Input is store-and-forward: beats wait in the input FIFO until a whole frame (a beat with
last) is in it, so the fabric sees the frame at full rate and `frame_cycles` (first input
beat released to the output beat with last) is the fabric's own processing time.  A frame
larger than the FIFO is released once the FIFO fills; `flags` then says the count includes
host transfer time.
"""
from __future__ import annotations

from migen import Cat, Case, Constant as C, If, Mux, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.layouts import PACKED_EVENT, STREAM_BITS, STREAM_EVENT
from synfab import layouts as soc_map

BEAT = [("data", STREAM_BITS)]


HEAD_LATENCY = 3   # clocks from a beat written into the input FIFO to the register after it


class _Queue:
    """A FIFO seen as one queue: its sink, the source of the register after it, and their level."""

    def __init__(self, sink, source, level):
        self.sink, self.source, self.level = sink, source, level


def widened(word) -> Cat:
    """A PACKED_EVENT word as a STREAM_EVENT beat: each field at its place, d sign-extended, the
    other fields (tag, eof) 0."""
    parts, at = [], 0
    for f in STREAM_EVENT.fields:
        gap = STREAM_EVENT.offsets[f.name] - at
        if gap:
            parts.append(C(0, gap))
        if f.name in PACKED_EVENT.by_name:
            p = PACKED_EVENT.by_name[f.name]
            bits = word[PACKED_EVENT.offsets[f.name]:PACKED_EVENT.offsets[f.name] + p.width]
            ext = f.width - p.width
            parts.append(Cat(bits, *([bits[-1]] * ext if p.signed else [C(0, ext)] if ext else [])))
        else:
            parts.append(C(0, f.width))
        at = STREAM_EVENT.offsets[f.name] + f.width
    return Cat(*parts)


def _window(offset: int) -> int:
    """Index of the bridge window holding a byte offset (the two top word-address bits)."""
    return offset // (soc_map.ALIAS_WORDS * 4)


class StreamBridge(LiteXModule):
    """The fabric's streams behind a wishbone window (and, with_ext, a second stream port).

    Ports:
      bus        wishbone slave (in)   the host's window (IN_DATA, IN_LAST, OUT_DATA, REGS)
      source     BEAT stream (out)     input beats, to the fabric's sink
      sink       BEAT stream (in)      output beats, from the fabric's source
    with_ext (another transport, e.g. the UDP stream port, shares the FIFOs and the frame hold):
      ext_sink   BEAT stream (in)      input beats; a wishbone push in the same clock is lost
                                       (FLAG_IN_OVERRUN)
      ext_source BEAT stream (out)     output beats, while ext_out is 1 (OUT_DATA then reads empty)
      ext_out    Signal (in)           where output beats go
      in_free, out_level, out_frames, released   Signals (out): input FIFO room (beats), output
                                       FIFO level, end-of-frame beats in the output FIFO, input
                                       beats released to the fabric so far (32 bits, wrapping)
    """

    def __init__(self, in_depth: int = 512, out_depth: int = 512, with_ext: bool = False):
        self.bus = wishbone.Interface(data_width=32, address_width=(soc_map.BRIDGE_SIZE - 1).bit_length(),
                                      addressing="word")
        self.source = stream.Endpoint(BEAT)    # input beats, to the fabric's sink
        self.sink = stream.Endpoint(BEAT)      # output beats, from the fabric's source
        if with_ext:
            self.ext_sink = stream.Endpoint(BEAT)
            self.ext_source = stream.Endpoint(BEAT)
            self.ext_out = Signal()

        # # #

        self.in_fifo = in_fifo_mem = stream.SyncFIFO(BEAT, in_depth, buffered=True)
        self.out_fifo = out_fifo_mem = stream.SyncFIFO(BEAT, out_depth, buffered=True)
        # Each FIFO (block RAM, 5.8 ns to its output on ECP5) is followed by a register.
        self.in_reg, self.out_reg = stream.PipeValid(BEAT), stream.PipeValid(BEAT)
        self.comb += [in_fifo_mem.source.connect(self.in_reg.sink), out_fifo_mem.source.connect(self.out_reg.sink)]
        in_fifo = _Queue(in_fifo_mem.sink, self.in_reg.source, in_fifo_mem.level + self.in_reg.source.valid)
        out_fifo = _Queue(out_fifo_mem.sink, self.out_reg.source, out_fifo_mem.level + self.out_reg.source.valid)
        out_pop = Signal()      # wishbone pops of the output FIFO (the ext port pops directly)
        if with_ext:
            self.comb += [
                self.sink.connect(out_fifo.sink),
                self.ext_source.valid.eq(out_fifo.source.valid & self.ext_out),
                self.ext_source.data.eq(out_fifo.source.data),
                self.ext_source.last.eq(out_fifo.source.last),
                out_fifo.source.ready.eq(Mux(self.ext_out, self.ext_source.ready, out_pop)),
            ]
        else:
            self.comb += [self.sink.connect(out_fifo.sink), out_fifo.source.ready.eq(out_pop)]
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
        in_window = (window == _window(soc_map.IN_DATA)) | (window == _window(soc_map.IN_LAST))
        packed = Signal()        # ctrl's CTRL_PACKED bit: IN_DATA words are PACKED_EVENT beats
        packed_write = Signal()  # a packed beat written (no word pair, no phase)
        wb_data = Signal(STREAM_BITS)
        wb_push = Signal()
        wb_lost = Signal()      # a wishbone beat the FIFO could not take
        self.comb += [
            packed_write.eq(access & bus.we & packed & (window == _window(soc_map.IN_DATA))),
            wb_push.eq((access & bus.we & in_window & in_phase) | packed_write),
            wb_data.eq(Mux(packed_write, widened(bus.dat_w), Cat(in_lo, bus.dat_w))),
        ]
        if with_ext:
            wb_sink = stream.Endpoint(BEAT)
            self.comb += [
                wb_sink.data.eq(wb_data),
                wb_sink.last.eq(window == _window(soc_map.IN_LAST)),
                wb_sink.valid.eq(wb_push),
                If(self.ext_sink.valid, self.ext_sink.connect(in_fifo.sink)
                ).Else(wb_sink.connect(in_fifo.sink)),
                wb_lost.eq(self.ext_sink.valid | ~in_fifo.sink.ready),
                pushed_last.eq(in_fifo.sink.valid & in_fifo.sink.ready & in_fifo.sink.last),
            ]
        else:
            self.comb += [
                in_fifo.sink.data.eq(wb_data),
                in_fifo.sink.last.eq(window == _window(soc_map.IN_LAST)),
                If(wb_push, in_fifo.sink.valid.eq(1), pushed_last.eq(in_fifo.sink.ready & in_fifo.sink.last)),
                wb_lost.eq(~in_fifo.sink.ready),
            ]
        self.sync += If(packed_write,
            If(wb_lost, overrun.eq(1)),
        ).Elif(access & bus.we & in_window,
            in_phase.eq(~in_phase),
            If(~in_phase, in_lo.eq(bus.dat_w)).Elif(wb_lost, overrun.eq(1)),
        )

        out_phase = Signal(2)
        head_valid = Signal()
        out_read = Signal()
        self.comb += out_read.eq(access & ~bus.we & (window == _window(soc_map.OUT_DATA)))
        self.comb += If(out_read & (out_phase == 2) & head_valid, out_pop.eq(1))
        self.sync += If(out_read,
            If(out_phase == 2, out_phase.eq(0)).Else(out_phase.eq(out_phase + 1)),
            If(out_phase == 0, head_valid.eq(out_fifo.source.valid)),
        )
        self.sync += If(resync, in_phase.eq(0), out_phase.eq(0), overrun.eq(0))

        if with_ext:
            self.in_capacity, self.out_capacity = in_capacity, out_fifo_mem.depth + 2
            self.in_free = Signal(max=in_capacity + 1)
            self.out_level = Signal(max=out_fifo_mem.depth + 3)
            self.out_frames = Signal(max=out_fifo_mem.depth + 3)
            self.released = Signal(32)
            out_pushed_last = Signal()
            out_popped_last = Signal()
            self.comb += [
                self.in_free.eq(in_capacity - in_fifo.level),
                self.out_level.eq(out_fifo.level),
                out_pushed_last.eq(out_fifo.sink.valid & out_fifo.sink.ready & out_fifo.sink.last),
                out_popped_last.eq(out_fifo.source.valid & out_fifo.source.ready & out_fifo.source.last),
            ]
            self.sync += [
                self.out_frames.eq(self.out_frames + out_pushed_last - out_popped_last),
                If(released, self.released.eq(self.released + 1)),
            ]

        regs = {
            "id": soc_map.BRIDGE_MAGIC,
            "in_free": in_capacity - in_fifo.level,
            "out_level": out_fifo.level,
            "frames_done": frames_done,
            "frame_cycles": frame_cycles,
            "flags": Cat(frame_flags, overrun),
            "ctrl": Cat(0, packed),
            "in_depth": in_capacity,
            "out_depth": out_fifo_mem.depth + 2,
        }
        assert list(regs) == soc_map.BRIDGE_REGS
        ctrl_write = Signal()
        self.comb += [
            ctrl_write.eq(access & bus.we & (window == _window(soc_map.REGS))
                          & (index == soc_map.BRIDGE_REGS.index("ctrl"))),
            resync.eq(ctrl_write & bus.dat_w[0]),
        ]
        self.sync += If(ctrl_write, packed.eq(bus.dat_w[1]))
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
