"""ESU: the event-to-synapse unit (DESIGN.md, "ESU").

Packets (from the core's event FIFO) expand into (neuron address, weight, d) pairs, one per clock:

  fetch    pop a packet, read its descriptor (packets with syn >= esu_count, or whose descriptor
           has kind HOST, are dropped and counted)
  setup    three pipelined stages with the per-packet multiplications (once per packet):
             P1 = y*tw + x (DENSE: y*src_w + x)        R1 = cq*k + ky  (cq = c, DW: c - c0)
             P2 = P1*cc + (DW: co)  (DENSE: P1*src_c + c)   R2 = R1*k + kx
             n0 = nbase + P2 (DENSE: nbase)           w0 = wbase + R2*cc (DW: R2; DENSE: P2*cc)
  walker   three nested counters (rows j < ny, columns i < nx, channels co < cc) that step the
           neuron and weight addresses by additions only; a new packet loads on the clock its
           predecessor emits its last pair, so back-to-back packets run without bubbles
  guard    a pair whose neuron or weight address lies outside the memories, or a DW pair whose
           channel lies outside the part (c - c0 not in 0..cc-1), is dropped and counted
  weight   weight memory read (four int8 per 32-bit word, weight i in byte i % 4 of word i // 4),
           or the descriptor's constant weight
Walker addresses are exact (wide enough for any field values), so the guard never sees a wrapped
address. The pair output has no backpressure: the neuron unit takes one pair every clock.
"""
from __future__ import annotations

from migen import Array, Case, If, Mux, Signal
from migen.fhdl.bitcontainer import value_bits_sign
from litex.gen import LiteXModule
from litex.soc.interconnect import stream

from synfab.config import FabricConfig
from synfab.layouts import Field, Kind, Layout, esu_desc, packet

from ..common import PipeStage, signed_bits
from .neuron import pair_layout
from ..tables import TableMemory

MAX_STRIDE_LOG2 = 3  # s_log2 is a 2-bit field


def weight_word(cfg: FabricConfig) -> Layout:
    """One 32-bit word of the weights window: weight 4i+b in byte b (LSB first)."""
    return Layout("weight_word", [Field(f"w{b}", cfg.weight_bits, signed=True) for b in range(4)])


class ESU(LiteXModule):
    def __init__(self, cfg: FabricConfig, esu_stride: int | None = None):
        cb, chb, kb, eb = cfg.coord_bits, cfg.chan_bits, cfg.kernel_bits, cfg.event_bits
        nab = cfg.neuron_addr_bits
        self.cfg = cfg
        self.sink = stream.Endpoint(packet(cfg).migen())
        self.esu_count = Signal(cfg.esu_addr_bits + 1)
        self.table = TableMemory(esu_desc(cfg), cfg.esu_descriptors_per_core, esu_stride)
        self.weights = TableMemory(weight_word(cfg), cfg.weight_words_per_core // 4)
        # Pair output: acc[n] += w * d, one per clock (no backpressure: the neuron unit always takes it).
        self.source = stream.Endpoint(pair_layout(cfg))
        self.dropped = Signal(2)    # packets and pairs dropped this clock (see the guard)
        self.idle = Signal()

        # # #

        # Value ranges of every address term, from the field widths (exact, never wraps).
        kmax, cmax, ccmax = (1 << kb) - 1, (1 << chb) - 1, (1 << (chb + 1)) - 1
        xmax, twmax = (1 << cb) - 1, (1 << (cb + 1)) - 1
        p1_max = xmax * twmax + xmax
        p2_lo, p2_hi = -cmax, p1_max * ccmax + cmax
        r1_lo, r1_hi = -cmax * kmax, cmax * kmax + kmax
        r2_lo, r2_hi = r1_lo * kmax, r1_hi * kmax + kmax
        xm_lo, xm_hi = min(p2_lo, r2_lo) * ccmax, max(p2_hi, r2_hi) * ccmax
        kcc_max, twcc_max = kmax * ccmax, twmax * ccmax
        n_lo, n_hi = p2_lo, (1 << nab) + p2_hi + ccmax + kmax * ccmax + kmax * twcc_max
        w_lo = xm_lo - kmax * (ccmax << MAX_STRIDE_LOG2) - kmax * (kcc_max << MAX_STRIDE_LOG2)
        w_hi = (1 << cfg.weight_addr_bits) + xm_hi + ccmax
        n_bits, w_bits = signed_bits(n_lo, n_hi), signed_bits(w_lo, w_hi)

        # Walker interface (defined first: it drives the setup pipeline's clock enables).
        active = Signal()
        last_pair = Signal()
        load = Signal()

        # ---- fetch: pop a packet and read its descriptor (moves whenever setup 1 loads) ----
        setup1_ce, setup2_ce, setup3_ce = Signal(), Signal(), Signal()
        pk = self.sink
        syn_ok = Signal()
        self.comb += [
            syn_ok.eq((pk.syn < self.esu_count) & (pk.syn < cfg.esu_descriptors_per_core)),
            pk.ready.eq(setup1_ce),
            self.table.rd_adr.eq(pk.syn),
            self.table.rd_re.eq(setup1_ce),
        ]
        f = PipeStage(self, pk.valid & syn_ok, setup1_ce, x=pk.x, y=pk.y, nx=pk.nx, ny=pk.ny, kx=pk.kx,
                   ky=pk.ky, c=pk.c, d=pk.d)
        e = self.table.rd_dat

        # ---- setup 1: P1 = y*A + x, R1 = cq*k + ky, k*cc, tw*cc ----
        is_dense, is_dw = e.kind == Kind.DENSE, e.kind == Kind.DW
        cq = Signal((chb + 2, True))
        co = Signal((chb + 2, True))
        p1 = Signal(p1_max.bit_length())
        r1 = Signal((signed_bits(r1_lo, r1_hi), True))
        self.comb += [
            co.eq(f.c - e.c0),
            cq.eq(Mux(is_dw, co, f.c)),
            p1.eq(f.y * Mux(is_dense, e.src_w, e.tw) + f.x),
            r1.eq(cq * e.k + f.ky),
        ]
        p2_add = Signal((chb + 2, True))
        self.comb += Case(e.kind, {Kind.DENSE: p2_add.eq(f.c), Kind.DW: p2_add.eq(co), "default": p2_add.eq(0)})
        chan_ok = Signal()
        self.comb += chan_ok.eq(~is_dw | ((co >= 0) & (co < e.cc)))
        known_kind = Signal()
        self.comb += known_kind.eq(e.kind != Kind.HOST)
        s1 = PipeStage(self, f.valid & known_kind, setup1_ce,
                    p1=p1, r1=r1, p2_add=p2_add, chan_ok=chan_ok, p1_mult=Mux(is_dense, e.src_c, e.cc),
                    kcc=e.k * e.cc, twcc=e.tw * e.cc,
                    kind=e.kind, wconst=e.wconst, wval=e.wval, k=e.k, s_log2=e.s_log2, cc=e.cc,
                    nbase=e.nbase, wbase=e.wbase, kx=f.kx, nx=f.nx, ny=f.ny, d=f.d)

        # ---- setup 2: P2 = P1*B + addend, R2 = R1*k + kx, address steps ----
        p2 = Signal((signed_bits(p2_lo, p2_hi), True))
        r2 = Signal((signed_bits(r2_lo, r2_hi), True))
        sm_w = Signal((signed_bits(-(ccmax << MAX_STRIDE_LOG2), 0), True))
        so_w = Signal((signed_bits(-(kcc_max << MAX_STRIDE_LOG2), 0), True))
        conv1 = s1.kind == Kind.CONV
        # Unsigned products and shifts get their own full-width signals before meeting a signed
        # operand: Verilog would otherwise size them self-determined (inside $signed({1'b0, ...})).
        p1_prod = Signal(len(s1.p1) + len(s1.p1_mult))
        step_c = Signal(len(s1.cc) + MAX_STRIDE_LOG2)
        step_k = Signal(len(s1.kcc) + MAX_STRIDE_LOG2)
        self.comb += [
            p1_prod.eq(s1.p1 * s1.p1_mult),
            p2.eq(p1_prod + s1.p2_add),
            r2.eq(s1.r1 * s1.k + s1.kx),
            step_c.eq(Mux(conv1, s1.cc, 1) << s1.s_log2),
            step_k.eq(Mux(conv1, s1.kcc, s1.k) << s1.s_log2),
            sm_w.eq(-step_c),
            so_w.eq(-step_k),
        ]
        s2 = PipeStage(self, s1.valid, setup2_ce, p2=p2, r2=r2, chan_ok=s1.chan_ok, sm_w=sm_w, so_w=so_w,
                    sm_n=s1.cc, so_n=s1.twcc, kind=s1.kind, wconst=s1.wconst, wval=s1.wval, cc=s1.cc,
                    nbase=s1.nbase, wbase=s1.wbase, nx=s1.nx, ny=s1.ny, d=s1.d)

        # ---- setup 3: start addresses and loop counts ----
        dense2, dw2 = s2.kind == Kind.DENSE, s2.kind == Kind.DW
        n0 = Signal((n_bits, True))
        w0 = Signal((w_bits, True))
        x_term = Signal((len(s2.p2) + len(s2.r2), True))
        self.comb += [
            n0.eq(s2.nbase + Mux(dense2, 0, s2.p2)),
            x_term.eq(Mux(dense2, s2.p2, s2.r2)),
            w0.eq(s2.wbase + x_term * Mux(dw2, 1, s2.cc)),
        ]
        s3 = PipeStage(self, s2.valid, setup3_ce, n0=n0, w0=w0, sm_w=s2.sm_w, so_w=s2.so_w,
                    sm_n=s2.sm_n, so_n=s2.so_n,
                    inner=Mux(dw2, 1, s2.cc), mid=Mux(dense2, 1, s2.nx), outer=Mux(dense2, 1, s2.ny),
                    chan_ok=s2.chan_ok, wconst=s2.wconst, wval=s2.wval, d=s2.d)

        # A stage advances when the next one does or when it is empty.
        self.comb += [
            load.eq(s3.valid & (~active | last_pair)),
            setup3_ce.eq(~s3.valid | load),
            setup2_ce.eq(~s2.valid | setup3_ce),
            setup1_ce.eq(~s1.valid | setup2_ce),
        ]

        # ---- walker: one pair per clock ----
        inner_n, mid_n, outer_n = Signal(chb + 1), Signal(kb), Signal(kb)
        ci, i, j = Signal(chb + 1), Signal(kb), Signal(kb)
        n_cur, n_pix, n_row = (Signal((n_bits, True)) for _ in range(3))
        w_cur, w_pix, w_row = (Signal((w_bits, True)) for _ in range(3))
        sm_n_r, so_n_r, sm_w_r, so_w_r = (Signal.like(v) for v in (s3.sm_n, s3.so_n, s3.sm_w, s3.so_w))
        wconst, wval, d, chan_ok_w = Signal(), Signal((cfg.weight_bits, True)), Signal((eb, True)), Signal()
        last_inner, last_mid, last_outer = Signal(), Signal(), Signal()
        self.comb += [
            last_inner.eq(ci == inner_n - 1),
            last_mid.eq(i == mid_n - 1),
            last_outer.eq(j == outer_n - 1),
            last_pair.eq(active & last_inner & last_mid & last_outer),
        ]
        self.sync += [
            If(active,
                If(~last_inner,
                    ci.eq(ci + 1), n_cur.eq(n_cur + 1), w_cur.eq(w_cur + 1),
                ).Elif(~last_mid,
                    ci.eq(0), i.eq(i + 1),
                    n_pix.eq(n_pix + sm_n_r), n_cur.eq(n_pix + sm_n_r),
                    w_pix.eq(w_pix + sm_w_r), w_cur.eq(w_pix + sm_w_r),
                ).Elif(~last_outer,
                    ci.eq(0), i.eq(0), j.eq(j + 1),
                    n_row.eq(n_row + so_n_r), n_pix.eq(n_row + so_n_r), n_cur.eq(n_row + so_n_r),
                    w_row.eq(w_row + so_w_r), w_pix.eq(w_row + so_w_r), w_cur.eq(w_row + so_w_r),
                ).Else(
                    active.eq(0),
                ),
            ),
            If(load,
                active.eq((s3.inner != 0) & (s3.mid != 0) & (s3.outer != 0)),
                inner_n.eq(s3.inner), mid_n.eq(s3.mid), outer_n.eq(s3.outer),
                ci.eq(0), i.eq(0), j.eq(0),
                n_cur.eq(s3.n0), n_pix.eq(s3.n0), n_row.eq(s3.n0),
                w_cur.eq(s3.w0), w_pix.eq(s3.w0), w_row.eq(s3.w0),
                sm_n_r.eq(s3.sm_n), so_n_r.eq(s3.so_n), sm_w_r.eq(s3.sm_w), so_w_r.eq(s3.so_w),
                wconst.eq(s3.wconst), wval.eq(s3.wval), d.eq(s3.d), chan_ok_w.eq(s3.chan_ok),
            ),
        ]

        # ---- guard and weight read ----
        in_range = Signal()
        self.comb += [
            in_range.eq(chan_ok_w & (n_cur >= 0) & (n_cur < cfg.neurons_per_core)
                        & (wconst | ((w_cur >= 0) & (w_cur < cfg.weight_words_per_core)))),
            self.dropped.eq((pk.valid & pk.ready & ~syn_ok) + (setup1_ce & f.valid & ~known_kind)
                            + (active & ~in_range)),
            self.weights.rd_adr.eq(w_cur[2:]),
        ]
        bsel = Signal(2)
        p_wconst, p_wval = Signal(), Signal((cfg.weight_bits, True))
        self.sync += [
            self.source.valid.eq(active & in_range),
            # The pair registers are only read with valid: they load only while walking.
            If(active, self.source.n.eq(n_cur), bsel.eq(w_cur[:2]), p_wconst.eq(wconst), p_wval.eq(wval),
               self.source.d.eq(d)),
        ]
        wd = self.weights.rd_dat
        byte = Array([wd.w0, wd.w1, wd.w2, wd.w3])[bsel]
        self.comb += self.source.w.eq(Mux(p_wconst, p_wval, byte))

        self.comb += self.idle.eq(~f.valid & ~s1.valid & ~s2.valid & ~s3.valid & ~active & ~self.source.valid)
