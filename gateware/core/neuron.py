"""Neuron unit: the neuron state in block RAM and the one pipeline that changes it.

State (all block RAM, one write port and one read port each, so logic does not grow with depth):
  acc    neurons_per_core x acc_bits        wrapping accumulators
  dirty  ceil(neurons_per_core / 32) x 32   one bit per neuron, 32 neurons per word: set by a
                                            synapse or a host write of acc, cleared by evaluation

One operation enters per clock and moves through three stages:
  S0  address both memories (synchronous read); w * d multiplied (from the ESU's pair register)
  S1  memory data out; the product shifted left by the pair's weight shift ws
  S2  memory data registered, forwarded, updated and written back
An operation is one of:
  pair        acc[n] = wrap(acc[n] + ((w*d) << ws)); dirty[n] = 1   (from the ESU, always taken;
              arith.synapse, kept modulo 2^acc_bits)
  acc read    acc[n] to the evaluation unit (`acc_out`, 2 clocks later); with `clear`, acc[n] = 0
              in the same operation (the Loihi models consume the step's input)  (clocks without a pair)
  write back  from the evaluation unit, after a neuron's step (`wb`, clocks without a pair, before
              reads and takes): acc[n] = value if `set` (the if model's v), dirty[n] = 1 if `mark`
              (the neuron is live: arith.live, so the next frame evaluates it without input)
  dirty take  bits = dirty[word] & mask; dirty[word] &= ~mask, to the evaluation unit (`dirty_out`,
              3 clocks later)                                   (clocks without a pair)
  host        a host access of the acc window (only when nothing else is in the pipeline and the
              evaluation unit is idle: `host_block` low; it has the clock before the evaluation
              unit's requests); a write also marks the neuron dirty
A read at S0 misses the writes of the two operations ahead of it (one is still in S1, the other
writes on the very clock of the read), so S2 takes its operand from those writes when the address
matches (forwarding, decided one clock ahead from registered compares): pairs hitting one neuron
back to back still run at one per clock.

With FabricConfig.lanes = P the state is in P banks (neuron n in bank n % P at address n // P),
each with its own acc and dirty memories, the pipeline above and its forwarding: the ESU's up to P
pairs of a clock are consecutive neurons, one per bank, so they never conflict. An evaluation read
or write-back is one lane group (the neurons at one bank address in the banks its mask names: P
consecutive neurons from a multiple of P), so the evaluation unit's P lanes are served in one
clock too. A host access is one neuron; a dirty take of 32 neurons takes 32 / P bits of one word
in every bank.
"""
from __future__ import annotations

from migen import READ_FIRST, Array, Cat, Constant as C, If, Memory, Mux, Signal
from litex.gen import LiteXModule, Reduce
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import DIRTY_WORD, WSHIFT_BITS

from ..common import PipeStage, product
from ..tables import block_ram

ACC_READ_LATENCY = 2     # clocks from a granted acc read to `acc_out`
DIRTY_TAKE_LATENCY = 3   # clocks from a granted dirty take to `dirty_out`


def dirty_words(cfg: FabricConfig) -> int:
    return -(-cfg.neurons_per_core // DIRTY_WORD)


def dirty_word_bits(cfg: FabricConfig) -> int:
    return max(1, (dirty_words(cfg) - 1).bit_length())


def _word(n):
    """The dirty word of neuron address n."""
    return n[5:] if len(n) > 5 else 0


def bank_bits(cfg: FabricConfig) -> int:
    """Address bits of one neuron bank (neurons_per_core / lanes neurons)."""
    return max(1, (-(-cfg.neurons_per_core // cfg.lanes) - 1).bit_length())


def lane_bits(cfg: FabricConfig) -> int:
    """log2(lanes): the low neuron-address bits that select the bank."""
    return (cfg.lanes - 1).bit_length()


def pair_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """ESU -> neuron unit: up to `lanes` pairs, one per neuron bank b (neuron n = a_b * lanes + b):
    acc[n] += (w_b * d) << ws where on_b (w and d two's complement, ws the connection's weight
    shift; d and ws are shared by the lanes of one clock)."""
    lay = [("d", cfg.event_bits), ("ws", WSHIFT_BITS)]
    for b in range(cfg.lanes):
        lay += [(f"on{b}", 1), (f"a{b}", bank_bits(cfg)), (f"w{b}", cfg.weight_bits)]
    return lay


def acc_read_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """Evaluation -> neuron unit: read the accumulators of one lane group, neurons a * lanes + b for
    the lanes b set in `on`, all at bank address a (with clear, set them to 0 in the same operation)."""
    return [("a", bank_bits(cfg)), ("on", cfg.lanes), ("clear", 1)]


def acc_result_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """Neuron unit -> evaluation: the group's accumulators, acc{b} of neuron a * lanes + b."""
    return [(f"acc{b}", cfg.acc_bits) for b in range(cfg.lanes)]


def write_back_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """Evaluation -> neuron unit, after a lane group's step: for each lane b with on{b}, neuron
    a * lanes + b: acc = value{b} if set (the population's model: shared); dirty = 1 if mark{b}."""
    lay = [("a", bank_bits(cfg)), ("set", 1)]
    for b in range(cfg.lanes):
        lay += [(f"on{b}", 1), (f"value{b}", cfg.acc_bits), (f"mark{b}", 1)]
    return lay


def dirty_take_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    return [("word", dirty_word_bits(cfg)), ("mask", DIRTY_WORD)]


class _Forward:
    """Read-modify-write forwarding for one memory: the writes of the last two clocks, and for the
    operation in S1 which of them (if any) it must take its operand from in S2."""

    def __init__(self, m, s1_valid, s1_adr, s2_valid, s2_adr, s2_new, width):
        self.w1_valid, self.w2_valid = Signal(), Signal()
        self.w1_adr, self.w2_adr = Signal(len(s1_adr)), Signal(len(s1_adr))
        self.w1, self.w2 = Signal(width), Signal(width)
        self.from_w1, self.from_w2 = Signal(), Signal()     # for the operation now in S2
        m.sync += [
            # Written this clock (S2) -> w1 next clock; w1 -> w2.
            self.w1_valid.eq(s2_valid), self.w1_adr.eq(s2_adr), self.w1.eq(s2_new),
            self.w2_valid.eq(self.w1_valid), self.w2_adr.eq(self.w1_adr), self.w2.eq(self.w1),
            self.from_w1.eq(s1_valid & s2_valid & (s1_adr == s2_adr)),
            self.from_w2.eq(s1_valid & self.w1_valid & (s1_adr == self.w1_adr)),
        ]

    def operand(self, read_value):
        return Mux(self.from_w1, self.w1, Mux(self.from_w2, self.w2, read_value))


class _Bank:
    """One neuron bank: its acc and dirty memories (block RAM, one read and one write port each) and
    the S0..S2 pipeline of the module doc, with its own forwarding. The NeuronUnit drives one acc
    operation and one dirty operation into it per clock (S0 signals, comb) and reads its S2 results.

        acc op     a_valid, a_adr (bank address), add / set / clr, value, w (pair weight), d, ws
        dirty op   d_valid, d_word (bank word), d_bit, d_take, d_mask
        host       h_adr, h_dat, h_we (written when S2 writes no acc)
    """

    def __init__(self, m, cfg: FabricConfig, index: int, depth: int):
        ab, wb, eb = cfg.acc_bits, cfg.weight_bits, cfg.event_bits
        bab = max(1, (depth - 1).bit_length())
        dw = max(2, -(-depth // DIRTY_WORD))     # a Memory needs two words for an address
        dwb = max(1, (dw - 1).bit_length())
        suffix = "" if cfg.lanes == 1 else str(index)
        acc = block_ram(ab, depth, "acc" + suffix)
        dirty = block_ram(DIRTY_WORD, dw, "dirty" + suffix)
        acc_rd, acc_wr = acc.get_port(mode=READ_FIRST), acc.get_port(write_capable=True)
        dirty_rd, dirty_wr = dirty.get_port(mode=READ_FIRST), dirty.get_port(write_capable=True)
        m.specials += acc, dirty, acc_rd, acc_wr, dirty_rd, dirty_wr

        # ---- S0 (driven by the unit) ----
        self.a_valid, self.a_adr = Signal(), Signal(bab)
        self.add, self.set, self.clr, self.value = Signal(), Signal(), Signal(), Signal(ab)
        self.w, self.d, self.ws = Signal((wb, True)), Signal((eb, True)), Signal(WSHIFT_BITS)
        self.d_valid, self.d_word, self.d_bit = Signal(), Signal(dwb), Signal(5)
        self.d_take, self.d_mask = Signal(), Signal(DIRTY_WORD)
        self.h_adr, self.h_dat, self.h_we = Signal(bab), Signal(ab), Signal()
        m.comb += acc_rd.adr.eq(self.a_adr), dirty_rd.adr.eq(self.d_word)

        # ---- S1 ---- (the product of the pair's registered w and d: one DSP block per bank)
        s1 = PipeStage(m, self.a_valid, n=self.a_adr, add=self.add, set=self.set, clr=self.clr,
                       value=self.value, prod=product(self.w, self.d), ws=self.ws)
        # Its data load every clock: d_valid, late (the host's slot decided behind the banks' busy),
        # reaches the valid register only (the critical path of the 2-lane ULX3S-85F preset ended
        # on these clock enables).
        s1_d = PipeStage(m, self.d_valid, always=True, word=self.d_word, bit=self.d_bit, take=self.d_take,
                         mask=self.d_mask)
        prod1 = Signal((len(s1.prod), True))
        m.comb += prod1.eq(s1.prod)

        # ---- S2 ---- (the product shifted by ws, only its low acc_bits bits: the sum wraps there)
        s2 = PipeStage(m, s1.valid, n=s1.n, add=s1.add, set=s1.set, clr=s1.clr, value=s1.value,
                       prod=(prod1 << s1.ws)[:ab])
        s2_d = PipeStage(m, s1_d.valid, word=s1_d.word, take=s1_d.take, mask=s1_d.mask,
                         set=Mux(s1_d.take, 0, 1 << s1_d.bit))
        self.acc_q, dirty_q = Signal(ab), Signal(DIRTY_WORD)
        m.sync += self.acc_q.eq(acc_rd.dat_r), dirty_q.eq(dirty_rd.dat_r)

        self.s2_add, s2_write = Signal(), Signal()
        acc_new = Signal(ab)
        self.dirty_old, dirty_new = Signal(DIRTY_WORD), Signal(DIRTY_WORD)
        m.comb += self.s2_add.eq(s2.valid & s2.add), s2_write.eq(s2.valid & (s2.add | s2.set | s2.clr))
        acc_fwd = _Forward(m, s1.valid, s1.n, s2_write, s2.n, acc_new, ab)
        dirty_fwd = _Forward(m, s1_d.valid, s1_d.word, s2_d.valid, s2_d.word, dirty_new, DIRTY_WORD)
        self.acc_old = acc_old = Signal((ab, True))
        prod_s = Signal((len(s2.prod), True))
        m.comb += [
            acc_old.eq(acc_fwd.operand(self.acc_q)),
            prod_s.eq(s2.prod),
            # value is 0 for a clear: one select after the adder.
            acc_new.eq(Mux(s2.add, acc_old + prod_s, s2.value)),
            self.dirty_old.eq(dirty_fwd.operand(dirty_q)),
            dirty_new.eq((self.dirty_old | s2_d.set) & ~Mux(s2_d.take, s2_d.mask, 0)),
        ]
        # An evaluation read leaves here (S2): valid and the forwarded value.
        self.read_valid = Signal()
        m.comb += self.read_valid.eq(s2.valid & ~s2.add & ~s2.set)
        self.s2_take, self.s2_mask = Signal(), Signal(DIRTY_WORD)
        m.comb += self.s2_take.eq(s2_d.valid & s2_d.take), self.s2_mask.eq(s2_d.mask)
        # Writes: S2's operation, or the host (which only goes while S1 and S2 are empty).
        m.comb += [
            If(s2_write,
                acc_wr.adr.eq(s2.n), acc_wr.dat_w.eq(acc_new), acc_wr.we.eq(1),
            ).Else(
                acc_wr.adr.eq(self.h_adr), acc_wr.dat_w.eq(self.h_dat), acc_wr.we.eq(self.h_we),
            ),
            dirty_wr.adr.eq(s2_d.word), dirty_wr.dat_w.eq(dirty_new), dirty_wr.we.eq(s2_d.valid),
        ]
        self.busy = Signal()
        m.comb += self.busy.eq(s1.valid | s2.valid | s1_d.valid | s2_d.valid)


class NeuronUnit(LiteXModule):
    """Accumulators and dirty bits of one core (see the module doc), in `lanes` banks: neuron n in
    bank n % lanes at bank address n // lanes, each bank with its own memories, pipeline and
    forwarding, so the ESU's up to `lanes` pairs of a clock (one per bank) never conflict. The
    evaluation unit's reads and write-backs (a lane group: one neuron per bank at one bank address)
    and takes (one dirty word of 32 neurons: 32 / lanes of them in each bank) and the host's
    accesses (one neuron) keep one per clock.

        sink        in   pairs (pair_layout: d, ws and per bank on, a, w) from the ESU: always
                         ready, up to `lanes` per clock
        acc_rd      in   evaluation: read a lane group's acc (a, on; clear: and zero them); ready
                         (granted) in clocks without a pair or write-back
        acc_out     out  the granted reads' acc{b}, in order (valid only; no backpressure)
        dirty_rd    in   evaluation: take dirty bits (word, mask); ready in clocks without a pair or
                         write-back
        wb          in   evaluation: a lane group's write-backs (a, set, on{b}, value{b}, mark{b});
                         ready in clocks without a pair
        dirty_out   out  the taken bits (word, bits), in order (valid only)
        acc_bus     in   host window of acc (sign-extended reads; a write marks the neuron dirty)
        host_block  in   evaluation busy (registered): host accesses wait; while the host holds
                         its slot (a register set a clock ahead), the evaluation unit's requests
                         wait (not ready)
        synop       out  pairs applied this clock (0..lanes)
        idle        out  nothing in the pipeline
    """

    def __init__(self, cfg: FabricConfig):
        nab, ab = cfg.neuron_addr_bits, cfg.acc_bits
        dwb = dirty_word_bits(cfg)
        P, lg = cfg.lanes, lane_bits(cfg)
        self.sink = stream.Endpoint(pair_layout(cfg))
        self.acc_rd = stream.Endpoint(acc_read_layout(cfg))
        self.acc_out = stream.Endpoint(acc_result_layout(cfg))
        self.dirty_rd = stream.Endpoint(dirty_take_layout(cfg))
        self.dirty_out = stream.Endpoint([("word", dwb), ("bits", DIRTY_WORD)])
        self.wb = stream.Endpoint(write_back_layout(cfg))
        self.acc_bus = wishbone.Interface(data_width=32, adr_width=nab, addressing="word")
        self.host_block = Signal()
        self.synop = Signal(max=P + 1)
        self.idle = Signal()

        # # #

        depth = -(-cfg.neurons_per_core // P)
        banks = [_Bank(self, cfg, b, depth) for b in range(P)]
        per = DIRTY_WORD // P           # neurons of one 32-neuron dirty word in each bank

        def bank_of(n):
            return n[:lg] if lg else 0

        def in_bank(n):
            return n[lg:] if lg else n

        # ---- S0: who owns this clock ----
        pair, bus, wbk = self.sink, self.acc_bus, self.wb
        ev_acc, ev_dirty, ev_wb, host_go, host_req = Signal(), Signal(), Signal(), Signal(), Signal()
        host_slot = Signal()
        mapped = Signal()
        # A clock belongs to the pairs, else to the host once it holds the slot, else to the evaluation
        # unit's write-backs (it reserves room for them before it reads), then its reads and takes.
        # The host's slot is a register decided a clock ahead: while it holds it, the evaluation
        # unit's requests wait, so their ready depends on two registers only (pair.valid, the slot)
        # and the host goes once the pipeline has drained.
        self.comb += [
            pair.ready.eq(1),
            wbk.ready.eq(~pair.valid & ~host_slot),
            ev_wb.eq(wbk.valid & wbk.ready),
            self.acc_rd.ready.eq(~pair.valid & ~host_slot & ~wbk.valid),
            self.dirty_rd.ready.eq(~pair.valid & ~host_slot & ~wbk.valid),
            ev_acc.eq(self.acc_rd.valid & self.acc_rd.ready),
            ev_dirty.eq(self.dirty_rd.valid & self.dirty_rd.ready),
            mapped.eq(bus.adr < cfg.neurons_per_core),
        ]
        host_write = Signal()
        host_adr = bus.adr[:nab]
        self.comb += host_write.eq(host_go & bus.we & mapped)
        # The acc operation of a clock without pairs: a lane group's write-back or evaluation read
        # (every bank at one address, the banks its mask names), else the host's (one neuron).
        a_adr = Signal(bank_bits(cfg))
        self.comb += If(ev_wb, a_adr.eq(wbk.a)).Elif(ev_acc, a_adr.eq(self.acc_rd.a)).Else(a_adr.eq(in_bank(host_adr)))
        # ... and its dirty one: set bits (write-back marks, host write), or take a word's mask.
        d_adr = Signal(bank_bits(cfg))
        self.comb += If(ev_wb, d_adr.eq(wbk.a)).Else(d_adr.eq(in_bank(host_adr)))
        # A take of global dirty word W (neurons 32W..32W+31): bank word W // lanes, its bits
        # (W % lanes) * per .. + per - 1 hold neurons 32W + b + lanes*j (j < per) of bank b.
        take_word = self.dirty_rd.word
        # The slot's first bit, (W % lanes) * per, as bits (a product's width in Verilog is too narrow).
        per_bits = (per - 1).bit_length()
        take_slot = Signal(max(1, lg + per_bits))
        self.comb += take_slot.eq(Cat(C(0, per_bits), take_word[:lg]) if lg else 0)
        for b, bank in enumerate(banks):
            sub = Cat(*[self.dirty_rd.mask[b + P * j] for j in range(per)])
            pb = lambda name: getattr(pair, f"{name}{b}")    # noqa: E731
            self.comb += [
                bank.w.eq(pb("w")), bank.d.eq(pair.d), bank.ws.eq(pair.ws),
                bank.h_adr.eq(in_bank(host_adr)), bank.h_dat.eq(bus.dat_w),
                bank.h_we.eq(host_write & (bank_of(host_adr) == b)),
                If(pair.valid,
                    bank.a_valid.eq(pb("on")), bank.a_adr.eq(pb("a")), bank.add.eq(1),
                    bank.d_valid.eq(pb("on")), bank.d_word.eq(pb("a")[5:] if len(pb("a")) > 5 else 0),
                    bank.d_bit.eq(pb("a")[:5]),
                ).Else(
                    bank.a_valid.eq((ev_wb & getattr(wbk, f"on{b}") & wbk.set) | (ev_acc & self.acc_rd.on[b])),
                    bank.a_adr.eq(a_adr),
                    bank.set.eq(ev_wb), bank.clr.eq(~ev_wb & self.acc_rd.clear),
                    bank.value.eq(Mux(ev_wb, getattr(wbk, f"value{b}"), 0)),
                    If(ev_dirty,
                        bank.d_valid.eq(1), bank.d_take.eq(1), bank.d_word.eq(take_word[lg:] if len(take_word) > lg else 0),
                        bank.d_mask.eq(sub << take_slot if lg else sub),
                    ).Else(
                        bank.d_valid.eq((ev_wb & getattr(wbk, f"on{b}") & getattr(wbk, f"mark{b}"))
                                        | (host_write & (bank_of(host_adr) == b))),
                        bank.d_word.eq(_word(d_adr)), bank.d_bit.eq(d_adr[:5]),
                    ),
                ),
            ]

        # ---- S1, S2 in the banks; results ----
        if P == 1:
            synop = banks[0].s2_add
        else:
            synop = sum(bank.s2_add for bank in banks)
        self.comb += [
            self.synop.eq(synop),
            # Evaluation reads see every earlier pair (forwarded); the banks of a group answer together.
            self.acc_out.valid.eq(Reduce("OR", [bank.read_valid for bank in banks])),
            *[getattr(self.acc_out, f"acc{b}").eq(bank.acc_old) for b, bank in enumerate(banks)],
        ]
        # Taken bits leave registered (S3): bank b's bits of the word back at b + lanes*j.
        s2_word, s2_slot = Signal(dwb), Signal(max(1, lg + per_bits))
        s1_word = Signal(dwb)
        self.sync += [
            If(ev_dirty, s1_word.eq(take_word)),
            s2_word.eq(s1_word),
        ]
        self.comb += s2_slot.eq(Cat(C(0, per_bits), s2_word[:lg]) if lg else 0)
        taken = [Signal(per, name=f"taken{b}") for b in range(P)]
        for b, bank in enumerate(banks):
            bits = bank.dirty_old & bank.s2_mask
            self.comb += taken[b].eq(bits >> s2_slot if lg else bits)
        gathered = Signal(DIRTY_WORD)
        for b in range(P):
            for j in range(per):
                self.comb += gathered[b + P * j].eq(taken[b][j])
        self.sync += [
            self.dirty_out.valid.eq(banks[0].s2_take),
            If(banks[0].s2_take, self.dirty_out.word.eq(s2_word), self.dirty_out.bits.eq(gathered)),
        ]

        # ---- host: only with nothing in flight; reads answer from the S2 register ----
        busy = Signal()
        s1_host_rd, s2_host_rd = Signal(), Signal()
        self.sync += s1_host_rd.eq(host_go & ~bus.we), s2_host_rd.eq(s1_host_rd)
        self.comb += [
            busy.eq(Reduce("OR", [bank.busy for bank in banks]) | s1_host_rd | s2_host_rd),
            host_go.eq(host_slot & host_req & ~bus.ack & ~self.host_block & ~pair.valid & ~busy & ~s2_host_rd),
        ]
        # The slot is given up while the evaluation unit is busy (host_block: no deadlock with an
        # evaluation that starts after the host took it) and once the host has gone.
        self.sync += host_slot.eq(bus.cyc & bus.stb & ~bus.ack & ~host_go & ~self.host_block)
        # The bus request is registered first, so the address decode in front of this unit and
        # this clock's operation select never meet in one clock (a host access takes one more).
        self.sync += host_req.eq(bus.cyc & bus.stb & ~bus.ack & ~host_go)
        acc_signed = Signal((ab, True))
        read_mapped = Signal()
        read_bank = Signal(max(1, lg))
        if P == 1:
            self.comb += acc_signed.eq(banks[0].acc_q)
        else:
            self.comb += acc_signed.eq(Array([bank.acc_q for bank in banks])[read_bank])
        self.sync += [
            If(host_go, read_mapped.eq(mapped), read_bank.eq(bank_of(host_adr))),
            # Writes complete at once; reads when the data has reached the S2 register.
            bus.ack.eq((host_go & bus.we) | s2_host_rd),
            bus.dat_r.eq(Mux(s2_host_rd & read_mapped, acc_signed, 0)),
        ]
        self.comb += self.idle.eq(~pair.valid & ~wbk.valid & ~busy)
