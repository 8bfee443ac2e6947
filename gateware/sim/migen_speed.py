"""Migen's simulator, faster: an expression's width worked out once per simulation run.

Migen's simulator asks `len()` of the same expressions every clock (slices, Cat, comparisons, If
conditions), and each answer walks the expression tree again (bitcontainer.value_bits_sign): a
third of the time of a core's simulation went there. A width cannot change while a simulation
runs (Migen builds no expression then; a testbench's `yield s.eq(v)` makes new ones, which are
kept alive with their answer, so no other expression can take their id). Only during
Simulator.run: Verilog conversion and elaboration use Migen as it is.

    install()     # once per process (tests/conftest.py)
"""
from __future__ import annotations

import functools

_INSTALLED = False


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    import migen.fhdl.bitcontainer as bits
    import migen.sim.core as sim

    original = bits.value_bits_sign
    run = sim.Simulator.run

    @functools.wraps(run)
    def run_with_widths_once(self, *args, **kwargs):
        known: dict[int, tuple] = {}

        def value_bits_sign(v):
            hit = known.get(id(v))
            if hit is not None and hit[0] is v:
                return hit[1]
            answer = original(v)        # its recursion comes back through here
            known[id(v)] = (v, answer)
            return answer

        bits.value_bits_sign = sim.value_bits_sign = value_bits_sign
        try:
            return run(self, *args, **kwargs)
        finally:
            bits.value_bits_sign = sim.value_bits_sign = original

    sim.Simulator.run = run_with_widths_once
    _INSTALLED = True
