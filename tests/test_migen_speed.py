"""The compiled Migen simulation (synfab_gateware.sim.migen_speed) against Migen's own interpreter:
the same design and the same random stimulus give the same value of every observed signal at every
clock. The design holds every node kind the compiler handles itself (signed arithmetic, Cat and
slice targets, Case with default, Mux, Replicate, part selects, an Array as source and as target, a
memory with byte-enables and two read ports, an FSM, an expression too deep for Python's parser)
and ones it hands back to the interpreter."""
import functools
import operator
import random

import pytest
from hypothesis import Phase, given, settings, strategies as st

pytest.importorskip("migen")
import migen.sim.core as migen_sim  # noqa: E402
from migen import (FSM, Array, Case, Cat, If, Memory, Module, Mux, NextState, NextValue,  # noqa: E402
                   Replicate, Signal, run_simulation)

from synfab_gateware.sim import migen_speed  # noqa: E402

DEEP_TERMS = 300        # a left-deep OR chain: 300 nested operators, past Python's 200 parentheses


class Mixed(Module):
    def __init__(self):
        self.a, self.b = Signal(8), Signal((6, True))
        self.sel, self.k = Signal(2), Signal(4)
        self.we, self.wadr, self.wdat = Signal(3), Signal(4), Signal(12)
        self.radr = Signal(4)

        # # #

        a, b, sel, k = self.a, self.b, self.sel, self.k
        self.cat = Signal(16)
        self.lo, self.mid, self.hi = Signal(3), Signal((5, True)), Signal(4)
        self.part = Signal(8)
        self.case = Signal((9, True))
        self.signed_ops = Signal((14, True))
        self.compare = Signal(6)
        self.deep = Signal()
        self.rep = Signal(6)
        self.pick, self.clamped = Signal(8), Signal(8)
        self.comb += [
            self.cat.eq(Cat(a[2:5], b, sel, Replicate(k[0], 2))),
            Cat(self.lo, self.mid, self.hi).eq(a * b + k),
            self.part[2:6].eq(a.part(k[:2], 4)),
            self.part[7].eq(~a[0]),
            Case(sel, {0: self.case.eq(b * -3), 1: self.case.eq(-b), "default": self.case.eq(a - 300)}),
            self.signed_ops.eq(Mux(a > b, b >> 1, (b << 3) - a)),
            self.compare.eq(Cat(a < b, a <= b, b == -1, a != k, b >= 0, (a ^ k) > (a & 7))),
            self.deep.eq(functools.reduce(operator.or_, [a[i % 8] & k[i % 4] & (b[i % 6] ^ sel[i % 2])
                                                         for i in range(DEEP_TERMS)])),
            self.rep.eq(Replicate(sel, 3)),
            self.pick.eq(Array([a, b, k, 77])[sel]),
            self.clamped.eq(Array([a, k, 9])[sel]),          # sel 3 reads the last choice
        ]
        self.regs = [Signal(8, reset=i + 1) for i in range(4)]
        self.count = Signal(5)
        self.sync += [
            Array(self.regs)[sel].eq(a + self.regs[3]),
            Array(self.regs[:3])[k[2:]].eq(b),                  # k[2:] == 3 writes the last choice
            self.count.eq(self.count + 1),
            If(a[0], self.regs[3][4:8].eq(k)).Elif(b < 0, self.count.eq(b)),
        ]
        mem = Memory(12, 16, init=[3 * i for i in range(16)])
        self.specials.mem = mem
        wr = mem.get_port(write_capable=True, we_granularity=4)
        rd = mem.get_port(async_read=True)
        self.specials += wr, rd
        self.mem_sync, self.mem_async = Signal(12), Signal(12)
        self.comb += [wr.adr.eq(self.wadr), wr.dat_w.eq(self.wdat), wr.we.eq(self.we),
                      rd.adr.eq(self.radr), self.mem_sync.eq(wr.dat_r), self.mem_async.eq(rd.dat_r)]
        self.state_out = Signal(4)
        self.submodules.fsm = fsm = FSM(reset_state="IDLE")
        fsm.act("IDLE", If(a[7], NextState("RUN"), NextValue(self.state_out, k)))
        fsm.act("RUN", NextValue(self.state_out, self.state_out + 1),
                If(self.state_out == 15, NextState("IDLE")))
        self.observed = [self.cat, self.lo, self.mid, self.hi, self.part, self.case, self.signed_ops,
                         self.compare, self.deep, self.rep, self.pick, self.clamped, *self.regs, self.count,
                         self.mem_sync, self.mem_async, self.state_out]


def trace(seed: int, interpreted: bool, clocks: int = 60) -> list[tuple]:
    dut, rng, rows = Mixed(), random.Random(seed), []

    def bench():
        for _ in range(clocks):
            yield dut.a.eq(rng.randrange(256))
            yield dut.b.eq(rng.randrange(-32, 32))
            yield dut.sel.eq(rng.randrange(4))
            yield dut.k.eq(rng.randrange(16))
            yield dut.we.eq(rng.randrange(8))
            yield dut.wadr.eq(rng.randrange(16))
            yield dut.wdat.eq(rng.randrange(4096))
            yield dut.radr.eq(rng.randrange(16))
            yield
            row = []
            for s in dut.observed:
                row.append((yield s))
            rows.append(tuple(row))

    sim = migen_sim.Simulator(dut, bench())
    if interpreted:
        migen_sim.Simulator.run.__wrapped__(sim)       # Migen's own run, as installed before us
    else:
        sim.run()
    sim.close()
    return rows


@pytest.fixture(autouse=True)
def _installed():
    migen_speed.install()


@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(seed=st.integers(0, 2**32 - 1))
def test_compiled_simulation_matches_migens_interpreter_clock_for_clock(seed):
    compiled, interpreted = trace(seed, False), trace(seed, True)
    assert len(compiled) == 60
    assert compiled == interpreted
    # The stimulus reaches the interesting cases: the FSM runs, memory words change, signs flip.
    assert len({row[-1] for row in compiled}) > 1
    assert len({row[-2] for row in compiled}) > 4
    assert any(row[5] < 0 for row in compiled) and any(row[5] > 0 for row in compiled)


def test_the_compiled_run_is_the_one_that_ran(monkeypatch):
    """Not the interpreter behind a new name: the simulation goes through compiled_run, and the
    interpreter never executes the design's comb or sync lists (only the testbench's requests)."""
    sims, executed = [], []
    real_run, real_execute = migen_speed.compiled_run, migen_sim.Evaluator.execute
    monkeypatch.setattr(migen_speed, "compiled_run", lambda sim: sims.append(sim) or real_run(sim))
    monkeypatch.setattr(migen_sim.Evaluator, "execute",
                        lambda self, stmts: executed.append(stmts) or real_execute(self, stmts))
    rows = trace(5, False, clocks=10)
    assert len(sims) == 1 and len(rows) == 10
    design_lists = [sims[0].fragment.comb, *sims[0].fragment.sync.values()]
    assert executed, "the testbench's own requests go to the interpreter"
    assert not any(stmts is lst for stmts in executed for lst in design_lists)


def test_a_vcd_run_stays_migens(tmp_path):
    """A simulation that writes a VCD file runs in Migen's interpreter (it records every change)."""
    dut = Mixed()

    def bench():
        yield dut.a.eq(5)
        yield
        yield

    run_simulation(dut, bench(), vcd_name=str(tmp_path / "t.vcd"))
    assert "$var" in (tmp_path / "t.vcd").read_text()
