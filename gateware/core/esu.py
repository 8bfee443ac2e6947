"""ESU: the event-to-synapse unit (DESIGN.md, "ESU").

Packets (from the core's event FIFO) expand into (neuron address, weight, d) pairs, one per clock:

  fetch    take a packet and read its descriptor (packets with syn >= esu_count, or whose
           descriptor has kind HOST, are dropped and counted); F1 table read, F2 registered
  setup    the per-packet address arithmetic, one operation kind per stage so every multiply
           (block DSP) has registered inputs and outputs (kernel kh x kw: k_y x k; strides
           sy = 2^s_log2_y, sx = 2^s_log2):
             S1  cq = c (DW: c - c0), A = tw (DENSE: src_w), kh*kw, kw*cc  (4-bit multiplies in LUTs)
             S2  y*A, cq*kh*kw, ky*kw, tw*cc
             S3  P1 = y*A + x                 R = cq*kh*kw + ky*kw + kx   (= (cq*kh + ky)*kw + kx)
             S4  P1 * B  (B = cc, DENSE: src_c)
             S5  P2 = P1*B + (DW: co, DENSE: c)
             S6  X = (DENSE: P2, else R) * (DW: 1, else cc): two DSP products, summed a stage later
             S7  n0 = nbase + P2 (DENSE: nbase), w0 = wbase + X, loop counts and address steps
                 (a column: weights - sx*cc (DW: sx), a row: weights - sy*kw*cc (DW: sy*kw))
           A packet enters only when the walker FIFO has room for everything in the setup
           stages (credits), so the setup pipeline never stalls.
  walker   three nested down-counters (rows, columns, channels) that step the neuron and weight
           addresses by additions only; a new packet loads on the clock its predecessor emits its
           last pair, so back-to-back packets run without bubbles. With P lanes
           (FabricConfig.lanes) the channel counter steps by P: lane l is channel ci - l (neuron
           n + l, weight w + l), so a conv or dense connection emits up to P pairs per clock. A DW
           one (its inner loop is one channel) takes the columns of a kernel row P at a time instead
           (column lanes: lane l is column i - l, neuron n + l*cc, weight w - l) when its part's
           channel count cc is odd (the columns' neurons then lie in distinct banks) and its column
           stride is 1 or its weight constant (the weights are then P consecutive bytes, or none);
           otherwise one pair per clock
  lanes    each lane's neuron and weight address and its guard's verdict, registered (L1)
  guard    a pair whose neuron or weight address lies outside the memories, or a DW pair whose
           channel lies outside the part (c - c0 not in 0..cc-1), is dropped and counted (tested
           on the walker's registers into L1's flags, so G1 starts from flip-flops)
  weight   weight memory read (four int8 per 32-bit word, weight i in byte i % 4 of word i // 4;
           block RAM, registered), or the descriptor's constant weight; the pair (with the
           descriptor's weight shift, applied by the neuron unit) leaves registered. With P > 1
           lanes the words are in NB banks (WeightBanks) read together, each lane's byte picked
           from them (a rotation: unaligned starts cost nothing), and the pairs leave per neuron
           bank (pair_layout): each lane goes to the bank of its neuron (n % P)
Walker addresses are exact (wide enough for any field values), so the guard never sees a wrapped
address. The pair output has no backpressure: the neuron unit takes one pair every clock.

    sink       in   packets (packet layout) from the core's event FIFO
    source     out  pairs to the neuron unit (pair_layout: per neuron bank on, a, w; shared d and ws,
                    the weight shift), up to P per clock
    esu_count  in   descriptors in use
    table           synapse-type descriptors (TableMemory, host-written)
    weights         kernel slices, four int8 per word (WeightBanks of TableMemory, host-written)
    dropped    out  packets and pairs dropped this clock (0..P+2)
    idle       out  nothing in flight
"""
from __future__ import annotations

from migen import Array, Case, Constant, If, Mux, Signal
from migen.fhdl.bitcontainer import value_bits_sign
from litex.gen import LiteXModule, Reduce
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import (FABRIC_LAYOUT_VERSION, WSHIFT_BITS, Field, Kind, Layout, column_lane_stride_ok, esu_desc,
                            packet, weight_banks as layout_weight_banks)

from ..common import PipeStage, combine_split, product, signed_bits, small_multiply, split_multiply, sync_fifo
from ..tables import TableMemory
from .neuron import bank_bits, lane_bits, pair_layout

MAX_STRIDE_LOG2 = 3      # s_log2 is a 2-bit field
# A core's weights span many block RAMs (32 at 65536 words), spread over the RAM rows: the read
# gets a third register (TableMemory latency) so no path crosses that distance from a RAM output.
WEIGHT_READ_LATENCY = 3
WALK_FIFO_DEPTH = 16     # set-up packets waiting for the walker (>= setup latency + 1 for full rate)


def weight_word(cfg: FabricConfig) -> Layout:
    """One 32-bit word of the weights window: weight 4i+b in byte b (LSB first)."""
    return Layout("weight_word", [Field(f"w{b}", cfg.weight_bits, signed=True) for b in range(4)])


def weight_banks(cfg: FabricConfig) -> int:
    """Weight memory banks of cfg's cores (layouts.weight_banks)."""
    return layout_weight_banks(cfg.lanes)


class WeightBanks(LiteXModule):
    """The weight memory as NB banks of words (word k in bank k % NB at bank address k // NB), each
    a TableMemory: one read of NB consecutive words per clock, from any word, for the lanes.

        bus       in   host window of the weight words (word k at bus word k)
        word      in   the first word to read (signed; its bits beyond the memory are ignored)
        rd_dat    out  per bank the word (weight_word Record), WEIGHT_READ_LATENCY clocks later: bank
                       j holds the word of word..word+NB-1 that is j modulo NB
        host_ok   in   the datapath leaves the read ports free this clock
    """

    def __init__(self, cfg: FabricConfig):
        nb = weight_banks(cfg)
        self.bank_bits = nbb = (nb - 1).bit_length()
        words = cfg.weight_words_per_core // 4
        self.banks = [TableMemory(weight_word(cfg), -(-words // nb), latency=WEIGHT_READ_LATENCY)
                      for _ in range(nb)]
        self.bus = self.banks[0].bus if nb == 1 else wishbone.Interface(
            data_width=32, adr_width=len(self.banks[0].bus.adr) + nbb, addressing="word")
        self.word = Signal((_Ranges(cfg).w_bits, True))
        self.rd_dat = [t.rd_dat for t in self.banks]
        self.host_ok = Signal(reset=1)

        # # #

        for j, t in enumerate(self.banks):
            self.submodules += t
            self.comb += t.host_ok.eq(self.host_ok)
            if nb == 1:
                self.comb += t.rd_adr.eq(self.word)
                continue
            hi = Signal((len(self.word), True))
            self.comb += [
                hi.eq(self.word >> nbb),
                t.rd_adr.eq(hi + (self.word[:nbb] > j)),
                t.bus.adr.eq(self.bus.adr[nbb:]), t.bus.dat_w.eq(self.bus.dat_w), t.bus.sel.eq(self.bus.sel),
                t.bus.we.eq(self.bus.we), t.bus.cyc.eq(self.bus.cyc & (self.bus.adr[:nbb] == j)),
                t.bus.stb.eq(self.bus.stb & (self.bus.adr[:nbb] == j)),
            ]
        if nb > 1:
            self.comb += [
                self.bus.ack.eq(Reduce("OR", [t.bus.ack for t in self.banks])),
                # A bank's slice holds its last answer: only the answering bank's counts.
                self.bus.dat_r.eq(Reduce("OR", [Mux(t.bus.ack, t.bus.dat_r, 0) for t in self.banks])),
            ]


class _Ranges:
    """Exact value ranges of every address term, from the field widths (the walker never wraps)."""

    def __init__(self, cfg: FabricConfig):
        cb, chb, kb = cfg.coord_bits, cfg.chan_bits, cfg.kernel_bits
        kmax, cmax, ccmax = (1 << kb) - 1, (1 << chb) - 1, (1 << (chb + 1)) - 1
        xmax, twmax = (1 << cb) - 1, (1 << (cb + 1)) - 1
        self.p1_max = xmax * twmax + xmax
        self.p2_lo, self.p2_hi = -cmax, self.p1_max * ccmax + cmax
        self.r_lo, self.r_hi = -cmax * kmax * kmax, cmax * kmax * kmax + kmax * kmax + kmax
        self.x_lo, self.x_hi = min(self.p2_lo, self.r_lo), max(self.p2_hi, self.r_hi)
        xm_lo, xm_hi = self.x_lo * ccmax, self.x_hi * ccmax
        kcc_max, twcc_max = kmax * ccmax, twmax * ccmax
        self.kcc_max, self.twcc_max = kcc_max, twcc_max
        n_lo, n_hi = self.p2_lo, (1 << cfg.neuron_addr_bits) + self.p2_hi + ccmax + kmax * ccmax + kmax * twcc_max
        w_lo = xm_lo - kmax * (ccmax << MAX_STRIDE_LOG2) - kmax * (kcc_max << MAX_STRIDE_LOG2)
        w_hi = (1 << cfg.weight_addr_bits) + xm_hi + ccmax
        self.n_bits, self.w_bits = signed_bits(n_lo, n_hi), signed_bits(w_lo, w_hi)


def walk_layout(cfg: FabricConfig, r: _Ranges) -> list[tuple[str, int]]:
    """A set-up packet: start addresses, address steps and loop counts (signed values as bits)."""
    chb, kb = cfg.chan_bits, cfg.kernel_bits
    return [
        ("n0", r.n_bits), ("w0", r.w_bits),
        ("sm_n", chb + 1), ("so_n", r.twcc_max.bit_length()),
        ("sm_w", signed_bits(-((1 << (chb + 1)) << MAX_STRIDE_LOG2), 0)),
        ("so_w", signed_bits(-(r.kcc_max << MAX_STRIDE_LOG2), 0)),
        ("inner", chb + 1), ("mid", kb), ("outer", kb),
        ("chan_ok", 1), ("wconst", 1), ("wval", cfg.weight_bits), ("d", cfg.event_bits), ("ws", WSHIFT_BITS),
        ("cols", 1), ("sx_log2", 2),
    ]


class ESU(LiteXModule):
    """The event-to-synapse unit (module doc); `layout` is esu_desc at the fabric's layout version."""

    def __init__(self, cfg: FabricConfig, esu_stride: int | None = None):
        cb, chb, kb, eb = cfg.coord_bits, cfg.chan_bits, cfg.kernel_bits, cfg.event_bits
        P, lg = cfg.lanes, lane_bits(cfg)
        self.cfg = cfg
        self.layout = esu_desc(cfg, FABRIC_LAYOUT_VERSION)
        self.sink = stream.Endpoint(packet(cfg).migen())
        self.esu_count = Signal(cfg.esu_addr_bits + 1)
        self.table = TableMemory(self.layout, cfg.esu_descriptors_per_core, esu_stride)
        self.weights = WeightBanks(cfg)
        # Pair output: acc[n] += w * d, one per clock (no backpressure: the neuron unit always takes it).
        self.source = stream.Endpoint(pair_layout(cfg))
        self.dropped = Signal(max=P + 3)
        self.idle = Signal()

        # # #

        rng = _Ranges(cfg)
        self.walk = walk = sync_fifo(walk_layout(cfg, rng), WALK_FIFO_DEPTH)

        # ---- fetch ----
        pk = self.sink
        in_setup = Signal(max=WALK_FIFO_DEPTH + 1)
        credit = Signal()
        syn_ok, take, enter, host_drop = Signal(), Signal(), Signal(), Signal()
        # Registered, with a margin of two for the packets taken while it is being computed.
        # Registered, with a margin of three: the packets taken while it is being computed, and the
        # one counted a clock late (in_setup counts packets from F1 on).
        self.sync += credit.eq(in_setup + walk.level + 3 < WALK_FIFO_DEPTH)
        self.comb += [
            pk.ready.eq(credit),
            take.eq(pk.valid & pk.ready),
            syn_ok.eq((pk.syn < self.esu_count) & (pk.syn < cfg.esu_descriptors_per_core)),
            self.table.rd_adr.eq(pk.syn),
        ]
        fields = dict(x=pk.x, y=pk.y, nx=pk.nx, ny=pk.ny, kx=pk.kx, ky=pk.ky, c=pk.c, d=pk.d)
        # The descriptor index is checked a clock later, from registers (the FIFO head is LUT RAM).
        f1 = PipeStage(self, take, syn_ok=syn_ok, **fields)
        self.comb += enter.eq(f1.valid & f1.syn_ok)
        f2 = PipeStage(self, enter, **{k: getattr(f1, k) for k in fields})
        e = self.table.rd_dat
        known = Signal()
        self.comb += known.eq(e.kind != Kind.HOST)

        # ---- setup ----
        dense, dw = e.kind == Kind.DENSE, e.kind == Kind.DW
        co = Signal((chb + 2, True))
        self.comb += co.eq(f2.c - e.c0)
        # k is the kernel width kw, k_y its height kh; s_log2 / s_log2_y the column / row strides.
        desc = dict(kind=e.kind, wconst=e.wconst, wval=e.wval, k=e.k, s_log2=e.s_log2, s_log2_y=e.s_log2_y,
                    ws=e.wshift, cc=e.cc, tw=e.tw, nbase=e.nbase, wbase=e.wbase, src_c=e.src_c)
        pkt = dict(x=f2.x, nx=f2.nx, ny=f2.ny, kx=f2.kx, ky=f2.ky, c=f2.c, d=f2.d)
        # Data registers that load every clock (always=True) where valid_in is a compare: the compare
        # then reaches one flip-flop, not the clock enables of a whole stage (the 2x2's critical paths).
        s1 = PipeStage(self, f2.valid & known, always=True, **desc, **pkt, y=f2.y, co=co, cq=Mux(dw, co, f2.c),
                       A=Mux(dense, e.src_w, e.tw),
                       kk=small_multiply(self, e.k_y, e.k), kcc=small_multiply(self, e.cc, e.k))

        def carry(stage, *names):
            return {n: getattr(stage, n) for n in names}
        base = ("kind", "wconst", "wval", "k", "s_log2", "s_log2_y", "ws", "cc", "nbase", "wbase", "src_c", "nx",
                "ny", "d")
        cq_s, co_s = Signal((chb + 2, True)), Signal((chb + 2, True))
        kk_s = Signal((2 * kb + 1, True))
        self.comb += cq_s.eq(s1.cq), co_s.eq(s1.co), kk_s.eq(s1.kk)
        s2 = PipeStage(self, s1.valid, **carry(s1, *base, "x", "kx", "c", "co", "kcc"),
                       ya=product(s1.y, s1.A), cqkk=product(cq_s, kk_s), kyk=small_multiply(self, s1.k, s1.ky),
                       twcc=product(s1.tw, s1.cc),
                       chan_ok=(s1.kind != Kind.DW) | ((co_s >= 0) & (co_s < s1.cc)))
        cqkk_s = Signal((len(s2.cqkk), True))
        self.comb += cqkk_s.eq(s2.cqkk)
        s3 = PipeStage(self, s2.valid, **carry(s2, *base, "c", "co", "kcc", "twcc", "chan_ok"),
                       p1=s2.ya + s2.x, r=cqkk_s + s2.kyk + s2.kx)
        s4 = PipeStage(self, s3.valid, **carry(s3, *base, "c", "co", "kcc", "twcc", "chan_ok", "r"),
                       p1b=product(s3.p1, Mux(s3.kind == Kind.DENSE, s3.src_c, s3.cc)))
        co4 = Signal((chb + 2, True))
        self.comb += co4.eq(s4.co)
        p2_add = Signal((chb + 2, True))
        self.comb += Case(s4.kind, {Kind.DENSE: p2_add.eq(s4.c), Kind.DW: p2_add.eq(co4), "default": p2_add.eq(0)})
        p2 = Signal((signed_bits(rng.p2_lo, rng.p2_hi), True))
        self.comb += p2.eq(s4.p1b + p2_add)
        s5 = PipeStage(self, s4.valid, **carry(s4, *base, "kcc", "twcc", "chan_ok", "r"), p2=p2)
        x_term = Signal((signed_bits(rng.x_lo, rng.x_hi), True))
        r5 = Signal((len(s5.r), True))
        self.comb += r5.eq(s5.r), x_term.eq(Mux(s5.kind == Kind.DENSE, s5.p2, r5))
        later = (*base, "kcc", "twcc", "chan_ok", "p2")
        s5b = PipeStage(self, s5.valid, **carry(s5, *later), xt=x_term, xmul=Mux(s5.kind == Kind.DW, 1, s5.cc))
        # X = xt * xmul: xt is up to ~31 bits, so as two DSP products summed in the next stage.
        xt_s = Signal((len(s5b.xt), True))
        self.comb += xt_s.eq(s5b.xt)
        lo, hi = split_multiply(self, xt_s, s5b.xmul)
        s5c = PipeStage(self, s5b.valid, **carry(s5b, *later), x_lo=lo, x_hi=hi)
        s6 = PipeStage(self, s5c.valid, **carry(s5c, *later), xm=combine_split(self, s5c.x_lo, s5c.x_hi))
        conv6, dense6, dw6 = s6.kind == Kind.CONV, s6.kind == Kind.DENSE, s6.kind == Kind.DW
        n0, w0 = Signal((rng.n_bits, True)), Signal((rng.w_bits, True))
        p2_6, xm_6 = Signal((len(s6.p2), True)), Signal((len(s6.xm), True))
        step_c, step_k = Signal(chb + 1 + MAX_STRIDE_LOG2), Signal(len(s6.kcc) + MAX_STRIDE_LOG2)
        self.comb += [
            p2_6.eq(s6.p2), xm_6.eq(s6.xm),
            n0.eq(s6.nbase + Mux(dense6, 0, p2_6)),
            w0.eq(s6.wbase + xm_6),
            step_c.eq(Mux(conv6, s6.cc, 1) << s6.s_log2),          # a column: kx' - sx
            step_k.eq(Mux(conv6, s6.kcc, s6.k) << s6.s_log2_y),    # a row: ky' - sy
        ]
        # Lanes over consecutive columns (DW, pooling): the columns' neurons step by cc, so they lie
        # in distinct banks when cc is odd; their weights step by -sx, so P of them lie within the
        # NB words one read gives where layouts.column_lane_stride_ok says so (sx = 1 always), or
        # need no read (a constant weight).
        cols6 = Signal()
        if P > 1:
            strides = [s for s in range(MAX_STRIDE_LOG2 + 1) if column_lane_stride_ok(P, 1 << s)]
            self.comb += cols6.eq(dw6 & s6.cc[0] & (s6.wconst | (s6.s_log2 <= max(strides))))
        push = Signal()
        self.sync += [
            push.eq(s6.valid),
            If(s6.valid,
                walk.sink.n0.eq(n0), walk.sink.w0.eq(w0),
                walk.sink.sm_n.eq(s6.cc), walk.sink.so_n.eq(s6.twcc),
                walk.sink.sm_w.eq(-step_c), walk.sink.so_w.eq(-step_k),
                walk.sink.inner.eq(Mux(dw6, 1, s6.cc)), walk.sink.mid.eq(Mux(dense6, 1, s6.nx)),
                walk.sink.outer.eq(Mux(dense6, 1, s6.ny)),
                walk.sink.chan_ok.eq(s6.chan_ok), walk.sink.wconst.eq(s6.wconst), walk.sink.wval.eq(s6.wval),
                walk.sink.d.eq(s6.d), walk.sink.ws.eq(s6.ws), walk.sink.cols.eq(cols6),
                walk.sink.sx_log2.eq(s6.s_log2),
            ),
        ]
        self.comb += [
            walk.sink.valid.eq(push),
            host_drop.eq(f2.valid & ~known),
        ]
        self.sync += in_setup.eq(in_setup + enter - push - host_drop)

        # ---- walker: up to P pairs per clock ----
        # The walker loads from a registered head (LiteX PipeValid, full rate): the FIFO's storage is
        # LUT RAM, and its read -> the load's compares and muxes -> the walker's registers was the
        # 2x2 fabric's critical path at one placement seed.
        self.walk_head = head = stream.PipeValid(walk_layout(cfg, rng))
        self.comb += walk.source.connect(head.sink)
        h = head.source
        active, load, last_pair, more, col_last = Signal(), Signal(), Signal(), Signal(), Signal()
        ci, i, j = Signal(chb + 1), Signal(kb), Signal(kb)          # counting down to 0
        n_cur, n_pix, n_row = (Signal((rng.n_bits, True)) for _ in range(3))
        w_cur, w_pix, w_row = (Signal((rng.w_bits, True)) for _ in range(3))
        sm_n, so_n = Signal(len(h.sm_n) + lg), Signal(len(h.so_n))
        sm_w, so_w = Signal((len(h.sm_w) + lg, True)), Signal((len(h.so_w), True))
        inner, mid = Signal(chb + 1), Signal(kb)
        wconst, wval, d, chan_ok, ws = Signal(), Signal(cfg.weight_bits), Signal(eb), Signal(), Signal(WSHIFT_BITS)
        cols = Signal()
        # Lane l's neuron and weight: n_cur + off_n[l], w_cur + off_w[l] (channel lanes: + l, + l;
        # column lanes: + l*cc, - l*sx); lane 0 is n_cur, w_cur itself. The column lanes' weights
        # span (P - 1) * sx + 1 bytes below w_cur (span = (P - 1) * sx).
        off_bits = signed_bits(0, (P - 1) * ((1 << (chb + 1)) - 1))
        off_n = {l: Signal((off_bits, True), name=f"off_n{l}") for l in range(1, P)}
        off_w = {l: Signal((signed_bits(-(P - 1) << MAX_STRIDE_LOG2, P - 1), True), name=f"off_w{l}")
                 for l in range(1, P)}
        # (The shifts below start from constants as wide as their results: Verilog sizes a shift
        # inside migen's signed conversion by its left operand alone.)
        span = Signal(max(1, (P - 1) << MAX_STRIDE_LOG2).bit_length())
        h_sm_w = Signal((len(h.sm_w), True))         # the FIFO keeps the step's bits
        self.comb += h_sm_w.eq(h.sm_w)
        # The loop's end tests are registers, each decided with the counter it tests (more: ci >= P,
        # col_last: the last clock of a row, no channel group and no column group of P columns left,
        # j_last: j == 0): the FIFO's read enable (load) is then two LUTs from flip-flops, not a
        # compare's carry chain and a route across the core (the 2x2 fabric's critical path).
        j_last, inner_more, mid_col_last = Signal(), Signal(), Signal()

        def row_ends(counter, is_cols):
            return Mux(is_cols, counter < P, counter == 0)
        h_inner_more, h_mid_col_last = Signal(), Signal()      # the FIFO head's, loaded into two registers each
        self.comb += [
            h_inner_more.eq(h.inner > P),
            h_mid_col_last.eq(row_ends(h.mid - 1, h.cols)),
        ]
        self.comb += [
            last_pair.eq(active & ~more & col_last & j_last),
            load.eq(h.valid & (~active | last_pair)),
            h.ready.eq(load),
        ]
        # P lanes take channels ci .. ci-P+1 in one clock (a conv's or a dense connection's output
        # channels: consecutive neurons and weights); fewer when fewer remain. Column lanes take
        # columns i .. i-P+1 of a DW or pooling row (their inner loop is one channel).
        i_next = Signal.like(i)
        self.comb += i_next.eq(i - Mux(cols, P, 1))
        self.sync += [
            If(active,
                If(more,
                    ci.eq(ci - P), more.eq(ci >= 2 * P), n_cur.eq(n_cur + P), w_cur.eq(w_cur + P),
                ).Elif(~col_last,
                    ci.eq(inner - 1), more.eq(inner_more), i.eq(i_next), col_last.eq(row_ends(i_next, cols)),
                    n_pix.eq(n_pix + sm_n), n_cur.eq(n_pix + sm_n),
                    w_pix.eq(w_pix + sm_w), w_cur.eq(w_pix + sm_w),
                ).Elif(~j_last,
                    ci.eq(inner - 1), more.eq(inner_more), i.eq(mid - 1), col_last.eq(mid_col_last),
                    j.eq(j - 1), j_last.eq(j == 1),
                    n_row.eq(n_row + so_n), n_pix.eq(n_row + so_n), n_cur.eq(n_row + so_n),
                    w_row.eq(w_row + so_w), w_pix.eq(w_row + so_w), w_cur.eq(w_row + so_w),
                ).Else(
                    active.eq(0),
                ),
            ),
            If(load,
                active.eq((h.inner != 0) & (h.mid != 0) & (h.outer != 0)),
                inner.eq(h.inner), mid.eq(h.mid), ci.eq(h.inner - 1), i.eq(h.mid - 1), j.eq(h.outer - 1),
                more.eq(h_inner_more), inner_more.eq(h_inner_more), j_last.eq(h.outer == 1),
                col_last.eq(h_mid_col_last), mid_col_last.eq(h_mid_col_last),
                n_cur.eq(h.n0), n_pix.eq(h.n0), n_row.eq(h.n0),
                w_cur.eq(h.w0), w_pix.eq(h.w0), w_row.eq(h.w0),
                # A column group steps P columns at once.
                sm_n.eq(Mux(h.cols, h.sm_n << lg, h.sm_n)), so_n.eq(h.so_n),
                sm_w.eq(Mux(h.cols, h_sm_w << lg, h_sm_w)), so_w.eq(h.so_w),
                wconst.eq(h.wconst), wval.eq(h.wval), d.eq(h.d), chan_ok.eq(h.chan_ok), ws.eq(h.ws), cols.eq(h.cols),
                *[off_n[l].eq(Mux(h.cols, l * h.sm_n, l)) for l in range(1, P)],
                # (Signed values assigned one by one: a negative value in a select may print unsigned.)
                *[If(h.cols, off_w[l].eq(-(Constant(l, len(span)) << h.sx_log2))).Else(off_w[l].eq(l)) for l in range(1, P)],
                span.eq(Mux(h.cols, Constant(P - 1, len(span)) << h.sx_log2, 0)),
            ),
        ]

        # ---- lanes: each lane's addresses and its guard, registered (L1) ----
        # The guard's range tests are decided here, from the walker's registers, into one flag per
        # lane: the guard stage is then the flags and the per-bank selects (with the tests after L1,
        # L1's address -> the compares -> G1's selects was the 2x2 fabric's critical path).
        lane_on = Signal(P)          # lane l has a pair this clock (before the guard)
        lane_ok = Signal(P)          # ... and it lies inside the memories (the guard passes it)
        zero = Signal((2, True))     # 0 as a signed signal: the compares below stay signed
        self.comb += zero.eq(0)
        lanes = {}
        for l in range(P):
            nl, wl = self._lane_address(n_cur, off_n, l, "n"), self._lane_address(w_cur, off_w, l, "w")
            lanes[f"n{l}"], lanes[f"w{l}"] = nl, wl
            self.comb += [
                lane_on[l].eq(active & Mux(cols, i >= l, ci >= l)),
                lane_ok[l].eq(lane_on[l] & chan_ok & (nl >= zero) & (nl < cfg.neurons_per_core)
                              & (wconst | ((wl >= zero) & (wl < cfg.weight_words_per_core)))),
            ]
        # The weight read covers bytes base .. base + P - 1, or for column lanes (counting down from
        # w_cur) base .. base + span.
        l1 = PipeStage(self, lane_on != 0, always=True, lane_on=lane_on, ok=lane_ok, wbase=w_cur - span,
                       wconst=wconst, wval=wval, d=d, ws=ws, **lanes)

        # ---- guard, weight read, pair out ----
        # Each lane is guarded on its own; a lane outside the memories is dropped and counted.
        # (L1 loads every clock: lane_on and ok are 0 in a clock without a pair.)
        lanes_out = Signal(max=P + 1)
        self.comb += lanes_out.eq(Reduce("ADD", list(l1.lane_on)) - Reduce("ADD", list(l1.ok)))
        # Each lane goes to the bank of its neuron (n % P, at bank address n // P): the lanes of a
        # clock are consecutive neurons, or columns of a part with an odd channel count, so their
        # banks differ. Its weight is byte w % (4 * NB) of the NB weight banks' words side by side.
        per_bank = {}
        wb_bits = 2 + self.weights.bank_bits
        for b in range(P):
            hit = [l1.ok[l] & (getattr(l1, f"n{l}")[:lg] == b) if lg else l1.ok[l] for l in range(P)]
            per_bank[f"on{b}"] = Reduce("OR", hit)
            per_bank[f"a{b}"] = Reduce("OR", [Mux(hit[l], getattr(l1, f"n{l}")[lg:lg + bank_bits(cfg)], 0)
                                              for l in range(P)])
            per_bank[f"i{b}"] = Reduce("OR", [Mux(hit[l], getattr(l1, f"w{l}")[:wb_bits], 0) for l in range(P)])
        g1 = PipeStage(self, l1.ok != 0, always=True, wconst=l1.wconst, wval=l1.wval, d=l1.d, ws=l1.ws, **per_bank)
        # The pairs wait beside the weight read: one stage per clock of its latency.
        g = g1
        stages = [l1, g1]
        keep = ["wconst", "wval", "d", "ws", *per_bank]
        for _ in range(WEIGHT_READ_LATENCY - 1):
            g = PipeStage(self, g.valid, **{k: getattr(g, k) for k in keep})
            stages.append(g)
        self.comb += self.weights.word.eq(l1.wbase >> 2)
        bytes_ = Array([getattr(wd, f"w{k}") for wd in self.weights.rd_dat for k in range(4)])
        src = self.source
        self.sync += [
            src.valid.eq(g.valid),
            If(g.valid, src.d.eq(g.d), src.ws.eq(g.ws),
               *[[getattr(src, f"on{b}").eq(getattr(g, f"on{b}")), getattr(src, f"a{b}").eq(getattr(g, f"a{b}")),
                  getattr(src, f"w{b}").eq(Mux(g.wconst, g.wval, bytes_[getattr(g, f"i{b}")]))] for b in range(P)]),
        ]
        self.comb += self.dropped.eq((f1.valid & ~f1.syn_ok) + (f2.valid & ~known) + lanes_out)

        # ---- idle, host access to the tables ----
        self.comb += [
            self.idle.eq(~f1.valid & ~f2.valid & (in_setup == 0) & ~walk.source.valid & ~h.valid & ~active
                         & ~src.valid & ~Reduce("OR", [st.valid for st in stages])),
            # The host reads a table in a clock its datapath port is free (see TableMemory): the
            # descriptor table's while no packet waits (a flip-flop; with `~take` the packet FIFO's
            # valid and the credit reached the table's address mux, the 2x2 fabric's critical path).
            self.table.host_ok.eq(~pk.valid),
            self.weights.host_ok.eq(~active & ~l1.valid),
        ]

    def _lane_address(self, base, offsets, lane, what):
        """Lane `lane`'s address, base + offsets[lane] (lane 0: base), as a signal of the sum's width
        and sign (the guard's compares and L1's register read the same one)."""
        if lane == 0:
            return base
        value = base + offsets[lane]
        address = Signal(value_bits_sign(value), name=f"lane{lane}_{what}")
        self.comb += address.eq(value)
        return address

