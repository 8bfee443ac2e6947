"""A chain of boards in one Verilator model: N fabrics joined by the link gateware (gateware/link/)
over simulated wires (UART, or Ethernet with LiteEth at both ends), with the bare fabric's ports
(gen.py), so harness.cpp drives it.

    generate_chain_verilog(cfgs, wire, out_dir) -> synfab_fabric.v

- s_axis (the host's input beats) goes into board 0's input; m_axis is board N-1's output.
- Board k's output stream goes to its link sender, the wires, board k+1's link receiver and input
  (wire.kind "uart": LinkSender / LinkReceiver; "eth": EthLinkSender / EthLinkReceiver, each on
  its own LiteEth UDP/IP core and a BytePHY).
- The AXI-Lite bus reaches board k's registers at byte address (k << board_bits) + its own
  address (board_bits: the widest board's RegisterMap) and the links' registers at N << board_bits
  (CHAIN_LINK_REGS: per link, its counters; `ctrl` bit 0 clears them all; `fault_cycle` of a
  link: from that cycle of the links' clock counter its forward wire is inverted for FAULT_BITS
  bit times (Ethernet: FAULT_BYTES bytes), a burst the receiver must catch).
- A wire is a model of what a cable does (the one part that is not gateware): `latency` clocks
  of delay both ways; UART: the bit rate sys clock / `clocks_per_bit`; Ethernet: a byte a clock.
"""
from __future__ import annotations

from pathlib import Path

from migen import Case, Cat, If, Signal
from litex.gen import LiteXModule
from litex.gen.fhdl.verilog import convert
from litex.soc.interconnect import wishbone

from synfab.config import FabricConfig
from synfab.linkframe import Wire
from synfab.layouts import RegisterMap

from ..axi import AXILite2WishboneErr, AXILiteInterface
from ..common import decode
from ..fabric import Fabric
from ..gen import TOP, top_ports
from ..link import LinkReceiver, LinkSender, link_pads
from ..link.eth import ETH_CLK_FREQ, BytePHY, EthLinkReceiver, EthLinkSender, eth_clock_domains
from ..link.core import BEAT

# Per link, its registers in order (words from the link's base: link k at k * LINK_STRIDE).
CHAIN_LINK_REGS = ("sent", "received", "errors", "broken", "credit_errors", "fault_cycle", "bytes", "packets")
LINK_STRIDE = 8
CHAIN_CTRL_CLEAR = 1
CHAIN_CYCLES_REG = "cycles"      # the links' clock counter (fault_cycle compares with it)
# A fault inverts the wire for a byte's time (start, 8 data, stop): a one-bit glitch can fall where
# the receiver's sampling absorbs it (a shifted start edge, the same bits read), which is no fault.
FAULT_BITS = 10
# On an Ethernet wire, a few bytes inverted: the FCS (or a header check) catches them.
FAULT_BYTES = 4


def board_bits(cfgs) -> int:
    """Byte-address bits of one board's window: the widest board's register map."""
    return max(RegisterMap(c).addr_bits for c in cfgs)


def chain_addr_bits(cfgs) -> int:
    """Byte-address bits of the chain: N board windows and the links' window."""
    return board_bits(cfgs) + max(1, len(cfgs).bit_length())


def link_reg_addr(cfgs, link: int | None, name: str) -> int:
    """Byte address of a link register (`link` None: the chain's own `ctrl` / `cycles`)."""
    base = len(cfgs) << board_bits(cfgs)
    if link is None:
        return base + 4 * {"ctrl": 0, CHAIN_CYCLES_REG: 1}[name]
    return base + 4 * (LINK_STRIDE * (link + 1) + CHAIN_LINK_REGS.index(name))


class ChainRegs(LiteXModule):
    """The links' register window (word addressed).

        bus      in   wishbone slave: ctrl (write 1: clear), cycles, per link CHAIN_LINK_REGS
        clear    out  one-clock pulse: clear every link's counters and broken flag
        cycles   out  clocks since reset (32 bits)
        faults   out  per link, its fault_cycle register (0: none)
    """

    def __init__(self, adr_width: int, links: list):
        self.bus = bus = wishbone.Interface(data_width=32, adr_width=adr_width, addressing="word")
        self.clear = Signal()
        self.cycles = Signal(32)
        self.faults = [Signal(32, name=f"fault_cycle{k}") for k in range(len(links))]

        # # #

        self.sync += self.cycles.eq(self.cycles + 1)
        reads = {0: [], 1: bus.dat_r.eq(self.cycles)}
        for k, (snd, rcv) in enumerate(links):
            base = LINK_STRIDE * (k + 1)
            values = {"sent": snd.sent, "received": rcv.received, "errors": rcv.errors, "broken": rcv.broken,
                      "credit_errors": snd.credit_errors, "fault_cycle": self.faults[k], "bytes": snd.bytes,
                      "packets": snd.packets}
            for i, name in enumerate(CHAIN_LINK_REGS):
                reads[base + i] = bus.dat_r.eq(values[name])
        access = Signal()
        self.comb += access.eq(bus.cyc & bus.stb & ~bus.ack)
        writes = {0: self.clear.eq(bus.dat_w[0])}
        writes.update({LINK_STRIDE * (k + 1) + CHAIN_LINK_REGS.index("fault_cycle"): [] for k in range(len(links))})
        self.comb += If(access & bus.we, Case(bus.adr, writes))
        self.sync += [
            bus.ack.eq(access),
            If(access & ~bus.we, bus.dat_r.eq(0), Case(bus.adr, reads)),
        ]
        for k in range(len(links)):
            adr = LINK_STRIDE * (k + 1) + CHAIN_LINK_REGS.index("fault_cycle")
            self.sync += If(access & bus.we & (bus.adr == adr), self.faults[k].eq(bus.dat_w))


class WireModel(LiteXModule):
    """One direction of a cable: `latency` clocks of delay; while `glitch` the bits of `mask`
    are inverted (a UART line: its one bit; an Ethernet line: the data byte, not its valid).

        i       in   the sending board's tx (`width` bits, idle `idle`)
        o       out  the receiving board's rx
        glitch  in   invert the masked bits (a fault)
    """

    def __init__(self, latency: int, width: int = 1, idle: int = 1, mask: int = 1):
        self.i, self.o, self.glitch = Signal(width, reset=idle), Signal(width, reset=idle), Signal()

        # # #

        taps = [Signal(width, reset=idle, name=f"tap{i}") for i in range(latency)]
        self.sync += If(self.glitch, taps[0].eq(self.i ^ mask)).Else(taps[0].eq(self.i))
        self.sync += [taps[i].eq(taps[i - 1]) for i in range(1, latency)]
        self.comb += self.o.eq(taps[-1])


class Chain(LiteXModule):
    """N fabrics in a chain (see the module doc).

        axil       in   AXI-Lite slave (chain_addr_bits(cfgs) byte-address bits)
        axis_in    in   board 0's input beats
        axis_out   out  board N-1's output beats
    """

    def __init__(self, cfgs: list[FabricConfig], wire: Wire = Wire()):
        if len(cfgs) < 2:
            raise ValueError("a chain has at least two boards")
        bb = board_bits(cfgs)
        self.axil = AXILiteInterface(data_width=32, address_width=chain_addr_bits(cfgs))
        self.axis_in = axis_in = self._beat_endpoint()
        self.axis_out = axis_out = self._beat_endpoint()

        # # #

        self.fabrics = fabrics = []
        for k, cfg in enumerate(cfgs):
            f = Fabric(cfg)
            self.add_module(f"board{k}", f)
            fabrics.append(f)
        links = []
        if wire.kind == "eth":
            eth_clock_domains(self)
        for k in range(len(cfgs) - 1):
            snd, rcv, fwd = self._link(k, wire)
            self.comb += [
                fabrics[k].source.connect(snd.sink, omit={"last"}),
                rcv.source.connect(fabrics[k + 1].sink),
            ]
            links.append((snd, rcv, fwd))
        self.comb += [axis_in.connect(fabrics[0].sink), fabrics[-1].source.connect(axis_out)]
        # The stream's TLAST is the eof bit of the beat (layouts.STREAM_EVENT): carried in the data.
        self.regs = regs = ChainRegs(bb - 2, [(s, r) for s, r, _ in links])
        fault_clocks = FAULT_BITS * wire.clocks_per_bit if wire.kind == "uart" else FAULT_BYTES
        for k, (snd, rcv, fwd) in enumerate(links):
            self.comb += [
                snd.clear.eq(regs.clear), rcv.clear.eq(regs.clear),
                fwd.glitch.eq((regs.faults[k] != 0) & (regs.cycles >= regs.faults[k])
                              & (regs.cycles < regs.faults[k] + fault_clocks)),
            ]
        bus = wishbone.Interface(data_width=32, adr_width=chain_addr_bits(cfgs) - 2, addressing="word")
        self.bridge = AXILite2WishboneErr(self.axil, bus)
        window = 1 << (bb - 2)
        decode(self, bus, [(k * window, window, f.bus) for k, f in enumerate(fabrics)]
               + [(len(cfgs) * window, window, regs.bus)])

    def _link(self, k: int, wire: Wire):
        """Link k's two ends and its two wires, as submodules: (sender, receiver, forward wire)."""
        if wire.kind == "uart":
            a, b = link_pads(), link_pads()
            snd, rcv = LinkSender(a, wire.clocks_per_bit), LinkReceiver(b, wire.clocks_per_bit)
            fwd, bwd = WireModel(wire.latency), WireModel(wire.latency)
            self.comb += [fwd.i.eq(a.tx), b.rx.eq(fwd.o), bwd.i.eq(b.tx), a.rx.eq(bwd.o)]
            parts = {}
        else:
            a, b = BytePHY(), BytePHY()
            snd, rcv = EthLinkSender.own_core(a, k, ETH_CLK_FREQ), EthLinkReceiver.own_core(b, k, ETH_CLK_FREQ)
            fwd, bwd = (WireModel(wire.latency, width=9, idle=0, mask=0xFF) for _ in range(2))
            self.comb += [
                fwd.i.eq(Cat(a.tx_data, a.tx_valid)), Cat(b.rx_data, b.rx_valid).eq(fwd.o),
                bwd.i.eq(Cat(b.tx_data, b.tx_valid)), Cat(a.rx_data, a.rx_valid).eq(bwd.o),
            ]
            parts = {"sender_phy": a, "receiver_phy": b}
        for name, m in {"sender": snd, "receiver": rcv, "forward": fwd, "backward": bwd, **parts}.items():
            self.add_module(f"link{k}_{name}", m)
        return snd, rcv, fwd

    @staticmethod
    def _beat_endpoint():
        from litex.soc.interconnect import stream
        return stream.Endpoint(BEAT)


class ChainTop(LiteXModule):
    """Chain with the bare fabric's top-level ports (gen.top_ports: its names and widths, the
    AXI-Lite address chain_addr_bits(cfgs) wide)."""

    def __init__(self, cfgs, wire: Wire = Wire()):
        self.chain = dut = Chain(cfgs, wire)
        self.ios = top_ports(self, dut.axil, dut.axis_in, dut.axis_out)


def build_chain(cfgs, wire: Wire, quiet: bool = True) -> Path:
    """The Verilator library of the chain (generated and compiled, or found without generating:
    sim.build.build_generated; the link gateware, LiteEth and this module are in its key)."""
    from importlib import metadata

    from ..soc.toolchain import board_links_digest
    from .build import build_generated
    what = ("chain-sim", *[c.to_json() for c in cfgs], repr(wire), Path(__file__).read_text(),
            board_links_digest(), metadata.version("liteeth"))
    return build_generated(what, lambda out: generate_chain_verilog(cfgs, wire, out), quiet=quiet)


def generate_chain_verilog(cfgs, wire: Wire, out_dir) -> Path:
    """Write the chain's `synfab_fabric.v` into out_dir; return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = ChainTop(list(cfgs), wire)
    path = out_dir / f"{TOP}.v"
    convert(top, ios=top.ios, name=TOP).write(str(path))
    return path
