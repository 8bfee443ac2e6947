"""Verilog export of the AXI fabric: `synfab_fabric.v`, top module `synfab_fabric`.

Ports (A = RegisterMap(cfg).addr_bits, byte addresses; rst is active-high and synchronous):
clk, rst, s_axil_{awaddr[A], awvalid, awready, wdata[32], wstrb[4], wvalid, wready, bresp[2],
bvalid, bready, araddr[A], arvalid, arready, rdata[32], rresp[2], rvalid, rready},
s_axis_{tdata[64], tvalid, tready, tlast}, m_axis_{tdata[64], tvalid, tready, tlast}.

    python -m synfab_gateware.gen [--fabric default|small|tiny|config.json] [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from migen import ClockDomain, Signal
from litex.gen import LiteXModule
from litex.gen.fhdl.verilog import convert

from synfab.config import FabricConfig
from synfab.layouts import STREAM_BITS, RegisterMap

from .axi import AXIFabric
from .core.core import NeuronCore

TOP = "synfab_fabric"


class SynfabFabricTop(LiteXModule):
    """AXIFabric with every port as a plain, exactly named top-level signal."""

    def __init__(self, cfg: FabricConfig, core_factory=NeuronCore):
        self.fabric = dut = AXIFabric(cfg, core_factory)
        assert len(dut.axil.aw.addr) == RegisterMap(cfg).addr_bits
        self.ios = top_ports(self, dut.axil, dut.axis_in, dut.axis_out)


def top_ports(module, axil, axis_in, axis_out) -> set:
    """The top-level ports the module doc lists, on `module`: its sys clock domain as clk and rst,
    and plain signals driving or driven by an AXI-Lite slave and the two 64-bit streams; the set
    of them (the Verilog's ios)."""
    module.cd_sys = ClockDomain("sys")
    module.cd_sys.clk.name_override = "clk"
    module.cd_sys.rst.name_override = "rst"
    ax = axil
    # (port name, inner signal, the port drives it)
    wiring = [
        ("s_axil_awaddr", ax.aw.addr, True), ("s_axil_awvalid", ax.aw.valid, True),
        ("s_axil_awready", ax.aw.ready, False),
        ("s_axil_wdata", ax.w.data, True), ("s_axil_wstrb", ax.w.strb, True),
        ("s_axil_wvalid", ax.w.valid, True), ("s_axil_wready", ax.w.ready, False),
        ("s_axil_bresp", ax.b.resp, False), ("s_axil_bvalid", ax.b.valid, False),
        ("s_axil_bready", ax.b.ready, True),
        ("s_axil_araddr", ax.ar.addr, True), ("s_axil_arvalid", ax.ar.valid, True),
        ("s_axil_arready", ax.ar.ready, False),
        ("s_axil_rdata", ax.r.data, False), ("s_axil_rresp", ax.r.resp, False),
        ("s_axil_rvalid", ax.r.valid, False), ("s_axil_rready", ax.r.ready, True),
        ("s_axis_tdata", axis_in.data, True), ("s_axis_tvalid", axis_in.valid, True),
        ("s_axis_tready", axis_in.ready, False), ("s_axis_tlast", axis_in.last, True),
        ("m_axis_tdata", axis_out.data, False), ("m_axis_tvalid", axis_out.valid, False),
        ("m_axis_tready", axis_out.ready, True), ("m_axis_tlast", axis_out.last, False),
    ]
    assert len(axis_in.data) == STREAM_BITS
    ports = {module.cd_sys.clk, module.cd_sys.rst}
    for name, sig, is_input in wiring:
        p = Signal(len(sig), name=name)
        ports.add(p)
        module.comb += sig.eq(p) if is_input else p.eq(sig)
    return ports


def generate_verilog(cfg: FabricConfig, out_dir, core_factory=NeuronCore, overrides: dict | None = None) -> Path:
    """Write `synfab_fabric.v` for cfg into out_dir (created if needed); return its path
    (overrides: Migen special lowerings of a platform; none: the portable description)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = SynfabFabricTop(cfg, core_factory)
    path = out_dir / f"{TOP}.v"
    convert(top, ios=top.ios, name=TOP, special_overrides=overrides or {}).write(str(path))
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m synfab_gateware.gen", description=__doc__.splitlines()[0])
    ap.add_argument("--fabric", default="default", help="preset name or fabric config JSON file")
    ap.add_argument("--out", default=".", help="output directory")
    args = ap.parse_args(argv)
    print(generate_verilog(FabricConfig.load(args.fabric), args.out))


if __name__ == "__main__":
    main()
