"""TableMemory: a table of multi-word entries, written by the host word by word, read by the datapath.

Entry i, word j sits at bus word address i * stride + j (the RegisterMap window layout). Writes of
words j < words-1 go to a staging register; writing word words-1 commits the whole entry at once,
so the datapath never sees a half-written entry.
"""
from __future__ import annotations

from migen import Array, Cat, If, Memory, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone

from synfab.layouts import Layout, _pow2

from .common import record


class TableMemory(LiteXModule):
    """`entries` entries of `layout`; `.bus` for the host, `.rd_adr/.rd_re/.rd_dat` for the datapath.

    Datapath read: synchronous, `rd_dat` shows entry `rd_adr` one cycle after a cycle with `rd_re`
    (default 1); with `rd_re` low the output holds. Bus byte strobes are ignored: tables are written
    in whole words. Unmapped words (j >= words or i >= entries) ack, read 0 and ignore writes.

    `derive` (optional): a module computing values the datapath needs from an entry, stored beside
    it (`rd_extra`) so the datapath never computes them per event. It has `entry` (a Record of the
    layout, in), `start` (in, pulse), `done` (out, pulse) and `extra` (out); the write of an entry's
    last word is acknowledged once `done` has come, and the bus reads only the layout's bits.
    """

    def __init__(self, layout: Layout, entries: int, stride: int | None = None, derive=None):
        self.layout = layout
        self.entries = entries
        self.words = layout.words32
        self.stride = stride if stride is not None else _pow2(self.words)
        if self.stride < self.words or self.stride & (self.stride - 1):
            raise ValueError(f"{layout.name}: stride {self.stride} must be a power of two >= {self.words}")
        stride_bits = (self.stride - 1).bit_length()
        entry_bits = max(1, (entries - 1).bit_length())
        self.bus = wishbone.Interface(data_width=32, adr_width=entry_bits + stride_bits, addressing="word")
        self.rd_adr = Signal(entry_bits)
        self.rd_re = Signal(reset=1)
        self.rd_dat = record(layout)
        extra_width = len(derive.extra) if derive is not None else 0
        self.rd_extra = Signal(max(1, extra_width))
        self.mem = Memory(layout.width + extra_width, entries, name=layout.name)

        # # #

        bus = self.bus
        bus_port = self.mem.get_port(write_capable=True)
        rd_port = self.mem.get_port(has_re=True)
        self.specials += self.mem, bus_port, rd_port

        self.comb += [
            rd_port.adr.eq(self.rd_adr),
            rd_port.re.eq(self.rd_re),
            self.rd_dat.raw_bits().eq(rd_port.dat_r[:layout.width]),
        ]
        if derive is not None:
            self.submodules.derive = derive
            self.comb += self.rd_extra.eq(rd_port.dat_r[layout.width:])

        entry = Signal(entry_bits + 1)
        word = Signal(max(1, stride_bits))
        self.comb += entry.eq(bus.adr[stride_bits:]), word.eq(bus.adr[:stride_bits] if stride_bits else 0)
        mapped = Signal()
        self.comb += mapped.eq((entry < entries) & (word < self.words))

        access = Signal()
        staging = Signal(32 * (self.words - 1)) if self.words > 1 else None
        last_word = self.words - 1
        new_entry = Cat(staging, bus.dat_w)[:layout.width] if staging is not None else bus.dat_w[:layout.width]
        commit = Signal()
        self.comb += commit.eq(access & bus.we & mapped & (word == last_word))
        if derive is None:
            self.comb += access.eq(bus.cyc & bus.stb & ~bus.ack)
            self.sync += bus.ack.eq(access)
            self.comb += [bus_port.adr.eq(entry), bus_port.dat_w.eq(new_entry), bus_port.we.eq(commit)]
        else:
            # The committing write waits (no ack) while the derived values are computed.
            deriving, held = Signal(), Signal(layout.width)
            self.comb += [
                access.eq(bus.cyc & bus.stb & ~bus.ack & ~deriving),
                derive.entry.raw_bits().eq(held),
                bus_port.adr.eq(entry),
                bus_port.dat_w.eq(Cat(held, derive.extra)),
                bus_port.we.eq(deriving & derive.done),
            ]
            self.sync += [
                derive.start.eq(commit),
                If(commit, held.eq(new_entry), deriving.eq(1)).Elif(derive.done, deriving.eq(0)),
                bus.ack.eq((access & ~commit) | (deriving & derive.done)),
            ]
        if staging is not None:
            staged = Array(staging[32 * j:32 * (j + 1)] for j in range(self.words - 1))
            self.sync += If(access & bus.we & mapped & (word < last_word), staged[word].eq(bus.dat_w))

        padded = Signal(32 * self.words)
        self.comb += padded.eq(bus_port.dat_r[:layout.width])
        words = Array(padded[32 * j:32 * (j + 1)] for j in range(self.words))
        self.comb += bus.dat_r.eq(0), If(mapped, bus.dat_r.eq(words[word]))

    def get_port(self, **kwargs):
        """One more port on the table memory (Migen `Memory.get_port` arguments)."""
        port = self.mem.get_port(**kwargs)
        self.specials += port
        return port
