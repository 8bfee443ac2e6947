"""Small helpers shared by the gateware: records, endpoints and bit packing from a synfab Layout.

Layouts are LSB first, like Migen's `Record.raw_bits()`, so a table word and a Record of the same
Layout line up bit for bit.
"""
from __future__ import annotations

from functools import reduce
from pathlib import Path
from operator import or_

from litex.gen import LiteXModule, Reduce
from litex.soc.interconnect import stream, wishbone
from migen import READ_FIRST, Cat, ClockSignal, Constant, If, Instance, Memory, Module, Mux, Record, Signal
from migen.fhdl.bitcontainer import value_bits_sign
from migen.fhdl.specials import SPECIAL_INPUT, SPECIAL_OUTPUT, Special
from migen.fhdl.structure import wrap
from migen.genlib.fsm import FSM, NextState, NextValue

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


class PipeStage:
    """One pipeline register stage: `valid` loads `valid_in` when `ce` (default: every clock); the
    named data registers load with it only for a valid input (nothing reads them otherwise, and the
    simulation skips their logic). Each value gets a register of its own width and signedness,
    reachable as an attribute: `s = PipeStage(m, v, n=n_in); ... s.valid, s.n`. A value given as
    `product(a, b)` is registered in the multiplier's own output register (RegisteredProduct).
    With `always=True` the data registers load on every `ce` instead: valid_in then reaches only
    the valid register, not the clock enables of all the data (for a late valid_in)."""

    def __init__(self, module, valid_in, ce=1, always=False, **values):
        self.valid = Signal()
        module.sync += If(ce, self.valid.eq(valid_in))
        load = ce if always else ce & valid_in
        loads = []
        for name, value in values.items():
            if isinstance(value, product) and value.in_one_dsp:
                reg = Signal(value_bits_sign(value.a * value.b), name=name)
                module.specials += RegisteredProduct(value.a, value.b, reg, load)
            else:
                if isinstance(value, product):
                    value = value.a * value.b
                reg = Signal(value_bits_sign(value), name=name)
                loads.append(reg.eq(value))
            setattr(self, name, reg)
        if loads:
            module.sync += If(load, *loads)


# Operand width of one DSP multiplier, signed or unsigned (ECP5 MULT18X18D: SIGNEDA/SIGNEDB per
# operand; Xilinx' DSP48E1 25 x 18 takes it signed-extended by synthesis).
DSP_OPERAND_BITS = 18


class product:
    """a * b for a PipeStage value: the stage's register for it is the DSP block's output register
    when both operands fit one block (`in_one_dsp`); a wider product (fabric configs with wider
    fields than any board preset's) is an ordinary register that synthesis splits over blocks."""

    def __init__(self, a, b):
        self.a, self.b = wrap(a), wrap(b)
        self.in_one_dsp = all(value_bits_sign(v)[0] <= DSP_OPERAND_BITS for v in (self.a, self.b))


class RegisteredProduct(Special):
    """p <= a * b at the sys clock edge when ce: a multiplier with its output register, which a
    platform maps to a DSP block whose own output register holds p (ECP5: MULT18X18D with
    REG_OUTPUT_CLK, `ECP5RegisteredProduct`), so no fabric route lies between the multiplier and
    its register. Everywhere else (Verilator, Migen simulation, Xilinx synthesis, which absorbs the
    register by itself) it lowers to the behavioural description.

        a, b  in   operands (each at most DSP_OPERAND_BITS, signed or unsigned: a wider
              `product` is an ordinary register instead, see `product.in_one_dsp`)
        ce    in   load enable
        p     out  the registered product (Migen's width and signedness of a * b)"""

    def __init__(self, a, b, p, ce):
        Special.__init__(self)
        self.a, self.b, self.p, self.ce = wrap(a), wrap(b), p, wrap(ce)

    def iter_expressions(self):
        yield self, "a", SPECIAL_INPUT
        yield self, "b", SPECIAL_INPUT
        yield self, "ce", SPECIAL_INPUT
        yield self, "p", SPECIAL_OUTPUT

    @staticmethod
    def lower(dr):
        return _BehaviouralProduct(dr)


class _BehaviouralProduct(Module):
    def __init__(self, dr):
        self.sync += If(dr.ce, dr.p.eq(dr.a * dr.b))


class ECP5RegisteredProduct:
    """The ECP5 lowering of RegisteredProduct (the SoC adds it to the toolchain's overrides)."""

    @staticmethod
    def lower(dr):
        return _ECP5Product(dr)


class _ECP5Product(Module):
    def __init__(self, dr):
        # Each operand extended to the block's DSP_OPERAND_BITS with its own signedness (SIGNEDA/SIGNEDB), so
        # P is the exact product, signed when either operand is.
        a_signed, b_signed = value_bits_sign(dr.a)[1], value_bits_sign(dr.b)[1]
        a, b = Signal((DSP_OPERAND_BITS, a_signed)), Signal((DSP_OPERAND_BITS, b_signed))
        p = Signal((2 * DSP_OPERAND_BITS, a_signed or b_signed))
        self.comb += a.eq(dr.a), b.eq(dr.b), dr.p.eq(p)
        self.specials += Instance(
            ECP5_PRODUCT_MODULE, name=f"{dr.p.backtrace[-1][0]}_dsp",
            i_CLK=ClockSignal("sys"), i_CE=dr.ce, i_SIGNEDA=int(a_signed), i_SIGNEDB=int(b_signed),
            i_A=a, i_B=b, o_P=p,
        )


# The ECP5 MULT18X18D wrapper the SoC adds to its sources (see the file's header).
ECP5_PRODUCT_MODULE = "synfab_mult18_oreg"
ECP5_PRODUCT_SOURCE = Path(__file__).parent / "soc" / "verilog" / f"{ECP5_PRODUCT_MODULE}.v"


def small_multiply(module, a, b) -> Signal:
    """a * b (unsigned) as shifted additions, one per bit of the short operand b: for a 4-bit
    kernel size this is three adders in LUTs, and no DSP block is spent on it."""
    product = Signal(len(a) + len(b))
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))]
    while len(terms) > 1:        # a balanced adder tree: log2(len(b)) adders deep
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    module.comb += product.eq(terms[0])
    return product


SPLIT_BITS = 17   # unsigned bits of the low half: an 18 x 18 signed DSP block takes it


def split_multiply(module, a, b) -> tuple:
    """The two partial products of a (signed, wide) times b (unsigned, <= 17 bits), each fitting one
    18 x 18 DSP block: register them (one PipeStage: `product`s), then add them with
    `combine_split` (the next)."""
    b_s = Signal((len(b) + 1, True))
    module.comb += b_s.eq(b)
    if len(a) <= SPLIT_BITS + 1:            # fits one block as it is
        return product(a, b_s), Constant(0, 1)
    a_lo, a_hi = Signal((SPLIT_BITS + 1, True)), Signal((len(a) - SPLIT_BITS, True))
    module.comb += a_lo.eq(a[:SPLIT_BITS]), a_hi.eq(a[SPLIT_BITS:])
    return product(a_lo, b_s), product(a_hi, b_s)


def combine_split(module, lo, hi):
    """The product from `split_multiply`'s registered partial products: (hi << 17) + lo."""
    lo_s, hi_s = Signal((len(lo), True)), Signal((len(hi), True))
    module.comb += lo_s.eq(lo), hi_s.eq(hi)
    return (hi_s << SPLIT_BITS) + lo_s


def priority_index(module, bits) -> tuple[Signal, Signal]:
    """(index of the lowest set bit of `bits`, any bit set): a combinational priority encoder."""
    index = Signal(max=max(2, len(bits)))
    found = Signal()
    chain = []
    for i in reversed(range(len(bits))):
        chain = [If(bits[i], index.eq(i)).Else(*chain)] if chain else [If(bits[i], index.eq(i))]
    module.comb += index.eq(0), *chain, found.eq(bits != 0)
    return index, found


class WishboneSlice(LiteXModule):
    """A registered wishbone stage: cuts every combinational path between a master and a slave.

        sink    in   the upstream bus (this module is its slave)
        source  out  the downstream bus (this module is its master)

    A request is taken in one clock, presented downstream from the next clock until the slave
    answers (ack or err), and the answer is returned upstream one clock later: two clocks of latency
    more than a direct connection, for timing. One access at a time."""

    def __init__(self, adr_width: int, data_width: int = 32):
        self.sink = wishbone.Interface(data_width=data_width, adr_width=adr_width, addressing="word")
        self.source = wishbone.Interface(data_width=data_width, adr_width=adr_width, addressing="word")

        # # #

        up, down = self.sink, self.source
        self.fsm = fsm = FSM(reset_state="IDLE")
        # While idle the request's fields load every clock (their clock enable is then the state,
        # not the upstream decoder's select); they are used only from REQUEST on.
        fsm.act("IDLE",
            NextValue(down.adr, up.adr), NextValue(down.dat_w, up.dat_w),
            NextValue(down.sel, up.sel), NextValue(down.we, up.we),
            If(up.cyc & up.stb, NextState("REQUEST")),
        )
        fsm.act("REQUEST",
            down.cyc.eq(1), down.stb.eq(1),
            If(down.ack | down.err,
                NextValue(up.dat_r, down.dat_r), NextValue(up.err, down.err),
                NextState("ANSWER"),
            ),
        )
        fsm.act("ANSWER",
            up.ack.eq(~up.err),
            NextValue(up.err, 0),
            NextState("IDLE"),
        )


class ErrorSlave(LiteXModule):
    """Answers every access with a wishbone error, one clock later: the decoder's default target.

        bus  in  the decoder's port for addresses no other slave takes"""

    def __init__(self, adr_width: int, data_width: int = 32):
        self.bus = bus = wishbone.Interface(data_width=data_width, adr_width=adr_width, addressing="word")

        # # #

        self.sync += bus.err.eq(bus.cyc & bus.stb & ~bus.err)


def decode(module, master, windows) -> None:
    """Connect a word-addressed wishbone master to slaves at aligned power-of-two windows with
    LiteX's `wishbone.Decoder` (data mux select registered); an access that hits no window answers
    an error (ErrorSlave).

    windows: (base_word, size_words, slave) with base_word a multiple of size_words; each slave
    sees the address within its window (the master's low bits)."""
    selects = []
    for base, size, slave in windows:
        if size & (size - 1) or base % size:
            raise ValueError(f"window at word {base:#x} of {size} words is not an aligned power of two")
        size_bits = (size - 1).bit_length()
        selects.append((lambda adr, base=base, size_bits=size_bits: adr[size_bits:] == base >> size_bits, slave))
    decode_targets(module, master, selects)


def decode_targets(module, master, targets) -> None:
    """LiteX's `wishbone.Decoder` (data mux select registered) over (hit function of the word
    address, slave bus) pairs, plus an ErrorSlave for every address no target takes.

    The hits are registers: each is computed from the address a clock before the decoder sees the
    request (a wishbone master holds its address until answered), so the address compares and the
    slaves' request logic never meet in one clock. An access takes one clock more."""
    error = ErrorSlave(len(master.adr), len(master.dat_w))
    module.submodules += error
    target_hits = [fn(master.adr) for fn, _ in targets]
    hits = Signal(len(target_hits) + 1)
    settled = Signal()       # a request was pending, unanswered, a clock ago: its address is hits'
    module.sync += [
        hits.eq(Cat(*target_hits, ~Reduce("OR", target_hits))),
        settled.eq(master.cyc & master.stb & ~master.ack & ~master.err),
    ]
    gated = wishbone.Interface(data_width=len(master.dat_w), adr_width=len(master.adr), addressing="word")
    module.comb += [
        master.connect(gated, omit={"cyc", "stb"}),
        gated.cyc.eq(master.cyc & settled), gated.stb.eq(master.stb & settled),
    ]
    slaves = [(lambda adr, k=k: hits[k], bus) for k, bus in enumerate([*(b for _, b in targets), error.bus])]
    module.submodules += wishbone.Decoder(gated, slaves, register=True)


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
        # writable (level != depth) and readable (level != 0) are registers kept with the level:
        # readable gates every head bit, so it must start from a flip-flop, not a compare.
        writable, readable, do_write, do_read = Signal(reset=1), Signal(), Signal(), Signal()
        self.comb += [
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
            If(do_write & ~do_read,
                self.level.eq(self.level + 1), readable.eq(1), writable.eq(self.level != depth - 1),
            ).Elif(do_read & ~do_write,
                self.level.eq(self.level - 1), readable.eq(self.level != 1), writable.eq(1),
            ),
        ]
