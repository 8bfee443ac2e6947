"""ECP5 board SoC: fabric + stream bridge + UARTBone, no CPU; built with the open toolchain.

    soc = SynfabECP5SoC("ulx3s", cfg)           # the LiteX SoC
    report = build_bitstream("ulx3s", cfg)      # bitstream + nextpnr report, cached by content

The host reaches the bus through the board's USB serial port: either directly
(`--port /dev/ttyUSB0@1000000`) or through `litex_server --uart --uart-port /dev/ttyUSB0
--uart-baudrate 1000000` (`--port localhost:1234`).
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from migen import ClockDomain, Instance
from migen.genlib.resetsync import AsyncResetSynchronizer
from litex.gen import LiteXModule
from litex.soc.cores.clock import ECP5PLL
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc_core import SoCCore

from synfab import boards as board_data
from synfab.config import FabricConfig
from synfab.errors import SynfabError
from synfab.layouts import DEFAULT_BAUDRATE, DEFAULT_SYS_CLK_MHZ, soc_has_ethernet

from ..common import ECP5_PRODUCT_SOURCE, ECP5RegisteredProduct, RegisteredProduct
from . import toolchain as tc
from .common import add_synfab
from .report import parse_nextpnr_report

DEFAULT_SYS_CLK = DEFAULT_SYS_CLK_MHZ * 1e6
# nextpnr-ecp5's heap placer weighs a net's timing criticality 4x its default (10): routing is
# 75-90% of every worst path here, and the default spreads each core's logic between the block
# RAM rows. Measured on the default 2x2 fabric's netlist (100 MHz asked): seed 1 79.76 -> 93.29
# MHz, seed 2 84.12 -> 86.51 MHz (weight 100: seed 1 92.10).
PLACER_OPTIONS = "--placer-heap-timingweight 40"


@dataclass(frozen=True)
class Board:
    """How LiteX builds for a board; its name, FPGA and preset are synfab.boards.BOARDS[name]."""
    platform_module: str          # litex_boards.platforms.<module>
    platform_kwargs: dict = field(default_factory=dict)
    loader_board: str = ""        # openFPGALoader -b NAME
    clk_name: str = "clk25"
    clk_freq: float = 25e6

    def platform(self):
        try:
            module = importlib.import_module(f"litex_boards.platforms.{self.platform_module}")
        except ImportError:
            raise SynfabError("ECP5 board targets need litex-boards; pip install litex-boards")
        platform = module.Platform(**self.platform_kwargs, toolchain="trellis")
        # Every registered product in a MULT18X18D's own output register (see RegisteredProduct).
        # (A copy: the toolchain's dict is a class attribute LiteX shares.)
        platform.toolchain.special_overrides = {**platform.toolchain.special_overrides,
                                                RegisteredProduct: ECP5RegisteredProduct}
        platform.add_source(str(ECP5_PRODUCT_SOURCE))
        return platform


BOARDS = {
    # The ULX3S platform takes its FPGA as an argument; the Colorlight modules imply theirs
    # (tests/test_fit.py checks every platform's device against synfab.boards).
    "ulx3s": Board("radiona_ulx3s", {"device": board_data.BOARDS["ulx3s"].device}, "ulx3s"),
    "ulx3s-45f": Board("radiona_ulx3s", {"device": board_data.BOARDS["ulx3s-45f"].device}, "ulx3s"),
    "colorlight-i5": Board("colorlight_i5", {"board": "i5", "revision": "7.0"}, "colorlight-i5"),
    "colorlight-i9": Board("colorlight_i5", {"board": "i9", "revision": "7.2"}, "colorlight-i9"),
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise SynfabError(f"unknown ECP5 board {name!r}; choose one of {', '.join(BOARDS)} (or pynq-z2)")
    return BOARDS[name]


class _CRG(LiteXModule):
    def __init__(self, platform, spec: Board, sys_clk_freq: float):
        self.cd_sys = ClockDomain()
        self.cd_por = ClockDomain()   # the sys clock, for the reset synchronizer alone

        # # #

        self.pll = pll = ECP5PLL()
        pll.register_clkin(platform.request(spec.clk_name), spec.clk_freq)
        pll.create_clkout(self.cd_sys, sys_clk_freq, with_reset=False)
        # sys is held in reset until the PLL locks.  The reset reaches its ~30 k flip-flops through
        # a global buffer (DCCA): as a fabric net it congested the routing of the 2x2 fabric (it did
        # not route) and its spread stretched the critical path.
        self.comb += self.cd_por.clk.eq(self.cd_sys.clk)
        self.specials += AsyncResetSynchronizer(self.cd_por, ~pll.locked)
        self.specials += Instance("DCCA", i_CLKI=self.cd_por.rst, i_CE=1, o_CLKO=self.cd_sys.rst)


class _BoardSoC(SoCCore):
    """What every synfab board SoC has: the board's platform, a SoCCore without CPU, RAM, UART,
    timer or controller, and the PLL clock and reset (_CRG); the subclasses add the host link
    and the fabric."""

    def __init__(self, board_name: str, cfg: FabricConfig, sys_clk_freq: float, link: str = ""):
        spec = board(board_name)
        platform = spec.platform()
        SoCCore.__init__(self, platform, sys_clk_freq, cpu_type=None, integrated_sram_size=0,
                         with_uart=False, with_timer=False, with_ctrl=False,
                         ident=f"synfab {cfg.name} on {board_name}{link}", ident_version=False)
        self.crg = _CRG(platform, spec, sys_clk_freq)


class SynfabECP5SoC(_BoardSoC):
    """The board SoC: the fabric and its stream bridge on the bus, UARTBone as the bus master."""

    def __init__(self, board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                 baudrate: int = DEFAULT_BAUDRATE):
        _BoardSoC.__init__(self, board_name, cfg, sys_clk_freq)
        self.add_uartbone(uart_name="serial", baudrate=baudrate)
        add_synfab(self, cfg)


ETHERNET_BOARDS = tuple(board_data.ETHERNET_BOARDS)


class SynfabECP5EthSoC(_BoardSoC):
    """The board SoC with Ethernet instead of UARTBone (Colorlight i5 / i9: a Broadcom B50612D
    gigabit PHY on RGMII, 125 MHz): LiteEth's UDP/IP core with Etherbone for the bus and the UDP
    stream port on the stream bridge (soc.eth.add_ethernet; addresses and ports in
    synfab.layouts).  The host reaches it as `--port udp://192.168.1.50:1234`.
    `linked`: board `board_index` of a chain on one switch, with the Ethernet link ends beside the
    stream port (soc.links.add_eth_board_links), at 192.168.1.(50 + board_index)."""

    def __init__(self, board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                 eth_phy: int = 0, board_index: int = 0, linked: bool = False):
        from liteeth.phy.ecp5rgmii import LiteEthPHYRGMII
        from .eth import add_ethernet
        if board_name not in ETHERNET_BOARDS:
            raise SynfabError(f"no Ethernet SoC for {board_name}; boards with Ethernet: {', '.join(ETHERNET_BOARDS)}")
        _BoardSoC.__init__(self, board_name, cfg, sys_clk_freq,
                           link=f" (Ethernet links, board {board_index})" if linked else " (Ethernet)")
        add_synfab(self, cfg, with_ext=True)
        # As litex-boards' colorlight_i5 target: the PHY's RX clock delay on, no TX delay.
        self.ethphy = LiteEthPHYRGMII(clock_pads=self.platform.request("eth_clocks", eth_phy),
                                      pads=self.platform.request("eth", eth_phy), tx_delay=0)
        udp_stream = add_ethernet(self, self.ethphy, board=board_index, join_bridge=not linked)
        if linked:
            from .links import add_eth_board_links
            add_eth_board_links(self, udp_stream, board_index)


class SynfabECP5LinkedSoC(SynfabECP5SoC):
    """The board SoC of a chain of boards: SynfabECP5SoC with two board-to-board link ends on the
    stream bridge's second port (soc.links: `prev` from the board before into the fabric's input,
    `next` the fabric's output to the board after; registers at layouts.LINK_BASE): the UART link
    (LiteX's RS232 PHY, `clocks_per_bit` sys clocks a bit) on the GPIO header pins of
    soc.links.LINK_PINS. (The Ethernet link: SynfabECP5EthSoC(..., linked=True).)"""

    def __init__(self, board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                 baudrate: int = DEFAULT_BAUDRATE, clocks_per_bit: int = 4):
        from .links import add_board_links, uart_link_ends
        check_link_board(board_name, "uart")
        _BoardSoC.__init__(self, board_name, cfg, sys_clk_freq, link=" (uart links)")
        self.add_uartbone(uart_name="serial", baudrate=baudrate)
        add_synfab(self, cfg, with_ext=True)
        prev_end, next_end, io = uart_link_ends(self.platform, board_name, clocks_per_bit)
        self.comb += io
        add_board_links(self, prev_end, next_end)


def check_link_board(board_name: str, link: str, board_index: int = 0) -> None:
    """SynfabError in one line unless `board_name` has a linked SoC with `link` links (and, for
    the Ethernet link, `board_index` is a board of a chain)."""
    from synfab.layouts import ETH_MAX_BOARDS
    from .links import LINK_BOARDS
    if board_name not in LINK_BOARDS.get(link, ()):
        kinds = "; ".join(f"{k}: {', '.join(b)}" for k, b in LINK_BOARDS.items())
        raise SynfabError(f"no {link} linked SoC for {board_name}; linked boards by link: {kinds}")
    if link != "eth" and board_index:
        raise SynfabError(f"--board-index is for the Ethernet link (its boards' addresses); the {link} "
                          "link's boards all run one bitstream")
    if not 0 <= board_index < ETH_MAX_BOARDS:
        raise SynfabError(f"board index {board_index} is outside 0..{ETH_MAX_BOARDS - 1}")


def build_suffix(ethernet: bool = False, link: str = "", board_index: int = 0) -> str:
    """What a build's name adds for its SoC: "_eth" (Ethernet), "_uart_linked", "_eth_linked_bN"
    (a linked SoC, the Ethernet link's board N), "" (the UARTBone SoC)."""
    linked = f"_{link}_linked{f'_b{board_index}' if link == 'eth' else ''}" if link else ""
    return f"{'_eth' if ethernet and link != 'eth' else ''}{linked}"


def build_name(board_name: str, cfg: FabricConfig, ethernet: bool = False, link: str = "",
               board_index: int = 0) -> str:
    """Names the build directory, its files and the top module: a Verilog identifier (presets
    such as ulx3s-85f have dashes)."""
    return re.sub(r"\W", "_", f"synfab_{board_name}{build_suffix(ethernet, link, board_index)}_{cfg.name}")


def _generate(board_name, cfg, sys_clk_freq, baudrate, seed, out: Path, name: str, quiet: bool = False,
              ethernet: bool = False, link: str = "", board_index: int = 0) -> Path:
    """Write the SoC's Verilog, constraints, yosys script and build script to out/gateware
    (quiet: without LiteX's log of the SoC it creates)."""
    if quiet:
        logging.disable(logging.INFO)
    try:
        if link == "eth":
            soc = SynfabECP5EthSoC(board_name, cfg, sys_clk_freq, board_index=board_index, linked=True)
        elif link:
            soc = SynfabECP5LinkedSoC(board_name, cfg, sys_clk_freq, baudrate)
        elif ethernet:
            soc = SynfabECP5EthSoC(board_name, cfg, sys_clk_freq)
        else:
            soc = SynfabECP5SoC(board_name, cfg, sys_clk_freq, baudrate)
        builder = Builder(soc, output_dir=str(out), compile_software=False, compile_gateware=False,
                          csr_json=str(out / "csr.json"))
        soc.platform.toolchain._pnr_opts += f" {PLACER_OPTIONS} --report {name}_report.json"
        with contextlib.redirect_stdout(sys.stderr):     # LiteX's generator chatter stays off stdout
            builder.build(build_name=name, run=False, seed=seed)
    finally:
        logging.disable(logging.NOTSET)
    return out / "gateware"


def _run_build(board_name, cfg, sys_clk_freq, baudrate, seed, out: Path, name: str, key: str, quiet: bool,
               ethernet: bool = False, link: str = "", board_index: int = 0):
    gw = out / "gateware"
    (gw / "stamp.json").unlink(missing_ok=True)
    _generate(board_name, cfg, sys_clk_freq, baudrate, seed, out, name, ethernet=ethernet, link=link,
              board_index=board_index)
    if not quiet:
        print(f"synfab: building {name} bitstream with yosys/nextpnr ({tc.toolchain()[1].split(':')[0]}); "
              f"log: {gw / 'build.log'}", file=sys.stderr, flush=True)
    start = time.monotonic()
    tc.run_tool(["bash", f"build_{name}.sh"], gw, gw / "build.log")
    options = {"sys_clk_freq": sys_clk_freq, "baudrate": baudrate, "seed": seed, **({"ethernet": True} if ethernet else {}),
               **({"link": link} if link else {}), **({"board_index": board_index} if link == "eth" else {})}
    (gw / "stamp.json").write_text(json.dumps({"key": key, "seconds": round(time.monotonic() - start, 1),
                                               "options": options}))


def _build_key(board_name: str, cfg: FabricConfig, sys_clk_freq: float, baudrate: int, seed: int,
               ethernet: bool = False, link: str = "", board_index: int = 0) -> str:
    parts = ("ecp5", board_name, cfg.to_json(), sys_clk_freq, baudrate, seed, tc.toolchain()[1])
    if link:
        # A linked SoC is made of the link gateware too, which the single-board key leaves out.
        return tc.source_digest(*parts, "link", link, *([board_index] if link == "eth" else []),
                                tc.board_links_digest())
    return tc.source_digest(*parts, "ethernet") if ethernet else tc.source_digest(*parts)


def _build_dir(board_name: str, cfg: FabricConfig, ethernet: bool = False, link: str = "",
               board_index: int = 0) -> tuple[str, Path]:
    name = build_name(board_name, cfg, ethernet, link, board_index)
    return name, tc.build_root() / "ecp5" / name


def _report(board_name: str, cfg: FabricConfig, out: Path, name: str, key: str, cached: bool,
            sys_clk_freq: float, baudrate: int, ethernet: bool = False) -> dict:
    gw = out / "gateware"
    report = parse_nextpnr_report(gw / f"{name}_report.json")
    return {"bitstream": str(gw / f"{name}.bit"), "board": board_name,
            "board_description": board_data.BOARDS[board_name].description,
            "device": board(board_name).platform().device, "fabric": cfg.name, "fabric_config": cfg.to_dict(),
            "config_crc": f"{cfg.crc():#010x}", "sys_clk_mhz": sys_clk_freq / 1e6,
            **report, "ethernet": ethernet, "uart_baudrate": baudrate, "toolchain": tc.toolchain()[1], "cache_key": key,
            "cached": cached, "build_seconds": json.loads((gw / "stamp.json").read_text())["seconds"],
            "csr_json": str(out / "csr.json"), "build_dir": str(gw)}


def build_bitstream(board_name: str, cfg: FabricConfig, sys_clk_freq: float = DEFAULT_SYS_CLK,
                    baudrate: int = DEFAULT_BAUDRATE, seed: int = 1, quiet: bool = False,
                    ethernet: bool = False, link: str = "", board_index: int = 0) -> dict:
    """Generate the SoC and run yosys/nextpnr-ecp5/ecppack, unless this very source state was
    built before; return the report: bitstream path, fmax, utilization, board, fabric, cache key.
    A fabric that does not fit the board is refused first (synfab_gateware.fit.check), in one line.
    `link`: the linked SoC of a chain of boards, "uart" (SynfabECP5LinkedSoC) or "eth"
    (SynfabECP5EthSoC(..., linked=True) at `board_index`'s addresses; implies `ethernet`)."""
    from .. import fit

    board(board_name)
    if link:
        check_link_board(board_name, link, board_index)
        if link == "uart" and ethernet:
            raise SynfabError("the uart link's SoC has UARTBone, not Ethernet; for boards with Ethernet use --link eth")
    elif board_index:
        raise SynfabError("--board-index names a board of a chain; give it with --link eth")
    ethernet = soc_has_ethernet(ethernet, link)
    if ethernet and board_name not in ETHERNET_BOARDS:
        raise SynfabError(f"no Ethernet SoC for {board_name}; boards with Ethernet: {', '.join(ETHERNET_BOARDS)}")
    fit.check(cfg, board_name, ethernet=ethernet, link=link, warn=not quiet)
    name, out = _build_dir(board_name, cfg, ethernet, link, board_index)
    gw = out / "gateware"
    key = _build_key(board_name, cfg, sys_clk_freq, baudrate, seed, ethernet, link, board_index)
    stamp = gw / "stamp.json"
    bit = gw / f"{name}.bit"

    def fresh() -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()).get("key") == key and bit.is_file()

    cached = fresh()
    if not cached:
        out.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)         # one build per directory at a time
            if not fresh():
                _run_build(board_name, cfg, sys_clk_freq, baudrate, seed, out, name, key, quiet, ethernet, link,
                           board_index)
    report = _report(board_name, cfg, out, name, key, cached, sys_clk_freq, baudrate, ethernet)
    if link == "eth":
        return {**report, "link": link, "board_index": board_index}
    return {**report, "link": link} if link else report


def cached_build(board_name: str, cfg: FabricConfig) -> dict | None:
    """The report of the last `build_bitstream` of this board and fabric, if it was built from the
    current sources (with whatever clock, baud rate and seed it was built with); else None."""
    name, out = _build_dir(board_name, cfg)
    stamp = out / "gateware" / "stamp.json"
    if not stamp.is_file():
        return None
    rec = json.loads(stamp.read_text())
    opts = rec.get("options")
    if opts is None or not (out / "gateware" / f"{name}.bit").is_file():
        return None
    key = _build_key(board_name, cfg, opts["sys_clk_freq"], opts["baudrate"], opts["seed"])
    if rec["key"] != key:
        return None
    return _report(board_name, cfg, out, name, key, True, opts["sys_clk_freq"], opts["baudrate"])


def synth_soc(board_name: str, cfg: FabricConfig, quiet: bool = True, cached_only: bool = False,
              ethernet: bool = False, link: str = "") -> dict | None:
    """yosys synth_ecp5 cells of the whole board SoC (fabric + stream bridge + UARTBone, or the
    Ethernet SoC, or a linked SoC: `ethernet` and `link` as build_bitstream's; the script of a real
    build), cached by content like cost.synth_block; with cached_only, None instead of running
    yosys. No place and route."""
    from ..cost import _cells, write_atomically

    board(board_name)
    ethernet = soc_has_ethernet(ethernet, link)
    variant = (("ethernet",) if ethernet else ()) + (("link", link, tc.board_links_digest()) if link else ())
    key = tc.source_digest("soc-synth", board_name, cfg.to_json(), tc.toolchain()[1], *variant)
    cached = tc.build_root().parent / "cost" / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    if cached_only:
        return None
    name, _ = _build_dir(board_name, cfg, ethernet, link)
    out = tc.build_root() / "soc-synth" / name
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached.is_file():
            return json.loads(cached.read_text())
        if not quiet:
            print(f"synfab: yosys synth_ecp5 of the {board_name} {' '.join(variant[:2]) + ' ' if variant else ''}SoC "
                  f"with fabric {cfg.name} ...",
                  file=sys.stderr, flush=True)
        start = time.monotonic()
        gw = _generate(board_name, cfg, DEFAULT_SYS_CLK, DEFAULT_BAUDRATE, 1, out, name, quiet=True,
                       ethernet=ethernet, link=link)
        tc.run_tool(["yosys", "-q", "-p", f"script {name}.ys; tee -q -o stat.json stat -json"], gw, gw / "synth.log")
        result = {**_cells(json.loads((gw / "stat.json").read_text())),
                  "seconds": round(time.monotonic() - start, 1)}
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cached, json.dumps(result))
    return result


def flash(bitstream: Path, board_name: str, write_flash: bool = False) -> None:
    """Program the board with openFPGALoader (SRAM by default; --write-flash makes it persist)."""
    spec = board(board_name)
    loader = shutil.which("openFPGALoader")
    if loader is None:
        raise SynfabError("openFPGALoader not found; install it (apt install openfpgaloader, or "
                          "https://github.com/trabucayre/openFPGALoader) and retry")
    bitstream = Path(bitstream)
    if not bitstream.is_file():
        raise SynfabError(f"bitstream {bitstream} not found; build it with `synfab build --board {board_name}`")
    args = [loader, "-b", spec.loader_board] + (["-f"] if write_flash else []) + [str(bitstream)]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
        raise SynfabError(f"openFPGALoader could not program the {board_name} ({lines[-1] if lines else 'no output'}); "
                          "is the board plugged in and its USB port accessible?")
