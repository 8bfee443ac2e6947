"""Host-written tables in block RAM: TableMemory (one entry per clock) and SerialTableMemory (an
entry read word by word, for tables read once per population rather than per event).

Both are written by the host word by word at the RegisterMap window layout (entry i, word j at bus
word i * stride + j). Writes of words j < words-1 are staged; writing word words-1 commits the
whole entry at once, so the datapath never sees a half-written entry. Bus byte strobes are
ignored: tables are written in whole words. Unmapped words (j >= words or i >= entries) ack, read
0 and ignore writes.

The host window is registered (a WishboneSlice in front of the table's logic), so the core's
bus decode never reaches the memory ports in the same clock.

Block RAM on ECP5 has a 5.8 ns clock-to-output, so the datapath read is registered: data for an
address presented in a clock with `rd_re` appears two `rd_re` clocks later. The memory has one
write port (host commits only) and one read port (simple dual port, so the RAM can be 36 bits
wide). The host reads through the datapath's read port, only while the owner says it does not use
it (`host_ok`): a host read uses the read port in one clock only (the address) and keeps the
answer in a register of its own, so the owner only has to keep the port free in that clock, with
no read of its own held in the RAM (its read-enable low with data still to take). `host_busy`
shows a host read in progress.

`derive` (optional): a module computing values the datapath needs from an entry, stored beside it
(`rd_extra`) so the datapath never computes them per event. It has `entry` (a Record of the
layout, in), `start` (in, pulse), `done` (out, pulse) and `extra` (out); the write of an entry's
last word is acknowledged once `done` has come, and the bus reads only the layout's bits.
"""
from __future__ import annotations

from migen import READ_FIRST, Array, Cat, Constant, If, Memory, Mux, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone

from synfab.layouts import Layout, _pow2

from .common import WishboneSlice, record


def block_ram(width: int, depth: int, name: str) -> Memory:
    """A Memory that synthesis maps to block RAM even when it is small (yosys/Vivado ram_style).

    Give its read ports mode=READ_FIRST: the read then sits in an always block of its own, which
    leaves the read-during-write of another port undefined, so yosys adds no bypass logic after
    the RAM (its 5.8 ns clock-to-output leaves no room for it). Every user of these memories
    either never reads an address in the clock it is written, or forwards the written value."""
    mem = Memory(width, depth, name=name)
    mem.attr = {("ram_style", "block")}
    return mem


def _registered_bus(table) -> wishbone.Interface:
    """The table's side of a WishboneSlice behind `table.bus`: the core's address decode and the
    table's memory ports (address and write enable fanned out to every block RAM of a large
    table) sit in different clocks, at two clocks more per host access."""
    table.submodules.host_slice = cut = WishboneSlice(len(table.bus.adr))
    table.comb += table.bus.connect(cut.sink)
    return cut.source


class _HostPort:
    """Bus decoding and staging shared by both table kinds: `entry`, `word`, `mapped`, `access`,
    `commit` (the last word of a mapped entry is being written: `new_entry` is the whole entry)."""

    def __init__(self, m, bus, layout: Layout, entries: int, stride: int):
        stride_bits = (stride - 1).bit_length()
        self.entry = Signal(len(bus.adr) - stride_bits + 1)
        self.word = Signal(max(1, stride_bits))
        self.mapped = Signal()
        self.access = Signal()      # set by the owner (when it may answer)
        self.commit = Signal()
        m.comb += [
            self.entry.eq(bus.adr[stride_bits:]),
            self.word.eq(bus.adr[:stride_bits] if stride_bits else 0),
            self.mapped.eq((self.entry < entries) & (self.word < layout.words32)),
            self.commit.eq(self.access & bus.we & self.mapped & (self.word == layout.words32 - 1)),
        ]
        words = layout.words32
        self.staging = Signal(32 * (words - 1)) if words > 1 else None
        self.new_entry = (Cat(self.staging, bus.dat_w) if self.staging is not None else bus.dat_w)[:layout.width]
        if self.staging is not None:
            staged = Array(self.staging[32 * j:32 * (j + 1)] for j in range(words - 1))
            m.sync += If(self.access & bus.we & self.mapped & (self.word < words - 1), staged[self.word].eq(bus.dat_w))


class _Derivation:
    """Runs `derive` on a committed entry: `held` keeps the entry, `deriving` is high until `done`."""

    def __init__(self, m, derive, host: _HostPort, width: int):
        self.held = Signal(width)
        self.deriving = Signal()
        m.submodules.derive = derive
        m.comb += derive.entry.raw_bits().eq(self.held)
        m.sync += [
            derive.start.eq(host.commit),
            If(host.commit, self.held.eq(host.new_entry), self.deriving.eq(1)).Elif(derive.done,
                self.deriving.eq(0)),
        ]


class TableMemory(LiteXModule):
    """`entries` entries of `layout`, one entry per clock to the datapath.

        bus        in   host window (RegisterMap layout)
        rd_adr     in   datapath read address
        rd_re      in   clock enable of the read (default 1): address and output register move with it
        rd_dat     out  the entry (layout Record), `latency` rd_re clocks after its address
        rd_extra   out  the derived values stored with it (if `derive`)
        host_ok    in   the owner leaves the read port free this clock (default 1)
        host_busy  out  a host read is in progress
    """

    def __init__(self, layout: Layout, entries: int, stride: int | None = None, derive=None,
                 latency: int = 2):
        """`latency` >= 2: the read's output registers.  A memory of many block RAMs (a core's
        weights) spreads over the device's RAM rows; a third register lets the placer put the
        first next to each RAM and cross the distance from a flip-flop."""
        self.layout = layout
        self.entries = entries
        self.words = layout.words32
        self.latency = latency
        if latency < 2:
            raise ValueError(f"{layout.name}: read latency {latency} must be >= 2")
        self.stride = stride if stride is not None else _pow2(self.words)
        if self.stride < self.words or self.stride & (self.stride - 1):
            raise ValueError(f"{layout.name}: stride {self.stride} must be a power of two >= {self.words}")
        entry_bits = max(1, (entries - 1).bit_length())
        self.bus = wishbone.Interface(data_width=32, adr_width=entry_bits + (self.stride - 1).bit_length(),
                                      addressing="word")
        self.rd_adr = Signal(entry_bits)
        self.rd_re = Signal(reset=1)
        self.rd_dat = record(layout)
        extra_width = len(derive.extra) if derive is not None else 0
        self.rd_extra = Signal(max(1, extra_width))
        self.host_ok = Signal(reset=1)
        self.host_busy = Signal()
        self.mem = block_ram(layout.width + extra_width, entries, layout.name)

        # # #

        bus = _registered_bus(self)
        wr = self.mem.get_port(write_capable=True)
        rd = self.mem.get_port(has_re=True, mode=READ_FIRST)
        self.specials += self.mem, wr, rd
        host = _HostPort(self, bus, layout, entries, self.stride)

        # Host reads: the request takes the port (t), the memory answers (t+1) into `landed`, the
        # word is selected into dat_r with ack (t+2). `landed` takes the RAM's output every clock,
        # with no enable or select before it: the RAM's 5.8 ns clock-to-output leaves room for a
        # route and nothing else, and a free-running register can sit next to the RAM (an enable
        # in a LUT before it was the 2x2 fabric's critical path at one placement seed).
        reading = Signal(2)
        start_read = Signal()
        out = Signal(layout.width + extra_width)
        landed = Signal(layout.width)
        self.comb += [
            start_read.eq(bus.cyc & bus.stb & ~bus.ack & ~bus.we & self.host_ok & (reading == 0)),
            self.host_busy.eq(start_read | (reading != 0)),
            rd.adr.eq(Mux(start_read, host.entry, self.rd_adr)),
            rd.re.eq(self.rd_re | start_read),
        ]
        self.sync += [
            If(self.rd_re, out.eq(rd.dat_r)),
            landed.eq(rd.dat_r[:layout.width]),
            reading.eq(Cat(start_read, reading[0])),
        ]
        for _ in range(latency - 2):
            later = Signal(len(out))
            self.sync += If(self.rd_re, later.eq(out))
            out = later
        self.comb += self.rd_dat.raw_bits().eq(out[:layout.width])
        if extra_width:
            self.comb += self.rd_extra.eq(out[layout.width:])
        read_word, read_mapped = Signal(max(1, (self.words - 1).bit_length())), Signal()
        self.sync += If(start_read, read_word.eq(host.word), read_mapped.eq(host.mapped))
        padded = Signal(32 * self.words)
        self.comb += padded.eq(landed)
        words = Array(padded[32 * j:32 * (j + 1)] for j in range(self.words))

        # Host writes complete at once, except a commit that waits for the derived values. The
        # memory's write port is registered: the bus decode and the write enable fanned out to every
        # block RAM of a large table (a core's weights: 32 DP16KD) sit in different clocks. The
        # write lands the clock after its ack, before the slice can pass the host's next access.
        write_access = Signal()
        self.comb += write_access.eq(bus.cyc & bus.stb & ~bus.ack & bus.we)
        if derive is None:
            self.comb += host.access.eq(write_access)
            self.sync += [wr.adr.eq(host.entry), wr.dat_w.eq(host.new_entry), wr.we.eq(host.commit)]
            write_ack = write_access
        else:
            d = _Derivation(self, derive, host, layout.width)
            self.comb += host.access.eq(write_access & ~d.deriving)
            self.sync += [wr.adr.eq(host.entry), wr.dat_w.eq(Cat(d.held, derive.extra)),
                          wr.we.eq(d.deriving & derive.done)]
            write_ack = (host.access & ~host.commit) | (d.deriving & derive.done)
        self.sync += [
            bus.ack.eq(write_ack | reading[1]),
            bus.dat_r.eq(Mux(reading[1] & read_mapped, words[read_word], 0)),
        ]


class SerialTableMemory(LiteXModule):
    """`entries` entries of `layout` stored as their 32-bit bus words (one block RAM for a small
    table of wide entries), read by the datapath word by word.

        bus        in   host window (RegisterMap layout)
        rd_adr     in   the entry to read, sampled with rd_start
        rd_start   in   pulse: read entry rd_adr
        rd_done    out  pulse: rd_dat and rd_extra hold the entry (words + extra words + 3 clocks later)
        rd_dat     out  the entry (layout Record), held until the next read
        rd_extra   out  its derived values (if `derive`)
        host_ok    in   the owner does not read now (default 1)
        host_busy  out  a host access owns the memory ports
    """

    def __init__(self, layout: Layout, entries: int, stride: int | None = None, derive=None):
        self.layout = layout
        self.entries = entries
        self.words = layout.words32
        self.stride = stride if stride is not None else _pow2(self.words)
        extra_width = len(derive.extra) if derive is not None else 0
        self.extra_words = -(-extra_width // 32)
        slots = _pow2(self.words + self.extra_words)     # internal words per entry
        entry_bits = max(1, (entries - 1).bit_length())
        self.bus = wishbone.Interface(data_width=32, adr_width=entry_bits + (self.stride - 1).bit_length(),
                                      addressing="word")
        self.rd_adr = Signal(entry_bits)
        self.rd_start = Signal()
        self.rd_done = Signal()
        self.rd_dat = record(layout)
        self.rd_extra = Signal(max(1, extra_width))
        self.host_ok = Signal(reset=1)
        self.host_busy = Signal()
        self.mem = block_ram(32, entries * slots, layout.name)

        # # #

        bus = _registered_bus(self)
        wr = self.mem.get_port(write_capable=True)
        rd = self.mem.get_port(mode=READ_FIRST)
        self.specials += self.mem, wr, rd
        host = _HostPort(self, bus, layout, entries, self.stride)
        slot_bits = (slots - 1).bit_length()

        def address(entry, word):
            """Internal word address of (entry, word): entry * slots + word."""
            if not slot_bits:
                return entry
            w = Signal(slot_bits)
            self.comb += w.eq(word)
            return Cat(w, entry)

        # ---- datapath read: word by word into a shift register ----
        total = self.words + self.extra_words
        reading = Signal()
        issue = Signal(max=total + 1)          # next word to address
        arrived = Signal(max=total + 1)        # words shifted in
        # The read address is registered: the host's read request (from its bus slice) and the
        # datapath's address meet in a mux that reaches a flip-flop, not the memory's read logic (the
        # slice -> mux -> memory read -> output register was the 2x2 fabric's critical path at one
        # placement seed). Host and datapath addresses both pass it, so their order is kept.
        adr_q = Signal(len(rd.adr))
        self.comb += rd.adr.eq(adr_q)
        valid0, valid1, valid2 = Signal(), Signal(), Signal()    # a word addressed / in the memory / in q
        q = Signal(32)
        entry = Signal(entry_bits)
        shift = Signal(32 * total)
        self.sync += [
            self.rd_done.eq(0),
            If(self.rd_start, reading.eq(1), entry.eq(self.rd_adr), issue.eq(0), arrived.eq(0)),
            If(reading & ~self.rd_start,
                If(issue != total, issue.eq(issue + 1)),
                If(valid2,
                    shift.eq(Cat(shift[32:], q)), arrived.eq(arrived + 1),
                    If(arrived == total - 1, reading.eq(0), self.rd_done.eq(1)),
                ),
            ),
            valid0.eq(reading & ~self.rd_start & (issue != total)),
            valid1.eq(valid0),
            valid2.eq(valid1),
            q.eq(rd.dat_r),
        ]
        self.comb += [
            self.rd_dat.raw_bits().eq(shift[:layout.width]),
            self.rd_extra.eq(shift[32 * self.words:]) if extra_width else [],
        ]

        # ---- host reads: one word, through the read port ----
        host_rd = Signal(3)
        start_read = Signal()
        read_mapped = Signal()
        write_access = Signal()
        self.comb += [
            write_access.eq(bus.cyc & bus.stb & ~bus.ack & bus.we),
            # Not gated by rd_start: the owner raises rd_start only while it keeps host_ok low.
            start_read.eq(bus.cyc & bus.stb & ~bus.ack & ~bus.we & self.host_ok & ~reading & (host_rd == 0)),
        ]
        self.sync += [
            adr_q.eq(Mux(start_read, address(host.entry, host.word), address(entry, issue))),
            host_rd.eq(Cat(start_read, host_rd[:2])),
            If(start_read, read_mapped.eq(host.mapped)),
        ]

        # ---- host writes: staged; a commit (after the derivation) writes the entry's words and
        # its extra words one per clock, so the datapath never sees a half-written entry ----
        held = Signal(32 * total)
        writing = Signal()
        slot = Signal(max=total + 1)
        held_words = Array(held[32 * k:32 * (k + 1)] for k in range(total))
        self.comb += [
            wr.adr.eq(address(host.entry, slot)), wr.dat_w.eq(held_words[slot]), wr.we.eq(writing),
        ]
        if derive is None:
            self.comb += host.access.eq(write_access & ~writing)
            start_writing = host.commit
            self.sync += If(host.commit, held.eq(host.new_entry))
        else:
            d = _Derivation(self, derive, host, layout.width)
            self.comb += host.access.eq(write_access & ~d.deriving & ~writing)
            start_writing = d.deriving & derive.done
            pad = 32 * self.words - layout.width
            self.sync += If(start_writing, held.eq(Cat(d.held, *([Constant(0, pad)] if pad else []), derive.extra)))
        last_slot = Signal()
        self.comb += last_slot.eq(writing & (slot == total - 1))
        self.sync += If(start_writing, writing.eq(1), slot.eq(0)).Elif(writing,
            slot.eq(slot + 1), If(slot == total - 1, writing.eq(0)))
        write_ack = (host.access & ~host.commit) | last_slot
        self.comb += self.host_busy.eq(start_read | (host_rd != 0) | write_access)
        self.sync += [
            bus.ack.eq(write_ack | host_rd[2]),
            bus.dat_r.eq(Mux(host_rd[2] & read_mapped, q, 0)),
        ]
