"""Implementation cost per block: yosys `synth_ecp5` resources, nextpnr Fmax, PEG/ESU share.

    report = cost_report(cfg, fmax=True)       # dict; `synfab cost [--fmax]` prints it

Blocks (each synthesized on its own, with its interface signals as ports so nothing is
optimised away): PEG, ESU (with its descriptor table and weight memory), neuron unit (acc
memory), evaluation unit (population table, sent memory), one mesh router (core 0's: it has the
host port), the AXI host interface (AXI-Lite -> wishbone with SLVERR), the LiteX stream bridge,
one whole NeuronCore, and the whole AXI fabric (`synfab_fabric`, gen.generate_verilog).
Fmax comes from placing and routing the fabric inside its ULX3S SoC (soc/ecp5.py).

Resources are yosys cell counts after synth_ecp5: LUT4, CCU2C (2-bit carry: two LUT4s),
TRELLIS_DPR16X4 (16x4 distributed RAM: four LUT4 sites), PFUMX/L6MUX21 (wide-LUT muxes, no
LUT of their own), TRELLIS_FF, DP16KD (18 Kbit block RAM), MULT18X18D.  `lut4_equiv` = LUT4 +
2*CCU2C + 4*TRELLIS_DPR16X4 is the logic-area measure used for shares.

`pegesu_share_of_core` (this project's definition, set against the paper's "+2% system
implementation cost", which is silicon area in 12 nm for their chip):
  logic  = (PEG + ESU lut4_equiv) / core lut4_equiv  -- ESU's weight memory is RAM, not logic
  memory = (PEG entry bits + ESU descriptor bits) / all table and state bits of a core
           (PEG entries, ESU descriptors, population descriptors, weight words, acc + sent)
Both are FPGA numbers for this prototype; the paper's figure is not an FPGA measure.

Results are cached by content (gateware sources, config, toolchain version) in ~/.cache/synfab/cost/.
"""
from __future__ import annotations

import fcntl
import inspect
import json
import math
import sys
import time
from pathlib import Path

from migen import ClockDomain, Signal
from migen.genlib.record import Record
from litex.gen.fhdl.verilog import convert
from litex.soc.interconnect.axi import AXILiteInterface

from synfab.caches import SOURCE_SUFFIX, write_text_atomically
from synfab.config import FabricConfig
from synfab.layouts import FABRIC_LAYOUT_VERSION, RegisterMap, esu_desc, neuron_state, peg_entry, pop_desc

from .common import ECP5_PRODUCT_SOURCE, ECP5RegisteredProduct, RegisteredProduct
from .soc import toolchain as tc

BLOCKS = ["peg", "esu", "neuron_unit", "evaluation_unit", "router", "axi_host_interface",
          "stream_bridge", "core", "fabric"]
# The two ends of a board-to-board link (gateware/link/, outside the single-board source key: their
# synthesis keys on link.source_digest too); not part of a fabric's report, asked for by name.
# link_*: the UART link's ends; eth_link_*: the Ethernet link's, each with its LiteEth UDP/IP core
# (MAC, ARP, IP, UDP) on a BytePHY (a board's RGMII PHY adds its I/O registers and delays).
LINK_BLOCKS = ["link_sender", "link_receiver", "eth_link_sender", "eth_link_receiver"]
LINK_CLOCKS_PER_BIT = 4
CELL_TYPES = ["LUT4", "CCU2C", "TRELLIS_DPR16X4", "PFUMX", "L6MUX21", "TRELLIS_FF", "DP16KD", "MULT18X18D"]
DP16KD_BITS = 18 * 1024            # one ECP5 block RAM (x36 mode: data + parity bits)
ECP5_85F_DP16KD = 208              # LFE5U-85F block RAMs
FMAX_BOARD = "ulx3s"
PAPER_SHARE = 0.02


def _interface(module) -> list[Signal]:
    """Signals of a module's own attributes: its ports for a stand-alone synthesis (records and
    endpoints flattened, table memories through their bus)."""
    out = []

    def add(v):
        if isinstance(v, Signal):
            out.append(v)
        elif isinstance(v, Record):
            out.extend(v.flatten())
        elif isinstance(v, dict):
            for x in v.values():
                add(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                add(x)
        elif hasattr(v, "bus") and hasattr(v, "mem"):      # TableMemory: written through its bus
            add(v.bus)
        elif isinstance(v, AXILiteInterface):             # five endpoints, not a Record
            add([v.aw, v.w, v.b, v.ar, v.r])

    for name, value in vars(module).items():
        if not name.startswith("_"):
            add(value)
    unique = {id(s): s for s in out}
    return list(unique.values())


def block(name: str, cfg: FabricConfig):
    """The module for a block name (built for cfg)."""
    from litex.soc.interconnect import wishbone

    rm = RegisterMap(cfg)
    if name == "peg":
        from .core.peg import PEG
        return PEG(cfg, cfg.peg_entries_per_core, rm.core_windows["peg"].stride)
    if name == "esu":
        from .core.esu import ESU
        return ESU(cfg, rm.core_windows["esu"].stride)
    if name == "neuron_unit":
        from .core.neuron import NeuronUnit
        return NeuronUnit(cfg)
    if name == "evaluation_unit":
        from .core.evaluate import EvaluationUnit
        return EvaluationUnit(cfg, rm.core_windows["pop"].stride)
    if name == "router":
        from .noc import Router
        return Router(cfg, 0, 0)
    if name == "axi_host_interface":
        from .axi import AXILite2WishboneErr

        class AXIHost(AXILite2WishboneErr):
            def __init__(self):
                self.axil = AXILiteInterface(data_width=32, address_width=rm.addr_bits)
                self.wb = wishbone.Interface(data_width=32, adr_width=rm.addr_bits - 2, addressing="word")
                AXILite2WishboneErr.__init__(self, self.axil, self.wb)
        return AXIHost()
    if name == "stream_bridge":
        from .soc.bridge import StreamBridge
        from .soc.common import BRIDGE_FIFO_DEPTH
        return StreamBridge(BRIDGE_FIFO_DEPTH, BRIDGE_FIFO_DEPTH)
    if name == "core":
        from .core.core import NeuronCore
        return NeuronCore(cfg, 0)
    if name in ("eth_link_sender", "eth_link_receiver"):
        from .link.eth import ETH_CLK_FREQ, BytePHY, EthLinkReceiver, EthLinkSender, eth_clock_domains
        phy = BytePHY()
        end = (EthLinkSender if name == "eth_link_sender" else EthLinkReceiver).own_core(phy, 0, ETH_CLK_FREQ)
        eth_clock_domains(end)
        end.phy_pins = [phy.tx_valid, phy.tx_data, phy.rx_valid, phy.rx_data]     # ports of the block
        return end
    if name in LINK_BLOCKS:
        from .link import LinkReceiver, LinkSender, link_pads
        pads = link_pads()
        end = (LinkSender if name == "link_sender" else LinkReceiver)(pads, LINK_CLOCKS_PER_BIT)
        end.pads = pads         # the wires are ports of the block
        return end
    raise ValueError(f"unknown block {name!r}; blocks: {', '.join(BLOCKS + LINK_BLOCKS)}")


def block_verilog(name: str, cfg: FabricConfig, out_dir: Path, overrides: dict | None = None) -> tuple[Path, str]:
    """(Verilog file, top module) of a block (overrides: Migen special lowerings of a platform)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if name == "fabric":
        from .gen import TOP, generate_verilog
        return Path(generate_verilog(cfg, out_dir, overrides=overrides)), TOP
    top = f"synfab_{name}"
    m = block(name, cfg)
    ios = set(_interface(m))
    m.clock_domains.cd_sys = cd = ClockDomain("sys")
    path = out_dir / f"{top}.v"
    convert(m, ios=ios | {cd.clk, cd.rst}, name=top, special_overrides=overrides or {}).write(str(path))
    return path, top


def _cells(stat: dict) -> dict:
    cells = stat["design"]["num_cells_by_type"]
    res = {t: int(cells.get(t, 0)) for t in CELL_TYPES}
    res["lut4_equiv"] = res["LUT4"] + 2 * res["CCU2C"] + 4 * res["TRELLIS_DPR16X4"]
    return res


# Xilinx 7-series (synth_xilinx -family xc7): LUT sites each cell takes (LUT RAM and shift registers
# sit in SLICEM LUTs; an INV becomes a LUT1 in Vivado), flip-flops, block RAM in RAMB36 units
# (a RAMB18 is half of one), DSP48E1.
XC7_LUT_SITES = {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1, "INV": 1,
                 "RAM32X1S": 1, "RAM64X1S": 1, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2, "RAM128X1D": 4,
                 "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "SRL16E": 1, "SRLC32E": 1}
XC7_FFS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
XC7_BRAMS = {"RAMB18E1": 0.5, "RAMB36E1": 1.0}


def _cells_xc7(stat: dict) -> dict:
    cells = {t: int(n) for t, n in stat["design"]["num_cells_by_type"].items()}
    return {"cells": cells,
            "lut6_equiv": sum(n * XC7_LUT_SITES.get(t, 0) for t, n in cells.items()),
            "ff": sum(cells.get(t, 0) for t in XC7_FFS),
            "ramb36_equiv": sum(n * XC7_BRAMS.get(t, 0) for t, n in cells.items()),
            "dsp48": cells.get("DSP48E1", 0)}


# family: (yosys synthesis command for a top module, cell summary)
FAMILIES = {"ecp5": ("synth_ecp5 -top {top}", _cells),
            "xc7": ("synth_xilinx -family xc7 -noiopad -top {top}", _cells_xc7)}


def _cache_dir() -> Path:
    d = tc.build_root().parent / "cost"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _synthesize(name: str, cfg: FabricConfig, work: Path, family: str) -> dict:
    """Run yosys synthesis for `family` on a block in work/; its cells (the netlist stays as TOP.json)."""
    command, summary = FAMILIES[family]
    # ECP5 blocks as the SoC builds them: products in their DSP blocks' output registers.
    overrides = {RegisteredProduct: ECP5RegisteredProduct} if family == "ecp5" else {}
    verilog, top = block_verilog(name, cfg, work, overrides)
    reads = f"read_verilog {verilog.name}"
    if family == "ecp5":
        reads += f"; read_verilog {ECP5_PRODUCT_SOURCE}"
    tc.run_tool(["yosys", "-q", "-p", f"{reads}; {command.format(top=top)} ; write_json {top}.json; "
                 "tee -q -o stat.json stat -json"], work, work / "yosys.log")
    return summary(json.loads((work / "stat.json").read_text()))


def synth_block(name: str, cfg: FabricConfig, quiet: bool = True, family: str = "ecp5",
                cached_only: bool = False) -> dict | None:
    """yosys resources of one block for an FPGA family (cached by the gateware sources and the
    toolchain); with cached_only, None instead of running yosys."""
    if family not in FAMILIES:
        raise ValueError(f"unknown FPGA family {family!r}; families: {', '.join(FAMILIES)}")
    _, tool_version = tc.toolchain()
    # The block wrappers built here and the synthesis command are part of what is synthesized.
    wrappers = "".join(inspect.getsource(f) for f in (_interface, block, block_verilog))
    extra = ()
    if name in LINK_BLOCKS:
        from .link import source_digest as link_digest
        extra = (link_digest(),)
    key = tc.source_digest("synth", name, cfg.to_json(), tool_version, FAMILIES[family][0], wrappers, *extra)
    cached = _cache_dir() / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    if cached_only:
        return None
    work = tc.build_root() / "cost" / cfg.name / (name if family == "ecp5" else f"{name}-{family}")
    work.mkdir(parents=True, exist_ok=True)
    with open(work.parent / f"{work.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # parallel tests may ask for the same block
        if cached.is_file():
            return json.loads(cached.read_text())
        if not quiet:
            print(f"synfab: yosys {FAMILIES[family][0].split()[0]} {name} ({cfg.name}) ...", file=sys.stderr,
                  flush=True)
        start = time.monotonic()
        result = {**_synthesize(name, cfg, work, family), "seconds": round(time.monotonic() - start, 1)}
        write_atomically(cached, json.dumps(result))
    return result


def write_atomically(path: Path, text: str) -> None:
    """Write a synthesis result (this block's or soc.ecp5.synth_soc's) into the cost cache: readers
    outside the lock see the whole file or none. Beside it, `<key>.source` names the gateware
    source key it was synthesized at, so `synfab cache record` can commit the current source
    state's results (synfab.caches: its suffix and its write rule)."""
    write_text_atomically(path, text)
    write_text_atomically(path.with_suffix(SOURCE_SUFFIX), tc.source_digest())


SCALING_BLOCKS = ("core", "esu", "neuron_unit", "evaluation_unit", "peg")
SCALING_NEURONS = (1024, 4096, 16384)       # issue 8: logic may not grow with neurons per core ...
SCALING_WEIGHTS = (4096, 65536)             # ... nor with weight words (all of it is block RAM)
SCALING_CELLS = ("LUT4", "CCU2C", "TRELLIS_DPR16X4", "TRELLIS_FF", "DP16KD", "MULT18X18D", "lut4_equiv")
SCALING_MEASURES = ("lut4_equiv", "TRELLIS_FF")   # the logic whose change is bounded


def sized(base: FabricConfig, neurons: int, weights: int) -> FabricConfig:
    """base with neurons/weight words per core replaced; named after its sizes, so every size has
    its own cache entry and build directory (parallel synths of one name would share a directory)."""
    return base.with_(neurons_per_core=neurons, weight_words_per_core=weights,
                      name=f"{base.name}-n{neurons}-w{weights}")


def relative_change(values) -> float:
    """(largest - smallest) / smallest: how much a figure moves over a sweep."""
    values = list(values)
    return round((max(values) - min(values)) / min(values), 4)


def scaling_report(base: FabricConfig, neurons=SCALING_NEURONS, weights=SCALING_WEIGHTS,
                   blocks=SCALING_BLOCKS, quiet: bool = True) -> dict:
    """Per-block synth_ecp5 cells of a core's blocks while one size sweeps and the other stays at
    base's: neurons per core at base's weight words, weight words at base's neurons. `change` is
    relative_change of lut4_equiv and TRELLIS_FF per block and sweep (issue 8: <= 15% for core)."""
    sweeps = {"neurons_per_core": {n: sized(base, n, base.weight_words_per_core) for n in neurons},
              "weight_words_per_core": {w: sized(base, base.neurons_per_core, w) for w in weights}}
    out = {"base": base.name, "toolchain": tc.toolchain()[1], "sweeps": {}, "change": {}}
    for sweep, cfgs in sweeps.items():
        cells = {size: {b: {c: r[c] for c in SCALING_CELLS}
                        for b, r in ((b, synth_block(b, cfg, quiet)) for b in blocks)}
                 for size, cfg in cfgs.items()}
        out["sweeps"][sweep] = cells
        out["change"][sweep] = {b: {m: relative_change(cells[s][b][m] for s in cells) for m in SCALING_MEASURES}
                                for b in blocks}
    return out


def fabric_fmax(cfg: FabricConfig, quiet: bool = True) -> dict:
    """nextpnr-ecp5 Fmax (MHz) of the fabric placed and routed in its ULX3S SoC (the `synfab build
    --board ulx3s` bitstream, shared with it): the fabric with only three pins, so no I/O
    placement distorts its paths (the bare AXI top has ~250 ports)."""
    from .soc import ecp5

    rep = ecp5.build_bitstream(FMAX_BOARD, cfg, quiet=quiet)
    return {"fmax_mhz": rep["fmax_mhz"], "device": rep["device"],
            "context": f"{FMAX_BOARD} SoC (fabric + stream bridge + UARTBone), "
                       f"{rep['sys_clk_mhz']:.0f} MHz constraint",
            "utilization": rep["utilization"], "seconds": rep["build_seconds"]}


def table_bits(cfg: FabricConfig) -> dict:
    """Bits of every table and state memory of one core (entries x layout width, the layouts the
    fabric decodes)."""
    v = FABRIC_LAYOUT_VERSION
    return {"peg": cfg.peg_entries_per_core * peg_entry(cfg, v).width,
            "esu": cfg.esu_descriptors_per_core * esu_desc(cfg, v).width,
            "pop": cfg.populations_per_core * pop_desc(cfg, v).width,
            "weights": cfg.weight_words_per_core * cfg.weight_bits,
            "neuron_state": cfg.neurons_per_core * neuron_state(cfg).width}


def pegesu_share(blocks: dict, cfg: FabricConfig) -> dict:
    bits = table_bits(cfg)
    logic = (blocks["peg"]["lut4_equiv"] + blocks["esu"]["lut4_equiv"]) / blocks["core"]["lut4_equiv"]
    memory = (bits["peg"] + bits["esu"]) / sum(bits.values())
    return {"logic": round(logic, 4), "memory": round(memory, 4), "paper_system_cost": PAPER_SHARE,
            "core_table_bits": bits,
            "definition": "logic = (PEG + ESU) lut4_equiv / core lut4_equiv; memory = (PEG entries + ESU "
                          "descriptors) bits / all core table and neuron-state bits"}


def explicit_storage(qnet, fabric_blocks: int | None = None) -> dict:
    """What a network needs with explicit per-synapse storage (synfab.footprint's 'explicit'
    scheme) against PEG/ESU, in ECP5 DP16KD block RAMs and LFE5U-85F devices."""
    from synfab import footprint

    res = footprint.analyze(qnet)
    out = {"network": res.get("network", getattr(qnet, "name", "network"))}
    for scheme in ("explicit", "pegesu"):
        s = res["schemes"][scheme]
        bits = 8 * (s["connectivity_bytes"] + s["weight_bytes"])
        blocks = math.ceil(bits / DP16KD_BITS)
        out[scheme] = {"synapse_memory_bits": int(bits), "dp16kd": blocks,
                       "lfe5u_85f_devices": math.ceil(blocks / ECP5_85F_DP16KD)}
    out["ratio"] = round(out["explicit"]["synapse_memory_bits"] / out["pegesu"]["synapse_memory_bits"], 1)
    if fabric_blocks is not None:
        out["fabric_dp16kd"] = fabric_blocks
    return out


def cost_report(cfg: FabricConfig, fmax: bool = False, blocks=None, network=None, quiet: bool = True) -> dict:
    """Per-block resources, the fabric's Fmax (if fmax), the PEG/ESU share and (for a QNetwork
    `network`) the explicit-storage comparison."""
    names = list(blocks or BLOCKS)
    unknown = set(names) - set(BLOCKS)
    if unknown:
        raise ValueError(f"unknown block(s) {sorted(unknown)}; blocks: {', '.join(BLOCKS)}")
    _, tool_version = tc.toolchain()
    result = {"fabric": cfg.name, "config_crc": f"{cfg.crc():#010x}", "toolchain": tool_version,
              "blocks": {n: synth_block(n, cfg, quiet) for n in names}}
    if {"peg", "esu", "core"} <= set(names):
        result["pegesu_share_of_core"] = pegesu_share(result["blocks"], cfg)
    if fmax:
        result["fabric_pnr"] = fabric_fmax(cfg, quiet)
        result["fmax_mhz"] = result["fabric_pnr"]["fmax_mhz"]
    if network is not None:
        fabric_blocks = result["blocks"].get("fabric", {}).get("DP16KD")
        result["explicit_storage"] = explicit_storage(network, fabric_blocks)
    return result


def format_report(r: dict) -> str:
    cols = ["lut4_equiv", "LUT4", "CCU2C", "TRELLIS_DPR16X4", "TRELLIS_FF", "DP16KD", "MULT18X18D"]
    lines = [f"synfab implementation cost, fabric {r['fabric']} (yosys synth_ecp5)",
             f"{'block':>20} " + " ".join(f"{c:>15}" for c in cols)]
    for name, b in r["blocks"].items():
        lines.append(f"{name:>20} " + " ".join(f"{b[c]:>15}" for c in cols))
    if "pegesu_share_of_core" in r:
        s = r["pegesu_share_of_core"]
        lines.append(f"PEG+ESU share of a core: logic {100 * s['logic']:.1f}%, table memory "
                     f"{100 * s['memory']:.2f}% (paper: +{100 * s['paper_system_cost']:.0f}% system cost, 12 nm)")
    if "fmax_mhz" in r:
        p = r["fabric_pnr"]
        lines.append(f"fabric Fmax (nextpnr-ecp5, {p['device']}, {p['context']}): {r['fmax_mhz']:.1f} MHz")
    if "explicit_storage" in r:
        e = r["explicit_storage"]
        lines.append(f"{e['network']}: explicit per-synapse storage {e['explicit']['synapse_memory_bits']} bits = "
                     f"{e['explicit']['dp16kd']} DP16KD ({e['explicit']['lfe5u_85f_devices']} LFE5U-85F); "
                     f"PEG/ESU {e['pegesu']['synapse_memory_bits']} bits = {e['pegesu']['dp16kd']} DP16KD "
                     f"({e['ratio']}x less)")
    return "\n".join(lines)
