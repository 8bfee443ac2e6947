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
"""
from __future__ import annotations

from migen import READ_FIRST, Cat, If, Memory, Mux, Signal
from litex.gen import LiteXModule
from litex.soc.interconnect import stream, wishbone

from synfab.config import FabricConfig
from synfab.layouts import WSHIFT_BITS

from ..common import PipeStage, product
from ..tables import block_ram

DIRTY_WORD = 32          # neurons per dirty word
ACC_READ_LATENCY = 2     # clocks from a granted acc read to `acc_out`
DIRTY_TAKE_LATENCY = 3   # clocks from a granted dirty take to `dirty_out`


def dirty_words(cfg: FabricConfig) -> int:
    return -(-cfg.neurons_per_core // DIRTY_WORD)


def dirty_word_bits(cfg: FabricConfig) -> int:
    return max(1, (dirty_words(cfg) - 1).bit_length())


def _word(n):
    """The dirty word of neuron address n."""
    return n[5:] if len(n) > 5 else 0


def pair_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """ESU -> neuron unit: acc[n] += (w * d) << ws (w and d two's complement, ws the connection's
    weight shift)."""
    return [("n", cfg.neuron_addr_bits), ("w", cfg.weight_bits), ("d", cfg.event_bits), ("ws", WSHIFT_BITS)]


def acc_read_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """Evaluation -> neuron unit: read acc[n] (and with clear, set it to 0 in the same operation)."""
    return [("n", cfg.neuron_addr_bits), ("clear", 1)]


def write_back_layout(cfg: FabricConfig) -> list[tuple[str, int]]:
    """Evaluation -> neuron unit, after a step: acc[n] = value if set; dirty[n] = 1 if mark."""
    return [("n", cfg.neuron_addr_bits), ("set", 1), ("value", cfg.acc_bits), ("mark", 1)]


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


class NeuronUnit(LiteXModule):
    """Accumulators and dirty bits of one core (see the module doc).

        sink        in   pairs (n, w, d, ws) from the ESU: always ready, one per clock
        acc_rd      in   evaluation: read acc[n] (clear: and zero it); ready (granted) in clocks without a
                         pair or write-back
        acc_out     out  the granted acc reads, in order (valid only; no backpressure)
        dirty_rd    in   evaluation: take dirty bits (word, mask); ready in clocks without a pair or
                         write-back
        wb          in   evaluation: write-backs (n, set, value, mark); ready in clocks without a pair
        dirty_out   out  the taken bits (word, bits), in order (valid only)
        acc_bus     in   host window of acc (sign-extended reads; a write marks the neuron dirty)
        host_block  in   evaluation busy (registered): host accesses wait; while the host holds
                         its slot (a register set a clock ahead), the evaluation unit's requests
                         wait (not ready)
        synop       out  one pair applied this clock
        idle        out  nothing in the pipeline
    """

    def __init__(self, cfg: FabricConfig):
        nab, ab, wb, eb = cfg.neuron_addr_bits, cfg.acc_bits, cfg.weight_bits, cfg.event_bits
        dwb = dirty_word_bits(cfg)
        self.sink = stream.Endpoint(pair_layout(cfg))
        self.acc_rd = stream.Endpoint(acc_read_layout(cfg))
        self.acc_out = stream.Endpoint([("acc", ab)])
        self.dirty_rd = stream.Endpoint(dirty_take_layout(cfg))
        self.dirty_out = stream.Endpoint([("word", dwb), ("bits", DIRTY_WORD)])
        self.wb = stream.Endpoint(write_back_layout(cfg))
        self.acc_bus = wishbone.Interface(data_width=32, adr_width=nab, addressing="word")
        self.host_block = Signal()
        self.synop = Signal()
        self.idle = Signal()

        # # #

        acc = block_ram(ab, cfg.neurons_per_core, "acc")
        dirty = block_ram(DIRTY_WORD, dirty_words(cfg), "dirty")
        acc_rd, acc_wr = acc.get_port(mode=READ_FIRST), acc.get_port(write_capable=True)
        dirty_rd, dirty_wr = dirty.get_port(mode=READ_FIRST), dirty.get_port(write_capable=True)
        self.specials += acc, dirty, acc_rd, acc_wr, dirty_rd, dirty_wr

        # ---- S0: who owns this clock ----
        pair, bus, wbk = self.sink, self.acc_bus, self.wb
        ev_acc, ev_dirty, ev_wb, host_go, host_req = Signal(), Signal(), Signal(), Signal(), Signal()
        host_slot = Signal()
        mapped = Signal()
        # A clock belongs to a pair, else to the host once it holds the slot, else to the evaluation
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
        # The acc operation of this clock (a pair adds, an evaluation read only reads) ...
        a_n = Signal(nab)
        self.comb += If(pair.valid, a_n.eq(pair.n)).Elif(ev_wb, a_n.eq(wbk.n)).Elif(ev_acc, a_n.eq(self.acc_rd.n)).Else(
            a_n.eq(host_adr))
        # ... and the dirty one: set one bit (pair, host write) or take a mask (evaluation).
        d_op, d_take = Signal(), Signal()
        d_word, d_bit = Signal(dwb), Signal(5)
        self.comb += [
            d_op.eq(pair.valid | (ev_wb & wbk.mark) | ev_dirty | host_write),
            If(pair.valid, d_word.eq(_word(pair.n)), d_bit.eq(pair.n[:5])).Elif(ev_wb,
                d_word.eq(_word(wbk.n)), d_bit.eq(wbk.n[:5])).Elif(ev_dirty,
                d_word.eq(self.dirty_rd.word), d_take.eq(1)).Else(
                d_word.eq(_word(host_adr)), d_bit.eq(host_adr[:5])),
            acc_rd.adr.eq(a_n),
            dirty_rd.adr.eq(d_word),
        ]

        # ---- S1 ---- (the product of the pair's registered w and d: one DSP block)
        w_s, d_s = Signal((wb, True)), Signal((eb, True))
        self.comb += w_s.eq(pair.w), d_s.eq(pair.d)
        # The operation's kind: add (pair), set (write-back of a value), clear (read and zero);
        # a write-back with set low only marks (no acc operation).
        s1 = PipeStage(self, pair.valid | (ev_wb & wbk.set) | ev_acc, n=a_n, add=pair.valid,
                       set=~pair.valid & ev_wb, clr=~pair.valid & ~ev_wb & self.acc_rd.clear,
                       value=Mux(pair.valid | ~ev_wb, 0, wbk.value), prod=product(w_s, d_s), ws=pair.ws)
        s1_d = PipeStage(self, d_op, word=d_word, bit=d_bit, take=d_take, mask=self.dirty_rd.mask)
        s1_host_rd = Signal()
        self.sync += s1_host_rd.eq(host_go & ~bus.we)
        prod1 = Signal((len(s1.prod), True))
        self.comb += prod1.eq(s1.prod)

        # ---- S2 ---- (the product shifted by ws, only its low acc_bits bits: the sum wraps there)
        s2 = PipeStage(self, s1.valid, n=s1.n, add=s1.add, set=s1.set, clr=s1.clr, value=s1.value,
                       prod=(prod1 << s1.ws)[:ab])
        s2_d = PipeStage(self, s1_d.valid, word=s1_d.word, take=s1_d.take, mask=s1_d.mask,
                         set=Mux(s1_d.take, 0, 1 << s1_d.bit))
        acc_q, dirty_q = Signal(ab), Signal(DIRTY_WORD)
        s2_host_rd = Signal()
        self.sync += acc_q.eq(acc_rd.dat_r), dirty_q.eq(dirty_rd.dat_r), s2_host_rd.eq(s1_host_rd)

        s2_add, s2_write = Signal(), Signal()
        acc_new = Signal(ab)
        dirty_old, dirty_new = Signal(DIRTY_WORD), Signal(DIRTY_WORD)
        self.comb += s2_add.eq(s2.valid & s2.add), s2_write.eq(s2.valid & (s2.add | s2.set | s2.clr))
        acc_fwd = _Forward(self, s1.valid, s1.n, s2_write, s2.n, acc_new, ab)
        dirty_fwd = _Forward(self, s1_d.valid, s1_d.word, s2_d.valid, s2_d.word, dirty_new, DIRTY_WORD)
        acc_old = Signal((ab, True))
        prod_s = Signal((len(s2.prod), True))
        self.comb += [
            acc_old.eq(acc_fwd.operand(acc_q)),
            prod_s.eq(s2.prod),
            # value is 0 for a clear: one select after the adder.
            acc_new.eq(Mux(s2.add, acc_old + prod_s, s2.value)),
            dirty_old.eq(dirty_fwd.operand(dirty_q)),
            dirty_new.eq((dirty_old | s2_d.set) & ~Mux(s2_d.take, s2_d.mask, 0)),
            self.synop.eq(s2_add),
            # Evaluation reads see every earlier pair (forwarded).
            self.acc_out.valid.eq(s2.valid & ~s2.add & ~s2.set), self.acc_out.acc.eq(acc_old),
        ]
        # Writes: S2's operation, or the host (which only goes while S1 and S2 are empty).
        self.comb += [
            If(s2_write,
                acc_wr.adr.eq(s2.n), acc_wr.dat_w.eq(acc_new), acc_wr.we.eq(1),
            ).Else(
                acc_wr.adr.eq(host_adr), acc_wr.dat_w.eq(bus.dat_w), acc_wr.we.eq(host_write),
            ),
            dirty_wr.adr.eq(s2_d.word), dirty_wr.dat_w.eq(dirty_new), dirty_wr.we.eq(s2_d.valid),
        ]
        # Taken bits leave registered (S3).
        self.sync += [
            self.dirty_out.valid.eq(s2_d.valid & s2_d.take),
            If(s2_d.valid & s2_d.take, self.dirty_out.word.eq(s2_d.word),
               self.dirty_out.bits.eq(dirty_old & s2_d.mask)),
        ]

        # ---- host: only with nothing in flight; reads answer from the S2 register ----
        busy = Signal()
        self.comb += [
            busy.eq(s1.valid | s2.valid | s1_d.valid | s2_d.valid
                    | s1_host_rd | s2_host_rd),
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
        self.comb += acc_signed.eq(acc_q)
        self.sync += [
            If(host_go, read_mapped.eq(mapped)),
            # Writes complete at once; reads when the data has reached the S2 register.
            bus.ack.eq((host_go & bus.we) | s2_host_rd),
            bus.dat_r.eq(Mux(s2_host_rd & read_mapped, acc_signed, 0)),
        ]
        self.comb += self.idle.eq(~pair.valid & ~wbk.valid & ~busy)
