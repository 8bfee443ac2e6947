"""Small helpers shared by the gateware: records, endpoints and bit packing from a synfab Layout.

Layouts are LSB first, like Migen's `Record.raw_bits()`, so a table word and a Record of the same
Layout line up bit for bit.
"""
from __future__ import annotations

from functools import reduce
from operator import or_

from migen import Cat, Constant, Mux, Record, Signal

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

