"""Small sequential arithmetic for values computed once per table write (not per event).

Both units take a `start` pulse with their operands and raise `done` for one clock when the
result is ready; the result holds until the next start.
"""
from __future__ import annotations

from migen import If, Signal
from litex.gen import LiteXModule


def bit_length(module, value) -> Signal:
    """Number of bits of the unsigned `value` (0 for 0): a combinational priority encoder."""
    n = Signal(max=len(value) + 1)
    # Built from the lowest bit outwards, so the highest set bit is tested first.
    stmt = n.eq(0)
    for i in range(len(value)):
        stmt = If(value[i], n.eq(i + 1)).Else(stmt)
    module.comb += stmt
    return n


class SerialMultiplier(LiteXModule):
    """product = a * b (unsigned), one bit of b per clock.

        a, b     in   operands (sampled at start)
        start    in   pulse
        product  out  a * b
        done     out  pulse: product ready (len(b) clocks after start)
    """

    def __init__(self, a_width: int, b_width: int):
        self.a = Signal(a_width)
        self.b = Signal(b_width)
        self.start = Signal()
        self.product = Signal(a_width + b_width)
        self.done = Signal()

        # # #

        addend = Signal(a_width + b_width)
        rest = Signal(b_width)
        count = Signal(max=b_width + 1)
        self.sync += [
            self.done.eq(0),
            If(self.start,
                addend.eq(self.a), rest.eq(self.b), self.product.eq(0), count.eq(b_width),
            ).Elif(count != 0,
                If(rest[0], self.product.eq(self.product + addend)),
                addend.eq(addend << 1), rest.eq(rest >> 1), count.eq(count - 1),
                If(count == 1, self.done.eq(1)),
            ),
        ]


class SerialReciprocal(LiteXModule):
    """Magic numbers for exact division by `divisor` of any value below 2**index_bits:

        q = (value * multiplier) >> shift  ==  value // divisor

    with l = bit_length(divisor - 1), shift = index_bits + l and multiplier = ceil(2**shift / divisor)
    (the round-up method: exact because multiplier*divisor - 2**shift < divisor <= 2**l). Computed by
    long division of 2**shift - 1, one quotient bit per clock (multiplier = quotient + 1).

        divisor     in   >= 1 (0 gives an unspecified result)
        start       in   pulse
        multiplier  out  index_bits + 2 bits
        shift       out
        done        out  pulse, shift + 1 clocks after start
    """

    def __init__(self, index_bits: int, divisor_width: int):
        self.divisor = Signal(divisor_width)
        self.start = Signal()
        self.multiplier = Signal(index_bits + 2)
        self.shift = Signal(max=index_bits + divisor_width + 1)
        self.done = Signal()

        # # #

        d = Signal(divisor_width)
        dm1 = Signal(divisor_width)
        self.comb += dm1.eq(self.divisor - 1)
        l = bit_length(self, dm1)
        rem = Signal(divisor_width + 1)
        trial = Signal(divisor_width + 2)
        quotient = Signal(index_bits + divisor_width + 1)
        count = Signal(max=index_bits + divisor_width + 1)
        finishing = Signal()
        self.comb += trial.eq((rem << 1) | 1)
        self.sync += [
            self.done.eq(0),
            finishing.eq(0),
            If(self.start,
                d.eq(self.divisor), rem.eq(0), quotient.eq(0),
                count.eq(index_bits + l), self.shift.eq(index_bits + l),
            ).Elif(count != 0,
                If(trial >= d, rem.eq(trial - d), quotient.eq((quotient << 1) | 1)).Else(
                    rem.eq(trial), quotient.eq(quotient << 1)),
                count.eq(count - 1),
                If(count == 1, finishing.eq(1)),
            ),
            If(finishing, self.multiplier.eq(quotient + 1), self.done.eq(1)),
        ]
