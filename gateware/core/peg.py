"""PEG: the programmable event generator (DESIGN.md, "PEG").

A spike (x, y, c, d) of a source population and the range of output-axon entries to apply
(base, count) come in on `.sink`; every entry is read from `.table` (one per clock) and turned
into at most one packet on `.source`:
  HOST  -> packet(host=1, syn, x, y, c, d)
  DENSE -> packet(dest, syn, x, y, c + chan_off, d, nx=ny=1)
  CONV/DW -> the clipped kernel window of the destination tile, or nothing if it misses the
             tile (DW also: nothing if the channel is outside c0..c1).
Entries at addresses >= n_entries produce nothing. The entries have the fabric's layout
(layouts.FABRIC_LAYOUT_VERSION): each axis its own kernel, stride and padding (x: k, s_log2,
pad; y: k_y, s_log2_y, pad_y), the upsampling up_log2 shared.

Pipeline (every stage moves when the output register is free or being taken, `advance`):
  P0  walk the entry range, one table address per clock
  P1  table read (block RAM)        P2  entry registered; per axis xu = (v << up) + pad, c_in = c + chan_off
  P3  per axis num = xu - k + 2^s, top = xu >> s; the DW channel test
  P4  per axis lo = max(num >> s, t0), hi = min(top, t1)
  P5  per axis rel = lo - t0, n = hi - lo + 1, k_first = xu - (lo << s), hits = lo <= hi
  out the packet register

    sink    in   spikes with their entry range (spike_layout)
    source  out  packets (packet layout)
    table        the output-axon entries (TableMemory, host-written)
    idle    out  nothing in the pipeline
"""
from __future__ import annotations

from migen import Case, If, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream

from synfab.config import FabricConfig
from synfab.layouts import FABRIC_LAYOUT_VERSION, Kind, packet, peg_entry

from ..common import PipeStage, signed_bits
from ..tables import TableMemory


def spike_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """PEG sink payload: one spike and the range of entries to apply (d is signed)."""
    return [("x", cfg.coord_bits), ("y", cfg.coord_bits), ("c", cfg.chan_bits), ("d", cfg.event_bits),
            ("base", cfg.peg_addr_bits), ("count", cfg.peg_addr_bits + 1)]


class _Axis:
    """One axis (x or y) of the CONV/DW window clipping over stages P2..P5 (see the module doc):
    the spike's coordinate v2 and the entry's fields of that axis (kernel k, log2 stride s_log2,
    padding pad, tile t0..t1) and the shared up_log2, all registered at P2."""

    def __init__(self, m, cfg, ce, v2, up_log2, k, s_log2, pad, t0, t1, ax):
        cb, kb = cfg.coord_bits, cfg.kernel_bits
        xu_max = (((1 << cb) - 1) << 3) + (1 << kb) - 1
        sw = signed_bits(-(1 << kb), xu_max + 8)
        # P2 -> P3
        self.xu3 = Signal(xu_max.bit_length(), name=f"xu3_{ax}")
        num = Signal((sw, True))
        m.sync += If(ce, self.xu3.eq((v2 << up_log2) + pad))
        self.s3, self.k3, self.t0_3, self.t1_3 = (Signal(2), Signal(kb), Signal(cb), Signal(cb))
        m.sync += If(ce, self.s3.eq(s_log2), self.k3.eq(k), self.t0_3.eq(t0), self.t1_3.eq(t1))
        # P3 -> P4
        self.num4, self.top4 = Signal((sw, True), name=f"num4_{ax}"), Signal(xu_max.bit_length())
        self.xu4, self.s4, self.t0_4, self.t1_4 = Signal.like(self.xu3), Signal(2), Signal(cb), Signal(cb)
        m.comb += num.eq(self.xu3 - self.k3 + (1 << self.s3))
        m.sync += If(ce, self.num4.eq(num), self.top4.eq(self.xu3 >> self.s3), self.xu4.eq(self.xu3),
                     self.s4.eq(self.s3), self.t0_4.eq(self.t0_3), self.t1_4.eq(self.t1_3))
        # P4 -> P5
        lo_raw = Signal((sw, True))
        m.comb += lo_raw.eq(self.num4 >> self.s4)
        self.lo5, self.hi5 = Signal((sw, True)), Signal((sw, True))
        self.xu5, self.s5, self.t0_5 = Signal.like(self.xu3), Signal(2), Signal(cb)
        m.sync += If(ce,
            self.lo5.eq(lo_raw), If(lo_raw < self.t0_4, self.lo5.eq(self.t0_4)),
            self.hi5.eq(self.top4), If(self.top4 > self.t1_4, self.hi5.eq(self.t1_4)),
            self.xu5.eq(self.xu4), self.s5.eq(self.s4), self.t0_5.eq(self.t0_4),
        )
        # P5 -> out: registered results
        self.hits, self.rel, self.n, self.k_first = Signal(), Signal(cb), Signal(kb), Signal(kb)
        m.sync += If(ce,
            self.hits.eq(self.lo5 <= self.hi5),
            self.rel.eq(self.lo5 - self.t0_5),
            self.n.eq(self.hi5 - self.lo5 + 1),
            self.k_first.eq(self.xu5 - (self.lo5 << self.s5)),
        )


class PEG(LiteXModule):
    """Programmable event generator over a TableMemory of `n_entries` peg_entry words
    (`layout`: peg_entry at the fabric's layout version)."""

    def __init__(self, cfg: FabricConfig, n_entries: int, stride: int | None = None):
        self.cfg = cfg
        self.layout = peg_entry(cfg, FABRIC_LAYOUT_VERSION)
        self.sink = stream.Endpoint(spike_layout(cfg))
        self.source = stream.Endpoint(packet(cfg).migen())
        self.table = TableMemory(self.layout, n_entries, stride)
        self.idle = Signal()

        # # #

        cb, chb, eb = cfg.coord_bits, cfg.chan_bits, cfg.event_bits
        src = self.source
        advance = Signal()
        self.comb += advance.eq(~src.valid | src.ready)

        # P0: walk the entry range, one table address per clock.
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

        # P1 (memory), P2 (entry registered): the spike travels along.
        p1 = PipeStage(self, issue & (idx < n_entries), advance, always=True, x=sx, y=sy, c=sc, d=sd)
        p2 = PipeStage(self, p1.valid, advance, x=p1.x, y=p1.y, c=p1.c, d=p1.d)
        e = self.table.rd_dat
        ax = _Axis(self, cfg, advance, p2.x, e.up_log2, e.k, e.s_log2, e.pad, e.x0, e.x1, "x")
        ay = _Axis(self, cfg, advance, p2.y, e.up_log2, e.k_y, e.s_log2_y, e.pad_y, e.y0, e.y1, "y")
        # The entry fields the packet needs, P3..P5 and the result stage.
        c_in = Signal(chb + 1)
        self.comb += c_in.eq(p2.c + e.chan_off)
        p3 = PipeStage(self, p2.valid, advance, kind=e.kind, dest=e.dest_core, syn=e.syn, x=p2.x, y=p2.y,
                       c=p2.c, d=p2.d, c_in=c_in[:chb], c_in_full=c_in, c0=e.c0, c1=e.c1)
        p4 = PipeStage(self, p3.valid, advance, kind=p3.kind, dest=p3.dest, syn=p3.syn, x=p3.x, y=p3.y,
                       c=p3.c, d=p3.d, c_in=p3.c_in,
                       chan_ok=(p3.kind != Kind.DW) | ((p3.c_in_full >= p3.c0) & (p3.c_in_full <= p3.c1)))
        p5 = PipeStage(self, p4.valid, advance, kind=p4.kind, dest=p4.dest, syn=p4.syn, x=p4.x, y=p4.y,
                       c=p4.c, d=p4.d, c_in=p4.c_in, chan_ok=p4.chan_ok)
        p6 = PipeStage(self, p5.valid, advance, kind=p5.kind, dest=p5.dest, syn=p5.syn, x=p5.x, y=p5.y,
                       c=p5.c, d=p5.d, c_in=p5.c_in, chan_ok=p5.chan_ok)

        # Output register: the packet.
        emit = Signal()
        self.comb += Case(p6.kind, {
            Kind.HOST: emit.eq(p6.valid),
            Kind.DENSE: emit.eq(p6.valid),
            "default": emit.eq(p6.valid & p6.chan_ok & ax.hits & ay.hits),
        })
        window = [src.x.eq(ax.rel), src.y.eq(ay.rel), src.nx.eq(ax.n), src.ny.eq(ay.n),
                  src.kx.eq(ax.k_first), src.ky.eq(ay.k_first), src.c.eq(p6.c_in)]
        self.sync += If(advance,
            src.valid.eq(emit),
            If(emit,
                src.dest.eq(p6.dest), src.syn.eq(p6.syn), src.d.eq(p6.d),
                src.host.eq(0), src.kx.eq(0), src.ky.eq(0),
                Case(p6.kind, {
                    Kind.HOST: [src.host.eq(1), src.x.eq(p6.x), src.y.eq(p6.y), src.c.eq(p6.c),
                                src.nx.eq(0), src.ny.eq(0)],
                    Kind.DENSE: [src.x.eq(p6.x), src.y.eq(p6.y), src.c.eq(p6.c_in), src.nx.eq(1), src.ny.eq(1)],
                    "default": window,
                }),
            ),
        )
        self.comb += src.last.eq(1)

        self.comb += [
            self.idle.eq(~active & ~p1.valid & ~p2.valid & ~p3.valid & ~p4.valid & ~p5.valid & ~p6.valid
                         & ~src.valid),
            # The host reads the table in a clock without an issue and with no read held in the RAM.
            self.table.host_ok.eq(~active & ~p1.valid),
        ]
