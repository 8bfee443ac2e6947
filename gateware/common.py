"""Small helpers shared by the gateware: records, endpoints and bit packing from a synfab Layout.

Layouts are LSB first, like Migen's `Record.raw_bits()`, so a table word and a Record of the same
Layout line up bit for bit.
"""
from __future__ import annotations

from functools import reduce
from operator import or_

from litex.gen import LiteXModule
from litex.soc.interconnect import stream
from migen import READ_FIRST, Cat, Constant, If, Memory, Mux, Record, Signal

from synfab.layouts import Layout


def record(layout: Layout, name: str | None = None) -> Record:
    """A Migen Record with one (unsigned) field per layout field."""
    return Record(layout.migen(), name=name)


def pack(layout: Layout, **values) -> Cat:
    """The layout's bit vector from field expressions; missing fields are zero."""
    unknown = set(values) - set(layout.names)
    if unknown:
        raise ValueError(f"{layout.name}: unknown field(s) {sorted(unknown)}")
    return Cat(*[values[f.name][:f.width] if f.name in values else Constant(0, f.width)
                 for f in layout.fields])


def unpack(layout: Layout, bits) -> dict:
    """Field name -> slice of `bits` (unsigned slices; use `as_signed` for signed fields)."""
    return {f.name: bits[layout.offsets[f.name]:layout.offsets[f.name] + f.width] for f in layout.fields}


def as_signed(module, value) -> Signal:
    """A signed signal of the same width: the two's-complement reading of `value`'s bits."""
    s = Signal((len(value), True))
    module.comb += s.eq(value)
    return s


def signed_bits(lo: int, hi: int) -> int:
    """Width of a signed signal that holds every integer in lo..hi."""
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1):
        n += 1
    return n


def decode_windows(module, master, windows, err_unmapped: bool = False) -> None:
    """Connect a word-addressed wishbone master to slaves at aligned power-of-two windows.

    windows: (base_word, size_words, slave) with base_word a multiple of size_words. An access that
    hits no window completes one clock later with read data 0, as an ack (or err if err_unmapped).
    """
    hits = []
    for base, size, slave in windows:
        if size & (size - 1) or base % size:
            raise ValueError(f"window at word {base:#x} of {size} words is not an aligned power of two")
        size_bits = (size - 1).bit_length()
        hit = Signal()
        module.comb += [
            hit.eq(master.adr[size_bits:] == base >> size_bits),
            slave.adr.eq(master.adr[:size_bits] if size_bits else 0),
            slave.dat_w.eq(master.dat_w),
            slave.sel.eq(master.sel),
            slave.we.eq(master.we),
            slave.cyc.eq(master.cyc & hit),
            slave.stb.eq(master.stb & hit),
        ]
        hits.append((hit, slave))
    miss = Signal()
    miss_done = Signal()
    module.comb += miss.eq(~reduce(or_, [h for h, _ in hits], 0))
    module.sync += miss_done.eq(master.cyc & master.stb & miss & ~miss_done)
    module.comb += [
        master.ack.eq(reduce(or_, [h & s.ack for h, s in hits], 0) | (miss_done & (not err_unmapped))),
        master.err.eq(miss_done if err_unmapped else 0),
        master.dat_r.eq(reduce(or_, [Mux(h, s.dat_r, 0) for h, s in hits], 0)),
    ]


def sync_fifo(layout, depth: int):
    """A stream FIFO that behaves as LiteX's `stream.SyncFIFO(layout, depth)` for a consumer that
    reads the head only with valid: `ZeroHeadSyncFIFO` from depth 2 (LiteX's depth-1 FIFO is a
    pipeline buffer, used as it is)."""
    return ZeroHeadSyncFIFO(layout, depth) if depth >= 2 else stream.SyncFIFO(layout, depth)


class ZeroHeadSyncFIFO(LiteXModule):
    """LiteX `stream.SyncFIFO` (unbuffered, first-word fall-through, depth >= 2), cycle for cycle,
    except that the head's payload, first and last read 0 while the FIFO is empty: a consumer that
    reads them only with valid cannot tell, and the simulation skips unpacking an empty head."""

    def __init__(self, layout, depth: int):
        if depth < 2:
            raise ValueError(f"ZeroHeadSyncFIFO depth {depth}: use depth >= 2 (or sync_fifo)")
        self.sink = sink = stream.Endpoint(layout)
        self.source = source = stream.Endpoint(layout)
        self.depth = depth
        self.level = Signal(max=depth + 1)

        # # #

        fields = [sink.payload.raw_bits(), sink.first, sink.last]
        heads = [source.payload.raw_bits(), source.first, source.last]
        storage = Memory(sum(len(f) for f in fields), depth)
        wrport = storage.get_port(write_capable=True, mode=READ_FIRST)
        rdport = storage.get_port(async_read=True, mode=READ_FIRST)
        self.specials += storage, wrport, rdport
        produce, consume = Signal(max=depth), Signal(max=depth)
        writable, readable, do_write, do_read = Signal(), Signal(), Signal(), Signal()
        self.comb += [
            writable.eq(self.level != depth), readable.eq(self.level != 0),
            do_write.eq(sink.valid & writable), do_read.eq(source.ready & readable),
            sink.ready.eq(writable), source.valid.eq(readable),
            wrport.adr.eq(produce), wrport.dat_w.eq(Cat(*fields)), wrport.we.eq(do_write),
            rdport.adr.eq(consume),
            If(readable, Cat(*heads).eq(rdport.dat_r)),
        ]

        def step(ptr):
            if depth == 1 << len(ptr):
                return ptr.eq(ptr + 1)
            return If(ptr == depth - 1, ptr.eq(0)).Else(ptr.eq(ptr + 1))

        self.sync += [
            If(do_write, step(produce)),
            If(do_read, step(consume)),
            If(do_write, If(~do_read, self.level.eq(self.level + 1)))
            .Elif(do_read, self.level.eq(self.level - 1)),
        ]
