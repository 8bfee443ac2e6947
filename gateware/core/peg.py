"""PEG: the programmable event generator (DESIGN.md, "PEG").

A spike (x, y, c, d) of a source population and the range of output-axon entries to apply
(base, count) come in on `.sink`; every entry is read from `.table` (one per clock) and turned
into at most one packet on `.source`:
  HOST  -> packet(host=1, syn, x, y, c, d)
  DENSE -> packet(dest, syn, x, y, c + chan_off, d, nx=ny=1)
  CONV/DW -> the clipped kernel window of the destination tile, or nothing if it misses the
             tile (DW also: nothing if the channel is outside c0..c1).
Entries at addresses >= n_entries produce nothing.
"""
from __future__ import annotations

from migen import Case, If, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream

from synfab.config import FabricConfig
from synfab.layouts import Kind, packet, peg_entry

from ..common import signed_bits
from ..tables import TableMemory


def spike_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """PEG sink payload: one spike and the range of entries to apply (d is signed)."""
    return [("x", cfg.coord_bits), ("y", cfg.coord_bits), ("c", cfg.chan_bits), ("d", cfg.event_bits),
            ("base", cfg.peg_addr_bits), ("count", cfg.peg_addr_bits + 1)]


class _Axis:
    """One axis (x or y) of the CONV/DW window clipping, split over two pipeline stages.

    Stage 1: xu = (v << up_log2) + pad; lo = max(floor((xu - k + 2^s) / 2^s), t0); hi = min(xu >> s, t1).
    Stage 2: rel = lo - t0; n = hi - lo + 1; k_first = xu - (lo << s); hits = lo <= hi.
    """

    def __init__(self, m, cfg, ce, v, e, t0, t1):
        cb, kb = cfg.coord_bits, cfg.kernel_bits
        xu_max = (((1 << cb) - 1) << 3) + (1 << kb) - 1
        xu = Signal(xu_max.bit_length())
        sw = signed_bits(-(1 << kb), xu_max + 8)
        num = Signal((sw, True))            # xu - k + 2^s
        lo_raw = Signal((sw, True))         # floor(num / 2^s)
        m.comb += [
            xu.eq((v << e.up_log2) + e.pad),
            num.eq(xu - e.k + (1 << e.s_log2)),
            lo_raw.eq(num >> e.s_log2),
        ]
        self.xu = Signal.like(xu)
        self.lo = Signal((sw, True))
        self.hi = Signal((sw, True))
        self.t0 = Signal(cb)
        m.sync += If(ce,
            self.xu.eq(xu),
            self.lo.eq(lo_raw),
            If(lo_raw < t0, self.lo.eq(t0)),
            self.hi.eq(xu >> e.s_log2),
            If((xu >> e.s_log2) > t1, self.hi.eq(t1)),
            self.t0.eq(t0),
        )
        self.s_log2 = Signal(2)
        m.sync += If(ce, self.s_log2.eq(e.s_log2))
        # Stage 2 (combinational from the stage-1 registers).
        self.hits = Signal()
        self.rel = Signal(cb)
        self.n = Signal(kb)
        self.k_first = Signal(kb)
        m.comb += [
            self.hits.eq(self.lo <= self.hi),
            self.rel.eq(self.lo - self.t0),
            self.n.eq(self.hi - self.lo + 1),
            self.k_first.eq(self.xu - (self.lo << self.s_log2)),
        ]


class PEG(LiteXModule):
    """Programmable event generator over a TableMemory of `n_entries` peg_entry words."""

    def __init__(self, cfg: FabricConfig, n_entries: int, stride: int | None = None):
        self.cfg = cfg
        self.sink = stream.Endpoint(spike_layout(cfg))
        self.source = stream.Endpoint(packet(cfg).migen())
        self.table = TableMemory(peg_entry(cfg), n_entries, stride)
        self.idle = Signal()

        # # #

        cb, chb, eb = cfg.coord_bits, cfg.chan_bits, cfg.event_bits
        src = self.source
        # Every stage moves together when the output register is free or being taken.
        advance = Signal()
        self.comb += advance.eq(~src.valid | src.ready)

        # Stage 0: walk the entry range, one table read per clock.
        active = Signal()
        idx = Signal(cfg.peg_addr_bits + 2)    # base + count never wraps
        remaining = Signal(cfg.peg_addr_bits + 1)
        sx, sy, sc, sd = Signal(cb), Signal(cb), Signal(chb), Signal(eb)
        issue = Signal()
        self.comb += [
            issue.eq(active & advance),
            self.sink.ready.eq(advance & (~active | (remaining == 1))),
            self.table.rd_adr.eq(idx),
            self.table.rd_re.eq(advance),
        ]
        self.sync += [
            If(issue,
                idx.eq(idx + 1),
                remaining.eq(remaining - 1),
                If(remaining == 1, active.eq(0)),
            ),
            If(self.sink.valid & self.sink.ready,
                active.eq(self.sink.count != 0),
                idx.eq(self.sink.base),
                remaining.eq(self.sink.count),
                sx.eq(self.sink.x), sy.eq(self.sink.y), sc.eq(self.sink.c), sd.eq(self.sink.d),
            ),
        ]

        # Stage 1: the entry is on the table output.
        v1, v1_in = Signal(), Signal()
        x1, y1, c1, d1 = Signal(cb), Signal(cb), Signal(chb), Signal(eb)
        self.comb += v1_in.eq(issue & (idx < n_entries))
        # Data registers load only with a valid entry: nothing reads them otherwise.
        self.sync += If(advance,
            v1.eq(v1_in),
            If(v1_in, x1.eq(sx), y1.eq(sy), c1.eq(sc), d1.eq(sd)),
        )
        e = self.table.rd_dat
        c_in = Signal(chb + 1)
        self.comb += c_in.eq(c1 + e.chan_off)
        ax = _Axis(self, cfg, advance & v1, x1, e, e.x0, e.x1)
        ay = _Axis(self, cfg, advance & v1, y1, e, e.y0, e.y1)

        # Stage 2: registers of the entry fields the packet needs.
        v2 = Signal()
        kind2 = Signal(2)
        dest2, syn2 = Signal(cfg.core_bits), Signal(cfg.esu_addr_bits)
        x2, y2, c2, d2 = Signal(cb), Signal(cb), Signal(chb), Signal(eb)
        cin2 = Signal(chb)
        chan_ok2 = Signal()
        self.sync += If(advance,
            v2.eq(v1),
            If(v1,
                kind2.eq(e.kind), dest2.eq(e.dest_core), syn2.eq(e.syn),
                x2.eq(x1), y2.eq(y1), c2.eq(c1), d2.eq(d1), cin2.eq(c_in),
                chan_ok2.eq((e.kind != Kind.DW) | ((c_in >= e.c0) & (c_in <= e.c1))),
            ),
        )

        # Output register: the packet.
        emit = Signal()
        self.comb += Case(kind2, {
            Kind.HOST: emit.eq(v2),
            Kind.DENSE: emit.eq(v2),
            "default": emit.eq(v2 & chan_ok2 & ax.hits & ay.hits),
        })
        window = [src.x.eq(ax.rel), src.y.eq(ay.rel), src.nx.eq(ax.n), src.ny.eq(ay.n),
                  src.kx.eq(ax.k_first), src.ky.eq(ay.k_first), src.c.eq(cin2)]
        self.sync += If(advance,
            src.valid.eq(emit),
            If(emit,
                src.dest.eq(dest2), src.syn.eq(syn2), src.d.eq(d2),
                src.host.eq(0), src.kx.eq(0), src.ky.eq(0),
                Case(kind2, {
                    Kind.HOST: [src.host.eq(1), src.x.eq(x2), src.y.eq(y2), src.c.eq(c2),
                                src.nx.eq(0), src.ny.eq(0)],
                    Kind.DENSE: [src.x.eq(x2), src.y.eq(y2), src.c.eq(cin2), src.nx.eq(1), src.ny.eq(1)],
                    "default": window,
                }),
            ),
        )
        self.comb += src.last.eq(1)

        self.comb += self.idle.eq(~active & ~v1 & ~v2 & ~src.valid)
