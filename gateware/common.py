"""Small helpers shared by the gateware: records, endpoints and bit packing from a synfab Layout.

Layouts are LSB first, like Migen's `Record.raw_bits()`, so a table word and a Record of the same
Layout line up bit for bit.
"""
from __future__ import annotations

from migen import Cat, Constant, Record, Signal
from litex.soc.interconnect import stream

from synfab.layouts import Layout


def bits_for_count(n: int) -> int:
    """Bits of an unsigned signal that holds 0..n (at least 1)."""
    return max(1, int(n).bit_length())


def record(layout: Layout, name: str | None = None) -> Record:
    """A Migen Record with one (unsigned) field per layout field."""
    return Record(layout.migen(), name=name)


def endpoint(layout: Layout | list) -> stream.Endpoint:
    """A LiteX stream endpoint whose payload is `layout` (a synfab Layout or a Migen layout list)."""
    return stream.Endpoint(layout.migen() if isinstance(layout, Layout) else layout)


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
