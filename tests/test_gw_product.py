"""RegisteredProduct (gateware/common.py): a pipeline stage's product held in its DSP block's own
output register. The behavioural lowering (Verilator, Migen simulation) against Python's integer
product; the ECP5 lowering (MULT18X18D in synfab_mult18_oreg.v) against the behavioural one under
Verilator with a model of the primitive, and synthesized by yosys to one MULT18X18D with no fabric
register."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("migen")

from migen import ClockDomain, Module, Signal, run_simulation  # noqa: E402
from litex.gen.fhdl.verilog import convert  # noqa: E402

from synfab_gateware.common import (ECP5_PRODUCT_SOURCE, DSP_OPERAND_BITS, ECP5RegisteredProduct,  # noqa: E402
                                    PipeStage, RegisteredProduct, product)
from synfab_gateware.soc import toolchain as tc  # noqa: E402


class _Stage(Module):
    """One PipeStage whose value is a product: the unit under test."""

    def __init__(self, a_width, a_signed, b_width, b_signed):
        self.a = Signal((a_width, a_signed))
        self.b = Signal((b_width, b_signed))
        self.valid = Signal()
        self.stage = PipeStage(self, self.valid, p=product(self.a, self.b))


def _operand(width, signed):
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    return st.integers(lo, hi)


@st.composite
def _cases(draw):
    a_w, b_w = draw(st.integers(2, DSP_OPERAND_BITS)), draw(st.integers(2, DSP_OPERAND_BITS))
    a_s, b_s = draw(st.booleans()), draw(st.booleans())
    pairs = draw(st.lists(st.tuples(_operand(a_w, a_s), _operand(b_w, b_s), st.booleans()), min_size=1, max_size=6))
    return (a_w, a_s, b_w, b_s), pairs


@settings(max_examples=40, deadline=None)
@given(_cases())
def test_the_product_register_loads_a_times_b_with_valid_and_holds_without(case):
    shape, pairs = case
    dut = _Stage(*shape)
    seen = []

    def bench():
        held = None
        for a, b, valid in pairs:
            yield dut.a.eq(a)
            yield dut.b.eq(b)
            yield dut.valid.eq(valid)
            yield                       # the clock edge that loads the product (with valid)
            yield dut.valid.eq(0)
            yield dut.a.eq(0)
            yield dut.b.eq(0)
            yield                       # one without valid: the register holds
            held = a * b if valid else held
            seen.append(((yield dut.stage.p), held))

    run_simulation(dut, bench())
    for p, expected in seen:
        if expected is not None:
            assert p == expected


def test_a_product_wider_than_one_dsp_is_an_ordinary_register_of_the_same_value():
    wide = _Stage(19, True, 4, False)          # 19 bits: more than one DSP input takes
    assert not product(Signal((19, True)), Signal(4)).in_one_dsp
    assert product(Signal((18, True)), Signal(18)).in_one_dsp

    def bench():
        yield wide.a.eq(-(1 << 18))
        yield wide.b.eq(15)
        yield wide.valid.eq(1)
        yield
        yield wide.valid.eq(0)
        yield
        assert (yield wide.stage.p) == -(1 << 18) * 15
    run_simulation(wide, bench())


# -- the ECP5 lowering ------------------------------------------------------------------------------
def _mult18x18d_model() -> str:
    """MULT18X18D as the ECP5 sysDSP usage guide describes the subset the wrapper uses: A and B
    two's complement when SIGNEDA/SIGNEDB, else unsigned; P = A * B, registered on CLK0 with CE0
    when REG_OUTPUT_CLK = "CLK0" (the other register stages bypassed)."""
    bus = lambda n, k: ", ".join(f"{n}{i}" for i in reversed(range(k)))  # noqa: E731
    ins = [f"A{i}" for i in range(18)] + [f"B{i}" for i in range(18)] + [f"C{i}" for i in range(18)]
    ins += ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB"]
    ins += [f"{s}{i}" for s in ("CLK", "CE", "RST") for i in range(4)]
    outs = [f"P{i}" for i in range(36)]
    return f"""
module MULT18X18D({", ".join(ins + outs)});
    parameter REG_INPUTA_CLK = "NONE"; parameter REG_INPUTB_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE"; parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0"; parameter REG_OUTPUT_RST = "RST0"; parameter CLK0_DIV = "ENABLED";
    parameter GSR = "ENABLED"; parameter RESETMODE = "SYNC"; parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    input {", ".join(ins)};
    output {", ".join(outs)};
    wire [17:0] a = {{{bus("A", 18)}}};
    wire [17:0] b = {{{bus("B", 18)}}};
    wire signed [36:0] ax = SIGNEDA ? {{{{19{{a[17]}}}}, a}} : {{19'b0, a}};
    wire signed [36:0] bx = SIGNEDB ? {{{{19{{b[17]}}}}, b}} : {{19'b0, b}};
    wire [36:0] prod = ax * bx;
    reg [35:0] r;
    always @(posedge CLK0) if (CE0) r <= prod[35:0];
    assign {{{bus("P", 36)}}} = REG_OUTPUT_CLK == "CLK0" ? r : prod[35:0];
endmodule
"""


def _write(shape, overrides, path, name):
    dut = _Stage(*shape)
    dut.clock_domains.cd_sys = cd = ClockDomain("sys")
    convert(dut, ios={dut.a, dut.b, dut.valid, dut.stage.p, cd.clk, cd.rst}, name=name,
            special_overrides=overrides).write(str(path))


# Signed x signed, unsigned x signed, the widest unsigned x unsigned, narrow mixed.
SHAPES = [(14, True, 9, True), (18, False, 13, True), (18, False, 18, False), (7, True, 17, False)]


HARNESS = r"""
#include "Vboth.h"
#include <cstdint>
#include <cstdio>
#include <random>
int main() {
    Vboth t;
    std::mt19937_64 rng(%(seed)d);
    const uint64_t amask = (1ull << %(a_w)d) - 1, bmask = (1ull << %(b_w)d) - 1;
    for (int i = 0; i < %(steps)d; i++) {
        // Every fourth operand an extreme (all ones, sign bit only, zero), the rest random.
        uint64_t x = rng(), y = rng(), pick = rng() %% 16;
        t.a = (pick == 0 ? amask : pick == 1 ? (amask >> 1) + 1 : pick == 2 ? 0 : x) & amask;
        t.b = (pick == 3 ? bmask : pick == 4 ? (bmask >> 1) + 1 : pick == 5 ? 0 : y) & bmask;
        t.valid = (rng() %% 4) != 0;
        t.sys_rst = 0;
        t.sys_clk = 0; t.eval();
        t.sys_clk = 1; t.eval();
        if (t.p_gold != t.p_gate) {
            std::printf("MISMATCH step %%d: a=%%llx b=%%llx gold=%%llx gate=%%llx\n", i,
                        (unsigned long long)t.a, (unsigned long long)t.b,
                        (unsigned long long)t.p_gold, (unsigned long long)t.p_gate);
            return 1;
        }
    }
    std::printf("EQUAL %%d\n", %(steps)d);
    return 0;
}
"""


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(f"{w}{'s' if g else 'u'}" for w, g in [s[:2], s[2:]]))
def test_the_ecp5_lowering_computes_what_the_behavioural_one_does(shape, tmp_path):
    """Both lowerings side by side under Verilator (the ECP5 one through the wrapper and a model of
    MULT18X18D), 20 000 clocks of random and extreme operands: the registered products are equal."""
    import subprocess

    from synfab_gateware.sim.build import verilator_tool

    _write(shape, {}, tmp_path / "gold.v", "gold")
    _write(shape, {RegisteredProduct: ECP5RegisteredProduct}, tmp_path / "gate.v", "gate")
    (tmp_path / "mult18x18d.v").write_text(_mult18x18d_model())
    a_w, _, b_w, _ = shape
    p_w = len(_Stage(*shape).stage.p)
    (tmp_path / "both.v").write_text(f"""
module both(input sys_clk, input sys_rst, input valid, input [{a_w - 1}:0] a, input [{b_w - 1}:0] b,
            output [{p_w - 1}:0] p_gold, output [{p_w - 1}:0] p_gate);
    gold g(.sys_clk(sys_clk), .sys_rst(sys_rst), .valid(valid), .a(a), .b(b), .p(p_gold));
    gate t(.sys_clk(sys_clk), .sys_rst(sys_rst), .valid(valid), .a(a), .b(b), .p(p_gate));
endmodule
""")
    (tmp_path / "harness.cpp").write_text(HARNESS % dict(seed=sum(shape), a_w=a_w, b_w=b_w, steps=20000))
    cmd, env, _ = verilator_tool()
    import os
    build = subprocess.run([*cmd, "--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", "--top-module", "both",
                            "both.v", "gold.v", "gate.v", str(ECP5_PRODUCT_SOURCE), "mult18x18d.v", "harness.cpp"],
                           cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(tmp_path / "obj_dir" / "Vboth")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "EQUAL 20000", run.stdout


@pytest.mark.slow
def test_synthesis_puts_the_register_in_the_mult18x18d():
    work = tc.build_root() / "test-product" / "synth"
    work.mkdir(parents=True, exist_ok=True)
    _write((14, True, 9, False), {RegisteredProduct: ECP5RegisteredProduct}, work / "t.v", "t")
    tc.run_tool(["yosys", "-q", "-p", f"read_verilog t.v {ECP5_PRODUCT_SOURCE}; synth_ecp5 -top t -json t.json"],
                work, work / "yosys.log")
    cells = json.loads((work / "t.json").read_text())["modules"]["t"]["cells"].values()
    dsps = [c for c in cells if c["type"] == "MULT18X18D"]
    assert len(dsps) == 1
    assert dsps[0]["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    assert dsps[0]["connections"]["SIGNEDA"] == ["1"] and dsps[0]["connections"]["SIGNEDB"] == ["0"]
    # The stage's only register with a port is the product: inside the DSP block, none in the
    # fabric (the stage's valid drives no port and goes).
    assert sum(c["type"] == "TRELLIS_FF" for c in cells) == 0
