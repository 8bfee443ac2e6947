"""Board fit: what a fabric needs of an FPGA, whether it fits a board, the largest fabric that does.

    need = resources(cfg, "ulx3s")     # {"lut", "ff", "bram", "dsp"} and how each was obtained
    check(cfg, "ulx3s")                # raises a one-line SynfabError if cfg does not fit; no synthesis
    rep = fit("ulx3s")                 # the largest fabric that fits, verified by one synthesis

The model (numbers are measured or derived from the design, never written down here):
  block RAM  counted from the design's own memories: every migen Memory of the elaborated design
             (the ECP5 SoC, or the PYNQ-Z2's AXI fabric), mapped as yosys's memory_libmap maps it
             (bram_blocks): one copy per read port in use; a memory with an asynchronous read port
             is LUT RAM, an unmarked ROM logic; one marked ram_style=block is block RAM; any other is
             whichever of block RAM and LUT RAM costs less by the yosys library costs. A copy takes
             the fewest blocks of one primitive configuration (depth x width; a copy has one write
             and one read port, so the 36/72-bit modes apply). tests/test_fit.py compares the count
             with yosys for several fabrics and both families.
  logic      LUTs, FFs and multipliers: per core, yosys synthesis of one NeuronCore plus router 0 (the
             largest router: it has the host port) at the fabric's own sizes; per design, the whole
             SoC (ECP5) or AXI fabric (PYNQ-Z2) of a one-core reference fabric minus its core and
             router (fixed_part); need = fixed part + cores x per core (+ the board's reserve for IP
             outside the synthesized design). All synthesis is cached by content (cost.synth_block).
  verified   fit() synthesizes the chosen fabric's whole SoC / AXI fabric once and keeps it only
             if the synthesized figures are also within the margins.

The search (fit): candidate fabrics are meshes mx x my (my <= mx <= 2 my + 1, at most MAX_CORES),
neurons per core and weight words per core powers of two with at least WEIGHTS_PER_NEURON weight
words per neuron; tables (PEG entries, ESU descriptors, populations, input PEG entries) as large as
the block RAMs they need anyway hold (size_tables).  Objective: the most neurons (cores x neurons
per core), then the most weight words, then the most cores, then the squarest mesh, among the
fabrics within synfab.boards.MARGIN of every resource on which every shipped network
(synfab.demo) compiles, except networks with more neurons than any fabric fitting the block RAM
has (those are reported as not fitting the board).
"""
from __future__ import annotations

import logging
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from migen import Memory
from migen.fhdl import structure
from migen.fhdl.tools import list_signals

from synfab import boards as board_data
from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab.layouts import soc_has_ethernet

from . import cost

MAX_CORES = 64
NEURONS = tuple(1 << k for k in range(9, 17))         # 512 .. 65536 neurons per core
# The shipped LeNet-size CNN has 6.8 int8 weights per neuron (122,364 / 18,110): a fabric with 8
# weight words per neuron holds the weights of any network of that shape its neurons can hold.
WEIGHTS_PER_NEURON = 8
WEIGHT_RATIOS = (WEIGHTS_PER_NEURON, 2 * WEIGHTS_PER_NEURON, 4 * WEIGHTS_PER_NEURON)
TABLE_FIELDS = ("peg_entries_per_core", "esu_descriptors_per_core", "populations_per_core", "input_peg_entries")
MAX_TABLE_ENTRIES = 4096
# The one-core fabric the fixed (non-core) part of a design is measured on.
REFERENCE_SIZES = {"mesh_x": 1, "mesh_y": 1, "neurons_per_core": 1024, "weight_words_per_core": 8192}
FIXED_PART_BOARD = {"ecp5": "ulx3s", "xc7": "pynq-z2"}


# -- block RAM -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BramPrimitive:
    name: str            # yosys cell
    units: float         # in the family's block-RAM unit (synfab.boards.UNITS: DP16KD, RAMB36)
    cost: int            # yosys memory_libmap cost (share/lattice/brams_16kd.txt, share/xilinx/brams_xc4v.txt)
    tdp: tuple           # (depth, width) configurations of a true-dual-port port
    sdp: tuple           # extra (depth, width) configurations with one write and one read port


BRAM_PRIMITIVES = {
    "ecp5": (BramPrimitive("DP16KD", 1, 128, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)),
                           ((512, 36),)),),
    "xc7": (BramPrimitive("RAMB18E1", 0.5, 129, ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18)),
                          ((512, 36),)),
            BramPrimitive("RAMB36E1", 1, 257, ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36)),
                          ((512, 72),))),
}
# LUT RAM (depth, width, yosys cost) of a simple-dual-port primitive: TRELLIS_DPR16X4; RAM64M / RAM32M.
LUTRAM = {"ecp5": ((16, 4, 4),), "xc7": ((64, 3, 8), (32, 6, 8))}


@dataclass(frozen=True)
class Mem:
    name: str
    width: int
    depth: int
    style: str           # ram_style attribute ("" if none)
    copies: int          # one per read port in use: yosys gives each read port its own copy
    rom: bool            # no write port
    async_read: bool     # a read port is combinational: block RAM cannot serve it


def describe(mem: Memory, used: set) -> Mem:
    """A Memory as yosys sees it; `used`: the signals the design reads (unread ports are removed)."""
    readers = [p for p in mem.ports if p.dat_r in used]
    style = next((v for k, v in getattr(mem, "attr", ()) if k == "ram_style"), "")
    return Mem(mem.name_override, mem.width, mem.depth, style, max(1, len(readers)),
               all(p.we is None for p in mem.ports), any(p.async_read for p in readers))


def _blocks(m: Mem, prim: BramPrimitive) -> int:
    # With one write port per copy, every copy is simple dual port (write, read): all modes apply.
    return m.copies * min(math.ceil(m.depth / d) * math.ceil(m.width / w) for d, w in prim.tdp + prim.sdp)


def _lutram_cost(m: Mem, family: str) -> int:
    return m.copies * min(math.ceil(m.depth / d) * math.ceil(m.width / w) * c for d, w, c in LUTRAM[family])


def bram_blocks(m: Mem, family: str) -> tuple[str, int] | None:
    """(primitive, count) of block RAM for one memory, or None if it is not block RAM."""
    if m.async_read or m.style in ("distributed", "logic", "registers"):
        return None
    if m.rom and m.style != "block":
        return None          # yosys makes the SoC's small identification ROM logic
    prim = min(BRAM_PRIMITIVES[family], key=lambda p: p.cost * _blocks(m, p))
    n = _blocks(m, prim)
    if m.style != "block" and prim.cost * n > _lutram_cost(m, family):
        return None
    return prim.name, n


def bram_use(mems, family: str) -> dict:
    """Block RAM of a list of Mem: {"bram": units, "primitives": {cell: count}}."""
    units = {p.name: p.units for p in BRAM_PRIMITIVES[family]}
    count = {}
    for m in mems:
        b = bram_blocks(m, family)
        if b:
            count[b[0]] = count.get(b[0], 0) + b[1]
    return {"bram": sum(n * units[p] for p, n in count.items()), "primitives": count}


@contextmanager
def _unnamed_signals():
    """migen names each new Signal from the caller's stack and a process-wide table, which grows
    with every signal made (a 4x4 fabric takes ~5 s, and later ones longer); counting memories
    needs no names."""
    tracer = structure._tracer
    saved = tracer.trace_back
    tracer.trace_back = lambda name=None: [(name or "signal", None)]
    try:
        yield
    finally:
        tracer.trace_back = saved


def _modules(module, seen=None):
    """module and its submodules, each once (LiteX registers some under two names)."""
    seen = set() if seen is None else seen
    if id(module) not in seen:
        seen.add(id(module))
        yield module
        for _, sub in module._submodules:
            yield from _modules(sub, seen)


def _elaborate_memories(top) -> tuple[Mem, ...]:
    top.finalize()                   # LiteX adds some memory ports (CSR banks) when finalized
    mods = list(_modules(top))
    used = set()
    for m in mods:
        used |= list_signals(m._fragment.comb)
        for stmts in m._fragment.sync.values():
            used |= list_signals(stmts)
    mems = {id(s): s for m in mods for s in m._fragment.specials if isinstance(s, Memory)}
    return tuple(describe(mem, used) for mem in mems.values())


@lru_cache(maxsize=256)
def core_memories(cfg: FabricConfig) -> tuple[Mem, ...]:
    from .core.core import NeuronCore
    with _unnamed_signals():
        return _elaborate_memories(NeuronCore(cfg, 0))


@lru_cache(maxsize=64)
def design_memories(cfg: FabricConfig, board: str) -> tuple[Mem, ...]:
    """Every memory of what is synthesized for a board: the whole SoC on ECP5 boards (fabric,
    stream bridge, UARTBone, identification ROM), the AXI fabric on the PYNQ-Z2."""
    with _unnamed_signals():
        if board_data.board(board).family == "ecp5":
            from .soc.ecp5 import SynfabECP5SoC
            logging.disable(logging.INFO)          # LiteX logs the SoC it creates
            try:
                return _elaborate_memories(SynfabECP5SoC(board, cfg))
            finally:
                logging.disable(logging.NOTSET)
        from .axi import AXIFabric
        return _elaborate_memories(AXIFabric(cfg))


def _unnamed(cfg: FabricConfig) -> FabricConfig:
    """cfg named after its content: equal sizes share memoized and cached results whatever the name."""
    return cfg.with_(name=f"fit-{cfg.with_(name='fit').crc():08x}")


def design_bram(cfg: FabricConfig, board: str) -> dict:
    return bram_use(design_memories(_unnamed(cfg), board), board_data.board(board).family)


def core_bram(cfg: FabricConfig, family: str) -> float:
    return bram_use(core_memories(_unnamed(cfg)), family)["bram"]


def size_tables(cfg: FabricConfig, board: str) -> FabricConfig:
    """cfg with each table doubled while that costs no block RAM: the block RAMs its default
    size needs hold that many entries anyway (a 64-entry, ~90-bit PEG table takes three 512x36
    DP16KD or RAMB18, which hold 512)."""
    family = board_data.board(board).family
    for name in TABLE_FIELDS:
        measure = (lambda c: design_bram(c.with_(mesh_x=1, mesh_y=1), board)["bram"]) \
            if name == "input_peg_entries" else (lambda c: core_bram(c, family))
        base = measure(cfg)
        while getattr(cfg, name) * 2 <= MAX_TABLE_ENTRIES:
            bigger = cfg.with_(**{name: getattr(cfg, name) * 2})
            if measure(bigger) != base:
                break
            cfg = bigger
    return cfg


# -- logic ---------------------------------------------------------------------------------------------
def usage(cells: dict, family: str) -> dict:
    """{"lut", "ff", "bram", "dsp"} of a cost.synth_block / ecp5.synth_soc result."""
    if family == "ecp5":
        return {"lut": cells["lut4_equiv"], "ff": cells["TRELLIS_FF"], "bram": cells["DP16KD"],
                "dsp": cells["MULT18X18D"]}
    return {"lut": cells["lut6_equiv"], "ff": cells["ff"], "bram": cells["ramb36_equiv"], "dsp": cells["dsp48"]}


def _combine(a: dict, b: dict, sign: int = 1) -> dict:
    return {r: a[r] + sign * b[r] for r in a}


def per_core(cfg: FabricConfig, family: str, cached_only: bool = False, quiet: bool = True) -> dict | None:
    """Synthesized core + router 0 of cfg."""
    cfg = _unnamed(cfg)
    parts = [cost.synth_block(b, cfg, quiet, family, cached_only) for b in ("core", "router")]
    if any(p is None for p in parts):
        return None
    return _combine(usage(parts[0], family), usage(parts[1], family))


def whole(cfg: FabricConfig, board: str, cached_only: bool = False, quiet: bool = True,
          ethernet: bool = False, link: str = "") -> dict | None:
    """yosys synthesis of everything synthesized for the board: the ECP5 SoC (the Ethernet or a
    linked one with `ethernet`, `link`), or the AXI fabric."""
    spec = board_data.board(board)
    cfg = _unnamed(cfg)
    if spec.family == "ecp5":
        from .soc import ecp5
        cells = ecp5.synth_soc(board, cfg, quiet=quiet, cached_only=cached_only, ethernet=ethernet, link=link)
    else:
        cells = cost.synth_block("fabric", cfg, quiet, spec.family, cached_only)
    return None if cells is None else usage(cells, spec.family)


def reference(cfg: FabricConfig) -> FabricConfig:
    """The one-core fabric the fixed part is measured on, with cfg's table sizes."""
    return cfg.with_(**REFERENCE_SIZES)


def fixed_part(cfg: FabricConfig, board: str, cached_only: bool = False, quiet: bool = True,
               ethernet: bool = False, link: str = "") -> dict | None:
    """What the design needs besides its cores and routers (fabric top, input PEG, bus, stream
    bridge, UARTBone; or Etherbone and LiteEth's UDP/IP core; and the link ends of a linked SoC):
    the whole one-core reference design minus its core and router, measured on the family's
    FIXED_PART_BOARD (the ECP5 UARTBone SoCs differ only in their clock pin and PLL), an Ethernet
    SoC on the board itself (its PHY's)."""
    family = board_data.board(board).family
    ref = reference(cfg)
    ethernet = soc_has_ethernet(ethernet, link)
    on = board if ethernet else FIXED_PART_BOARD[family]
    total = whole(ref, on, cached_only, quiet, ethernet, link)
    core = per_core(ref, family, cached_only, quiet)
    return None if total is None or core is None else _combine(total, core, -1)


def resources(cfg: FabricConfig, board: str, cached_only: bool = False, quiet: bool = True,
              ethernet: bool = False, link: str = "", measure_soc: bool = False) -> dict:
    """The model's need of cfg on a board's SoC (the UARTBone one; the Ethernet or a linked one with
    `ethernet`, `link`): {"need": {resource: value or None}, "bram_primitives", "logic": "model" or
    "not measured"}. Block RAM is always known (no synthesis); logic needs the per-core and fixed
    synthesis, run unless cached_only (the fixed part also with measure_soc)."""
    spec = board_data.board(board)
    bram = design_bram(cfg, board)
    reserved = {r: spec.reserved.get(r, 0) for r in board_data.RESOURCES}
    need = {r: None for r in board_data.RESOURCES}
    need["bram"] = bram["bram"] + reserved["bram"]
    core = per_core(cfg, spec.family, cached_only, quiet)
    fixed = (fixed_part(cfg, board, cached_only and not measure_soc, quiet, ethernet, link)
             if core is not None else None)
    if core is not None and fixed is not None:
        for r in ("lut", "ff", "dsp"):
            need[r] = fixed[r] + cfg.n_cores * core[r] + reserved[r]
    return {"need": need, "bram_primitives": bram["primitives"], "reserved": reserved,
            "logic": "model" if need["lut"] is not None else "not measured",
            "per_core": core, "fixed": fixed}


def _over(need: dict, limit: dict) -> list[str]:
    return [r for r in board_data.RESOURCES if need.get(r) is not None and need[r] > limit[r]]


def _amount(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def check(cfg: FabricConfig, board: str, ethernet: bool = False, link: str = "", warn: bool = False) -> dict:
    """Refuse (one-line SynfabError) a fabric that needs more than the board's FPGA has, before any
    place and route: block RAM from the model; logic and multipliers if the fabric's cores were
    measured (cached). The SoC's own part is the UARTBone SoC's, measured once per source state;
    an Ethernet or linked SoC's own part (LiteEth, Etherbone, the link ends: some 14 k LUT4 more)
    is synthesized here if it is not cached (a minute or two before a build of half an hour).
    `over_margin` lists what is over synfab.boards.MARGIN (with `warn`: a line on stderr about it)."""
    spec = board_data.board(board)
    cap = spec.fpga.capacity()
    if cfg.n_cores > MAX_CORES:
        # Elaborating hundreds of cores takes minutes: their block RAM alone tells first.
        cores = cfg.n_cores * core_bram(cfg, spec.family)
        if cores > cap["bram"]:
            _refuse(cfg, spec, "bram", cores, at_least=True)
    soc = "linked " * bool(link) + "Ethernet " * soc_has_ethernet(ethernet, link)
    rep = resources(cfg, board, cached_only=True, ethernet=ethernet, link=link, measure_soc=bool(soc))
    over = _over(rep["need"], cap)
    if over:
        _refuse(cfg, spec, over[0], rep["need"][over[0]], soc=soc)
    rep["over_margin"] = tight = _over(rep["need"], spec.fpga.allowed())
    if tight and warn:
        r = tight[0]
        print(f"synfab: warning: fabric {cfg.name!r} on the {spec.description}{_as_soc(soc)} "
              f"needs {_amount(rep['need'][r])} of {_amount(cap[r])} {spec.units[r]} "
              f"({100 * rep['need'][r] / cap[r]:.0f}%), over the {100 * board_data.MARGIN[r]:.0f}% the presets "
              f"leave for placement: nextpnr may not place or route it", file=sys.stderr)
    return rep


def _as_soc(soc: str) -> str:
    """' as a linked Ethernet SoC' for a message about an Ethernet or linked SoC; '' for the UARTBone one."""
    return f" as a {soc}SoC" if soc else ""


def _refuse(cfg: FabricConfig, spec, resource: str, need: float, at_least: bool = False, soc: str = ""):
    unit = spec.units[resource]
    what = {"bram": f"{unit} block RAMs", "dsp": f"{unit} multipliers", "lut": f"{unit}s", "ff": "flip-flops"}[resource]
    # The presets are sized for the UARTBone SoC: an Ethernet or linked SoC needs a smaller fabric.
    fix = ("a smaller fabric (--fabric small; the presets leave room for the UARTBone SoC only)" if soc
           else f"--fabric {spec.preset} or fewer cores, neurons or weight words")
    raise SynfabError(f"fabric {cfg.name!r} does not fit the {spec.description}{_as_soc(soc)}: "
                      f"needs {'at least ' * at_least}{_amount(need)} {what}, the {spec.device} has "
                      f"{_amount(spec.fpga.capacity()[resource])}; use {fix}")


# -- the search ----------------------------------------------------------------------------------------
def meshes():
    return [(mx, my) for my in range(1, MAX_CORES + 1) for mx in range(my, 2 * my + 2) if mx * my <= MAX_CORES]


def candidates(base: FabricConfig = FabricConfig()) -> list[FabricConfig]:
    """Every candidate fabric, best first by the objective (module doc)."""
    out = [base.with_(mesh_x=mx, mesh_y=my, neurons_per_core=n, weight_words_per_core=r * n)
           for mx, my in meshes() for n in NEURONS for r in WEIGHT_RATIOS]
    return sorted(out, key=objective, reverse=True)


def objective(cfg: FabricConfig) -> tuple:
    return (cfg.n_cores * cfg.neurons_per_core, cfg.n_cores * cfg.weight_words_per_core, cfg.n_cores,
            -(cfg.mesh_x - cfg.mesh_y))


def _shipped_networks() -> dict:
    from synfab import demo
    return {name: demo.qnetwork(name) for name in demo.NETWORK_FILES}


def _neurons(qnet) -> int:
    return sum(math.prod(layer.shape) for layer in qnet.layers)


def _compiles(qnet, cfg: FabricConfig) -> str | None:
    """None if qnet compiles onto cfg, else why not."""
    from synfab import api
    try:
        api.compile_qnetwork(qnet, cfg)
    except SynfabError as e:
        return str(e)
    return None


def _bram_fits(cfg: FabricConfig, board: str, allowed: dict, reserved: float) -> bool:
    # Cores alone first, as on a one-core mesh (narrowest packets, so never more block RAM): one
    # elaboration per size instead of a whole fabric, and most candidates fail here.
    family = board_data.board(board).family
    if cfg.n_cores * core_bram(cfg.with_(mesh_x=1, mesh_y=1), family) + reserved > allowed["bram"]:
        return False
    return design_bram(cfg, board)["bram"] + reserved <= allowed["bram"]


def fit(board: str, quiet: bool = True) -> dict:
    """The largest fabric that fits the board (module doc), as the preset board.preset, with the
    model's figures, the verifying synthesis and what the shipped networks do on it."""
    start = time.monotonic()
    spec = board_data.board(board)
    allowed = spec.fpga.allowed()
    reserved_bram = spec.reserved.get("bram", 0)
    networks = _shipped_networks()
    required, excluded, rejected = None, {}, []
    checked = 0
    for cand in candidates(FabricConfig(lanes=spec.lanes)):
        checked += 1
        if not _bram_fits(cand, board, allowed, reserved_bram):
            continue
        cfg = size_tables(cand, board).with_(name=spec.preset)
        if required is None:
            # The first fabric that fits the block RAM has the most neurons any can have.
            most = cand.n_cores * cand.neurons_per_core
            required = {n: q for n, q in networks.items() if _neurons(q) <= most}
            excluded = {n: f"{_neurons(q)} neurons: more than any fabric that fits the {spec.device}'s block RAM "
                           f"holds ({most})" for n, q in networks.items() if n not in required}
        if any(_compiles(q, cfg) for q in required.values()):
            continue
        model = resources(cfg, board, quiet=quiet)
        if _over(model["need"], allowed):
            rejected.append((cfg, "model", model["need"]))
            continue
        synth = whole(cfg, board, quiet=quiet)
        synth_need = _combine(synth, {r: spec.reserved.get(r, 0) for r in synth})
        if _over(synth_need, allowed):
            rejected.append((cfg, "synthesis", synth_need))
            continue
        return _report(spec, cfg, model, synth_need, required, excluded, rejected, checked,
                       time.monotonic() - start)
    raise SynfabError(f"no fabric fits the {spec.description} within the margins and compiles "
                      f"{', '.join(required or networks)}")


def _report(spec, cfg, model, synth, required, excluded, rejected, checked, seconds) -> dict:
    cap = spec.fpga.capacity()
    need = model["need"]
    return {
        "board": spec.name, "description": spec.description, "device": spec.device, "family": spec.family,
        "preset": spec.preset, "fabric": cfg.to_dict(),
        "summary": {"cores": cfg.n_cores, "mesh": f"{cfg.mesh_x}x{cfg.mesh_y}",
                    "neurons_per_core": cfg.neurons_per_core, "weight_words_per_core": cfg.weight_words_per_core,
                    "neurons": cfg.n_cores * cfg.neurons_per_core,
                    "weight_words": cfg.n_cores * cfg.weight_words_per_core},
        "units": spec.units, "capacity": cap, "margin": board_data.MARGIN,
        "model": need, "synthesis": synth,
        "use": {r: round(synth[r] / cap[r], 4) for r in board_data.RESOURCES},
        "model_vs_synthesis": {r: round(need[r] / synth[r] - 1, 4) if synth[r] else None
                               for r in board_data.RESOURCES},
        "bram_primitives": model["bram_primitives"], "per_core": model["per_core"], "fixed": model["fixed"],
        "reserved": model["reserved"], "reserved_note": spec.reserved_note,
        "networks": {**{n: "compiles" for n in required}, **{n: f"does not fit: {why}" for n, why in excluded.items()}},
        "rejected": [{"fabric": f"{c.mesh_x}x{c.mesh_y} x {c.neurons_per_core} x {c.weight_words_per_core}",
                      "by": by, "need": n} for c, by, n in rejected],
        "objective": "most neurons, then most weight words, then most cores, then the squarest mesh; "
                     f">= {WEIGHTS_PER_NEURON} weight words per neuron; every shipped network that can fit compiles",
        "placement": placement(spec.name, cfg),
        "candidates_checked": checked, "seconds": round(seconds, 1),
    }


def placement(board: str, cfg: FabricConfig) -> dict:
    """Fmax of cfg on the board if a place-and-route of exactly this fabric from the current
    sources is cached (ECP5), else the recorded placements (bitstreams/placements.json, with the
    revision they were made at), else why there is none."""
    spec = board_data.board(board)
    if spec.family != "ecp5":
        return {"fmax_mhz": None, "note": "no timing: the PYNQ-Z2 flow needs Vivado, which is not available here "
                                          "(resources from yosys synth_xilinx)"}
    from .soc import ecp5
    rep = ecp5.cached_build(board, cfg)
    if rep is not None:
        return {"fmax_mhz": rep["fmax_mhz"], "sys_clk_mhz": rep["sys_clk_mhz"], "timing_met": rep["timing_met"],
                "note": f"nextpnr-ecp5, {rep['sys_clk_mhz']:g} MHz asked", "utilization": rep["utilization"]}
    from synfab.analysis import placements
    from .soc import toolchain
    rec = placements.measured(board, cfg, source_key=toolchain.source_digest())
    if rec is None:
        return {"fmax_mhz": None, "note": f"not placed yet; run synfab build --board {board} --fabric {cfg.name}"}
    runs = ", ".join(f"seed {r['seed']}: {r['fmax_mhz']}" for r in rec["runs"])
    where = "the current gateware sources" if rec["current_sources"] else \
        f"revision {', '.join(rec['source_revisions'])}, not the current gateware sources"
    return {"fmax_mhz": rec["fmax_mhz"], "sys_clk_mhz": rec["sys_clk_mhz"], "timing_met": rec["timing_met"],
            "note": f"nextpnr-ecp5, {rec['sys_clk_mhz']:g} MHz asked, the lowest of {runs} "
                    f"(bitstreams/{placements.FILE_NAME}, {where})",
            "utilization": rec["utilization"], "recorded": rec}


def format_fit(r: dict) -> str:
    s, u = r["summary"], r["units"]
    margin = ", ".join(f"{u[k]} <= {100 * v:.0f}%" for k, v in r["margin"].items())
    f = r["fabric"]
    lines = [f"synfab fit: {r['description']} ({r['device']})",
             f"largest fabric within {margin}: {s['mesh']} cores x {s['neurons_per_core']} neurons x "
             f"{s['weight_words_per_core']} weight words = {s['neurons']} neurons, {s['weight_words']} weight words",
             f"tables per core: {f['peg_entries_per_core']} PEG entries, {f['esu_descriptors_per_core']} ESU "
             f"descriptors, {f['populations_per_core']} populations; {f['input_peg_entries']} input PEG entries "
             "(what their block RAMs hold)",
             f"{'resource':>12} {'model':>9} {'synthesis':>10} {'available':>10} {'use':>7}"]
    for k in board_data.RESOURCES:
        lines.append(f"{u[k]:>12} {_amount(r['model'][k]):>9} {_amount(r['synthesis'][k]):>10} "
                     f"{_amount(r['capacity'][k]):>10} {100 * r['use'][k]:>6.1f}%")
    if r["reserved_note"]:
        lines.append(f"includes {', '.join(f'{_amount(v)} {u[k]}' for k, v in r['reserved'].items() if v)}: "
                     f"{r['reserved_note']}")
    lines.append("shipped networks: " + "; ".join(f"{n} {v}" for n, v in r["networks"].items()))
    p = r["placement"]
    lines.append(f"Fmax: {p['fmax_mhz']} MHz ({p['note']})" if p["fmax_mhz"] else f"Fmax: {p['note']}")
    lines.append(f"preset {r['preset']}: {r['preset_status']}")
    return "\n".join(lines)
